use faer::{Mat, MatMut, MatRef};
use optlayer_core::validate::{check_finite, check_nonempty};
use optlayer_core::{Entrywise, Error, Parameterized, Prox, Result, Scalar};

use super::projection::{indicator_value, membership_tolerance};

/// Source of the point of an [`IndicatorPoint`].
#[derive(Clone, Debug, PartialEq)]
pub enum PointSource<T> {
    /// Rows `offset..offset + len` of each sample's data column; the
    /// equality constraint `Kx = d` of an inverse problem.
    Data {
        /// First data row.
        offset: usize,
        /// Number of rows.
        len: usize,
    },
    /// One fixed point for every sample.
    Fixed(Vec<T>),
}

impl<T> PointSource<T> {
    /// Creates the source of rows `offset..offset + len` of each sample's
    /// data; `what` names the point in errors, e.g. "the point".
    ///
    /// # Errors
    /// [`Error::Empty`] when `len` is zero, and [`Error::InvalidValue`] when
    /// `offset + len` exceeds `usize::MAX`.
    pub(crate) fn data_rows(what: &str, offset: usize, len: usize) -> Result<Self> {
        if len == 0 {
            return Err(Error::Empty {
                what: format!("data rows of {what}"),
                fix: "pass len of at least 1".into(),
            });
        }
        if offset.checked_add(len).is_none() {
            return Err(Error::InvalidValue {
                name: format!("data rows of {what}"),
                value: format!("offset {offset}, len {len}"),
                requirement: format!(
                    "the end row offset + len must not exceed {}; pass the index of the first data row to read",
                    usize::MAX
                ),
            });
        }
        Ok(Self::Data { offset, len })
    }
}

/// The indicator of a single point `{c}`: zero at `c`, infinite elsewhere.
/// Its prox is the constant map `v ↦ c` for every `γ > 0`, and its
/// vector-Jacobian product is zero.
#[derive(Clone, Debug, PartialEq)]
pub struct IndicatorPoint<T: Scalar> {
    source: PointSource<T>,
}

impl<T: Scalar> IndicatorPoint<T> {
    /// Creates the indicator of rows `offset..offset + len` of each sample's data.
    ///
    /// # Errors
    /// When `len` is zero or `offset + len` exceeds `usize::MAX`.
    pub fn from_data(offset: usize, len: usize) -> Result<Self> {
        Ok(Self {
            source: PointSource::data_rows("the point", offset, len)?,
        })
    }

    /// Creates the indicator of `point`, the same for every sample.
    ///
    /// # Errors
    /// When `point` is empty or has a non-finite entry.
    pub fn fixed(point: Vec<T>) -> Result<Self> {
        let column = Mat::from_fn(point.len(), 1, |i, _| point[i]);
        check_nonempty("point (transposed)", column.as_ref().transpose())?;
        check_finite("point", column.as_ref())?;
        Ok(Self {
            source: PointSource::Fixed(point),
        })
    }

    /// Returns the source of the point.
    pub fn source(&self) -> &PointSource<T> {
        &self.source
    }
}

impl<T: Scalar> Parameterized<T> for IndicatorPoint<T> {}

impl<T: Scalar> Prox<T> for IndicatorPoint<T> {
    fn is_indicator(&self) -> bool {
        true
    }

    fn dim(&self) -> Option<usize> {
        match &self.source {
            PointSource::Data { len, .. } => Some(*len),
            PointSource::Fixed(point) => Some(point.len()),
        }
    }

    fn data_rows_needed(&self) -> usize {
        match &self.source {
            PointSource::Data { offset, len } => offset + len,
            PointSource::Fixed(_) => 0,
        }
    }

    /// Returns zero when every entry satisfies `|x_i − c_i| ≤ √ε (1 + |c_i|)`,
    /// and infinity otherwise or when `x` has a non-finite entry.
    fn value(&self, x: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        let point = |row: usize| match &self.source {
            PointSource::Data { offset, .. } => data[(offset + row, col)],
            PointSource::Fixed(point) => point[row],
        };
        let inside = (0..x.nrows()).all(|row| {
            let (entry, target) = (x[(row, col)], point(row));
            entry.is_finite() && (entry - target).abs() <= membership_tolerance(target.abs())
        });
        Some(indicator_value(inside))
    }

    fn entrywise(&self, _gamma: T) -> Option<Entrywise<T>> {
        match &self.source {
            PointSource::Data { offset, .. } => Some(Entrywise::DataRows { offset: *offset }),
            PointSource::Fixed(_) => None,
        }
    }

    fn prox(&self, mut out: MatMut<'_, T>, _v: MatRef<'_, T>, _gamma: T, data: MatRef<'_, T>) {
        match &self.source {
            PointSource::Data { offset, len } => out.copy_from(data.subrows(*offset, *len)),
            PointSource::Fixed(point) => {
                for col in 0..out.ncols() {
                    for (row, &value) in point.iter().enumerate() {
                        out[(row, col)] = value;
                    }
                }
            }
        }
    }

    fn prox_vjp(
        &self,
        mut v_bar: MatMut<'_, T>,
        _v: MatRef<'_, T>,
        _gamma: T,
        _data: MatRef<'_, T>,
        _cotangent: MatRef<'_, T>,
    ) {
        v_bar.fill(T::zero());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(values: &[f64]) -> Mat<f64> {
        Mat::from_fn(values.len(), 1, |i, _| values[i])
    }

    #[test]
    fn fixed_point_value() {
        let point = IndicatorPoint::fixed(vec![1.0, -2e10]).unwrap();
        let no_data = Mat::<f64>::zeros(0, 1);
        let value = |x: &[f64]| point.value(column(x).as_ref(), no_data.as_ref(), 0);
        assert_eq!(value(&[1.0, -2e10]), Some(0.0));
        assert_eq!(value(&[1.0 + 1e-12, -2e10 + 1e-3]), Some(0.0));
        assert_eq!(value(&[1.0 + 1e-6, -2e10]), Some(f64::INFINITY));
        assert_eq!(value(&[1.0, -2e10 + 1e3]), Some(f64::INFINITY));
        assert_eq!(value(&[f64::NAN, -2e10]), Some(f64::INFINITY));
    }

    #[test]
    fn data_point_value_reads_its_rows() {
        let point = IndicatorPoint::from_data(1, 2).unwrap();
        let data = Mat::from_fn(3, 2, |i, j| [[9.0, 1.0, 2.0], [8.0, 3.0, 4.0]][j][i]);
        let x = Mat::from_fn(2, 2, |i, j| [[1.0, 2.0], [3.0, 4.5]][j][i]);
        assert_eq!(point.value(x.as_ref(), data.as_ref(), 0), Some(0.0));
        assert_eq!(point.value(x.as_ref(), data.as_ref(), 1), Some(f64::INFINITY));
        let mut out = Mat::zeros(2, 2);
        point.prox(out.as_mut(), x.as_ref(), 1.0, data.as_ref());
        assert_eq!(point.value(out.as_ref(), data.as_ref(), 1), Some(0.0));
    }
}
