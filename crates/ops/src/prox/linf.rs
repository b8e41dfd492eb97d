use faer::{MatMut, MatRef};
use optlayer_core::validate::check_nonnegative;
use optlayer_core::{Parameterized, Prox, Result, Scalar};

use super::l1_ball::{l1_ball_threshold, support_signed_mean};

/// The ℓ∞ norm of each column, `g(x) = λ ‖x‖∞`, whose prox follows from the
/// Moreau decomposition `v = prox_{γg}(v) + γλ · P_B(v/(γλ))`, with `P_B` the
/// projection onto the unit ℓ1 ball, the dual norm ball (Parikh and Boyd,
/// "Proximal Algorithms", Foundations and Trends in Optimization 1(3), 2014).
///
/// Since `γλ · P_B(v/(γλ))` is the projection of `v` onto the ℓ1 ball of
/// radius `t = γλ`, the map is computed as `v − P_{‖·‖₁ ≤ t}(v)` without
/// dividing by `t`. With the threshold `τ` of that projection it clips every
/// entry, `x_i = sign(v_i) · min(|v_i|, τ)`, and it is zero when `‖v‖₁ ≤ t`.
/// The clipped set is decided as in [`L1Ball`](crate::L1Ball), relative to
/// the largest magnitude, so entries such as `1e17` that share a small `t`
/// are all clipped.
///
/// Derivative convention, used identically by the map and its
/// vector-Jacobian product: `I` minus the Jacobian of the ℓ1-ball projection
/// (see [`L1Ball`](crate::L1Ball)). That is zero where `‖v‖₁ ≤ t`, the
/// boundary included. Beyond it, with the clipped set `S = {i : |v_i| > τ}`
/// and `s = sign(v_S)`, it is `s sᵀ/|S|` on `S` and the identity off `S`,
/// where entries that the ℓ1-ball projection counts outside its support
/// count as off `S`. `t = 0` (the map is the
/// identity) has the identity Jacobian, also at `v = 0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinfNorm<T> {
    weight: T,
}

impl<T: Scalar> LinfNorm<T> {
    /// Creates `g(x) = weight · ‖x‖∞`.
    ///
    /// # Errors
    /// When `weight` is negative or not finite.
    pub fn new(weight: T) -> Result<Self> {
        check_nonnegative("linf norm weight", weight)?;
        Ok(Self { weight })
    }

    /// Returns the weight `λ`.
    pub fn weight(&self) -> T {
        self.weight
    }
}

impl<T: Scalar> Parameterized<T> for LinfNorm<T> {}

impl<T: Scalar> Prox<T> for LinfNorm<T> {
    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> Option<T> {
        let mut max_abs = T::zero();
        for row in 0..x.nrows() {
            max_abs = max_abs.max(x[(row, col)].abs());
        }
        Some(self.weight * max_abs)
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, _data: MatRef<'_, T>) {
        let radius = gamma * self.weight;
        let len = v.nrows();
        for col in 0..v.ncols() {
            if radius == T::zero() {
                for row in 0..len {
                    out[(row, col)] = v[(row, col)];
                }
                continue;
            }
            match l1_ball_threshold(|i| v[(i, col)], len, radius) {
                None => {
                    for row in 0..len {
                        out[(row, col)] = T::zero();
                    }
                }
                Some(threshold) => {
                    let tau = threshold.value();
                    for row in 0..len {
                        let entry = v[(row, col)];
                        out[(row, col)] = if threshold.excess(entry) <= T::zero() {
                            entry
                        } else if entry < T::zero() {
                            -tau
                        } else {
                            tau
                        };
                    }
                }
            }
        }
    }

    fn prox_vjp(
        &self,
        mut v_bar: MatMut<'_, T>,
        v: MatRef<'_, T>,
        gamma: T,
        _data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        let radius = gamma * self.weight;
        let len = v.nrows();
        for col in 0..v.ncols() {
            if radius == T::zero() {
                for row in 0..len {
                    v_bar[(row, col)] = cotangent[(row, col)];
                }
                continue;
            }
            match l1_ball_threshold(|i| v[(i, col)], len, radius) {
                None => {
                    for row in 0..len {
                        v_bar[(row, col)] = T::zero();
                    }
                }
                Some(threshold) => {
                    let mean = support_signed_mean(v, cotangent, col, threshold);
                    for row in 0..len {
                        let entry = v[(row, col)];
                        v_bar[(row, col)] = if threshold.excess(entry) > T::zero() {
                            entry.signum() * mean
                        } else {
                            cotangent[(row, col)]
                        };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::L1Ball;
    use crate::prox::test_support::*;
    use faer::Mat;
    use optlayer_core::Error;
    use optlayer_testing::random::gaussian;

    #[test]
    fn known_values() {
        let prox = LinfNorm::new(1.0).unwrap();
        // One largest entry: it drops by γλ = 1.
        assert_close(&apply(&prox, &[3.0, -1.0, 0.5], 1.0), &[2.0, -1.0, 0.5], 1e-15);
        // Two entries above τ = (3 + 2.5 − 1)/2 = 2.25 share the decrease.
        assert_close(&apply(&prox, &[3.0, -2.5, 0.5], 1.0), &[2.25, -2.25, 0.5], 1e-15);
        // ‖v‖₁ ≤ γλ: zero, the boundary included.
        assert_eq!(apply(&prox, &[0.3, -0.2], 1.0), vec![0.0, 0.0]);
        assert_eq!(apply(&prox, &[0.5, -0.5], 1.0), vec![0.0, 0.0]);
        // γλ = 2 · 1.5 = 3 on [4, 4, −4]: τ = (12 − 3)/3 = 3.
        let prox = LinfNorm::new(1.5).unwrap();
        assert_close(&apply(&prox, &[4.0, 4.0, -4.0], 2.0), &[3.0, 3.0, -3.0], 1e-15);
    }

    #[test]
    fn matches_moreau_decomposition_with_unit_ball() {
        // x = v − γλ · P_B(v/(γλ)), with P_B the projection onto the unit ℓ1 ball.
        let unit_ball = L1Ball::new(1.0).unwrap();
        for seed in 0..10 {
            let v = scaled_gaussian(6, 1, seed, 1.5);
            let values: Vec<f64> = (0..6).map(|i| v[(i, 0)]).collect();
            for (weight, gamma) in [(0.5, 1.0), (2.0, 0.7), (10.0, 1.0)] {
                let t = weight * gamma;
                let scaled: Vec<f64> = values.iter().map(|v| v / t).collect();
                let projected = apply(&unit_ball, &scaled, 1.0);
                let expected: Vec<f64> = values.iter().zip(&projected).map(|(v, p)| v - t * p).collect();
                let x = apply(&LinfNorm::new(weight).unwrap(), &values, gamma);
                assert_close(&x, &expected, 1e-12);
            }
        }
    }

    #[test]
    fn jacobian_known_values() {
        let prox = LinfNorm::new(1.0).unwrap();
        // x₀ = τ, x₁ = −τ with τ = (v₀ − v₁ − 1)/2, x₂ = v₂: the rows give
        // Jᵀ [1, 2, 3] = [(1 − 2)/2, −(1 − 2)/2, 3] = [−0.5, 0.5, 3].
        let v_bar = vjp(&prox, &[3.0, -2.5, 0.5], 1.0, &[1.0, 2.0, 3.0]);
        assert_close(&v_bar, &[-0.5, 0.5, 3.0], 1e-15);
        // Zero region, the boundary included.
        assert_eq!(vjp(&prox, &[0.5, -0.5], 1.0, &[1.0, 2.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn zero_step_is_identity() {
        let prox = LinfNorm::new(3.0).unwrap();
        assert_zero_step_is_identity(&prox, gaussian(5, 3, 17).as_ref());
        // Also at v = 0 and with a zero weight.
        assert_zero_step_is_identity(&prox, Mat::zeros(3, 2).as_ref());
        let zero_weight = LinfNorm::new(0.0).unwrap();
        assert_eq!(apply(&zero_weight, &[0.0, 2.0], 1.0), vec![0.0, 2.0]);
        assert_eq!(vjp(&zero_weight, &[0.0, 0.0], 1.0, &[1.0, 2.0]), vec![1.0, 2.0]);
    }

    #[test]
    fn vjp_matches_finite_differences() {
        for seed in 0..8 {
            let v = scaled_gaussian(7, 3, seed, 2.0);
            let c = gaussian(7, 3, seed + 70);
            // γλ = 1.5 clips a few entries of each column; γλ = 100 zeroes every column.
            assert_vjp_matches_fd(&LinfNorm::new(1.5).unwrap(), v.as_ref(), 1.0, c.as_ref());
            let zeroed = LinfNorm::new(100.0).unwrap();
            let data = no_data::<f64>(3);
            let check = optlayer_testing::fd::check_prox_vjp(
                &zeroed,
                v.as_ref(),
                1.0,
                data.as_ref(),
                c.as_ref(),
                &Default::default(),
            );
            assert_eq!(check.max_abs_error, 0.0, "{check:?}");
        }
    }

    #[test]
    fn f32_matches_f64() {
        let v = scaled_gaussian(9, 4, 18, 2.0);
        let c = gaussian(9, 4, 19);
        assert_f32_matches_f64(
            &LinfNorm::<f32>::new(1.2).unwrap(),
            &LinfNorm::<f64>::new(1.2).unwrap(),
            v.as_ref(),
            1.5,
            c.as_ref(),
        );
    }

    #[test]
    fn huge_entries_stay_finite() {
        let prox = LinfNorm::new(1.0).unwrap();
        assert_eq!(apply(&prox, &[3e200, -1e200], 2.0), vec![3e200, -1e200]);
        let prox = LinfNorm::new(1e200).unwrap();
        assert_close(
            &apply(&prox, &[3e200, -1e200, 5e199], 1.0),
            &[2e200, -1e200, 5e199],
            1e-14,
        );
        assert_eq!(value(&LinfNorm::new(1.0).unwrap(), &[3e200, -4e200]), 4e200);
    }

    #[test]
    fn large_entries_keep_clipped_set() {
        let prox = LinfNorm::new(1.0).unwrap();
        // Both entries are clipped at τ = 1e17 − 0.5, so J = s sᵀ/2 and
        // Jᵀ [1, 0] = [0.5, 0.5].
        assert_eq!(vjp(&prox, &[1e17, 1e17], 1.0, &[1.0, 0.0]), vec![0.5, 0.5]);
        // Signs [+, −]: Jᵀ [1, 0] = [0.5, −0.5].
        assert_eq!(vjp(&prox, &[1e17, -1e17], 1.0, &[1.0, 0.0]), vec![0.5, -0.5]);
        // γλ = 24 clips both entries at τ = 1e17 − 4, although their
        // magnitudes differ by 16.
        let prox = LinfNorm::new(12.0).unwrap();
        assert_eq!(
            vjp(&prox, &[1e17 + 16.0, -1e17], 2.0, &[1.0, 0.0]),
            vec![0.5, -0.5]
        );
    }

    #[test]
    fn value_known_points() {
        let prox = LinfNorm::new(0.5).unwrap();
        assert_eq!(value(&prox, &[1.0, -3.0, 2.0]), 1.5);
        assert_eq!(value(&prox, &[0.0, 0.0]), 0.0);
    }

    #[test]
    fn optimality_by_subgradient_inequality() {
        let prox = LinfNorm::new(1.0).unwrap();
        // Columns of growing scale: some zeroed, some clipped.
        let base = gaussian(5, 6, 51);
        let v = Mat::from_fn(5, 6, |i, j| base[(i, j)] * (0.1 + 0.5 * j as f64));
        let points: Vec<Mat<f64>> = (0..20).map(|k| scaled_gaussian(5, 6, 600 + k, 2.0)).collect();
        assert_subgradient_inequality(&prox, v.as_ref(), 1.3, &points);
    }

    #[test]
    fn negative_or_nan_weight_rejected() {
        let err = LinfNorm::new(-2.0).unwrap_err();
        assert!(err.to_string().contains("linf norm weight"), "{err}");
        assert!(matches!(
            LinfNorm::new(f64::NAN),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(LinfNorm::new(0.0).is_ok());
    }
}
