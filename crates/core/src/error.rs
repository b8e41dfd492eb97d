//! The error type of optlayer.

use std::path::PathBuf;

/// Errors returned by optlayer for invalid input or failed numerical work.
///
/// Every variant names the value at fault and, where one exists, the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A matrix or vector has the wrong shape.
    #[error("shape mismatch in {what}: expected {expected}, found {found}")]
    ShapeMismatch {
        /// The value whose shape is wrong, e.g. "data batch".
        what: String,
        /// The expected shape, with the reason when it is not obvious.
        expected: String,
        /// The shape that was passed.
        found: String,
    },

    /// Input data contains NaN or an infinite value.
    #[error(
        "{what} contains the non-finite value {value} at row {row}, column {col}; \
         remove or replace NaN and infinite entries before passing it"
    )]
    NonFiniteInput {
        /// The value that contains the entry, e.g. "data batch".
        what: String,
        /// Row of the first non-finite entry.
        row: usize,
        /// Column (sample) of the first non-finite entry.
        col: usize,
        /// The entry itself.
        value: f64,
    },

    /// A scalar setting is outside its valid range.
    #[error("invalid {name} = {value}: {requirement}")]
    InvalidParameter {
        /// Name of the setting, e.g. "beta".
        name: String,
        /// The value that was passed.
        value: f64,
        /// The condition the value must satisfy.
        requirement: String,
    },

    /// A text setting, such as a mode name, is not one of the accepted values.
    #[error("invalid {name} '{value}': {requirement}")]
    InvalidValue {
        /// Name of the setting, e.g. "gradient mode".
        name: String,
        /// The text that was passed.
        value: String,
        /// The accepted values.
        requirement: String,
    },

    /// A dataset, batch or list that must not be empty is empty.
    #[error("{what} is empty: {fix}")]
    Empty {
        /// The empty value.
        what: String,
        /// The input to pass instead.
        fix: String,
    },

    /// Step sizes break the convergence condition of a splitting.
    #[error(
        "step sizes of {algorithm} break its convergence condition {condition}: \
         the estimate is {value:.6}, which must be below {bound}; {fix}"
    )]
    StepCondition {
        /// The splitting whose condition failed.
        algorithm: String,
        /// The condition in words, e.g. "alpha * beta * ||K||^2 < 1".
        condition: String,
        /// The estimated left-hand side.
        value: f64,
        /// The bound the left-hand side must stay below.
        bound: f64,
        /// How to choose valid step sizes.
        fix: String,
    },

    /// A gradient or parameter became NaN or infinite.
    #[error(
        "non-finite {what} in parameter '{param}' at ({row}, {col}): {value}; \
         lower the learning rate or check the forward pass for divergence"
    )]
    NonFiniteGradient {
        /// "gradient" or "parameter".
        what: String,
        /// Name of the parameter.
        param: String,
        /// Row of the first non-finite entry.
        row: usize,
        /// Column of the first non-finite entry.
        col: usize,
        /// The entry itself.
        value: f64,
    },

    /// A backward pass was requested with a forward result computed under
    /// other step sizes, other parameters or another data batch.
    #[error("the forward result is stale: {reason}; run the forward pass again on this batch")]
    StaleForward {
        /// The difference between the forward pass and now.
        reason: String,
    },

    /// A gradient mode would need more memory than its limit allows, or the
    /// allocation failed.
    #[error("{what} needs {needed_bytes} bytes, above the limit of {limit}; {fix}")]
    MemoryLimit {
        /// The allocation, e.g. "unrolled backpropagation through 10000 iterations".
        what: String,
        /// Bytes needed.
        needed_bytes: usize,
        /// The limit in words: a byte count, or "the memory available".
        limit: String,
        /// How to proceed.
        fix: String,
    },

    /// A gradient was requested at a forward state with NaN or infinite entries.
    #[error(
        "the forward pass diverged to NaN or infinite values in {samples} of {batch} samples, so no \
         gradient exists there; lower the step sizes or the learning rate, or check the data"
    )]
    NonFiniteForward {
        /// Samples whose state is not finite.
        samples: usize,
        /// Samples in the batch.
        batch: usize,
    },

    /// Implicit differentiation was requested at a point that is not a fixed point.
    #[error(
        "the forward pass did not converge for {unconverged} of {samples} samples (largest relative \
         residual {max_relative_residual:e}), so the implicit gradient would be wrong; raise max_iters \
         or the tolerance, or allow unconverged forward passes in ImplicitOptions"
    )]
    ForwardNotConverged {
        /// Samples that did not converge.
        unconverged: usize,
        /// Samples in the batch.
        samples: usize,
        /// Largest relative fixed-point residual of the batch.
        max_relative_residual: f64,
    },

    /// The linear solve of the backward pass failed.
    #[error(
        "the adjoint solve ({solver}) failed after {iterations} iterations with relative residual \
         {relative_residual:e}; {fix}"
    )]
    AdjointSolveFailed {
        /// The solver, e.g. "fixed-point iteration".
        solver: String,
        /// Iterations run.
        iterations: usize,
        /// `‖g − (I − Jᵀ) u‖ / ‖g‖` at the end.
        relative_residual: f64,
        /// How to proceed.
        fix: String,
    },

    /// Two parameters of one model share a name.
    #[error(
        "duplicate parameter name '{name}': parameter names must be unique within a model; rename one of them"
    )]
    DuplicateParameter {
        /// The name used twice.
        name: String,
    },

    /// A parameter name that the model does not have.
    #[error("unknown parameter '{name}'; the model has: {available}")]
    UnknownParameter {
        /// The requested name.
        name: String,
        /// Comma-separated names of the model's parameters.
        available: String,
    },

    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// The failed action, e.g. "failed to read".
        action: String,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A file exists but its contents are not what was expected.
    #[error("invalid file {path}: {reason}")]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// The defect and, where possible, the way to produce a valid file.
        reason: String,
    },

    /// Parts of a model do not fit together, e.g. a combinator given a map
    /// it cannot wrap.
    #[error("invalid model: {what}: {reason}")]
    InvalidModel {
        /// The part at fault.
        what: String,
        /// The reason it does not fit, and the change to make.
        reason: String,
    },

    /// A linear-algebra routine failed, e.g. a factorization of a singular matrix.
    #[error("{what} failed: {reason}")]
    Numerical {
        /// The routine that failed.
        what: String,
        /// The cause of the failure and the change to make.
        reason: String,
    },
}

/// Result type of optlayer.
pub type Result<T, E = Error> = core::result::Result<T, E>;
