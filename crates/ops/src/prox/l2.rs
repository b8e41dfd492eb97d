use faer::{MatMut, MatRef};
use optlayer_core::columns::col_norm2;
use optlayer_core::validate::check_nonnegative;
use optlayer_core::{Parameterized, Prox, Result, Scalar};

/// The Euclidean norm of each column, `g(x) = λ ‖x‖₂`, whose prox is block
/// soft-thresholding:
///
/// `prox_{γg}(v) = max(1 − γλ/‖v‖₂, 0) · v`,
///
/// which shrinks the whole column towards zero and sets it to zero when
/// `‖v‖₂ ≤ γλ` (Parikh and Boyd, "Proximal Algorithms", Foundations and
/// Trends in Optimization 1(3), 2014, block soft thresholding). The norm is
/// computed with scaling, so entries near 1e200 in `f64` give finite results.
///
/// Derivative convention, used identically by the map and its
/// vector-Jacobian product: with `t = γλ` and `u = v/‖v‖₂`, the Jacobian is
/// `(1 − t/‖v‖₂) I + (t/‖v‖₂) u uᵀ` where `‖v‖₂ > t`, and zero where
/// `‖v‖₂ ≤ t`, except that `t = 0` (the map is the identity) has the
/// identity Jacobian, also at `v = 0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct L2Norm<T> {
    weight: T,
}

impl<T: Scalar> L2Norm<T> {
    /// Creates `g(x) = weight · ‖x‖₂`.
    ///
    /// # Errors
    /// When `weight` is negative or not finite.
    pub fn new(weight: T) -> Result<Self> {
        check_nonnegative("l2 norm weight", weight)?;
        Ok(Self { weight })
    }

    /// Returns the weight `λ`.
    pub fn weight(&self) -> T {
        self.weight
    }
}

impl<T: Scalar> Parameterized<T> for L2Norm<T> {}

impl<T: Scalar> Prox<T> for L2Norm<T> {
    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> Option<T> {
        Some(self.weight * col_norm2(x, col))
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, _data: MatRef<'_, T>) {
        let threshold = gamma * self.weight;
        for col in 0..v.ncols() {
            let scale = if threshold == T::zero() {
                T::one()
            } else {
                let norm = col_norm2(v, col);
                if norm > threshold {
                    T::one() - threshold / norm
                } else {
                    T::zero()
                }
            };
            for row in 0..v.nrows() {
                out[(row, col)] = scale * v[(row, col)];
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
        let threshold = gamma * self.weight;
        for col in 0..v.ncols() {
            if threshold == T::zero() {
                for row in 0..v.nrows() {
                    v_bar[(row, col)] = cotangent[(row, col)];
                }
                continue;
            }
            let norm = col_norm2(v, col);
            if norm <= threshold {
                for row in 0..v.nrows() {
                    v_bar[(row, col)] = T::zero();
                }
                continue;
            }
            // The Jacobian is symmetric: v_bar = (1 − t/‖v‖) c + (t/‖v‖) ⟨u, c⟩ u,
            // with the unit vector u = v/‖v‖ formed entry by entry to avoid overflow.
            let ratio = threshold / norm;
            let mut u_dot_c = T::zero();
            for row in 0..v.nrows() {
                u_dot_c += (v[(row, col)] / norm) * cotangent[(row, col)];
            }
            let along_u = ratio * u_dot_c;
            for row in 0..v.nrows() {
                v_bar[(row, col)] =
                    (T::one() - ratio) * cotangent[(row, col)] + along_u * (v[(row, col)] / norm);
            }
        }
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
    fn block_soft_threshold_known_values() {
        let prox = L2Norm::new(1.0).unwrap();
        assert_close(&apply(&prox, &[3.0, 4.0], 1.0), &[2.4, 3.2], 1e-15);
        assert_eq!(apply(&prox, &[0.3, 0.4], 1.0), vec![0.0, 0.0]);
        // ‖v‖ = 5 with γλ = 2 · 1.5 = 3: scale 1 − 3/5 = 0.4.
        let prox = L2Norm::new(1.5).unwrap();
        assert_close(&apply(&prox, &[0.0, -3.0, 4.0], 2.0), &[0.0, -1.2, 1.6], 1e-15);
    }

    #[test]
    fn zero_vector_gives_zero_without_nan() {
        let prox = L2Norm::new(1.0).unwrap();
        assert_eq!(apply(&prox, &[0.0, 0.0, 0.0], 1.0), vec![0.0, 0.0, 0.0]);
        let v_bar = vjp(&prox, &[0.0, 0.0, 0.0], 1.0, &[1.0, -2.0, 0.5]);
        assert_eq!(v_bar, vec![0.0, 0.0, 0.0]);
        // With a zero weight the map is the identity, also at v = 0.
        let identity = L2Norm::new(0.0).unwrap();
        assert_eq!(apply(&identity, &[0.0, 0.0], 1.0), vec![0.0, 0.0]);
        assert_eq!(vjp(&identity, &[0.0, 0.0], 1.0, &[1.0, -2.0]), vec![1.0, -2.0]);
    }

    #[test]
    fn jacobian_known_values() {
        // v = [3, 4], t = 1: J = 0.8 I + 0.2 u uᵀ with u = [0.6, 0.8], so
        // Jᵀ e₁ = [0.8 + 0.2 · 0.36, 0.2 · 0.48] = [0.872, 0.096].
        let prox = L2Norm::new(1.0).unwrap();
        assert_close(&vjp(&prox, &[3.0, 4.0], 1.0, &[1.0, 0.0]), &[0.872, 0.096], 1e-15);
        // Inside the zeroed region the Jacobian is zero, also on its boundary ‖v‖ = t.
        assert_eq!(vjp(&prox, &[0.3, 0.4], 1.0, &[1.0, 1.0]), vec![0.0, 0.0]);
        assert_eq!(vjp(&prox, &[0.6, 0.8], 1.0, &[1.0, 1.0]), vec![0.0, 0.0]);
        assert_eq!(apply(&prox, &[0.6, 0.8], 1.0), vec![0.0, 0.0]);
    }

    #[test]
    fn zero_step_is_identity() {
        let prox = L2Norm::new(2.0).unwrap();
        assert_zero_step_is_identity(&prox, gaussian(4, 3, 7).as_ref());
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let prox = L2Norm::new(0.8).unwrap();
        for seed in 0..8 {
            // Columns of norm about 2 to 3, away from the kink at ‖v‖ = γλ = 0.6.
            let v = gaussian(5, 3, seed);
            let c = gaussian(5, 3, seed + 100);
            assert_vjp_matches_fd(&prox, v.as_ref(), 0.75, c.as_ref());
        }
    }

    #[test]
    fn f32_matches_f64() {
        let v = gaussian(6, 4, 3);
        let c = gaussian(6, 4, 4);
        assert_f32_matches_f64(
            &L2Norm::<f32>::new(0.7).unwrap(),
            &L2Norm::<f64>::new(0.7).unwrap(),
            v.as_ref(),
            1.3,
            c.as_ref(),
        );
    }

    #[test]
    fn huge_entries_stay_finite() {
        let prox = L2Norm::new(1e199).unwrap();
        let x = apply(&prox, &[3e200, 4e200], 1.0);
        assert_close(&x, &[2.94e200, 3.92e200], 1e-14);
        let v_bar = vjp(&prox, &[3e200, 4e200], 1.0, &[1.0, 0.0]);
        // J = 0.98 I + 0.02 u uᵀ: Jᵀ e₁ = [0.98 + 0.02 · 0.36, 0.02 · 0.48].
        assert_close(&v_bar, &[0.9872, 0.0096], 1e-14);
        let g = value(&prox, &[3e200, 4e200]);
        assert!(g.is_infinite(), "λ‖x‖ = 5e399 overflows: {g}");
        let g = value(&L2Norm::new(1.0).unwrap(), &[3e200, 4e200]);
        assert!((g / 5e200 - 1.0).abs() < 1e-14, "{g}");
    }

    #[test]
    fn value_known_points() {
        let prox = L2Norm::new(2.0).unwrap();
        assert_eq!(value(&prox, &[3.0, -4.0]), 10.0);
        assert_eq!(value(&prox, &[0.0, 0.0]), 0.0);
        let x = Mat::from_fn(2, 2, |i, j| [[1.0, 0.0], [0.0, -2.0]][j][i]);
        assert_eq!(prox.value(x.as_ref(), Mat::zeros(0, 2).as_ref(), 1), Some(4.0));
    }

    #[test]
    fn optimality_by_subgradient_inequality() {
        let prox = L2Norm::new(1.0).unwrap();
        // Columns scaled so that some are zeroed (‖v‖ ≤ γλ) and some shrunk.
        let base = gaussian(4, 6, 11);
        let v = Mat::from_fn(4, 6, |i, j| base[(i, j)] * (0.2 + 0.4 * j as f64));
        let points: Vec<Mat<f64>> = (0..20).map(|k| gaussian(4, 6, 200 + k)).collect();
        assert_subgradient_inequality(&prox, v.as_ref(), 1.5, &points);
    }

    #[test]
    fn negative_or_nan_weight_rejected() {
        assert!(matches!(L2Norm::new(-0.5), Err(Error::InvalidParameter { .. })));
        assert!(matches!(
            L2Norm::new(f64::NAN),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            L2Norm::new(f32::INFINITY),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(L2Norm::new(0.0).is_ok());
    }
}
