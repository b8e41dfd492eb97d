//! Certificates of trustworthiness: labels pass, warning or fail for each inference.
//!
//! An optimization model computes each output `x` from data `d` as the solution of an
//! optimization problem, so every inference comes with measurable properties. Examples are
//! the sparsity `‖Θx‖₁`, the data fit `‖Ax − d‖ / ‖d‖`, the fixed-point residual of the
//! iteration and the distance of `x` to a constraint set. A
//! [`Certificate`] evaluates such [`Property`] values, where smaller is better, and turns
//! each into a [`Label`] by two thresholds: pass at or below `pass`, warning up to `warn`,
//! fail above (and fail for NaN).
//!
//! Thresholds are either fixed ([`Rule::Fixed`]) or calibrated ([`Rule::Quantile`]) from
//! the values of the property over inferences on training data: `pass` is the `p_pass`
//! quantile and `warn` the `p_pass + p_warn` quantile. Quantiles use linear interpolation
//! between order statistics, the default of numpy's `quantile` ("type 7" of Hyndman and
//! Fan, "Sample quantiles in statistical packages", The American Statistician 50, 1996):
//! with the `n` values sorted as `v₀ ≤ … ≤ v_{n−1}` and `h = (n − 1) p`, the quantile is
//! `v_⌊h⌋ + (h − ⌊h⌋)(v_⌈h⌉ − v_⌊h⌋)`. On `n` distinct calibration values the share
//! labeled pass is `(⌊(n − 1) p⌋ + 1) / n`, which lies in `(p − p/n, p + (1 − p)/n]`: at
//! least `p` when `(n − 1) p` has a fractional part of at most `1 − p` (for example
//! `n = 200`, `p = 0.95`), and slightly below `p` otherwise (`n = 50` gives `0.94`).
//!
//! A [`Calibration`] stores the thresholds in a versioned text file (see [`Calibration::save`]
//! for the format), saved beside a trained model as [`CALIBRATION_FILE_NAME`] and applied to
//! a certificate built with the same properties and rules by
//! [`Certificate::apply_calibration`].

mod file;
mod property;

use std::fmt;

use faer::MatRef;
use optlayer_core::{Error, Result, SampleReport, Scalar};

pub use file::{CALIBRATION_FILE_NAME, Calibration, CalibrationEntry};
pub use property::{
    BoxDistance, FixedPointResidual, FnProperty, Inference, L1Of, Property, RelativeResidual,
};

/// The verdict on one property of one inference. Ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Label {
    /// The value is at or below the pass threshold.
    Pass,
    /// The value is above the pass threshold and at or below the warning threshold.
    Warning,
    /// The value is above the warning threshold, or NaN.
    Fail,
}

impl Label {
    /// Returns the lowercase name: "pass", "warning" or "fail".
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Pass => "pass",
            Label::Warning => "warning",
            Label::Fail => "fail",
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two thresholds of a property: pass at or below `pass`, warning at or below `warn`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// The largest value labeled pass.
    pub pass: f64,
    /// The largest value labeled warning; at least `pass`.
    pub warn: f64,
}

impl Thresholds {
    /// Creates thresholds after checking them.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if a threshold is NaN or infinite, or if `pass > warn`.
    pub fn new(pass: f64, warn: f64) -> Result<Self> {
        for (name, value) in [("pass threshold", pass), ("warning threshold", warn)] {
            if !value.is_finite() {
                return Err(Error::InvalidParameter {
                    name: name.into(),
                    value,
                    requirement: "must be finite".into(),
                });
            }
        }
        if pass > warn {
            return Err(Error::InvalidParameter {
                name: "warning threshold".into(),
                value: warn,
                requirement: format!(
                    "must be at least the pass threshold {pass}; swap the two or raise the warning threshold"
                ),
            });
        }
        Ok(Self { pass, warn })
    }

    /// Labels `value`: pass if `value ≤ pass`, warning if `value ≤ warn`, fail otherwise
    /// and for every non-finite value. A property value of −∞ comes from a broken
    /// inference, not from a very good one, so it fails too.
    pub fn label(&self, value: f64) -> Label {
        if !value.is_finite() {
            Label::Fail
        } else if value <= self.pass {
            Label::Pass
        } else if value <= self.warn {
            Label::Warning
        } else {
            Label::Fail
        }
    }
}

/// The source of the thresholds of a property: given, or calibrated as quantiles.
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    /// Thresholds given by the user.
    Fixed(Thresholds),
    /// Thresholds calibrated from the values on training data: `pass` is the `p_pass`
    /// quantile and `warn` the `p_pass + p_warn` quantile. Requires `0 < p_pass ≤ 1`,
    /// `p_warn ≥ 0` and `p_pass + p_warn ≤ 1`.
    Quantile {
        /// Quantile level of the pass threshold.
        p_pass: f64,
        /// Width of the warning band in quantile levels.
        p_warn: f64,
    },
}

impl Rule {
    /// Checks the thresholds or quantile levels of the rule.
    ///
    /// A sum `p_pass + p_warn` above 1 by at most `4 f64::EPSILON`, which rounding of
    /// decimal levels can produce, is accepted and treated as 1.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the value out of range.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Rule::Fixed(thresholds) => Thresholds::new(thresholds.pass, thresholds.warn).map(|_| ()),
            Rule::Quantile { p_pass, p_warn } => {
                if !(p_pass > 0.0 && p_pass <= 1.0) {
                    return Err(Error::InvalidParameter {
                        name: "p_pass".into(),
                        value: p_pass,
                        requirement: "must be in (0, 1], for example 0.95".into(),
                    });
                }
                if !(0.0..=1.0).contains(&p_warn) {
                    return Err(Error::InvalidParameter {
                        name: "p_warn".into(),
                        value: p_warn,
                        requirement: "must be in [0, 1], for example 0.04".into(),
                    });
                }
                if p_pass + p_warn > 1.0 + 4.0 * f64::EPSILON {
                    return Err(Error::InvalidParameter {
                        name: "p_warn".into(),
                        value: p_warn,
                        requirement: format!(
                            "must be at most 1 - p_pass = {}; lower p_warn or p_pass",
                            1.0 - p_pass
                        ),
                    });
                }
                Ok(())
            }
        }
    }
}

/// Returns the `p` quantile of `values` by linear interpolation between order statistics
/// (numpy's default, "type 7"; see the [module documentation](self)).
///
/// # Errors
/// [`Error::Empty`] if `values` is empty, [`Error::InvalidParameter`] if `p` is outside
/// `[0, 1]` or a value is NaN or infinite.
pub fn quantile(values: &[f64], p: f64) -> Result<f64> {
    if values.is_empty() {
        return Err(Error::Empty {
            what: "the values of a quantile".into(),
            fix: "pass at least one value".into(),
        });
    }
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::InvalidParameter {
            name: "quantile level".into(),
            value: p,
            requirement: "must be in [0, 1]".into(),
        });
    }
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::InvalidParameter {
            name: format!("value {index} of a quantile"),
            value,
            requirement: "must be finite; remove NaN and infinite values".into(),
        });
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(sorted_quantile(&sorted, p))
}

/// Returns the type-7 quantile of finite, sorted, non-empty `sorted` at `p ∈ [0, 1]`.
fn sorted_quantile(sorted: &[f64], p: f64) -> f64 {
    let last = sorted.len() - 1;
    let h = last as f64 * p;
    let low = (h.floor() as usize).min(last);
    let high = (h.ceil() as usize).min(last);
    let weight = h - low as f64;
    let (a, b) = (sorted[low], sorted[high]);
    if weight == 0.0 || a == b {
        return a;
    }
    let mut value = a + weight * (b - a);
    if !value.is_finite() {
        // b − a overflowed for values of opposite signs near the overflow threshold.
        value = a * (1.0 - weight) + b * weight;
    }
    // Rounding can leave the interval by an ulp; keep the quantile monotone in p.
    value.clamp(a, b)
}

/// One property of a certificate with its rule and, once known, its thresholds.
struct Entry<T: Scalar> {
    property: Box<dyn Property<T>>,
    rule: Rule,
    thresholds: Option<Thresholds>,
    /// Values the thresholds were calibrated from; 0 for fixed rules.
    samples: usize,
}

/// A list of properties with rules that labels inferences pass, warning or fail.
///
/// ```
/// use faer::mat;
/// use optlayer_train::certificate::{Certificate, Label, RelativeResidual, Rule, Thresholds};
///
/// let a = mat![[1.0, 1.0]];
/// let mut certificate = Certificate::new()
///     .with(RelativeResidual::new("fidelity", a.as_ref())?, Rule::Quantile { p_pass: 0.5, p_warn: 0.5 })?;
/// // Calibrate on three training inferences with relative residuals 0, 0.5 and 1.
/// let x = mat![[1.0, 0.5, 0.0], [1.0, 0.5, 0.0]];
/// let d = mat![[2.0, 2.0, 2.0]];
/// certificate.calibrate(x.as_ref(), d.as_ref(), None)?;
/// assert_eq!(certificate.thresholds("fidelity"), Some(Thresholds { pass: 0.5, warn: 1.0 }));
///
/// let assessment = certificate.assess(mat![[0.9], [0.9]].as_ref(), mat![[2.0]].as_ref(), None)?;
/// assert_eq!(assessment.label(0, 0), Some(Label::Pass));
/// # Ok::<(), optlayer_core::Error>(())
/// ```
pub struct Certificate<T: Scalar> {
    entries: Vec<Entry<T>>,
}

impl<T: Scalar> Default for Certificate<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Scalar> fmt::Debug for Certificate<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for entry in &self.entries {
            list.entry(&(entry.property.name(), &entry.rule, entry.thresholds));
        }
        list.finish()
    }
}

impl<T: Scalar> Certificate<T> {
    /// Creates a certificate without properties.
    pub fn new() -> Self {
        Self { entries: Vec::new() }
    }

    /// Adds `property` with its threshold `rule`.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] if the name is empty, has leading or trailing whitespace or
    /// a control character (names are stored one per line in calibration files), or is
    /// already in the certificate; [`Error::InvalidParameter`] if the rule is invalid
    /// ([`Rule::validate`]).
    pub fn with(mut self, property: impl Property<T> + 'static, rule: Rule) -> Result<Self> {
        let name = property.name();
        file::check_name(name)?;
        if self.entries.iter().any(|e| e.property.name() == name) {
            return Err(Error::InvalidValue {
                name: "property name".into(),
                value: name.to_owned(),
                requirement: "must be unique within a certificate; rename one of the properties".into(),
            });
        }
        rule.validate()?;
        let thresholds = match rule {
            Rule::Fixed(thresholds) => Some(thresholds),
            Rule::Quantile { .. } => None,
        };
        self.entries.push(Entry {
            property: Box::new(property),
            rule,
            thresholds,
            samples: 0,
        });
        Ok(self)
    }

    /// Returns the property names in the order they were added.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.property.name()).collect()
    }

    /// Calibrates the thresholds of every [`Rule::Quantile`] property from its values over
    /// the columns of `x` and `d`, which are inferences on training data (with their
    /// forward reports, if any). Fixed properties keep their thresholds. Undefined values
    /// are skipped. On error the certificate is left unchanged.
    ///
    /// # Errors
    /// - [`Error::ShapeMismatch`] if `x`, `d` and `reports` disagree on the sample count,
    ///   or if a property rejects the dimensions.
    /// - [`Error::Empty`] if there are no columns, or if a quantile property is undefined
    ///   on every column.
    /// - [`Error::Numerical`] naming the property, the column and the value if a value is
    ///   NaN or infinite.
    pub fn calibrate(
        &mut self,
        x: MatRef<'_, T>,
        d: MatRef<'_, T>,
        reports: Option<&[SampleReport<T>]>,
    ) -> Result<()> {
        self.check_batch(x, d, reports)?;
        let mut calibrated = Vec::with_capacity(self.entries.len());
        for (index, entry) in self.entries.iter().enumerate() {
            let Rule::Quantile { p_pass, p_warn } = entry.rule else {
                continue;
            };
            let name = entry.property.name();
            let mut values = Vec::with_capacity(x.ncols());
            for col in 0..x.ncols() {
                let Some(value) = entry.property.value(&inference(x, d, reports, col)) else {
                    continue;
                };
                if !value.is_finite() {
                    return Err(Error::Numerical {
                        what: format!("calibration of property '{name}'"),
                        reason: format!(
                            "its value on column {col} is {value}; calibrate on finite values, for example \
                             by dropping the samples whose forward pass diverged"
                        ),
                    });
                }
                values.push(value);
            }
            if values.is_empty() {
                return Err(Error::Empty {
                    what: format!("the defined values of property '{name}' on the calibration batch"),
                    fix: "pass samples where the property is defined, with forward reports if it reads them"
                        .into(),
                });
            }
            values.sort_by(f64::total_cmp);
            let pass = sorted_quantile(&values, p_pass);
            let warn = sorted_quantile(&values, (p_pass + p_warn).min(1.0)).max(pass);
            calibrated.push((index, Thresholds::new(pass, warn)?, values.len()));
        }
        for (index, thresholds, samples) in calibrated {
            self.entries[index].thresholds = Some(thresholds);
            self.entries[index].samples = samples;
        }
        Ok(())
    }

    /// Returns whether every property has thresholds, that is every quantile property has
    /// been calibrated or has had a calibration applied.
    pub fn is_calibrated(&self) -> bool {
        self.entries.iter().all(|e| e.thresholds.is_some())
    }

    /// Evaluates every property on every column of `x` and `d` and labels the values.
    ///
    /// Non-finite outputs are not rejected: their values are usually NaN or infinite and
    /// labeled fail.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] naming the first quantile property without thresholds;
    /// [`Error::ShapeMismatch`] and [`Error::Empty`] as for [`Certificate::calibrate`].
    pub fn assess(
        &self,
        x: MatRef<'_, T>,
        d: MatRef<'_, T>,
        reports: Option<&[SampleReport<T>]>,
    ) -> Result<Assessment> {
        let thresholds = self.all_thresholds()?;
        self.check_batch(x, d, reports)?;
        let samples = x.ncols();
        let mut values = Vec::with_capacity(self.entries.len());
        let mut labels = Vec::with_capacity(self.entries.len());
        for (entry, thresholds) in self.entries.iter().zip(&thresholds) {
            let row: Vec<Option<f64>> = (0..samples)
                .map(|col| entry.property.value(&inference(x, d, reports, col)))
                .collect();
            labels.push(row.iter().map(|v| v.map(|v| thresholds.label(v))).collect());
            values.push(row);
        }
        Ok(Assessment {
            names: self
                .entries
                .iter()
                .map(|e| e.property.name().to_owned())
                .collect(),
            thresholds,
            samples,
            values,
            labels,
        })
    }

    /// Returns the thresholds of every property, for saving with a trained model.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] naming the first quantile property without thresholds.
    pub fn calibration(&self) -> Result<Calibration> {
        let thresholds = self.all_thresholds()?;
        let entries = self
            .entries
            .iter()
            .zip(thresholds)
            .map(|(entry, thresholds)| CalibrationEntry {
                name: entry.property.name().to_owned(),
                rule: entry.rule.clone(),
                thresholds,
                samples: entry.samples,
            })
            .collect();
        Ok(Calibration { entries })
    }

    /// Sets the thresholds from a saved calibration. On error the certificate is left
    /// unchanged.
    ///
    /// # Errors
    /// - [`Error::InvalidModel`] naming the property if the calibration lacks a property
    ///   of the certificate, has one the certificate lacks, or stores another rule for it.
    /// - The errors of [`Calibration::validate`] if an entry is invalid.
    pub fn apply_calibration(&mut self, calibration: &Calibration) -> Result<()> {
        calibration.validate()?;
        let mismatch = |name: &str, reason: String| Error::InvalidModel {
            what: format!("calibration of property '{name}'"),
            reason,
        };
        for stored in &calibration.entries {
            if !self.entries.iter().any(|e| e.property.name() == stored.name) {
                return Err(mismatch(
                    &stored.name,
                    format!(
                        "the certificate has no such property (it has: {}); build the certificate with the \
                         properties the calibration was made for",
                        self.names().join(", ")
                    ),
                ));
            }
        }
        let mut updates = Vec::with_capacity(self.entries.len());
        for entry in &self.entries {
            let name = entry.property.name();
            let Some(stored) = calibration.entries.iter().find(|s| s.name == name) else {
                return Err(mismatch(
                    name,
                    "the calibration has no entry for this property; calibrate the certificate again".into(),
                ));
            };
            if stored.rule != entry.rule {
                return Err(mismatch(
                    name,
                    format!(
                        "the calibration was made with rule {:?}, the certificate uses {:?}; use the same rule \
                         or calibrate again",
                        stored.rule, entry.rule
                    ),
                ));
            }
            updates.push((stored.thresholds, stored.samples));
        }
        for (entry, (thresholds, samples)) in self.entries.iter_mut().zip(updates) {
            entry.thresholds = Some(thresholds);
            entry.samples = samples;
        }
        Ok(())
    }

    /// Returns the thresholds of property `name`, or `None` if there is no such property
    /// or it is not calibrated yet.
    pub fn thresholds(&self, name: &str) -> Option<Thresholds> {
        self.entries
            .iter()
            .find(|e| e.property.name() == name)
            .and_then(|e| e.thresholds)
    }

    /// Returns the thresholds of every property, in order, or the error for the first
    /// uncalibrated one.
    fn all_thresholds(&self) -> Result<Vec<Thresholds>> {
        self.entries
            .iter()
            .map(|entry| {
                entry.thresholds.ok_or_else(|| Error::InvalidModel {
                    what: format!("certificate property '{}'", entry.property.name()),
                    reason: "its quantile thresholds are not calibrated; call Certificate::calibrate on \
                             inferences of training data, or apply a loaded Calibration with \
                             Certificate::apply_calibration"
                        .into(),
                })
            })
            .collect()
    }

    /// Checks that `x`, `d` and `reports` describe the same non-empty list of samples and
    /// that every property accepts their dimensions.
    fn check_batch(
        &self,
        x: MatRef<'_, T>,
        d: MatRef<'_, T>,
        reports: Option<&[SampleReport<T>]>,
    ) -> Result<()> {
        if d.ncols() != x.ncols() {
            return Err(Error::ShapeMismatch {
                what: "data batch d of a certificate".into(),
                expected: format!("{} columns (one per column of x)", x.ncols()),
                found: format!("{} columns", d.ncols()),
            });
        }
        if x.ncols() == 0 {
            return Err(Error::Empty {
                what: "the batch of a certificate".into(),
                fix: "pass at least one sample (one column of x and d)".into(),
            });
        }
        let report_count = reports.map_or(x.ncols(), <[_]>::len);
        if report_count != x.ncols() {
            return Err(Error::ShapeMismatch {
                what: "forward reports of a certificate".into(),
                expected: format!("{} reports (one per column of x)", x.ncols()),
                found: format!("{report_count} reports"),
            });
        }
        for entry in &self.entries {
            entry.property.check_dimensions(x.nrows(), d.nrows())?;
        }
        Ok(())
    }
}

/// Builds the inference of column `col`.
fn inference<'a, T: Scalar>(
    x: MatRef<'a, T>,
    d: MatRef<'a, T>,
    reports: Option<&'a [SampleReport<T>]>,
    col: usize,
) -> Inference<'a, T> {
    Inference {
        x: x.col(col),
        d: d.col(col),
        report: reports.map(|r| &r[col]),
    }
}

/// Values and labels of every property of a certificate on every sample of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    names: Vec<String>,
    thresholds: Vec<Thresholds>,
    samples: usize,
    /// `values[property][sample]`.
    values: Vec<Vec<Option<f64>>>,
    /// `labels[property][sample]`.
    labels: Vec<Vec<Option<Label>>>,
}

/// Fractions of samples with each label, and without one because the property was
/// undefined. The four add up to 1 up to rounding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LabelShares {
    /// Fraction labeled pass.
    pub pass: f64,
    /// Fraction labeled warning.
    pub warning: f64,
    /// Fraction labeled fail.
    pub fail: f64,
    /// Fraction where the property is undefined.
    pub undefined: f64,
}

impl Assessment {
    /// Returns the property names, in certificate order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Returns the number of samples.
    pub fn len(&self) -> usize {
        self.samples
    }

    /// Returns whether there are no samples; always false, because a certificate rejects
    /// empty batches.
    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }

    /// Returns the thresholds used for property `property`, or `None` if the index is out
    /// of range.
    pub fn thresholds(&self, property: usize) -> Option<Thresholds> {
        self.thresholds.get(property).copied()
    }

    /// Returns the value of property `property` on sample `sample`, or `None` if it is
    /// undefined there or an index is out of range.
    pub fn value(&self, property: usize, sample: usize) -> Option<f64> {
        *self.values.get(property)?.get(sample)?
    }

    /// Returns the label of property `property` on sample `sample`, or `None` if the
    /// property is undefined there or an index is out of range.
    pub fn label(&self, property: usize, sample: usize) -> Option<Label> {
        *self.labels.get(property)?.get(sample)?
    }

    /// Returns the worst label over all properties of sample `sample`, ignoring undefined
    /// ones, or `None` if every property is undefined there.
    pub fn worst_label(&self, sample: usize) -> Option<Label> {
        self.labels
            .iter()
            .filter_map(|row| row.get(sample).copied().flatten())
            .max()
    }

    /// Returns the fractions of samples labeled pass, warning and fail by property
    /// `property`, and the fraction where it is undefined.
    ///
    /// # Panics
    /// If `property` is not below the number of properties.
    pub fn shares(&self, property: usize) -> LabelShares {
        let labels = &self.labels[property];
        let count = |label: Option<Label>| labels.iter().filter(|&&l| l == label).count();
        let total = self.samples.max(1) as f64;
        LabelShares {
            pass: count(Some(Label::Pass)) as f64 / total,
            warning: count(Some(Label::Warning)) as f64 / total,
            fail: count(Some(Label::Fail)) as f64 / total,
            undefined: count(None) as f64 / total,
        }
    }

    /// Formats a plain-text table with one row per sample and one `value (label)` column
    /// per property; undefined values show as `undefined`.
    ///
    /// Rows are named by `sample_names`; samples beyond its length are named by their
    /// column index.
    pub fn table(&self, sample_names: &[&str]) -> String {
        let mut rows = Vec::with_capacity(self.samples + 1);
        let mut header = vec!["sample".to_owned()];
        header.extend(self.names.iter().cloned());
        rows.push(header);
        for sample in 0..self.samples {
            let mut row = vec![match sample_names.get(sample) {
                Some(name) => (*name).to_owned(),
                None => sample.to_string(),
            }];
            for property in 0..self.names.len() {
                row.push(
                    match (self.value(property, sample), self.label(property, sample)) {
                        (Some(value), Some(label)) => format!("{value:.3e} ({label})"),
                        _ => "undefined".to_owned(),
                    },
                );
            }
            rows.push(row);
        }
        format_columns(&rows)
    }
}

/// Joins `rows` into lines whose cells are left-aligned in columns two spaces apart.
fn format_columns(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let padding = widths[c] - cell.chars().count();
            line.extend(std::iter::repeat_n(' ', padding));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
pub(crate) mod test_support {
    use optlayer_core::{SampleReport, Scalar, Status};

    /// Returns a converged report with the given relative residual.
    pub(crate) fn report_with_residual<T: Scalar>(relative_residual: T) -> SampleReport<T> {
        SampleReport {
            iterations: 10,
            residual: relative_residual,
            relative_residual,
            status: Status::Converged,
            constraint_residual: None,
            anderson: None,
        }
    }
}

#[cfg(test)]
mod tests;
