//! Invalid input gets a typed error that names the value, never a panic.

mod common;

use common::{sparse_model, unit_column_matrix};
use faer::{Mat, mat};
use optlayer::ops::{Dense, IndicatorPoint, L1Norm, LearnableDense};
use optlayer::splittings::{Block, LadmmSteps, LinearizedAdmm};
use optlayer::train::{Adam, AdamConfig, Dataset, TrainConfig, Trainer, npy};
use optlayer::{Error, ForwardOptions, OptLayer, Parameterized, set_param};
use optlayer_testing::random::gaussian;
use optlayer_testing::temp::TempDir;

fn small_layer() -> OptLayer<LinearizedAdmm<f64>> {
    let a = unit_column_matrix(3, 6, 1);
    OptLayer::new(
        sparse_model::<f64>(&gaussian(6, 6, 2), &a, true),
        ForwardOptions::new(50, 1e-6),
    )
    .unwrap()
}

fn blocks(n: usize, m: usize) -> Vec<Block<f64>> {
    vec![
        Block::new(
            LearnableDense::new("theta", Mat::identity(n, n)).unwrap(),
            L1Norm::new(1.0).unwrap(),
        ),
        Block::new(
            Dense::new(unit_column_matrix(m, n, 3)).unwrap(),
            IndicatorPoint::from_data(0, m).unwrap(),
        ),
    ]
}

fn temp_dir(name: &str) -> TempDir {
    TempDir::new(&format!("bad-input-{name}"))
}

#[test]
fn data_with_wrong_row_count() {
    let error = small_layer()
        .forward(Mat::<f64>::zeros(4, 2).as_ref())
        .unwrap_err();
    assert!(matches!(error, Error::ShapeMismatch { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("data batch"), "{message}");
    assert!(message.contains("3 rows"), "{message}");
    assert!(message.contains("4 rows"), "{message}");
}

#[test]
fn data_with_nan_or_infinity() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut data = Mat::<f64>::zeros(3, 4);
        data[(1, 2)] = bad;
        let error = small_layer().forward(data.as_ref()).unwrap_err();
        match &error {
            Error::NonFiniteInput { row, col, value, .. } => {
                assert_eq!((*row, *col), (1, 2));
                assert_eq!(value.is_nan(), bad.is_nan());
            }
            other => panic!("expected NonFiniteInput, got {other}"),
        }
        assert!(error.to_string().contains("row 1, column 2"), "{error}");
    }
}

#[test]
fn empty_batch_rejected() {
    let error = small_layer()
        .forward(Mat::<f64>::zeros(3, 0).as_ref())
        .unwrap_err();
    assert!(matches!(error, Error::Empty { .. }), "{error}");
}

#[test]
fn non_positive_step_sizes_rejected() {
    let cases = [
        (
            "alpha",
            LadmmSteps {
                alpha: 0.0,
                beta: 0.1,
                lambda: 1.0,
            },
        ),
        (
            "beta",
            LadmmSteps {
                alpha: 0.5,
                beta: -0.1,
                lambda: 1.0,
            },
        ),
        (
            "lambda",
            LadmmSteps {
                alpha: 0.5,
                beta: 0.1,
                lambda: f64::NAN,
            },
        ),
        (
            "beta",
            LadmmSteps {
                alpha: 0.5,
                beta: f64::INFINITY,
                lambda: 1.0,
            },
        ),
    ];
    for (name, steps) in cases {
        let error = LinearizedAdmm::new(6, 3, blocks(6, 3), steps)
            .map(|_| ())
            .unwrap_err();
        match &error {
            Error::InvalidParameter { name: found, .. } => assert_eq!(found, name),
            other => panic!("expected InvalidParameter for {name}, got {other}"),
        }
        assert!(error.to_string().contains("greater than zero"), "{error}");
    }
}

#[test]
fn operator_with_wrong_input_dimension() {
    let mut parts = blocks(6, 3);
    parts[1] = Block::new(
        Dense::new(unit_column_matrix(3, 5, 4)).unwrap(),
        IndicatorPoint::from_data(0, 3).unwrap(),
    );
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.1,
        lambda: 1.0,
    };
    let error = LinearizedAdmm::new(6, 3, parts, steps).map(|_| ()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::ShapeMismatch { .. }), "{message}");
    assert!(message.contains("operator of block 1"), "{message}");
    assert!(message.contains("6 columns"), "{message}");
    assert!(message.contains("5 columns"), "{message}");
}

#[test]
fn prox_reading_more_data_rows_than_exist() {
    let mut parts = blocks(6, 3);
    parts[1] = Block::new(
        Dense::new(unit_column_matrix(3, 6, 5)).unwrap(),
        IndicatorPoint::from_data(1, 3).unwrap(),
    );
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.1,
        lambda: 1.0,
    };
    let error = LinearizedAdmm::new(6, 3, parts, steps).map(|_| ()).unwrap_err();
    assert!(error.to_string().contains("at most 3 data rows"), "{error}");
}

#[test]
fn prox_with_wrong_dimension() {
    let mut parts = blocks(6, 3);
    parts[0] = Block::new(
        LearnableDense::new("theta", Mat::identity(6, 6)).unwrap(),
        L1Norm::with_weights(vec![1.0; 5]).unwrap(),
    );
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.1,
        lambda: 1.0,
    };
    let error = LinearizedAdmm::new(6, 3, parts, steps).map(|_| ()).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("prox of block 0"), "{message}");
    assert!(message.contains("dimension 5"), "{message}");
}

#[test]
fn empty_block_list_and_duplicate_names() {
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.1,
        lambda: 1.0,
    };
    let error = LinearizedAdmm::<f64>::new(6, 3, Vec::new(), steps)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(error, Error::Empty { .. }), "{error}");

    let mut parts = blocks(6, 3);
    parts.push(Block::new(
        LearnableDense::new("theta", Mat::identity(6, 6)).unwrap(),
        L1Norm::new(1.0).unwrap(),
    ));
    let error = LinearizedAdmm::new(6, 3, parts, steps).map(|_| ()).unwrap_err();
    assert!(error.to_string().contains("'theta'"), "{error}");
}

#[test]
fn invalid_forward_options() {
    let layer = small_layer();
    let data = Mat::<f64>::zeros(3, 1);
    for (options, name) in [
        (ForwardOptions::new(0, 1e-6), "max_iters"),
        (ForwardOptions::new(10, -1.0), "rtol"),
        (ForwardOptions::new(10, 1e-6).with_atol(f64::NAN), "atol"),
        (ForwardOptions::new(10, 1e-6).with_threads(0), "threads"),
    ] {
        let error = layer.forward_with(data.as_ref(), &options).unwrap_err();
        match &error {
            Error::InvalidParameter { name: found, .. } => assert_eq!(found, name),
            other => panic!("expected InvalidParameter for {name}, got {other}"),
        }
    }
}

#[test]
fn empty_and_mismatched_datasets() {
    let error = Dataset::new(Mat::<f64>::zeros(3, 0), Mat::<f64>::zeros(6, 0)).unwrap_err();
    assert!(matches!(error, Error::Empty { .. }), "{error}");

    let error = Dataset::new(Mat::<f64>::zeros(3, 5), Mat::<f64>::zeros(6, 4)).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("5 samples"), "{message}");
    assert!(message.contains("4 samples"), "{message}");

    let mut targets = Mat::<f64>::zeros(6, 5);
    targets[(2, 3)] = f64::NAN;
    let error = Dataset::new(Mat::<f64>::zeros(3, 5), targets).unwrap_err();
    assert!(
        matches!(error, Error::NonFiniteInput { row: 2, col: 3, .. }),
        "{error}"
    );
}

#[test]
fn dataset_of_wrong_dimension_for_training() {
    let mut layer = small_layer();
    let optimizer = Adam::new(AdamConfig::default(), &layer).unwrap();
    let options = ForwardOptions::new(20, 1e-6);
    let config = TrainConfig {
        epochs: 1,
        batch_size: 2,
        seed: 0,
        forward: options.clone(),
        eval_forward: options,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(config, optimizer).unwrap();
    let dataset = Dataset::new(Mat::<f64>::zeros(3, 4), Mat::<f64>::zeros(7, 4)).unwrap();
    let error = trainer.run_epoch(&mut layer, &dataset, None).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("dataset targets"), "{message}");
    assert!(message.contains("6 rows"), "{message}");
}

#[test]
fn zero_batch_size_rejected() {
    let layer = small_layer();
    let optimizer = Adam::new(AdamConfig::default(), &layer).unwrap();
    let options = ForwardOptions::new(20, 1e-6);
    let config = TrainConfig {
        epochs: 1,
        batch_size: 0,
        seed: 0,
        forward: options.clone(),
        eval_forward: options,
        ..TrainConfig::default()
    };
    let error = Trainer::new(config, optimizer).map(|_| ()).unwrap_err();
    assert!(error.to_string().contains("batch size"), "{error}");
}

#[test]
fn set_param_wrong_shape_or_name() {
    let mut layer = small_layer();
    let error = set_param(&mut layer, "theta", Mat::<f64>::zeros(5, 6).as_ref()).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("6 x 6"), "{message}");
    assert!(message.contains("5 x 6"), "{message}");
    let error = set_param(&mut layer, "phi", Mat::<f64>::zeros(6, 6).as_ref()).unwrap_err();
    assert!(matches!(error, Error::UnknownParameter { .. }), "{error}");
    assert!(error.to_string().contains("theta"), "{error}");
    let mut bad = Mat::<f64>::identity(6, 6);
    bad[(0, 0)] = f64::INFINITY;
    let error = set_param(&mut layer, "theta", bad.as_ref()).unwrap_err();
    assert!(
        matches!(error, Error::NonFiniteInput { row: 0, col: 0, .. }),
        "{error}"
    );
}

#[test]
fn missing_npy_file() {
    let path = temp_dir("missing").join("absent.npy");
    let error = npy::read_matrix::<f64>(&path).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error}");
    assert!(error.to_string().contains("absent.npy"), "{error}");
}

#[test]
fn truncated_npy_file() {
    let dir = temp_dir("truncated");
    let path = dir.join("theta.npy");
    npy::write_matrix(&path, mat![[1.0, 2.0], [3.0, 4.0]].as_ref()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for keep in [5, 40, bytes.len() - 3] {
        std::fs::write(&path, &bytes[..keep]).unwrap();
        let error = npy::read_matrix::<f64>(&path).unwrap_err();
        assert!(
            matches!(error, Error::InvalidFile { .. }),
            "{keep} bytes: {error}"
        );
        assert!(error.to_string().contains("theta.npy"), "{error}");
    }
}

#[test]
fn wrongly_shaped_npy_file() {
    let dir = temp_dir("shape");
    let path = dir.join("theta.npy");
    npy::write_matrix(&path, Mat::<f64>::zeros(4, 5).as_ref()).unwrap();
    let error = npy::read_matrix_with_shape::<f64>(&path, 6, 6).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("6 x 6"), "{message}");
    assert!(message.contains("4 x 5"), "{message}");
}

#[test]
fn dataset_files_of_wrong_dimension() {
    let dir = temp_dir("dataset");
    let dataset = Dataset::new(Mat::<f64>::zeros(3, 4), Mat::<f64>::zeros(6, 4)).unwrap();
    dataset.save(dir.path(), "train").unwrap();
    let error = Dataset::<f64>::load(dir.path(), "train", 3, 7).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("train_x.npy"), "{message}");
    assert!(message.contains('7'), "{message}");
    let error = Dataset::<f64>::load(dir.path(), "test", 3, 6).unwrap_err();
    assert!(error.to_string().contains("test_d.npy"), "{error}");
}

#[test]
fn dataset_data_of_wrong_dimension_for_training() {
    let mut layer = small_layer();
    let optimizer = Adam::new(AdamConfig::default(), &layer).unwrap();
    let options = ForwardOptions::new(20, 1e-6);
    let config = TrainConfig {
        epochs: 1,
        batch_size: 2,
        seed: 0,
        forward: options.clone(),
        eval_forward: options,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(config, optimizer).unwrap();
    let dataset = Dataset::new(Mat::<f64>::zeros(5, 4), Mat::<f64>::zeros(6, 4)).unwrap();
    let error = trainer.run_epoch(&mut layer, &dataset, None).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("dataset data"), "{message}");
    assert!(message.contains("3 rows"), "{message}");
    assert!(message.contains("5 rows"), "{message}");
}

#[test]
fn predict_rejects_invalid_input() {
    let layer = small_layer();
    let options = ForwardOptions::new(20, 1e-6);
    let error = optlayer::train::predict(&layer, Mat::<f64>::zeros(3, 0).as_ref(), 10, &options).unwrap_err();
    assert!(matches!(error, Error::Empty { .. }), "{error}");
    let error = optlayer::train::predict(&layer, Mat::<f64>::zeros(4, 2).as_ref(), 10, &options).unwrap_err();
    assert!(matches!(error, Error::ShapeMismatch { .. }), "{error}");
    let error = optlayer::train::predict(
        &layer,
        Mat::<f64>::zeros(3, 2).as_ref(),
        10,
        &ForwardOptions::new(0, 1e-6),
    )
    .unwrap_err();
    assert!(error.to_string().contains("max_iters"), "{error}");
}

#[test]
fn dataset_slice_out_of_range() {
    let dataset = Dataset::new(Mat::<f64>::zeros(3, 4), Mat::<f64>::zeros(6, 4)).unwrap();
    assert!(dataset.slice(usize::MAX, 2).is_err());
    assert!(dataset.slice(3, 2).is_err());
    assert!(dataset.slice(0, 0).is_err());
    assert_eq!(dataset.slice(1, 3).unwrap().len(), 3);
}

#[test]
fn dataset_files_with_bad_contents() {
    let dir = temp_dir("dataset-contents");
    let mut data = Mat::<f64>::zeros(3, 5);
    data[(2, 4)] = f64::NAN;
    npy::write_samples(&dir.join("train_d.npy"), data.as_ref()).unwrap();
    npy::write_samples(&dir.join("train_x.npy"), Mat::<f64>::zeros(6, 5).as_ref()).unwrap();
    let error = Dataset::<f64>::load(dir.path(), "train", 3, 6).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("train_d.npy"), "{message}");
    // Positions as numpy reports them: row = sample 4, column = entry 2.
    assert!(message.contains("row 4, column 2"), "{message}");

    npy::write_samples(&dir.join("train_d.npy"), Mat::<f64>::zeros(3, 5).as_ref()).unwrap();
    npy::write_samples(&dir.join("train_x.npy"), Mat::<f64>::zeros(6, 4).as_ref()).unwrap();
    let error = Dataset::<f64>::load(dir.path(), "train", 3, 6).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("train_x.npy"), "{message}");
    assert!(message.contains("train_d.npy"), "{message}");
    assert!(message.contains("4 samples"), "{message}");

    npy::write_samples(&dir.join("train_d.npy"), Mat::<f64>::zeros(3, 0).as_ref()).unwrap();
    let error = Dataset::<f64>::load(dir.path(), "train", 3, 6).unwrap_err();
    assert!(error.to_string().contains("no samples"), "{error}");
}

#[test]
fn gradients_of_another_model_rejected() {
    use optlayer::{FixedPointJfb, Gradients, mse_loss};
    let layer = small_layer();
    let other_a = unit_column_matrix(3, 7, 1);
    let other = OptLayer::new(
        sparse_model::<f64>(&gaussian(7, 7, 2), &other_a, true),
        ForwardOptions::new(5, 1e-6),
    )
    .unwrap();
    let data = &unit_column_matrix(3, 6, 1) * gaussian(6, 2, 3);
    let target = gaussian(6, 2, 4);
    let forward = layer.forward(data.as_ref()).unwrap();
    let mut grads = Gradients::zeros_for(&other);
    let error = layer
        .jfb_gradient(
            &forward,
            data.as_ref(),
            &mut |x, g| mse_loss(x, target.as_ref(), g),
            &mut grads,
        )
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("theta"), "{message}");
    assert!(message.contains("6 x 6"), "{message}");
    assert!(message.contains("7 x 7"), "{message}");
}

#[test]
fn rejected_set_param_keeps_old_value() {
    let mut layer = small_layer();
    let before = layer.param(0).to_owned();
    // A zero Θ cannot be normalized to unit spectral norm.
    let error = set_param(&mut layer, "theta", Mat::<f64>::zeros(6, 6).as_ref()).unwrap_err();
    assert!(error.to_string().contains("nonzero"), "{error}");
    assert_eq!(layer.param(0).to_owned(), before);
}

#[test]
fn zero_operator_does_not_freeze_norm_estimate() {
    use optlayer::splittings::StepRule;
    // Θ starts at zero, so the first estimate of ‖Θ‖ is 0; a later Θ = 10 I
    // must be estimated afresh and rejected by the fixed step rule.
    let blocks = vec![Block::new(
        LearnableDense::new("theta", Mat::<f64>::zeros(5, 5)).unwrap(),
        L1Norm::new(1.0).unwrap(),
    )];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.9,
        lambda: 1.0,
    };
    let mut splitting =
        LinearizedAdmm::with_rule(5, 0, blocks, steps, StepRule::Fixed { safety: 0.99 }).unwrap();
    assert_eq!(splitting.norm_estimate(), 0.0);
    let scaled = Mat::<f64>::from_fn(5, 5, |i, j| if i == j { 10.0 } else { 0.0 });
    let error = set_param(&mut splitting, "theta", scaled.as_ref()).unwrap_err();
    assert!(matches!(error, Error::StepCondition { .. }), "{error}");
    assert_eq!(splitting.param(0).to_owned(), Mat::<f64>::zeros(5, 5));
}

#[test]
fn dataset_beyond_f32_range_rejected() {
    let mut data = Mat::<f64>::zeros(3, 2);
    data[(1, 1)] = 1e39;
    let dataset = Dataset::new(data, Mat::<f64>::zeros(6, 2)).unwrap();
    let error = optlayer::problems::sparse_inverse::cast_dataset::<f32>(&dataset)
        .map(|_| ())
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("1e39"), "{message}");
    assert!(message.contains("use f64"), "{message}");
}

mod step_limits {
    use faer::Mat;
    use optlayer::Error;
    use optlayer::ops::{
        BoxSet, Dense, Identity, IndicatorPoint, L1Norm, LeastSquares, SquaredDistance, Zero,
    };
    use optlayer::splittings::{
        Acceleration, Block, CondatVu, DouglasRachford, LadmmSteps, LinearizedAdmm, PrimalDualSteps,
        ProximalGradient, StepRule,
    };

    fn scaled_identity(n: usize, scale: f32) -> Mat<f32> {
        Mat::from_fn(n, n, |i, j| if i == j { scale } else { 0.0 })
    }

    #[test]
    fn f32_steps_that_round_to_zero() {
        // 1e-50 is a valid f64 step but rounds to zero in f32.
        let err = DouglasRachford::<f32>::new(
            2,
            0,
            Box::new(BoxSet::uniform(0.0f32, 1.0).unwrap()),
            Box::new(SquaredDistance::fixed(1.0f32, vec![2.0, -1.0]).unwrap()),
            1e-50,
            1.0,
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidParameter { name, .. } if name == "gamma"),
            "{err}"
        );
        assert!(err.to_string().contains("f32"), "{err}");

        let err = CondatVu::<f32>::new(
            2,
            Box::new(Identity::new(2)),
            Box::new(L1Norm::new(1.0f32).unwrap()),
            Box::new(IndicatorPoint::from_data(0, 2).unwrap()),
            PrimalDualSteps::fixed(1e-50, 0.5),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidParameter { name, .. } if name == "tau"),
            "{err}"
        );
    }

    #[test]
    fn f32_steps_that_overflow() {
        let blocks = vec![Block::new(Identity::new(2), L1Norm::new(1.0f32).unwrap())];
        let steps = LadmmSteps {
            alpha: 1e39,
            beta: 0.1,
            lambda: 1.0,
        };
        let err = LinearizedAdmm::<f32>::new(2, 0, blocks, steps).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidParameter { name, .. } if name == "alpha"),
            "{err}"
        );
    }

    #[test]
    fn default_steps_from_huge_norms() {
        // ‖K‖² overflows f32, so the balanced rule would set τ = 0.
        let err = CondatVu::<f32>::new(
            2,
            Box::new(Dense::new(scaled_identity(2, 1e20)).unwrap()),
            Box::new(SquaredDistance::from_data(1.0f32, 0, 2).unwrap()),
            Box::new(Zero),
            PrimalDualSteps::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Numerical { .. }), "{err}");

        // The same overflow in linearized ADMM would lower β to zero.
        let blocks = vec![Block::new(
            Dense::new(scaled_identity(2, 1e20)).unwrap(),
            L1Norm::new(1.0f32).unwrap(),
        )];
        let steps = LadmmSteps {
            alpha: 0.5,
            beta: 0.5,
            lambda: 1.0,
        };
        let err = LinearizedAdmm::<f32>::new(2, 0, blocks, steps).unwrap_err();
        assert!(matches!(err, Error::Numerical { .. }), "{err}");
    }

    #[test]
    fn default_step_from_tiny_lipschitz() {
        // L̂ = ‖A‖² is subnormal in f32, so γ = 1/(1.05 L̂) overflows.
        let smooth = LeastSquares::new(Dense::new(scaled_identity(2, 1e-20)).unwrap()).unwrap();
        let err = ProximalGradient::<f32>::new(smooth, Zero, 2, Acceleration::None).unwrap_err();
        assert!(matches!(err, Error::Numerical { .. }), "{err}");
    }

    #[test]
    fn shrinking_rules_reject_safety_one() {
        // Rules that set the step condition to the safety itself need it below 1.
        let blocks = vec![Block::new(Identity::new(2), L1Norm::new(1.0).unwrap())];
        let steps = LadmmSteps {
            alpha: 0.5,
            beta: 0.5,
            lambda: 1.0,
        };
        let err = LinearizedAdmm::<f64>::with_rule(2, 0, blocks, steps, StepRule::ShrinkBeta { safety: 1.0 })
            .unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
        let err = CondatVu::<f64>::new(
            2,
            Box::new(Identity::new(2)),
            Box::new(Zero),
            Box::new(L1Norm::new(1.0).unwrap()),
            PrimalDualSteps::Balanced { safety: 1.0 },
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
    }
}
