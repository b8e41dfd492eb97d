use faer::{MatMut, MatRef};
use optlayer_core::columns::map1;
use optlayer_core::validate::{check_nonnegative, check_positive};
use optlayer_core::{Parameterized, Prox, Result, Scalar};

/// The Huber function `h(x) = Σ_i w · hub_δ(x_i)` (Huber, "Robust estimation
/// of a location parameter", Annals of Mathematical Statistics 35(1), 1964),
/// with
///
/// `hub_δ(x) = x²/(2δ)` for `|x| ≤ δ`, and `|x| − δ/2` for `|x| > δ`,
///
/// quadratic near zero and linear beyond `δ > 0`, with weight `w ≥ 0`.
/// With `s = γw`, its prox acts entry by entry:
///
/// `prox_{γh}(v)_i = v_i δ/(δ + s)` for `|v_i| ≤ δ + s` (the quadratic branch),
/// `prox_{γh}(v)_i = v_i − s · sign(v_i)` for `|v_i| > δ + s` (the linear branch).
///
/// The two branches meet at `|v_i| = δ + s`, where both give `sign(v_i) δ`, so
/// the map is continuous. An input with `δ < |v_i| ≤ δ + s` lies on the
/// quadratic branch: its prox has magnitude at most `δ`.
///
/// Derivative convention, used identically by the map and its
/// vector-Jacobian product: the derivative is `δ/(δ + s)` where
/// `|v_i| ≤ δ + s`, the boundary included, and 1 beyond. With `s = 0` both are
/// 1 and the map is the identity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Huber<T> {
    delta: T,
    weight: T,
}

impl<T: Scalar> Huber<T> {
    /// Creates `h(x) = Σ_i hub_δ(x_i)` with `δ = delta` and weight 1.
    ///
    /// # Errors
    /// When `delta` is not finite or not greater than zero.
    pub fn new(delta: T) -> Result<Self> {
        Self::weighted(delta, T::one())
    }

    /// Creates `h(x) = weight · Σ_i hub_δ(x_i)` with `δ = delta`.
    ///
    /// # Errors
    /// When `delta` is not finite or not greater than zero, or `weight` is
    /// negative or not finite.
    pub fn weighted(delta: T, weight: T) -> Result<Self> {
        check_positive("huber delta", delta)?;
        check_nonnegative("huber weight", weight)?;
        Ok(Self { delta, weight })
    }

    /// Returns the transition point `δ`.
    pub fn delta(&self) -> T {
        self.delta
    }

    /// Returns the weight `w`.
    pub fn weight(&self) -> T {
        self.weight
    }
}

impl<T: Scalar> Parameterized<T> for Huber<T> {}

impl<T: Scalar> Prox<T> for Huber<T> {
    fn is_separable(&self) -> bool {
        true
    }

    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> Option<T> {
        let half = T::lit(0.5);
        let mut sum = T::zero();
        for row in 0..x.nrows() {
            let entry = x[(row, col)];
            let magnitude = entry.abs();
            sum += if magnitude <= self.delta {
                // x²/(2δ), with the division first so that a large δ cannot overflow x².
                half * (entry / self.delta) * entry
            } else {
                magnitude - half * self.delta
            };
        }
        Some(self.weight * sum)
    }

    fn prox(&self, out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, _data: MatRef<'_, T>) {
        let step = gamma * self.weight;
        let boundary = self.delta + step;
        let shrink = self.delta / boundary;
        map1(out, v, move |v| {
            if v.abs() <= boundary {
                v * shrink
            } else if v > T::zero() {
                v - step
            } else {
                v + step
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
        let step = gamma * self.weight;
        let boundary = self.delta + step;
        let shrink = self.delta / boundary;
        faer::zip!(v_bar, v, cotangent).for_each(|faer::unzip!(o, v, c)| {
            *o = if v.abs() <= boundary { shrink * *c } else { *c };
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
    fn quadratic_branch_beyond_delta() {
        // δ = 1, γ = 1: the quadratic branch reaches |v| = 2. The input 1.5
        // lies in δ < |v| < δ + γ, so its prox is 1.5 · 1/2 = 0.75, not 1.5 − 1.
        let prox = Huber::new(1.0).unwrap();
        assert_eq!(apply(&prox, &[1.5, -1.5], 1.0), vec![0.75, -0.75]);
        assert_eq!(vjp(&prox, &[1.5, -1.5], 1.0, &[1.0, 1.0]), vec![0.5, 0.5]);
        assert_eq!(apply(&prox, &[0.4, 0.0], 1.0), vec![0.2, 0.0]);
    }

    #[test]
    fn both_sides_of_boundary() {
        let prox = Huber::new(1.0).unwrap();
        // At |v| = δ + γ = 2 both branches give sign(v) δ.
        assert_eq!(apply(&prox, &[2.0, -2.0], 1.0), vec![1.0, -1.0]);
        // Just inside: v δ/(δ + γ); just outside: v − γ sign(v).
        let inside = apply(&prox, &[2.0 - 1e-9, -(2.0 - 1e-9)], 1.0);
        assert_close(&inside, &[(2.0 - 1e-9) / 2.0, -(2.0 - 1e-9) / 2.0], 1e-15);
        let outside = apply(&prox, &[2.0 + 1e-9, -(2.0 + 1e-9)], 1.0);
        assert_close(&outside, &[1.0 + 1e-9, -(1.0 + 1e-9)], 1e-15);
        assert_eq!(apply(&prox, &[3.5, -3.5], 1.0), vec![2.5, -2.5]);
        // The derivative takes the quadratic branch on the boundary.
        assert_eq!(
            vjp(&prox, &[2.0, 2.0 + 1e-9, 3.5], 1.0, &[1.0; 3]),
            vec![0.5, 1.0, 1.0]
        );
    }

    #[test]
    fn continuous_at_boundary() {
        for (delta, weight, gamma) in [(1.0, 1.0, 1.0), (0.3, 2.0, 0.7), (5.0, 0.5, 3.0)] {
            let prox = Huber::weighted(delta, weight).unwrap();
            let boundary = delta + gamma * weight;
            for h in [1e-4, 1e-6, 1e-8] {
                let x = apply(&prox, &[boundary - h, boundary, boundary + h], gamma);
                assert!((x[0] - delta).abs() <= h, "{x:?}");
                assert!((x[1] - delta).abs() <= 1e-15 * delta, "{x:?}");
                assert!((x[2] - delta).abs() <= 2.0 * h, "{x:?}");
            }
        }
    }

    #[test]
    fn weight_scales_the_step() {
        // w = 3, γ = 0.5: s = 1.5, boundary δ + s = 2.
        let prox = Huber::weighted(0.5, 3.0).unwrap();
        assert_close(&apply(&prox, &[1.0, 4.0, -2.0], 0.5), &[0.25, 2.5, -0.5], 1e-15);
        let unweighted = Huber::weighted(0.5, 0.0).unwrap();
        assert_eq!(apply(&unweighted, &[1.0, 4.0, -2.0], 0.5), vec![1.0, 4.0, -2.0]);
        assert_eq!(vjp(&unweighted, &[1.0, 4.0, -2.0], 0.5, &[1.0; 3]), vec![1.0; 3]);
    }

    #[test]
    fn zero_step_is_identity() {
        let prox = Huber::weighted(0.7, 2.0).unwrap();
        assert_zero_step_is_identity(&prox, gaussian(5, 3, 12).as_ref());
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let prox = Huber::weighted(0.6, 1.5).unwrap();
        for seed in 0..8 {
            // Boundary at 0.6 + 0.5 · 1.5 = 1.35; Gaussian entries on both branches.
            let v = scaled_gaussian(6, 3, seed, 2.0);
            let c = gaussian(6, 3, seed + 40);
            assert_vjp_matches_fd(&prox, v.as_ref(), 0.5, c.as_ref());
        }
    }

    #[test]
    fn f32_matches_f64() {
        let v = scaled_gaussian(8, 3, 13, 2.0);
        let c = gaussian(8, 3, 14);
        assert_f32_matches_f64(
            &Huber::<f32>::weighted(0.8, 1.2).unwrap(),
            &Huber::<f64>::weighted(0.8, 1.2).unwrap(),
            v.as_ref(),
            0.9,
            c.as_ref(),
        );
    }

    #[test]
    fn huge_entries_stay_finite() {
        let prox = Huber::new(1.0).unwrap();
        assert_eq!(apply(&prox, &[1e200, -3e200], 2.0), vec![1e200, -3e200]);
        assert_close(&[value(&prox, &[1e200, -3e200])], &[4e200], 1e-15);
        let wide = Huber::new(1e200).unwrap();
        assert_close(&apply(&wide, &[5e199, 4e200], 1e200), &[2.5e199, 3e200], 1e-15);
        // hub_δ(δ/2) = δ/8 with δ = 1e200: x² = 2.5e399 must not be formed.
        assert_close(&[value(&wide, &[5e199])], &[1.25e199], 1e-15);
    }

    #[test]
    fn value_known_points() {
        let prox = Huber::weighted(2.0, 3.0).unwrap();
        // hub_2(1) = 1/4, hub_2(−2) = 1, hub_2(5) = 5 − 1 = 4: sum 5.25, times w = 3.
        assert_eq!(value(&prox, &[1.0, -2.0, 5.0]), 15.75);
        assert_eq!(value(&prox, &[0.0]), 0.0);
    }

    #[test]
    fn optimality_by_subgradient_inequality() {
        let prox = Huber::weighted(0.5, 1.3).unwrap();
        let v = scaled_gaussian(5, 4, 31, 2.0);
        let points: Vec<Mat<f64>> = (0..20).map(|k| gaussian(5, 4, 400 + k)).collect();
        assert_subgradient_inequality(&prox, v.as_ref(), 0.8, &points);
    }

    #[test]
    fn invalid_delta_or_weight_rejected() {
        assert!(matches!(Huber::new(0.0), Err(Error::InvalidParameter { .. })));
        assert!(matches!(Huber::new(-1.0), Err(Error::InvalidParameter { .. })));
        assert!(matches!(
            Huber::new(f64::NAN),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            Huber::new(f64::INFINITY),
            Err(Error::InvalidParameter { .. })
        ));
        let err = Huber::weighted(1.0, -0.5).unwrap_err();
        assert!(err.to_string().contains("huber weight"), "{err}");
        assert!(matches!(
            Huber::weighted(1.0, f64::NAN),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(Huber::weighted(1.0, 0.0).is_ok());
    }
}
