//! Seeded random matrices for tests.

use faer::Mat;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Returns an `nrows x ncols` matrix of independent standard normal entries.
pub fn gaussian(nrows: usize, ncols: usize, seed: u64) -> Mat<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Mat::from_fn(nrows, ncols, |_, _| StandardNormal.sample(&mut rng))
}

/// Returns a seeded random number generator for a test.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}
