//! One iteration of a splitting algorithm and its vector-Jacobian product.

use std::ops::Range;

use faer::dyn_stack::{MemStack, StackReq};
use faer::{Mat, MatMut, MatRef, Par};

use crate::{Parameterized, Scalar};

/// One iteration `z⁺ = T_Θ(z; d)` of a splitting algorithm, with its
/// vector-Jacobian product.
///
/// The state `z` of a batch is one matrix with [`state_dim`](Self::state_dim)
/// rows and one column per sample. The primal iterate `x` occupies the rows
/// [`primal_rows`](Self::primal_rows); the remaining rows hold whatever the
/// scheme carries (auxiliary variables, duals, momentum). Columns are
/// independent: the step of one column never reads another, which is what lets
/// [`OptLayer`](crate::OptLayer) stop converged samples early.
///
/// A splitting implements one step; the layer owns the loop, the stopping rule
/// and the workspace. [`step_vjp`](Self::step_vjp) is the single primitive
/// every gradient mode builds on: Jacobian-free backpropagation calls it once
/// at the fixed point.
///
/// Step sizes are stored in the splitting and change only through
/// [`Parameterized::after_param_update`], so a forward pass and the backward
/// pass that follows it use the same values.
pub trait Splitting: Parameterized<Self::Real> + Send + Sync {
    /// The scalar type, `f32` or `f64`.
    type Real: Scalar;

    /// Returns a short name for messages and reports, e.g. "linearized ADMM".
    fn name(&self) -> &str;

    /// Returns the dimension of the primal variable `x`.
    fn primal_dim(&self) -> usize;

    /// Returns the number of rows of a data batch `d`.
    fn data_dim(&self) -> usize;

    /// Returns the number of rows of the state `z`.
    fn state_dim(&self) -> usize;

    /// Returns the rows of the state that hold the primal variable `x`.
    fn primal_rows(&self) -> Range<usize> {
        0..self.primal_dim()
    }

    /// Returns the primal rows of a state batch.
    fn primal<'a>(&self, z: MatRef<'a, Self::Real>) -> MatRef<'a, Self::Real> {
        let rows = self.primal_rows();
        z.subrows(rows.start, rows.len())
    }

    /// Returns the fixed-point residual of column `col` and the scale it is
    /// compared with: the layer stops the sample when
    /// `residual ≤ max(rtol · scale, atol)`.
    ///
    /// The provided method returns `‖z⁺ − z‖₂` and `‖z⁺‖₂` over the whole
    /// state, computed with scaling so that they stay finite for entries near
    /// the overflow threshold. A scheme whose state mixes quantities of
    /// different units can weight them here.
    fn fixed_point_residual(
        &self,
        z_next: MatRef<'_, Self::Real>,
        z: MatRef<'_, Self::Real>,
        col: usize,
    ) -> (Self::Real, Self::Real) {
        crate::columns::col_residual_norms(z_next, z, col)
    }

    /// Returns how far the primal iterate of column `col` is from satisfying
    /// the model's hard constraints (the Euclidean distance of each
    /// constrained quantity from its set, combined as a root sum of squares),
    /// or `None` when the model has no constraints or the scheme does not
    /// measure them.
    ///
    /// A forward pass reports it per sample, so that a problem whose
    /// constraints cannot be met shows how close the iterate came. It may
    /// allocate: it runs once per sample after the iteration.
    fn constraint_residual(
        &self,
        z: MatRef<'_, Self::Real>,
        data: MatRef<'_, Self::Real>,
        col: usize,
    ) -> Option<Self::Real> {
        let _ = (z, data, col);
        None
    }

    /// Returns the step sizes the next step will use, by name.
    fn step_sizes(&self) -> Vec<(String, f64)>;

    /// Writes the initial state for a batch. The provided method starts from zero.
    fn init(&self, mut z: MatMut<'_, Self::Real>, data: MatRef<'_, Self::Real>) {
        let _ = data;
        z.fill(<Self::Real as num_traits::Zero>::zero());
    }

    /// Returns the scratch memory [`step`](Self::step) needs for `batch` columns.
    fn step_scratch(&self, batch: usize, par: Par) -> StackReq;

    /// Writes `z_next = T(z; data)`. All three views have `batch` columns.
    fn step(
        &self,
        z_next: MatMut<'_, Self::Real>,
        z: MatRef<'_, Self::Real>,
        data: MatRef<'_, Self::Real>,
        par: Par,
        stack: &mut MemStack,
    );

    /// Returns the scratch memory [`step_vjp`](Self::step_vjp) needs for `batch` columns.
    fn step_vjp_scratch(&self, batch: usize, par: Par) -> StackReq;

    /// Computes the vector-Jacobian product of one step at `z`.
    ///
    /// With `c = cotangent` on `z⁺ = T(z; d)`, writes `z_bar = (∂T/∂z)ᵀ c` when
    /// `z_bar` is given, and adds `(∂T/∂Θ)ᵀ c`, summed over the batch, to
    /// `grads` when it is given (the splitting's gradients in parameter
    /// order). Jacobian-free backpropagation needs only the parameter
    /// gradient, so it passes `None` for `z_bar`. An iterative adjoint solve
    /// needs only the state part, so it passes `None` for `grads`.
    #[allow(clippy::too_many_arguments)]
    fn step_vjp(
        &self,
        z_bar: Option<MatMut<'_, Self::Real>>,
        z: MatRef<'_, Self::Real>,
        data: MatRef<'_, Self::Real>,
        cotangent: MatRef<'_, Self::Real>,
        grads: Option<&mut [Mat<Self::Real>]>,
        par: Par,
        stack: &mut MemStack,
    );
}
