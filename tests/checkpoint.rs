//! Checkpoints of training runs. A run resumed from a checkpoint, after an
//! interruption or a killed process, ends with the same parameters, bit for
//! bit, as the run that was not interrupted. Resuming with settings or a
//! model that do not fit the checkpoint fails with a typed error.

use std::ops::ControlFlow;

use faer::Mat;
use optlayer::ops::{Dense, IndicatorPoint, L1Norm, LearnableDense};
use optlayer::problems::sparse_inverse::{
    SparseInverseConfig, SparseInverseProblem, build_model, cast, cast_dataset,
};
use optlayer::splittings::{Block, LadmmSteps, LinearizedAdmm, StepRule};
use optlayer::train::{
    Adam, AdamConfig, Checkpoint, Dataset, EpochOutcome, EpochReport, TrainConfig, Trainer,
};
use optlayer::{Error, ForwardOptions, OptLayer, Parameterized, Scalar};
use optlayer_testing::temp::TempDir;

const EPOCHS: usize = 3;

/// A sparse inverse problem with 20 training samples (3 batches of 8, the
/// last of 4) and 6 test samples.
struct Problem<T: Scalar> {
    theta0: Mat<f64>,
    a: Mat<f64>,
    train: Dataset<T>,
    test: Dataset<T>,
}

/// Returns the problem with 6 unknowns and 3 measurements.
fn problem<T: Scalar>() -> Problem<T> {
    sized_problem(6, 3, 3)
}

/// Returns a problem with `n` unknowns, `m` measurements and signals of `r`
/// latent entries.
fn sized_problem<T: Scalar>(n: usize, m: usize, r: usize) -> Problem<T> {
    let config = SparseInverseConfig {
        n,
        m,
        r,
        density: 0.5,
        train_samples: 20,
        test_samples: 6,
        seed: 11,
    };
    let generated = SparseInverseProblem::generate(&config).unwrap();
    Problem {
        theta0: generated.theta0.clone(),
        a: generated.a.clone(),
        train: cast_dataset(&generated.train).unwrap(),
        test: cast_dataset(&generated.test).unwrap(),
    }
}

/// Builds linearized ADMM for `min ‖Θx‖₁ s.t. Ax = d` with Θ learnable and
/// not normalized, and a fixed `β` well inside `α β ‖K‖₂² < 1`, so that no
/// step depends on a warm-started norm estimate.
fn model<T: Scalar>(problem: &Problem<T>, name: &str) -> LinearizedAdmm<T> {
    let (m, n) = (problem.a.nrows(), problem.a.ncols());
    let a_norm = problem.a.as_ref().singular_values().unwrap()[0];
    let theta_norm = problem.theta0.as_ref().singular_values().unwrap()[0];
    let alpha = 0.5;
    let steps = LadmmSteps {
        alpha,
        beta: 0.3 / (alpha * (theta_norm * theta_norm + a_norm * a_norm)),
        lambda: 1.0,
    };
    let blocks = vec![
        Block::new(
            LearnableDense::new(name, cast(&problem.theta0)).unwrap(),
            L1Norm::new(T::one()).unwrap(),
        ),
        Block::new(
            Dense::new(cast(&problem.a)).unwrap(),
            IndicatorPoint::from_data(0, m).unwrap(),
        ),
    ];
    LinearizedAdmm::with_rule(n, m, blocks, steps, StepRule::Fixed { safety: 1.0 }).unwrap()
}

fn layer<T: Scalar>(problem: &Problem<T>) -> OptLayer<LinearizedAdmm<T>> {
    OptLayer::new(model(problem, "theta"), forward()).unwrap()
}

fn forward() -> ForwardOptions {
    ForwardOptions::new(150, 1e-6)
}

fn config() -> TrainConfig {
    TrainConfig {
        epochs: EPOCHS,
        batch_size: 8,
        seed: 5,
        forward: forward(),
        eval_forward: forward(),
        ..TrainConfig::default()
    }
}

fn trainer<T: Scalar>(layer: &OptLayer<LinearizedAdmm<T>>) -> Trainer<T> {
    let adam = AdamConfig {
        learning_rate: 1e-2,
        ..AdamConfig::default()
    };
    Trainer::new(config(), Adam::new(adam, layer).unwrap()).unwrap()
}

/// Runs the remaining epochs and returns their reports.
fn finish<T: Scalar>(
    trainer: &mut Trainer<T>,
    layer: &mut OptLayer<LinearizedAdmm<T>>,
    problem: &Problem<T>,
) -> Vec<EpochReport> {
    trainer
        .fit(layer, &problem.train, Some(&problem.test), |_| {
            ControlFlow::Continue(())
        })
        .unwrap()
}

/// Runs all epochs without interruption and returns Θ and every epoch's report.
fn uninterrupted<T: Scalar>(problem: &Problem<T>) -> (Mat<T>, Vec<EpochReport>) {
    let mut layer = layer(problem);
    let mut trainer = trainer(&layer);
    let reports = finish(&mut trainer, &mut layer, problem);
    assert_eq!(reports.len(), EPOCHS);
    (layer.param(0).to_owned(), reports)
}

/// Asserts that every entry of `found` equals `expected` exactly.
fn assert_bitwise_equal<T: Scalar>(found: &Mat<T>, expected: &Mat<T>, case: &str) {
    assert_eq!(found.nrows(), expected.nrows(), "{case}: rows");
    assert_eq!(found.ncols(), expected.ncols(), "{case}: columns");
    for j in 0..expected.ncols() {
        for i in 0..expected.nrows() {
            assert!(
                found[(i, j)] == expected[(i, j)],
                "{case}: entry ({i}, {j}) is {:e}, the uninterrupted run has {:e}",
                found[(i, j)].to_f64_lossless(),
                expected[(i, j)].to_f64_lossless()
            );
        }
    }
}

/// Loads the checkpoint in `dir` into a fresh layer and trainer and runs the
/// remaining epochs.
fn resume_and_finish<T: Scalar>(dir: &TempDir, problem: &Problem<T>) -> (Mat<T>, Vec<EpochReport>) {
    let checkpoint = Checkpoint::<T>::load(dir.path()).unwrap();
    let mut layer = layer(problem);
    let mut trainer = Trainer::resume(checkpoint, config(), &mut layer, problem.train.len()).unwrap();
    let reports = finish(&mut trainer, &mut layer, problem);
    (layer.param(0).to_owned(), reports)
}

fn resume_after_epoch<T: Scalar>(problem: Problem<T>) {
    let (expected, expected_reports) = uninterrupted(&problem);
    let initial = layer(&problem).param(0).to_owned();
    assert!(expected != initial, "training did not change theta");

    let dir = TempDir::new("checkpoint-epoch");
    {
        let mut layer = layer(&problem);
        let mut trainer = trainer(&layer);
        trainer
            .run_epoch(&mut layer, &problem.train, Some(&problem.test))
            .unwrap();
        trainer.checkpoint(&layer).save(dir.path()).unwrap();
    }
    let (found, reports) = resume_and_finish(&dir, &problem);
    assert_bitwise_equal(&found, &expected, "resumed after epoch 1");
    assert_eq!(reports.len(), EPOCHS - 1);
    assert_eq!(reports[0].epoch, 2);
    assert_eq!(reports[1].train_mse, expected_reports[2].train_mse);
    assert_eq!(reports[1].test_mse, expected_reports[2].test_mse);
}

fn resume_after_interrupt<T: Scalar>(problem: Problem<T>) {
    let (expected, expected_reports) = uninterrupted(&problem);

    let dir = TempDir::new("checkpoint-interrupt");
    {
        let mut layer = layer(&problem);
        let mut trainer = trainer(&layer);
        let outcome = trainer
            .fit_with(
                &mut layer,
                &problem.train,
                Some(&problem.test),
                |batch| {
                    if batch.epoch == 2 && batch.batch == 2 {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                },
                |_| ControlFlow::Continue(()),
            )
            .unwrap();
        assert!(outcome.interrupted);
        assert_eq!(outcome.reports.len(), 1);
        assert_eq!(trainer.in_progress(), Some((2, 2)));
        assert_eq!(trainer.epoch(), 1);
        trainer.checkpoint(&layer).save(dir.path()).unwrap();
    }
    let saved = Checkpoint::<T>::load(dir.path()).unwrap();
    assert_eq!(saved.in_progress(), Some((2, 2)));
    assert_eq!(saved.epoch(), 1);

    let (found, reports) = resume_and_finish(&dir, &problem);
    assert_bitwise_equal(&found, &expected, "resumed inside epoch 2");
    assert_eq!(reports.len(), 2);
    // Epoch 2's report includes the batches done before the interruption.
    assert_eq!(reports[0].epoch, 2);
    assert_eq!(reports[0].train_mse, expected_reports[1].train_mse);
    assert_eq!(reports[0].mean_iterations, expected_reports[1].mean_iterations);
    assert_eq!(reports[1].train_mse, expected_reports[2].train_mse);
}

fn resume_after_kill<T: Scalar>(problem: Problem<T>) {
    let (expected, _) = uninterrupted(&problem);

    let dir = TempDir::new("checkpoint-kill");
    {
        let mut layer = layer(&problem);
        let mut trainer = trainer(&layer);
        trainer
            .run_epoch(&mut layer, &problem.train, Some(&problem.test))
            .unwrap();
        trainer.checkpoint(&layer).save(dir.path()).unwrap();
        let after_epoch_1 = layer.param(0).to_owned();
        // The process dies inside epoch 2, after two updates, without saving.
        let outcome = trainer
            .run_epoch_with(&mut layer, &problem.train, Some(&problem.test), |batch| {
                if batch.batch == 2 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!(
            outcome,
            EpochOutcome::Interrupted {
                epoch: 2,
                batches_done: 2
            }
        );
        assert!(layer.param(0).to_owned() != after_epoch_1);
    }
    let saved = Checkpoint::<T>::load(dir.path()).unwrap();
    assert_eq!(saved.epoch(), 1);
    assert_eq!(saved.in_progress(), None);
    let (found, _) = resume_and_finish(&dir, &problem);
    assert_bitwise_equal(&found, &expected, "resumed from epoch 1 after a kill in epoch 2");
}

#[test]
fn resume_after_epoch_f64() {
    resume_after_epoch(problem::<f64>());
}

#[test]
fn resume_after_epoch_f32() {
    resume_after_epoch(problem::<f32>());
}

#[test]
fn resume_after_interrupt_f64() {
    resume_after_interrupt(problem::<f64>());
}

#[test]
fn resume_after_interrupt_f32() {
    resume_after_interrupt(problem::<f32>());
}

#[test]
fn resume_after_kill_f64() {
    resume_after_kill(problem::<f64>());
}

#[test]
fn resume_after_kill_f32() {
    resume_after_kill(problem::<f32>());
}

/// Returns a problem whose `[Θ; A]` (64 x 40) has more than 2,048 entries,
/// so that linearized ADMM multiplies by its stacked copy, which a restore
/// must copy again.
fn stacked_problem<T: Scalar>() -> Problem<T> {
    let problem = sized_problem(40, 24, 8);
    assert!(layer(&problem).splitting().uses_stacked_copy());
    problem
}

#[test]
fn stacked_resume_after_epoch_f64() {
    resume_after_epoch(stacked_problem::<f64>());
}

#[test]
fn stacked_resume_after_interrupt_f32() {
    resume_after_interrupt(stacked_problem::<f32>());
}

#[test]
fn stacked_resume_after_kill_f64() {
    resume_after_kill(stacked_problem::<f64>());
}

/// Saves a checkpoint taken after one epoch into a new folder.
fn saved_after_epoch<T: Scalar>(problem: &Problem<T>, label: &str) -> TempDir {
    let dir = TempDir::new(label);
    let mut layer = layer(problem);
    let mut trainer = trainer(&layer);
    trainer.run_epoch(&mut layer, &problem.train, None).unwrap();
    trainer.checkpoint(&layer).save(dir.path()).unwrap();
    dir
}

/// Resumes from `dir` with `config` and `train_len` into `layer`, and
/// returns the error.
fn resume_error(
    dir: &TempDir,
    config: TrainConfig,
    layer: &mut OptLayer<LinearizedAdmm<f64>>,
    train_len: usize,
) -> Error {
    let checkpoint = Checkpoint::<f64>::load(dir.path()).unwrap();
    match Trainer::resume(checkpoint, config, layer, train_len) {
        Ok(_) => panic!("resume accepted a mismatch"),
        Err(error) => error,
    }
}

#[test]
fn resume_rejects_other_seed() {
    let problem = problem::<f64>();
    let dir = saved_after_epoch(&problem, "checkpoint-seed");
    let mut layer = layer(&problem);
    let error = resume_error(&dir, TrainConfig { seed: 6, ..config() }, &mut layer, 20);
    assert!(
        matches!(error, Error::InvalidValue { ref name, .. } if name == "seed"),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("'6'"), "{message}");
    assert!(message.contains("seed 5"), "{message}");
}

#[test]
fn resume_rejects_other_batch_size() {
    let problem = problem::<f64>();
    let dir = saved_after_epoch(&problem, "checkpoint-batch");
    let mut layer = layer(&problem);
    let error = resume_error(
        &dir,
        TrainConfig {
            batch_size: 4,
            ..config()
        },
        &mut layer,
        20,
    );
    assert!(
        matches!(error, Error::InvalidValue { ref name, .. } if name == "batch size"),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("'4'"), "{message}");
    assert!(message.contains("batch size 8"), "{message}");
}

#[test]
fn resume_rejects_other_train_length() {
    let problem = problem::<f64>();
    let dir = saved_after_epoch(&problem, "checkpoint-length");
    let mut layer = layer(&problem);
    let error = resume_error(&dir, config(), &mut layer, 19);
    assert!(
        matches!(error, Error::InvalidValue { ref name, .. } if name == "training set length"),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("'19'"), "{message}");
    assert!(message.contains("length 20"), "{message}");
}

#[test]
fn resume_rejects_other_param_names() {
    let problem = problem::<f64>();
    let dir = saved_after_epoch(&problem, "checkpoint-names");
    let mut other = OptLayer::new(model(&problem, "phi"), forward()).unwrap();
    let before = other.param(0).to_owned();
    let error = resume_error(&dir, config(), &mut other, 20);
    assert!(
        matches!(error, Error::InvalidValue { ref name, .. } if name == "checkpoint parameters"),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("theta"), "{message}");
    assert!(message.contains("phi"), "{message}");
    assert!(
        other.param(0).to_owned() == before,
        "a rejected resume changed the layer"
    );
}

#[test]
fn load_rejects_other_scalar_type() {
    let problem = problem::<f32>();
    let dir = saved_after_epoch(&problem, "checkpoint-dtype");
    let error = Checkpoint::<f64>::load(dir.path()).unwrap_err();
    assert!(
        matches!(error, Error::InvalidValue { ref name, .. } if name == "checkpoint scalar type"),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("f32"), "{message}");
    assert!(message.contains("f64"), "{message}");
    assert!(Checkpoint::<f32>::load(dir.path()).is_ok());
}

#[test]
fn resume_extends_epochs() {
    // A run of 3 epochs resumed with `epochs: 4` equals a run of 4 epochs.
    let problem = problem::<f64>();
    let four = TrainConfig {
        epochs: 4,
        ..config()
    };
    let mut expected_layer = layer(&problem);
    let mut expected_trainer =
        Trainer::new(four.clone(), trainer(&expected_layer).optimizer().clone()).unwrap();
    finish(&mut expected_trainer, &mut expected_layer, &problem);

    let dir = TempDir::new("checkpoint-extend");
    {
        let mut layer = layer(&problem);
        let mut trainer = trainer(&layer);
        finish(&mut trainer, &mut layer, &problem);
        trainer.checkpoint(&layer).save(dir.path()).unwrap();
    }
    let mut layer = layer(&problem);
    let checkpoint = Checkpoint::<f64>::load(dir.path()).unwrap();
    assert_eq!(checkpoint.epoch(), EPOCHS);
    let mut trainer = Trainer::resume(checkpoint, four, &mut layer, problem.train.len()).unwrap();
    let reports = finish(&mut trainer, &mut layer, &problem);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].epoch, 4);
    assert_bitwise_equal(
        &layer.param(0).to_owned(),
        &expected_layer.param(0).to_owned(),
        "extended to 4 epochs",
    );
}

/// Builds the sparse inverse model of `build_model`: Θ kept at unit spectral
/// norm and `β` set by `StepRule::ShrinkBeta`, both from power iteration
/// warm-started after every update.
fn normalized_layer<T: Scalar>(problem: &Problem<T>) -> OptLayer<LinearizedAdmm<T>> {
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 1.0 / (1.0 + problem.a.as_ref().singular_values().unwrap()[0]),
        lambda: 1.0,
    };
    OptLayer::new(
        build_model::<T>(&problem.theta0, &problem.a, steps).unwrap(),
        forward(),
    )
    .unwrap()
}

/// Trains the normalized model without interruption, and again with a
/// checkpoint after `stop_batch` batches of epoch `stop_epoch` (a `Break`
/// mid-epoch), or at the end of that epoch when `stop_batch` is `None`. The
/// second run resumes into a fresh layer, and both must end with the same Θ,
/// bit for bit.
fn normalized_resume<T: Scalar>(stop_epoch: usize, stop_batch: Option<usize>, label: &str) {
    let problem = problem::<T>();
    let mut expected = normalized_layer(&problem);
    let mut expected_trainer = trainer(&expected);
    finish(&mut expected_trainer, &mut expected, &problem);
    assert!(
        expected.param(0).to_owned() != normalized_layer(&problem).param(0).to_owned(),
        "training did not change theta"
    );

    let dir = TempDir::new(label);
    {
        let mut layer = normalized_layer(&problem);
        let mut trainer = trainer(&layer);
        for _ in 1..stop_epoch {
            trainer.run_epoch(&mut layer, &problem.train, None).unwrap();
        }
        match stop_batch {
            None => {
                trainer.run_epoch(&mut layer, &problem.train, None).unwrap();
            }
            Some(stop) => {
                let outcome = trainer
                    .run_epoch_with(&mut layer, &problem.train, None, |batch| {
                        if batch.batch == stop {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    })
                    .unwrap();
                assert_eq!(
                    outcome,
                    EpochOutcome::Interrupted {
                        epoch: stop_epoch,
                        batches_done: stop
                    }
                );
            }
        }
        trainer.checkpoint(&layer).save(dir.path()).unwrap();
    }
    let checkpoint = Checkpoint::<T>::load(dir.path()).unwrap();
    // The state is Θ's power vector, then LADMM's power vector and norm
    // estimate. The l1 norm, A and the indicator have none.
    assert_eq!(checkpoint.warm_start_state().len(), 3, "{label}");
    let mut layer = normalized_layer(&problem);
    let mut trainer = Trainer::resume(checkpoint, config(), &mut layer, problem.train.len()).unwrap();
    finish(&mut trainer, &mut layer, &problem);
    assert_bitwise_equal(&layer.param(0).to_owned(), &expected.param(0).to_owned(), label);
}

#[test]
fn normalized_resume_after_epoch_f64() {
    normalized_resume::<f64>(1, None, "checkpoint-normalized-epoch-f64");
}

#[test]
fn normalized_resume_after_epoch_f32() {
    normalized_resume::<f32>(1, None, "checkpoint-normalized-epoch-f32");
}

#[test]
fn normalized_resume_mid_epoch_f64() {
    normalized_resume::<f64>(2, Some(2), "checkpoint-normalized-break-f64");
}

#[test]
fn normalized_resume_mid_epoch_f32() {
    normalized_resume::<f32>(2, Some(1), "checkpoint-normalized-break-f32");
}

#[test]
fn resume_rejects_other_warm_start_count() {
    // A checkpoint of the model with a normalized Θ has a warm-start vector
    // for Θ that the model with an unnormalized Θ lacks.
    let problem = problem::<f64>();
    let dir = TempDir::new("checkpoint-warm-start-count");
    {
        let mut layer = normalized_layer(&problem);
        let mut trainer = trainer(&layer);
        trainer.run_epoch(&mut layer, &problem.train, None).unwrap();
        trainer.checkpoint(&layer).save(dir.path()).unwrap();
    }
    let mut other = layer(&problem);
    let before = other.param(0).to_owned();
    let warm_start_before = other.warm_start_state();
    let error = resume_error(&dir, config(), &mut other, 20);
    assert!(
        matches!(error, Error::ShapeMismatch { ref what, .. } if what.contains("warm-start state")),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("expected 2 matrices"), "{message}");
    assert!(message.contains("found 3 matrices"), "{message}");
    assert!(
        other.param(0).to_owned() == before,
        "a rejected resume changed the layer"
    );
    assert_eq!(other.warm_start_state(), warm_start_before);
}
