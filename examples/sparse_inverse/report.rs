//! The report of a run: report.json and the summary table.

use std::path::Path;

use optlayer::train::{EpochReport, Prediction, atomic};
use optlayer::{Error, GradientAudit, Scalar, Status};
use serde::{Deserialize, Serialize};

use crate::certify::CertificateReport;
use crate::cli::Settings;

/// Everything a run measured; serialized to report.json.
#[derive(Serialize)]
pub struct Report {
    pub config: Settings,
    pub steps: Steps,
    pub training: TrainingEntry,
    pub epochs: Vec<EpochEntry>,
    pub test: TestReport,
    /// The certificate: thresholds, the four-signal table and the label shares
    /// on the test inferences.
    pub certificate: CertificateReport,
    pub figures: Figures,
    /// The gradient audit on the first training batch, with --audit.
    pub audit: Option<Vec<AuditEntry>>,
    pub wall_seconds: f64,
}

/// One row of the gradient audit.
#[derive(Serialize)]
pub struct AuditEntry {
    pub mode: String,
    pub relative_error: f64,
    pub cosine: f64,
    pub directional_derivative: f64,
    pub descent: bool,
    pub seconds: f64,
    pub error: Option<String>,
}

impl AuditEntry {
    /// Converts the rows of an audit, with its reference, for the report.
    pub fn rows(audit: &GradientAudit) -> Vec<AuditEntry> {
        audit
            .rows
            .iter()
            .map(|row| AuditEntry {
                mode: format!("{} (against {})", row.mode, audit.reference),
                relative_error: row.relative_error,
                cosine: row.cosine,
                directional_derivative: row.directional_derivative,
                descent: row.descent,
                seconds: row.seconds,
                error: row.error.clone(),
            })
            .collect()
    }
}

/// The step sizes of linearized ADMM and the norm they derive from.
#[derive(Serialize)]
pub struct Steps {
    pub alpha: f64,
    /// β in use at the end of training.
    pub beta: f64,
    pub lambda: f64,
    pub a_norm: f64,
}

/// The source of Θ.
#[derive(Serialize)]
pub struct TrainingEntry {
    /// "trained", or the file of --load-theta.
    pub theta_source: String,
    /// The number of epochs the checkpoint had when this run resumed it.
    pub resumed_at_epoch: Option<usize>,
    /// The checkpoint folder, when Θ was trained.
    pub checkpoint: Option<std::path::PathBuf>,
}

/// The figures written beside report.json.
#[derive(Serialize)]
pub struct Figures {
    pub files: Vec<String>,
}

/// One training epoch.
#[derive(Serialize, Deserialize)]
pub struct EpochEntry {
    pub epoch: usize,
    pub train_mse: f64,
    pub test_mse: Option<f64>,
    pub seconds: f64,
    pub mean_iterations: f64,
    pub converged_fraction: f64,
    pub contraction_max: Option<f64>,
    pub contraction_mean: Option<f64>,
    pub fallbacks: usize,
    pub fallback_failures: usize,
}

impl From<&EpochReport> for EpochEntry {
    fn from(report: &EpochReport) -> Self {
        Self {
            epoch: report.epoch,
            train_mse: report.train_mse,
            test_mse: report.test_mse,
            seconds: report.seconds,
            mean_iterations: report.mean_iterations,
            converged_fraction: report.converged_fraction,
            contraction_max: report.contraction_max,
            contraction_mean: report.contraction_mean,
            fallbacks: report.fallbacks,
            fallback_failures: report.fallback_failures,
        }
    }
}

/// Test-set results of the three methods.
#[derive(Serialize)]
pub struct TestReport {
    pub least_squares: LeastSquaresResult,
    pub untrained: ModelResult,
    pub trained: ModelResult,
}

/// The minimum-norm least-squares baseline.
#[derive(Serialize)]
pub struct LeastSquaresResult {
    /// Mean squared error per entry.
    pub mse: f64,
    /// Mean over samples of ‖Ax − d‖/‖d‖.
    pub fidelity: f64,
}

/// A model evaluated at the training and the test iteration counts.
#[derive(Serialize)]
pub struct ModelResult {
    pub mse_train_depth: f64,
    pub mse_test_depth: f64,
    /// Mean over samples of ‖Ax − d‖/‖d‖ at the test iteration count.
    pub fidelity: f64,
    pub train_depth: DepthStats,
    pub test_depth: DepthStats,
}

/// Convergence statistics of one evaluation.
#[derive(Serialize)]
pub struct DepthStats {
    pub max_iters: usize,
    pub mean_iterations: f64,
    pub converged: usize,
    pub iteration_limit: usize,
    pub non_finite: usize,
}

impl DepthStats {
    pub fn new<T: Scalar>(max_iters: usize, prediction: &Prediction<T>) -> Self {
        Self {
            max_iters,
            mean_iterations: prediction.mean_iterations(),
            converged: prediction.count(Status::Converged),
            iteration_limit: prediction.count(Status::IterationLimit),
            non_finite: prediction.count(Status::NonFinite),
        }
    }
}

impl Report {
    /// Writes the report as pretty-printed JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let json = serde_json::to_string_pretty(self).map_err(|e| Error::Io {
            action: "failed to serialize".into(),
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        atomic::write_atomic(path, json.as_bytes())
    }

    /// Returns the table printed at the end of a run.
    pub fn summary_table(&self) -> String {
        let t = &self.test;
        let train_depth = self.config.train_iters;
        let test_depth = self.config.test_iters;
        let mut lines = vec![
            format!(
                "{:<16} {:>18} {:>18} {:>12}",
                "test set",
                format!("MSE @ {train_depth} it"),
                format!("MSE @ {test_depth} it"),
                "‖Ax−d‖/‖d‖"
            ),
            format!(
                "{:<16} {:>18.4e} {:>18} {:>12.2e}",
                "least squares", t.least_squares.mse, "-", t.least_squares.fidelity
            ),
        ];
        let final_name = if self.config.load_theta.is_some() {
            "loaded Θ"
        } else {
            "trained Θ"
        };
        for (name, result) in [("untrained Θ", &t.untrained), (final_name, &t.trained)] {
            lines.push(format!(
                "{:<16} {:>18.4e} {:>18.4e} {:>12.2e}",
                name, result.mse_train_depth, result.mse_test_depth, result.fidelity
            ));
        }
        let (ls, trained) = (t.least_squares.mse, t.trained.mse_test_depth);
        let comparison = if ls == 0.0 && trained == 0.0 {
            "test MSE 0, as for least squares".to_string()
        } else if trained == 0.0 {
            "test MSE 0".to_string()
        } else if ls >= trained {
            format!("{:.1}x lower test MSE than least squares", ls / trained)
        } else {
            format!("{:.3}x higher test MSE than least squares", trained / ls)
        };
        let work = match self.training.resumed_at_epoch {
            Some(resumed) => format!(
                "{} epochs, resumed after epoch {resumed}, in {:.0} s",
                self.epochs.len(),
                self.wall_seconds
            ),
            None => format!("{} epochs in {:.0} s", self.epochs.len(), self.wall_seconds),
        };
        lines.push(format!(
            "{final_name} at {test_depth} iterations: {comparison}; {work}"
        ));
        lines.join("\n")
    }
}
