//! Linearized ADMM and proximal gradient evaluate a prox with an entry-wise
//! form (`Prox::entrywise`) inside one pass with their own updates. These tests
//! compare that pass with the separate passes around `Prox::prox`,
//! which the same model takes when its proxes hide their forms: the states
//! must agree bit for bit.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::{Mat, MatMut, MatRef, Par};
use optlayer_core::{Prox, Scalar, Splitting};
use optlayer_ops::{BoxSet, Dense, IndicatorPoint, L1Norm, LeastSquares, LinfBall, Zero};
use optlayer_splittings::{Acceleration, Block, LadmmSteps, LinearizedAdmm, ProximalGradient};
use optlayer_testing::prox_checks::HiddenForm;
use optlayer_testing::random::gaussian;

const N: usize = 37;
const DATA_ROWS: usize = 14;
const LAMBDA: f64 = 0.8;

fn cast<T: Scalar>(m: &Mat<f64>) -> Mat<T> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| T::lit(m[(i, j)]))
}

/// A model with one block of every entry-wise form: an ℓ1 norm, the point
/// of data rows 2 to 12, a box, the zero function and an ℓ∞ ball. With
/// `opaque`, the same proxes hide their forms. The model multiplies by
/// each operator apart (`without_stacked_copy`), since the sum of the
/// stacked adjoint product rounds differently.
fn model<T: Scalar>(opaque: bool) -> LinearizedAdmm<T> {
    let operator = |rows: usize, seed: u64| {
        let scale = 1.0 / (N as f64).sqrt();
        Dense::new(cast::<T>(&(gaussian(rows, N, seed).as_ref() * scale))).unwrap()
    };
    fn block<T: Scalar>(op: Dense<T>, prox: impl Prox<T> + 'static, opaque: bool) -> Block<T> {
        if opaque {
            Block::new(op, HiddenForm(prox))
        } else {
            Block::new(op, prox)
        }
    }
    let blocks = vec![
        block(operator(N, 1), L1Norm::new(T::lit(0.7)).unwrap(), opaque),
        block(operator(11, 2), IndicatorPoint::from_data(2, 11).unwrap(), opaque),
        block(
            operator(9, 3),
            BoxSet::uniform(T::lit(-0.3), T::lit(0.4)).unwrap(),
            opaque,
        ),
        block(operator(5, 4), Zero, opaque),
        block(operator(6, 5), LinfBall::new(T::lit(0.2)).unwrap(), opaque),
    ];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.05,
        lambda: LAMBDA,
    };
    LinearizedAdmm::new(N, DATA_ROWS, blocks, steps)
        .unwrap()
        .without_stacked_copy()
}

/// Runs 25 steps of both models from the same random state, with the state
/// and data stored column-major or row-major, and compares every state.
fn compare<T: Scalar>(row_major: bool) {
    let (fused, separate) = (model::<T>(false), model::<T>(true));
    for block in fused.blocks() {
        assert!(block.prox().entrywise(T::lit(LAMBDA)).is_some());
    }
    for block in separate.blocks() {
        assert!(block.prox().entrywise(T::lit(LAMBDA)).is_none());
    }
    assert!(!fused.uses_stacked_copy());
    assert!(!separate.uses_stacked_copy());
    let batch = 7;
    let dim = fused.state_dim();
    let store = |m: Mat<T>| if row_major { m.transpose().to_owned() } else { m };
    fn view<T>(m: &Mat<T>, row_major: bool) -> MatRef<'_, T> {
        if row_major { m.transpose() } else { m.as_ref() }
    }
    fn view_mut<T>(m: &mut Mat<T>, row_major: bool) -> MatMut<'_, T> {
        if row_major {
            m.as_mut().transpose_mut()
        } else {
            m.as_mut()
        }
    }
    let data = store(cast::<T>(&gaussian(DATA_ROWS, batch, 6)));
    let start = store(cast::<T>(&gaussian(dim, batch, 7)));
    let mut states = [start.clone(), start.clone(), start.clone(), start];
    let mut buffer = MemBuffer::new(fused.step_scratch(batch, Par::Seq));
    let stack = MemStack::new(&mut buffer);
    for iteration in 0..25 {
        let [z_fused, next_fused, z_separate, next_separate] = &mut states;
        let d = view(&data, row_major);
        fused.step(
            view_mut(next_fused, row_major),
            view(z_fused, row_major),
            d,
            Par::Seq,
            stack,
        );
        separate.step(
            view_mut(next_separate, row_major),
            view(z_separate, row_major),
            d,
            Par::Seq,
            stack,
        );
        let (a, b) = (view(next_fused, row_major), view(next_separate, row_major));
        for j in 0..batch {
            for i in 0..dim {
                assert_eq!(
                    a[(i, j)].to_f64_lossless().to_bits(),
                    b[(i, j)].to_f64_lossless().to_bits(),
                    "iteration {iteration}, entry ({i}, {j}), row-major {row_major}"
                );
            }
        }
        states.swap(0, 1);
        states.swap(2, 3);
    }
}

#[test]
fn fused_pass_matches_f64() {
    compare::<f64>(false);
}

#[test]
fn fused_pass_matches_f32() {
    compare::<f32>(false);
}

#[test]
fn fused_pass_on_row_major_states() {
    compare::<f64>(true);
    compare::<f32>(true);
}

/// Builds `min ½‖Ax − d_rows‖² + g(x)` by proximal gradient (plain or
/// FISTA) for `g` of each entry-wise form, with the form hidden or not. The
/// point form reads data rows 2 to 2 + N of data with N + 5 rows.
fn proximal_gradient<T: Scalar>(
    form: usize,
    acceleration: Acceleration,
    hidden: bool,
) -> ProximalGradient<T> {
    let m = N + 5;
    let a = cast::<T>(&(gaussian(m, N, 11).as_ref() * (1.0 / (m as f64).sqrt())));
    let smooth = LeastSquares::new(Dense::new(a).unwrap()).unwrap();
    fn boxed<T: Scalar>(prox: impl Prox<T> + 'static, hidden: bool) -> Box<dyn Prox<T>> {
        if hidden {
            Box::new(HiddenForm(prox))
        } else {
            Box::new(prox)
        }
    }
    let prox = match form {
        0 => boxed(L1Norm::new(T::lit(0.3)).unwrap(), hidden),
        1 => boxed(BoxSet::uniform(T::lit(-0.2), T::lit(0.25)).unwrap(), hidden),
        2 => boxed(LinfBall::new(T::lit(0.1)).unwrap(), hidden),
        3 => boxed(Zero, hidden),
        _ => boxed(IndicatorPoint::from_data(2, N).unwrap(), hidden),
    };
    ProximalGradient::from_boxed(Box::new(smooth), prox, m, acceleration).unwrap()
}

/// Runs 25 steps of proximal gradient with the form fused and hidden from
/// the same random state, and compares every state bit for bit. The plain
/// iteration is also compared with `x⁺ = prox(y − γ∇f(y))` computed by
/// separate calls on a copy `y` of `x`, since both of its paths read `x` in
/// place.
fn compare_proximal_gradient<T: Scalar>() {
    for form in 0..5 {
        for acceleration in [Acceleration::None, Acceleration::Fista] {
            let fused = proximal_gradient::<T>(form, acceleration, false);
            let separate = proximal_gradient::<T>(form, acceleration, true);
            let gamma = fused.gamma();
            assert!(fused.prox().entrywise(gamma).is_some());
            assert!(separate.prox().entrywise(gamma).is_none());
            let batch = 6;
            let dim = fused.state_dim();
            let data = cast::<T>(&gaussian(N + 5, batch, 12));
            let mut z = cast::<T>(&gaussian(dim, batch, 13));
            if acceleration == Acceleration::Fista {
                // The momentum counter starts at 1.
                for j in 0..batch {
                    z[(dim - 1, j)] = T::one();
                }
            }
            let (mut a, mut b) = (z.clone(), z);
            let (mut a_next, mut b_next) = (a.clone(), b.clone());
            let mut buffer = MemBuffer::new(fused.step_scratch(batch, Par::Seq));
            let stack = MemStack::new(&mut buffer);
            for iteration in 0..25 {
                fused.step(a_next.as_mut(), a.as_ref(), data.as_ref(), Par::Seq, stack);
                separate.step(b_next.as_mut(), b.as_ref(), data.as_ref(), Par::Seq, stack);
                let label = format!("form {form}, {acceleration:?}, iteration {iteration}");
                assert_same_bits(a_next.as_ref(), b_next.as_ref(), &label);
                if acceleration == Acceleration::None {
                    let expected = separate_calls(&fused, a.as_ref(), data.as_ref(), stack);
                    assert_same_bits(
                        a_next.as_ref(),
                        expected.as_ref(),
                        &format!("{label}, separate calls"),
                    );
                }
                std::mem::swap(&mut a, &mut a_next);
                std::mem::swap(&mut b, &mut b_next);
            }
        }
    }
}

/// Returns `prox_{γg}(y − γ∇f(y; d))` for a copy `y` of the state, from
/// separate calls of the model's terms.
fn separate_calls<T: Scalar>(
    model: &ProximalGradient<T>,
    z: MatRef<'_, T>,
    data: MatRef<'_, T>,
    stack: &mut MemStack,
) -> Mat<T> {
    let gamma = model.gamma();
    let y = z.to_owned();
    let mut v = Mat::<T>::zeros(y.nrows(), y.ncols());
    model
        .smooth()
        .gradient(v.as_mut(), y.as_ref(), data, Par::Seq, stack);
    for j in 0..y.ncols() {
        for i in 0..y.nrows() {
            v[(i, j)] = y[(i, j)] - gamma * v[(i, j)];
        }
    }
    let mut out = Mat::<T>::zeros(y.nrows(), y.ncols());
    model.prox().prox(out.as_mut(), v.as_ref(), gamma, data);
    out
}

fn assert_same_bits<T: Scalar>(a: MatRef<'_, T>, b: MatRef<'_, T>, label: &str) {
    for j in 0..b.ncols() {
        for i in 0..b.nrows() {
            assert_eq!(
                a[(i, j)].to_f64_lossless().to_bits(),
                b[(i, j)].to_f64_lossless().to_bits(),
                "{label}, entry ({i}, {j})"
            );
        }
    }
}

#[test]
fn proximal_gradient_fused_f64() {
    compare_proximal_gradient::<f64>();
}

#[test]
fn proximal_gradient_fused_f32() {
    compare_proximal_gradient::<f32>();
}
