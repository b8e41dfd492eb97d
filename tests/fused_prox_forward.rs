//! Whole forward passes of linearized ADMM with the fused entry-wise prox
//! pass, compared with the same models with the forms hidden. The states,
//! iteration counts and statuses must agree bit for bit with one, two and
//! four threads, with and without Anderson acceleration.

mod common;

use common::{cast, recovery_batch};
use faer::Mat;
use optlayer::ops::{BoxSet, Dense, Identity, IndicatorPoint, L1Norm, LearnableDense, LinfBall, Zero};
use optlayer::splittings::{Block, LadmmSteps, LinearizedAdmm};
use optlayer::{AndersonOptions, ForwardOptions, ForwardResult, OptLayer, Prox, Scalar};
use optlayer_testing::prox_checks::HiddenForm;

fn block<T: Scalar>(
    op: impl optlayer::Operator<T> + 'static,
    prox: impl Prox<T> + 'static,
    opaque: bool,
) -> Block<T> {
    if opaque {
        Block::new(op, HiddenForm(prox))
    } else {
        Block::new(op, prox)
    }
}

/// Sparse recovery `min λ‖Θx‖₁ s.t. Ax = d`, with the point read from data
/// rows 2.. (the first two data rows are unused), a box on `x` and an ℓ∞
/// ball on `x / 2` carried by a zero block, so that every form is used.
fn model<T: Scalar>(theta: &Mat<f64>, a: &Mat<f64>, opaque: bool) -> LinearizedAdmm<T> {
    let (m, n) = (a.nrows(), a.ncols());
    let half = Mat::from_fn(n, n, |i, j| if i == j { 0.5 } else { 0.0 });
    let blocks = vec![
        block(
            LearnableDense::new("theta", cast(theta)).unwrap(),
            L1Norm::learnable("lambda", T::lit(0.6)).unwrap(),
            opaque,
        ),
        block(
            Dense::new(cast(a)).unwrap(),
            IndicatorPoint::from_data(2, m).unwrap(),
            opaque,
        ),
        block(
            Identity::new(n),
            BoxSet::uniform(T::lit(-3.0), T::lit(3.0)).unwrap(),
            opaque,
        ),
        block(
            Dense::new(cast(&half)).unwrap(),
            LinfBall::new(T::lit(1.25)).unwrap(),
            opaque,
        ),
        block(Identity::new(n), Zero, opaque),
    ];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.1,
        lambda: 0.9,
    };
    LinearizedAdmm::new(n, m + 2, blocks, steps).unwrap()
}

fn assert_same<T: Scalar>(a: &ForwardResult<T>, b: &ForwardResult<T>, label: &str) {
    assert_eq!(a.state.shape(), b.state.shape(), "{label}");
    for j in 0..a.state.ncols() {
        for i in 0..a.state.nrows() {
            assert_eq!(
                a.state[(i, j)].to_f64_lossless().to_bits(),
                b.state[(i, j)].to_f64_lossless().to_bits(),
                "{label}: state entry ({i}, {j})"
            );
        }
    }
    for (j, (sa, sb)) in a.samples.iter().zip(&b.samples).enumerate() {
        assert_eq!(sa.iterations, sb.iterations, "{label}: iterations of sample {j}");
        assert_eq!(sa.status, sb.status, "{label}: status of sample {j}");
        assert_eq!(sa.anderson, sb.anderson, "{label}: Anderson report of sample {j}");
    }
}

fn forward_passes<T: Scalar>(n: usize, m: usize, batches: &[usize], threads: &[usize], max_iters: usize) {
    for &batch in batches {
        let (theta, a, d) = recovery_batch(n, m, 2, batch, 40 + batch as u64);
        // Two unused rows on top of the data.
        let data = cast::<T>(&Mat::from_fn(m + 2, batch, |i, j| {
            if i < 2 { 9.0 } else { d[(i - 2, j)] }
        }));
        for &t in threads {
            for anderson in [false, true] {
                let mut options = ForwardOptions::new(max_iters, 1e-6).with_threads(t);
                if anderson {
                    options = options.with_anderson(AndersonOptions::default());
                }
                let fa = OptLayer::new(model::<T>(&theta, &a, false), options.clone()).unwrap();
                let fb = OptLayer::new(model::<T>(&theta, &a, true), options).unwrap();
                let ra = fa.forward(data.as_ref()).unwrap();
                let rb = fb.forward(data.as_ref()).unwrap();
                let label = format!(
                    "{} n {n}, batch {batch}, threads {t}, Anderson {anderson}",
                    T::NAME
                );
                assert_same(&ra, &rb, &label);
            }
        }
    }
}

#[test]
fn forward_passes_agree_f64() {
    forward_passes::<f64>(12, 6, &[1, 2, 5], &[1, 2], 3000);
}

#[test]
fn forward_passes_agree_f32() {
    forward_passes::<f32>(12, 6, &[1, 2, 5], &[1, 2], 3000);
}

/// A state of 5,840 entries with two samples on four threads: two blocks of
/// one column, whose steps run on two threads each.
#[test]
fn forward_passes_agree_with_steps_on_several_threads() {
    forward_passes::<f64>(640, 40, &[2], &[4], 40);
}
