//! Test harness for optlayer, for this workspace's tests and for users who
//! add their own operators, proximal maps and splittings.
//!
//! - [`fd`]: central finite-difference checks of every vector-Jacobian
//!   product a type provides (state and parameter cotangents of a
//!   [`Splitting`](optlayer_core::Splitting), a [`Prox`](optlayer_core::Prox),
//!   the parameter gradients of an [`Operator`](optlayer_core::Operator)) and
//!   the dot test of an operator's adjoint.
//! - [`reference`]: exact solvers for small problems, independent of any
//!   splitting, to check optimality.
//! - [`random`]: seeded random matrices for tests.

pub mod fd;
pub mod random;
pub mod reference;
