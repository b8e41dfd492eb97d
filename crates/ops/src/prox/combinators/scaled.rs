use faer::{Mat, MatMut, MatRef};
use optlayer_core::validate::check_nonnegative;
use optlayer_core::{Entrywise, ParamInfo, Parameterized, Prox, Result, Scalar};

use super::describe;

/// The scaled function `g(x) = a · f(x)` with a fixed factor `a ≥ 0`, whose
/// prox is the inner prox with the step multiplied by `a`:
/// `prox_{γg}(v) = prox_{(γa) f}(v)`.
///
/// The Jacobian, its generalized elements at kinks and the parameter
/// gradients are those of the inner map at step `γa`. A factor of zero
/// passes step zero to the inner map, which is the identity for functions
/// that are finite everywhere and the projection onto the set for
/// indicators, because `0 · ∞` counts as `∞`: `0 · δ_C = δ_C`.
///
/// [`is_separable`](Prox::is_separable) and
/// [`is_indicator`](Prox::is_indicator) are the inner map's, for every
/// factor: `a · Σ_i f_i(x_i) = Σ_i a · f_i(x_i)` and `a · δ_C = δ_C`. With
/// `a = 0` and an inner function that is finite everywhere, `g` is the zero
/// function, which is separable in truth; it reports separability only
/// when `f` does, because the trait does not tell a finite `f` from one
/// that is infinite somewhere, and `0 · f` of the latter is the indicator
/// of its domain.
pub struct Scaled<T: Scalar> {
    inner: Box<dyn Prox<T>>,
    factor: T,
}

impl<T: Scalar> std::fmt::Debug for Scaled<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaled")
            .field("factor", &self.factor)
            .field("inner", &describe(&*self.inner))
            .finish()
    }
}

impl<T: Scalar> Scaled<T> {
    /// Creates `g(x) = factor · f(x)` with `f` given by `inner`.
    ///
    /// # Errors
    /// When `factor` is negative or not finite.
    pub fn new(inner: impl Prox<T> + 'static, factor: T) -> Result<Self> {
        Self::from_boxed(Box::new(inner), factor)
    }

    /// Creates `g(x) = factor · f(x)` from a boxed inner map.
    ///
    /// # Errors
    /// When `factor` is negative or not finite.
    pub fn from_boxed(inner: Box<dyn Prox<T>>, factor: T) -> Result<Self> {
        check_nonnegative("scale factor", factor)?;
        Ok(Self { inner, factor })
    }

    /// Returns the factor `a`.
    pub fn factor(&self) -> T {
        self.factor
    }

    /// Returns the inner map `f`.
    pub fn inner(&self) -> &dyn Prox<T> {
        &*self.inner
    }
}

impl<T: Scalar> Parameterized<T> for Scaled<T> {
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

impl<T: Scalar> Prox<T> for Scaled<T> {
    fn dim(&self) -> Option<usize> {
        self.inner.dim()
    }

    fn is_separable(&self) -> bool {
        self.inner.is_separable()
    }

    fn is_indicator(&self) -> bool {
        self.inner.is_indicator()
    }

    fn data_rows_needed(&self) -> usize {
        self.inner.data_rows_needed()
    }

    /// Returns `a · f(x)`, with `0 · ∞ = ∞`, or `None` when `f` has no value.
    fn value(&self, x: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        let inner = self.inner.value(x, data, col)?;
        if inner == T::infinity() {
            Some(inner)
        } else {
            Some(self.factor * inner)
        }
    }

    fn entrywise(&self, gamma: T) -> Option<Entrywise<T>> {
        self.inner.entrywise(gamma * self.factor)
    }

    fn prox(&self, out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, data: MatRef<'_, T>) {
        self.inner.prox(out, v, gamma * self.factor, data);
    }

    fn prox_vjp(
        &self,
        v_bar: MatMut<'_, T>,
        v: MatRef<'_, T>,
        gamma: T,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        self.inner
            .prox_vjp(v_bar, v, gamma * self.factor, data, cotangent);
    }

    fn accumulate_grad(
        &self,
        grads: &mut [Mat<T>],
        v: MatRef<'_, T>,
        gamma: T,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        self.inner
            .accumulate_grad(grads, v, gamma * self.factor, data, cotangent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IndicatorPoint, L1Norm};
    use faer::mat;

    #[test]
    fn scaled_l1_thresholds_at_product() {
        // 2 · (0.5 ‖x‖₁) at γ = 0.75 thresholds at 0.75: [2, −0.5, 1] ↦ [1.25, 0, 0.25].
        let g = Scaled::new(L1Norm::new(0.5).unwrap(), 2.0).unwrap();
        let v = mat![[2.0], [-0.5], [1.0]];
        let mut out = Mat::zeros(3, 1);
        g.prox(out.as_mut(), v.as_ref(), 0.75, Mat::zeros(0, 1).as_ref());
        assert_eq!(out, mat![[1.25], [0.0], [0.25]]);
    }

    #[test]
    fn scaled_value_multiplies() {
        let g = Scaled::new(L1Norm::new(0.5).unwrap(), 3.0).unwrap();
        let x = mat![[1.0, 0.0], [-2.0, 0.5]];
        let no_data = Mat::<f64>::zeros(0, 2);
        assert_eq!(g.value(x.as_ref(), no_data.as_ref(), 0), Some(4.5));
        assert_eq!(g.value(x.as_ref(), no_data.as_ref(), 1), Some(0.75));
    }

    #[test]
    fn zero_factor_keeps_indicator() {
        let point = IndicatorPoint::fixed(vec![1.0, 2.0]).unwrap();
        let g = Scaled::new(point, 0.0).unwrap();
        let no_data = Mat::<f64>::zeros(0, 1);
        let outside = mat![[0.0], [0.0]];
        assert_eq!(
            g.value(outside.as_ref(), no_data.as_ref(), 0),
            Some(f64::INFINITY)
        );
        let l1 = Scaled::new(L1Norm::new(1.0).unwrap(), 0.0).unwrap();
        let v = mat![[3.0], [-0.1]];
        let mut out = Mat::zeros(2, 1);
        l1.prox(out.as_mut(), v.as_ref(), 1.0, no_data.as_ref());
        assert_eq!(out, v);
        assert_eq!(l1.value(v.as_ref(), no_data.as_ref(), 0), Some(0.0));
    }

    #[test]
    fn negative_or_nan_factor_rejected() {
        let err = Scaled::new(L1Norm::new(1.0).unwrap(), -1.0).unwrap_err();
        assert!(err.to_string().contains("scale factor"), "{err}");
        assert!(Scaled::new(L1Norm::new(1.0).unwrap(), f64::NAN).is_err());
        assert!(Scaled::new(L1Norm::new(1.0).unwrap(), f64::INFINITY).is_err());
    }

    #[test]
    fn learnable_inner_parameter_passes_through() {
        let mut g = Scaled::new(L1Norm::learnable("lambda", 0.5).unwrap(), 2.0).unwrap();
        assert_eq!(g.param_count(), 1);
        assert_eq!(g.param_info(0).name, "lambda");
        g.param_mut(0)[(0, 0)] = -1.0;
        g.after_param_update().unwrap();
        assert_eq!(g.param(0)[(0, 0)], 0.0);
    }
}
