//! The certificate of the sparse inverse model: for each inference, the
//! sparsity `‖Θx‖₁` and the fixed-point residual against thresholds calibrated
//! on training inferences, and the fidelity `‖Ax − d‖/‖d‖` against fixed ones.

use std::path::{Path, PathBuf};

use faer::{Mat, MatRef};
use optlayer::train::certificate::{
    Assessment, Calibration, Certificate, FixedPointResidual, L1Of, RelativeResidual, Rule, Thresholds,
};
use optlayer::train::{Dataset, Prediction};
use optlayer::{Error, Scalar};
use serde::Serialize;

use crate::cli::Settings;

/// The calibration file written beside `theta_trained.npy`.
pub const CALIBRATION_FILE: &str = "certificate.txt";

/// Property names, as the calibration file records them.
const SPARSITY: &str = "sparsity";
const FIDELITY: &str = "fidelity";
const RESIDUAL: &str = "fixed_point_residual";

/// Column headers of the printed table, in certificate order.
const HEADERS: [&str; 3] = ["sparsity ‖Θx‖₁", "fidelity ‖Ax−d‖/‖d‖", "fixed-point residual"];

/// The four signals of the table, in column order.
const SIGNALS: [&str; 4] = [
    "true x*",
    "another sample's x*",
    "least squares",
    "model inference",
];

/// Builds the certificate for the model `min ‖Θx‖₁ s.t. Ax = d`.
pub fn certificate<T: Scalar>(
    theta: MatRef<'_, T>,
    a: MatRef<'_, T>,
    settings: &Settings,
) -> Result<Certificate<T>, Error> {
    let quantile = Rule::Quantile {
        p_pass: settings.p_pass,
        p_warn: settings.p_warn,
    };
    let fixed = Rule::Fixed(Thresholds::new(settings.fidelity_pass, settings.fidelity_warn)?);
    Certificate::new()
        .with(L1Of::new(SPARSITY, theta)?, quantile.clone())?
        .with(RelativeResidual::new(FIDELITY, a)?, fixed)?
        .with(FixedPointResidual::new(RESIDUAL), quantile)
}

/// Checks that a calibration file was written with the certificate flags of
/// this run, so that a mismatch fails before any evaluation and names the flags.
///
/// # Errors
/// When a property is missing or its rule differs from the one the flags give.
pub fn check_calibration(calibration: &Calibration, settings: &Settings, path: &Path) -> Result<(), Error> {
    let quantile = Rule::Quantile {
        p_pass: settings.p_pass,
        p_warn: settings.p_warn,
    };
    let fidelity = Rule::Fixed(Thresholds::new(settings.fidelity_pass, settings.fidelity_warn)?);
    let expected = [
        (SPARSITY, &quantile, "--p-pass and --p-warn"),
        (FIDELITY, &fidelity, "--fidelity-pass and --fidelity-warn"),
        (RESIDUAL, &quantile, "--p-pass and --p-warn"),
    ];
    for (name, rule, flags) in expected {
        let stored = calibration.entries.iter().find(|e| e.name == name);
        let reason = match stored {
            None => format!("has no property '{name}'"),
            Some(entry) if entry.rule != *rule => format!(
                "was written with {} for property '{name}', but {flags} give {}",
                describe(&entry.rule),
                describe(rule)
            ),
            Some(_) => continue,
        };
        return Err(Error::InvalidFile {
            path: path.to_path_buf(),
            reason: format!(
                "{reason}; give the flags it was written with, or move the file away so that \
                 the run calibrates new thresholds"
            ),
        });
    }
    Ok(())
}

/// Describes a rule with the flags that set it.
fn describe(rule: &Rule) -> String {
    match rule {
        Rule::Fixed(t) => format!("--fidelity-pass {:?} --fidelity-warn {:?}", t.pass, t.warn),
        Rule::Quantile { p_pass, p_warn } => format!("--p-pass {p_pass:?} --p-warn {p_warn:?}"),
    }
}

/// A property's thresholds, for report.json.
#[derive(Clone, Serialize)]
pub struct PropertyEntry {
    pub name: String,
    pub rule: String,
    pub pass: f64,
    pub warn: f64,
}

/// One signal's values and labels, in property order (`None`: undefined).
#[derive(Clone, Serialize)]
pub struct SignalEntry {
    pub signal: String,
    pub values: Vec<Option<f64>>,
    pub labels: Vec<Option<String>>,
}

/// The shares of the labels of one property over the test inferences.
#[derive(Clone, Serialize)]
pub struct ShareEntry {
    pub property: String,
    pub pass: f64,
    pub warning: f64,
    pub fail: f64,
    pub undefined: f64,
}

/// The certificate section of report.json.
#[derive(Clone, Serialize)]
pub struct CertificateReport {
    /// The test sample of the four-signal table.
    pub test_sample: usize,
    /// The test sample whose `x*` is the wrong signal; `None` when the test
    /// set has one sample.
    pub other_sample: Option<usize>,
    /// Training inferences the quantile thresholds come from.
    pub calibration_samples: usize,
    /// The calibration file the thresholds were read from, when they were
    /// not calibrated in this run.
    pub calibration_file: Option<PathBuf>,
    pub properties: Vec<PropertyEntry>,
    pub signals: Vec<SignalEntry>,
    pub test_inferences: usize,
    pub test_shares: Vec<ShareEntry>,
}

/// Everything the example prints and draws about the certificate.
pub struct Certificates<T: Scalar> {
    pub report: CertificateReport,
    /// The printed table.
    pub table: String,
    /// The four signals as columns: true, other sample's, least squares, inference.
    pub signals: Mat<T>,
    /// A title per signal, with its values and labels.
    pub panel_titles: Vec<String>,
    /// The sparsity of every test inference.
    pub sparsity_test: Vec<f64>,
    pub sparsity_thresholds: Thresholds,
}

fn cell(assessment: &Assessment, property: usize, sample: usize) -> (Option<f64>, Option<String>) {
    (
        assessment.value(property, sample),
        assessment.label(property, sample).map(|l| l.to_string()),
    )
}

/// Formats a value with three decimals, or in scientific notation when small.
fn short(value: f64) -> String {
    if value != 0.0 && value.abs() < 0.01 {
        format!("{value:.2e}")
    } else {
        format!("{value:.3}")
    }
}

fn format_cell(value: Option<f64>, label: Option<&str>) -> String {
    match (value, label) {
        (Some(value), Some(label)) => format!("{value:.3e} {label}"),
        (Some(value), None) => format!("{value:.3e}"),
        _ => "-".into(),
    }
}

/// Returns the test sample of the four-signal table, the first whose `x*` is
/// nonzero (a zero `x*` gives zero in every column), and another sample whose
/// `x*` differs from it, preferably nonzero too.
fn table_samples<T: Scalar>(targets: MatRef<'_, T>) -> (usize, Option<usize>) {
    let nonzero = |j: usize| (0..targets.nrows()).any(|i| targets[(i, j)] != T::zero());
    let samples = targets.ncols();
    let sample = (0..samples).find(|&j| nonzero(j)).unwrap_or(0);
    let differs =
        |j: usize| j != sample && (0..targets.nrows()).any(|i| targets[(i, j)] != targets[(i, sample)]);
    let other = (0..samples)
        .find(|&j| differs(j) && nonzero(j))
        .or_else(|| (0..samples).find(|&j| differs(j)))
        .or_else(|| (0..samples).find(|&j| j != sample));
    (sample, other)
}

/// Assesses the four signals of one test sample and every test inference.
///
/// # Errors
/// When the certificate is not calibrated or a shape disagrees.
pub fn assess<T: Scalar>(
    certificate: &Certificate<T>,
    test: &Dataset<T>,
    least_squares_x: &Mat<T>,
    prediction: &Prediction<T>,
    settings: &Settings,
    calibration_samples: usize,
    calibration_file: Option<&Path>,
) -> Result<Certificates<T>, Error> {
    let (sample, other) = table_samples(test.targets());
    let (m, n) = (test.data().nrows(), test.targets().nrows());
    let mut signals = Mat::<T>::zeros(n, SIGNALS.len());
    signals.col_mut(0).copy_from(test.targets().col(sample));
    signals
        .col_mut(1)
        .copy_from(test.targets().col(other.unwrap_or(sample)));
    signals.col_mut(2).copy_from(least_squares_x.col(sample));
    signals.col_mut(3).copy_from(prediction.x.col(sample));
    let d = test.data().subcols(sample, 1);
    let repeated = Mat::<T>::from_fn(m, 3, |i, _| d[(i, 0)]);
    // Only the inference has a forward report, so it is assessed apart.
    let given = certificate.assess(signals.as_ref().subcols(0, 3), repeated.as_ref(), None)?;
    let inferred = certificate.assess(
        signals.as_ref().subcols(3, 1),
        d,
        Some(&prediction.samples[sample..sample + 1]),
    )?;
    let all = certificate.assess(prediction.x.as_ref(), test.data(), Some(&prediction.samples))?;

    let names: Vec<String> = all.names().to_vec();
    let rows: Vec<SignalEntry> = SIGNALS
        .iter()
        .enumerate()
        .map(|(j, signal)| {
            let (assessment, column) = if j < 3 { (&given, j) } else { (&inferred, 0) };
            let (values, labels) = if j == 1 && other.is_none() {
                // A test set of one sample has no other sample's x*.
                (vec![None; names.len()], vec![None; names.len()])
            } else {
                (0..names.len()).map(|p| cell(assessment, p, column)).unzip()
            };
            SignalEntry {
                signal: signal.to_string(),
                values,
                labels,
            }
        })
        .collect();

    let mut properties = Vec::new();
    for name in &names {
        let thresholds = certificate.thresholds(name).ok_or_else(|| Error::InvalidModel {
            what: "certificate".into(),
            reason: format!("property '{name}' has no thresholds; calibrate it first"),
        })?;
        let rule = if name == FIDELITY {
            "fixed".to_string()
        } else {
            format!(
                "quantiles {} and {} of {calibration_samples} training inferences",
                settings.p_pass,
                settings.p_pass + settings.p_warn
            )
        };
        properties.push(PropertyEntry {
            name: name.clone(),
            rule,
            pass: thresholds.pass,
            warn: thresholds.warn,
        });
    }
    let shares: Vec<ShareEntry> = names
        .iter()
        .enumerate()
        .map(|(p, name)| {
            let s = all.shares(p);
            ShareEntry {
                property: name.clone(),
                pass: s.pass,
                warning: s.warning,
                fail: s.fail,
                undefined: s.undefined,
            }
        })
        .collect();

    let mut lines = vec![format!(
        "certificate of test sample {sample} (pass ≤ first threshold < warning ≤ second < fail)"
    )];
    let mut header = format!("{:<22}", "signal");
    for h in HEADERS {
        header.push_str(&format!(" {h:>24}"));
    }
    lines.push(header);
    for row in &rows {
        let mut line = format!("{:<22}", row.signal);
        for (value, label) in row.values.iter().zip(&row.labels) {
            line.push_str(&format!(" {:>24}", format_cell(*value, label.as_deref())));
        }
        lines.push(line);
    }
    let mut thresholds_line = format!("{:<22}", "thresholds");
    for p in &properties {
        thresholds_line.push_str(&format!(" {:>24}", format!("{:.3e} / {:.3e}", p.pass, p.warn)));
    }
    lines.push(thresholds_line);
    let mut share_line = format!("{:<22}", format!("{} test inferences", all.len()));
    for s in &shares {
        share_line.push_str(&format!(
            " {:>24}",
            format!(
                "{:.1}/{:.1}/{:.1}%",
                100.0 * s.pass,
                100.0 * s.warning,
                100.0 * s.fail
            )
        ));
    }
    lines.push(share_line);
    let source = match calibration_file {
        Some(path) => format!("were read from {}", path.display()),
        None => format!(
            "are the {} and {} quantiles of {calibration_samples} training inferences",
            settings.p_pass,
            settings.p_pass + settings.p_warn
        ),
    };
    lines.push(format!(
        "(shares are pass/warning/fail; the sparsity and residual thresholds {source}, \
         the fidelity thresholds are fixed)"
    ));

    let panel_titles = rows
        .iter()
        .map(|row| {
            let parts: Vec<String> = HEADERS
                .iter()
                .zip(row.values.iter().zip(&row.labels))
                .filter_map(|(h, (v, l))| {
                    v.map(|v| format!("{h} {} ({})", short(v), l.as_deref().unwrap_or("-")))
                })
                .collect();
            if parts.is_empty() {
                format!("Θx, {}: none, the test set has one sample", row.signal)
            } else {
                format!("Θx, {}: {}", row.signal, parts.join(", "))
            }
        })
        .collect();
    let sparsity_test = (0..all.len()).filter_map(|j| all.value(0, j)).collect();
    let sparsity_thresholds = Thresholds {
        pass: properties[0].pass,
        warn: properties[0].warn,
    };
    Ok(Certificates {
        report: CertificateReport {
            test_sample: sample,
            other_sample: other,
            calibration_samples,
            calibration_file: calibration_file.map(Path::to_path_buf),
            properties,
            signals: rows,
            test_inferences: all.len(),
            test_shares: shares,
        },
        table: lines.join("\n"),
        signals,
        panel_titles,
        sparsity_test,
        sparsity_thresholds,
    })
}
