//! The prox of the least-squares term, for Douglas–Rachford splitting.

use std::sync::Arc;

use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::{solve_lower_triangular_in_place, solve_upper_triangular_in_place};
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use optlayer::{Parameterized, Prox};
use optlayer_testing::fd::{FdOptions, check_prox_vjp};
use optlayer_testing::random::gaussian;

use crate::counting::Counter;

/// The prox of `f(x; d) = ½‖Ax − d‖²`, with `d` in rows `0..m` of the data
/// batch, for one step `γ₀` fixed at construction:
///
/// ```text
/// prox_{γ₀f}(v) = (I + γ₀AᵀA)⁻¹ (v + γ₀Aᵀd)
/// ```
///
/// computed with the Cholesky factor `L` of `I + γ₀AᵀA`, which is factorized
/// once. One evaluation costs one product with `Aᵀ` (counted) and two
/// triangular solves with the `n x n` factor (not counted, about as many
/// flops as one product with an `n x n` matrix). The map is affine, so its
/// Jacobian is the symmetric matrix `(I + γ₀AᵀA)⁻¹` everywhere.
///
/// The library has no such prox because it needs a factorization of a
/// matrix that changes with `A` and `γ`. Douglas–Rachford calls its proxes
/// with one fixed `γ`, so one factorization serves the whole run.
pub struct LeastSquaresProx {
    a: Mat<f64>,
    gamma: f64,
    factor: Mat<f64>,
    counter: Arc<Counter>,
}

impl LeastSquaresProx {
    /// Factorizes `I + gamma AᵀA`.
    ///
    /// # Panics
    /// If `gamma` is not positive and finite or `A` has a non-finite entry,
    /// because the Cholesky factorization then fails.
    pub fn new(a: &Mat<f64>, gamma: f64, counter: &Arc<Counter>) -> Self {
        assert!(
            gamma > 0.0 && gamma.is_finite(),
            "gamma must be positive, not {gamma}"
        );
        let n = a.ncols();
        let mut system = a.transpose() * a * gamma;
        for i in 0..n {
            system[(i, i)] += 1.0;
        }
        let llt = system
            .llt(Side::Lower)
            .expect("I + gamma AᵀA is positive definite for a finite A");
        Self {
            a: a.clone(),
            gamma,
            factor: llt.L().to_owned(),
            counter: Arc::clone(counter),
        }
    }

    /// Replaces `rhs` by `(I + γ₀AᵀA)⁻¹ rhs`.
    fn solve_in_place(&self, mut rhs: MatMut<'_, f64>) {
        solve_lower_triangular_in_place(self.factor.as_ref(), rhs.as_mut(), Par::Seq);
        solve_upper_triangular_in_place(self.factor.transpose(), rhs, Par::Seq);
    }

    fn check_gamma(&self, gamma: f64) {
        assert!(
            gamma == self.gamma,
            "this prox was factorized for gamma = {}, not {gamma}",
            self.gamma
        );
    }
}

impl Parameterized<f64> for LeastSquaresProx {}

impl Prox<f64> for LeastSquaresProx {
    fn dim(&self) -> Option<usize> {
        Some(self.a.ncols())
    }

    fn data_rows_needed(&self) -> usize {
        self.a.nrows()
    }

    fn value(&self, x: MatRef<'_, f64>, data: MatRef<'_, f64>, col: usize) -> Option<f64> {
        let residual = &self.a * x.col(col) - data.col(col).subrows(0, self.a.nrows());
        Some(0.5 * residual.squared_norm_l2())
    }

    /// Writes `out = (I + γ₀AᵀA)⁻¹ (v + γ₀Aᵀd)`.
    ///
    /// # Panics
    /// If `gamma` differs from the `γ₀` of the factorization.
    fn prox(&self, mut out: MatMut<'_, f64>, v: MatRef<'_, f64>, gamma: f64, data: MatRef<'_, f64>) {
        self.check_gamma(gamma);
        out.copy_from(v);
        let d = data.subrows(0, self.a.nrows());
        matmul(out.as_mut(), Accum::Add, self.a.transpose(), d, gamma, Par::Seq);
        self.counter.add_products(1);
        self.solve_in_place(out);
    }

    /// Writes `v_bar = (I + γ₀AᵀA)⁻¹ cotangent`.
    ///
    /// # Panics
    /// If `gamma` differs from the `γ₀` of the factorization.
    fn prox_vjp(
        &self,
        mut v_bar: MatMut<'_, f64>,
        _v: MatRef<'_, f64>,
        gamma: f64,
        _data: MatRef<'_, f64>,
        cotangent: MatRef<'_, f64>,
    ) {
        self.check_gamma(gamma);
        v_bar.copy_from(cotangent);
        self.solve_in_place(v_bar);
    }
}

/// Checks the prox against its optimality condition
/// `(x − v)/γ + Aᵀ(Ax − d) = 0` and its vector-Jacobian product against
/// central differences, at Gaussian points with the first two samples of
/// `data`.
///
/// # Panics
/// If either check fails.
pub fn self_check(a: &Mat<f64>, data: &Mat<f64>) {
    let gamma = 0.7;
    let prox = LeastSquaresProx::new(a, gamma, &Counter::shared());
    let n = a.ncols();
    let v = gaussian(n, 2, 11);
    let d = data.subcols(0, 2);
    let mut x = Mat::zeros(n, 2);
    prox.prox(x.as_mut(), v.as_ref(), gamma, d);
    let stationarity = (&x - &v) * (1.0 / gamma) + a.transpose() * (a * &x - d);
    let scale = 1.0 + (v.norm_max() + (a.transpose() * d).norm_max());
    assert!(
        stationarity.norm_max() <= 1e-10 * scale,
        "the least-squares prox misses its optimality condition by {:e}",
        stationarity.norm_max()
    );
    let cotangent = gaussian(n, 2, 12);
    let check = check_prox_vjp(
        &prox,
        v.as_ref(),
        gamma,
        d,
        cotangent.as_ref(),
        &FdOptions::default(),
    );
    assert!(
        check.passes(1e-6) && check.fd_norm > 0.0,
        "the least-squares prox VJP disagrees with central differences: {check:?}"
    );
}
