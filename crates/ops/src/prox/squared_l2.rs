use faer::{MatMut, MatRef};
use optlayer_core::columns::map1;
use optlayer_core::validate::check_nonnegative;
use optlayer_core::{Error, Parameterized, Prox, Result, Scalar};

/// The weighted squared Euclidean norm `g(x) = ½ Σ_i w_i x_i²`, whose prox is
/// the scaling `prox_{γg}(v)_i = v_i / (1 + γ w_i)`; smooth, so models built
/// on it have differentiable fixed points.
///
/// The weight is one scalar for every entry, `g(x) = (w/2) ‖x‖²`, or one per
/// entry. A zero weight leaves its entry unregularized.
#[derive(Clone, Debug, PartialEq)]
pub struct SquaredL2<T> {
    weights: Weights<T>,
}

#[derive(Clone, Debug, PartialEq)]
enum Weights<T> {
    Scalar(T),
    PerEntry(Vec<T>),
}

impl<T: Scalar> SquaredL2<T> {
    /// Creates `g(x) = (weight/2) ‖x‖²`.
    ///
    /// # Errors
    /// When `weight` is negative or not finite.
    pub fn new(weight: T) -> Result<Self> {
        check_nonnegative("squared l2 weight", weight)?;
        Ok(Self {
            weights: Weights::Scalar(weight),
        })
    }

    /// Creates `g(x) = ½ Σ_i weights[i] · x_i²` on vectors of length `weights.len()`.
    ///
    /// # Errors
    /// When the list is empty or an entry is negative or not finite.
    pub fn with_weights(weights: Vec<T>) -> Result<Self> {
        if weights.is_empty() {
            return Err(Error::Empty {
                what: "squared l2 weight list".into(),
                fix: "pass one weight per entry".into(),
            });
        }
        for (i, &w) in weights.iter().enumerate() {
            check_nonnegative(&format!("squared l2 weight [{i}]"), w)?;
        }
        Ok(Self {
            weights: Weights::PerEntry(weights),
        })
    }

    fn weight(&self, row: usize) -> T {
        match &self.weights {
            Weights::Scalar(w) => *w,
            Weights::PerEntry(w) => w[row],
        }
    }
}

impl<T: Scalar> Parameterized<T> for SquaredL2<T> {}

impl<T: Scalar> Prox<T> for SquaredL2<T> {
    fn is_separable(&self) -> bool {
        true
    }

    fn dim(&self) -> Option<usize> {
        match &self.weights {
            Weights::Scalar(_) => None,
            Weights::PerEntry(w) => Some(w.len()),
        }
    }

    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> Option<T> {
        let mut sum = T::zero();
        for row in 0..x.nrows() {
            let entry = x[(row, col)];
            sum += self.weight(row) * entry * entry;
        }
        Some(T::lit(0.5) * sum)
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, _data: MatRef<'_, T>) {
        match &self.weights {
            Weights::Scalar(w) => {
                let scale = (T::one() + gamma * *w).recip();
                map1(out, v, move |v| scale * v);
            }
            Weights::PerEntry(w) => {
                for col in 0..v.ncols() {
                    for row in 0..v.nrows() {
                        out[(row, col)] = v[(row, col)] / (T::one() + gamma * w[row]);
                    }
                }
            }
        }
    }

    fn prox_vjp(
        &self,
        mut v_bar: MatMut<'_, T>,
        _v: MatRef<'_, T>,
        gamma: T,
        _data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        match &self.weights {
            Weights::Scalar(w) => {
                let scale = (T::one() + gamma * *w).recip();
                faer::zip!(v_bar, cotangent).for_each(|faer::unzip!(o, c)| *o = scale * *c);
            }
            Weights::PerEntry(w) => {
                for col in 0..cotangent.ncols() {
                    for row in 0..cotangent.nrows() {
                        v_bar[(row, col)] = cotangent[(row, col)] / (T::one() + gamma * w[row]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prox::test_support::*;
    use faer::Mat;
    use optlayer_testing::random::gaussian;

    #[test]
    fn scalar_weight_known_values() {
        let prox = SquaredL2::new(3.0).unwrap();
        assert_eq!(apply(&prox, &[4.0, -2.0], 1.0), vec![1.0, -0.5]);
        assert_eq!(vjp(&prox, &[4.0, -2.0], 1.0, &[1.0, 2.0]), vec![0.25, 0.5]);
        assert_eq!(prox.dim(), None);
    }

    #[test]
    fn per_entry_weights_with_zero_weight() {
        let prox = SquaredL2::with_weights(vec![0.0, 1.0, 3.0]).unwrap();
        assert_eq!(prox.dim(), Some(3));
        // γ = 1: divisors 1, 2, 4; the first entry is unregularized.
        assert_eq!(apply(&prox, &[5.0, 4.0, -8.0], 1.0), vec![5.0, 2.0, -2.0]);
        assert_eq!(
            vjp(&prox, &[5.0, 4.0, -8.0], 1.0, &[1.0, 1.0, 1.0]),
            vec![1.0, 0.5, 0.25]
        );
    }

    #[test]
    fn per_entry_matches_scalar_when_equal() {
        let scalar = SquaredL2::new(0.7).unwrap();
        let per_entry = SquaredL2::with_weights(vec![0.7; 4]).unwrap();
        let v = gaussian(4, 3, 5);
        let mut a = Mat::zeros(4, 3);
        let mut b = Mat::zeros(4, 3);
        scalar.prox(a.as_mut(), v.as_ref(), 1.3, no_data::<f64>(3).as_ref());
        per_entry.prox(b.as_mut(), v.as_ref(), 1.3, no_data::<f64>(3).as_ref());
        assert!((&a - &b).norm_max() < 1e-15, "{a:?} vs {b:?}");
    }

    #[test]
    fn zero_step_is_identity() {
        assert_zero_step_is_identity(&SquaredL2::new(2.0).unwrap(), gaussian(3, 2, 1).as_ref());
        let per_entry = SquaredL2::with_weights(vec![1.0, 0.0, 4.0]).unwrap();
        assert_zero_step_is_identity(&per_entry, gaussian(3, 2, 2).as_ref());
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let prox = SquaredL2::with_weights(vec![0.0, 0.5, 2.0, 1.0]).unwrap();
        for seed in 0..4 {
            let v = gaussian(4, 3, seed);
            let c = gaussian(4, 3, seed + 10);
            assert_vjp_matches_fd(&prox, v.as_ref(), 0.9, c.as_ref());
        }
    }

    #[test]
    fn f32_matches_f64() {
        let v = gaussian(3, 4, 6);
        let c = gaussian(3, 4, 7);
        assert_f32_matches_f64(
            &SquaredL2::<f32>::with_weights(vec![0.2, 0.0, 5.0]).unwrap(),
            &SquaredL2::<f64>::with_weights(vec![0.2, 0.0, 5.0]).unwrap(),
            v.as_ref(),
            1.1,
            c.as_ref(),
        );
    }

    #[test]
    fn huge_entries_stay_finite() {
        let prox = SquaredL2::with_weights(vec![1.0, 3.0]).unwrap();
        assert_eq!(apply(&prox, &[2e200, -4e200], 1.0), vec![1e200, -1e200]);
    }

    #[test]
    fn value_known_points() {
        assert_eq!(value(&SquaredL2::new(2.0).unwrap(), &[3.0, -4.0]), 25.0);
        // ½ (0 · 9 + 1 · 4 + 4 · 1) = 4.
        let per_entry = SquaredL2::with_weights(vec![0.0, 1.0, 4.0]).unwrap();
        assert_eq!(value(&per_entry, &[3.0, -2.0, 1.0]), 4.0);
    }

    #[test]
    fn optimality_by_subgradient_inequality() {
        let prox = SquaredL2::with_weights(vec![0.0, 0.5, 2.0, 1.0]).unwrap();
        let v = gaussian(4, 3, 8);
        let points: Vec<Mat<f64>> = (0..20).map(|k| gaussian(4, 3, 700 + k)).collect();
        assert_subgradient_inequality(&prox, v.as_ref(), 0.6, &points);
    }

    #[test]
    fn negative_or_nan_weights_rejected() {
        assert!(matches!(
            SquaredL2::new(-1.0),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            SquaredL2::new(f64::NAN),
            Err(Error::InvalidParameter { .. })
        ));
        let err = SquaredL2::with_weights(vec![1.0, f64::NAN]).unwrap_err();
        assert!(err.to_string().contains("squared l2 weight [1]"), "{err}");
        assert!(matches!(
            SquaredL2::with_weights(vec![0.5, -0.5]),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            SquaredL2::<f64>::with_weights(vec![]),
            Err(Error::Empty { .. })
        ));
    }
}
