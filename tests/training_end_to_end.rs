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
