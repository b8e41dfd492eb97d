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
//! Smooth terms implement [`Smooth`](optlayer_core::Smooth), each with its
//! gradient and Hessian-vector product: [`LeastSquares`] (`½‖Ax − d‖²`, with
//! a fixed or learnable `A`) and [`Quadratic`] (`½xᵀQx + qᵀx`).
//! Further proximal maps: [`L2Norm`] (block soft-thresholding of each
//! column), [`ElasticNet`] (soft-thresholding and scaling), [`Huber`] (the
//! Huber function), [`L1Ball`] (the projection onto an ℓ1 ball) and
//! [`LinfNorm`] (clipping at a threshold).
//! Projections onto closed convex sets, each with the value of its
//! indicator: [`BoxSet`] (bounds per entry or shared, possibly infinite),
//! [`Nonnegative`] (the nonnegative orthant), [`L2Ball`] and [`LinfBall`],
//! and [`AffineSet`] (`{x : Cx = b}`, with `b` fixed or from the data batch).
//! [`ForwardDifference`] takes first differences, the discrete gradient of
//! total variation.
//!
//! Combinators build new maps from others: [`Scaled`] (`a · f`),
//! [`Translated`] (`f(x − b)`), [`SeparableSum`] (`Σ_k f_k(x_{R_k})`) and
//! [`Conjugate`] (`f*`, by Moreau's decomposition).

mod operators;
mod prox;
mod smooth;

pub use operators::ForwardDifference;
pub use operators::{Dense, Identity, LearnableDense, Normalization};
pub use prox::{
    AffineSet, BoxConstrained, BoxSet, IndicatorPoint, L1Norm, L2Ball, LinfBall, Nonnegative, PointSource,
    Simplex, SquaredDistance, SquaredL2, Zero,
};
pub use prox::{Conjugate, Scaled, SeparableBlock, SeparableSum, Translated};
pub use prox::{ElasticNet, Huber, L1Ball, L2Norm, LinfNorm};
pub use smooth::{LeastSquares, Quadratic};
