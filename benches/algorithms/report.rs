//! The Markdown table of all measurements, and atomic file writes.

use std::fmt::Write as _;
use std::path::Path;

use optlayer::train::atomic::write_atomic;

use crate::measure::{Measurement, Settings, WarmStart, median};

/// The measurements of every scheme on one problem.
pub struct Section {
    /// The file name of the plot, without extension.
    pub key: &'static str,
    pub title: String,
    /// The source of the reference solution.
    pub reference: String,
    /// The schemes left out, and why.
    pub not_applicable: Option<String>,
    pub settings: Settings,
    pub rows: Vec<Measurement>,
}

/// The meaning of the columns, printed below the table.
const COLUMNS: &str = "\
Steps are per sample (median and maximum over the batch). Products are calls of \
A, C or Θ or of their transposes (identity operators are not counted), and prox \
evaluations are calls of any prox, both counted per step of sample 0 alone. A \
projection onto {x : Cx = b} counts as one prox evaluation and costs about as \
much as one product with C and one with Cᵀ. The Douglas-Rachford prox of \
½‖Ax − d‖² counts one product with Aᵀ and also does two triangular solves with \
an n x n Cholesky factor. Forward time is the wall time of OptLayer::forward on \
the whole batch; µs / sample-step divides it by the steps summed over the batch. \
The distance is max_j ‖x_j − x_ref,j‖ / ‖x_ref,j‖. The warm start starts \
OptLayer::forward_from on the data from the fixed point of the data with noise \
N(0, (0.01 · rms(d_j))²) added to each entry of each sample d_j. Steps saved \
compare the summed steps of the warm and the cold start, and read n/a when a \
sample of either reached the iteration limit. The Anderson columns repeat the \
cold start with Anderson acceleration at its default options (memory 5, \
safeguard 1); a rejected candidate costs one extra step, which the steps include.
";

/// Writes `text` to `path` through a temporary file and a rename.
///
/// # Panics
/// If the file cannot be written.
pub fn write(path: &Path, text: &str) {
    write_atomic(path, text.as_bytes()).unwrap_or_else(|e| panic!("writing {} failed: {e}", path.display()));
}

/// Returns the table of all sections, followed by the reference of each
/// problem and the settings.
pub fn markdown(sections: &[Section], rtol: f64) -> String {
    let mut out = String::new();
    out.push_str(
        "| problem | scheme | steps: median (max) | converged | products / step | prox / step \
         | forward time | µs / sample-step | distance to reference | warm start steps: median (max) \
         | steps saved | Anderson steps: median (max) | Anderson saved |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for section in sections {
        for row in &section.rows {
            out.push_str(&table_row(&section.title, row));
        }
    }
    out.push('\n');
    out.push_str(&notes(sections, rtol));
    out
}

/// Returns the settings, the meaning of the columns and the reference of
/// each problem, printed below the table.
fn notes(sections: &[Section], rtol: f64) -> String {
    let mut out = String::new();
    let batch = sections
        .first()
        .and_then(|s| s.rows.first())
        .map_or(0, |r| r.iterations.len());
    let _ = writeln!(
        out,
        "Stopping rule ‖z⁺ − z‖ ≤ {rtol:.0e} ‖z⁺‖ per sample, batch of {batch} samples, f64, 1 thread."
    );
    out.push('\n');
    out.push_str(COLUMNS);
    out.push('\n');
    for section in sections {
        let _ = writeln!(
            out,
            "- {}: iteration limit {}, forward time the median of {} rounds that each time every scheme once; reference: {}.",
            section.title, section.settings.max_iters, section.settings.repeats, section.reference
        );
        if let Some(reason) = &section.not_applicable {
            let _ = writeln!(out, "  - Not applicable: {reason}.");
        }
        for row in &section.rows {
            if let Some(restarted) = &row.restarted_warm {
                let _ = writeln!(
                    out,
                    "  - {} warm start with the momentum counter reset to t = 1: {} steps, {} saved.",
                    row.scheme,
                    warm_summary(restarted),
                    saved(row.converged, &row.iterations, restarted)
                );
            }
        }
    }
    out
}

fn table_row(problem: &str, row: &Measurement) -> String {
    let batch = row.iterations.len();
    let total: usize = row.iterations.iter().sum();
    let per_step = 1e6 * row.seconds / total.max(1) as f64;
    let distance = row.distance.map_or("-".to_string(), |d| format!("{d:.1e}"));
    format!(
        "| {problem} | {} | {} | {}/{batch} | {} | {} | {} | {per_step:.1} | {distance} | {} | {} | {} | {} |\n",
        row.scheme,
        steps_summary(&row.iterations),
        row.converged,
        count(row.products_per_step),
        count(row.proxes_per_step),
        duration(row.seconds),
        warm_summary(&row.warm),
        saved(row.converged, &row.iterations, &row.warm),
        warm_summary(&row.anderson),
        saved(row.converged, &row.iterations, &row.anderson),
    )
}

/// Formats the steps of a warm start, with the count of converged samples
/// when some reached the limit.
fn warm_summary(warm: &WarmStart) -> String {
    let batch = warm.iterations.len();
    let mut text = steps_summary(&warm.iterations);
    if warm.converged < batch {
        let _ = write!(text, ", {}/{batch} converged", warm.converged);
    }
    text
}

/// Returns the share of steps a warm start saved over the cold start,
/// summed over the batch, or "n/a" when a sample of either pass reached the
/// iteration limit, because the saving is then not measured.
fn saved(cold_converged: usize, cold: &[usize], warm: &WarmStart) -> String {
    let batch = cold.len();
    if cold_converged < batch || warm.converged < batch {
        return "n/a".into();
    }
    let cold_total: usize = cold.iter().sum();
    let warm_total: usize = warm.iterations.iter().sum();
    format!(
        "{:.0}%",
        100.0 * (1.0 - warm_total as f64 / cold_total.max(1) as f64)
    )
}

/// Formats the median and the maximum of per-sample step counts.
fn steps_summary(steps: &[usize]) -> String {
    let mut values: Vec<f64> = steps.iter().map(|&s| s as f64).collect();
    let middle = median(&mut values);
    let max = steps.iter().copied().max().unwrap_or(0);
    format!("{} ({})", thousands(middle.round() as usize), thousands(max))
}

/// Formats a per-step count with at most two decimals.
fn count(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn duration(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else {
        format!("{:.3} ms", 1e3 * seconds)
    }
}

fn thousands(value: usize) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
