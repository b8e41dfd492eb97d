//! Linear operators and proximal maps for optlayer.
//!
//! Operators implement [`Operator`](optlayer_core::Operator):
//! [`Dense`] (a fixed matrix), [`LearnableDense`] (a trained matrix Θ,
//! optionally kept at unit spectral norm) and [`Identity`].
//!
//! Proximal maps implement [`Prox`](optlayer_core::Prox), each with its
//! vector-Jacobian product: [`L1Norm`] (soft-thresholding, scalar, per-entry
//! or learnable weights), [`SquaredL2`] (scaling), [`Simplex`] (projection
//! onto the probability simplex), [`IndicatorPoint`] (the projection onto one
//! point, from the data batch or fixed) and [`Zero`] (the identity).
//!
//! [`ForwardDifference`] takes first differences, the discrete gradient of
//! total variation.
//!
//! Combinators build new maps from others: [`Scaled`] (`a · f`),
//! [`Translated`] (`f(x − b)`), [`SeparableSum`] (`Σ_k f_k(x_{R_k})`) and
//! [`Conjugate`] (`f*`, by Moreau's decomposition).

mod operators;
mod prox;

pub use operators::ForwardDifference;
pub use operators::{Dense, Identity, LearnableDense, Normalization};
pub use prox::{Conjugate, Scaled, SeparableBlock, SeparableSum, Translated};
pub use prox::{IndicatorPoint, L1Norm, PointSource, Simplex, SquaredL2, Zero};
