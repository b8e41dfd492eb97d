//! Small problems shared by the integration tests.

#![allow(dead_code)]

use faer::Mat;
use optlayer::Scalar;
use optlayer::ops::{Dense, IndicatorPoint, L1Norm, LearnableDense, Normalization};
use optlayer::splittings::{Block, LadmmSteps, LinearizedAdmm};
use optlayer_testing::random::gaussian;

/// Builds `min ‖Θx‖₁ s.t. Ax = d` with α = 0.5, λ = 1, β = 1/(1 + ‖A‖₂),
/// with Θ learnable and optionally kept at unit spectral norm.
pub fn sparse_model<T: Scalar>(theta: &Mat<f64>, a: &Mat<f64>, normalize: bool) -> LinearizedAdmm<T> {
    let (m, n) = (a.nrows(), a.ncols());
    let a_norm = a.as_ref().singular_values().unwrap()[0];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 1.0 / (1.0 + a_norm),
        lambda: 1.0,
    };
    let mut theta_op = LearnableDense::new("theta", cast(theta)).unwrap();
    if normalize {
        theta_op = theta_op
            .with_normalization(Normalization::unit_spectral_norm())
            .unwrap();
    }
    let blocks = vec![
        Block::new(theta_op, L1Norm::new(T::one()).unwrap()),
        Block::new(
            Dense::new(cast(a)).unwrap(),
            IndicatorPoint::from_data(0, m).unwrap(),
        ),
    ];
    LinearizedAdmm::new(n, m, blocks, steps).unwrap()
}

pub fn cast<T: Scalar>(m: &Mat<f64>) -> Mat<T> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| T::lit(m[(i, j)]))
}

/// Returns a Gaussian `m x n` matrix with unit columns.
pub fn unit_column_matrix(m: usize, n: usize, seed: u64) -> Mat<f64> {
    let mut a = gaussian(m, n, seed);
    for j in 0..n {
        let norm = a.col(j).norm_l2();
        for i in 0..m {
            a[(i, j)] /= norm;
        }
    }
    a
}

/// Returns `I + G/(2‖G‖₂)` for a Gaussian `G`, a random matrix with
/// condition number at most 3. Linearized ADMM converges in a few thousand
/// iterations on sparse recovery problems built on it.
pub fn well_conditioned(n: usize, seed: u64) -> Mat<f64> {
    let g = gaussian(n, n, seed);
    let scale = 0.5 / g.as_ref().singular_values().unwrap()[0];
    Mat::from_fn(n, n, |i, j| if i == j { 1.0 } else { 0.0 } + scale * g[(i, j)])
}

/// Returns `(Θ, A, d)` for `batch` sparse recovery samples: `Θ` well
/// conditioned, `A` (`m x n`) with unit columns, and each `d = A x` where
/// `Θ x` has `k` nonzeros at random positions.
pub fn recovery_batch(
    n: usize,
    m: usize,
    k: usize,
    batch: usize,
    seed: u64,
) -> (Mat<f64>, Mat<f64>, Mat<f64>) {
    use faer::linalg::solvers::Solve;
    use rand::seq::index::sample;
    let theta = well_conditioned(n, seed);
    let a = unit_column_matrix(m, n, seed + 1);
    let values = gaussian(k, batch, seed + 2);
    let mut rng = optlayer_testing::random::rng(seed + 3);
    let mut y = Mat::<f64>::zeros(n, batch);
    for j in 0..batch {
        for (i, index) in sample(&mut rng, n, k).into_iter().enumerate() {
            y[(index, j)] = values[(i, j)];
        }
    }
    let x = theta.partial_piv_lu().solve(&y);
    let d = &a * &x;
    (theta, a, d)
}
