use faer::{MatMut, MatRef};
use optlayer_core::validate::check_nonnegative;
use optlayer_core::{Error, Parameterized, Prox, Result, Scalar};

/// The weighted ℓ1 norm `g(x) = Σ_i w_i |x_i|`, whose prox is soft-thresholding:
/// `prox_{γg}(v)_i = sign(v_i) · max(|v_i| − γ w_i, 0)`.
///
/// Weights are one scalar for every entry or one per entry. A zero weight
/// leaves its entry unregularized.
///
/// Derivative convention, used identically by the map and its
/// vector-Jacobian product: with threshold `t = γ w_i`, the derivative is 1
/// where `|v_i| > t` and 0 where `|v_i| ≤ t`, except that `t = 0` (the map is
/// the identity) has derivative 1 everywhere.
#[derive(Clone, Debug, PartialEq)]
pub struct L1Norm<T: Scalar> {
    weights: Weights<T>,
}

#[derive(Clone, Debug, PartialEq)]
enum Weights<T> {
    Scalar(T),
    PerEntry(Vec<T>),
}

impl<T: Scalar> L1Norm<T> {
    /// Creates `g(x) = weight · ‖x‖₁`.
    ///
    /// # Errors
    /// When `weight` is negative or not finite.
    pub fn new(weight: T) -> Result<Self> {
        check_nonnegative("l1 weight", weight)?;
        Ok(Self {
            weights: Weights::Scalar(weight),
        })
    }

    /// Creates `g(x) = Σ_i weights[i] · |x_i|` on vectors of length `weights.len()`.
    ///
    /// # Errors
    /// When the list is empty or an entry is negative or not finite.
    pub fn with_weights(weights: Vec<T>) -> Result<Self> {
        if weights.is_empty() {
            return Err(Error::Empty {
                what: "l1 weight list".into(),
                fix: "pass one weight per entry".into(),
            });
        }
        for (i, &w) in weights.iter().enumerate() {
            check_nonnegative(&format!("l1 weight [{i}]"), w)?;
        }
        Ok(Self {
            weights: Weights::PerEntry(weights),
        })
    }

    fn threshold(&self, row: usize, gamma: T) -> T {
        match &self.weights {
            Weights::Scalar(w) => gamma * *w,
            Weights::PerEntry(w) => gamma * w[row],
        }
    }
}

/// Returns `sign(v) · max(|v| − t, 0)`.
#[inline(always)]
fn shrink<T: Scalar>(v: T, t: T) -> T {
    if v > t {
        v - t
    } else if v < -t {
        v + t
    } else {
        T::zero()
    }
}

impl<T: Scalar> Parameterized<T> for L1Norm<T> {}

impl<T: Scalar> Prox<T> for L1Norm<T> {
    fn dim(&self) -> Option<usize> {
        match &self.weights {
            Weights::Scalar(_) => None,
            Weights::PerEntry(w) => Some(w.len()),
        }
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, _data: MatRef<'_, T>) {
        match &self.weights {
            Weights::Scalar(w) => {
                let t = gamma * *w;
                faer::zip!(out, v).for_each(|faer::unzip!(o, v)| *o = shrink(*v, t));
            }
            Weights::PerEntry(_) => {
                for col in 0..v.ncols() {
                    for row in 0..v.nrows() {
                        out[(row, col)] = shrink(v[(row, col)], self.threshold(row, gamma));
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
        let pass = |v: T, t: T, c: T| {
            if t == T::zero() || v.abs() > t {
                c
            } else {
                T::zero()
            }
        };
        match &self.weights {
            Weights::Scalar(w) => {
                let t = gamma * *w;
                faer::zip!(v_bar, v, cotangent).for_each(|faer::unzip!(o, v, c)| *o = pass(*v, t, *c));
            }
            Weights::PerEntry(_) => {
                for col in 0..v.ncols() {
                    for row in 0..v.nrows() {
                        v_bar[(row, col)] =
                            pass(v[(row, col)], self.threshold(row, gamma), cotangent[(row, col)]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;

    fn apply(prox: &L1Norm<f64>, values: &[f64], gamma: f64) -> Vec<f64> {
        let v = Mat::from_fn(values.len(), 1, |i, _| values[i]);
        let mut out = Mat::zeros(values.len(), 1);
        prox.prox(out.as_mut(), v.as_ref(), gamma, Mat::<f64>::zeros(0, 1).as_ref());
        (0..values.len()).map(|i| out[(i, 0)]).collect()
    }

    fn derivative(prox: &L1Norm<f64>, values: &[f64], gamma: f64) -> Vec<f64> {
        let v = Mat::from_fn(values.len(), 1, |i, _| values[i]);
        let ones = Mat::from_fn(values.len(), 1, |_, _| 1.0);
        let mut out = Mat::zeros(values.len(), 1);
        prox.prox_vjp(
            out.as_mut(),
            v.as_ref(),
            gamma,
            Mat::<f64>::zeros(0, 1).as_ref(),
            ones.as_ref(),
        );
        (0..values.len()).map(|i| out[(i, 0)]).collect()
    }

    #[test]
    fn soft_threshold_known_values() {
        let prox = L1Norm::new(0.5).unwrap();
        let out = apply(&prox, &[-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0], 1.0);
        assert_eq!(out, vec![-0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5]);
    }

    #[test]
    fn soft_threshold_derivative_at_boundary_is_zero() {
        let prox = L1Norm::new(0.5).unwrap();
        let d = derivative(&prox, &[-1.0, -0.5, 0.0, 0.5, 0.6], 1.0);
        assert_eq!(d, vec![1.0, 0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn zero_threshold_is_identity_with_unit_derivative() {
        let prox = L1Norm::new(0.0).unwrap();
        let values = [-2.0, 0.0, 3.0];
        assert_eq!(apply(&prox, &values, 1.0), values.to_vec());
        assert_eq!(derivative(&prox, &values, 1.0), vec![1.0, 1.0, 1.0]);
        let prox = L1Norm::new(2.0).unwrap();
        assert_eq!(apply(&prox, &values, 0.0), values.to_vec());
        assert_eq!(derivative(&prox, &values, 0.0), vec![1.0, 1.0, 1.0]);
    }

    #[test]
    fn per_entry_weights_with_zero_weight() {
        let prox = L1Norm::with_weights(vec![0.0, 1.0, 2.0]).unwrap();
        assert_eq!(apply(&prox, &[0.5, 0.5, 3.0], 1.0), vec![0.5, 0.0, 1.0]);
    }

    #[test]
    fn negative_or_nan_weight_rejected() {
        assert!(matches!(L1Norm::new(-1.0), Err(Error::InvalidParameter { .. })));
        assert!(matches!(
            L1Norm::new(f64::NAN),
            Err(Error::InvalidParameter { .. })
        ));
        let err = L1Norm::with_weights(vec![1.0, -0.1]).unwrap_err();
        assert!(err.to_string().contains("l1 weight [1]"), "{err}");
        assert!(matches!(
            L1Norm::<f64>::with_weights(vec![]),
            Err(Error::Empty { .. })
        ));
    }
}
