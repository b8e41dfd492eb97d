//! Splitting algorithms for optlayer.
//!
//! Each scheme implements [`Splitting`](optlayer_core::Splitting): one
//! iteration and its vector-Jacobian product, so any of them can be trained
//! with [`FixedPointJfb`](optlayer_core::FixedPointJfb).
//!
//! - [`LinearizedAdmm`]: `min_x Σ_i g_i(K_i x)` over a list of [`Block`]s.
//! - [`ProximalGradient`]: `min_x f(x; d) + g(x)` with `f` smooth, plain or
//!   accelerated ([`Acceleration::Fista`]).
//! - [`DavisYin`]: `min_x f(x; d) + g(x) + h(x)` with `f` smooth.
//! - [`DouglasRachford`]: `min_x g(x) + h(x)`.
//! - [`CondatVu`]: `min_x f(x) + g(x) + h(K x)`, the primal–dual scheme of
//!   Condat and Vũ (Chambolle–Pock without `f`).
//!
//! Every scheme returns the iterate that converges to the minimizer and
//! stops on the same relative fixed-point residual, so iteration counts
//! compare fairly. docs/splittings.md lists each update with the condition
//! on its steps.

mod davis_yin;
mod ladmm;
mod primal_dual;
mod prox_grad;
mod stacked;

pub use davis_yin::{DavisYin, DavisYinSteps, DouglasRachford, GammaRule};
pub use ladmm::{Block, LadmmSteps, LinearizedAdmm, StepRule};
pub use primal_dual::{CondatVu, DEFAULT_STEP_SAFETY, PrimalDualSteps};
pub use prox_grad::{Acceleration, DEFAULT_STEP_MARGIN, ProximalGradient};
pub use stacked::StackedOperator;

/// Combines the distances of a point from several sets as a root sum of
/// squares. Terms that are not constraints are skipped, and the result is
/// `None` when no term is a constraint.
fn combine_distances<T: optlayer_core::Scalar>(distances: impl IntoIterator<Item = Option<T>>) -> Option<T> {
    distances
        .into_iter()
        .flatten()
        .fold(None, |total: Option<T>, d| Some(total.map_or(d, |t| t.hypot(d))))
}
