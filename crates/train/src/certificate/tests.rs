use std::fmt::Write as _;
use std::path::PathBuf;

use faer::{Mat, mat};

use super::test_support::report_with_residual;
use super::*;

/// Creates an empty directory under the system temporary directory for one test.
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("optlayer-certificate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Builds a property equal to the first entry of `x`, so tests choose values directly.
fn first_entry<T: Scalar>(
    name: &str,
) -> FnProperty<impl Fn(&Inference<'_, T>) -> Option<f64> + Send + Sync + use<T>> {
    FnProperty::new(name, |s: &Inference<'_, T>| Some(s.x[0].to_f64_lossless()))
}

/// Builds a batch with one row whose columns hold `values`, and data of one zero row.
fn batch(values: &[f64]) -> (Mat<f64>, Mat<f64>) {
    let x = Mat::from_fn(1, values.len(), |_, j| values[j]);
    let d = Mat::zeros(1, values.len());
    (x, d)
}

fn quantile_rule(p_pass: f64, p_warn: f64) -> Rule {
    Rule::Quantile { p_pass, p_warn }
}

// Quantiles and labels.

#[test]
fn quantile_matches_hand_values() {
    let values = [5.0, 1.0, 3.0, 2.0, 4.0];
    // h = 4 · 0.9 = 3.6, between v₃ = 4 and v₄ = 5.
    assert!((quantile(&values, 0.9).unwrap() - 4.6).abs() < 1e-12);
    assert_eq!(quantile(&values, 0.5).unwrap(), 3.0);
    assert_eq!(quantile(&values, 0.0).unwrap(), 1.0);
    assert_eq!(quantile(&values, 1.0).unwrap(), 5.0);
    // h = 4 · 0.3 = 1.2, between v₁ = 2 and v₂ = 3.
    assert!((quantile(&values, 0.3).unwrap() - 2.2).abs() < 1e-12);
}

#[test]
fn quantile_of_one_value() {
    for p in [0.0, 0.3, 1.0] {
        assert_eq!(quantile(&[7.5], p).unwrap(), 7.5);
    }
}

#[test]
fn quantile_with_ties() {
    let values = [2.0, 1.0, 2.0, 2.0, 9.0];
    // Sorted [1, 2, 2, 2, 9]: h = 0.25·4 = 1 and h = 0.6·4 = 2.4 both land among the ties.
    assert_eq!(quantile(&values, 0.25).unwrap(), 2.0);
    assert_eq!(quantile(&values, 0.6).unwrap(), 2.0);
    // h = 0.8 · 4 = 3.2, between v₃ = 2 and v₄ = 9: 2 + 0.2 · 7 = 3.4.
    assert!((quantile(&values, 0.8).unwrap() - 3.4).abs() < 1e-12);
}

#[test]
fn quantile_of_huge_opposite_values_is_finite() {
    let value = quantile(&[-1.5e308, 1.5e308], 0.25).unwrap();
    assert!((value / -0.75e308 - 1.0).abs() < 1e-12, "{value}");
}

#[test]
fn quantile_rejects_bad_input() {
    assert!(matches!(quantile(&[], 0.5), Err(Error::Empty { .. })));
    assert!(matches!(
        quantile(&[1.0], 1.5),
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        quantile(&[1.0], f64::NAN),
        Err(Error::InvalidParameter { .. })
    ));
    let error = quantile(&[1.0, f64::NAN], 0.5).unwrap_err();
    assert!(error.to_string().contains("value 1"), "{error}");
}

#[test]
fn labels_around_thresholds() {
    let thresholds = Thresholds::new(1.0, 2.0).unwrap();
    let cases = [
        (f64::NEG_INFINITY, Label::Fail),
        (-1e300, Label::Pass),
        (0.5, Label::Pass),
        (1.0, Label::Pass),
        (1.0 + f64::EPSILON, Label::Warning),
        (1.5, Label::Warning),
        (2.0, Label::Warning),
        (2.0 + 2.0 * f64::EPSILON, Label::Fail),
        (3.0, Label::Fail),
        (f64::INFINITY, Label::Fail),
        (f64::NAN, Label::Fail),
    ];
    for (value, expected) in cases {
        assert_eq!(thresholds.label(value), expected, "value {value}");
    }
}

#[test]
fn equal_thresholds_have_no_warning_band() {
    let thresholds = Thresholds::new(1.0, 1.0).unwrap();
    assert_eq!(thresholds.label(1.0), Label::Pass);
    assert_eq!(thresholds.label(1.0 + f64::EPSILON), Label::Fail);
}

#[test]
fn label_names() {
    assert_eq!(Label::Pass.to_string(), "pass");
    assert_eq!(Label::Warning.to_string(), "warning");
    assert_eq!(Label::Fail.as_str(), "fail");
    assert!(Label::Pass < Label::Warning);
    assert!(Label::Warning < Label::Fail);
}

#[test]
fn thresholds_reject_bad_values() {
    let error = Thresholds::new(2.0, 1.0).unwrap_err();
    assert!(matches!(error, Error::InvalidParameter { .. }), "{error}");
    assert!(error.to_string().contains("warning threshold"), "{error}");
    for (pass, warn) in [(f64::NAN, 1.0), (0.0, f64::INFINITY), (f64::NEG_INFINITY, 0.0)] {
        let error = Thresholds::new(pass, warn).unwrap_err();
        assert!(error.to_string().contains("must be finite"), "{error}");
    }
}

#[test]
fn quantile_rule_rejects_bad_levels() {
    let cases = [
        (0.0, 0.0, "p_pass"),
        (1.5, 0.0, "p_pass"),
        (f64::NAN, 0.0, "p_pass"),
        (0.9, -0.1, "p_warn"),
        (0.9, f64::NAN, "p_warn"),
        (0.9, 0.2, "p_warn"),
    ];
    for (p_pass, p_warn, named) in cases {
        let error = quantile_rule(p_pass, p_warn).validate().unwrap_err();
        assert!(matches!(error, Error::InvalidParameter { .. }), "{error}");
        assert!(error.to_string().contains(named), "{error}");
        let error = Certificate::<f64>::new()
            .with(first_entry("v"), quantile_rule(p_pass, p_warn))
            .unwrap_err();
        assert!(error.to_string().contains(named), "{error}");
    }
    assert!(quantile_rule(1.0, 0.0).validate().is_ok());
    assert!(quantile_rule(0.9, 0.1).validate().is_ok());
}

#[test]
fn fixed_rule_rejects_invalid_thresholds() {
    let rule = Rule::Fixed(Thresholds { pass: 3.0, warn: 1.0 });
    let error = Certificate::<f64>::new()
        .with(first_entry("v"), rule)
        .unwrap_err();
    assert!(matches!(error, Error::InvalidParameter { .. }), "{error}");
}

#[test]
fn certificate_rejects_bad_names() {
    let fixed = Rule::Fixed(Thresholds::new(0.0, 1.0).unwrap());
    let certificate = Certificate::<f64>::new()
        .with(first_entry("v"), fixed.clone())
        .unwrap();
    let error = certificate.with(first_entry("v"), fixed.clone()).unwrap_err();
    assert!(matches!(error, Error::InvalidValue { .. }), "{error}");
    assert!(error.to_string().contains("unique"), "{error}");
    for name in ["", " v", "v\n", "a\tb"] {
        let error = Certificate::<f64>::new()
            .with(first_entry(name), fixed.clone())
            .unwrap_err();
        assert!(matches!(error, Error::InvalidValue { .. }), "{name:?}: {error}");
    }
    assert!(
        Certificate::<f64>::new()
            .with(first_entry("box distance ‖x‖"), fixed)
            .is_ok()
    );
}

// Calibration and assessment.

#[test]
fn calibrate_sets_quantile_thresholds() {
    let (x, d) = batch(&[5.0, 1.0, 3.0, 2.0, 4.0]);
    let fixed = Thresholds::new(10.0, 20.0).unwrap();
    let mut certificate = Certificate::<f64>::new()
        .with(first_entry("q"), quantile_rule(0.5, 0.4))
        .unwrap()
        .with(
            FnProperty::new("fixed", |s: &Inference<'_, f64>| Some(s.x[0])),
            Rule::Fixed(fixed),
        )
        .unwrap();
    assert!(!certificate.is_calibrated());
    assert_eq!(certificate.thresholds("q"), None);
    assert_eq!(certificate.thresholds("fixed"), Some(fixed));
    certificate.calibrate(x.as_ref(), d.as_ref(), None).unwrap();
    assert!(certificate.is_calibrated());
    let calibrated = certificate.thresholds("q").unwrap();
    assert_eq!(calibrated.pass, 3.0);
    assert!((calibrated.warn - 4.6).abs() < 1e-12, "{calibrated:?}");
    assert_eq!(certificate.thresholds("fixed"), Some(fixed));
    assert_eq!(certificate.names(), vec!["q", "fixed"]);
}

#[test]
fn calibration_pass_share_is_near_level() {
    // 200 distinct values: (n − 1) p = 189.05 has fractional part 0.05 ≤ 1 − p, so the share
    // is (189 + 1) / 200 = 0.95 exactly.
    let values: Vec<f64> = (0..200).map(|i| ((i * 73) % 200) as f64 * 0.37 + 1.0).collect();
    let (x, d) = batch(&values);
    let mut certificate = Certificate::<f64>::new()
        .with(first_entry("v"), quantile_rule(0.95, 0.04))
        .unwrap();
    certificate.calibrate(x.as_ref(), d.as_ref(), None).unwrap();
    let assessment = certificate.assess(x.as_ref(), d.as_ref(), None).unwrap();
    let shares = assessment.shares(0);
    assert!(shares.pass >= 0.95, "{shares:?}");
    assert!(shares.pass <= 0.95 + 1.0 / 200.0, "{shares:?}");
    // The warn level 0.99 gives (⌊199 · 0.99⌋ + 1) / 200 = 198 / 200 at most warning.
    assert!((shares.pass + shares.warning - 0.99).abs() < 1e-12, "{shares:?}");
    assert!((shares.fail - 0.01).abs() < 1e-12, "{shares:?}");
    assert_eq!(shares.undefined, 0.0);
    let total = shares.pass + shares.warning + shares.fail + shares.undefined;
    assert!((total - 1.0).abs() < 1e-12, "{total}");
}

#[test]
fn calibration_pass_share_bounds_for_many_sizes() {
    // On n distinct values the pass share is (⌊(n − 1) p⌋ + 1) / n, inside (p − p/n, p + (1 − p)/n].
    let p = 0.95;
    for n in 1..=120 {
        let values: Vec<f64> = (0..n).map(|i| (i as f64).sqrt()).collect();
        let (x, d) = batch(&values);
        let mut certificate = Certificate::<f64>::new()
            .with(first_entry("v"), quantile_rule(p, 0.0))
            .unwrap();
        certificate.calibrate(x.as_ref(), d.as_ref(), None).unwrap();
        let shares = certificate
            .assess(x.as_ref(), d.as_ref(), None)
            .unwrap()
            .shares(0);
        let expected = (((n - 1) as f64 * p).floor() + 1.0) / n as f64;
        assert!((shares.pass - expected).abs() < 1e-12, "n = {n}: {shares:?}");
        assert!(shares.pass > p - p / n as f64, "n = {n}: {shares:?}");
        assert!(
            shares.pass <= p + (1.0 - p) / n as f64 + 1e-12,
            "n = {n}: {shares:?}"
        );
        assert_eq!(shares.warning, 0.0, "n = {n}: p_warn = 0 leaves no warning band");
    }
}

#[test]
fn calibrate_skips_undefined_values() {
    let residuals = [0.5, 0.1, 0.3];
    let reports: Vec<_> = residuals.iter().map(|&r| report_with_residual(r)).collect();
    let (x, d) = batch(&[0.0, 1.0, 2.0]);
    let positive = FnProperty::new("positive x", |s: &Inference<'_, f64>| {
        (s.x[0] > 0.0).then_some(s.x[0])
    });
    let mut certificate = Certificate::<f64>::new()
        .with(FixedPointResidual::new("residual"), quantile_rule(0.5, 0.5))
        .unwrap()
        .with(positive, quantile_rule(0.5, 0.0))
        .unwrap();
    certificate
        .calibrate(x.as_ref(), d.as_ref(), Some(&reports))
        .unwrap();
    assert_eq!(
        certificate.thresholds("residual"),
        Some(Thresholds { pass: 0.3, warn: 0.5 })
    );
    // Only the values 1 and 2 are defined: the median is 1.5.
    assert_eq!(
        certificate.thresholds("positive x"),
        Some(Thresholds { pass: 1.5, warn: 1.5 })
    );
    let calibration = certificate.calibration().unwrap();
    assert_eq!(calibration.entries[0].samples, 3);
    assert_eq!(calibration.entries[1].samples, 2);

    let assessment = certificate.assess(x.as_ref(), d.as_ref(), None).unwrap();
    let shares = assessment.shares(0);
    assert_eq!(shares.undefined, 1.0);
    assert_eq!(assessment.label(0, 0), None);
    assert_eq!(assessment.worst_label(0), None);
    assert_eq!(assessment.worst_label(2), Some(Label::Fail));
    assert_eq!(
        assessment.table(&[]).lines().nth(1).unwrap(),
        "0       undefined  undefined"
    );
}

#[test]
fn calibrate_without_defined_values_fails() {
    let (x, d) = batch(&[1.0, 2.0]);
    let mut certificate = Certificate::<f64>::new()
        .with(FixedPointResidual::new("residual"), quantile_rule(0.9, 0.05))
        .unwrap();
    let error = certificate.calibrate(x.as_ref(), d.as_ref(), None).unwrap_err();
    assert!(matches!(error, Error::Empty { .. }), "{error}");
    assert!(error.to_string().contains("residual"), "{error}");
    assert!(!certificate.is_calibrated());
}

#[test]
fn calibrate_rejects_non_finite_values() {
    let (x, d) = batch(&[1.0, 2.0, f64::INFINITY, f64::NAN]);
    let mut certificate = Certificate::<f64>::new()
        .with(first_entry("v"), quantile_rule(0.9, 0.05))
        .unwrap();
    let error = certificate.calibrate(x.as_ref(), d.as_ref(), None).unwrap_err();
    assert!(matches!(error, Error::Numerical { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("'v'"), "{message}");
    assert!(message.contains("column 2"), "{message}");
    assert!(message.contains("inf"), "{message}");
}

#[test]
fn failed_calibration_keeps_old_thresholds() {
    let (x, d) = batch(&[1.0, 2.0, 3.0]);
    let mut certificate = Certificate::<f64>::new()
        .with(first_entry("a"), quantile_rule(0.5, 0.5))
        .unwrap()
        .with(FixedPointResidual::new("residual"), quantile_rule(0.5, 0.5))
        .unwrap();
    let reports: Vec<_> = [0.1, 0.2, 0.3].map(report_with_residual).to_vec();
    certificate
        .calibrate(x.as_ref(), d.as_ref(), Some(&reports))
        .unwrap();
    let before = certificate.thresholds("a");
    let (x2, d2) = batch(&[10.0, 20.0, 30.0]);
    // The residual property is undefined without reports, so this calibration fails as a whole.
    assert!(certificate.calibrate(x2.as_ref(), d2.as_ref(), None).is_err());
    assert_eq!(certificate.thresholds("a"), before);
}

#[test]
fn assess_labels_new_samples() {
    let (x, d) = batch(&[1.0, 2.0, 3.0, 4.0, 5.0]);
    let mut certificate = Certificate::<f64>::new()
        .with(first_entry("v"), quantile_rule(0.5, 0.25))
        .unwrap()
        .with(
            first_entry("fixed"),
            Rule::Fixed(Thresholds::new(-1.0, 0.0).unwrap()),
        )
        .unwrap();
    certificate.calibrate(x.as_ref(), d.as_ref(), None).unwrap();

    // pass = 3 (h = 2), warn = 4 (h = 3).
    let (x, d) = batch(&[3.0, 3.5, 4.0, 4.5, f64::NAN, -2.0]);
    let assessment = certificate.assess(x.as_ref(), d.as_ref(), None).unwrap();
    assert_eq!(assessment.len(), 6);
    assert!(!assessment.is_empty());
    assert_eq!(assessment.names(), ["v".to_owned(), "fixed".to_owned()]);
    let expected = [
        Label::Pass,
        Label::Warning,
        Label::Warning,
        Label::Fail,
        Label::Fail,
        Label::Pass,
    ];
    for (sample, label) in expected.into_iter().enumerate() {
        assert_eq!(assessment.label(0, sample), Some(label), "sample {sample}");
    }

    assert_eq!(assessment.value(0, 1), Some(3.5));
    assert_eq!(assessment.value(2, 0), None);
    assert_eq!(assessment.label(0, 6), None);
    assert_eq!(assessment.label(1, 5), Some(Label::Pass));
    assert_eq!(assessment.label(1, 0), Some(Label::Fail));
    assert_eq!(assessment.worst_label(5), Some(Label::Pass));
    assert_eq!(assessment.worst_label(1), Some(Label::Fail));
    assert_eq!(
        assessment.thresholds(0),
        Some(Thresholds { pass: 3.0, warn: 4.0 })
    );

    let shares = assessment.shares(0);
    assert!((shares.pass - 2.0 / 6.0).abs() < 1e-15, "{shares:?}");
    assert!((shares.warning - 2.0 / 6.0).abs() < 1e-15, "{shares:?}");
    assert!((shares.fail - 2.0 / 6.0).abs() < 1e-15, "{shares:?}");
}

#[test]
fn assess_requires_calibration() {
    let (x, d) = batch(&[1.0]);
    let certificate = Certificate::<f64>::new()
        .with(first_entry("sparsity"), quantile_rule(0.9, 0.05))
        .unwrap();
    let error = certificate.assess(x.as_ref(), d.as_ref(), None).unwrap_err();
    assert!(matches!(error, Error::InvalidModel { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("sparsity"), "{message}");
    assert!(message.contains("calibrate"), "{message}");
    assert!(matches!(
        certificate.calibration(),
        Err(Error::InvalidModel { .. })
    ));
}

#[test]
fn batch_shape_errors() {
    let fixed = Rule::Fixed(Thresholds::new(0.0, 1.0).unwrap());
    let mut certificate = Certificate::<f64>::new()
        .with(
            L1Of::new("sparsity", Mat::<f64>::identity(2, 2).as_ref()).unwrap(),
            quantile_rule(0.9, 0.1),
        )
        .unwrap()
        .with(FixedPointResidual::new("residual"), fixed)
        .unwrap();
    let x = Mat::<f64>::zeros(2, 3);
    let d = Mat::<f64>::zeros(1, 3);

    let error = certificate
        .calibrate(x.as_ref(), Mat::zeros(1, 2).as_ref(), None)
        .unwrap_err();
    assert!(matches!(error, Error::ShapeMismatch { .. }), "{error}");
    assert!(error.to_string().contains("3 columns"), "{error}");

    let error = certificate
        .calibrate(Mat::zeros(2, 0).as_ref(), Mat::zeros(1, 0).as_ref(), None)
        .unwrap_err();
    assert!(matches!(error, Error::Empty { .. }), "{error}");

    let reports = vec![report_with_residual(0.1); 2];
    let error = certificate
        .calibrate(x.as_ref(), d.as_ref(), Some(&reports))
        .unwrap_err();
    assert!(matches!(error, Error::ShapeMismatch { .. }), "{error}");
    assert!(error.to_string().contains("2 reports"), "{error}");

    let error = certificate
        .calibrate(Mat::zeros(4, 3).as_ref(), d.as_ref(), None)
        .unwrap_err();
    assert!(matches!(error, Error::ShapeMismatch { .. }), "{error}");
    assert!(error.to_string().contains("sparsity"), "{error}");

    certificate.calibrate(x.as_ref(), d.as_ref(), None).unwrap();
    let error = certificate
        .assess(x.as_ref(), Mat::zeros(1, 4).as_ref(), None)
        .unwrap_err();
    assert!(matches!(error, Error::ShapeMismatch { .. }), "{error}");
    let error = certificate
        .assess(Mat::zeros(2, 0).as_ref(), Mat::zeros(1, 0).as_ref(), None)
        .unwrap_err();
    assert!(matches!(error, Error::Empty { .. }), "{error}");
}

#[test]
fn certificate_in_f32() {
    let x = mat![[3.0_f32, -1.0, 0.5], [4.0, 0.0, 0.5]];
    let d = mat![[1.0_f32, 1.0, 1.0]];
    let mut certificate = Certificate::<f32>::new()
        .with(
            L1Of::new("l1", Mat::<f32>::identity(2, 2).as_ref()).unwrap(),
            quantile_rule(0.5, 0.5),
        )
        .unwrap()
        .with(
            BoxDistance::new("box", &[0.0_f32, 0.0], &[1.0, 1.0]).unwrap(),
            Rule::Fixed(Thresholds::new(0.0, 1.0).unwrap()),
        )
        .unwrap();
    certificate.calibrate(x.as_ref(), d.as_ref(), None).unwrap();
    // ‖x‖₁ per column: 7, 1, 1; sorted [1, 1, 7].
    assert_eq!(
        certificate.thresholds("l1"),
        Some(Thresholds { pass: 1.0, warn: 7.0 })
    );
    let assessment = certificate.assess(x.as_ref(), d.as_ref(), None).unwrap();
    // Box distances: ‖[2, 3]‖ = √13, 1, 0.
    let distance = assessment.value(1, 0).unwrap();
    assert!((distance - 13.0_f64.sqrt()).abs() < 1e-6, "{distance}");
    assert_eq!(assessment.label(1, 0), Some(Label::Fail));
    assert_eq!(assessment.label(1, 1), Some(Label::Warning));
    assert_eq!(assessment.label(1, 2), Some(Label::Pass));
}

#[test]
fn table_lists_values_and_labels() {
    let (x, d) = batch(&[0.5, 1.5, 2.5]);
    let certificate = Certificate::<f64>::new()
        .with(
            first_entry("sparsity"),
            Rule::Fixed(Thresholds::new(1.0, 2.0).unwrap()),
        )
        .unwrap();
    let table = certificate
        .assess(x.as_ref(), d.as_ref(), None)
        .unwrap()
        .table(&["a", "b"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert_eq!(lines[0], "sample  sparsity");
    assert_eq!(lines[1], "a       5.000e-1 (pass)");
    assert_eq!(lines[2], "b       1.500e0 (warning)");
    assert_eq!(lines[3], "2       2.500e0 (fail)");
}

// Files.

fn calibrated_certificate() -> (Certificate<f64>, Mat<f64>, Mat<f64>) {
    let values: Vec<f64> = (0..50)
        .map(|i| ((i * 37 % 50) as f64 / 7.0).exp() * 0.1)
        .collect();
    let (x, d) = batch(&values);
    let mut certificate = certificate_template();
    certificate.calibrate(x.as_ref(), d.as_ref(), None).unwrap();
    (certificate, x, d)
}

/// Builds the certificate of `calibrated_certificate` before calibration.
fn certificate_template() -> Certificate<f64> {
    Certificate::<f64>::new()
        .with(first_entry("sparsity ‖Θx‖₁"), quantile_rule(0.9, 0.07))
        .unwrap()
        .with(
            FnProperty::new("scaled", |s: &Inference<'_, f64>| Some(s.x[0] / 3.0)),
            quantile_rule(0.1 + 0.2, 0.6),
        )
        .unwrap()
        .with(
            first_entry("fixed"),
            Rule::Fixed(Thresholds::new(0.1, 1.0 / 3.0).unwrap()),
        )
        .unwrap()
}

#[test]
fn save_load_round_trip_is_exact() {
    let dir = test_dir("round-trip");
    let path = dir.join(CALIBRATION_FILE_NAME);
    let (certificate, x, d) = calibrated_certificate();
    let calibration = certificate.calibration().unwrap();
    calibration.save(&path).unwrap();
    let loaded = Calibration::load(&path).unwrap();
    assert_eq!(loaded, calibration);
    for (a, b) in loaded.entries.iter().zip(&calibration.entries) {
        assert_eq!(
            a.thresholds.pass.to_bits(),
            b.thresholds.pass.to_bits(),
            "{}",
            a.name
        );
        assert_eq!(
            a.thresholds.warn.to_bits(),
            b.thresholds.warn.to_bits(),
            "{}",
            a.name
        );
    }
    assert_eq!(loaded.entries[0].samples, 50);
    assert_eq!(loaded.entries[2].samples, 0);

    let mut fresh = certificate_template();
    fresh.apply_calibration(&loaded).unwrap();
    assert!(fresh.is_calibrated());
    assert_eq!(
        fresh.assess(x.as_ref(), d.as_ref(), None).unwrap(),
        certificate.assess(x.as_ref(), d.as_ref(), None).unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn round_trip_keeps_awkward_floats() {
    let dir = test_dir("floats");
    let path = dir.join("calibration.txt");
    let awkward = [
        (0.1 + 0.2, 1.0 / 3.0),
        (-0.0, 5e-324),
        (f64::MIN_POSITIVE, 1e300),
        (-f64::MAX, f64::MAX),
        (1.0 - f64::EPSILON / 2.0, 1.0),
    ];
    let entries = awkward
        .iter()
        .enumerate()
        .map(|(i, &(pass, warn))| CalibrationEntry {
            name: format!("p{i}"),
            rule: quantile_rule(0.95, 0.04),
            thresholds: Thresholds::new(pass, warn).unwrap(),
            samples: i + 1,
        })
        .collect();
    let calibration = Calibration { entries };
    calibration.save(&path).unwrap();
    let loaded = Calibration::load(&path).unwrap();
    for (a, b) in loaded.entries.iter().zip(&calibration.entries) {
        assert_eq!(
            a.thresholds.pass.to_bits(),
            b.thresholds.pass.to_bits(),
            "{}",
            a.name
        );
        assert_eq!(
            a.thresholds.warn.to_bits(),
            b.thresholds.warn.to_bits(),
            "{}",
            a.name
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn saved_file_has_documented_layout() {
    let dir = test_dir("layout");
    let path = dir.join("calibration.txt");
    let calibration = Calibration {
        entries: vec![
            CalibrationEntry {
                name: "sparsity".into(),
                rule: quantile_rule(0.95, 0.04),
                thresholds: Thresholds::new(12.345, 15.0).unwrap(),
                samples: 200,
            },
            CalibrationEntry {
                name: "box distance".into(),
                rule: Rule::Fixed(Thresholds::new(0.0, 1e-3).unwrap()),
                thresholds: Thresholds::new(0.0, 1e-3).unwrap(),
                samples: 0,
            },
        ],
    };
    calibration.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let expected = "optlayer-certificate-calibration 1\n\
                    property sparsity\n\
                    rule quantile 9.5e-1 4e-2\n\
                    thresholds 1.2345e1 1.5e1\n\
                    samples 200\n\
                    property box distance\n\
                    rule fixed\n\
                    thresholds 0e0 1e-3\n\
                    samples 0\n\
                    end 2\n";
    assert_eq!(text, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A valid file with one quantile and one fixed property, as lines.
const VALID: [&str; 10] = [
    "optlayer-certificate-calibration 1",
    "property a",
    "rule quantile 9e-1 5e-2",
    "thresholds 1e0 2e0",
    "samples 10",
    "property b",
    "rule fixed",
    "thresholds 0e0 1e0",
    "samples 0",
    "end 2",
];

/// Writes `lines` and loads them, returning the reason of the expected `InvalidFile` error.
fn load_error(dir: &std::path::Path, lines: &[&str]) -> String {
    let path = dir.join("calibration.txt");
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    match Calibration::load(&path) {
        Err(Error::InvalidFile {
            path: error_path,
            reason,
        }) => {
            assert_eq!(error_path, path);
            reason
        }
        other => panic!("expected Error::InvalidFile for {lines:?}, got {other:?}"),
    }
}

/// Returns `VALID` with line `index` (0-based) replaced by `line`, or removed when `line` is `None`.
fn edited(index: usize, line: Option<&'static str>) -> Vec<&'static str> {
    let mut lines = VALID.to_vec();
    match line {
        Some(line) => lines[index] = line,
        None => {
            lines.remove(index);
        }
    }
    lines
}

#[test]
fn valid_file_loads() {
    let dir = test_dir("valid");
    let path = dir.join("calibration.txt");
    std::fs::write(&path, VALID.join("\n")).unwrap();
    let calibration = Calibration::load(&path).unwrap();
    assert_eq!(calibration.entries.len(), 2);
    assert_eq!(calibration.entries[0].rule, quantile_rule(0.9, 0.05));
    assert_eq!(
        calibration.entries[1].rule,
        Rule::Fixed(Thresholds { pass: 0.0, warn: 1.0 })
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_files_are_rejected() {
    let dir = test_dir("malformed");
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "wrong header",
            edited(0, Some("optlayer calibration")),
            "line 1: expected the header",
        ),
        (
            "other version",
            edited(0, Some("optlayer-certificate-calibration 2")),
            "version `2`",
        ),
        ("missing rule", edited(2, None), "line 3: expected `rule"),
        ("missing samples", edited(4, None), "line 5: expected `samples"),
        (
            "missing threshold",
            edited(3, Some("thresholds 1e0")),
            "line 4: expected `thresholds",
        ),
        (
            "bad float",
            edited(3, Some("thresholds 1e0 2x")),
            "line 4: the warning threshold `2x` is not a number",
        ),
        (
            "bad level",
            edited(2, Some("rule quantile 0.9.1 5e-2")),
            "line 3: p_pass",
        ),
        (
            "bad rule",
            edited(6, Some("rule median")),
            "line 7: expected `rule",
        ),
        (
            "NaN threshold",
            edited(3, Some("thresholds NaN 2e0")),
            "line 4: invalid pass threshold",
        ),
        (
            "infinite threshold",
            edited(7, Some("thresholds 0e0 inf")),
            "line 8: invalid warning threshold",
        ),
        (
            "pass above warn",
            edited(3, Some("thresholds 3e0 2e0")),
            "line 4: invalid warning threshold",
        ),
        (
            "invalid levels",
            edited(2, Some("rule quantile 9e-1 2e-1")),
            "p_warn",
        ),
        ("zero samples", edited(4, Some("samples 0")), "0 samples"),
        (
            "negative samples",
            edited(4, Some("samples -1")),
            "line 5: expected `samples <count>`",
        ),
        (
            "duplicate name",
            edited(5, Some("property a")),
            "line 6: duplicate property 'a'",
        ),
        (
            "empty name",
            edited(5, Some("property ")),
            "line 6: invalid property name",
        ),
        (
            "unexpected line",
            edited(5, Some("weights 1 2")),
            "line 6: expected `property <name>`",
        ),
        ("wrong count", edited(9, Some("end 3")), "counts 3 properties"),
        (
            "content after end",
            [VALID.as_slice(), &["property c"]].concat(),
            "line 11: unexpected content",
        ),
        ("truncated", VALID[..7].to_vec(), "truncated"),
        ("truncated before end", VALID[..9].to_vec(), "truncated"),
        ("empty file", vec![], "the file is empty"),
    ];
    for (case, lines, expected) in cases {
        let reason = load_error(&dir, &lines);
        assert!(reason.contains(expected), "{case}: {reason}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn non_utf8_file_is_rejected() {
    let dir = test_dir("utf8");
    let path = dir.join("calibration.txt");
    std::fs::write(&path, b"optlayer-certificate-calibration 1\n\xff\n").unwrap();
    let error = Calibration::load(&path).unwrap_err();
    assert!(matches!(error, Error::InvalidFile { .. }), "{error}");
    assert!(error.to_string().contains("UTF-8"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_file_is_io_error() {
    let dir = test_dir("missing");
    let path = dir.join("absent.txt");
    let error = Calibration::load(&path).unwrap_err();
    let Error::Io {
        path: error_path,
        source,
        ..
    } = &error
    else {
        panic!("expected Error::Io, got {error:?}");
    };
    assert_eq!(error_path, &path);
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    assert!(error.to_string().contains("absent.txt"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_rejects_invalid_calibration() {
    let dir = test_dir("save-invalid");
    let path = dir.join("calibration.txt");
    let entry = CalibrationEntry {
        name: "a".into(),
        rule: quantile_rule(0.9, 0.05),
        thresholds: Thresholds { pass: 1.0, warn: 2.0 },
        samples: 3,
    };
    let invalid = [
        CalibrationEntry {
            thresholds: Thresholds {
                pass: f64::NAN,
                warn: 2.0,
            },
            ..entry.clone()
        },
        CalibrationEntry {
            name: "two\nlines".into(),
            ..entry.clone()
        },
        CalibrationEntry {
            rule: Rule::Fixed(Thresholds { pass: 0.0, warn: 2.0 }),
            ..entry.clone()
        },
        CalibrationEntry {
            samples: 0,
            ..entry.clone()
        },
    ];
    for bad in invalid {
        let calibration = Calibration {
            entries: vec![bad.clone()],
        };
        let error = calibration.save(&path).unwrap_err();
        assert!(matches!(error, Error::InvalidValue { .. }), "{bad:?}: {error}");
        assert!(!path.exists(), "{bad:?}");
    }
    let duplicate = Calibration {
        entries: vec![entry.clone(), entry],
    };
    let error = duplicate.save(&path).unwrap_err();
    assert!(matches!(error, Error::InvalidValue { .. }), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn apply_calibration_checks_names_and_rules() {
    let (certificate, _, _) = calibrated_certificate();
    let calibration = certificate.calibration().unwrap();

    let mut missing = calibration.clone();
    missing.entries.remove(1);
    let mut fresh = certificate_template();
    let error = fresh.apply_calibration(&missing).unwrap_err();
    assert!(matches!(error, Error::InvalidModel { .. }), "{error}");
    assert!(error.to_string().contains("'scaled'"), "{error}");
    assert!(error.to_string().contains("no entry"), "{error}");
    assert!(!fresh.is_calibrated());

    let mut extra = calibration.clone();
    extra.entries.push(CalibrationEntry {
        name: "extra".into(),
        ..calibration.entries[0].clone()
    });
    let error = fresh.apply_calibration(&extra).unwrap_err();
    assert!(error.to_string().contains("'extra'"), "{error}");
    assert!(error.to_string().contains("no such property"), "{error}");

    let mut other_rule = calibration.clone();
    other_rule.entries[0].rule = quantile_rule(0.8, 0.07);
    let error = fresh.apply_calibration(&other_rule).unwrap_err();
    assert!(error.to_string().contains("'sparsity ‖Θx‖₁'"), "{error}");
    assert!(error.to_string().contains("rule"), "{error}");

    let mut other_fixed = calibration.clone();
    let changed = Thresholds::new(0.2, 1.0).unwrap();
    other_fixed.entries[2].rule = Rule::Fixed(changed);
    other_fixed.entries[2].thresholds = changed;
    let error = fresh.apply_calibration(&other_fixed).unwrap_err();
    assert!(error.to_string().contains("'fixed'"), "{error}");
    assert!(!fresh.is_calibrated());

    // Order does not matter, only names and rules.
    let mut reordered = calibration.clone();
    reordered.entries.reverse();
    fresh.apply_calibration(&reordered).unwrap();
    assert_eq!(fresh.calibration().unwrap(), calibration);
}

#[test]
fn editor_line_endings_and_bom_load() {
    let dir = test_dir("editor");
    let path = dir.join("calibration.txt");
    let expected = {
        std::fs::write(&path, VALID.join("\n")).unwrap();
        Calibration::load(&path).unwrap()
    };
    let cases = [
        ("crlf", VALID.join("\r\n") + "\r\n"),
        ("crlf without final newline", VALID.join("\r\n") + "\r"),
        ("bom", format!("\u{feff}{}\n", VALID.join("\n"))),
        (
            "trailing spaces",
            VALID
                .iter()
                .map(|line| {
                    if line.starts_with("property ") {
                        (*line).to_owned()
                    } else {
                        format!("{line} \t ")
                    }
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    ];
    for (case, text) in cases {
        std::fs::write(&path, text).unwrap();
        let loaded = Calibration::load(&path).unwrap_or_else(|error| panic!("{case}: {error}"));
        assert_eq!(loaded, expected, "{case}");
    }
    // A name is the rest of its line, so trailing whitespace there stays invalid.
    let reason = load_error(&dir, &edited(1, Some("property a ")));
    assert!(reason.contains("line 2: invalid property name"), "{reason}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unicode_names_round_trip() {
    let dir = test_dir("unicode");
    let path = dir.join(CALIBRATION_FILE_NAME);
    let mut certificate = Certificate::<f64>::new()
        .with(first_entry("稀疏度 ‖Θx‖₁ 🙂"), quantile_rule(1.0, 0.0))
        .unwrap()
        .with(first_entry("e\u{301}cart"), quantile_rule(0.5, 0.5))
        .unwrap();
    // One sample: every quantile is that sample's value.
    let (x, d) = batch(&[0.25]);
    certificate.calibrate(x.as_ref(), d.as_ref(), None).unwrap();
    assert_eq!(
        certificate.thresholds("稀疏度 ‖Θx‖₁ 🙂"),
        Some(Thresholds {
            pass: 0.25,
            warn: 0.25
        })
    );
    certificate.calibration().unwrap().save(&path).unwrap();
    let loaded = Calibration::load(&path).unwrap();
    assert_eq!(loaded, certificate.calibration().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn many_properties_load_quickly() {
    // Duplicate names are found with a hash set: a quadratic scan of this file takes
    // seconds.
    let dir = test_dir("many");
    let path = dir.join("calibration.txt");
    let count = 200_000;
    let mut text = String::from("optlayer-certificate-calibration 1\n");
    for index in 0..count {
        let _ = write!(
            text,
            "property p{index}\nrule fixed\nthresholds 0e0 1e0\nsamples 0\n"
        );
    }
    let _ = writeln!(text, "end {count}");
    std::fs::write(&path, &text).unwrap();
    let started = std::time::Instant::now();
    let calibration = Calibration::load(&path).unwrap();
    calibration.validate().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(calibration.entries.len(), count);
    assert_eq!(calibration.entries[count - 1].name, format!("p{}", count - 1));
    assert!(seconds < 2.0, "loading {count} properties took {seconds} s");

    let duplicate = text.replacen(&format!("property p{}\n", count - 1), "property p0\n", 1);
    std::fs::write(&path, duplicate).unwrap();
    let error = Calibration::load(&path).unwrap_err();
    assert!(error.to_string().contains("duplicate property 'p0'"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
