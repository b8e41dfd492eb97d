use faer::{Mat, MatMut, MatRef};
use optlayer_core::columns::map1;
use optlayer_core::prox::shrink;
use optlayer_core::validate::check_nonnegative;
use optlayer_core::{Entrywise, Error, ParamInfo, Parameterized, Prox, Result, Scalar};

/// The weighted ℓ1 norm `g(x) = Σ_i w_i |x_i|`, whose prox is soft-thresholding:
/// `prox_{γg}(v)_i = sign(v_i) · max(|v_i| − γ w_i, 0)`.
///
/// Weights are one scalar for every entry, one per entry, or one learnable
/// scalar shared by every entry and sample (a 1 x 1 parameter whose gradient
/// is summed over the batch). A zero weight leaves its entry unregularized.
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
    Learnable { name: String, value: Mat<T> },
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

    /// Creates `g(x) = λ · ‖x‖₁` with `λ` the learnable parameter `name`,
    /// starting at `weight`.
    ///
    /// After each update a negative `λ` is set to zero, the nearest valid
    /// weight.
    ///
    /// # Errors
    /// When `weight` is negative or not finite.
    pub fn learnable(name: impl Into<String>, weight: T) -> Result<Self> {
        check_nonnegative("l1 weight", weight)?;
        Ok(Self {
            weights: Weights::Learnable {
                name: name.into(),
                value: Mat::from_fn(1, 1, |_, _| weight),
            },
        })
    }

    /// Returns the weight shared by every entry, if there is one.
    fn shared_weight(&self) -> Option<T> {
        match &self.weights {
            Weights::Scalar(w) => Some(*w),
            Weights::Learnable { value, .. } => Some(value[(0, 0)]),
            Weights::PerEntry(_) => None,
        }
    }

    fn threshold(&self, row: usize, gamma: T) -> T {
        match &self.weights {
            Weights::PerEntry(w) => gamma * w[row],
            _ => gamma * self.shared_weight().unwrap_or_else(T::zero),
        }
    }
}

impl<T: Scalar> Parameterized<T> for L1Norm<T> {
    fn param_count(&self) -> usize {
        usize::from(matches!(self.weights, Weights::Learnable { .. }))
    }

    fn param_info(&self, index: usize) -> ParamInfo {
        match &self.weights {
            Weights::Learnable { name, .. } if index == 0 => ParamInfo {
                name: name.clone(),
                nrows: 1,
                ncols: 1,
            },
            _ => panic!("parameter index {index} out of range for this l1 norm"),
        }
    }

    fn param(&self, index: usize) -> MatRef<'_, T> {
        match &self.weights {
            Weights::Learnable { value, .. } if index == 0 => value.as_ref(),
            _ => panic!("parameter index {index} out of range for this l1 norm"),
        }
    }

    fn param_mut(&mut self, index: usize) -> MatMut<'_, T> {
        match &mut self.weights {
            Weights::Learnable { value, .. } if index == 0 => value.as_mut(),
            _ => panic!("parameter index {index} out of range for this l1 norm"),
        }
    }

    fn after_param_update(&mut self) -> Result<()> {
        if let Weights::Learnable { name, value } = &mut self.weights {
            let w = value[(0, 0)];
            if w.is_nan() || w.is_infinite() {
                return Err(Error::NonFiniteGradient {
                    what: "parameter".into(),
                    param: name.clone(),
                    row: 0,
                    col: 0,
                    value: w.to_f64_lossless(),
                });
            }
            value[(0, 0)] = w.max(T::zero());
        }
        Ok(())
    }
}

impl<T: Scalar> Prox<T> for L1Norm<T> {
    fn is_separable(&self) -> bool {
        true
    }

    fn entrywise(&self, gamma: T) -> Option<Entrywise<T>> {
        let w = self.shared_weight()?;
        Some(Entrywise::Shrink { threshold: gamma * w })
    }

    fn dim(&self) -> Option<usize> {
        match &self.weights {
            Weights::PerEntry(w) => Some(w.len()),
            _ => None,
        }
    }

    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> Option<T> {
        let mut sum = T::zero();
        for row in 0..x.nrows() {
            // The threshold at step 1 is the entry's weight.
            sum += self.threshold(row, T::one()) * x[(row, col)].abs();
        }
        Some(sum)
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, _data: MatRef<'_, T>) {
        match self.shared_weight() {
            Some(w) => {
                let t = gamma * w;
                map1(out, v, move |v| shrink(v, t));
            }
            None => {
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
        match self.shared_weight() {
            Some(w) => {
                let t = gamma * w;
                faer::zip!(v_bar, v, cotangent).for_each(|faer::unzip!(o, v, c)| *o = pass(*v, t, *c));
            }
            None => {
                for col in 0..v.ncols() {
                    for row in 0..v.nrows() {
                        v_bar[(row, col)] =
                            pass(v[(row, col)], self.threshold(row, gamma), cotangent[(row, col)]);
                    }
                }
            }
        }
    }

    /// Adds `∂⟨c, prox(v)⟩/∂λ = −γ Σ sign(v_i) c_i` over the entries with
    /// `|v_i| > γλ`, summed over the batch, when the weight is learnable.
    fn accumulate_grad(
        &self,
        grads: &mut [Mat<T>],
        v: MatRef<'_, T>,
        gamma: T,
        _data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        let Weights::Learnable { value, .. } = &self.weights else {
            return;
        };
        let t = gamma * value[(0, 0)];
        let mut sum = T::zero();
        for col in 0..v.ncols() {
            for row in 0..v.nrows() {
                let entry = v[(row, col)];
                if entry.abs() > t {
                    sum -= gamma * entry.signum() * cotangent[(row, col)];
                }
            }
        }
        grads[0][(0, 0)] += sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;

    /// The branchless soft-threshold equals the branching definition bit for
    /// bit, signed zeros, infinities and NaN included, in the prox's
    /// vectorized loop as well as entry by entry.
    #[test]
    fn shrink_matches_the_branching_definition() {
        fn branching(v: f64, t: f64) -> f64 {
            if v > t {
                v - t
            } else if v < -t {
                v + t
            } else {
                0.0
            }
        }
        let values = [
            0.0,
            -0.0,
            0.3,
            -0.3,
            0.5,
            -0.5,
            0.5000000000000001,
            2.0,
            -7.5,
            1e300,
            -1e300,
            1e-310,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        // Weight and step; the last pair overflows to an infinite threshold.
        for (weight, gamma) in [
            (0.0, 1.0),
            (0.5, 1.0),
            (1e-310, 1.0),
            (1.5, 2.0),
            (f64::MAX, 1.0),
            (f64::MAX, 2.0),
        ] {
            let t = weight * gamma;
            let out = apply(&L1Norm::new(weight).unwrap(), &values, gamma);
            for (&v, &got) in values.iter().zip(&out) {
                let expected = branching(v, t);
                assert_eq!(shrink(v, t).to_bits(), expected.to_bits(), "shrink({v}, {t})");
                assert_eq!(
                    got.to_bits(),
                    expected.to_bits(),
                    "prox at {v} with threshold {t}"
                );
            }
        }
    }

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
    fn zero_weight_entry_is_unregularized() {
        let prox = L1Norm::with_weights(vec![0.0, 2.0]).unwrap();
        let values = [0.1, 0.1];
        assert_eq!(apply(&prox, &values, 1.0), vec![0.1, 0.0]);
        assert_eq!(derivative(&prox, &values, 1.0), vec![1.0, 0.0]);
        assert_eq!(apply(&prox, &[-7.0, -7.0], 3.0), vec![-7.0, -1.0]);
    }

    #[test]
    fn value_known_points() {
        let no_data = Mat::<f64>::zeros(0, 2);
        let x = Mat::from_fn(3, 2, |i, j| [[1.0, -2.0, 0.5], [0.0, 3.0, -4.0]][j][i]);
        let scalar = L1Norm::new(0.5).unwrap();
        assert_eq!(scalar.value(x.as_ref(), no_data.as_ref(), 0), Some(1.75));
        assert_eq!(scalar.value(x.as_ref(), no_data.as_ref(), 1), Some(3.5));
        // 0 · 1 + 1 · 2 + 2 · 0.5 = 3.
        let per_entry = L1Norm::with_weights(vec![0.0, 1.0, 2.0]).unwrap();
        assert_eq!(per_entry.value(x.as_ref(), no_data.as_ref(), 0), Some(3.0));
        let learnable = L1Norm::learnable("lambda", 2.0).unwrap();
        assert_eq!(learnable.value(x.as_ref(), no_data.as_ref(), 1), Some(14.0));
    }

    #[test]
    fn optimality_by_subgradient_inequality() {
        use crate::prox::test_support::assert_subgradient_inequality;
        use optlayer_testing::random::gaussian;
        let prox = L1Norm::with_weights(vec![0.0, 0.4, 1.0, 0.7]).unwrap();
        let v = gaussian(4, 3, 9);
        let points: Vec<Mat<f64>> = (0..20).map(|k| gaussian(4, 3, 800 + k)).collect();
        assert_subgradient_inequality(&prox, v.as_ref(), 0.8, &points);
    }

    #[test]
    fn learnable_weight_gradient_sums_over_batch() {
        // Shared λ = 0.5 on the batch [1, −2], [0.2, 0.7], [−0.1, 3] with
        // loss = sum of outputs: outputs [0.5, −1.5], [0, 0.2], [0, 2.5], and
        // ∂loss/∂λ = −1 + 1 − 1 − 1 = −2.
        let prox = L1Norm::learnable("lambda", 0.5).unwrap();
        let v = Mat::from_fn(2, 3, |i, j| [[1.0, -2.0], [0.2, 0.7], [-0.1, 3.0]][j][i]);
        let mut out = Mat::zeros(2, 3);
        let no_data = Mat::<f64>::zeros(0, 3);
        prox.prox(out.as_mut(), v.as_ref(), 1.0, no_data.as_ref());
        let expected = Mat::from_fn(2, 3, |i, j| [[0.5, -1.5], [0.0, 0.2], [0.0, 2.5]][j][i]);
        assert!((&out - &expected).norm_max() < 1e-15, "{out:?}");
        let mut grads = vec![Mat::<f64>::zeros(1, 1)];
        prox.accumulate_grad(
            &mut grads,
            v.as_ref(),
            1.0,
            no_data.as_ref(),
            Mat::from_fn(2, 3, |_, _| 1.0).as_ref(),
        );
        assert_eq!(grads[0].shape(), (1, 1));
        assert!((grads[0][(0, 0)] + 2.0).abs() < 1e-15, "{:?}", grads[0]);
    }

    #[test]
    fn learnable_weight_projected_to_nonnegative() {
        let mut prox = L1Norm::learnable("lambda", 0.5).unwrap();
        prox.param_mut(0)[(0, 0)] = -0.25;
        prox.after_param_update().unwrap();
        assert_eq!(prox.param(0)[(0, 0)], 0.0);
        prox.param_mut(0)[(0, 0)] = f64::NAN;
        assert!(prox.after_param_update().is_err());
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
