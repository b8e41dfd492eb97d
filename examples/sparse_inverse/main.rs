//! The sparse inverse problem, end to end: generate data, train Θ in
//! `min ‖Θx‖₁ s.t. Ax = d` with Jacobian-free backpropagation, evaluate
//! against least squares and the untrained Θ, certify each inference, and
//! write the results and figures.
//!
//! Run with `cargo run --release --example sparse_inverse -- --help`.

mod certify;
mod cli;
mod evaluation;
mod output;
mod plots;
mod progress;
mod report;
mod training;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::{CommandFactory, FromArgMatches};
use faer::{Mat, MatRef};
use optlayer::problems::sparse_inverse::{
    SparseInverseConfig, SparseInverseProblem, build_model, cast, cast_dataset, initial_theta,
};
use optlayer::splittings::{LadmmSteps, LinearizedAdmm};
use optlayer::train::{Calibration, Checkpoint, Dataset, npy};
use optlayer::{
    AuditOptions, Error, GradientAudit, GradientMode, OptLayer, Parameterized, Scalar, find_param, set_param,
};

use cli::{Args, Precision, SETTINGS_FILE, Settings};
use evaluation::{convergence_histories, evaluate_depths, evaluate_least_squares, predict};
use output::Staging;
use progress::Progress;
use report::{AuditEntry, EpochEntry, Figures, Report, Steps, TestReport, TrainingEntry};
use training::{Training, check_unfinished_run, train_model};

/// Exit status of a run stopped by Ctrl-C or SIGTERM after saving its checkpoint.
const INTERRUPTED: u8 = 130;

/// Figures that a `--load-theta` run does not draw. A run removes those it
/// did not write, so the figures in the folder are all from one run. Inputs
/// that a `--data-dir` run does not copy are kept: they may be the data.
const OUTPUTS: [&str; 2] = ["training_curves.svg", "training_curves.png"];

/// The outcome of a run.
enum Outcome {
    Finished,
    Interrupted,
}

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    progress::init_logger(args.quiet);
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        if let Err(error) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
            log::warn!("Ctrl-C will stop the run without saving: {error}");
        }
    }
    let result = resolve(&args, &matches).and_then(|(settings, resume)| match settings.precision {
        Precision::F32 => run::<f32>(&settings, resume.as_deref(), &interrupted),
        Precision::F64 => run::<f64>(&settings, resume.as_deref(), &interrupted),
    });
    match result {
        Ok(Outcome::Finished) => ExitCode::SUCCESS,
        Ok(Outcome::Interrupted) => ExitCode::from(INTERRUPTED),
        Err(error) => {
            // Printed directly rather than logged, so RUST_LOG cannot hide it.
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Returns the settings of the run and, with `--resume`, its checkpoint folder.
fn resolve(args: &Args, matches: &clap::ArgMatches) -> Result<(Settings, Option<PathBuf>), Error> {
    match &args.resume {
        Some(dir) => {
            let dir = if dir.join(SETTINGS_FILE).exists() || Checkpoint::<f64>::exists(dir) {
                dir.clone()
            } else {
                dir.join("checkpoint")
            };
            Ok((args.resumed_settings(matches, &dir)?, Some(dir)))
        }
        None => Ok((args.settings()?, None)),
    }
}

/// The data of a run, generated or read from files, in `f64`.
struct Problem {
    a: Mat<f64>,
    dictionary: Option<Mat<f64>>,
    theta0: Mat<f64>,
    train: Dataset<f64>,
    test: Dataset<f64>,
}

fn load_or_generate(settings: &Settings) -> Result<Problem, Error> {
    let mut problem = match &settings.data_dir {
        Some(dir) => {
            let a_path = dir.join("A.npy");
            let a = npy::read_matrix::<f64>(&a_path)?;
            if let Some((row, col, value)) = optlayer::columns::first_non_finite(a.as_ref()) {
                return Err(Error::InvalidFile {
                    path: a_path,
                    reason: format!("row {row}, column {col} is {value}; A must be finite"),
                });
            }
            let (m, n) = (a.nrows(), a.ncols());
            let train = Dataset::load(dir, "train", m, n)?;
            let test = Dataset::load(dir, "test", m, n)?;
            Problem {
                a,
                dictionary: None,
                theta0: initial_theta(n, settings.seed)?,
                train,
                test,
            }
        }
        None => {
            let generated = SparseInverseProblem::generate(&SparseInverseConfig {
                n: settings.n,
                m: settings.m,
                r: settings.r.unwrap_or(50),
                density: settings.density,
                train_samples: settings.train_samples,
                test_samples: settings.test_samples,
                seed: settings.seed,
            })?;
            Problem {
                a: generated.a,
                dictionary: Some(generated.dictionary),
                theta0: generated.theta0,
                train: generated.train,
                test: generated.test,
            }
        }
    };
    if let Some(path) = &settings.theta_init {
        let n = problem.a.ncols();
        problem.theta0 = npy::read_matrix_with_shape::<f64>(path, n, n)?;
    }
    Ok(problem)
}

/// Reads the Θ of `--load-theta`: an `n x n` float32 or float64 `.npy` file.
fn read_theta(path: &Path, n: usize) -> Result<Mat<f64>, Error> {
    let theta = npy::read_matrix_with_shape::<f64>(path, n, n).map_err(|error| match error {
        Error::ShapeMismatch {
            what,
            expected,
            found,
        } => Error::ShapeMismatch {
            what: format!("{what} (--load-theta: Θ must be n x n with n = {n}, the columns of A)"),
            expected,
            found,
        },
        Error::InvalidFile { path, reason } => Error::InvalidFile {
            path,
            reason: format!("{reason}; --load-theta expects a {n} x {n} float32 or float64 array"),
        },
        other => other,
    })?;
    if let Some((row, col, value)) = optlayer::columns::first_non_finite(theta.as_ref()) {
        return Err(Error::InvalidFile {
            path: path.to_path_buf(),
            reason: format!("row {row}, column {col} is {value}; --load-theta expects a finite Θ"),
        });
    }
    // The model min ‖Θx‖₁ s.t. Ax = d does not depend on the scale of Θ, and
    // the layer rescales Θ to unit spectral norm. A power-of-two factor, exact
    // in binary, first brings the entries into the range of f32.
    let largest = theta.norm_max();
    if largest > 0.0 && !(1e-30..=1e30).contains(&largest) {
        let factor = 2f64.powi(-(largest.log2().floor() as i32));
        log::info!("scaling Θ from {} by {factor:e} before use", path.display());
        return Ok(Mat::from_fn(n, n, |i, j| theta[(i, j)] * factor));
    }
    Ok(theta)
}

/// Returns `Err` when Ctrl-C was pressed, so that a run stops between phases.
fn check_interrupt(interrupted: &AtomicBool) -> Result<(), Outcome> {
    if interrupted.load(Ordering::SeqCst) {
        Err(Outcome::Interrupted)
    } else {
        Ok(())
    }
}

fn run<T: Scalar>(
    settings: &Settings,
    resume: Option<&Path>,
    interrupted: &AtomicBool,
) -> Result<Outcome, Error> {
    let started = Instant::now();
    settings.validate()?;
    let mut settings = settings.clone();
    let checkpoint_dir = resume.map_or_else(|| settings.out.join("checkpoint"), Path::to_path_buf);
    if resume.is_none() && settings.load_theta.is_none() {
        check_unfinished_run(&checkpoint_dir)?;
    }
    let staging = Staging::new(&settings.out)?;
    let progress = Progress::new(settings.quiet);

    log::info!("generating data");
    let problem = load_or_generate(&settings)?;
    let (m, n) = (problem.a.nrows(), problem.a.ncols());
    if settings.data_dir.is_some() {
        // The files define the sizes; record them instead of the defaults.
        settings.n = n;
        settings.m = m;
        settings.r = None;
        settings.train_samples = problem.train.len();
        settings.test_samples = problem.test.len();
    }
    let settings = &settings;
    if settings.data_dir.is_none() {
        save_inputs(&staging, &problem)?;
    }
    let loaded_theta = match &settings.load_theta {
        Some(path) => Some(read_theta(path, n)?),
        None => None,
    };
    let saved_calibration = read_saved_calibration(settings)?;

    let a_norm = problem
        .a
        .as_ref()
        .singular_values()
        .map_err(|e| Error::Numerical {
            what: "singular values of A".into(),
            reason: format!("{e:?}"),
        })?[0];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 1.0 / (1.0 + a_norm),
        lambda: 1.0,
    };
    let train = cast_dataset::<T>(&problem.train)?;
    let test = cast_dataset::<T>(&problem.test)?;
    let a = cast::<T>(&problem.a);

    let train_forward = settings.train_forward();
    let model: LinearizedAdmm<T> = build_model(&problem.theta0, &problem.a, steps)?;
    let mut layer = OptLayer::new(model, train_forward.clone())?;
    let theta_index = find_param(&layer, "theta")?;
    // Θ as training starts from it, after normalization to unit spectral norm.
    let theta_init = to_f64(layer.param(theta_index));
    npy::write_matrix(&staging.path("theta_init.npy"), theta_init.as_ref())?;
    log::info!(
        "n = {n}, m = {m}, {} training and {} test pairs, ‖A‖₂ = {a_norm:.4}, αβ‖[Θ; A]‖₂² = {:.4}",
        train.len(),
        test.len(),
        layer.splitting().step_condition()
    );

    log::info!("evaluating least squares and the untrained model");
    let (least_squares, least_squares_x) = evaluate_least_squares(&a, &test)?;
    let (untrained, _) = evaluate_depths(&layer, &a, &test, settings, &progress, "untrained Θ")?;
    if check_interrupt(interrupted).is_err() {
        log::warn!("interrupted before training; nothing to save");
        return Ok(Outcome::Interrupted);
    }

    let audit = if settings.audit {
        Some(run_audit(&mut layer, &train, settings)?)
    } else {
        None
    };

    let training = match &loaded_theta {
        Some(theta) => {
            let path = settings.load_theta.as_deref().unwrap_or(Path::new(""));
            set_param(&mut layer, "theta", cast::<T>(theta).as_ref())?;
            log::info!("evaluating Θ from {} instead of training", path.display());
            Training {
                epochs: Vec::new(),
                resumed_at: None,
            }
        }
        None => match train_model(
            &mut layer,
            &train,
            &test,
            settings,
            resume,
            &checkpoint_dir,
            &progress,
            interrupted,
        )? {
            Some(training) => training,
            None => return Ok(Outcome::Interrupted),
        },
    };
    if check_interrupt(interrupted).is_err() {
        log::warn!(
            "interrupted after training; the checkpoint in {} is complete",
            checkpoint_dir.display()
        );
        return Ok(Outcome::Interrupted);
    }

    log::info!("evaluating the trained model");
    let (trained, prediction) = evaluate_depths(&layer, &a, &test, settings, &progress, "trained Θ")?;
    let theta = layer.param(theta_index).to_owned();
    npy::write_matrix(
        &staging.path("theta_trained.npy"),
        to_f64(theta.as_ref()).as_ref(),
    )?;

    let (certificate, calibration_len) = calibrate_certificate(
        &layer,
        theta.as_ref(),
        a.as_ref(),
        &train,
        saved_calibration
            .as_ref()
            .map(|(path, calibration)| (path.as_path(), calibration)),
        settings,
        &progress,
    )?;
    certificate
        .calibration()?
        .save(&staging.path(certify::CALIBRATION_FILE))?;
    let certificates = certify::assess(
        &certificate,
        &test,
        &least_squares_x,
        &prediction,
        settings,
        calibration_len,
        saved_calibration.as_ref().map(|(path, _)| path.as_path()),
    )?;
    if check_interrupt(interrupted).is_err() {
        return Ok(Outcome::Interrupted);
    }

    log::info!("drawing the figures");
    let renderer = plots::Renderer::new();
    if renderer.font.is_none() {
        log::warn!("no sans-serif font found; the PNG figures have no text (the SVG figures do)");
    }
    let histories = convergence_histories(
        [
            ("untrained Θ", cast::<T>(&theta_init).as_ref()),
            ("trained Θ", theta.as_ref()),
        ],
        &problem.a,
        steps,
        &test,
        settings,
    )?;
    let figures = draw_figures(
        &renderer,
        &staging,
        &training.epochs,
        least_squares.mse,
        &histories,
        &certificates,
        theta.as_ref(),
        settings,
    )?;

    let report = Report {
        config: settings.clone(),
        steps: Steps {
            alpha: steps.alpha,
            beta: layer.splitting().beta().to_f64_lossless(),
            lambda: steps.lambda,
            a_norm,
        },
        training: TrainingEntry {
            theta_source: match &settings.load_theta {
                Some(path) => format!("loaded from {}", path.display()),
                None => "trained".into(),
            },
            resumed_at_epoch: training.resumed_at,
            checkpoint: settings.load_theta.is_none().then(|| checkpoint_dir.clone()),
        },
        epochs: training.epochs,
        test: TestReport {
            least_squares,
            untrained,
            trained,
        },
        certificate: certificates.report.clone(),
        figures,
        audit: audit.as_ref().map(AuditEntry::rows),
        wall_seconds: started.elapsed().as_secs_f64(),
    };
    report.write(&staging.path("report.json"))?;
    staging.commit(&OUTPUTS)?;
    println!("{}", report.summary_table());
    println!();
    println!("{}", certificates.table);
    println!("wrote {}", settings.out.display());
    Ok(Outcome::Finished)
}

/// Reads the calibration file beside the Θ of `--load-theta`, if there is one,
/// and checks that it was written with this run's certificate flags.
fn read_saved_calibration(settings: &Settings) -> Result<Option<(PathBuf, Calibration)>, Error> {
    // A Θ from --load-theta comes with its thresholds when a calibration file
    // lies beside it, as this example writes one beside theta_trained.npy.
    let Some(path) = &settings.load_theta else {
        return Ok(None);
    };
    let calibration_path = path.with_file_name(certify::CALIBRATION_FILE);
    if !calibration_path.exists() {
        return Ok(None);
    }
    let calibration = Calibration::load(&calibration_path)?;
    certify::check_calibration(&calibration, settings, &calibration_path)?;
    Ok(Some((calibration_path, calibration)))
}

/// Builds the certificate and sets its thresholds: from the saved calibration
/// when there is one, otherwise from the model's inferences on the first
/// `--calibration-samples` training samples. Returns it with the number of
/// samples the thresholds come from.
fn calibrate_certificate<T: Scalar>(
    layer: &OptLayer<LinearizedAdmm<T>>,
    theta: MatRef<'_, T>,
    a: MatRef<'_, T>,
    train: &Dataset<T>,
    saved_calibration: Option<(&Path, &Calibration)>,
    settings: &Settings,
    progress: &Progress,
) -> Result<(optlayer::train::Certificate<T>, usize), Error> {
    let mut certificate = certify::certificate(theta, a, settings)?;
    let calibration_len = match saved_calibration {
        Some((path, calibration)) => {
            log::info!("reading the certificate thresholds from {}", path.display());
            certificate.apply_calibration(calibration)?;
            calibration.entries.iter().map(|e| e.samples).max().unwrap_or(0)
        }
        None => {
            log::info!("calibrating the certificate on training inferences");
            let calibration_len = settings.calibration_samples.min(train.len());
            if calibration_len < settings.calibration_samples {
                log::warn!(
                    "--calibration-samples {} is more than the {} training samples; calibrating on all of them",
                    settings.calibration_samples,
                    train.len()
                );
            }
            let calibration_data = train.data().subcols(0, calibration_len);
            let calibration = predict(
                layer,
                calibration_data,
                settings,
                &settings.test_forward(),
                progress,
                "calibration",
            )?;
            certificate.calibrate(
                calibration.x.as_ref(),
                calibration_data,
                Some(&calibration.samples),
            )?;
            for name in certificate.names() {
                if let Some(t) = certificate.thresholds(name) {
                    log::debug!(
                        "certificate thresholds of {name}: pass ≤ {:e}, warning ≤ {:e}",
                        t.pass,
                        t.warn
                    );
                }
            }
            calibration_len
        }
    };
    Ok((certificate, calibration_len))
}

/// Compares every gradient mode with finite differences on the first
/// training batch, prints the table and returns it for the report.
fn run_audit<T: Scalar>(
    layer: &mut OptLayer<LinearizedAdmm<T>>,
    train: &Dataset<T>,
    settings: &Settings,
) -> Result<GradientAudit, Error> {
    let batch = settings.batch_size.min(train.len());
    let data = train.data().subcols(0, batch).to_owned();
    let targets = train.targets().subcols(0, batch).to_owned();
    let limit = settings.memory_limit_mib.map(|mib| mib.saturating_mul(1 << 20));
    let options = AuditOptions {
        modes: vec![
            GradientMode::Jfb,
            GradientMode::Truncated {
                steps: 10,
                memory_limit_bytes: None,
            },
            GradientMode::Unrolled {
                steps: None,
                memory_limit_bytes: limit,
            },
            Settings::implicit_mode(),
        ],
        seed: settings.seed,
        ..AuditOptions::default()
    };
    log::info!("auditing gradients on {batch} training samples");
    let audit = layer.audit_gradients(
        data.as_ref(),
        &mut |x, g| optlayer::mse_loss(x, targets.as_ref(), g),
        &options,
    )?;
    println!("{}", audit.table());
    Ok(audit)
}

/// Writes the generated matrices and datasets (in `f64`).
fn save_inputs(staging: &Staging, problem: &Problem) -> Result<(), Error> {
    npy::write_matrix(&staging.path("A.npy"), problem.a.as_ref())?;
    if let Some(dictionary) = &problem.dictionary {
        npy::write_matrix(&staging.path("M.npy"), dictionary.as_ref())?;
    }
    let dir: &Path = &staging.path("");
    problem.train.save(dir, "train")?;
    problem.test.save(dir, "test")
}

/// Converts a matrix to `f64`, so every file the example writes has one dtype.
fn to_f64<T: Scalar>(m: MatRef<'_, T>) -> Mat<f64> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)].to_f64_lossless())
}

/// Draws the four figures into the staging folder and returns their file names.
#[allow(clippy::too_many_arguments)]
fn draw_figures<T: Scalar>(
    renderer: &plots::Renderer,
    staging: &Staging,
    epochs: &[EpochEntry],
    least_squares_mse: f64,
    histories: &[plots::History],
    certificates: &certify::Certificates<T>,
    theta: MatRef<'_, T>,
    settings: &Settings,
) -> Result<Figures, Error> {
    let dir = staging.path("");
    let mut files = Vec::new();
    let theta_x = theta * certificates.signals.as_ref();
    let panels: Vec<plots::StemPanel> = certificates
        .panel_titles
        .iter()
        .enumerate()
        .map(|(j, title)| plots::StemPanel {
            title: title.clone(),
            values: (0..theta_x.nrows())
                .map(|i| theta_x[(i, j)].to_f64_lossless())
                .collect(),
        })
        .collect();
    files.extend(plots::stems(renderer, &dir, &panels)?);
    if epochs.is_empty() {
        log::info!("no training epochs: training_curves is not drawn");
    } else {
        let points: Vec<plots::EpochPoint> = epochs
            .iter()
            .map(|e| plots::EpochPoint {
                epoch: e.epoch,
                train: e.train_mse,
                test: e.test_mse,
            })
            .collect();
        files.extend(plots::training_curves(
            renderer,
            &dir,
            &points,
            least_squares_mse,
        )?);
    }
    files.extend(plots::convergence(
        renderer,
        &dir,
        histories,
        settings.tol,
        "Relative fixed-point residual of linearized ADMM on test samples",
    )?);
    let thresholds = certificates.sparsity_thresholds;
    files.extend(plots::histogram(
        renderer,
        &dir,
        "sparsity_histogram",
        &format!(
            "Sparsity of {} test inferences, with the thresholds from training inferences",
            certificates.sparsity_test.len()
        ),
        "‖Θx‖₁",
        &certificates.sparsity_test,
        &[
            (
                format!("pass up to the {} quantile", settings.p_pass),
                thresholds.pass,
            ),
            (
                format!("warning up to the {} quantile", settings.p_pass + settings.p_warn),
                thresholds.warn,
            ),
        ],
        40,
    )?);
    let names: Vec<String> = files
        .iter()
        .filter_map(|path| path.file_name().map(|name| name.to_string_lossy().into_owned()))
        .collect();
    log::debug!("drew {}", names.join(", "));
    Ok(Figures { files: names })
}
