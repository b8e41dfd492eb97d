//! Linearized ADMM with dense operators multiplies by one stacked copy
//! `K = [K_1; K_2; …]` of their matrices. These tests compare its steps with
//! the products by each operator, check that a copy made stale by a
//! parameter write is not used, and that a restore refreshes it.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::{Mat, MatMut, MatRef, Par};
use optlayer_core::{Operator, Parameterized, Scalar, Splitting};
use optlayer_ops::{BoxSet, Dense, IndicatorPoint, L1Norm, LearnableDense};
use optlayer_splittings::{Block, LadmmSteps, LinearizedAdmm};
use optlayer_testing::random::gaussian;

const N: usize = 40;
const M: usize = 24;

fn cast<T: Scalar>(m: &Mat<f64>) -> Mat<T> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| T::lit(m[(i, j)]))
}

/// `min ‖Θx‖₁ + ι_box(Bx) s.t. Ax = d` with a learnable Θ (`N x N`), A
/// (`M x N`) and B (`10 x N`): 74 stacked rows, 2,960 entries.
fn model<T: Scalar>(theta: &Mat<f64>) -> LinearizedAdmm<T> {
    let scale = 1.0 / (N as f64).sqrt();
    let a = gaussian(M, N, 2).as_ref() * scale;
    let b = gaussian(10, N, 3).as_ref() * scale;
    let blocks = vec![
        Block::new(
            LearnableDense::new("theta", cast::<T>(theta)).unwrap(),
            L1Norm::new(T::lit(0.5)).unwrap(),
        ),
        Block::new(
            Dense::new(cast::<T>(&a)).unwrap(),
            IndicatorPoint::from_data(0, M).unwrap(),
        ),
        Block::new(
            Dense::new(cast::<T>(&b)).unwrap(),
            BoxSet::uniform(T::lit(-0.3), T::lit(0.3)).unwrap(),
        ),
    ];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.05,
        lambda: 0.7,
    };
    LinearizedAdmm::new(N, M, blocks, steps).unwrap()
}

fn theta0() -> Mat<f64> {
    gaussian(N, N, 1).as_ref() * (1.0 / (N as f64).sqrt())
}

/// Returns one step of `model` from `z` with `data`.
fn step<T: Scalar>(model: &LinearizedAdmm<T>, z: MatRef<'_, T>, data: MatRef<'_, T>) -> Mat<T> {
    let mut next = Mat::<T>::zeros(z.nrows(), z.ncols());
    step_into(model, next.as_mut(), z, data);
    next
}

fn step_into<T: Scalar>(
    model: &LinearizedAdmm<T>,
    next: MatMut<'_, T>,
    z: MatRef<'_, T>,
    data: MatRef<'_, T>,
) {
    let mut buffer = MemBuffer::new(model.step_scratch(z.ncols(), Par::Seq));
    model.step(next, z, data, Par::Seq, MemStack::new(&mut buffer));
}

/// Largest `|a − b| / (1 + |b|)` over the entries.
fn max_relative_gap<T: Scalar>(a: MatRef<'_, T>, b: MatRef<'_, T>) -> f64 {
    let mut gap = 0.0_f64;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            let (x, y) = (a[(i, j)].to_f64_lossless(), b[(i, j)].to_f64_lossless());
            gap = gap.max((x - y).abs() / (1.0 + y.abs()));
        }
    }
    gap
}

fn view<T>(m: &Mat<T>, row_major: bool) -> MatRef<'_, T> {
    if row_major { m.transpose() } else { m.as_ref() }
}

/// Runs 30 steps of the stacked and the separate model from one random
/// state and returns the largest gap between their states after one step
/// and after all of them.
fn stacked_against_separate<T: Scalar>(batch: usize, row_major: bool) -> (f64, f64) {
    let stacked = model::<T>(&theta0());
    let separate = model::<T>(&theta0()).without_stacked_copy();
    assert!(stacked.uses_stacked_copy());
    assert!(!separate.uses_stacked_copy());

    let store = |m: &Mat<T>| {
        if row_major {
            m.transpose().to_owned()
        } else {
            m.clone()
        }
    };
    let data = store(&cast::<T>(&gaussian(M, batch, 5)));
    let start = cast::<T>(&gaussian(stacked.state_dim(), batch, 6));
    let (mut a, mut b) = (store(&start), store(&start));
    let (mut a_next, mut b_next) = (a.clone(), b.clone());
    let mut first = f64::NAN;

    for iteration in 0..30 {
        let d = view(&data, row_major);
        let a_view = if row_major {
            a_next.as_mut().transpose_mut()
        } else {
            a_next.as_mut()
        };
        step_into(&stacked, a_view, view(&a, row_major), d);
        let b_view = if row_major {
            b_next.as_mut().transpose_mut()
        } else {
            b_next.as_mut()
        };
        step_into(&separate, b_view, view(&b, row_major), d);
        if iteration == 0 {
            first = max_relative_gap(view(&a_next, row_major), view(&b_next, row_major));
        }
        std::mem::swap(&mut a, &mut a_next);
        std::mem::swap(&mut b, &mut b_next);
    }
    (first, max_relative_gap(view(&a, row_major), view(&b, row_major)))
}

#[test]
fn stacked_steps_match_separate_products() {
    // One column takes the transposed view, 2 to 64 the transposed copy
    // with chunks from 13 columns on; row-major states too.
    for (batch, row_major) in [(1, false), (2, false), (7, false), (32, false), (7, true)] {
        let (first, last) = stacked_against_separate::<f64>(batch, row_major);
        assert!(
            first < 1e-14,
            "f64, batch {batch}, row-major {row_major}: {first:e}"
        );
        assert!(
            last < 1e-12,
            "f64, batch {batch}, row-major {row_major}: {last:e}"
        );
        let (first, last) = stacked_against_separate::<f32>(batch, row_major);
        assert!(
            first < 1e-5,
            "f32, batch {batch}, row-major {row_major}: {first:e}"
        );
        assert!(last < 1e-4, "f32, batch {batch}, row-major {row_major}: {last:e}");
    }
}

#[test]
fn small_models_skip_the_stack() {
    // 20 x 20 and 10 x 20 stack into 600 entries, which faer would multiply
    // with two kernels depending on the batch width.
    let blocks = vec![
        Block::new(
            Dense::new(gaussian(20, 20, 1)).unwrap(),
            L1Norm::new(1.0).unwrap(),
        ),
        Block::new(
            Dense::new(gaussian(10, 20, 2)).unwrap(),
            IndicatorPoint::from_data(0, 10).unwrap(),
        ),
    ];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.01,
        lambda: 1.0,
    };
    let small = LinearizedAdmm::new(20, 10, blocks, steps).unwrap();
    assert!(!small.uses_stacked_copy());
    let single = vec![Block::new(
        Dense::new(gaussian(60, 60, 3)).unwrap(),
        L1Norm::new(1.0).unwrap(),
    )];
    let single = LinearizedAdmm::new(60, 0, single, steps).unwrap();
    assert!(!single.uses_stacked_copy());
}

#[test]
fn written_parameter_used_before_update() {
    let mut written = model::<f64>(&theta0());
    let new_theta = theta0().as_ref() * 1.5;
    written.param_mut(0).copy_from(&new_theta);
    assert!(!written.uses_stacked_copy());

    let data = gaussian(M, 5, 8);
    let z = gaussian(written.state_dim(), 5, 9);
    let fresh = model::<f64>(&new_theta).without_stacked_copy();
    let old = model::<f64>(&theta0());
    let expected = step(&fresh, z.as_ref(), data.as_ref());
    let before = step(&written, z.as_ref(), data.as_ref());
    assert!(max_relative_gap(before.as_ref(), expected.as_ref()) < 1e-14);
    // The old Θ gives another step, so the comparison can tell them apart.
    let stale = step(&old, z.as_ref(), data.as_ref());
    assert!(max_relative_gap(stale.as_ref(), expected.as_ref()) > 1e-3);

    written.after_param_update().unwrap();
    assert!(written.uses_stacked_copy());
    assert_eq!(written.beta(), fresh.beta());
    let after = step(&written, z.as_ref(), data.as_ref());
    assert!(max_relative_gap(after.as_ref(), expected.as_ref()) < 1e-14);
}

#[test]
fn restore_refreshes_stacked_copy() {
    // A checkpoint restore writes the parameters, then the warm-start
    // state, without `after_param_update`.
    let new_theta = theta0().as_ref() * 0.5;
    let mut trained = model::<f64>(&theta0());
    trained.param_mut(0).copy_from(&new_theta);
    trained.after_param_update().unwrap();
    let saved = trained.warm_start_state();

    let mut restored = model::<f64>(&theta0());
    restored.param_mut(0).copy_from(&new_theta);
    restored.set_warm_start_state(&saved).unwrap();
    assert!(restored.uses_stacked_copy());
    let data = gaussian(M, 4, 10);
    let z = gaussian(trained.state_dim(), 4, 11);
    assert_eq!(
        step(&restored, z.as_ref(), data.as_ref()),
        step(&trained, z.as_ref(), data.as_ref())
    );
}

/// A dense operator whose `dense()` returns a matrix of another shape.
struct WrongShape {
    inner: Dense<f64>,
    other: Mat<f64>,
}

impl Parameterized<f64> for WrongShape {}

impl Operator<f64> for WrongShape {
    fn nrows(&self) -> usize {
        self.inner.nrows()
    }

    fn ncols(&self) -> usize {
        self.inner.ncols()
    }

    fn apply(
        &self,
        out: MatMut<'_, f64>,
        accum: faer::Accum,
        alpha: f64,
        x: MatRef<'_, f64>,
        par: Par,
        stack: &mut MemStack,
    ) {
        self.inner.apply(out, accum, alpha, x, par, stack);
    }

    fn apply_adjoint(
        &self,
        out: MatMut<'_, f64>,
        accum: faer::Accum,
        alpha: f64,
        y: MatRef<'_, f64>,
        par: Par,
        stack: &mut MemStack,
    ) {
        self.inner.apply_adjoint(out, accum, alpha, y, par, stack);
    }

    fn dense(&self) -> Option<MatRef<'_, f64>> {
        Some(self.other.as_ref())
    }
}

#[test]
fn misshapen_dense_matrix_skips_the_stack() {
    let a = gaussian(M, N, 2);
    let blocks = vec![
        Block::new(Dense::new(theta0()).unwrap(), L1Norm::new(0.5).unwrap()),
        Block::new(
            WrongShape {
                inner: Dense::new(a).unwrap(),
                other: Mat::zeros(M + 1, N),
            },
            IndicatorPoint::from_data(0, M).unwrap(),
        ),
    ];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.01,
        lambda: 0.7,
    };
    let model = LinearizedAdmm::new(N, M, blocks, steps).unwrap();
    assert!(!model.uses_stacked_copy());
    let data = gaussian(M, 3, 12);
    let z = gaussian(model.state_dim(), 3, 13);
    let next = step(&model, z.as_ref(), data.as_ref());
    assert!(next.as_ref().is_all_finite());
}

#[test]
fn failed_update_leaves_the_copy_unused() {
    // The ℓ1 weight is the parameter after Θ. A NaN weight makes the update
    // fail after Θ's operator has updated, so the copy must stay unused.
    let a = gaussian(M, N, 2).as_ref() * (1.0 / (N as f64).sqrt());
    let blocks = vec![
        Block::new(
            LearnableDense::new("theta", theta0()).unwrap(),
            L1Norm::learnable("weight", 0.5).unwrap(),
        ),
        Block::new(Dense::new(a).unwrap(), IndicatorPoint::from_data(0, M).unwrap()),
    ];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.05,
        lambda: 0.7,
    };
    let mut model = LinearizedAdmm::new(N, M, blocks, steps).unwrap();
    assert!(model.uses_stacked_copy());
    model.param_mut(1)[(0, 0)] = f64::NAN;
    assert!(model.after_param_update().is_err());
    assert!(!model.uses_stacked_copy());
}

#[test]
fn per_entry_weights_skip_the_stack() {
    // An ℓ1 norm with one weight per entry has no entry-wise form.
    let a = gaussian(M, N, 2).as_ref() * (1.0 / (N as f64).sqrt());
    let blocks = vec![
        Block::new(
            Dense::new(theta0()).unwrap(),
            L1Norm::with_weights(vec![0.5; N]).unwrap(),
        ),
        Block::new(Dense::new(a).unwrap(), IndicatorPoint::from_data(0, M).unwrap()),
    ];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.05,
        lambda: 0.7,
    };
    let model = LinearizedAdmm::new(N, M, blocks, steps).unwrap();
    assert!(!model.uses_stacked_copy());
}
