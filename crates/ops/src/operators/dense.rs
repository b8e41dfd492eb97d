use faer::dyn_stack::MemStack;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use optlayer_core::validate::{check_finite, check_nonempty};
use optlayer_core::{Operator, Parameterized, Result, Scalar};

use super::{TransposedCopy, adjoint_operand};
use optlayer_core::product::dense_product;

/// A fixed dense matrix, such as the measurement matrix `A` of an inverse problem.
///
/// It keeps a transposed copy of the matrix. Adjoint products of two columns
/// or more run on it, faster for narrow batches and as fast for wide ones.
/// [`without_transposed_copy`](Self::without_transposed_copy) saves that
/// memory. For some matrices with one or two rows or columns, the copy
/// changes the last bit of some results.
#[derive(Clone, Debug)]
pub struct Dense<T: Scalar> {
    matrix: Mat<T>,
    transposed: Option<TransposedCopy<T>>,
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
        let transposed = Some(TransposedCopy::of(matrix.as_ref()));
        Ok(Self { matrix, transposed })
    }

    /// Drops the transposed copy, which takes as much memory as the matrix.
    /// Adjoint products then run on the transposed view, which takes more
    /// time for narrow batches.
    pub fn without_transposed_copy(mut self) -> Self {
        self.transposed = None;
        self
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
        dense_product(out, accum, alpha, self.matrix.as_ref(), x, par);
    }

    fn dense(&self) -> Option<MatRef<'_, T>> {
        Some(self.matrix.as_ref())
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
        let lhs = adjoint_operand(self.matrix.as_ref(), self.transposed.as_ref(), y.ncols());
        dense_product(out, accum, alpha, lhs, y, par);
    }
}
