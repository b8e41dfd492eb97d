use faer::{Mat, MatMut, MatRef};
use optlayer_core::{Error, ParamInfo, Parameterized, Prox, Result, Scalar};

use super::box_set::check_bounds;

/// A separable function restricted to a box: `g(x) = f(x) + ι_{[l, u]}(x)`.
///
/// For a separable `f = Σ_i f_i(x_i)` the prox acts on each entry alone, and
/// the minimizer of a convex function of one variable over an interval is
/// the clipped unconstrained minimizer, so
/// `prox_{γg}(v) = clip(prox_{γf}(v), l, u)`. This gives, for example, the
/// prox of `μ‖x‖₁ + ι_{[l, u]}` that proximal gradient needs for a lasso
/// with bounds.
///
/// Derivative convention, used identically by the map and its
/// vector-Jacobian product: an entry whose inner prox lies strictly inside
/// `(l_i, u_i)` passes the inner derivative; an entry at or beyond a bound
/// has derivative 0.
pub struct BoxConstrained<T: Scalar> {
    inner: Box<dyn Prox<T>>,
    lower: Vec<T>,
    upper: Vec<T>,
}

impl<T: Scalar> std::fmt::Debug for BoxConstrained<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxConstrained")
            .field("lower", &self.lower)
            .field("upper", &self.upper)
            .finish_non_exhaustive()
    }
}

impl<T: Scalar> BoxConstrained<T> {
    /// Creates `g = inner + ι_{[lower, upper]}` on vectors of length
    /// `lower.len()`. Bounds may be infinite.
    ///
    /// # Errors
    /// - `inner` is the indicator of a set ([`Prox::is_indicator`]): the
    ///   clipped projection onto one set is not the projection onto the
    ///   intersection with the box;
    /// - `inner` is not separable ([`Prox::is_separable`]), or has per-entry
    ///   parameters (a fixed [`Prox::dim`]): the same function must act on
    ///   every entry;
    /// - the bound lists are empty or differ in length;
    /// - a bound is NaN, a lower bound is `+∞`, an upper bound is `−∞`, or
    ///   `lower[i] > upper[i]`.
    pub fn new(inner: impl Prox<T> + 'static, lower: Vec<T>, upper: Vec<T>) -> Result<Self> {
        if inner.is_indicator() {
            return Err(Error::InvalidModel {
                what: "inner function of a box-constrained prox".into(),
                reason: "it is the indicator of a set, and clipping its projection to the box does not \
                         project onto the intersection; pass a single BoxSet with the combined bounds \
                         for two boxes, or put the set and the box in separate terms of a splitting \
                         (Davis–Yin or linearized ADMM)"
                    .into(),
            });
        }
        if !inner.is_separable() {
            return Err(Error::InvalidModel {
                what: "inner function of a box-constrained prox".into(),
                reason: "it is not separable, so clipping its prox would not give the prox of the sum; \
                         use a splitting with a separate box term (Davis–Yin or linearized ADMM)"
                    .into(),
            });
        }
        if lower.is_empty() || lower.len() != upper.len() {
            return Err(Error::ShapeMismatch {
                what: "box bounds".into(),
                expected: "two nonempty lists of the same length".into(),
                found: format!("{} lower and {} upper bounds", lower.len(), upper.len()),
            });
        }
        if let Some(dim) = inner.dim() {
            return Err(Error::InvalidModel {
                what: "inner function of a box-constrained prox".into(),
                reason: format!(
                    "it is defined on dimension {dim} only (per-entry weights); use one shared weight, \
                     or a splitting with a separate box term"
                ),
            });
        }
        for (i, (&l, &u)) in lower.iter().zip(&upper).enumerate() {
            check_bounds(l, u, &format!(" [{i}]"))?;
        }
        Ok(Self {
            inner: Box::new(inner),
            lower,
            upper,
        })
    }
}

impl<T: Scalar> Parameterized<T> for BoxConstrained<T> {
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

impl<T: Scalar> Prox<T> for BoxConstrained<T> {
    fn is_separable(&self) -> bool {
        true
    }

    fn dim(&self) -> Option<usize> {
        Some(self.lower.len())
    }

    fn data_rows_needed(&self) -> usize {
        self.inner.data_rows_needed()
    }

    fn value(&self, x: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        let scale = (0..x.nrows()).fold(T::one(), |acc, i| acc.max(x[(i, col)].abs()));
        let tol = T::epsilon().sqrt() * scale;
        let inside =
            (0..x.nrows()).all(|i| x[(i, col)] >= self.lower[i] - tol && x[(i, col)] <= self.upper[i] + tol);
        if inside {
            self.inner.value(x, data, col)
        } else {
            Some(T::infinity())
        }
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, data: MatRef<'_, T>) {
        self.inner.prox(out.as_mut(), v, gamma, data);
        for col in 0..out.ncols() {
            for row in 0..out.nrows() {
                let entry = out[(row, col)];
                out[(row, col)] = entry.max(self.lower[row]).min(self.upper[row]);
            }
        }
    }

    fn prox_vjp(
        &self,
        mut v_bar: MatMut<'_, T>,
        v: MatRef<'_, T>,
        gamma: T,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        self.inner.prox_vjp(v_bar.as_mut(), v, gamma, data, cotangent);
        for col in 0..v.ncols() {
            for row in 0..v.nrows() {
                if !self.strictly_inside(v, gamma, data, row, col) {
                    v_bar[(row, col)] = T::zero();
                }
            }
        }
    }

    /// Passes the cotangent of the entries strictly inside the box to the
    /// inner map. This allocates a masked copy of the cotangent when the
    /// inner map has parameters.
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
        let masked = Mat::from_fn(v.nrows(), v.ncols(), |row, col| {
            if self.strictly_inside(v, gamma, data, row, col) {
                cotangent[(row, col)]
            } else {
                T::zero()
            }
        });
        self.inner.accumulate_grad(grads, v, gamma, data, masked.as_ref());
    }
}

impl<T: Scalar> BoxConstrained<T> {
    /// Returns whether the inner prox of entry `(row, col)` lies strictly
    /// inside its interval. The inner map is separable and the same for
    /// every entry (checked at construction), so it is evaluated on the
    /// 1 x 1 view of the entry, with no scratch memory.
    fn strictly_inside(
        &self,
        v: MatRef<'_, T>,
        gamma: T,
        data: MatRef<'_, T>,
        row: usize,
        col: usize,
    ) -> bool {
        let mut out = [T::zero()];
        self.inner.prox(
            MatMut::from_column_major_slice_mut(&mut out, 1, 1),
            v.submatrix(row, col, 1, 1),
            gamma,
            data.subcols(col, 1),
        );
        out[0] > self.lower[row] && out[0] < self.upper[row]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{L1Norm, SquaredL2};
    use faer::mat;
    use optlayer_testing::fd::{FdOptions, check_prox_grads, check_prox_vjp};
    use optlayer_testing::random::gaussian;

    fn empty() -> Mat<f64> {
        Mat::zeros(0, 1)
    }

    #[test]
    fn clips_the_soft_threshold() {
        // μ = 1, γ = 0.5, box [−1, 2]: soft(v, 0.5) then clip.
        let g = BoxConstrained::new(L1Norm::new(1.0).unwrap(), vec![-1.0; 5], vec![2.0; 5]).unwrap();
        let v = mat![[3.0], [0.3], [-0.8], [-4.0], [1.0]];
        let mut out = Mat::zeros(5, 1);
        g.prox(out.as_mut(), v.as_ref(), 0.5, empty().as_ref());
        assert_eq!(out, mat![[2.0], [0.0], [-0.30000000000000004], [-1.0], [0.5]]);
        // The prox minimizes g(u) + (u − v)²/(2γ): compare with a fine grid.
        for i in 0..5 {
            let objective = |u: f64| u.abs() + (u - v[(i, 0)]).powi(2) / (2.0 * 0.5);
            let best = (0..=30_000)
                .map(|k| -1.0 + 3.0 * k as f64 / 30_000.0)
                .min_by(|a, b| objective(*a).total_cmp(&objective(*b)))
                .unwrap();
            assert!(
                (out[(i, 0)] - best).abs() <= 1e-4,
                "entry {i}: {} vs grid {best}",
                out[(i, 0)]
            );
        }
    }

    #[test]
    fn vjp_and_grads_match_finite_differences() {
        let g = BoxConstrained::new(SquaredL2::new(0.7).unwrap(), vec![-0.5; 6], vec![0.8; 6]).unwrap();
        let v = gaussian(6, 4, 11);
        let c = gaussian(6, 4, 12);
        let data = Mat::<f64>::zeros(0, 4);
        let check = check_prox_vjp(
            &g,
            v.as_ref(),
            0.9,
            data.as_ref(),
            c.as_ref(),
            &FdOptions::default(),
        );
        assert!(check.passes(1e-7), "{check:?}");
        assert!(check.checked > 12, "{check:?}");

        let mut learnable =
            BoxConstrained::new(L1Norm::learnable("mu", 0.3).unwrap(), vec![-1.0; 6], vec![1.0; 6]).unwrap();
        let check = check_prox_grads(
            &mut learnable,
            v.as_ref(),
            0.9,
            data.as_ref(),
            c.as_ref(),
            &FdOptions::default(),
        );
        assert!(check.passes(1e-6), "{check:?}");
        assert!(check.fd_norm > 0.0, "{check:?}");
    }

    #[test]
    fn infinite_bounds_and_value() {
        let inf = f64::INFINITY;
        let g = BoxConstrained::new(L1Norm::new(2.0).unwrap(), vec![0.0, -inf], vec![inf, inf]).unwrap();
        let mut out = Mat::zeros(2, 1);
        g.prox(out.as_mut(), mat![[-3.0], [-3.0]].as_ref(), 1.0, empty().as_ref());
        assert_eq!(out, mat![[0.0], [-1.0]]);
        assert_eq!(
            g.value(mat![[1.0], [-1.0]].as_ref(), empty().as_ref(), 0),
            Some(4.0)
        );
        assert_eq!(
            g.value(mat![[-1.0], [0.0]].as_ref(), empty().as_ref(), 0),
            Some(inf)
        );
    }

    #[test]
    fn rejects_indicator_inner() {
        // Nonnegative clipped to [−3, −1] would return points outside both sets.
        let err = BoxConstrained::new(crate::Nonnegative, vec![-3.0], vec![-1.0]).unwrap_err();
        assert!(matches!(err, Error::InvalidModel { .. }), "{err}");
        assert!(err.to_string().contains("indicator"), "{err}");
        assert!(err.to_string().contains("BoxSet"), "{err}");
        let boxed = crate::BoxSet::uniform(0.0, 1.0).unwrap();
        assert!(matches!(
            BoxConstrained::new(boxed, vec![-1.0; 2], vec![2.0; 2]),
            Err(Error::InvalidModel { .. })
        ));
    }

    #[test]
    fn bound_errors_name_offending_bound() {
        let l1 = || L1Norm::new(1.0).unwrap();
        let cases: [(f64, f64, &str); 4] = [
            (0.0, f64::NAN, "upper bound [1]"),
            (f64::NAN, 1.0, "lower bound [1]"),
            (f64::INFINITY, f64::INFINITY, "lower bound [1]"),
            (-1.0, f64::NEG_INFINITY, "upper bound [1]"),
        ];
        for (lower, upper, name) in cases {
            let err = BoxConstrained::new(l1(), vec![0.0, lower], vec![1.0, upper]).unwrap_err();
            let Error::InvalidParameter { name: got, value, .. } = &err else {
                panic!("expected InvalidParameter, got {err}");
            };
            assert_eq!(got, name, "{err}");
            let offending = if name.starts_with("upper") { upper } else { lower };
            assert!(
                value == &offending || (value.is_nan() && offending.is_nan()),
                "{err}"
            );
        }
        // lower > upper reports the lower bound and names the upper one.
        let err = BoxConstrained::new(l1(), vec![2.0], vec![1.0]).unwrap_err();
        let Error::InvalidParameter { name, value, .. } = &err else {
            panic!("expected InvalidParameter, got {err}");
        };
        assert_eq!(name, "lower bound [0]", "{err}");
        assert!(err.to_string().contains("upper bound [0] = 1"), "{err}");
        assert_eq!(*value, 2.0);
    }

    #[test]
    fn rejects_bad_input() {
        let l1 = || L1Norm::new(1.0).unwrap();
        assert!(BoxConstrained::new(l1(), vec![1.0], vec![0.0]).is_err());
        assert!(BoxConstrained::new(l1(), vec![f64::NAN], vec![0.0]).is_err());
        assert!(BoxConstrained::new(l1(), vec![f64::INFINITY], vec![f64::INFINITY]).is_err());
        assert!(BoxConstrained::new(l1(), vec![], vec![]).is_err());
        assert!(BoxConstrained::new(l1(), vec![0.0, 0.0], vec![1.0]).is_err());
        assert!(
            BoxConstrained::new(
                L1Norm::with_weights(vec![1.0, 2.0]).unwrap(),
                vec![0.0; 2],
                vec![1.0; 2]
            )
            .is_err()
        );
        // A map that is not separable is rejected.
        let err =
            BoxConstrained::new(crate::L2Norm::new(1.0).unwrap(), vec![0.0; 2], vec![1.0; 2]).unwrap_err();
        assert!(err.to_string().contains("not separable"), "{err}");
    }
}
