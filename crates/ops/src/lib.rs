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
//! Projections onto closed convex sets, each with the value of its
//! indicator: [`BoxSet`] (bounds per entry or shared, possibly infinite),
//! [`Nonnegative`] (the nonnegative orthant), [`L2Ball`] and [`LinfBall`],
//! and [`AffineSet`] (`{x : Cx = b}`, with `b` fixed or from the data batch).

mod operators;
mod prox;

pub use operators::{Dense, Identity, LearnableDense, Normalization};
pub use prox::{
    AffineSet, BoxSet, IndicatorPoint, L1Norm, L2Ball, LinfBall, Nonnegative, PointSource, Simplex,
    SquaredL2, Zero,
};
