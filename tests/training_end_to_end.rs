//! Training end to end on a small sparse inverse problem: JFB with Adam
//! must bring the test error well below least squares.

use std::ops::ControlFlow;

use optlayer::problems::MinNormLeastSquares;
use optlayer::problems::sparse_inverse::{SparseInverseConfig, SparseInverseProblem, build_model};
use optlayer::train::{Adam, AdamConfig, TrainConfig, Trainer, evaluate};
use optlayer::{ForwardOptions, OptLayer, mse};

#[test]
fn training_beats_least_squares_small_problem() {
    let config = SparseInverseConfig {
        n: 40,
        m: 20,
        r: 8,
        train_samples: 1_000,
        test_samples: 200,
        seed: 7,
        ..SparseInverseConfig::default()
    };
    let problem = SparseInverseProblem::generate(&config).unwrap();
    let steps = problem.reference_steps().unwrap();
    let forward = ForwardOptions::new(300, 1e-6).with_threads(2);
    let model = build_model::<f64>(&problem.theta0, &problem.a, steps).unwrap();
    let mut layer = OptLayer::new(model, forward.clone()).unwrap();

    let least_squares = MinNormLeastSquares::new(problem.a.as_ref())
        .unwrap()
        .solve(problem.test.data())
        .unwrap();
    let least_squares_mse = mse(least_squares.as_ref(), problem.test.targets());
    let (untrained_mse, _) = evaluate(&layer, &problem.test, 100, &forward).unwrap();

    let optimizer = Adam::new(
        AdamConfig {
            learning_rate: 3e-3,
            ..AdamConfig::default()
        },
        &layer,
    )
    .unwrap();
    let train_config = TrainConfig {
        epochs: 12,
        batch_size: 50,
        seed: 1,
        forward: forward.clone(),
        eval_forward: forward.clone(),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(train_config, optimizer).unwrap();
    let reports = trainer
        .fit(&mut layer, &problem.train, Some(&problem.test), |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    let (trained_mse, prediction) =
        evaluate(&layer, &problem.test, 100, &ForwardOptions::new(2_000, 1e-6)).unwrap();

    eprintln!(
        "least squares {least_squares_mse:.4e}, untrained {untrained_mse:.4e}, trained {trained_mse:.4e}"
    );
    for r in &reports {
        eprintln!(
            "epoch {} train {:.4e} test {:.4e} iterations {:.0}",
            r.epoch,
            r.train_mse,
            r.test_mse.unwrap(),
            r.mean_iterations
        );
    }
    assert_eq!(reports.len(), 12);
    assert!(
        trained_mse < 0.5 * least_squares_mse,
        "trained {trained_mse:e}, least squares {least_squares_mse:e}"
    );
    assert!(
        trained_mse < 0.5 * untrained_mse,
        "trained {trained_mse:e}, untrained {untrained_mse:e}"
    );
    assert!(reports.last().unwrap().train_mse < reports[0].train_mse);
    assert_eq!(prediction.count(optlayer::Status::NonFinite), 0);
}

#[test]
fn training_reports_contraction_and_falls_back() {
    use optlayer::train::ContractionCheck;
    use optlayer::{AdjointSolver, GradientMode, ImplicitOptions};
    let config = SparseInverseConfig {
        n: 30,
        m: 15,
        r: 6,
        train_samples: 200,
        test_samples: 50,
        seed: 8,
        ..SparseInverseConfig::default()
    };
    let problem = SparseInverseProblem::generate(&config).unwrap();

    let forward = ForwardOptions::new(100, 1e-6);
    let model = build_model::<f64>(&problem.theta0, &problem.a, problem.reference_steps().unwrap()).unwrap();
    let mut layer = OptLayer::new(model, forward.clone()).unwrap();
    let optimizer = Adam::new(
        AdamConfig {
            learning_rate: 1e-3,
            ..AdamConfig::default()
        },
        &layer,
    )
    .unwrap();
    let fallback = GradientMode::Implicit(ImplicitOptions {
        solver: AdjointSolver::BiCgStab,
        max_iters: 200,
        rtol: 1e-3,
        allow_unconverged_forward: true,
    });
    // Every batch is estimated, and batches whose estimate is 1 or more fall back.
    let train_config = TrainConfig {
        epochs: 1,
        batch_size: 50,
        forward: forward.clone(),
        eval_forward: forward,
        gradient: GradientMode::Truncated {
            steps: 2,
            memory_limit_bytes: None,
        },
        contraction: Some(ContractionCheck {
            iters: 8,
            fallback: Some(fallback),
        }),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(train_config, optimizer).unwrap();

    // The fallback's adjoint solve may fail at an unconverged point; the
    // configured mode then gives the gradient, so the epoch completes.
    let report = trainer.run_epoch(&mut layer, &problem.train, None).unwrap();
    let max = report.contraction_max.unwrap();
    let mean = report.contraction_mean.unwrap();
    assert!(max.is_finite(), "{report:?}");
    assert!(max > 0.0, "{report:?}");
    assert!(mean <= max);
    assert!(report.fallbacks <= 4);
    assert!(report.fallback_failures <= report.fallbacks);
}
