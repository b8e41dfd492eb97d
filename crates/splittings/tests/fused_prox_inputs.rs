//! Edge cases of the fused pass of linearized ADMM for entry-wise proxes
//! (`Prox::entrywise`). Each test runs a model whose proxes give their forms
//! and the same model with the forms hidden, which calls `Prox::prox`. The
//! states must agree bit for bit. The cases are special values in the state
//! and the data, ties at thresholds and bounds, a learnable weight set
//! through `param_mut`, strided views, one-row blocks, batches of zero and
//! one column, and scratch memory filled with a NaN pattern. A user prox
//! whose form names data rows far past the data must fall back to its
//! `prox` without a panic.

use std::mem::MaybeUninit;
use std::panic::{AssertUnwindSafe, catch_unwind};

use faer::dyn_stack::MemStack;
use faer::{Mat, MatMut, MatRef, Par};
use optlayer_core::{Entrywise, Parameterized, Prox, Scalar, Splitting};
use optlayer_ops::{BoxSet, Dense, Identity, IndicatorPoint, L1Norm, LinfBall, Zero};
use optlayer_splittings::{Block, LadmmSteps, LinearizedAdmm};
use optlayer_testing::prox_checks::HiddenForm;
use optlayer_testing::random::gaussian;

fn cast<T: Scalar>(m: &Mat<f64>) -> Mat<T> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| T::lit(m[(i, j)]))
}

/// Returns value `k` (cyclically) of a pool of special values (NaN,
/// infinities, signed zeros, huge and subnormal numbers) and ordinary ones.
fn special_value<T: Scalar>(k: usize) -> T {
    let pool = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -0.0,
        1e300,
        -1e300,
        1e-310,
        -1e-310,
        f64::MIN_POSITIVE,
        0.35,
        -0.35,
        0.7,
        -0.7,
        1.0,
        -1.0,
        3.5e38,
        -3.5e38,
    ];
    T::lit(pool[k % pool.len()])
}

/// Builds a prox, with its form hidden when the argument is `true`.
type MakeProx<T> = Box<dyn Fn(bool) -> Box<dyn Prox<T>>>;

/// Returns a block row count and a constructor, visible or opaque, for a
/// prox of every entry-wise form. The ℓ1 weights are zero, ordinary and
/// 1e30, and the boxes include infinite bounds and `l = u`.
fn proxes<T: Scalar>() -> Vec<(usize, MakeProx<T>)> {
    fn boxed<T: Scalar, P: Prox<T> + 'static>(p: P, opaque: bool) -> Box<dyn Prox<T>> {
        if opaque {
            Box::new(HiddenForm(p))
        } else {
            Box::new(p)
        }
    }
    vec![
        (5, Box::new(|o| boxed(L1Norm::new(T::lit(0.7)).unwrap(), o))),
        (1, Box::new(|o| boxed(L1Norm::new(T::lit(0.0)).unwrap(), o))),
        (3, Box::new(|o| boxed(L1Norm::new(T::lit(1e30)).unwrap(), o))),
        (
            4,
            Box::new(|o| boxed(L1Norm::learnable("w", T::lit(0.35)).unwrap(), o)),
        ),
        (
            2,
            Box::new(|o| boxed(BoxSet::uniform(T::lit(-0.35), T::lit(0.35)).unwrap(), o)),
        ),
        (
            3,
            Box::new(|o| boxed(BoxSet::uniform(T::neg_infinity(), T::lit(0.0)).unwrap(), o)),
        ),
        (
            1,
            Box::new(|o| boxed(BoxSet::uniform(T::lit(-0.0), T::lit(0.0)).unwrap(), o)),
        ),
        (
            2,
            Box::new(|o| boxed(BoxSet::uniform(T::lit(0.7), T::infinity()).unwrap(), o)),
        ),
        (3, Box::new(|o| boxed(LinfBall::new(T::lit(0.0)).unwrap(), o))),
        (6, Box::new(|o| boxed(LinfBall::new(T::lit(0.35)).unwrap(), o))),
        (1, Box::new(|o| boxed(Zero, o))),
        (
            4,
            Box::new(|o| boxed(IndicatorPoint::from_data(3, 4).unwrap(), o)),
        ),
        (
            1,
            Box::new(|o| boxed(IndicatorPoint::from_data(0, 1).unwrap(), o)),
        ),
    ]
}

const N: usize = 6;
const DATA_ROWS: usize = 12;

/// Builds one model with a block per prox of [`proxes`], on small Gaussian
/// operators. `lambda = 0.5` makes ties reachable exactly.
fn model<T: Scalar>(opaque: bool) -> LinearizedAdmm<T> {
    let blocks = proxes::<T>()
        .into_iter()
        .enumerate()
        .map(|(k, (rows, make))| {
            let op = Dense::new(cast::<T>(&(gaussian(rows, N, 100 + k as u64).as_ref() * 0.2))).unwrap();
            Block::new(op, make(opaque))
        })
        .collect();
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.05,
        lambda: 0.5,
    };
    LinearizedAdmm::new(N, DATA_ROWS, blocks, steps).unwrap()
}

fn bits<T: Scalar>(m: MatRef<'_, T>) -> Vec<u64> {
    let mut out = Vec::with_capacity(m.nrows() * m.ncols());
    for j in 0..m.ncols() {
        for i in 0..m.nrows() {
            out.push(m[(i, j)].to_f64_lossless().to_bits());
        }
    }
    out
}

/// Runs one step into `z_next` with scratch memory whose every byte is `fill`.
fn step_with_fill<T: Scalar>(
    model: &LinearizedAdmm<T>,
    z_next: MatMut<'_, T>,
    z: MatRef<'_, T>,
    data: MatRef<'_, T>,
    fill: u8,
) {
    let req = model.step_scratch(z.ncols(), Par::Seq);
    let mut buffer = vec![MaybeUninit::new(fill); req.size_bytes() + 4096];
    model.step(z_next, z, data, Par::Seq, MemStack::new(&mut buffer));
}

/// Runs `steps` steps of the fused and the separate model from `z` and
/// requires every state to agree bit for bit. With `nan_equal`, two NaNs of
/// different sign or payload count as equal. The fused model also runs with
/// scratch filled with a NaN pattern and with zeros, which must agree.
fn assert_same_steps<T: Scalar>(
    fused: &LinearizedAdmm<T>,
    separate: &LinearizedAdmm<T>,
    z: Mat<T>,
    data: MatRef<'_, T>,
    steps: usize,
    label: &str,
    nan_equal: bool,
) {
    let mut a = z.clone();
    let mut b = z;
    for s in 0..steps {
        let mut a_next = Mat::<T>::zeros(a.nrows(), a.ncols());
        let mut a_zero = Mat::<T>::zeros(a.nrows(), a.ncols());
        let mut b_next = Mat::<T>::zeros(b.nrows(), b.ncols());
        step_with_fill(fused, a_next.as_mut(), a.as_ref(), data, 0xFF);
        step_with_fill(fused, a_zero.as_mut(), a.as_ref(), data, 0x00);
        step_with_fill(separate, b_next.as_mut(), b.as_ref(), data, 0xFF);
        assert_eq!(
            bits(a_next.as_ref()),
            bits(a_zero.as_ref()),
            "{label}, step {s}: the fused step depends on the scratch contents"
        );
        let (fa, fb) = (bits(a_next.as_ref()), bits(b_next.as_ref()));
        let nan = |b: u64| f64::from_bits(b).is_nan();
        let differ = |k: usize| fa[k] != fb[k] && !(nan_equal && nan(fa[k]) && nan(fb[k]));
        if let Some(k) = (0..fa.len()).find(|&k| differ(k)) {
            let (i, j) = (k % a.nrows(), k / a.nrows());
            panic!(
                "{label}, step {s}, entry ({i}, {j}): fused {} ({:#x}) vs separate {} ({:#x})",
                a_next[(i, j)].to_f64_lossless(),
                fa[k],
                b_next[(i, j)].to_f64_lossless(),
                fb[k]
            );
        }
        a = a_next;
        b = b_next;
    }
}

fn special_batch<T: Scalar>(rows: usize, cols: usize, shift: usize) -> Mat<T> {
    Mat::from_fn(rows, cols, |i, j| special_value::<T>(i * 7 + j * 3 + shift))
}

fn special_values<T: Scalar>() {
    let (fused, separate) = (model::<T>(false), model::<T>(true));
    let dim = fused.state_dim();
    for batch in [0, 1, 5] {
        let data = special_batch::<T>(DATA_ROWS, batch, 1);
        // Special values everywhere, and a finite random state. NaNs may
        // differ in sign or payload between the two paths. Where both
        // operands of an addition are NaN, the operand order the compiler
        // picks for each loop decides which one propagates. On the build of
        // 2026-12-05 the fused step gave 0x7ff8… and the separate one
        // 0xfff8… for an entry of ν⁺ in the second step. Every value other
        // than NaN must agree bit for bit.
        let z = special_batch::<T>(dim, batch, 0);
        assert_same_steps(
            &fused,
            &separate,
            z,
            data.as_ref(),
            3,
            &format!("special values, batch {batch}"),
            true,
        );
        let z = cast::<T>(&gaussian(dim, batch, 9));
        let data = cast::<T>(&gaussian(DATA_ROWS, batch, 10));
        assert_same_steps(
            &fused,
            &separate,
            z,
            data.as_ref(),
            30,
            &format!("random, batch {batch}"),
            false,
        );
    }
}

#[test]
fn special_values_and_small_batches_f64() {
    special_values::<f64>();
}

#[test]
fn special_values_and_small_batches_f32() {
    special_values::<f32>();
}

/// With `K = I`, `x = p = 0` and `λ = 1/2`, the prox argument is
/// `v = λ ν` exactly, so `ν = ±2t` puts `v` on a threshold or a bound.
fn ties<T: Scalar>() {
    let r = 3;
    let targets = [0.35, -0.35, 0.7, -0.7, 0.0, -0.0, 1.0];
    let make = |opaque: bool| {
        let proxes: Vec<Box<dyn Prox<T>>> = vec![
            Box::new(L1Norm::new(T::lit(0.7)).unwrap()),
            Box::new(BoxSet::uniform(T::lit(-0.35), T::lit(0.7)).unwrap()),
            Box::new(LinfBall::new(T::lit(0.35)).unwrap()),
            Box::new(L1Norm::new(T::lit(2.0)).unwrap()),
        ];
        let blocks = proxes
            .into_iter()
            .map(|p| {
                let p: Box<dyn Prox<T>> = if opaque { Box::new(HiddenForm(p)) } else { p };
                Block::new(Identity::new(r), p)
            })
            .collect();
        let steps = LadmmSteps {
            alpha: 0.5,
            beta: 0.05,
            lambda: 0.5,
        };
        LinearizedAdmm::new(r, 0, blocks, steps).unwrap()
    };
    let (fused, separate) = (make(false), make(true));
    let dim = fused.state_dim();
    let batch = targets.len();
    // Rows: x (r), then per block p (r) and ν (r).
    let z = Mat::from_fn(dim, batch, |i, j| {
        let in_nu = i >= r && ((i - r) / r) % 2 == 1;
        if in_nu {
            T::lit(2.0 * targets[j])
        } else {
            T::zero()
        }
    });
    let data = Mat::<T>::zeros(0, batch);
    assert_same_steps(&fused, &separate, z, data.as_ref(), 4, "ties", false);
}

#[test]
fn ties_at_thresholds_and_bounds() {
    ties::<f64>();
    ties::<f32>();
}

/// Compares the paths with the learnable ℓ1 weight set through `param_mut`
/// to values that `after_param_update` would reject or clamp, without calling it.
fn learnable_weight_set_directly<T: Scalar>() {
    let (mut fused, mut separate) = (model::<T>(false), model::<T>(true));
    let index = (0..fused.param_count())
        .find(|&i| fused.param_info(i).name == "w")
        .unwrap();
    let dim = fused.state_dim();
    let batch = 4;
    let data = cast::<T>(&gaussian(DATA_ROWS, batch, 3));
    for w in [-0.5, -0.0, 0.0, 1e300, f64::INFINITY, f64::NAN, 3.0] {
        fused.param_mut(index)[(0, 0)] = T::lit(w);
        separate.param_mut(index)[(0, 0)] = T::lit(w);
        let z = cast::<T>(&gaussian(dim, batch, 4));
        assert_same_steps(
            &fused,
            &separate,
            z,
            data.as_ref(),
            10,
            &format!("weight {w}"),
            true,
        );
    }
}

#[test]
fn learnable_weight_changed_through_param_mut() {
    learnable_weight_set_directly::<f64>();
    learnable_weight_set_directly::<f32>();
}

/// Compares the paths with states and data as row-major views and as
/// column blocks of a wider matrix, and data with more rows than the model reads.
fn strided_views<T: Scalar>() {
    let (fused, separate) = (model::<T>(false), model::<T>(true));
    let dim = fused.state_dim();
    let batch = 5;
    let data_wide = cast::<T>(&gaussian(DATA_ROWS + 9, batch + 4, 11));
    let z_wide = cast::<T>(&gaussian(dim + 3, batch + 4, 12));
    // Column-major sub-blocks: a row offset and a column stride larger than the rows.
    let data_sub = data_wide.as_ref().submatrix(2, 1, DATA_ROWS + 5, batch);
    let z_sub = z_wide.as_ref().submatrix(1, 2, dim, batch);
    // Row-major copies of the same values.
    let data_t = data_sub.transpose().to_owned();
    let z_t = z_sub.transpose().to_owned();

    let run = |m: &LinearizedAdmm<T>, row_major: bool| {
        let mut next_t = Mat::<T>::zeros(batch, dim);
        let mut next = Mat::<T>::zeros(dim, batch);
        let req = m.step_scratch(batch, Par::Seq);
        let mut buffer = vec![MaybeUninit::new(0xFFu8); req.size_bytes() + 4096];
        if row_major {
            m.step(
                next_t.as_mut().transpose_mut(),
                z_t.transpose(),
                data_t.transpose(),
                Par::Seq,
                MemStack::new(&mut buffer),
            );
            next_t.transpose().to_owned()
        } else {
            // The output is a sub-block of a wider matrix too.
            let mut wide = Mat::<T>::zeros(dim + 2, batch + 1);
            m.step(
                wide.as_mut().submatrix_mut(1, 1, dim, batch),
                z_sub,
                data_sub,
                Par::Seq,
                MemStack::new(&mut buffer),
            );
            next.copy_from(wide.as_ref().submatrix(1, 1, dim, batch));
            next
        }
    };
    // The operator's products may round differently on row-major views, so
    // each layout is compared with the separate passes on the same layout.
    for row_major in [false, true] {
        assert_eq!(
            bits(run(&fused, row_major).as_ref()),
            bits(run(&separate, row_major).as_ref()),
            "row-major {row_major}"
        );
    }
}

#[test]
fn strided_and_row_major_views() {
    strided_views::<f64>();
    strided_views::<f32>();
}

/// A user prox that is the identity but whose form names the data rows
/// `offset..offset + rows`, where `offset` is far past any data.
struct FarRows {
    offset: usize,
}

impl Parameterized<f64> for FarRows {}

impl Prox<f64> for FarRows {
    fn entrywise(&self, _gamma: f64) -> Option<Entrywise<f64>> {
        Some(Entrywise::DataRows { offset: self.offset })
    }
    fn prox(&self, out: MatMut<'_, f64>, v: MatRef<'_, f64>, _gamma: f64, _data: MatRef<'_, f64>) {
        faer::zip!(out, v).for_each(|faer::unzip!(o, v)| *o = *v);
    }
    fn prox_vjp(
        &self,
        v_bar: MatMut<'_, f64>,
        _v: MatRef<'_, f64>,
        _gamma: f64,
        _data: MatRef<'_, f64>,
        cotangent: MatRef<'_, f64>,
    ) {
        faer::zip!(v_bar, cotangent).for_each(|faer::unzip!(o, c)| *o = *c);
    }
}

/// `fused_update` documents that a form naming rows the data lacks falls
/// back to `prox`. An offset near `usize::MAX` must do the same, not
/// overflow `offset + rows` and panic.
#[test]
fn data_rows_past_the_data_fall_back() {
    for offset in [DATA_ROWS, 1 << 40, usize::MAX - 1, usize::MAX] {
        let make = |opaque: bool| {
            let prox = FarRows { offset };
            let op = Dense::new(gaussian(3, N, 5).as_ref() * 0.3).unwrap();
            let block = if opaque {
                Block::new(op, HiddenForm(prox))
            } else {
                Block::new(op, prox)
            };
            let steps = LadmmSteps {
                alpha: 0.5,
                beta: 0.05,
                lambda: 0.5,
            };
            LinearizedAdmm::new(N, DATA_ROWS, vec![block], steps).unwrap()
        };
        let (fused, separate) = (make(false), make(true));
        let batch = 3;
        let z = gaussian(fused.state_dim(), batch, 6);
        let data = gaussian(DATA_ROWS, batch, 7);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            assert_same_steps(
                &fused,
                &separate,
                z,
                data.as_ref(),
                3,
                &format!("offset {offset}"),
                true,
            );
        }));
        assert!(outcome.is_ok(), "offset {offset}: the step panicked");
    }
}

/// A user prox that leaves `out` as it is: the separate passes then keep
/// the previous contents of the output rows, and the temporary must still
/// be written before it is read.
struct WritesNothing;

impl Parameterized<f64> for WritesNothing {}

impl Prox<f64> for WritesNothing {
    fn prox(&self, _out: MatMut<'_, f64>, _v: MatRef<'_, f64>, _gamma: f64, _data: MatRef<'_, f64>) {}
    fn prox_vjp(
        &self,
        _v_bar: MatMut<'_, f64>,
        _v: MatRef<'_, f64>,
        _gamma: f64,
        _data: MatRef<'_, f64>,
        _cotangent: MatRef<'_, f64>,
    ) {
    }
}

#[test]
fn prox_writing_nothing_reads_no_scratch() {
    let op = Dense::new(gaussian(4, N, 8).as_ref() * 0.3).unwrap();
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.05,
        lambda: 0.5,
    };
    let model = LinearizedAdmm::new(N, 0, vec![Block::new(op, WritesNothing)], steps).unwrap();
    for batch in [0, 1, 3] {
        let z = gaussian(model.state_dim(), batch, 9);
        let data = Mat::<f64>::zeros(0, batch);
        let outputs = [0x00u8, 0xFF, 0x7F].map(|fill| {
            // The output starts as a copy of z, so the rows the prox skips are defined.
            let mut next = z.clone();
            step_with_fill(&model, next.as_mut(), z.as_ref(), data.as_ref(), fill);
            bits(next.as_ref())
        });
        assert_eq!(outputs[0], outputs[1], "batch {batch}");
        assert_eq!(outputs[0], outputs[2], "batch {batch}");
        assert!(
            outputs[0].iter().all(|&b| f64::from_bits(b).is_finite()),
            "batch {batch}"
        );
    }
}
