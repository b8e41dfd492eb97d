use faer::{Mat, MatMut, MatRef};
use optlayer_core::validate::{check_finite, check_nonempty};
use optlayer_core::{Error, Parameterized, Prox, Result, Scalar};

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
    /// When `len` is zero.
    pub fn from_data(offset: usize, len: usize) -> Result<Self> {
        if len == 0 {
            return Err(Error::Empty {
                what: "data rows of the point".into(),
                fix: "pass len of at least 1".into(),
            });
        }
        Ok(Self {
            source: PointSource::Data { offset, len },
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

    /// Returns 0 when `max_i |x_i − c_i| ≤ √ε (1 + max_i |c_i|)`, and infinity otherwise.
    fn value(&self, x: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        let point = |row: usize| match &self.source {
            PointSource::Data { offset, .. } => data[(offset + row, col)],
            PointSource::Fixed(point) => point[row],
        };
        let mut distance = T::zero();
        let mut scale = T::zero();
        for row in 0..x.nrows() {
            let c = point(row);
            let gap = (x[(row, col)] - c).abs();
            distance = if gap.is_nan() { gap } else { distance.max(gap) };
            scale = scale.max(c.abs());
        }
        let inside = distance <= T::epsilon().sqrt() * (T::one() + scale);
        Some(if inside { T::zero() } else { T::infinity() })
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
