//! Properties of an inference: functions of `(x, d)` where smaller values are better.

use faer::{ColRef, Mat, MatRef};
use optlayer_core::columns::norm2;
use optlayer_core::validate::{check_finite, check_nonempty};
use optlayer_core::{Error, Result, SampleReport, Scalar};

/// One inference: the output `x`, its data `d` and, when available, the report of the
/// forward pass that computed `x`.
#[derive(Clone, Copy, Debug)]
pub struct Inference<'a, T: Scalar> {
    /// The output of the model, `primal_dim` entries.
    pub x: ColRef<'a, T>,
    /// The data the output was computed from, `data_dim` entries.
    pub d: ColRef<'a, T>,
    /// The forward report of this sample, or `None` when the output did not come from a
    /// forward pass or the report was not kept.
    pub report: Option<&'a SampleReport<T>>,
}

/// A measurable property of an inference, where smaller values are better.
pub trait Property<T: Scalar>: Send + Sync {
    /// Returns the name, unique within a certificate.
    fn name(&self) -> &str;

    /// Computes the value of the property for one inference.
    ///
    /// Returns `None` when the property is undefined for this sample (for example a
    /// fixed-point residual without a forward report).
    fn value(&self, sample: &Inference<'_, T>) -> Option<f64>;

    /// Checks that the property can be evaluated on outputs of `x_dim` entries and data of
    /// `d_dim` entries. A certificate calls it before evaluating a batch, so a shape
    /// mismatch gives an error instead of undefined values.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming the property. The default accepts every shape.
    fn check_dimensions(&self, x_dim: usize, d_dim: usize) -> Result<()> {
        let _ = (x_dim, d_dim);
        Ok(())
    }
}

/// The ℓ1 norm of a linear map of the output, `‖K x‖₁`, for example the sparsity `‖Θx‖₁`
/// of a sparse inverse model.
///
/// The sum is accumulated in `f64`, so `f32` outputs do not overflow in the sum.
#[derive(Clone, Debug)]
pub struct L1Of<T> {
    name: String,
    op: Mat<T>,
}

impl<T: Scalar> L1Of<T> {
    /// Creates the property `‖op · x‖₁`; `op` has as many columns as `x` has entries.
    ///
    /// # Errors
    /// [`Error::Empty`] if `op` has no columns, [`Error::NonFiniteInput`] if an entry of `op`
    /// is NaN or infinite.
    pub fn new(name: impl Into<String>, op: MatRef<'_, T>) -> Result<Self> {
        let name = name.into();
        check_nonempty(&format!("operator of property '{name}'"), op)?;
        check_finite(&format!("operator of property '{name}'"), op)?;
        Ok(Self {
            name,
            op: op.to_owned(),
        })
    }
}

impl<T: Scalar> Property<T> for L1Of<T> {
    fn name(&self) -> &str {
        &self.name
    }

    /// Returns `None` if `x` does not have `op.ncols()` entries.
    fn value(&self, sample: &Inference<'_, T>) -> Option<f64> {
        if sample.x.nrows() != self.op.ncols() {
            return None;
        }
        let total = (0..self.op.nrows())
            .map(|i| row_dot(self.op.as_ref(), i, sample.x).to_f64_lossless().abs())
            .sum();
        Some(total)
    }

    fn check_dimensions(&self, x_dim: usize, _d_dim: usize) -> Result<()> {
        check_length(
            &self.name,
            "x",
            x_dim,
            self.op.ncols(),
            "the column count of its operator",
        )
    }
}

/// The relative data residual `‖A x − d‖₂ / ‖d‖₂`, for example the fidelity of a model
/// with the constraint `Ax = d`. When `d = 0` the value is the absolute residual
/// `‖A x‖₂`.
///
/// Both norms are computed with scaling ([`norm2`]), so entries near `1e200` in `f64`
/// give a finite value.
#[derive(Clone, Debug)]
pub struct RelativeResidual<T> {
    name: String,
    a: Mat<T>,
}

impl<T: Scalar> RelativeResidual<T> {
    /// Creates the property `‖a x − d‖₂ / ‖d‖₂`; `a` is `data_dim x primal_dim`.
    ///
    /// # Errors
    /// [`Error::Empty`] if `a` has no columns or no rows, [`Error::NonFiniteInput`] if an
    /// entry of `a` is NaN or infinite.
    pub fn new(name: impl Into<String>, a: MatRef<'_, T>) -> Result<Self> {
        let name = name.into();
        let description = format!("matrix A of property '{name}'");
        check_nonempty(&description, a)?;
        check_nonempty(&format!("{description} (as rows)"), a.transpose())?;
        check_finite(&description, a)?;
        Ok(Self {
            name,
            a: a.to_owned(),
        })
    }
}

impl<T: Scalar> Property<T> for RelativeResidual<T> {
    fn name(&self) -> &str {
        &self.name
    }

    /// Returns `None` if the shapes of `x` and `d` do not fit `A`.
    fn value(&self, sample: &Inference<'_, T>) -> Option<f64> {
        let (x, d) = (sample.x, sample.d);
        if x.nrows() != self.a.ncols() || d.nrows() != self.a.nrows() {
            return None;
        }
        let residual = (0..self.a.nrows()).map(|i| row_dot(self.a.as_ref(), i, x) - d[i]);
        let residual_norm = norm2(residual).to_f64_lossless();
        let data_norm = norm2((0..d.nrows()).map(|i| d[i])).to_f64_lossless();
        if data_norm == 0.0 {
            Some(residual_norm)
        } else {
            Some(residual_norm / data_norm)
        }
    }

    fn check_dimensions(&self, x_dim: usize, d_dim: usize) -> Result<()> {
        check_length(&self.name, "x", x_dim, self.a.ncols(), "the column count of A")?;
        check_length(&self.name, "d", d_dim, self.a.nrows(), "the row count of A")
    }
}

/// The relative fixed-point residual of the forward pass,
/// [`SampleReport::relative_residual`]: `‖T(z) − z‖ / ‖z‖` at the last step.
///
/// Undefined (`None`) for samples without a forward report.
#[derive(Clone, Debug)]
pub struct FixedPointResidual {
    name: String,
}

impl FixedPointResidual {
    /// Creates the property.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

impl<T: Scalar> Property<T> for FixedPointResidual {
    fn name(&self) -> &str {
        &self.name
    }

    fn value(&self, sample: &Inference<'_, T>) -> Option<f64> {
        sample
            .report
            .map(|report| report.relative_residual.to_f64_lossless())
    }
}

/// The Euclidean distance of the output to a box, `‖x − Π_[l, u](x)‖₂`.
///
/// Bounds may be infinite. An entry inside its bounds, infinite entries of an unbounded
/// side included, contributes zero; a NaN entry gives a NaN distance. The norm is computed
/// with scaling ([`norm2`]).
#[derive(Clone, Debug)]
pub struct BoxDistance<T> {
    name: String,
    lower: Vec<T>,
    upper: Vec<T>,
}

impl<T: Scalar> BoxDistance<T> {
    /// Creates the property for the box `lower ≤ x ≤ upper`, entry by entry.
    ///
    /// # Errors
    /// [`Error::Empty`] if the bounds are empty, [`Error::ShapeMismatch`] if their lengths
    /// differ, and [`Error::InvalidParameter`] naming the entry if a bound is NaN, a lower
    /// bound is `+∞`, an upper bound is `−∞`, or a lower bound exceeds its upper bound.
    pub fn new(name: impl Into<String>, lower: &[T], upper: &[T]) -> Result<Self> {
        let name = name.into();
        if lower.is_empty() {
            return Err(Error::Empty {
                what: format!("the bounds of property '{name}'"),
                fix: "pass one lower and one upper bound per entry of x".into(),
            });
        }
        if lower.len() != upper.len() {
            return Err(Error::ShapeMismatch {
                what: format!("upper bounds of property '{name}'"),
                expected: format!("{} entries (one per lower bound)", lower.len()),
                found: format!("{} entries", upper.len()),
            });
        }
        for (i, (&l, &u)) in lower.iter().zip(upper).enumerate() {
            check_bound_pair(&name, i, l.to_f64_lossless(), u.to_f64_lossless())?;
        }
        Ok(Self {
            name,
            lower: lower.to_vec(),
            upper: upper.to_vec(),
        })
    }
}

impl<T: Scalar> Property<T> for BoxDistance<T> {
    fn name(&self) -> &str {
        &self.name
    }

    /// Returns `None` if `x` does not have one entry per bound.
    fn value(&self, sample: &Inference<'_, T>) -> Option<f64> {
        let x = sample.x;
        if x.nrows() != self.lower.len() {
            return None;
        }
        let excess = (0..x.nrows()).map(|i| {
            let v = x[i];
            if v < self.lower[i] {
                v - self.lower[i]
            } else if v > self.upper[i] {
                v - self.upper[i]
            } else if v.is_nan() {
                v
            } else {
                T::zero()
            }
        });
        Some(norm2(excess).to_f64_lossless())
    }

    fn check_dimensions(&self, x_dim: usize, _d_dim: usize) -> Result<()> {
        check_length(&self.name, "x", x_dim, self.lower.len(), "one entry per bound")
    }
}

/// A property given by a closure, for properties the library does not provide.
///
/// The closure returns `None` where the property is undefined.
///
/// ```
/// use optlayer_train::certificate::{FnProperty, Inference};
///
/// // The largest absolute entry of the output.
/// let max_abs = FnProperty::new("max |x|", |sample: &Inference<'_, f64>| {
///     Some((0..sample.x.nrows()).map(|i| sample.x[i].abs()).fold(0.0, f64::max))
/// });
/// # let _ = max_abs;
/// ```
#[derive(Clone)]
pub struct FnProperty<F> {
    name: String,
    f: F,
}

impl<F> FnProperty<F> {
    /// Creates the property `name` computed by `f`.
    pub fn new<T: Scalar>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(&Inference<'_, T>) -> Option<f64> + Send + Sync,
    {
        Self { name: name.into(), f }
    }
}

impl<F> std::fmt::Debug for FnProperty<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnProperty")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<T: Scalar, F> Property<T> for FnProperty<F>
where
    F: Fn(&Inference<'_, T>) -> Option<f64> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn value(&self, sample: &Inference<'_, T>) -> Option<f64> {
        (self.f)(sample)
    }
}

/// Returns `Σ_j m[i, j] · x[j]`.
fn row_dot<T: Scalar>(m: MatRef<'_, T>, i: usize, x: ColRef<'_, T>) -> T {
    (0..m.ncols()).fold(T::zero(), |acc, j| acc + m[(i, j)] * x[j])
}

/// Checks that the input `input` (`x` or `d`) of property `name` has `expected` entries.
fn check_length(name: &str, input: &str, found: usize, expected: usize, reason: &str) -> Result<()> {
    if found == expected {
        return Ok(());
    }
    Err(Error::ShapeMismatch {
        what: format!("{input} of property '{name}'"),
        expected: format!("{expected} rows ({reason})"),
        found: format!("{found} rows"),
    })
}

/// Checks entry `i` of the bounds of a box.
fn check_bound_pair(name: &str, i: usize, lower: f64, upper: f64) -> Result<()> {
    let invalid = |which: &str, value: f64, requirement: String| Error::InvalidParameter {
        name: format!("{which} bound {i} of property '{name}'"),
        value,
        requirement,
    };
    if lower.is_nan() || lower == f64::INFINITY {
        return Err(invalid(
            "lower",
            lower,
            "must be a number below +inf; use -inf for no bound".into(),
        ));
    }
    if upper.is_nan() || upper == f64::NEG_INFINITY {
        return Err(invalid(
            "upper",
            upper,
            "must be a number above -inf; use +inf for no bound".into(),
        ));
    }
    if lower > upper {
        return Err(invalid(
            "lower",
            lower,
            format!("must not exceed the upper bound {upper}; swap the bounds"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::test_support::report_with_residual;
    use faer::{Col, mat};

    fn sample<'a, T: Scalar>(x: &'a Col<T>, d: &'a Col<T>) -> Inference<'a, T> {
        Inference {
            x: x.as_ref(),
            d: d.as_ref(),
            report: None,
        }
    }

    #[test]
    fn l1_of_matches_hand_value() {
        // K x = [1·1 + 2·(−2), −1·1 + 0·(−2), 3·1 + 1·(−2)] = [−3, −1, 1], so ‖K x‖₁ = 5.
        let op = mat![[1.0, 2.0], [-1.0, 0.0], [3.0, 1.0]];
        let property = L1Of::new("sparsity", op.as_ref()).unwrap();
        let x = Col::from_fn(2, |i| [1.0, -2.0][i]);
        let d = Col::<f64>::zeros(1);
        assert_eq!(property.value(&sample(&x, &d)), Some(5.0));
    }

    #[test]
    fn l1_of_in_f32() {
        let op = mat![[0.5_f32, 0.25], [-1.0, 4.0]];
        let property = L1Of::new("sparsity", op.as_ref()).unwrap();
        let x = Col::from_fn(2, |i| [2.0_f32, 1.0][i]);
        let d = Col::<f32>::zeros(1);
        // K x = [1.25, 2], ‖K x‖₁ = 3.25, exact in f32.
        assert_eq!(property.value(&sample(&x, &d)), Some(3.25));
    }

    #[test]
    fn l1_of_wrong_dimension() {
        let property = L1Of::new("sparsity", Mat::<f64>::identity(3, 3).as_ref()).unwrap();
        let x = Col::<f64>::zeros(2);
        let d = Col::<f64>::zeros(1);
        assert_eq!(property.value(&sample(&x, &d)), None);
        let error = Property::<f64>::check_dimensions(&property, 2, 1).unwrap_err();
        assert!(matches!(error, Error::ShapeMismatch { .. }), "{error}");
        assert!(error.to_string().contains("sparsity"), "{error}");
        assert!(Property::<f64>::check_dimensions(&property, 3, 7).is_ok());
    }

    #[test]
    fn l1_of_rejects_bad_operator() {
        let error = L1Of::new("s", mat![[1.0, f64::NAN]].as_ref()).unwrap_err();
        assert!(matches!(error, Error::NonFiniteInput { col: 1, .. }), "{error}");
        let error = L1Of::new("s", Mat::<f64>::zeros(2, 0).as_ref()).unwrap_err();
        assert!(matches!(error, Error::Empty { .. }), "{error}");
    }

    #[test]
    fn relative_residual_matches_hand_value() {
        // A x = [3, 2] and d = [3, 4], so ‖A x − d‖ = 2 and ‖d‖ = 5.
        let a = mat![[1.0, 2.0], [3.0, -1.0]];
        let property = RelativeResidual::new("fidelity", a.as_ref()).unwrap();
        let x = Col::from_fn(2, |i| [1.0, 1.0][i]);
        let d = Col::from_fn(2, |i| [3.0, 4.0][i]);
        let value = property.value(&sample(&x, &d)).unwrap();
        assert!((value - 0.4).abs() < 1e-15, "{value}");
    }

    #[test]
    fn relative_residual_in_f32() {
        let a = mat![[2.0_f32, 0.0], [0.0, 1.0]];
        let property = RelativeResidual::new("fidelity", a.as_ref()).unwrap();
        let x = Col::from_fn(2, |i| [1.0_f32, 2.0][i]);
        let d = Col::from_fn(2, |i| [5.0_f32, 14.0][i]);
        // A x − d = [2 − 5, 2 − 14] = [−3, −12], so the value is √153 / √221.
        let expected = (153.0_f64 / 221.0).sqrt();
        let value = property.value(&sample(&x, &d)).unwrap();
        assert!((value - expected).abs() < 1e-6, "{value} vs {expected}");
    }

    #[test]
    fn relative_residual_zero_data_is_absolute() {
        let a = mat![[3.0, 0.0], [0.0, 4.0]];
        let property = RelativeResidual::new("fidelity", a.as_ref()).unwrap();
        let x = Col::from_fn(2, |_| 1.0);
        let d = Col::<f64>::zeros(2);
        assert_eq!(property.value(&sample(&x, &d)), Some(5.0));
    }

    #[test]
    fn relative_residual_huge_entries_stay_finite() {
        let a = mat![[1.0, 0.0], [0.0, 1.0]];
        let property = RelativeResidual::new("fidelity", a.as_ref()).unwrap();
        let x = Col::from_fn(2, |i| [4e200, 3e200][i]);
        let d = Col::from_fn(2, |i| [1e200, 7e200][i]);
        // A x − d = [3e200, −4e200], norm 5e200; ‖d‖ = √50 · 1e200.
        let expected = 5.0 / 50.0_f64.sqrt();
        let value = property.value(&sample(&x, &d)).unwrap();
        assert!(value.is_finite(), "{value}");
        assert!((value / expected - 1.0).abs() < 1e-14, "{value} vs {expected}");
    }

    #[test]
    fn relative_residual_wrong_dimensions() {
        let property = RelativeResidual::new("fidelity", Mat::<f64>::identity(2, 3).as_ref()).unwrap();
        let x = Col::<f64>::zeros(3);
        let d = Col::<f64>::zeros(3);
        assert_eq!(property.value(&sample(&x, &d)), None);
        let error = Property::<f64>::check_dimensions(&property, 3, 3).unwrap_err();
        assert!(error.to_string().contains("row count of A"), "{error}");
        let error = Property::<f64>::check_dimensions(&property, 2, 2).unwrap_err();
        assert!(error.to_string().contains("column count of A"), "{error}");
        assert!(Property::<f64>::check_dimensions(&property, 3, 2).is_ok());
    }

    #[test]
    fn relative_residual_rejects_empty_matrix() {
        let error = RelativeResidual::new("f", Mat::<f64>::zeros(0, 2).as_ref()).unwrap_err();
        assert!(matches!(error, Error::Empty { .. }), "{error}");
        let error = RelativeResidual::new("f", mat![[f64::INFINITY]].as_ref()).unwrap_err();
        assert!(matches!(error, Error::NonFiniteInput { .. }), "{error}");
    }

    #[test]
    fn fixed_point_residual_reads_report() {
        let property = FixedPointResidual::new("residual");
        let x = Col::<f32>::zeros(2);
        let d = Col::<f32>::zeros(1);
        let report = report_with_residual(0.125_f32);
        let with_report = Inference {
            x: x.as_ref(),
            d: d.as_ref(),
            report: Some(&report),
        };
        assert_eq!(property.value(&with_report), Some(0.125));
        assert_eq!(property.value(&sample(&x, &d)), None);
    }

    #[test]
    fn box_distance_matches_hand_value() {
        let property = BoxDistance::new("box", &[0.0, 0.0, -1.0], &[1.0, 1.0, 1.0]).unwrap();
        let x = Col::from_fn(3, |i| [-3.0, 0.5, 5.0][i]);
        let d = Col::<f64>::zeros(1);
        // Excess [−3, 0, 4], distance 5.
        assert_eq!(property.value(&sample(&x, &d)), Some(5.0));
    }

    #[test]
    fn box_distance_in_f32() {
        let property = BoxDistance::new("box", &[0.0_f32, 0.0], &[1.0, 1.0]).unwrap();
        let x = Col::from_fn(2, |i| [1.5_f32, -2.0][i]);
        let d = Col::<f32>::zeros(1);
        let value = property.value(&sample(&x, &d)).unwrap();
        let expected = (0.25_f64 + 4.0).sqrt();
        assert!((value - expected).abs() < 1e-6, "{value} vs {expected}");
    }

    #[test]
    fn box_distance_infinite_bounds() {
        let inf = f64::INFINITY;
        let property = BoxDistance::new("nonnegative", &[0.0, 0.0, -inf], &[inf, inf, inf]).unwrap();
        let d = Col::<f64>::zeros(1);
        let x = Col::from_fn(3, |i| [1e300, -2.0, -1e300][i]);
        assert_eq!(property.value(&sample(&x, &d)), Some(2.0));
        let x = Col::from_fn(3, |i| [inf, 0.0, -inf][i]);
        assert_eq!(property.value(&sample(&x, &d)), Some(0.0));
        let x = Col::from_fn(3, |i| [0.0, f64::NAN, 0.0][i]);
        assert!(property.value(&sample(&x, &d)).unwrap().is_nan());
    }

    #[test]
    fn box_distance_huge_entries_stay_finite() {
        let property = BoxDistance::new("box", &[0.0, 0.0], &[1.0, 1.0]).unwrap();
        let x = Col::from_fn(2, |i| [-3e200, 4e200 + 1.0][i]);
        let d = Col::<f64>::zeros(1);
        let value = property.value(&sample(&x, &d)).unwrap();
        assert!((value / 5e200 - 1.0).abs() < 1e-14, "{value}");
    }

    #[test]
    fn box_distance_rejects_bad_bounds() {
        let inf = f64::INFINITY;
        let cases: [(&[f64], &[f64], &str); 5] = [
            (&[0.0, 2.0], &[1.0, 1.0], "lower bound 1"),
            (&[f64::NAN], &[1.0], "lower bound 0"),
            (&[0.0], &[f64::NAN], "upper bound 0"),
            (&[inf], &[inf], "lower bound 0"),
            (&[-inf], &[-inf], "upper bound 0"),
        ];
        for (lower, upper, named) in cases {
            let error = BoxDistance::new("box", lower, upper).unwrap_err();
            assert!(matches!(error, Error::InvalidParameter { .. }), "{error}");
            assert!(error.to_string().contains(named), "{error}");
        }
        let error = BoxDistance::new("box", &[0.0], &[1.0, 2.0]).unwrap_err();
        assert!(matches!(error, Error::ShapeMismatch { .. }), "{error}");
        let error = BoxDistance::<f64>::new("box", &[], &[]).unwrap_err();
        assert!(matches!(error, Error::Empty { .. }), "{error}");
    }

    #[test]
    fn fn_property_calls_closure() {
        let property = FnProperty::new("first", |s: &Inference<'_, f64>| {
            (s.x.nrows() > 0).then(|| s.x[0] * 2.0)
        });
        let x = Col::from_fn(2, |i| [1.5, 9.0][i]);
        let d = Col::<f64>::zeros(1);
        assert_eq!(property.value(&sample(&x, &d)), Some(3.0));
        assert_eq!(Property::<f64>::name(&property), "first");
        let empty = Col::<f64>::zeros(0);
        assert_eq!(property.value(&sample(&empty, &d)), None);
    }
}
