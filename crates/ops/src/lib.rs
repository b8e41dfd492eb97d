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

mod operators;
mod prox;
mod smooth;

pub use operators::{Dense, Identity, LearnableDense, Normalization};
pub use prox::{IndicatorPoint, L1Norm, PointSource, Simplex, SquaredL2, Zero};
pub use smooth::{LeastSquares, Quadratic};
