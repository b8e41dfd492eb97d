//! Certificates on a sparse inverse model: calibration on training inferences, a saved
//! calibration applied to a fresh certificate, and labels of corrupted outputs.

mod common;

use common::{cast, recovery_batch, sparse_model};
use faer::Mat;
use optlayer::train::certificate::{
    CALIBRATION_FILE_NAME, Calibration, Certificate, FixedPointResidual, L1Of, Label, RelativeResidual, Rule,
    Thresholds,
};
use optlayer::train::npy;
use optlayer::{ForwardOptions, OptLayer, Scalar, Status};
use optlayer_testing::temp::TempDir;

/// Builds the certificate of a sparse inverse model `min ‖Θx‖₁ s.t. Ax = d`.
fn sparse_certificate<T: Scalar>(theta: &Mat<f64>, a: &Mat<f64>) -> Certificate<T> {
    Certificate::new()
        .with(
            L1Of::new("sparsity", cast::<T>(theta).as_ref()).unwrap(),
            Rule::Quantile {
                p_pass: 0.9,
                p_warn: 0.05,
            },
        )
        .unwrap()
        .with(
            RelativeResidual::new("fidelity", cast::<T>(a).as_ref()).unwrap(),
            Rule::Fixed(Thresholds::new(1e-3, 1e-1).unwrap()),
        )
        .unwrap()
        .with(
            FixedPointResidual::new("fixed-point residual"),
            Rule::Quantile {
                p_pass: 0.8,
                p_warn: 0.2,
            },
        )
        .unwrap()
}

/// Returns columns `start..end` of `m`.
fn columns(m: &Mat<f64>, start: usize, end: usize) -> Mat<f64> {
    Mat::from_fn(m.nrows(), end - start, |i, j| m[(i, start + j)])
}

#[test]
fn saved_calibration_reproduces_labels() {
    let (theta, a, d) = recovery_batch(10, 5, 2, 80, 11);
    let (train_d, test_d) = (columns(&d, 0, 60), columns(&d, 60, 80));
    let layer = OptLayer::new(
        sparse_model::<f64>(&theta, &a, false),
        ForwardOptions::new(20_000, 1e-9),
    )
    .unwrap();
    let train = layer.forward(train_d.as_ref()).unwrap();
    let test = layer.forward(test_d.as_ref()).unwrap();
    // Linearized ADMM has a heavy tail of iteration counts, so a few samples may stop at the limit.
    assert!(train.converged_count() >= 50, "{}", train.converged_count());

    let mut certificate = sparse_certificate::<f64>(&theta, &a);
    certificate
        .calibrate(train.x.as_ref(), train_d.as_ref(), Some(&train.samples))
        .unwrap();
    let on_train = certificate
        .assess(train.x.as_ref(), train_d.as_ref(), Some(&train.samples))
        .unwrap();

    // The sparsity values are ‖Θx‖₁, computed here with faer's product.
    let theta_x = &theta * &train.x;
    for j in 0..60 {
        let expected: f64 = (0..10).map(|i| theta_x[(i, j)].abs()).sum();
        let value = on_train.value(0, j).unwrap();
        assert!(
            (value - expected).abs() <= 1e-12 * expected,
            "sample {j}: {value} vs {expected}"
        );
    }
    // Type 7 on 60 distinct values at p = 0.9: ⌊59 · 0.9⌋ + 1 = 54 pass.
    let shares = on_train.shares(0);
    assert!((shares.pass - 54.0 / 60.0).abs() < 1e-12, "{shares:?}");
    let total = shares.pass + shares.warning + shares.fail + shares.undefined;
    assert!((total - 1.0).abs() < 1e-12, "{total}");
    // Converged outputs satisfy Ax = d closely, so the fixed fidelity rule passes them.
    for (j, report) in train.samples.iter().enumerate() {
        if report.status == Status::Converged {
            assert_eq!(on_train.label(1, j), Some(Label::Pass), "{}", on_train.table(&[]));
        }
    }

    // Save the calibration beside the model's weights, then load both into a fresh certificate.
    let dir = TempDir::new("certificate-round-trip");
    npy::write_matrix(&dir.join("theta.npy"), theta.as_ref()).unwrap();
    let calibration_path = dir.join(CALIBRATION_FILE_NAME);
    certificate
        .calibration()
        .unwrap()
        .save(&calibration_path)
        .unwrap();
    let loaded_theta = npy::read_matrix::<f64>(&dir.join("theta.npy")).unwrap();
    let mut fresh = sparse_certificate::<f64>(&loaded_theta, &a);
    assert!(!fresh.is_calibrated());
    fresh
        .apply_calibration(&Calibration::load(&calibration_path).unwrap())
        .unwrap();
    for name in ["sparsity", "fidelity", "fixed-point residual"] {
        assert_eq!(fresh.thresholds(name), certificate.thresholds(name), "{name}");
    }
    let expected = certificate
        .assess(test.x.as_ref(), test_d.as_ref(), Some(&test.samples))
        .unwrap();
    let reproduced = fresh
        .assess(test.x.as_ref(), test_d.as_ref(), Some(&test.samples))
        .unwrap();
    assert_eq!(reproduced, expected);
}

#[test]
fn corrupted_outputs_fail_fidelity() {
    let (theta, a, d) = recovery_batch(10, 5, 2, 30, 12);
    let layer = OptLayer::new(
        sparse_model::<f64>(&theta, &a, false),
        ForwardOptions::new(20_000, 1e-9),
    )
    .unwrap();
    let result = layer.forward(d.as_ref()).unwrap();
    let mut certificate = sparse_certificate::<f64>(&theta, &a);
    certificate
        .calibrate(result.x.as_ref(), d.as_ref(), Some(&result.samples))
        .unwrap();

    // x = 0 gives ‖Ax − d‖ / ‖d‖ = 1 > 0.1; without reports the fixed-point residual is undefined.
    let zero = Mat::<f64>::zeros(10, 30);
    let assessment = certificate.assess(zero.as_ref(), d.as_ref(), None).unwrap();
    for j in 0..30 {
        assert_eq!(assessment.value(1, j), Some(1.0), "sample {j}");
        assert_eq!(assessment.label(1, j), Some(Label::Fail), "sample {j}");
        assert_eq!(assessment.label(0, j), Some(Label::Pass), "sample {j}");
        assert_eq!(assessment.worst_label(j), Some(Label::Fail), "sample {j}");
    }
    assert_eq!(assessment.shares(2).undefined, 1.0);

    // A diverged output is labeled fail by every property that reads it.
    let mut diverged = result.x.clone();
    diverged[(3, 7)] = f64::NAN;
    let assessment = certificate
        .assess(diverged.as_ref(), d.as_ref(), Some(&result.samples))
        .unwrap();
    assert_eq!(assessment.label(0, 7), Some(Label::Fail));
    assert_eq!(assessment.label(1, 7), Some(Label::Fail));
    assert_eq!(assessment.label(1, 6), Some(Label::Pass));
}

#[test]
fn certificate_on_f32_model() {
    let (theta, a, d) = recovery_batch(8, 4, 1, 40, 13);
    let d32 = cast::<f32>(&d);
    let layer = OptLayer::new(
        sparse_model::<f32>(&theta, &a, false),
        ForwardOptions::new(20_000, 1e-5),
    )
    .unwrap();
    let result = layer.forward(d32.as_ref()).unwrap();
    let mut certificate = sparse_certificate::<f32>(&theta, &a);
    certificate
        .calibrate(result.x.as_ref(), d32.as_ref(), Some(&result.samples))
        .unwrap();
    let assessment = certificate
        .assess(result.x.as_ref(), d32.as_ref(), Some(&result.samples))
        .unwrap();

    // The fidelity, recomputed in f64 from the f32 output and data.
    let x64 = Mat::from_fn(8, 40, |i, j| f64::from(result.x[(i, j)]));
    let d64 = Mat::from_fn(4, 40, |i, j| f64::from(d32[(i, j)]));
    let a32 = cast::<f32>(&a);
    let a64 = Mat::from_fn(4, 8, |i, j| f64::from(a32[(i, j)]));
    let residual = &a64 * &x64 - &d64;
    for j in 0..40 {
        let expected = residual.col(j).norm_l2() / d64.col(j).norm_l2();
        let value = assessment.value(1, j).unwrap();
        assert!(
            (value - expected).abs() <= 1e-6 * (1.0 + expected),
            "sample {j}: {value} vs {expected}"
        );
    }

    // Type 7 on 40 distinct values at p = 0.8: ⌊39 · 0.8⌋ + 1 = 32 pass; p = 1 labels the rest warning.
    let shares = assessment.shares(2);
    assert!(shares.pass >= 32.0 / 40.0 - 1e-12, "{shares:?}");
    assert_eq!(shares.fail, 0.0, "{shares:?}");
    assert_eq!(shares.pass + shares.warning, 1.0, "{shares:?}");
}
