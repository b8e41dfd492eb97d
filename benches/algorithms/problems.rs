//! The three benchmark problems at realistic sizes, and every splitting that
//! solves each of them, built with counted operators and proxes.
//!
//! The constructions follow tests/conformance.rs, which checks the same
//! models on small instances against exact solutions.

use std::sync::Arc;

use faer::Mat;
use optlayer::ops::{
    AffineSet, BoxConstrained, BoxSet, Dense, Identity, IndicatorPoint, L1Norm, LeastSquares,
    SquaredDistance, Zero,
};
use optlayer::problems::sparse_inverse::{SparseInverseConfig, SparseInverseProblem};
use optlayer::splittings::{
    Acceleration, Block, CondatVu, DavisYin, DavisYinSteps, DouglasRachford, LadmmSteps, LinearizedAdmm,
    PrimalDualSteps, ProximalGradient,
};
use optlayer_testing::random::{gaussian, rng};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::counting::{CountedOperator, CountedProx, Counter};
use crate::least_squares_prox::LeastSquaresProx;

/// Samples per data batch, for every problem.
pub const BATCH: usize = 16;

/// Returns `A` scaled by `1/√rows`, so that its columns have norm close to 1.
fn scaled_gaussian(nrows: usize, ncols: usize, seed: u64) -> Mat<f64> {
    let scale = (nrows as f64).sqrt().recip();
    let g = gaussian(nrows, ncols, seed);
    Mat::from_fn(nrows, ncols, |i, j| scale * g[(i, j)])
}

/// Returns the spectral norm squared, the Lipschitz constant of the
/// gradient of `½‖Ax − d‖²`.
fn spectral_norm_squared(a: &Mat<f64>) -> f64 {
    let sigma = a
        .as_ref()
        .singular_values()
        .expect("the SVD of a Gaussian matrix converges")[0];
    sigma * sigma
}

fn least_squares(a: &Mat<f64>, counter: &Arc<Counter>) -> LeastSquares<f64> {
    let operator = CountedOperator::new(Dense::new(a.clone()).unwrap(), counter);
    LeastSquares::new(operator).unwrap()
}

/// `min ½‖Ax − d‖² + μ‖x‖₁ s.t. l ≤ x ≤ u` with `A` 200 x 100.
///
/// Each data column is `A x₀ + 0.1 e` for a sparse `x₀` (each entry
/// nonzero with probability 0.2, N(0, 1) when nonzero) and Gaussian noise
/// `e`, so that the ℓ1 term and both bounds are active at the solution.
pub struct LassoBox {
    pub a: Mat<f64>,
    pub data: Mat<f64>,
}

impl LassoBox {
    pub const MU: f64 = 0.1;
    pub const LOWER: f64 = -0.4;
    pub const UPPER: f64 = 0.6;

    pub fn generate() -> Self {
        let (m, n) = (200, 100);
        let a = scaled_gaussian(m, n, 101);
        let mut random = rng(102);
        let signal = Mat::from_fn(n, BATCH, |_, _| {
            let keep = random.random_bool(0.2);
            let value: f64 = StandardNormal.sample(&mut random);
            if keep { value } else { 0.0 }
        });
        let noise = gaussian(m, BATCH, 103);
        let clean = &a * &signal;
        let data = Mat::from_fn(m, BATCH, |i, j| clean[(i, j)] + 0.1 * noise[(i, j)]);
        Self { a, data }
    }

    /// Returns `‖x − clip(soft(x − Aᵀ(Ax − d), μ), l, u)‖` per sample, the
    /// norm of the proximal-gradient mapping with step 1, zero exactly at the
    /// minimizer.
    pub fn optimality(&self, x: &Mat<f64>) -> Vec<f64> {
        let gradient = self.a.transpose() * (&self.a * x - &self.data);
        (0..x.ncols())
            .map(|j| {
                let mut sum = 0.0f64;
                for i in 0..x.nrows() {
                    let v = x[(i, j)] - gradient[(i, j)];
                    let soft = v.signum() * (v.abs() - Self::MU).max(0.0);
                    let mapped = soft.clamp(Self::LOWER, Self::UPPER);
                    sum += (x[(i, j)] - mapped).powi(2);
                }
                sum.sqrt()
            })
            .collect()
    }

    fn box_l1(&self, counter: &Arc<Counter>) -> CountedProx {
        let n = self.a.ncols();
        let prox = BoxConstrained::new(
            L1Norm::new(Self::MU).unwrap(),
            vec![Self::LOWER; n],
            vec![Self::UPPER; n],
        )
        .unwrap();
        CountedProx::new(prox, counter)
    }

    fn box_set(&self, counter: &Arc<Counter>) -> CountedProx {
        CountedProx::new(BoxSet::uniform(Self::LOWER, Self::UPPER).unwrap(), counter)
    }

    fn l1(&self, counter: &Arc<Counter>) -> CountedProx {
        CountedProx::new(L1Norm::new(Self::MU).unwrap(), counter)
    }

    pub fn proximal_gradient(
        &self,
        acceleration: Acceleration,
        counter: &Arc<Counter>,
    ) -> ProximalGradient<f64> {
        let f = least_squares(&self.a, counter);
        ProximalGradient::new(f, self.box_l1(counter), self.a.nrows(), acceleration).unwrap()
    }

    pub fn davis_yin(&self, counter: &Arc<Counter>) -> DavisYin<f64> {
        DavisYin::new(
            self.a.ncols(),
            self.a.nrows(),
            Box::new(least_squares(&self.a, counter)),
            Box::new(self.box_set(counter)),
            Box::new(self.l1(counter)),
            DavisYinSteps::default(),
        )
        .unwrap()
    }

    /// Douglas–Rachford with `g` the ℓ1 norm with the box and `h` the
    /// least-squares term, with `γ = 1/‖A‖₂²` (the Davis–Yin default) and `λ = 1`.
    pub fn douglas_rachford(&self, counter: &Arc<Counter>) -> DouglasRachford<f64> {
        let gamma = spectral_norm_squared(&self.a).recip();
        let h = CountedProx::new(LeastSquaresProx::new(&self.a, gamma, counter), counter);
        DouglasRachford::new(
            self.a.ncols(),
            self.a.nrows(),
            Box::new(self.box_l1(counter)),
            Box::new(h),
            gamma,
            1.0,
        )
        .unwrap()
    }

    pub fn condat_vu(&self, counter: &Arc<Counter>) -> CondatVu<f64> {
        CondatVu::with_smooth(
            self.a.nrows(),
            Box::new(least_squares(&self.a, counter)),
            Box::new(Identity::new(self.a.ncols())),
            Box::new(self.box_set(counter)),
            Box::new(self.l1(counter)),
            PrimalDualSteps::default(),
        )
        .unwrap()
    }

    pub fn linearized_admm(&self, counter: &Arc<Counter>) -> LinearizedAdmm<f64> {
        let (m, n) = (self.a.nrows(), self.a.ncols());
        let residual = SquaredDistance::from_data(1.0, 0, m).unwrap();
        let blocks = vec![
            Block::new(
                CountedOperator::new(Dense::new(self.a.clone()).unwrap(), counter),
                CountedProx::new(residual, counter),
            ),
            Block::new(Identity::new(n), self.l1(counter)),
            Block::new(Identity::new(n), self.box_set(counter)),
        ];
        let steps = LadmmSteps {
            alpha: 0.5,
            beta: 0.5,
            lambda: 1.0,
        };
        LinearizedAdmm::new(n, m, blocks, steps).unwrap()
    }
}

/// `min ‖Θx‖₁ s.t. Ax = d`: the reference sparse inverse problem
/// (`n = 250`, `m = 100`, `r = 50`, seed 0) with the initial `Θ₀` that
/// [`SparseInverseProblem::generate`] draws, on its first 16 training pairs.
pub struct SparseRecovery {
    pub theta: Mat<f64>,
    pub a: Mat<f64>,
    pub data: Mat<f64>,
    pub steps: LadmmSteps,
}

impl SparseRecovery {
    pub fn generate() -> Self {
        let config = SparseInverseConfig {
            train_samples: BATCH,
            test_samples: 1,
            ..SparseInverseConfig::default()
        };
        let problem = SparseInverseProblem::generate(&config).unwrap();
        let steps = problem.reference_steps().unwrap();
        Self {
            data: problem.train.data().to_owned(),
            theta: problem.theta0,
            a: problem.a,
            steps,
        }
    }

    /// Linearized ADMM with the reference steps `α = 0.5`, `λ = 1`,
    /// `β = 1/(1 + ‖A‖₂)`, as in the sparse inverse example.
    pub fn linearized_admm(&self, counter: &Arc<Counter>) -> LinearizedAdmm<f64> {
        let (m, n) = (self.a.nrows(), self.a.ncols());
        let blocks = vec![
            Block::new(
                CountedOperator::new(Dense::new(self.theta.clone()).unwrap(), counter),
                CountedProx::new(L1Norm::new(1.0).unwrap(), counter),
            ),
            Block::new(
                CountedOperator::new(Dense::new(self.a.clone()).unwrap(), counter),
                CountedProx::new(IndicatorPoint::from_data(0, m).unwrap(), counter),
            ),
        ];
        LinearizedAdmm::new(n, m, blocks, self.steps).unwrap()
    }

    /// Chambolle–Pock with `K = Θ`, `g` the indicator of `{x : Ax = d}` and
    /// `h = ‖·‖₁`.
    pub fn condat_vu(&self, counter: &Arc<Counter>) -> CondatVu<f64> {
        CondatVu::new(
            self.a.nrows(),
            Box::new(CountedOperator::new(
                Dense::new(self.theta.clone()).unwrap(),
                counter,
            )),
            Box::new(CountedProx::new(
                AffineSet::from_data(self.a.as_ref()).unwrap(),
                counter,
            )),
            Box::new(CountedProx::new(L1Norm::new(1.0).unwrap(), counter)),
            PrimalDualSteps::default(),
        )
        .unwrap()
    }
}

/// `min ½‖Ax − d‖² s.t. Cx = b` with `A` 150 x 100 and `C` 20 x 100, both
/// Gaussian with columns scaled to norm about 1, a Gaussian `b` and Gaussian
/// data.
pub struct EqualityLeastSquares {
    pub a: Mat<f64>,
    pub c: Mat<f64>,
    pub b: Vec<f64>,
    pub data: Mat<f64>,
}

impl EqualityLeastSquares {
    pub fn generate() -> Self {
        let a = scaled_gaussian(150, 100, 301);
        let c = scaled_gaussian(20, 100, 302);
        let b = gaussian(20, 1, 303).col(0).iter().copied().collect();
        let data = gaussian(150, BATCH, 304);
        Self { a, c, b, data }
    }

    /// Returns `b` repeated for every sample.
    pub fn b_batch(&self) -> Mat<f64> {
        Mat::from_fn(self.b.len(), self.data.ncols(), |i, _| self.b[i])
    }

    fn affine(&self, counter: &Arc<Counter>) -> CountedProx {
        CountedProx::new(AffineSet::new(self.c.as_ref(), self.b.clone()).unwrap(), counter)
    }

    pub fn proximal_gradient(
        &self,
        acceleration: Acceleration,
        counter: &Arc<Counter>,
    ) -> ProximalGradient<f64> {
        let f = least_squares(&self.a, counter);
        ProximalGradient::new(f, self.affine(counter), self.a.nrows(), acceleration).unwrap()
    }

    pub fn davis_yin(&self, counter: &Arc<Counter>) -> DavisYin<f64> {
        DavisYin::new(
            self.a.ncols(),
            self.a.nrows(),
            Box::new(least_squares(&self.a, counter)),
            Box::new(self.affine(counter)),
            Box::new(CountedProx::new(Zero, counter)),
            DavisYinSteps::default(),
        )
        .unwrap()
    }

    /// Douglas–Rachford with `g` the indicator of `{x : Cx = b}` and `h` the
    /// least-squares term, with `γ = 1/‖A‖₂²` and `λ = 1`.
    pub fn douglas_rachford(&self, counter: &Arc<Counter>) -> DouglasRachford<f64> {
        let gamma = spectral_norm_squared(&self.a).recip();
        let h = CountedProx::new(LeastSquaresProx::new(&self.a, gamma, counter), counter);
        DouglasRachford::new(
            self.a.ncols(),
            self.a.nrows(),
            Box::new(self.affine(counter)),
            Box::new(h),
            gamma,
            1.0,
        )
        .unwrap()
    }

    /// Condat–Vũ with `f` the least-squares term, `K = C`, `g = 0` and `h`
    /// the indicator of `{b}`.
    pub fn condat_vu(&self, counter: &Arc<Counter>) -> CondatVu<f64> {
        CondatVu::with_smooth(
            self.a.nrows(),
            Box::new(least_squares(&self.a, counter)),
            Box::new(CountedOperator::new(Dense::new(self.c.clone()).unwrap(), counter)),
            Box::new(CountedProx::new(Zero, counter)),
            Box::new(CountedProx::new(
                IndicatorPoint::fixed(self.b.clone()).unwrap(),
                counter,
            )),
            PrimalDualSteps::default(),
        )
        .unwrap()
    }

    pub fn linearized_admm(&self, counter: &Arc<Counter>) -> LinearizedAdmm<f64> {
        let (m, n) = (self.a.nrows(), self.a.ncols());
        let blocks = vec![
            Block::new(
                CountedOperator::new(Dense::new(self.a.clone()).unwrap(), counter),
                CountedProx::new(SquaredDistance::from_data(1.0, 0, m).unwrap(), counter),
            ),
            Block::new(
                CountedOperator::new(Dense::new(self.c.clone()).unwrap(), counter),
                CountedProx::new(IndicatorPoint::fixed(self.b.clone()).unwrap(), counter),
            ),
        ];
        let steps = LadmmSteps {
            alpha: 0.5,
            beta: 0.5,
            lambda: 1.0,
        };
        LinearizedAdmm::new(n, m, blocks, steps).unwrap()
    }
}
