//! Core traits of optlayer.
//!
//! An optimization layer evaluates `N_Θ(d) = argmin_x f_Θ(x; d)` as the fixed
//! point of a splitting iteration `z⁺ = T_Θ(z; d)` and is trained with
//! Jacobian-free backpropagation. This crate defines the pieces:
//!
//! - [`Operator`]: linear maps and their adjoints on batches, learnable or fixed;
//! - [`Prox`]: proximal maps with their vector-Jacobian products;
//! - [`Smooth`]: differentiable terms with gradients and Hessian-vector products;
//! - [`Splitting`]: one iteration and its vector-Jacobian product;
//! - [`OptLayer`]: the loop, the stopping rule and per-sample reports;
//! - [`FixedPointJfb`]: gradients from one `step_vjp` at the fixed point;
//! - [`GradientMode`] and [`OptLayer::gradient`]: truncated, unrolled and
//!   implicit gradients from the same primitive, and a contraction estimate;
//! - [`Parameterized`] and [`Gradients`]: parameters and their gradients.
//!
//! Batches are faer matrices whose columns are samples. Everything is generic
//! over the [`Scalar`] types `f32` and `f64`.

mod anderson;
pub mod audit;
pub mod backward;
pub mod columns;
mod error;
mod jfb;
mod layer;
mod operator;
mod params;
pub mod product;
pub mod prox;
mod scalar;
mod smooth;
mod splitting;
pub mod validate;
pub mod warm_start;

pub use anderson::{AndersonOptions, AndersonReport, MAX_ANDERSON_MEMORY};
pub use audit::{AuditOptions, AuditRow, GradientAudit};
pub use backward::{
    AdjointReport, AdjointSolver, ContractionEstimate, GradientMode, GradientOutput, ImplicitOptions,
};
pub use error::{Error, Result};
pub use jfb::{FixedPointJfb, JfbOutput, LossFn, mse, mse_loss};
pub use layer::{
    BLOCK_STATE_BYTES, ForwardOptions, ForwardResult, OptLayer, PARALLEL_STEP_MIN_STATE, SampleReport,
    Status, ThreadPlan, block_columns,
};
pub use operator::{Operator, power_iteration, power_iteration_from};
pub use params::{
    Gradients, ParamInfo, Parameterized, check_gradients, check_grads_shape, check_unique_param_names,
    find_param, matrix_fingerprint, param_names, params_fingerprint, restore_params, set_param,
    snapshot_params, split_grads,
};
pub use prox::{Entrywise, Prox};
pub use scalar::Scalar;
pub use smooth::Smooth;
pub use splitting::Splitting;

/// Re-export of faer, so downstream crates name one version.
pub use faer;
