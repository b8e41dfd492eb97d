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
//! Further proximal maps: [`L2Norm`] (block soft-thresholding of each
//! column), [`ElasticNet`] (soft-thresholding and scaling), [`Huber`] (the
//! Huber function), [`L1Ball`] (the projection onto an ℓ1 ball) and
//! [`LinfNorm`] (clipping at a threshold).

mod operators;
mod prox;

pub use operators::{Dense, Identity, LearnableDense, Normalization};
pub use prox::{ElasticNet, Huber, L1Ball, L2Norm, LinfNorm};
pub use prox::{IndicatorPoint, L1Norm, PointSource, Simplex, SquaredL2, Zero};
