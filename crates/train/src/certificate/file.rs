//! Calibrations of certificates and their text file format.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use optlayer_core::{Error, Result};

use super::{Rule, Thresholds};
use crate::atomic::write_atomic;

/// The file name of a calibration saved beside a trained model's `theta.npy`.
pub const CALIBRATION_FILE_NAME: &str = "certificate.txt";

/// The first line of a calibration file: the format name and its version.
const HEADER: &str = "optlayer-certificate-calibration 1";

/// The format name at the start of the header, for telling an unsupported version from
/// a file of another kind.
const FORMAT_NAME: &str = "optlayer-certificate-calibration";

/// The thresholds of every property of a certificate, as saved beside a trained model.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// One entry per property, in certificate order.
    pub entries: Vec<CalibrationEntry>,
}

/// The calibrated thresholds of one property.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationEntry {
    /// The property name.
    pub name: String,
    /// The rule the thresholds came from.
    pub rule: Rule,
    /// The thresholds.
    pub thresholds: Thresholds,
    /// Number of values the thresholds were computed from; 0 for fixed rules.
    pub samples: usize,
}

impl Calibration {
    /// Checks every entry.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] naming the entry if its name is invalid or repeated, its rule
    /// or thresholds are invalid, its thresholds differ from those of its fixed rule, or a
    /// quantile entry was calibrated from 0 samples.
    pub fn validate(&self) -> Result<()> {
        let mut seen = HashSet::with_capacity(self.entries.len());
        for entry in &self.entries {
            check_name(&entry.name)?;
            if !seen.insert(entry.name.as_str()) {
                return Err(Error::InvalidValue {
                    name: "property name of a calibration".into(),
                    value: entry.name.clone(),
                    requirement: "must appear once; remove the duplicate entry".into(),
                });
            }
            check_entry(entry).map_err(|reason| Error::InvalidValue {
                name: "calibration entry".into(),
                value: entry.name.clone(),
                requirement: reason,
            })?;
        }
        Ok(())
    }

    /// Writes the calibration to `path`, replacing it atomically
    /// ([`write_atomic`](crate::atomic::write_atomic)).
    ///
    /// The format is UTF-8 text, one field per line:
    ///
    /// ```text
    /// optlayer-certificate-calibration 1
    /// property sparsity
    /// rule quantile 9.5e-1 4e-2
    /// thresholds 1.2345e1 1.5e1
    /// samples 200
    /// property box distance
    /// rule fixed
    /// thresholds 0e0 1e-3
    /// samples 0
    /// end 2
    /// ```
    ///
    /// The first line names the format and its version. Each property follows as the
    /// lines `property <name>`, `rule quantile <p_pass> <p_warn>` or `rule fixed`,
    /// `thresholds <pass> <warn>` and `samples <count>`; the name is the rest of its line.
    /// The last line `end <number of properties>` shows that the file is complete. Numbers
    /// are written in Rust's shortest round-trip scientific notation, so reading them back
    /// gives the same bits.
    ///
    /// # Errors
    /// The errors of [`Calibration::validate`], and [`Error::Io`] naming `path` if the
    /// file cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.validate()?;
        let mut text = String::new();
        text.push_str(HEADER);
        text.push('\n');
        for entry in &self.entries {
            // `fmt::Write` for `String` always returns `Ok`.
            let _ = writeln!(text, "property {}", entry.name);
            let _ = match entry.rule {
                Rule::Fixed(_) => writeln!(text, "rule fixed"),
                Rule::Quantile { p_pass, p_warn } => writeln!(text, "rule quantile {p_pass:e} {p_warn:e}"),
            };
            let _ = writeln!(
                text,
                "thresholds {:e} {:e}",
                entry.thresholds.pass, entry.thresholds.warn
            );
            let _ = writeln!(text, "samples {}", entry.samples);
        }
        let _ = writeln!(text, "end {}", self.entries.len());
        write_atomic(path, text.as_bytes())
    }

    /// Reads a calibration written by [`Calibration::save`].
    ///
    /// Edits by text editors are accepted: a leading UTF-8 byte order mark, `\r\n` line
    /// endings and trailing whitespace on every line but a `property` line, whose name is
    /// the rest of the line and must not end in whitespace.
    ///
    /// # Errors
    /// - [`Error::Io`] naming `path` if the file cannot be read, for example because it is
    ///   missing.
    /// - [`Error::InvalidFile`] naming the line and the expected content if the file is not
    ///   a valid calibration. The causes are a wrong header or version, a missing or
    ///   malformed line, a number that does not parse, invalid thresholds or rule, a
    ///   duplicate name, and a missing `end` line because the file is truncated.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            action: "failed to read the certificate calibration".into(),
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| Error::InvalidFile {
            path: path.to_path_buf(),
            reason: format!(
                "byte {} is not UTF-8 text; a calibration file is the text written by Calibration::save",
                e.utf8_error().valid_up_to()
            ),
        })?;
        parse(&text).map_err(|reason| Error::InvalidFile {
            path: path.to_path_buf(),
            reason,
        })
    }
}

/// Checks that `name` can be a property name: non-empty, without leading or trailing
/// whitespace, and without control characters, because calibration files store it as the
/// rest of a line.
pub(super) fn check_name(name: &str) -> Result<()> {
    let requirement = if name.is_empty() {
        "must not be empty"
    } else if name.trim() != name {
        "must not start or end with whitespace"
    } else if name.chars().any(char::is_control) {
        "must not contain control characters such as line breaks or tabs"
    } else {
        return Ok(());
    };
    Err(Error::InvalidValue {
        name: "property name".into(),
        value: name.to_owned(),
        requirement: requirement.into(),
    })
}

/// Checks the rule, thresholds and sample count of one entry; the error is the reason.
fn check_entry(entry: &CalibrationEntry) -> std::result::Result<(), String> {
    entry.rule.validate().map_err(|e| e.to_string())?;
    Thresholds::new(entry.thresholds.pass, entry.thresholds.warn).map_err(|e| e.to_string())?;
    match entry.rule {
        Rule::Fixed(fixed) if fixed != entry.thresholds => Err(format!(
            "the thresholds {:?} differ from those of its fixed rule, {fixed:?}; store the rule's thresholds",
            entry.thresholds
        )),
        Rule::Quantile { .. } if entry.samples == 0 => {
            Err("quantile thresholds calibrated from 0 samples; calibrate on at least one sample".into())
        }
        _ => Ok(()),
    }
}

/// Reads the lines of a calibration file one by one, with 1-based line numbers for errors.
struct Lines<'a> {
    lines: std::iter::Enumerate<std::str::Lines<'a>>,
    last: usize,
}

impl<'a> Lines<'a> {
    /// Returns the next line and its number, or an error naming what was expected if the
    /// text ends.
    fn next(&mut self, expected: &str) -> std::result::Result<(usize, &'a str), String> {
        match self.lines.next() {
            Some((index, line)) => {
                self.last = index + 1;
                Ok((index + 1, line))
            }
            None if self.last == 0 => Err(format!(
                "the file is empty; expected the header `{HEADER}` written by Calibration::save"
            )),
            None => Err(format!(
                "the file ends after line {} where `{expected}` was expected; the file is truncated, \
                 save the calibration again",
                self.last
            )),
        }
    }

    /// Returns the rest of the next line after `key` and a space, without trailing
    /// whitespace, and its number.
    fn field(&mut self, key: &str, expected: &str) -> std::result::Result<(usize, &'a str), String> {
        let (number, line) = self.next(expected)?;
        let line = line.trim_end();
        match line.strip_prefix(key).and_then(|rest| rest.strip_prefix(' ')) {
            Some(rest) => Ok((number, rest)),
            None => Err(format!("line {number}: expected `{expected}`, found `{line}`")),
        }
    }
}

/// Parses the text of a calibration file; the error is the reason, naming the line.
fn parse(text: &str) -> std::result::Result<Calibration, String> {
    // Some editors on Windows start UTF-8 files with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = Lines {
        lines: text.lines().enumerate(),
        last: 0,
    };
    let (_, header) = lines.next(HEADER)?;
    let header = header.trim_end();
    if header != HEADER {
        return Err(
            match header.strip_prefix(FORMAT_NAME).and_then(|r| r.strip_prefix(' ')) {
                Some(version) => {
                    format!("line 1: unsupported format version `{version}`; this build reads version 1")
                }
                None => format!(
                    "line 1: expected the header `{HEADER}`, found `{header}`; this is not a calibration file"
                ),
            },
        );
    }

    let mut entries: Vec<CalibrationEntry> = Vec::new();
    let mut names = HashSet::new();
    let count = loop {
        let (number, line) = lines.next("property <name>` or `end <count>")?;
        if let Some(count) = line.trim_end().strip_prefix("end ") {
            break parse_count(number, count, "end <count>")?;
        }
        let Some(name) = line.strip_prefix("property ") else {
            return Err(format!(
                "line {number}: expected `property <name>` or `end <count>`, found `{line}`"
            ));
        };
        check_name(name).map_err(|e| format!("line {number}: {e}"))?;
        if !names.insert(name) {
            return Err(format!(
                "line {number}: duplicate property '{name}'; each property appears once"
            ));
        }
        entries.push(parse_entry(&mut lines, name)?);
    };

    if count != entries.len() {
        return Err(format!(
            "line {}: the end line counts {count} properties, but the file has {}",
            lines.last,
            entries.len()
        ));
    }
    if let Some((index, line)) = lines.lines.find(|(_, line)| !line.trim().is_empty()) {
        return Err(format!(
            "line {}: unexpected content `{line}` after the end line",
            index + 1
        ));
    }
    Ok(Calibration { entries })
}

/// Parses the `rule`, `thresholds` and `samples` lines of property `name`.
fn parse_entry(lines: &mut Lines<'_>, name: &str) -> std::result::Result<CalibrationEntry, String> {
    const RULE: &str = "rule quantile <p_pass> <p_warn>` or `rule fixed";
    let (rule_line, rule_text) = lines.field("rule", RULE)?;
    let quantile_levels = match rule_text.split(' ').collect::<Vec<_>>().as_slice() {
        ["fixed"] => None,
        ["quantile", p_pass, p_warn] => Some((
            parse_float(rule_line, p_pass, "p_pass")?,
            parse_float(rule_line, p_warn, "p_warn")?,
        )),
        _ => {
            return Err(format!(
                "line {rule_line}: expected `{RULE}`, found `rule {rule_text}`"
            ));
        }
    };

    const THRESHOLDS: &str = "thresholds <pass> <warn>";
    let (line, text) = lines.field("thresholds", THRESHOLDS)?;
    let [pass, warn] = text.split(' ').collect::<Vec<_>>()[..] else {
        return Err(format!(
            "line {line}: expected `{THRESHOLDS}`, found `thresholds {text}`"
        ));
    };
    let pass = parse_float(line, pass, "the pass threshold")?;
    let warn = parse_float(line, warn, "the warning threshold")?;
    let thresholds = Thresholds::new(pass, warn).map_err(|e| format!("line {line}: {e}"))?;

    let (line, samples) = lines.field("samples", "samples <count>")?;
    let samples = parse_count(line, samples, "samples <count>")?;

    let rule = match quantile_levels {
        None => Rule::Fixed(thresholds),
        Some((p_pass, p_warn)) => Rule::Quantile { p_pass, p_warn },
    };
    let entry = CalibrationEntry {
        name: name.to_owned(),
        rule,
        thresholds,
        samples,
    };
    check_entry(&entry).map_err(|reason| format!("property '{name}' (line {rule_line}): {reason}"))?;
    Ok(entry)
}

/// Parses a number written by `save`.
fn parse_float(line: usize, text: &str, field: &str) -> std::result::Result<f64, String> {
    text.parse::<f64>()
        .map_err(|_| format!("line {line}: {field} `{text}` is not a number"))
}

/// Parses a non-negative integer.
fn parse_count(line: usize, text: &str, expected: &str) -> std::result::Result<usize, String> {
    text.parse::<usize>().map_err(|_| {
        format!("line {line}: expected `{expected}` with a non-negative integer, found `{text}`")
    })
}
