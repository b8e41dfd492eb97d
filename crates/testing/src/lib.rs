//! Test harness for optlayer, for this workspace's tests and for users who
//! add their own operators, proximal maps and splittings.
//!
//! - [`alloc`](mod@alloc): a counting global allocator for allocation-free loops.
//! - [`conformance`]: the checks every splitting should pass: convergence,
//!   agreement with a reference solution, optimality, vector-Jacobian
//!   products against finite differences, in `f64` and `f32`.
//! - [`fd`]: central finite-difference checks of every vector-Jacobian
//!   product a type provides (state and parameter cotangents of a
//!   [`Splitting`](optlayer_core::Splitting), a [`Prox`](optlayer_core::Prox),
//!   the parameter gradients of an [`Operator`](optlayer_core::Operator)) and
//!   the dot test of an operator's adjoint.
//! - [`prox_checks`]: properties every proximal map has (firm
//!   nonexpansiveness, the subgradient inequality, Moreau's identity),
//!   measured on batches, for checking new maps.
//! - [`reference`](mod@reference): exact solvers for small problems, independent of any
//!   splitting, to check optimality.
//! - [`random`]: seeded random matrices for tests.
//! - [`temp`]: temporary folders removed when dropped.

pub mod alloc;
pub mod conformance;
pub mod fd;
pub mod prox_checks;
pub mod random;
pub mod reference;
pub mod temp;

/// Returns a proptest configuration with `cases` cases and a fixed random
/// seed, so that every run of the suite checks the same cases.
///
/// Setting the environment variable `PROPTEST_RNG_SEED` overrides the seed,
/// for exploring other cases.
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, RngSeed};
    let rng_seed = match std::env::var("PROPTEST_RNG_SEED") {
        Ok(_) => Config::default().rng_seed,
        Err(_) => RngSeed::Fixed(0x0971_1a7e),
    };
    Config {
        cases,
        rng_seed,
        ..Config::default()
    }
}
