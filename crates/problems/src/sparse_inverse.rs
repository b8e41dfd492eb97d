//! The sparse inverse problem.
//!
//! Signals `x* = M z*` are combinations of a few columns of a dictionary `M`
//! (`n x r`): the entries of `z*` are Bernoulli(`density`) times N(0, 1).
//! Measurements `d = A x*` are underdetermined (`A` is `m x n` with `m < n`),
//! `A` Gaussian with unit columns and no noise. The model is
//! `N_Θ(d) = argmin_x ‖Θx‖₁ s.t. Ax = d` with a learned `Θ` (`n x n`),
//! evaluated by linearized ADMM with `α = 0.5`, `λ = 1` and
//! `β = 1/(1 + ‖A‖₂)`, and `Θ` kept at unit spectral norm.
//!
//! The default [`SparseInverseConfig`] sizes follow the published experiment
//! this design follows (Heaton and Fung, "Explainable AI via learning to
//! optimize", Scientific Reports 13, 2023): `n = 250`, `m = 100`, `r = 50`,
//! density 0.1.

use faer::Mat;
use optlayer_core::{Error, Result, Scalar};
use optlayer_ops::{Dense, IndicatorPoint, L1Norm, LearnableDense, Normalization};
use optlayer_splittings::{Block, LadmmSteps, LinearizedAdmm};
use optlayer_train::Dataset;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Sizes and seed of a generated sparse inverse problem.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseInverseConfig {
    /// Signal dimension `n`.
    pub n: usize,
    /// Number of measurements `m`.
    pub m: usize,
    /// Dictionary size `r`.
    pub r: usize,
    /// Probability that an entry of `z*` is nonzero.
    pub density: f64,
    /// Training pairs.
    pub train_samples: usize,
    /// Test pairs.
    pub test_samples: usize,
    /// Seed of every random draw.
    pub seed: u64,
}

impl Default for SparseInverseConfig {
    fn default() -> Self {
        Self {
            n: 250,
            m: 100,
            r: 50,
            density: 0.1,
            train_samples: 10_000,
            test_samples: 1_000,
            seed: 0,
        }
    }
}

impl SparseInverseConfig {
    /// Checks the sizes.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the setting.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("n", self.n),
            ("m", self.m),
            ("r", self.r),
            ("train samples", self.train_samples),
            ("test samples", self.test_samples),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::InvalidParameter {
                    name: name.into(),
                    value: 0.0,
                    requirement: "must be at least 1".into(),
                });
            }
        }
        if self.m > self.n {
            return Err(Error::InvalidParameter {
                name: "m".into(),
                value: self.m as f64,
                requirement: format!(
                    "must not exceed n = {}, because the measurements must be underdetermined",
                    self.n
                ),
            });
        }
        if !(self.density > 0.0 && self.density <= 1.0) {
            return Err(Error::InvalidParameter {
                name: "density".into(),
                value: self.density,
                requirement: "must be in (0, 1]".into(),
            });
        }
        self.check_memory()
    }

    /// Returns an estimate of the bytes [`SparseInverseProblem::generate`]
    /// allocates: `A`, `M`, `Θ₀` twice, and codes, signals and data for every
    /// sample, in `f64`, doubled for working copies. `None` on overflow.
    pub fn memory_estimate(&self) -> Option<usize> {
        let (n, m, r) = (self.n, self.m, self.r);
        let samples = self.train_samples.checked_add(self.test_samples)?;
        let matrices = n
            .checked_mul(r)?
            .checked_add(m.checked_mul(n)?)?
            .checked_add(n.checked_mul(n)?.checked_mul(2)?)?;
        let per_sample = r.checked_add(n)?.checked_add(m)?;
        let entries = matrices.checked_add(per_sample.checked_mul(samples)?)?;
        entries.checked_mul(2 * std::mem::size_of::<f64>())
    }

    /// Checks that the memory the sizes need can be allocated, so that too
    /// large sizes fail with an error instead of an allocation failure.
    fn check_memory(&self) -> Result<()> {
        let too_large = |bytes: Option<usize>| Error::InvalidParameter {
            name: "problem size".into(),
            value: bytes.map_or(f64::INFINITY, |b| b as f64),
            requirement: format!(
                "needs more memory (in bytes) than can be allocated for n = {}, m = {}, r = {} and {} samples; \
                 lower n or the sample counts",
                self.n,
                self.m,
                self.r,
                self.train_samples.saturating_add(self.test_samples)
            ),
        };
        let bytes = self.memory_estimate().ok_or_else(|| too_large(None))?;
        let mut probe: Vec<u8> = Vec::new();
        probe
            .try_reserve_exact(bytes)
            .map_err(|_| too_large(Some(bytes)))?;
        Ok(())
    }
}

/// Random streams of the generator. Each part has its own stream of the
/// seeded generator, so changing a sample count leaves `A`, `M` and `Θ₀` unchanged.
#[derive(Clone, Copy)]
enum Stream {
    Dictionary = 1,
    Measurement = 2,
    Theta = 3,
    TrainCodes = 4,
    TestCodes = 5,
}

fn stream_rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}

fn gaussian_matrix(nrows: usize, ncols: usize, rng: &mut ChaCha8Rng) -> Mat<f64> {
    Mat::from_fn(nrows, ncols, |_, _| StandardNormal.sample(rng))
}

/// A generated sparse inverse problem, in `f64`; [`cast`] and
/// [`cast_dataset`] convert its parts, so `f32` and `f64` runs share one draw.
#[derive(Clone, Debug)]
pub struct SparseInverseProblem {
    /// The settings it was generated with.
    pub config: SparseInverseConfig,
    /// Measurement matrix `A` (`m x n`) with unit columns.
    pub a: Mat<f64>,
    /// Dictionary `M` (`n x r`), N(0, 1) entries, not normalized.
    pub dictionary: Mat<f64>,
    /// Initial `Θ₀` (`n x n`): N(0, 1) entries scaled to unit spectral norm.
    pub theta0: Mat<f64>,
    /// Training pairs.
    pub train: Dataset<f64>,
    /// Test pairs.
    pub test: Dataset<f64>,
}

impl SparseInverseProblem {
    /// Generates a problem.
    ///
    /// # Errors
    /// When the configuration is invalid.
    pub fn generate(config: &SparseInverseConfig) -> Result<Self> {
        config.validate()?;
        let (n, m, r) = (config.n, config.m, config.r);

        let dictionary = gaussian_matrix(n, r, &mut stream_rng(config.seed, Stream::Dictionary));
        let mut a = gaussian_matrix(m, n, &mut stream_rng(config.seed, Stream::Measurement));
        for j in 0..n {
            let norm = a.col(j).norm_l2();
            for i in 0..m {
                a[(i, j)] /= norm;
            }
        }
        let theta0 = initial_theta(n, config.seed)?;

        let make = |samples: usize, stream: Stream| -> Result<Dataset<f64>> {
            let mut rng = stream_rng(config.seed, stream);
            let codes = Mat::from_fn(r, samples, |_, _| {
                let keep = rng.random_bool(config.density);
                let value: f64 = StandardNormal.sample(&mut rng);
                if keep { value } else { 0.0 }
            });
            let x = &dictionary * &codes;
            let d = &a * &x;
            Dataset::new(d, x)
        };
        let train = make(config.train_samples, Stream::TrainCodes)?;
        let test = make(config.test_samples, Stream::TestCodes)?;
        Ok(Self {
            config: config.clone(),
            a,
            dictionary,
            theta0,
            train,
            test,
        })
    }

    /// Returns the reference step sizes `α = 0.5`, `λ = 1`, `β = 1/(1 + ‖A‖₂)`.
    ///
    /// # Errors
    /// When the singular values of `A` cannot be computed.
    pub fn reference_steps(&self) -> Result<LadmmSteps> {
        let a_norm = self.a.as_ref().singular_values().map_err(|e| Error::Numerical {
            what: "singular values of A".into(),
            reason: format!("{e:?}"),
        })?[0];
        Ok(LadmmSteps {
            alpha: 0.5,
            beta: 1.0 / (1.0 + a_norm),
            lambda: 1.0,
        })
    }
}

/// Returns the initial `Θ₀` (`n x n`) that [`SparseInverseProblem::generate`]
/// draws for `seed`: N(0, 1) entries scaled to unit spectral norm.
///
/// # Errors
/// When `n` is zero.
pub fn initial_theta(n: usize, seed: u64) -> Result<Mat<f64>> {
    let raw = gaussian_matrix(n, n, &mut stream_rng(seed, Stream::Theta));
    Ok(LearnableDense::new("theta", raw)?
        .with_normalization(Normalization::unit_spectral_norm())?
        .matrix()
        .to_owned())
}

/// Builds linearized ADMM for `min ‖Θx‖₁ s.t. Ax = d` from `theta` and `a`
/// (given in `f64`, converted to `T`), with `Θ` as the learnable parameter
/// "theta" kept at unit spectral norm.
///
/// # Errors
/// When the matrices do not fit together or the steps are invalid.
pub fn build_model<T: Scalar>(
    theta: &Mat<f64>,
    a: &Mat<f64>,
    steps: LadmmSteps,
) -> Result<LinearizedAdmm<T>> {
    let (m, n) = (a.nrows(), a.ncols());
    if theta.ncols() != n {
        return Err(Error::ShapeMismatch {
            what: "theta".into(),
            expected: format!("{n} columns (the columns of A)"),
            found: format!("{} columns", theta.ncols()),
        });
    }
    let theta =
        LearnableDense::new("theta", cast(theta))?.with_normalization(Normalization::unit_spectral_norm())?;
    let blocks = vec![
        Block::new(theta, L1Norm::new(T::one())?),
        Block::new(Dense::new(cast(a))?, IndicatorPoint::from_data(0, m)?),
    ];
    LinearizedAdmm::new(n, m, blocks, steps)
}

/// Converts an `f64` matrix to `T`.
pub fn cast<T: Scalar>(m: &Mat<f64>) -> Mat<T> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| T::lit(m[(i, j)]))
}

/// Converts an `f64` dataset to `T`.
///
/// # Errors
/// When a value overflows `T` (an `f64` entry beyond `f32::MAX`).
pub fn cast_dataset<T: Scalar>(dataset: &Dataset<f64>) -> Result<Dataset<T>> {
    for (what, values) in [("data", dataset.data()), ("targets", dataset.targets())] {
        for sample in 0..values.ncols() {
            for entry in 0..values.nrows() {
                let value = values[(entry, sample)];
                if !T::lit(value).is_finite() {
                    return Err(Error::Numerical {
                        what: format!("conversion of the dataset {what} to {}", T::NAME),
                        reason: format!(
                            "entry {entry} of sample {sample} is {value:e}, beyond the range of {}; use f64",
                            T::NAME
                        ),
                    });
                }
            }
        }
    }
    Dataset::new(
        cast(&dataset.data().to_owned()),
        cast(&dataset.targets().to_owned()),
    )
}
