//! Reference problems for optlayer.
//!
//! - [`sparse_inverse`]: recover `x*` from an underdetermined `d = A x*`,
//!   where `x*` lies in the span of a few columns of a dictionary, with the
//!   learned model `min ‖Θx‖₁ s.t. Ax = d`.
//! - [`MinNormLeastSquares`]: the baseline `x = Aᵀ(AAᵀ)⁻¹d`.

mod least_squares;
pub mod sparse_inverse;

pub use least_squares::MinNormLeastSquares;
