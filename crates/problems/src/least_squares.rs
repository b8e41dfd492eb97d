use faer::linalg::solvers::{Llt, Solve};
use faer::{Mat, MatRef, Side};
use optlayer_core::validate::{check_finite, check_rows};
use optlayer_core::{Error, Result, Scalar};

/// The minimum-norm solution `x = Aᵀ(AAᵀ)⁻¹d` of an underdetermined system
/// `Ax = d`, with `AAᵀ` factorized once by Cholesky.
pub struct MinNormLeastSquares<T: Scalar> {
    a: Mat<T>,
    gram: Llt<T>,
}

impl<T: Scalar> MinNormLeastSquares<T> {
    /// Factorizes `A Aᵀ` for `a` (`m x n`).
    ///
    /// # Errors
    /// When `a` has a non-finite entry, or `A Aᵀ` is not positive definite
    /// (`A` does not have full row rank).
    pub fn new(a: MatRef<'_, T>) -> Result<Self> {
        check_finite("matrix A", a)?;
        let gram = a * a.transpose();
        let gram = gram.llt(Side::Lower).map_err(|e| Error::Numerical {
            what: "Cholesky factorization of A Aᵀ".into(),
            reason: format!("{e:?}: A must have full row rank for the minimum-norm solution"),
        })?;
        Ok(Self {
            a: a.to_owned(),
            gram,
        })
    }

    /// Returns `Aᵀ(AAᵀ)⁻¹ d` for every column of `d`.
    ///
    /// # Errors
    /// When `d` does not have `m` rows or has a non-finite entry.
    pub fn solve(&self, d: MatRef<'_, T>) -> Result<Mat<T>> {
        check_rows("data batch", d, self.a.nrows(), "the rows of A")?;
        check_finite("data batch", d)?;
        let w = self.gram.solve(d);
        Ok(self.a.transpose() * &w)
    }
}
