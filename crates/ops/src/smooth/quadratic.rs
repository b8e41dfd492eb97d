use faer::dyn_stack::MemStack;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use optlayer_core::validate::{check_finite, check_nonempty, check_shape};
use optlayer_core::{Error, Parameterized, Result, Scalar, Smooth};

/// The convex quadratic `f(x) = ½ xᵀQx + qᵀx` with `Q` symmetric positive
/// semidefinite, which does not read the data batch.
///
/// The derivatives are `∇f(x) = Q x + q` and `∇²f(x) v = Q v`, and the
/// Lipschitz constant of `∇f` is `L = ‖Q‖₂`, the largest eigenvalue of `Q`,
/// computed once at construction by a symmetric eigenvalue decomposition.
#[derive(Clone, Debug)]
pub struct Quadratic<T: Scalar> {
    matrix: Mat<T>,
    linear: Mat<T>,
    lipschitz: T,
}

impl<T: Scalar> Quadratic<T> {
    /// Creates `f(x) = ½ xᵀQx + qᵀx` with `Q = matrix` (`n x n`) and
    /// `q = linear` (`n x 1`).
    ///
    /// `Q` must be symmetric up to rounding: every `|Q_ij − Q_ji|` must be at
    /// most `√ε · max |Q_kl|` (`ε` the machine epsilon of `T`). The term
    /// stores `(Q + Qᵀ)/2`, so its gradient is exactly that of its value.
    ///
    /// # Errors
    /// - `Q` is empty or not square, or `q` is not `n x 1`;
    /// - an entry is NaN or infinite;
    /// - `Q` is not symmetric within the tolerance above;
    /// - the smallest eigenvalue of `Q` is below `−√ε · ‖Q‖₂`, so `f` is not convex;
    /// - the eigenvalue decomposition fails.
    pub fn new(matrix: Mat<T>, linear: Mat<T>) -> Result<Self> {
        check_nonempty("quadratic matrix Q", matrix.as_ref())?;
        let n = matrix.nrows();
        if matrix.ncols() != n {
            return Err(Error::ShapeMismatch {
                what: "quadratic matrix Q".into(),
                expected: format!("{n} x {n} (Q must be square)"),
                found: format!("{} x {}", n, matrix.ncols()),
            });
        }
        check_shape("linear term q", linear.as_ref(), n, 1)?;
        check_finite("quadratic matrix Q", matrix.as_ref())?;
        check_finite("linear term q", linear.as_ref())?;

        let tolerance = T::epsilon().sqrt();
        let max_abs = matrix.as_ref().norm_max();
        for j in 0..n {
            for i in (j + 1)..n {
                let asymmetry = (matrix[(i, j)] - matrix[(j, i)]).abs();
                if asymmetry > tolerance * max_abs {
                    return Err(Error::InvalidParameter {
                        name: format!("|Q[{i}, {j}] - Q[{j}, {i}]| of the quadratic matrix"),
                        value: asymmetry.to_f64_lossless(),
                        requirement: format!(
                            "must be at most {:e} (sqrt(eps) * max |Q|) because Q must be symmetric; pass (Q + Q^T)/2",
                            (tolerance * max_abs).to_f64_lossless()
                        ),
                    });
                }
            }
        }
        let half = T::lit(0.5);
        let symmetric = Mat::from_fn(n, n, |i, j| half * (matrix[(i, j)] + matrix[(j, i)]));

        let eigenvalues = symmetric
            .as_ref()
            .self_adjoint_eigenvalues(Side::Lower)
            .map_err(|error| Error::Numerical {
                what: "eigenvalue decomposition of the quadratic matrix Q".into(),
                reason: format!("{error:?}; check Q for huge entries"),
            })?;
        // faer returns the eigenvalues in nondecreasing order.
        let smallest = eigenvalues[0];
        let largest = eigenvalues[n - 1];
        let norm = smallest.abs().max(largest.abs());
        if smallest < -tolerance * norm {
            return Err(Error::InvalidParameter {
                name: "smallest eigenvalue of the quadratic matrix Q".into(),
                value: smallest.to_f64_lossless(),
                requirement: format!(
                    "must be at least {:e} (-sqrt(eps) * ||Q||_2) because Q must be positive semidefinite for f to be convex",
                    (-tolerance * norm).to_f64_lossless()
                ),
            });
        }
        Ok(Self {
            matrix: symmetric,
            linear,
            lipschitz: largest.max(T::zero()),
        })
    }

    /// Returns the symmetric matrix `Q` in use, `(Q + Qᵀ)/2` of the one passed.
    pub fn matrix(&self) -> MatRef<'_, T> {
        self.matrix.as_ref()
    }

    /// Returns the linear term `q` (`n x 1`).
    pub fn linear(&self) -> MatRef<'_, T> {
        self.linear.as_ref()
    }
}

impl<T: Scalar> Parameterized<T> for Quadratic<T> {}

impl<T: Scalar> Smooth<T> for Quadratic<T> {
    fn dim(&self) -> usize {
        self.matrix.nrows()
    }

    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> T {
        let x = x.subcols(col, 1);
        let mut qx = Mat::<T>::zeros(self.dim(), 1);
        matmul(
            qx.as_mut(),
            Accum::Replace,
            self.matrix.as_ref(),
            x,
            T::one(),
            Par::Seq,
        );
        let half = T::lit(0.5);
        (0..self.dim()).fold(T::zero(), |acc, i| {
            acc + x[(i, 0)] * (half * qx[(i, 0)] + self.linear[(i, 0)])
        })
    }

    /// Writes `out = Q x + q`.
    fn gradient(
        &self,
        mut out: MatMut<'_, T>,
        x: MatRef<'_, T>,
        _data: MatRef<'_, T>,
        par: Par,
        _stack: &mut MemStack,
    ) {
        matmul(
            out.as_mut(),
            Accum::Replace,
            self.matrix.as_ref(),
            x,
            T::one(),
            par,
        );
        for col in 0..out.ncols() {
            for row in 0..out.nrows() {
                out[(row, col)] += self.linear[(row, 0)];
            }
        }
    }

    /// Writes `out = Q v`.
    fn hessian_vjp(
        &self,
        out: MatMut<'_, T>,
        _x: MatRef<'_, T>,
        _data: MatRef<'_, T>,
        v: MatRef<'_, T>,
        par: Par,
        _stack: &mut MemStack,
    ) {
        matmul(out, Accum::Replace, self.matrix.as_ref(), v, T::one(), par);
    }

    /// Returns `‖Q‖₂`, the largest eigenvalue of `Q`.
    fn lipschitz_estimate(&self) -> T {
        self.lipschitz
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smooth::checks;
    use faer::mat;
    use optlayer_testing::random::gaussian;

    /// Returns `BᵀB / rows` for a Gaussian `B` (`rows x n`), which is
    /// positive semidefinite and singular when `rows < n`.
    fn gram(rows: usize, n: usize, seed: u64) -> Mat<f64> {
        let b = gaussian(rows, n, seed);
        let product = b.transpose() * &b;
        Mat::from_fn(n, n, |i, j| product[(i, j)] / rows as f64)
    }

    #[test]
    fn known_value_gradient_and_lipschitz() {
        // Q = [[2, 1], [1, 3]], q = [1, −1], x = [1, 2]: Qx = [4, 7],
        // f = ½(4 + 14) − 1 = 8, ∇f = [5, 6], eigenvalues (5 ± √5)/2.
        let f = Quadratic::new(mat![[2.0, 1.0], [1.0, 3.0]], mat![[1.0], [-1.0]]).unwrap();
        let x = mat![[1.0], [2.0]];
        let no_data = Mat::<f64>::zeros(0, 1);
        assert!((f.value(x.as_ref(), no_data.as_ref(), 0) - 8.0).abs() < 1e-14);
        let g = checks::gradient(&f, x.as_ref(), no_data.as_ref());
        assert!((g[(0, 0)] - 5.0).abs() < 1e-14, "{g:?}");
        assert!((g[(1, 0)] - 6.0).abs() < 1e-14, "{g:?}");
        let expected = (5.0 + 5.0_f64.sqrt()) / 2.0;
        assert!((f.lipschitz_estimate() - expected).abs() < 1e-12);
        assert_eq!(f.data_rows_needed(), 0);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let f = Quadratic::new(gram(3, 5, 1), gaussian(5, 1, 2)).unwrap();
        let x = gaussian(5, 3, 3);
        let no_data = Mat::<f64>::zeros(0, 3);
        let error = checks::gradient_error(&f, x.as_ref(), no_data.as_ref(), 1e-6);
        assert!(error < 1e-7, "relative error {error:e}");
    }

    #[test]
    fn hessian_vjp_matches_finite_differences() {
        let f = Quadratic::new(gram(6, 4, 4), gaussian(4, 1, 5)).unwrap();
        let x = gaussian(4, 2, 6);
        let v = gaussian(4, 2, 7);
        let no_data = Mat::<f64>::zeros(0, 2);
        let error = checks::hessian_error(&f, x.as_ref(), no_data.as_ref(), v.as_ref(), 1e-5);
        assert!(error < 1e-8, "relative error {error:e}");
    }

    #[test]
    fn singular_gram_matrix_accepted() {
        let q = gram(2, 5, 8);
        let sigma = q.as_ref().singular_values().unwrap()[0];
        let f = Quadratic::new(q, Mat::zeros(5, 1)).unwrap();
        assert!((f.lipschitz_estimate() - sigma).abs() < 1e-12 * sigma);
    }

    #[test]
    fn rounding_asymmetry_is_symmetrized() {
        let mut q = gram(4, 3, 9);
        q[(0, 2)] *= 1.0 + 1e-12;
        let f = Quadratic::new(q, Mat::zeros(3, 1)).unwrap();
        assert_eq!(f.matrix()[(0, 2)], f.matrix()[(2, 0)]);
    }

    #[test]
    fn invalid_input_rejected() {
        let zeros = || Mat::<f64>::zeros(2, 1);
        let asymmetric = Quadratic::new(mat![[1.0, 0.5], [0.0, 1.0]], zeros()).unwrap_err();
        assert!(asymmetric.to_string().contains("symmetric"), "{asymmetric}");
        let indefinite = Quadratic::new(mat![[1.0, 0.0], [0.0, -1.0]], zeros()).unwrap_err();
        assert!(
            indefinite.to_string().contains("positive semidefinite"),
            "{indefinite}"
        );
        assert!(matches!(
            Quadratic::new(mat![[1.0, f64::NAN], [f64::NAN, 1.0]], zeros()),
            Err(Error::NonFiniteInput { .. })
        ));
        assert!(matches!(
            Quadratic::new(mat![[1.0, 0.0], [0.0, 1.0]], mat![[f64::INFINITY], [0.0]]),
            Err(Error::NonFiniteInput { .. })
        ));
        assert!(matches!(
            Quadratic::new(Mat::<f64>::zeros(2, 3), zeros()),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            Quadratic::new(Mat::<f64>::identity(2, 2), Mat::zeros(3, 1)),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            Quadratic::new(Mat::<f64>::zeros(0, 0), Mat::zeros(0, 1)),
            Err(Error::Empty { .. })
        ));
    }

    #[test]
    fn f32_matches_f64() {
        let q = gram(5, 4, 10);
        let linear = gaussian(4, 1, 11);
        let x = gaussian(4, 3, 12);
        let to_f32 = |m: &Mat<f64>| Mat::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)] as f32);
        let f64_term = Quadratic::new(q.clone(), linear.clone()).unwrap();
        let f32_term = Quadratic::new(to_f32(&q), to_f32(&linear)).unwrap();
        let no_data64 = Mat::<f64>::zeros(0, 3);
        let no_data32 = Mat::<f32>::zeros(0, 3);
        let g64 = checks::gradient(&f64_term, x.as_ref(), no_data64.as_ref());
        let g32 = checks::gradient(&f32_term, to_f32(&x).as_ref(), no_data32.as_ref());
        let diff = Mat::from_fn(4, 3, |i, j| f64::from(g32[(i, j)]) - g64[(i, j)]);
        assert!(diff.norm_l2() < 1e-5 * g64.norm_l2());
        let v64 = f64_term.value(x.as_ref(), no_data64.as_ref(), 2);
        let v32 = f32_term.value(to_f32(&x).as_ref(), no_data32.as_ref(), 2);
        assert!(
            (f64::from(v32) - v64).abs() < 1e-5 * (1.0 + v64.abs()),
            "{v32} vs {v64}"
        );
        let l64 = f64_term.lipschitz_estimate();
        let l32 = f64::from(f32_term.lipschitz_estimate());
        assert!((l32 - l64).abs() < 1e-5 * l64, "{l32} vs {l64}");
    }
}
