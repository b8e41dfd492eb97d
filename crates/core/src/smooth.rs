//! Differentiable terms of a model, with gradients and Hessian-vector products.

use faer::dyn_stack::{MemStack, StackReq};
use faer::{Mat, MatMut, MatRef, Par};

use crate::{Parameterized, Scalar};

/// A convex function `f(x; d)` with a Lipschitz gradient, the smooth term of
/// proximal-gradient, Davis–Yin and primal-dual schemes.
///
/// Batches are matrices whose columns are samples; `data` contains the problem
/// data `d` of each sample, column for column. A splitting calls
/// [`gradient`](Self::gradient) once per step and
/// [`hessian_vjp`](Self::hessian_vjp) once per vector-Jacobian product. The
/// Hessian is symmetric, so the Hessian-vector product is also the
/// vector-Jacobian product of `x ↦ ∇f(x)`.
pub trait Smooth<T: Scalar>: Parameterized<T> + Send + Sync {
    /// Returns the dimension of `x`.
    fn dim(&self) -> usize;

    /// Returns the number of data rows the function reads; the data batch
    /// passed to it must have at least this many rows.
    fn data_rows_needed(&self) -> usize {
        0
    }

    /// Returns `f(x; d)` for column `col` of the batch.
    ///
    /// This method may allocate: it serves reports and tests, not the
    /// iteration loop.
    fn value(&self, x: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> T;

    /// Returns the scratch memory that [`gradient`](Self::gradient),
    /// [`hessian_vjp`](Self::hessian_vjp) and
    /// [`accumulate_grad`](Self::accumulate_grad) need for `batch` columns.
    fn scratch(&self, batch: usize, par: Par) -> StackReq {
        let _ = (batch, par);
        StackReq::EMPTY
    }

    /// Writes `out = ∇f(x; d)`, column by column.
    fn gradient(
        &self,
        out: MatMut<'_, T>,
        x: MatRef<'_, T>,
        data: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    );

    /// Writes `out = ∇²f(x; d) v`, column by column.
    #[allow(clippy::too_many_arguments)]
    fn hessian_vjp(
        &self,
        out: MatMut<'_, T>,
        x: MatRef<'_, T>,
        data: MatRef<'_, T>,
        v: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    );

    /// Adds `∂⟨cotangent, ∇f(x; d)⟩/∂params`, summed over the batch, to
    /// `grads`, this function's own gradients in parameter order. Functions
    /// without parameters keep the provided no-op. Scratch memory comes from
    /// `stack`, sized by [`scratch`](Self::scratch).
    #[allow(clippy::too_many_arguments)]
    fn accumulate_grad(
        &self,
        grads: &mut [Mat<T>],
        x: MatRef<'_, T>,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        let _ = (grads, x, data, cotangent, par, stack);
    }

    /// Returns an estimate of the Lipschitz constant `L` of `∇f`.
    ///
    /// Estimates that come from power iteration are lower bounds of the true
    /// constant; splittings that size their steps from `L` keep a margin.
    fn lipschitz_estimate(&self) -> T;
}
