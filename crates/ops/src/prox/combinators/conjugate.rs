use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Mat, MatMut, MatRef};
use optlayer_core::{ParamInfo, Parameterized, Prox, Result, Scalar};

use super::scratch::ScratchPool;
use super::{data_cols, describe};

/// The Fenchel conjugate `g = f*`, `f*(y) = sup_x ⟨x, y⟩ − f(x)`, whose prox
/// follows from the prox of `f` by Moreau's decomposition
/// (J.-J. Moreau, "Proximité et dualité dans un espace hilbertien",
/// Bulletin de la Société Mathématique de France 93, 1965):
///
/// ```text
/// prox_{γ f*}(v) = v − γ · prox_{f/γ}(v/γ)
/// ```
///
/// for a closed convex `f`. The conjugate of `λ‖·‖₁` is the indicator of
/// the ℓ∞ ball of radius `λ`, for example, so `Conjugate` of an
/// [`L1Norm`](crate::L1Norm) clips every entry to `[−λ, λ]`.
///
/// - Step zero (or a step so small that `1/γ` overflows) gives the
///   identity, in the map and in its vector-Jacobian product.
/// - The Jacobian is `I − J_f(v/γ)`, where `J_f` is the inner map's
///   Jacobian at step `1/γ`, with the inner map's elements at kinks.
/// - The parameter gradient is `−γ` times the inner map's gradient at
///   `(v/γ, 1/γ)`.
/// - [`value`](Prox::value) returns `None`: the value of `f*` does not
///   follow from the prox and the value of `f` in general.
/// - [`is_separable`](Prox::is_separable) and
///   [`is_indicator`](Prox::is_indicator) return false, because the inner
///   map's flags do not decide them: `f*` of the separable, finite `‖·‖₁`
///   is an indicator, for example.
///
/// NOTE: the subtraction `v − γ · prox_{f/γ}(v/γ)` cancels wherever the
/// result is small against `v`. There `γ · prox_{f/γ}(v/γ)` is close to `v`
/// and carries a rounding error of about `ε·|v_i|` (`ε` the unit roundoff
/// of `T`), which the subtraction keeps as an absolute error of the result.
/// A result entry below about `ε·|v_i|` is therefore lost completely. `Conjugate` of `L1Norm::new(1.0)` at
/// `[1e17, −1e17, 0.5]` returns `[0, 0, 0.5]` instead of `[1, −1, 0.5]`,
/// and `Conjugate` of `L2Norm::new(1.0)` at `[1e200, 1e200]` returns
/// `[0, 0]`. Where the conjugate has a direct prox, use it: the conjugate
/// of `λ‖·‖₁` is [`LinfBall`](crate::LinfBall) of radius `λ`, that of
/// `λ‖·‖₂` is [`L2Ball`](crate::L2Ball), and that of `λ‖·‖∞` is
/// [`L1Ball`](crate::L1Ball).
///
/// The inner map needs `v/γ` as its input, and the `Prox` trait passes no
/// scratch memory. The map therefore keeps buffers of at most `n x 32`
/// entries (twice that for parameter gradients) between calls, one per
/// thread that calls it at the same time, and processes batches 32 columns
/// at a time. Only the first call of each concurrent caller allocates.
pub struct Conjugate<T: Scalar> {
    inner: Box<dyn Prox<T>>,
    pool: ScratchPool<T>,
}

impl<T: Scalar> std::fmt::Debug for Conjugate<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conjugate")
            .field("inner", &describe(&*self.inner))
            .finish()
    }
}

impl<T: Scalar> Conjugate<T> {
    /// Creates `g = f*` with `f` given by `inner`.
    pub fn new(inner: impl Prox<T> + 'static) -> Self {
        Self::from_boxed(Box::new(inner))
    }

    /// Creates `g = f*` from a boxed inner map.
    pub fn from_boxed(inner: Box<dyn Prox<T>>) -> Self {
        Self {
            inner,
            pool: ScratchPool::new(),
        }
    }

    /// Returns the inner map `f`.
    pub fn inner(&self) -> &dyn Prox<T> {
        &*self.inner
    }
}

/// Returns `1/γ`, or `None` when `γ = 0` or `1/γ` is not finite, where the
/// map is the identity.
fn inverse_step<T: Scalar>(gamma: T) -> Option<T> {
    let inverse = gamma.recip();
    (gamma != T::zero() && inverse.is_finite()).then_some(inverse)
}

/// Writes `out = factor · v`.
fn write_scaled<T: Scalar>(out: MatMut<'_, T>, factor: T, v: MatRef<'_, T>) {
    faer::zip!(out, v).for_each(|faer::unzip!(o, v)| *o = factor * *v);
}

impl<T: Scalar> Parameterized<T> for Conjugate<T> {
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

impl<T: Scalar> Prox<T> for Conjugate<T> {
    fn dim(&self) -> Option<usize> {
        self.inner.dim()
    }

    fn data_rows_needed(&self) -> usize {
        self.inner.data_rows_needed()
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, data: MatRef<'_, T>) {
        let Some(inverse) = inverse_step(gamma) else {
            out.copy_from(v);
            return;
        };
        let (rows, batch) = v.shape();
        self.pool.for_each_chunk(rows, batch, 1, |start, cols, buffer| {
            let v = v.subcols(start, cols);
            let mut scaled = MatMut::from_column_major_slice_mut(buffer, rows, cols);
            write_scaled(scaled.rb_mut(), inverse, v);
            let mut out = out.rb_mut().subcols_mut(start, cols);
            let chunk_data = data_cols(data, batch, start, cols);
            self.inner.prox(out.rb_mut(), scaled.rb(), inverse, chunk_data);
            faer::zip!(out, v).for_each(|faer::unzip!(o, v)| *o = *v - gamma * *o);
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
        let Some(inverse) = inverse_step(gamma) else {
            v_bar.copy_from(cotangent);
            return;
        };
        let (rows, batch) = v.shape();
        self.pool.for_each_chunk(rows, batch, 1, |start, cols, buffer| {
            let mut scaled = MatMut::from_column_major_slice_mut(buffer, rows, cols);
            write_scaled(scaled.rb_mut(), inverse, v.subcols(start, cols));
            let mut v_bar = v_bar.rb_mut().subcols_mut(start, cols);
            let cotangent = cotangent.subcols(start, cols);
            let chunk_data = data_cols(data, batch, start, cols);
            self.inner
                .prox_vjp(v_bar.rb_mut(), scaled.rb(), inverse, chunk_data, cotangent);
            faer::zip!(v_bar, cotangent).for_each(|faer::unzip!(o, c)| *o = *c - *o);
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
        let Some(inverse) = inverse_step(gamma) else {
            return;
        };
        let (rows, batch) = v.shape();
        self.pool.for_each_chunk(rows, batch, 2, |start, cols, buffer| {
            let (scaled, scaled_cotangent) = buffer.split_at_mut(rows * cols);
            let mut scaled = MatMut::from_column_major_slice_mut(scaled, rows, cols);
            write_scaled(scaled.rb_mut(), inverse, v.subcols(start, cols));
            // ⟨c, v − γ p(θ)⟩ has the gradient −γ ∂⟨c, p(θ)⟩/∂θ, which is the
            // inner gradient for the cotangent −γ c.
            let mut scaled_cotangent = MatMut::from_column_major_slice_mut(scaled_cotangent, rows, cols);
            write_scaled(scaled_cotangent.rb_mut(), -gamma, cotangent.subcols(start, cols));
            let chunk_data = data_cols(data, batch, start, cols);
            self.inner
                .accumulate_grad(grads, scaled.rb(), inverse, chunk_data, scaled_cotangent.rb());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{L1Norm, L2Ball, L2Norm, LinfBall, SquaredL2};
    use faer::mat;

    fn no_data(cols: usize) -> Mat<f64> {
        Mat::zeros(0, cols)
    }

    #[test]
    fn conjugate_of_l1_clips_to_linf_ball() {
        // (0.5‖·‖₁)* is the indicator of [−0.5, 0.5]ⁿ, whose prox is the
        // clip at every step.
        let g = Conjugate::new(L1Norm::new(0.5).unwrap());
        let v = mat![[2.0, -0.3], [-0.75, 0.5], [0.25, -4.0]];
        let expected = mat![[0.5, -0.3], [-0.5, 0.5], [0.25, -0.5]];
        for gamma in [0.1, 1.0, 3.0] {
            let mut out = Mat::zeros(3, 2);
            g.prox(out.as_mut(), v.as_ref(), gamma, no_data(2).as_ref());
            assert!((&out - &expected).norm_max() < 1e-15, "γ = {gamma}: {out:?}");
        }
    }

    #[test]
    fn conjugate_of_l1_derivative_passes_interior() {
        // The clip has derivative 1 strictly inside the ball and 0 outside.
        let g = Conjugate::new(L1Norm::new(0.5).unwrap());
        let v = mat![[2.0], [-0.3], [0.25], [-4.0]];
        let c = mat![[1.0], [2.0], [3.0], [4.0]];
        let mut v_bar = Mat::zeros(4, 1);
        g.prox_vjp(v_bar.as_mut(), v.as_ref(), 0.7, no_data(1).as_ref(), c.as_ref());
        assert_eq!(v_bar, mat![[0.0], [2.0], [3.0], [0.0]]);
    }

    #[test]
    fn conjugate_of_squared_l2_scales_by_inverse_weight() {
        // ((w/2)‖·‖²)* = (1/(2w))‖·‖², whose prox divides by 1 + γ/w.
        let g = Conjugate::new(SquaredL2::new(4.0).unwrap());
        let v = mat![[3.0], [-6.0]];
        let mut out = Mat::zeros(2, 1);
        g.prox(out.as_mut(), v.as_ref(), 2.0, no_data(1).as_ref());
        assert!((out[(0, 0)] - 2.0).abs() < 1e-15, "{out:?}");
        assert!((out[(1, 0)] + 4.0).abs() < 1e-15, "{out:?}");
        assert_eq!(g.value(out.as_ref(), no_data(1).as_ref(), 0), None);
    }

    /// Returns `prox_{γg}(v)` for one column.
    fn apply(g: &dyn Prox<f64>, values: &[f64], gamma: f64) -> Vec<f64> {
        let v = Mat::from_fn(values.len(), 1, |i, _| values[i]);
        let mut out = Mat::zeros(values.len(), 1);
        g.prox(out.as_mut(), v.as_ref(), gamma, no_data(1).as_ref());
        (0..values.len()).map(|i| out[(i, 0)]).collect()
    }

    #[test]
    fn cancellation_loses_small_results_of_large_entries() {
        // The exact results are the clip [1, −1, 0.5] and the projection
        // onto the unit ℓ2 ball [1/√2, 1/√2]. Entries of the result below
        // about ε·|v_i| vanish in the subtraction v − γ·prox_{f/γ}(v/γ).
        let l1 = Conjugate::new(L1Norm::new(1.0).unwrap());
        assert_eq!(apply(&l1, &[1e17, -1e17, 0.5], 1.0), vec![0.0, 0.0, 0.5]);
        let l2 = Conjugate::new(L2Norm::new(1.0).unwrap());
        assert_eq!(apply(&l2, &[1e200, 1e200], 1.0), vec![0.0, 0.0]);
        // At |v_i| = 1e3 the loss is about 1e3·ε relative to the result.
        let x = apply(&l1, &[1e3, -1e3, 0.5], 1.0);
        for (got, want) in x.iter().zip([1.0, -1.0, 0.5]) {
            assert!((got - want).abs() <= 1e3 * f64::EPSILON, "{x:?}");
        }
        let x = apply(&l2, &[1e3, 1e3], 1.0);
        for got in &x {
            assert!(
                (got - std::f64::consts::FRAC_1_SQRT_2).abs() <= 1e3 * f64::EPSILON,
                "{x:?}"
            );
        }
        // The direct projections onto the dual-norm balls stay exact.
        let clip = LinfBall::new(1.0).unwrap();
        assert_eq!(apply(&clip, &[1e17, -1e17, 0.5], 1.0), vec![1.0, -1.0, 0.5]);
        let ball = L2Ball::new(1.0).unwrap();
        let x = apply(&ball, &[1e200, 1e200], 1.0);
        for got in &x {
            assert!((got - std::f64::consts::FRAC_1_SQRT_2).abs() <= 1e-15, "{x:?}");
        }
    }

    #[test]
    fn zero_step_is_identity() {
        let g = Conjugate::new(L1Norm::new(0.5).unwrap());
        let v = mat![[2.0], [-0.3]];
        let c = mat![[1.0], [-1.0]];
        for gamma in [0.0, 1e-320] {
            let mut out = Mat::zeros(2, 1);
            g.prox(out.as_mut(), v.as_ref(), gamma, no_data(1).as_ref());
            assert_eq!(out, v);
            let mut v_bar = Mat::zeros(2, 1);
            g.prox_vjp(v_bar.as_mut(), v.as_ref(), gamma, no_data(1).as_ref(), c.as_ref());
            assert_eq!(v_bar, c);
        }
    }

    #[test]
    fn learnable_gradient_is_scaled_by_minus_step() {
        // Clip at λ: the output λ·sign(v) outside the ball has ∂/∂λ = sign(v).
        // With v = [2, −0.3, −4], c = [1, 1, 2]: 1 + 0 − 2 = −1.
        let g = Conjugate::new(L1Norm::learnable("lambda", 0.5).unwrap());
        assert_eq!(g.param_count(), 1);
        let v = mat![[2.0], [-0.3], [-4.0]];
        let c = mat![[1.0], [1.0], [2.0]];
        let mut grads = vec![Mat::zeros(1, 1)];
        g.accumulate_grad(&mut grads, v.as_ref(), 0.8, no_data(1).as_ref(), c.as_ref());
        assert!((grads[0][(0, 0)] + 1.0).abs() < 1e-15, "{:?}", grads[0]);
    }
}
