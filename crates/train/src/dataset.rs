//! Pairs `(d, x*)` of problem data and target solutions.

use std::path::Path;

use faer::prelude::ReborrowMut;
use faer::{Mat, MatMut, MatRef};
use optlayer_core::validate::{check_finite, check_nonempty};
use optlayer_core::{Error, Result, Scalar};

use crate::npy;

/// A dataset of pairs `(d, x*)`, stored as two matrices whose columns are samples.
#[derive(Clone, Debug)]
pub struct Dataset<T: Scalar> {
    data: Mat<T>,
    targets: Mat<T>,
}

impl<T: Scalar> Dataset<T> {
    /// Creates a dataset from `data` (`data_dim x N`) and `targets` (`primal_dim x N`).
    ///
    /// # Errors
    /// When `N` is zero, the column counts differ, or an entry is not finite.
    pub fn new(data: Mat<T>, targets: Mat<T>) -> Result<Self> {
        check_nonempty("dataset", data.as_ref())?;
        if data.ncols() != targets.ncols() {
            return Err(Error::ShapeMismatch {
                what: "dataset targets".into(),
                expected: format!("{} samples (the number of data columns)", data.ncols()),
                found: format!("{} samples", targets.ncols()),
            });
        }
        check_finite("dataset data", data.as_ref())?;
        check_finite("dataset targets", targets.as_ref())?;
        Ok(Self { data, targets })
    }

    /// Returns the number of samples.
    pub fn len(&self) -> usize {
        self.data.ncols()
    }

    /// Returns whether the dataset has no samples; always false, since
    /// [`new`](Self::new) rejects empty datasets.
    pub fn is_empty(&self) -> bool {
        self.data.ncols() == 0
    }

    /// Returns the data, `data_dim x N`.
    pub fn data(&self) -> MatRef<'_, T> {
        self.data.as_ref()
    }

    /// Returns the targets, `primal_dim x N`.
    pub fn targets(&self) -> MatRef<'_, T> {
        self.targets.as_ref()
    }

    /// Returns the dataset restricted to the columns `start..start + len`.
    ///
    /// # Errors
    /// When the range is empty or out of bounds.
    pub fn slice(&self, start: usize, len: usize) -> Result<Self> {
        if len == 0 || start.checked_add(len).is_none_or(|end| end > self.len()) {
            return Err(Error::InvalidParameter {
                name: "sample range end".into(),
                value: start as f64 + len as f64,
                requirement: format!("must select 1 to {} samples starting at {start}", self.len()),
            });
        }
        Ok(Self {
            data: self.data.as_ref().subcols(start, len).to_owned(),
            targets: self.targets.as_ref().subcols(start, len).to_owned(),
        })
    }

    /// Copies the samples `indices` into the leading columns of `data` and `targets`.
    ///
    /// # Panics
    /// If an index is out of range or the buffers have too few columns or the
    /// wrong row counts.
    pub fn gather(&self, indices: &[usize], mut data: MatMut<'_, T>, mut targets: MatMut<'_, T>) {
        for (j, &index) in indices.iter().enumerate() {
            data.rb_mut().col_mut(j).copy_from(self.data.col(index));
            targets.rb_mut().col_mut(j).copy_from(self.targets.col(index));
        }
    }

    /// Writes `{prefix}_d.npy` and `{prefix}_x.npy` into `dir`, one sample per row.
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn save(&self, dir: &Path, prefix: &str) -> Result<()> {
        npy::write_samples(&dir.join(format!("{prefix}_d.npy")), self.data.as_ref())?;
        npy::write_samples(&dir.join(format!("{prefix}_x.npy")), self.targets.as_ref())
    }

    /// Reads a dataset written by [`save`](Self::save) (or by numpy, one
    /// sample per row) and checks the per-sample dimensions.
    ///
    /// # Errors
    /// When a file is missing, malformed, of the wrong shape, or the two files
    /// disagree on the number of samples.
    pub fn load(dir: &Path, prefix: &str, data_dim: usize, primal_dim: usize) -> Result<Self> {
        let data_path = dir.join(format!("{prefix}_d.npy"));
        let targets_path = dir.join(format!("{prefix}_x.npy"));
        let data = npy::read_samples_with_dim(&data_path, data_dim)?;
        let targets = npy::read_samples_with_dim(&targets_path, primal_dim)?;
        for (path, samples) in [(&data_path, &data), (&targets_path, &targets)] {
            check_sample_file(path, samples.as_ref())?;
        }
        if data.ncols() != targets.ncols() {
            return Err(Error::InvalidFile {
                path: targets_path,
                reason: format!(
                    "it has {} samples (rows) but {} has {}; both files must have one row per sample",
                    targets.ncols(),
                    data_path.display(),
                    data.ncols()
                ),
            });
        }
        Self::new(data, targets)
    }
}

/// Checks a samples file read into `samples` (one sample per column) for
/// emptiness and non-finite entries, naming positions as numpy does: row =
/// sample, column = entry.
fn check_sample_file<T: Scalar>(path: &Path, samples: MatRef<'_, T>) -> Result<()> {
    if samples.ncols() == 0 {
        return Err(Error::InvalidFile {
            path: path.to_path_buf(),
            reason: "it contains no samples (0 rows); a dataset needs at least one".into(),
        });
    }
    if let Some((entry, sample, value)) = optlayer_core::columns::first_non_finite(samples) {
        return Err(Error::InvalidFile {
            path: path.to_path_buf(),
            reason: format!(
                "row {sample}, column {entry} is {value}; remove or replace NaN and infinite values"
            ),
        });
    }
    Ok(())
}
