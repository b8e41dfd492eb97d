use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Mat, MatMut, MatRef};
use optlayer_core::validate::{check_finite, check_nonempty};
use optlayer_core::{Error, ParamInfo, Parameterized, Prox, Result, Scalar};

use super::scratch::ScratchPool;
use super::{data_cols, describe};
use crate::PointSource;

/// The translated function `g(x) = f(x − b)`, whose prox is
/// `prox_{γg}(v) = b + prox_{γf}(v − b)`.
///
/// The shift `b` is one fixed vector or rows of each sample's data column,
/// as for [`IndicatorPoint`](crate::IndicatorPoint); with data rows,
/// `g(x) = ‖x − d‖₁` is a robust data-fit term, for example. The Jacobian is
/// the inner map's at `v − b`, with the inner map's elements at kinks.
/// A translation keeps separability, `Σ_i f_i(x_i − b_i)`, and turns the
/// indicator of `C` into that of `C + b`, so both flags are the inner map's.
///
/// The inner map needs `v − b` as its input, and the `Prox` trait passes no
/// scratch memory. The map therefore keeps buffers of at most `n x 32`
/// entries between calls, one per thread that calls it at the same time,
/// and processes batches 32 columns at a time. Only the first call of each
/// concurrent caller allocates.
pub struct Translated<T: Scalar> {
    inner: Box<dyn Prox<T>>,
    shift: PointSource<T>,
    pool: ScratchPool<T>,
}

impl<T: Scalar> std::fmt::Debug for Translated<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Translated")
            .field("shift", &self.shift)
            .field("inner", &describe(&*self.inner))
            .finish()
    }
}

impl<T: Scalar> Translated<T> {
    /// Creates `g(x) = f(x − shift)` with `f` given by `inner`.
    ///
    /// # Errors
    /// When `shift` is empty or has a non-finite entry, or when `inner` is
    /// defined on another dimension than `shift.len()`.
    pub fn new(inner: impl Prox<T> + 'static, shift: Vec<T>) -> Result<Self> {
        Self::from_boxed(Box::new(inner), shift)
    }

    /// Creates `g(x) = f(x − shift)` from a boxed inner map.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_boxed(inner: Box<dyn Prox<T>>, shift: Vec<T>) -> Result<Self> {
        let column = MatRef::from_column_major_slice(&shift, shift.len(), 1);
        check_nonempty("translation shift (transposed)", column.transpose())?;
        check_finite("translation shift", column)?;
        check_inner_dim(&*inner, shift.len())?;
        Ok(Self {
            inner,
            shift: PointSource::Fixed(shift),
            pool: ScratchPool::new(),
        })
    }

    /// Creates `g(x) = f(x − d)`, where `d` is rows `offset..offset + len`
    /// of each sample's data column.
    ///
    /// # Errors
    /// When `len` is zero, `offset + len` exceeds `usize::MAX`, or `inner`
    /// is defined on another dimension than `len`.
    pub fn by_data(inner: impl Prox<T> + 'static, offset: usize, len: usize) -> Result<Self> {
        Self::by_data_boxed(Box::new(inner), offset, len)
    }

    /// Creates `g(x) = f(x − d)` with data rows as the shift, from a boxed
    /// inner map.
    ///
    /// # Errors
    /// As [`by_data`](Self::by_data).
    pub fn by_data_boxed(inner: Box<dyn Prox<T>>, offset: usize, len: usize) -> Result<Self> {
        let shift = PointSource::data_rows("the translation shift", offset, len)?;
        check_inner_dim(&*inner, len)?;
        Ok(Self {
            inner,
            shift,
            pool: ScratchPool::new(),
        })
    }

    /// Returns the source of the shift `b`.
    pub fn shift(&self) -> &PointSource<T> {
        &self.shift
    }

    /// Returns the inner map `f`.
    pub fn inner(&self) -> &dyn Prox<T> {
        &*self.inner
    }

    fn shift_len(&self) -> usize {
        match &self.shift {
            PointSource::Fixed(b) => b.len(),
            PointSource::Data { len, .. } => *len,
        }
    }

    /// Returns entry `row` of the shift of sample `col` (a column of `data`).
    #[inline(always)]
    fn shift_at(&self, row: usize, col: usize, data: MatRef<'_, T>) -> T {
        match &self.shift {
            PointSource::Fixed(b) => b[row],
            PointSource::Data { offset, .. } => data[(offset + row, col)],
        }
    }

    /// Writes `out = v − b`.
    fn write_shifted(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, data: MatRef<'_, T>) {
        for col in 0..v.ncols() {
            for row in 0..v.nrows() {
                out[(row, col)] = v[(row, col)] - self.shift_at(row, col, data);
            }
        }
    }

    /// Runs `f(start, cols, v − b, data)` for each block of at most
    /// `CHUNK_COLS` columns of `v`, with the block's data columns.
    fn for_each_shifted_chunk(
        &self,
        v: MatRef<'_, T>,
        data: MatRef<'_, T>,
        mut f: impl FnMut(usize, usize, MatRef<'_, T>, MatRef<'_, T>),
    ) {
        let (rows, batch) = v.shape();
        self.pool.for_each_chunk(rows, batch, 1, |start, cols, buffer| {
            let chunk_data = data_cols(data, batch, start, cols);
            let mut shifted = MatMut::from_column_major_slice_mut(buffer, rows, cols);
            self.write_shifted(shifted.rb_mut(), v.subcols(start, cols), chunk_data);
            f(start, cols, shifted.rb(), chunk_data);
        });
    }
}

fn check_inner_dim<T: Scalar>(inner: &dyn Prox<T>, len: usize) -> Result<()> {
    match inner.dim() {
        Some(dim) if dim != len => Err(Error::ShapeMismatch {
            what: "inner prox of the translation".into(),
            expected: format!("dimension {len} (the length of the shift)"),
            found: format!("dimension {dim}"),
        }),
        _ => Ok(()),
    }
}

impl<T: Scalar> Parameterized<T> for Translated<T> {
    fn param_count(&self) -> usize {
        self.inner.param_count()
    }

    fn param_info(&self, index: usize) -> ParamInfo {
        self.inner.param_info(index)
    }

    fn param(&self, index: usize) -> MatRef<'_, T> {
        self.inner.param(index)
    }

    fn param_mut(&mut self, index: usize) -> MatMut<'_, T> {
        self.inner.param_mut(index)
    }

    fn after_param_update(&mut self) -> Result<()> {
        self.inner.after_param_update()
    }

    fn warm_start_state(&self) -> Vec<Mat<T>> {
        self.inner.warm_start_state()
    }

    fn set_warm_start_state(&mut self, state: &[Mat<T>]) -> Result<()> {
        self.inner.set_warm_start_state(state)
    }
}

impl<T: Scalar> Prox<T> for Translated<T> {
    fn dim(&self) -> Option<usize> {
        Some(self.shift_len())
    }

    fn is_separable(&self) -> bool {
        self.inner.is_separable()
    }

    fn is_indicator(&self) -> bool {
        self.inner.is_indicator()
    }

    fn data_rows_needed(&self) -> usize {
        let shift_rows = match &self.shift {
            PointSource::Fixed(_) => 0,
            PointSource::Data { offset, len } => offset + len,
        };
        shift_rows.max(self.inner.data_rows_needed())
    }

    /// Returns `f(x − b)`, or `None` when `f` has no value.
    fn value(&self, x: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        let sample_data = data_cols(data, x.ncols(), col, 1);
        let mut shifted = Mat::zeros(x.nrows(), 1);
        self.write_shifted(shifted.as_mut(), x.subcols(col, 1), sample_data);
        self.inner.value(shifted.as_ref(), sample_data, 0)
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, data: MatRef<'_, T>) {
        self.for_each_shifted_chunk(v, data, |start, cols, shifted, chunk_data| {
            let mut out = out.rb_mut().subcols_mut(start, cols);
            self.inner.prox(out.rb_mut(), shifted, gamma, chunk_data);
            for col in 0..cols {
                for row in 0..out.nrows() {
                    out[(row, col)] += self.shift_at(row, col, chunk_data);
                }
            }
        });
    }

    fn prox_vjp(
        &self,
        mut v_bar: MatMut<'_, T>,
        v: MatRef<'_, T>,
        gamma: T,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        self.for_each_shifted_chunk(v, data, |start, cols, shifted, chunk_data| {
            self.inner.prox_vjp(
                v_bar.rb_mut().subcols_mut(start, cols),
                shifted,
                gamma,
                chunk_data,
                cotangent.subcols(start, cols),
            );
        });
    }

    fn accumulate_grad(
        &self,
        grads: &mut [Mat<T>],
        v: MatRef<'_, T>,
        gamma: T,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        if self.inner.param_count() == 0 {
            return;
        }
        self.for_each_shifted_chunk(v, data, |start, cols, shifted, chunk_data| {
            self.inner
                .accumulate_grad(grads, shifted, gamma, chunk_data, cotangent.subcols(start, cols));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::scratch::CHUNK_COLS;
    use super::*;
    use crate::{L1Norm, Simplex, SquaredL2};
    use faer::mat;

    #[test]
    fn translated_l1_known_values() {
        // ‖x − b‖₁ with b = [1, −2], γ = 0.5: v − b = [2.5, 1.75] shrinks to
        // [2, 1.25], plus b gives [3, −0.75].
        let g = Translated::new(L1Norm::new(1.0).unwrap(), vec![1.0, -2.0]).unwrap();
        let v = mat![[3.5], [-0.25]];
        let mut out = Mat::zeros(2, 1);
        g.prox(out.as_mut(), v.as_ref(), 0.5, Mat::zeros(0, 1).as_ref());
        assert_eq!(out, mat![[3.0], [-0.75]]);
        assert_eq!(
            g.value(out.as_ref(), Mat::zeros(0, 1).as_ref(), 0),
            Some(2.0 + 1.25)
        );
    }

    #[test]
    fn translated_by_data_reads_sample_columns() {
        // ½‖x − d‖² with d in data rows 1..3: prox = (v + γ d)/(1 + γ).
        let g = Translated::by_data(SquaredL2::new(1.0).unwrap(), 1, 2).unwrap();
        assert_eq!(g.data_rows_needed(), 3);
        assert_eq!(Prox::<f64>::dim(&g), Some(2));
        let data = mat![[9.0, 9.0], [1.0, -1.0], [2.0, 4.0]];
        let v = mat![[3.0, 1.0], [0.0, 2.0]];
        let mut out = Mat::zeros(2, 2);
        g.prox(out.as_mut(), v.as_ref(), 1.0, data.as_ref());
        assert_eq!(out, mat![[2.0, 0.0], [1.0, 3.0]]);
    }

    #[test]
    fn translated_simplex_projects_onto_shifted_set() {
        // The simplex shifted by b = [1, 1]: v = [2.5, 1.0] − b = [1.5, 0]
        // projects to [1, 0], so the result is [2, 1].
        let g = Translated::new(Simplex, vec![1.0, 1.0]).unwrap();
        let v = mat![[2.5], [1.0]];
        let mut out = Mat::zeros(2, 1);
        g.prox(out.as_mut(), v.as_ref(), 1.0, Mat::zeros(0, 1).as_ref());
        assert_eq!(out, mat![[2.0], [1.0]]);
    }

    #[test]
    fn wide_batch_spans_several_chunks() {
        let g = Translated::new(L1Norm::new(0.5).unwrap(), vec![1.0, -1.0, 0.0]).unwrap();
        let batch = 2 * CHUNK_COLS + 5;
        let v = Mat::from_fn(3, batch, |i, j| (i as f64 - 1.0) * (j as f64 * 0.1 - 3.0));
        let mut out = Mat::zeros(3, batch);
        g.prox(out.as_mut(), v.as_ref(), 1.0, Mat::zeros(0, batch).as_ref());
        let shrink = |x: f64| x.signum() * (x.abs() - 0.5).max(0.0);
        for j in 0..batch {
            for (i, b) in [1.0, -1.0, 0.0].into_iter().enumerate() {
                assert_eq!(out[(i, j)], b + shrink(v[(i, j)] - b), "entry ({i}, {j})");
            }
        }
    }

    #[test]
    fn invalid_shift_rejected() {
        assert!(matches!(
            Translated::new(L1Norm::new(1.0).unwrap(), Vec::<f64>::new()),
            Err(Error::Empty { .. })
        ));
        assert!(matches!(
            Translated::new(L1Norm::new(1.0).unwrap(), vec![0.0, f64::NAN]),
            Err(Error::NonFiniteInput { .. })
        ));
        let inner = L1Norm::with_weights(vec![1.0, 1.0, 1.0]).unwrap();
        let err = Translated::new(inner, vec![0.0, 1.0]).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
        assert!(matches!(
            Translated::by_data(L1Norm::<f64>::new(1.0).unwrap(), 0, 0),
            Err(Error::Empty { .. })
        ));
    }
}
