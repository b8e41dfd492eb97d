use faer::dyn_stack::MemStack;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use optlayer_core::validate::{check_finite, check_nonempty};
use optlayer_core::{Operator, Parameterized, Result, Scalar};

use super::dense_apply;

/// A fixed dense matrix, such as the measurement matrix `A` of an inverse problem.
#[derive(Clone, Debug)]
pub struct Dense<T: Scalar> {
    matrix: Mat<T>,
}

impl<T: Scalar> Dense<T> {
    /// Wraps `matrix`.
    ///
    /// # Errors
    /// When the matrix has no rows or columns or contains a non-finite entry.
    pub fn new(matrix: Mat<T>) -> Result<Self> {
        check_nonempty("operator matrix", matrix.as_ref())?;
        check_nonempty("operator matrix (transposed)", matrix.as_ref().transpose())?;
        check_finite("operator matrix", matrix.as_ref())?;
        Ok(Self { matrix })
    }

    /// Returns the matrix.
    pub fn matrix(&self) -> MatRef<'_, T> {
        self.matrix.as_ref()
    }
}

impl<T: Scalar> Parameterized<T> for Dense<T> {}

impl<T: Scalar> Operator<T> for Dense<T> {
    fn nrows(&self) -> usize {
        self.matrix.nrows()
    }

    fn ncols(&self) -> usize {
        self.matrix.ncols()
    }

    fn apply(
        &self,
        out: MatMut<'_, T>,
        accum: Accum,
        alpha: T,
        x: MatRef<'_, T>,
        par: Par,
        _stack: &mut MemStack,
    ) {
        dense_apply(out, accum, alpha, self.matrix.as_ref(), x, par);
    }

    fn apply_adjoint(
        &self,
        out: MatMut<'_, T>,
        accum: Accum,
        alpha: T,
        y: MatRef<'_, T>,
        par: Par,
        _stack: &mut MemStack,
    ) {
        dense_apply(out, accum, alpha, self.matrix.as_ref().transpose(), y, par);
    }
}
