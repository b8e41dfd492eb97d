//! The sparse inverse problem, end to end: generate data, train Θ in
//! `min ‖Θx‖₁ s.t. Ax = d` with Jacobian-free backpropagation, evaluate
//! against least squares and the untrained Θ, and write the results.
//!
//! Run with `cargo run --release --example sparse_inverse -- --help`.

mod cli;
mod output;
mod report;

use std::ops::ControlFlow;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use faer::{Mat, MatRef};
use optlayer::problems::MinNormLeastSquares;
use optlayer::problems::sparse_inverse::{
    SparseInverseConfig, SparseInverseProblem, build_model, cast, cast_dataset, initial_theta,
};
use optlayer::splittings::LinearizedAdmm;
use optlayer::train::{Adam, Dataset, Trainer, evaluate, npy};
use optlayer::{
    AuditOptions, Error, ForwardOptions, GradientAudit, GradientMode, OptLayer, Parameterized, Scalar,
    Splitting, find_param,
};

use cli::{Args, Precision, Settings};
use output::Staging;
use report::{
    AuditEntry, DepthStats, EpochEntry, LeastSquaresResult, ModelResult, Report, Steps, TestReport,
};

fn main() -> ExitCode {
    let args = Args::parse();
    let result = args.settings().and_then(|settings| match settings.precision {
        Precision::F32 => run::<f32>(&settings),
        Precision::F64 => run::<f64>(&settings),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
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

/// Returns the mean over columns of `‖A x − d‖ / ‖d‖`.
fn mean_fidelity<T: Scalar>(a: MatRef<'_, T>, x: MatRef<'_, T>, d: MatRef<'_, T>) -> f64 {
    let residual = a * x - d;
    let total: f64 = (0..d.ncols())
        .map(|j| {
            let r = residual.col(j).norm_l2().to_f64_lossless();
            let scale = d.col(j).norm_l2().to_f64_lossless();
            if scale > 0.0 { r / scale } else { r }
        })
        .sum();
    total / d.ncols() as f64
}

fn log(settings: &Settings, message: impl AsRef<str>) {
    if !settings.quiet {
        eprintln!("{}", message.as_ref());
    }
}

fn run<T: Scalar>(settings: &Settings) -> Result<(), Error> {
    let started = Instant::now();
    settings.validate()?;
    let mut settings = settings.clone();
    let staging = Staging::new(&settings.out)?;

    log(&settings, "generating data");
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

    let a_norm = problem
        .a
        .as_ref()
        .singular_values()
        .map_err(|e| Error::Numerical {
            what: "singular values of A".into(),
            reason: format!("{e:?}"),
        })?[0];
    let steps = optlayer::splittings::LadmmSteps {
        alpha: 0.5,
        beta: 1.0 / (1.0 + a_norm),
        lambda: 1.0,
    };
    let train = cast_dataset::<T>(&problem.train)?;
    let test = cast_dataset::<T>(&problem.test)?;
    let a = cast::<T>(&problem.a);

    let train_forward = settings.train_forward();
    let test_forward = settings.test_forward();
    let model: LinearizedAdmm<T> = build_model(&problem.theta0, &problem.a, steps)?;
    let mut layer = OptLayer::new(model, train_forward.clone())?;
    let theta_index = find_param(&layer, "theta")?;
    // Θ as training starts from it, after normalization to unit spectral norm.
    npy::write_matrix(
        &staging.path("theta_init.npy"),
        to_f64(layer.param(theta_index)).as_ref(),
    )?;
    log(
        settings,
        format!(
            "n = {n}, m = {m}, {} training and {} test pairs, ‖A‖₂ = {a_norm:.4}, αβ‖[Θ; A]‖₂² = {:.4}",
            train.len(),
            test.len(),
            layer.splitting().step_condition()
        ),
    );

    log(settings, "evaluating least squares and the untrained model");
    let least_squares = evaluate_least_squares(&a, &test)?;
    let untrained = evaluate_depths(&layer, &a, &test, settings, &train_forward, &test_forward)?;

    let audit = if settings.audit {
        Some(run_audit(&mut layer, &train, settings)?)
    } else {
        None
    };

    let optimizer = Adam::new(settings.adam_config(), &layer)?;
    let mut trainer = Trainer::new(settings.train_config(), optimizer)?;
    let mut epochs = Vec::new();
    trainer.fit(&mut layer, &train, Some(&test), |report| {
        let contraction = match report.contraction_max {
            Some(max) => format!(
                "  spectral radius ≈ {max:.3} (largest estimate; {} fallbacks, {} failed)",
                report.fallbacks, report.fallback_failures
            ),
            None => String::new(),
        };
        log(
            settings,
            format!(
                "epoch {:>3}  train MSE {:.4e}  test MSE {:.4e}  iterations {:>6.1}  {:.1} s{contraction}",
                report.epoch,
                report.train_mse,
                report.test_mse.unwrap_or(f64::NAN),
                report.mean_iterations,
                report.seconds
            ),
        );
        epochs.push(EpochEntry::from(report));
        ControlFlow::Continue(())
    })?;

    log(settings, "evaluating the trained model");
    let trained = evaluate_depths(&layer, &a, &test, settings, &train_forward, &test_forward)?;

    npy::write_matrix(
        &staging.path("theta_trained.npy"),
        to_f64(layer.param(theta_index)).as_ref(),
    )?;

    let report = Report {
        config: settings.clone(),
        steps: Steps {
            alpha: steps.alpha,
            beta: layer.splitting().beta().to_f64_lossless(),
            lambda: steps.lambda,
            a_norm,
        },
        epochs,
        test: TestReport {
            least_squares,
            untrained,
            trained,
        },
        audit: audit.as_ref().map(AuditEntry::rows),
        wall_seconds: started.elapsed().as_secs_f64(),
    };
    report.write(&staging.path("report.json"))?;
    staging.commit()?;
    println!("{}", report.summary_table());
    println!("wrote {}", settings.out.display());
    Ok(())
}

/// Writes the generated matrices and datasets (in `f64`).
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
    log(
        settings,
        format!("auditing gradients on {batch} training samples"),
    );
    let audit = layer.audit_gradients(
        data.as_ref(),
        &mut |x, g| optlayer::mse_loss(x, targets.as_ref(), g),
        &options,
    )?;
    println!("{}", audit.table());
    Ok(audit)
}

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

fn evaluate_least_squares<T: Scalar>(a: &Mat<T>, test: &Dataset<T>) -> Result<LeastSquaresResult, Error> {
    let solver = MinNormLeastSquares::new(a.as_ref())?;
    let x = solver.solve(test.data())?;
    Ok(LeastSquaresResult {
        mse: optlayer::mse(x.as_ref(), test.targets()).to_f64_lossless(),
        fidelity: mean_fidelity(a.as_ref(), x.as_ref(), test.data()),
    })
}

fn evaluate_depths<T: Scalar, Alg: Splitting<Real = T>>(
    layer: &OptLayer<Alg>,
    a: &Mat<T>,
    test: &Dataset<T>,
    settings: &Settings,
    train_forward: &ForwardOptions,
    test_forward: &ForwardOptions,
) -> Result<ModelResult, Error> {
    let (mse_train_depth, prediction_train) = evaluate(layer, test, settings.batch_size, train_forward)?;
    let (mse_test_depth, prediction_test) = evaluate(layer, test, settings.batch_size, test_forward)?;
    Ok(ModelResult {
        mse_train_depth,
        mse_test_depth,
        fidelity: mean_fidelity(a.as_ref(), prediction_test.x.as_ref(), test.data()),
        train_depth: DepthStats::new(settings.train_iters, &prediction_train),
        test_depth: DepthStats::new(settings.test_iters, &prediction_test),
    })
}
