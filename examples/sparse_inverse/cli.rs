//! Command-line settings of the sparse inverse example.

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, Parser, ValueEnum};
use optlayer::problems::sparse_inverse::SparseInverseConfig;
use optlayer::train::{AdamConfig, ContractionCheck, TrainConfig};
use optlayer::{AdjointSolver, Error, ForwardOptions, GradientMode, ImplicitOptions};
use serde::{Deserialize, Serialize};

/// A named group of default settings; explicit flags override it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Reduced run: 3,000 training pairs, 10 epochs, learning rate 1e-3 (about a minute on 2 cores).
    Quick,
    /// The published configuration: 10,000 training pairs, 75 epochs, learning rate 4e-5.
    Paper,
}

/// Floating-point precision of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    F64,
}

const ABOUT: &str = "Train Θ in min ‖Θx‖₁ s.t. Ax = d to recover sparse-coded signals from underdetermined \
measurements, and compare it on a test set with least squares and with the untrained Θ.";

/// Flags of the sparse inverse example.
#[derive(Debug, Parser)]
#[command(name = "sparse_inverse", version, about = ABOUT, long_about = None)]
pub struct Args {
    /// Group of default settings; the flags below override its values.
    #[arg(long, value_enum, default_value = "quick")]
    pub preset: Preset,

    /// Signal dimension n [default: 250].
    #[arg(long)]
    pub n: Option<usize>,

    /// Number of measurements m, the rows of A [default: 100].
    #[arg(long)]
    pub m: Option<usize>,

    /// Dictionary size r; signals are M z with M of size n x r [default: 50].
    #[arg(long)]
    pub r: Option<usize>,

    /// Number of training pairs [quick: 3000, paper: 10000].
    #[arg(long)]
    pub train_samples: Option<usize>,

    /// Number of test pairs [default: 1000].
    #[arg(long)]
    pub test_samples: Option<usize>,

    /// Number of training epochs [quick: 10, paper: 75].
    #[arg(long)]
    pub epochs: Option<usize>,

    /// Samples per mini-batch [default: 100].
    #[arg(long)]
    pub batch_size: Option<usize>,

    /// Adam learning rate [quick: 1e-3, paper: 4e-5].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,

    /// Adam weight decay, added to the gradient as in torch.optim.Adam [default: 1e-5].
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,

    /// Maximum forward iterations while training and for the per-epoch test error [default: 400].
    #[arg(long)]
    pub train_iters: Option<usize>,

    /// Maximum forward iterations of the final evaluation [default: 2000].
    #[arg(long)]
    pub test_iters: Option<usize>,

    /// Relative tolerance on the fixed-point residual ‖z⁺ − z‖/‖z⁺‖ [default: 1e-5].
    #[arg(long, allow_negative_numbers = true)]
    pub tol: Option<f64>,

    /// Seed of the data, the initial Θ and the mini-batch shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Number of threads for the forward passes [default: the number of cores].
    #[arg(long)]
    pub threads: Option<usize>,

    /// Floating-point precision.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,

    /// Output folder for the .npy files and report.json [default: target/sparse_inverse in the workspace].
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Read A.npy, train_d.npy, train_x.npy, test_d.npy and test_x.npy (one sample per row)
    /// from this folder instead of generating data. The files define n, m and the sample counts.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,

    /// Start training from this Θ (an n x n .npy file) instead of a random one.
    #[arg(long)]
    pub theta_init: Option<PathBuf>,

    /// Gradient mode for training: jfb, truncated:K, unrolled, unrolled:K, implicit or implicit:bicgstab.
    #[arg(long, default_value = "jfb")]
    pub grad: String,

    /// Memory limit in MiB for the iterates stored by --grad unrolled, unrolled:K or truncated:K
    /// [default: no limit].
    #[arg(long)]
    pub memory_limit_mib: Option<usize>,

    /// Estimate the contraction factor at every training step with this many power iterations (0: off).
    #[arg(long, default_value_t = 0)]
    pub contraction_iters: usize,

    /// With --contraction-iters, compute the gradient of a batch whose estimate is 1 or more
    /// by implicit differentiation (BiCGSTAB) instead of the --grad mode.
    #[arg(long)]
    pub fallback_implicit: bool,

    /// Before training, compare every gradient mode with finite differences on the first
    /// batch and print the table.
    #[arg(long)]
    pub audit: bool,

    /// Evaluate this Θ (an n x n .npy file, for example one trained in numpy or PyTorch)
    /// instead of training one.
    #[arg(long, conflicts_with_all = ["theta_init", "resume"])]
    pub load_theta: Option<PathBuf>,

    /// Continue the run whose checkpoint folder is DIR (OUT/checkpoint of that run, or its OUT).
    /// The settings come from the checkpoint folder; --epochs (to extend the run) and --quiet
    /// may be given, any other flag is an error.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,

    /// Training samples whose inferences calibrate the certificate's quantile thresholds
    /// [default: 1000, at most the training set].
    #[arg(long)]
    pub calibration_samples: Option<usize>,

    /// Quantile of the calibration values below which a property passes [default: 0.95].
    #[arg(long, allow_negative_numbers = true)]
    pub p_pass: Option<f64>,

    /// Share of calibration values, above the pass quantile, labeled warning [default: 0.04].
    #[arg(long, allow_negative_numbers = true)]
    pub p_warn: Option<f64>,

    /// Fixed fidelity threshold: ‖Ax − d‖/‖d‖ at most this passes [default: 0.01].
    #[arg(long, allow_negative_numbers = true)]
    pub fidelity_pass: Option<f64>,

    /// Fixed fidelity threshold: ‖Ax − d‖/‖d‖ above --fidelity-pass and at most this is a
    /// warning, above it a failure [default: 0.05].
    #[arg(long, allow_negative_numbers = true)]
    pub fidelity_warn: Option<f64>,

    /// Print only the summary table: no progress bars, and log warnings and errors only
    /// (RUST_LOG overrides the log level).
    #[arg(long)]
    pub quiet: bool,
}

/// Every setting of a run after the preset and the flags are combined.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    pub preset: Preset,
    pub precision: Precision,
    pub n: usize,
    pub m: usize,
    /// Dictionary size; `None` when the data were read from files.
    pub r: Option<usize>,
    pub density: f64,
    pub train_samples: usize,
    pub test_samples: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub train_iters: usize,
    pub test_iters: usize,
    pub tol: f64,
    pub seed: u64,
    pub threads: usize,
    pub out: PathBuf,
    pub data_dir: Option<PathBuf>,
    pub theta_init: Option<PathBuf>,
    /// The gradient mode's label.
    pub grad: String,
    pub memory_limit_mib: Option<usize>,
    pub contraction_iters: usize,
    pub fallback_implicit: bool,
    pub audit: bool,
    pub quiet: bool,
    /// The Θ evaluated instead of training one.
    pub load_theta: Option<PathBuf>,
    pub calibration_samples: usize,
    pub p_pass: f64,
    pub p_warn: f64,
    pub fidelity_pass: f64,
    pub fidelity_warn: f64,
}

fn invalid_flag(flag: &str, value: f64, requirement: &str) -> Error {
    Error::InvalidParameter {
        name: flag.to_string(),
        value,
        requirement: requirement.to_string(),
    }
}

impl Settings {
    /// Returns the forward settings while training.
    pub fn train_forward(&self) -> ForwardOptions {
        ForwardOptions::new(self.train_iters, self.tol).with_threads(self.threads)
    }

    /// Returns the forward settings of the final evaluation.
    pub fn test_forward(&self) -> ForwardOptions {
        ForwardOptions::new(self.test_iters, self.tol).with_threads(self.threads)
    }

    /// Returns the optimizer settings.
    pub fn adam_config(&self) -> AdamConfig {
        AdamConfig {
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            ..AdamConfig::default()
        }
    }

    /// Returns the gradient mode, with the memory limit applied.
    pub fn gradient_mode(&self) -> GradientMode {
        let limit = self.memory_limit_mib.map(|mib| mib.saturating_mul(1 << 20));
        match GradientMode::parse(&self.grad)
            .unwrap_or(GradientMode::Jfb)
            .with_memory_limit(limit)
        {
            GradientMode::Implicit(options) => GradientMode::Implicit(ImplicitOptions {
                allow_unconverged_forward: true,
                ..options
            }),
            other => other,
        }
    }

    /// Returns the implicit mode used as a fallback and in the audit: BiCGSTAB,
    /// allowed at unconverged forward passes, which training runs to the
    /// iteration limit.
    pub fn implicit_mode() -> GradientMode {
        GradientMode::Implicit(ImplicitOptions {
            solver: AdjointSolver::BiCgStab,
            max_iters: 500,
            rtol: 1e-4,
            allow_unconverged_forward: true,
        })
    }

    /// Returns the training settings.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            seed: self.seed,
            forward: self.train_forward(),
            eval_forward: self.train_forward(),
            gradient: self.gradient_mode(),
            contraction: (self.contraction_iters > 0).then(|| ContractionCheck {
                iters: self.contraction_iters,
                fallback: self.fallback_implicit.then(Self::implicit_mode),
            }),
        }
    }

    /// Returns the problem settings of a generated run.
    pub fn problem_config(&self) -> SparseInverseConfig {
        SparseInverseConfig {
            n: self.n,
            m: self.m,
            r: self.r.unwrap_or(1),
            density: self.density,
            train_samples: self.train_samples,
            test_samples: self.test_samples,
            seed: self.seed,
        }
    }

    /// Checks every setting before any work starts, so an invalid flag fails
    /// at once, with the flag's name.
    pub fn validate(&self) -> Result<(), Error> {
        let counts = [
            ("--batch-size", self.batch_size),
            ("--train-iters", self.train_iters),
            ("--test-iters", self.test_iters),
            ("--threads", self.threads),
        ];
        for (flag, value) in counts {
            if value == 0 {
                return Err(invalid_flag(flag, 0.0, "must be at least 1"));
            }
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(invalid_flag(
                "--lr",
                self.learning_rate,
                "must be finite and greater than zero",
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(invalid_flag(
                "--weight-decay",
                self.weight_decay,
                "must be finite and not negative",
            ));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(invalid_flag("--tol", self.tol, "must be finite and not negative"));
        }
        if self.contraction_iters == 1 {
            return Err(invalid_flag(
                "--contraction-iters",
                1.0,
                "must be 0 (off) or at least 2",
            ));
        }
        if self.fallback_implicit && self.contraction_iters == 0 {
            return Err(Error::InvalidValue {
                name: "flag".into(),
                value: "--fallback-implicit".into(),
                requirement: "needs --contraction-iters N with N ≥ 2, which decides when to fall back".into(),
            });
        }
        if self.calibration_samples == 0 {
            return Err(invalid_flag("--calibration-samples", 0.0, "must be at least 1"));
        }
        if !(self.p_pass > 0.0 && self.p_pass <= 1.0) {
            return Err(invalid_flag("--p-pass", self.p_pass, "must be in (0, 1]"));
        }
        if !(self.p_warn >= 0.0 && self.p_pass + self.p_warn <= 1.0) {
            return Err(invalid_flag(
                "--p-warn",
                self.p_warn,
                "must be at least 0, with --p-pass + --p-warn at most 1",
            ));
        }
        if !(self.fidelity_pass.is_finite() && self.fidelity_pass >= 0.0) {
            return Err(invalid_flag(
                "--fidelity-pass",
                self.fidelity_pass,
                "must be finite and not negative",
            ));
        }
        if !(self.fidelity_warn.is_finite() && self.fidelity_warn >= self.fidelity_pass) {
            return Err(invalid_flag(
                "--fidelity-warn",
                self.fidelity_warn,
                "must be finite and at least --fidelity-pass",
            ));
        }
        if self.data_dir.is_none() {
            self.problem_config().validate()?;
        }
        self.adam_config().validate()?;
        self.train_config().validate()?;
        self.test_forward().validate()
    }
}

impl Args {
    /// Combines the preset with the flags given.
    ///
    /// # Errors
    /// When a size flag is combined with `--data-dir`, whose files define the sizes.
    pub fn settings(&self) -> Result<Settings, Error> {
        if self.data_dir.is_some() {
            let size_flags = [
                ("--n", self.n),
                ("--m", self.m),
                ("--r", self.r),
                ("--train-samples", self.train_samples),
                ("--test-samples", self.test_samples),
            ];
            if let Some((flag, Some(value))) = size_flags.iter().find(|(_, given)| given.is_some()) {
                return Err(Error::InvalidParameter {
                    name: flag.to_string(),
                    value: *value as f64,
                    requirement:
                        "cannot be combined with --data-dir, whose files define the sizes; remove it".into(),
                });
            }
        }
        let (train_samples, epochs, lr) = match self.preset {
            Preset::Quick => (3_000, 10, 1e-3),
            Preset::Paper => (10_000, 75, 4e-5),
        };
        let out = self.out.clone().unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join("sparse_inverse")
        });
        let threads = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Ok(Settings {
            preset: self.preset,
            precision: self.precision,
            n: self.n.unwrap_or(250),
            m: self.m.unwrap_or(100),
            r: Some(self.r.unwrap_or(50)),
            density: 0.1,
            train_samples: self.train_samples.unwrap_or(train_samples),
            test_samples: self.test_samples.unwrap_or(1_000),
            epochs: self.epochs.unwrap_or(epochs),
            batch_size: self.batch_size.unwrap_or(100),
            learning_rate: self.lr.unwrap_or(lr),
            weight_decay: self.weight_decay.unwrap_or(1e-5),
            train_iters: self.train_iters.unwrap_or(400),
            test_iters: self.test_iters.unwrap_or(2_000),
            tol: self.tol.unwrap_or(1e-5),
            seed: self.seed,
            threads,
            out,
            data_dir: self.data_dir.clone(),
            theta_init: self.theta_init.clone(),
            grad: GradientMode::parse(&self.grad)?.label(),
            memory_limit_mib: self.memory_limit_mib,
            contraction_iters: self.contraction_iters,
            fallback_implicit: self.fallback_implicit,
            audit: self.audit,
            quiet: self.quiet,
            load_theta: self.load_theta.clone(),
            calibration_samples: self.calibration_samples.unwrap_or(1_000),
            p_pass: self.p_pass.unwrap_or(0.95),
            p_warn: self.p_warn.unwrap_or(0.04),
            fidelity_pass: self.fidelity_pass.unwrap_or(0.01),
            fidelity_warn: self.fidelity_warn.unwrap_or(0.05),
        })
    }
}

/// The file in the checkpoint folder that keeps the settings of the run.
pub const SETTINGS_FILE: &str = "settings.json";

/// The flags that may be given with `--resume`, as clap names them.
const RESUME_FLAGS: [&str; 3] = ["resume", "epochs", "quiet"];

impl Args {
    /// Returns the settings of the run whose checkpoint folder is `dir`, with
    /// `--epochs` and `--quiet` applied.
    ///
    /// # Errors
    /// When another flag is given on the command line, or the settings file is
    /// missing or malformed.
    pub fn resumed_settings(&self, matches: &ArgMatches, dir: &Path) -> Result<Settings, Error> {
        let command = <Self as clap::CommandFactory>::command();
        for argument in command.get_arguments() {
            let id = argument.get_id().as_str();
            if !RESUME_FLAGS.contains(&id) && matches.value_source(id) == Some(ValueSource::CommandLine) {
                return Err(Error::InvalidValue {
                    name: "flag".into(),
                    value: format!("--{}", id.replace('_', "-")),
                    requirement: "cannot be combined with --resume, which takes every setting from the \
                                  checkpoint folder; remove it (only --epochs and --quiet may be given)"
                        .into(),
                });
            }
        }
        let path = dir.join(SETTINGS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            action: "failed to read the settings of the run to resume from".into(),
            path: path.clone(),
            source,
        })?;
        let mut settings: Settings = serde_json::from_str(&text).map_err(|e| Error::InvalidFile {
            path,
            reason: format!("{e}; expected the settings that a run writes into its checkpoint folder"),
        })?;
        if let Some(epochs) = self.epochs {
            settings.epochs = epochs;
        }
        settings.quiet = self.quiet;
        Ok(settings)
    }
}
