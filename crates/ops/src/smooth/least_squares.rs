use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::linalg::{temp_mat_scratch, temp_mat_zeroed};
use faer::mat::AsMatMut;
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use optlayer_core::warm_start::{
    check_warm_start_count, decode_estimate, decode_warm_start_vector, encode_estimate,
    encode_warm_start_vector, set_parts_warm_start_state,
};
use optlayer_core::{
    Error, Operator, ParamInfo, Parameterized, Result, Scalar, Smooth, columns, power_iteration,
    power_iteration_from,
};

/// Power-iteration settings for `‖A‖₂`. A cold start runs up to this many
/// steps; warm starts after a parameter update usually stop after a few.
const NORM_MAX_ITERS: usize = 2000;
const NORM_REL_TOL: f64 = 1e-10;

/// The least-squares term `f(x; d) = ½‖A x − d‖²`.
///
/// `d` is read from rows `offset..offset + m` of the data batch, where `m`
/// is the number of rows of `A` and the offset is 0 unless set with
/// [`with_data_offset`](Self::with_data_offset). The derivatives are
///
/// ```text
/// ∇f(x)   = Aᵀ(A x − d)
/// ∇²f(x)v = AᵀA v
/// L       = ‖A‖₂²
/// ```
///
/// `A` may be learnable, such as a
/// [`LearnableDense`](crate::LearnableDense): its parameters are this term's
/// parameters, and [`Smooth::accumulate_grad`] adds
/// `∂⟨c, Aᵀ(Ax − d)⟩/∂A = (Ax − d) cᵀ + (A c) xᵀ` (for a dense `A`) through
/// the operator's own gradient methods.
///
/// `L` is estimated by power iteration on `AᵀA` at construction and after
/// every parameter update, warm-started from the previous singular vector.
/// The estimate is a lower bound of `‖A‖₂²`.
pub struct LeastSquares<T: Scalar> {
    operator: Box<dyn Operator<T>>,
    data_offset: usize,
    lipschitz: T,
    power_vector: Option<Mat<T>>,
}

impl<T: Scalar> std::fmt::Debug for LeastSquares<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeastSquares")
            .field("operator_shape", &(self.operator.nrows(), self.operator.ncols()))
            .field("operator_params", &self.operator.param_count())
            .field("data_offset", &self.data_offset)
            .field("lipschitz", &self.lipschitz)
            .finish()
    }
}

impl<T: Scalar> LeastSquares<T> {
    /// Creates `f(x; d) = ½‖A x − d‖²` with `A = operator`, reading `d` from
    /// the first rows of the data batch.
    ///
    /// # Errors
    /// When the operator has no rows or no columns, or when the power
    /// iteration for `‖A‖₂` returns a non-finite value.
    pub fn new(operator: impl Operator<T> + 'static) -> Result<Self> {
        Self::from_boxed(Box::new(operator))
    }

    /// Creates the term from an operator that is already boxed; see [`new`](Self::new).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_boxed(operator: Box<dyn Operator<T>>) -> Result<Self> {
        if operator.nrows() == 0 || operator.ncols() == 0 {
            return Err(Error::Empty {
                what: format!(
                    "operator A of the least-squares term ({} x {})",
                    operator.nrows(),
                    operator.ncols()
                ),
                fix: "pass an operator with at least one row and one column".into(),
            });
        }
        let mut term = Self {
            operator,
            data_offset: 0,
            lipschitz: T::zero(),
            power_vector: None,
        };
        term.refresh_lipschitz()?;
        Ok(term)
    }

    /// Reads `d` from rows `offset..offset + m` of the data batch, so that
    /// several data-dependent terms can share one batch.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] when `offset + m` exceeds `usize::MAX`.
    pub fn with_data_offset(mut self, offset: usize) -> Result<Self> {
        let rows = self.operator.nrows();
        if offset.checked_add(rows).is_none() {
            return Err(Error::InvalidValue {
                name: "data offset of the least-squares term".into(),
                value: offset.to_string(),
                requirement: format!(
                    "the end row offset + {rows} (the rows of A) must not exceed {}; \
                     pass the index of the first data row of d",
                    usize::MAX
                ),
            });
        }
        self.data_offset = offset;
        Ok(self)
    }

    /// Returns the operator `A`.
    pub fn operator(&self) -> &dyn Operator<T> {
        &*self.operator
    }

    /// Returns the first data row of `d`.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// Re-estimates `L = ‖A‖₂²` by power iteration, warm-started when an
    /// earlier estimate exists.
    fn refresh_lipschitz(&mut self) -> Result<()> {
        let (norm, vector) = match self.power_vector.take() {
            Some(start) => power_iteration_from(&*self.operator, start, NORM_MAX_ITERS, NORM_REL_TOL),
            None => power_iteration(&*self.operator, NORM_MAX_ITERS, NORM_REL_TOL, 0),
        };
        let lipschitz = norm * norm;
        if !lipschitz.is_finite() {
            return Err(Error::Numerical {
                what: "estimate of ||A||_2^2 for the least-squares term".into(),
                reason: format!(
                    "power iteration returned ||A||_2 = {norm}; check the operator for non-finite or huge entries"
                ),
            });
        }
        self.lipschitz = lipschitz;
        self.power_vector = Some(vector);
        Ok(())
    }

    /// Returns the rows of the data batch that contain `d`.
    fn target<'a>(&self, data: MatRef<'a, T>) -> MatRef<'a, T> {
        data.subrows(self.data_offset, self.operator.nrows())
    }
}

impl<T: Scalar> Parameterized<T> for LeastSquares<T> {
    fn param_count(&self) -> usize {
        self.operator.param_count()
    }

    fn param_info(&self, index: usize) -> ParamInfo {
        self.operator.param_info(index)
    }

    fn param(&self, index: usize) -> MatRef<'_, T> {
        self.operator.param(index)
    }

    fn param_mut(&mut self, index: usize) -> MatMut<'_, T> {
        self.operator.param_mut(index)
    }

    fn after_param_update(&mut self) -> Result<()> {
        self.operator.after_param_update()?;
        self.refresh_lipschitz()
    }

    /// Returns the operator's state, then the power-iteration vector and
    /// the estimate `L = ‖A‖₂²` (`1 x 1`).
    fn warm_start_state(&self) -> Vec<Mat<T>> {
        let mut state = self.operator.warm_start_state();
        state.push(encode_warm_start_vector(self.power_vector.as_ref()));
        state.push(encode_estimate(self.lipschitz));
        state
    }

    fn set_warm_start_state(&mut self, state: &[Mat<T>]) -> Result<()> {
        let previous = [self.operator.warm_start_state()];
        let operator_len = previous[0].len();
        check_warm_start_count("the least-squares term", state, operator_len + 2)?;
        let vector = decode_warm_start_vector(
            "power-iteration vector of the least-squares term",
            &state[operator_len],
            self.operator.ncols(),
        )?;
        let lipschitz = decode_estimate(
            "estimate of ||A||_2^2 of the least-squares term",
            &state[operator_len + 1],
        )?;
        set_parts_warm_start_state(
            "the operator of the least-squares term",
            &previous,
            &state[..operator_len],
            |_, part| self.operator.set_warm_start_state(part),
        )?;
        self.power_vector = vector;
        self.lipschitz = lipschitz;
        Ok(())
    }
}

impl<T: Scalar> Smooth<T> for LeastSquares<T> {
    fn dim(&self) -> usize {
        self.operator.ncols()
    }

    fn data_rows_needed(&self) -> usize {
        self.data_offset + self.operator.nrows()
    }

    /// Returns `½‖A x − d‖²` for one column, with the norm computed with
    /// scaling.
    ///
    /// # Panics
    /// If `data` has fewer than [`data_rows_needed`](Smooth::data_rows_needed) rows.
    fn value(&self, x: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> T {
        let mut residual = Mat::<T>::zeros(self.operator.nrows(), 1);
        let mut buffer = MemBuffer::new(self.operator.apply_scratch(1, Par::Seq));
        self.operator.apply(
            residual.as_mut(),
            Accum::Replace,
            T::one(),
            x.subcols(col, 1),
            Par::Seq,
            MemStack::new(&mut buffer),
        );
        let d = self.target(data).subcols(col, 1);
        faer::zip!(residual.as_mut(), d).for_each(|faer::unzip!(r, d)| *r -= *d);
        let norm = columns::col_norm2(residual.as_ref(), 0);
        T::lit(0.5) * norm * norm
    }

    fn scratch(&self, batch: usize, par: Par) -> StackReq {
        // Two temporaries: `accumulate_grad` keeps `Ax − d` and `A c` at once.
        let temp = temp_mat_scratch::<T>(self.operator.nrows(), batch);
        StackReq::all_of(&[temp, temp, self.operator.apply_scratch(batch, par)])
    }

    /// Writes `out = Aᵀ(A x − d)`.
    ///
    /// # Panics
    /// If `data` has fewer than [`data_rows_needed`](Smooth::data_rows_needed) rows.
    fn gradient(
        &self,
        out: MatMut<'_, T>,
        x: MatRef<'_, T>,
        data: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        let (mut residual, stack) = temp_mat_zeroed::<T, _, _>(self.operator.nrows(), x.ncols(), stack);
        let mut residual = residual.as_mat_mut();
        self.operator
            .apply(residual.rb_mut(), Accum::Replace, T::one(), x, par, stack);
        faer::zip!(residual.rb_mut(), self.target(data)).for_each(|faer::unzip!(r, d)| *r -= *d);
        self.operator
            .apply_adjoint(out, Accum::Replace, T::one(), residual.rb(), par, stack);
    }

    /// Writes `out = AᵀA v`, which does not depend on `x` or `d`.
    fn hessian_vjp(
        &self,
        out: MatMut<'_, T>,
        _x: MatRef<'_, T>,
        _data: MatRef<'_, T>,
        v: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        let (mut av, stack) = temp_mat_zeroed::<T, _, _>(self.operator.nrows(), v.ncols(), stack);
        let mut av = av.as_mat_mut();
        self.operator
            .apply(av.rb_mut(), Accum::Replace, T::one(), v, par, stack);
        self.operator
            .apply_adjoint(out, Accum::Replace, T::one(), av.rb(), par, stack);
    }

    /// Adds `∂⟨c, Aᵀ(Ax − d)⟩/∂A`: the operator's `accumulate_grad_adjoint`
    /// with `H = c`, `Y = Ax − d`, plus its `accumulate_grad` with
    /// `G = A c`, `X = x`.
    fn accumulate_grad(
        &self,
        grads: &mut [Mat<T>],
        x: MatRef<'_, T>,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        if self.operator.param_count() == 0 {
            return;
        }
        let m = self.operator.nrows();
        let batch = x.ncols();
        let (mut residual, stack) = temp_mat_zeroed::<T, _, _>(m, batch, stack);
        let mut residual = residual.as_mat_mut();
        let (mut a_cotangent, stack) = temp_mat_zeroed::<T, _, _>(m, batch, stack);
        let mut a_cotangent = a_cotangent.as_mat_mut();
        self.operator
            .apply(residual.rb_mut(), Accum::Replace, T::one(), x, par, stack);
        faer::zip!(residual.rb_mut(), self.target(data)).for_each(|faer::unzip!(r, d)| *r -= *d);
        self.operator.apply(
            a_cotangent.rb_mut(),
            Accum::Replace,
            T::one(),
            cotangent,
            par,
            stack,
        );
        self.operator
            .accumulate_grad_adjoint(grads, T::one(), cotangent, residual.rb(), par);
        self.operator
            .accumulate_grad(grads, T::one(), a_cotangent.rb(), x, par);
    }

    /// Returns the power-iteration estimate of `‖A‖₂²`, a lower bound.
    fn lipschitz_estimate(&self) -> T {
        self.lipschitz
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smooth::checks;
    use crate::{Dense, Identity, LearnableDense};
    use faer::mat;
    use optlayer_testing::random::gaussian;

    fn inner(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> f64 {
        (0..a.ncols())
            .flat_map(|j| (0..a.nrows()).map(move |i| (i, j)))
            .map(|(i, j)| a[(i, j)] * b[(i, j)])
            .sum()
    }

    #[test]
    fn known_value_gradient_and_lipschitz() {
        // A = [[1, 0], [2, 0]], d = [1, 2], x = [0.5, 7]: Ax − d = [−0.5, −1],
        // f = ½(0.25 + 1) = 0.625, ∇f = Aᵀ(Ax − d) = [−2.5, 0], ‖A‖₂² = 5.
        let f = LeastSquares::<f64>::new(Dense::new(mat![[1.0, 0.0], [2.0, 0.0]]).unwrap()).unwrap();
        let x = mat![[0.5], [7.0]];
        let d = mat![[1.0], [2.0]];
        assert!((f.value(x.as_ref(), d.as_ref(), 0) - 0.625).abs() < 1e-15);
        let g = checks::gradient(&f, x.as_ref(), d.as_ref());
        assert!((g[(0, 0)] + 2.5).abs() < 1e-15, "{g:?}");
        assert_eq!(g[(1, 0)], 0.0);
        assert!(
            (f.lipschitz_estimate() - 5.0).abs() < 1e-9,
            "{}",
            f.lipschitz_estimate()
        );
        assert_eq!(f.dim(), 2);
        assert_eq!(f.data_rows_needed(), 2);
    }

    #[test]
    fn data_offset_reads_later_rows() {
        let f = LeastSquares::<f64>::new(Dense::new(mat![[1.0, 0.0], [2.0, 0.0]]).unwrap())
            .unwrap()
            .with_data_offset(1)
            .unwrap();
        assert_eq!(f.data_rows_needed(), 3);
        let x = mat![[0.5], [7.0]];
        let data = mat![[100.0], [1.0], [2.0]];
        assert!((f.value(x.as_ref(), data.as_ref(), 0) - 0.625).abs() < 1e-15);
        let g = checks::gradient(&f, x.as_ref(), data.as_ref());
        assert!((g[(0, 0)] + 2.5).abs() < 1e-15, "{g:?}");
    }

    #[test]
    fn data_offset_overflow_rejected() {
        let f = || LeastSquares::<f64>::new(Dense::new(mat![[1.0, 0.0], [2.0, 0.0]]).unwrap()).unwrap();
        for offset in [usize::MAX, usize::MAX - 1] {
            let err = f().with_data_offset(offset).unwrap_err();
            assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
            assert!(err.to_string().contains(&offset.to_string()), "{err}");
        }
        let last = f().with_data_offset(usize::MAX - 2).unwrap();
        assert_eq!(last.data_rows_needed(), usize::MAX);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let f = LeastSquares::new(Dense::new(gaussian(5, 4, 1)).unwrap()).unwrap();
        let x = gaussian(4, 3, 2);
        let data = gaussian(5, 3, 3);
        let error = checks::gradient_error(&f, x.as_ref(), data.as_ref(), 1e-6);
        assert!(error < 1e-7, "relative error {error:e}");
    }

    #[test]
    fn hessian_vjp_matches_finite_differences() {
        let f = LeastSquares::new(Dense::new(gaussian(3, 5, 4)).unwrap())
            .unwrap()
            .with_data_offset(2)
            .unwrap();
        let x = gaussian(5, 2, 5);
        let data = gaussian(5, 2, 6);
        let v = gaussian(5, 2, 7);
        let error = checks::hessian_error(&f, x.as_ref(), data.as_ref(), v.as_ref(), 1e-5);
        assert!(error < 1e-8, "relative error {error:e}");
    }

    #[test]
    fn learnable_operator_gradient_matches_finite_differences() {
        let (m, n, batch) = (4, 3, 2);
        let mut f = LeastSquares::new(LearnableDense::new("a", gaussian(m, n, 8)).unwrap()).unwrap();
        assert_eq!(f.param_count(), 1);
        assert_eq!(f.param_info(0).name, "a");
        let x = gaussian(n, batch, 9);
        let data = gaussian(m, batch, 10);
        let c = gaussian(n, batch, 11);
        let mut grads = vec![Mat::<f64>::zeros(m, n)];
        let mut buffer = MemBuffer::new(f.scratch(x.ncols(), Par::Seq));
        f.accumulate_grad(
            &mut grads,
            x.as_ref(),
            data.as_ref(),
            c.as_ref(),
            Par::Seq,
            MemStack::new(&mut buffer),
        );

        let loss = |f: &LeastSquares<f64>| {
            inner(
                c.as_ref(),
                checks::gradient(f, x.as_ref(), data.as_ref()).as_ref(),
            )
        };
        let eps = 1e-6;
        let mut fd = Mat::<f64>::zeros(m, n);
        for j in 0..n {
            for i in 0..m {
                let original = f.param(0)[(i, j)];
                f.param_mut(0)[(i, j)] = original + eps;
                let plus = loss(&f);
                f.param_mut(0)[(i, j)] = original - eps;
                let minus = loss(&f);
                f.param_mut(0)[(i, j)] = original;
                fd[(i, j)] = (plus - minus) / (2.0 * eps);
            }
        }
        let error = (&grads[0] - &fd).norm_l2() / fd.norm_l2();
        assert!(fd.norm_l2() > 0.1, "{fd:?}");
        assert!(error < 1e-7, "relative error {error:e}");
    }

    #[test]
    fn fixed_operator_adds_no_gradient() {
        let f = LeastSquares::new(Identity::new(3)).unwrap();
        assert_eq!(f.param_count(), 0);
        let x = gaussian(3, 1, 12);
        let mut grads: Vec<Mat<f64>> = Vec::new();
        let mut buffer = MemBuffer::new(f.scratch(x.ncols(), Par::Seq));
        f.accumulate_grad(
            &mut grads,
            x.as_ref(),
            x.as_ref(),
            x.as_ref(),
            Par::Seq,
            MemStack::new(&mut buffer),
        );
        assert!(grads.is_empty());
    }

    #[test]
    fn lipschitz_matches_spectral_norm_and_refreshes() {
        let a = gaussian(6, 4, 13);
        let sigma = a.as_ref().singular_values().unwrap()[0];
        let mut f = LeastSquares::new(LearnableDense::new("a", a).unwrap()).unwrap();
        let rel = |estimate: f64, exact: f64| (estimate - exact).abs() / exact;
        assert!(rel(f.lipschitz_estimate(), sigma * sigma) < 1e-8);
        assert!(f.lipschitz_estimate() <= sigma * sigma * (1.0 + 1e-12));

        let scaled = Mat::from_fn(6, 4, |i, j| 3.0 * f.param(0)[(i, j)]);
        f.param_mut(0).copy_from(&scaled);
        f.after_param_update().unwrap();
        assert!(rel(f.lipschitz_estimate(), 9.0 * sigma * sigma) < 1e-8);
    }

    #[test]
    fn non_finite_parameter_rejected_on_update() {
        let mut f = LeastSquares::new(LearnableDense::new("a", gaussian(2, 2, 14)).unwrap()).unwrap();
        f.param_mut(0)[(1, 0)] = f64::NAN;
        assert!(f.after_param_update().is_err());
    }

    #[test]
    fn f32_matches_f64() {
        let a = gaussian(5, 4, 15);
        let x = gaussian(4, 3, 16);
        let data = gaussian(5, 3, 17);
        let v = gaussian(4, 3, 18);
        let to_f32 = |m: &Mat<f64>| Mat::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)] as f32);
        let f64_term = LeastSquares::new(Dense::new(a.clone()).unwrap()).unwrap();
        let f32_term = LeastSquares::new(Dense::new(to_f32(&a)).unwrap()).unwrap();

        let g64 = checks::gradient(&f64_term, x.as_ref(), data.as_ref());
        let g32 = checks::gradient(&f32_term, to_f32(&x).as_ref(), to_f32(&data).as_ref());
        let h64 = checks::hessian_vjp(&f64_term, x.as_ref(), data.as_ref(), v.as_ref());
        let h32 = checks::hessian_vjp(
            &f32_term,
            to_f32(&x).as_ref(),
            to_f32(&data).as_ref(),
            to_f32(&v).as_ref(),
        );
        let rel = |a32: &Mat<f32>, a64: &Mat<f64>| {
            let diff = Mat::from_fn(a64.nrows(), a64.ncols(), |i, j| {
                f64::from(a32[(i, j)]) - a64[(i, j)]
            });
            diff.norm_l2() / a64.norm_l2()
        };
        assert!(rel(&g32, &g64) < 1e-5, "gradient");
        assert!(rel(&h32, &h64) < 1e-5, "Hessian-vector product");
        let v64 = f64_term.value(x.as_ref(), data.as_ref(), 1);
        let v32 = f32_term.value(to_f32(&x).as_ref(), to_f32(&data).as_ref(), 1);
        assert!((f64::from(v32) - v64).abs() < 1e-5 * v64.abs(), "{v32} vs {v64}");
        let l64 = f64_term.lipschitz_estimate();
        let l32 = f64::from(f32_term.lipschitz_estimate());
        assert!((l32 - l64).abs() < 1e-5 * l64, "{l32} vs {l64}");
    }
}
