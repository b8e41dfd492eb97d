use faer::{MatMut, MatRef};
use optlayer_core::columns::col_norm2;
use optlayer_core::columns::map1;
use optlayer_core::validate::check_nonnegative;
use optlayer_core::{Parameterized, Prox, Result, Scalar};

/// The elastic-net penalty `g(x) = λ₁ ‖x‖₁ + (λ₂/2) ‖x‖₂²` (Zou and Hastie,
/// "Regularization and variable selection via the elastic net", Journal of
/// the Royal Statistical Society: Series B 67(2), 2005), whose prox is
/// soft-thresholding followed by a scaling:
///
/// `prox_{γg}(v)_i = sign(v_i) · max(|v_i| − γλ₁, 0) / (1 + γλ₂)`.
///
/// Derivative convention, used identically by the map and its
/// vector-Jacobian product: with threshold `t = γλ₁`, the derivative is
/// `1/(1 + γλ₂)` where `|v_i| > t` and 0 where `|v_i| ≤ t`, except that
/// `t = 0` has derivative `1/(1 + γλ₂)` everywhere.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ElasticNet<T> {
    l1_weight: T,
    l2_weight: T,
}

impl<T: Scalar> ElasticNet<T> {
    /// Creates `g(x) = l1_weight · ‖x‖₁ + (l2_weight/2) · ‖x‖₂²`.
    ///
    /// # Errors
    /// When either weight is negative or not finite.
    pub fn new(l1_weight: T, l2_weight: T) -> Result<Self> {
        check_nonnegative("elastic net l1 weight", l1_weight)?;
        check_nonnegative("elastic net l2 weight", l2_weight)?;
        Ok(Self { l1_weight, l2_weight })
    }

    /// Returns the weight `λ₁` of the ℓ1 term.
    pub fn l1_weight(&self) -> T {
        self.l1_weight
    }

    /// Returns the weight `λ₂` of the squared ℓ2 term.
    pub fn l2_weight(&self) -> T {
        self.l2_weight
    }
}

impl<T: Scalar> Parameterized<T> for ElasticNet<T> {}

impl<T: Scalar> Prox<T> for ElasticNet<T> {
    fn is_separable(&self) -> bool {
        true
    }

    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> Option<T> {
        let mut l1 = T::zero();
        for row in 0..x.nrows() {
            l1 += x[(row, col)].abs();
        }
        let l2 = col_norm2(x, col);
        Some(self.l1_weight * l1 + T::lit(0.5) * self.l2_weight * l2 * l2)
    }

    fn prox(&self, out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, _data: MatRef<'_, T>) {
        let threshold = gamma * self.l1_weight;
        let scale = (T::one() + gamma * self.l2_weight).recip();
        map1(out, v, move |v| {
            if v > threshold {
                (v - threshold) * scale
            } else if v < -threshold {
                (v + threshold) * scale
            } else {
                T::zero()
            }
        });
    }

    fn prox_vjp(
        &self,
        v_bar: MatMut<'_, T>,
        v: MatRef<'_, T>,
        gamma: T,
        _data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        let threshold = gamma * self.l1_weight;
        let scale = (T::one() + gamma * self.l2_weight).recip();
        faer::zip!(v_bar, v, cotangent).for_each(|faer::unzip!(o, v, c)| {
            *o = if threshold == T::zero() || v.abs() > threshold {
                scale * *c
            } else {
                T::zero()
            };
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prox::test_support::*;
    use faer::Mat;
    use optlayer_core::Error;
    use optlayer_testing::random::gaussian;

    #[test]
    fn known_values() {
        // γλ₁ = 0.5 and 1 + γλ₂ = 2.
        let prox = ElasticNet::new(0.5, 1.0).unwrap();
        let x = apply(&prox, &[-3.0, -0.5, 0.2, 0.0, 1.5], 1.0);
        assert_eq!(x, vec![-1.25, 0.0, 0.0, 0.0, 0.5]);
        // γ = 2: threshold 1, scale 1/3.
        let x = apply(&prox, &[4.0, -1.0, -2.5], 2.0);
        assert_close(&x, &[1.0, 0.0, -0.5], 1e-15);
    }

    #[test]
    fn reduces_to_l1_and_squared_l2() {
        let values = [-2.0, -0.3, 0.0, 0.7, 1.1];
        let lasso = ElasticNet::new(0.6, 0.0).unwrap();
        assert_close(&apply(&lasso, &values, 1.0), &[-1.4, 0.0, 0.0, 0.1, 0.5], 1e-15);
        let ridge = ElasticNet::new(0.0, 3.0).unwrap();
        let expected: Vec<f64> = values.iter().map(|v| v / 4.0).collect();
        assert_close(&apply(&ridge, &values, 1.0), &expected, 1e-15);
        assert_eq!(vjp(&ridge, &values, 1.0, &[1.0; 5]), vec![0.25; 5]);
    }

    #[test]
    fn derivative_convention_at_threshold() {
        let prox = ElasticNet::new(0.5, 1.0).unwrap();
        let d = vjp(&prox, &[-1.0, -0.5, 0.0, 0.5, 0.6], 1.0, &[1.0; 5]);
        assert_eq!(d, vec![0.5, 0.0, 0.0, 0.0, 0.5]);
    }

    #[test]
    fn zero_step_is_identity() {
        let prox = ElasticNet::new(0.9, 2.0).unwrap();
        assert_zero_step_is_identity(&prox, gaussian(4, 3, 5).as_ref());
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let prox = ElasticNet::new(0.3, 0.7).unwrap();
        for seed in 0..8 {
            // Nudge entries away from the kinks at |v| = γλ₁ = 0.3.
            let base = gaussian(6, 3, seed);
            let v = Mat::from_fn(6, 3, |i, j| {
                let x: f64 = base[(i, j)];
                if (x.abs() - 0.3).abs() < 1e-3 { x * 1.1 } else { x }
            });
            let c = gaussian(6, 3, seed + 50);
            assert_vjp_matches_fd(&prox, v.as_ref(), 1.0, c.as_ref());
        }
    }

    #[test]
    fn f32_matches_f64() {
        let v = gaussian(7, 3, 8);
        let c = gaussian(7, 3, 9);
        assert_f32_matches_f64(
            &ElasticNet::<f32>::new(0.4, 1.5).unwrap(),
            &ElasticNet::<f64>::new(0.4, 1.5).unwrap(),
            v.as_ref(),
            0.8,
            c.as_ref(),
        );
    }

    #[test]
    fn huge_entries_stay_finite() {
        let prox = ElasticNet::new(1e199, 1.0).unwrap();
        let x = apply(&prox, &[3e200, -4e200, 1e198], 1.0);
        assert_close(&x, &[1.45e200, -1.95e200, 0.0], 1e-14);
        let g = value(&ElasticNet::new(1.0, 0.0).unwrap(), &[3e200, -4e200]);
        assert!((g / 7e200 - 1.0).abs() < 1e-14, "{g}");
    }

    #[test]
    fn value_known_points() {
        let prox = ElasticNet::new(0.5, 2.0).unwrap();
        // 0.5 · 7 + (2/2) · 25 = 28.5.
        assert_eq!(value(&prox, &[3.0, -4.0]), 28.5);
        assert_eq!(value(&prox, &[0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn optimality_by_subgradient_inequality() {
        let prox = ElasticNet::new(0.4, 0.8).unwrap();
        let v = gaussian(5, 4, 21);
        let points: Vec<Mat<f64>> = (0..20).map(|k| gaussian(5, 4, 300 + k)).collect();
        assert_subgradient_inequality(&prox, v.as_ref(), 1.2, &points);
    }

    #[test]
    fn negative_or_nan_weights_rejected() {
        let err = ElasticNet::new(-0.1, 1.0).unwrap_err();
        assert!(err.to_string().contains("elastic net l1 weight"), "{err}");
        let err = ElasticNet::new(0.1, f64::NAN).unwrap_err();
        assert!(err.to_string().contains("elastic net l2 weight"), "{err}");
        assert!(matches!(
            ElasticNet::new(0.1, -2.0),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(ElasticNet::new(0.0, 0.0).is_ok());
    }
}
