use faer::{MatMut, MatRef};
use optlayer_core::columns::map1;
use optlayer_core::{Entrywise, Error, Parameterized, Prox, Result, Scalar};

use super::projection::{clip, indicator_value, inside_open_interval, membership_tolerance};

/// The indicator of the box `{x : l ≤ x ≤ u}`, whose prox is the entrywise
/// clipping `x_i = min(max(v_i, l_i), u_i)` for every `γ`.
///
/// Bounds are one pair for every entry or one pair per entry. A lower bound
/// may be `−∞` and an upper bound `+∞`, so half-spaces of single coordinates
/// such as `[0, ∞)` are boxes too. `l_i = u_i` fixes entry `i`.
///
/// Derivative convention, used identically by the map and its
/// vector-Jacobian product: the derivative of entry `i` is 1 where
/// `l_i < v_i < u_i` and 0 where `v_i ≤ l_i` or `v_i ≥ u_i`, so an entry on a
/// bound counts as clipped. The vector-Jacobian product is therefore zero on
/// every entry with `l_i = u_i`.
#[derive(Clone, Debug, PartialEq)]
pub struct BoxSet<T: Scalar> {
    bounds: Bounds<T>,
}

#[derive(Clone, Debug, PartialEq)]
enum Bounds<T> {
    Uniform { lower: T, upper: T },
    PerEntry { lower: Vec<T>, upper: Vec<T> },
}

/// Checks one pair of bounds; `entry` names it in the error, e.g. " [3]".
pub(crate) fn check_bounds<T: Scalar>(lower: T, upper: T, entry: &str) -> Result<()> {
    let invalid = |name: &str, value: T, requirement: String| Error::InvalidParameter {
        name: format!("{name}{entry}"),
        value: value.to_f64_lossless(),
        requirement,
    };
    if lower.is_nan() || lower == T::infinity() {
        return Err(invalid(
            "lower bound",
            lower,
            "must be a number or −∞; a lower bound of NaN or +∞ defines no set".into(),
        ));
    }
    if upper.is_nan() || upper == T::neg_infinity() {
        return Err(invalid(
            "upper bound",
            upper,
            "must be a number or +∞; an upper bound of NaN or −∞ defines no set".into(),
        ));
    }
    if lower > upper {
        return Err(invalid(
            "lower bound",
            lower,
            format!(
                "must not exceed the upper bound{entry} = {upper}, or the box is empty; swap the two bounds"
            ),
        ));
    }
    Ok(())
}

impl<T: Scalar> BoxSet<T> {
    /// Creates the box `{x : lower[i] ≤ x_i ≤ upper[i]}` on vectors of
    /// length `lower.len()`.
    ///
    /// # Errors
    /// When the lists are empty or differ in length. When an entry has a NaN
    /// bound, a lower bound of `+∞`, an upper bound of `−∞` or a lower bound
    /// above its upper bound, the error names the entry.
    pub fn new(lower: Vec<T>, upper: Vec<T>) -> Result<Self> {
        if lower.is_empty() {
            return Err(Error::Empty {
                what: "list of lower bounds".into(),
                fix: "pass one lower and one upper bound per entry, or use BoxSet::uniform".into(),
            });
        }
        if upper.len() != lower.len() {
            return Err(Error::ShapeMismatch {
                what: "upper bounds of the box".into(),
                expected: format!("{} entries, one per lower bound", lower.len()),
                found: format!("{} entries", upper.len()),
            });
        }
        for (i, (&l, &u)) in lower.iter().zip(&upper).enumerate() {
            check_bounds(l, u, &format!(" [{i}]"))?;
        }
        Ok(Self {
            bounds: Bounds::PerEntry { lower, upper },
        })
    }

    /// Creates the box `{x : lower ≤ x_i ≤ upper for every i}` on vectors of
    /// any length.
    ///
    /// # Errors
    /// When a bound is NaN, `lower` is `+∞`, `upper` is `−∞` or `lower > upper`.
    pub fn uniform(lower: T, upper: T) -> Result<Self> {
        check_bounds(lower, upper, "")?;
        Ok(Self {
            bounds: Bounds::Uniform { lower, upper },
        })
    }

    /// Returns the bounds `(l_i, u_i)` of entry `row`.
    ///
    /// # Panics
    /// When the bounds are per entry and `row` is not below their count.
    pub fn bounds(&self, row: usize) -> (T, T) {
        match &self.bounds {
            Bounds::Uniform { lower, upper } => (*lower, *upper),
            Bounds::PerEntry { lower, upper } => (lower[row], upper[row]),
        }
    }
}

impl<T: Scalar> Parameterized<T> for BoxSet<T> {}

impl<T: Scalar> Prox<T> for BoxSet<T> {
    fn is_indicator(&self) -> bool {
        true
    }

    fn is_separable(&self) -> bool {
        true
    }

    fn dim(&self) -> Option<usize> {
        match &self.bounds {
            Bounds::Uniform { .. } => None,
            Bounds::PerEntry { lower, .. } => Some(lower.len()),
        }
    }

    /// Returns zero when every entry is finite and lies within
    /// `√ε · (1 + |bound|)` of its interval, and infinity otherwise.
    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> Option<T> {
        let inside = (0..x.nrows()).all(|row| {
            let (lower, upper) = self.bounds(row);
            let entry = x[(row, col)];
            entry.is_finite()
                && entry >= lower - membership_tolerance(lower.abs())
                && entry <= upper + membership_tolerance(upper.abs())
        });
        Some(indicator_value(inside))
    }

    fn entrywise(&self, _gamma: T) -> Option<Entrywise<T>> {
        match &self.bounds {
            Bounds::Uniform { lower, upper } => Some(Entrywise::Clip {
                lower: *lower,
                upper: *upper,
            }),
            Bounds::PerEntry { .. } => None,
        }
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, _gamma: T, _data: MatRef<'_, T>) {
        match &self.bounds {
            Bounds::Uniform { lower, upper } => {
                let (lower, upper) = (*lower, *upper);
                map1(out, v, move |v| clip(v, lower, upper));
            }
            Bounds::PerEntry { lower, upper } => {
                for col in 0..v.ncols() {
                    for row in 0..v.nrows() {
                        out[(row, col)] = clip(v[(row, col)], lower[row], upper[row]);
                    }
                }
            }
        }
    }

    fn prox_vjp(
        &self,
        mut v_bar: MatMut<'_, T>,
        v: MatRef<'_, T>,
        _gamma: T,
        _data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        let pass = |v: T, lower: T, upper: T, c: T| {
            if inside_open_interval(v, lower, upper) {
                c
            } else {
                T::zero()
            }
        };
        match &self.bounds {
            Bounds::Uniform { lower, upper } => {
                let (lower, upper) = (*lower, *upper);
                faer::zip!(v_bar, v, cotangent)
                    .for_each(|faer::unzip!(o, v, c)| *o = pass(*v, lower, upper, *c));
            }
            Bounds::PerEntry { lower, upper } => {
                for col in 0..v.ncols() {
                    for row in 0..v.nrows() {
                        v_bar[(row, col)] =
                            pass(v[(row, col)], lower[row], upper[row], cotangent[(row, col)]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prox::projection_checks::{
        assert_f32_matches_f64, assert_projection_properties, assert_vjp_matches_fd, project, vjp,
    };
    use faer::Mat;
    use optlayer_testing::random::{gaussian, rng};
    use rand::Rng;

    fn column(values: &[f64]) -> Mat<f64> {
        Mat::from_fn(values.len(), 1, |i, _| values[i])
    }

    fn no_data(batch: usize) -> Mat<f64> {
        Mat::zeros(0, batch)
    }

    #[test]
    fn box_clips_known_values() {
        let set = BoxSet::new(vec![-1.0, 0.0, 2.0], vec![1.0, f64::INFINITY, 3.0]).unwrap();
        let x = project(
            &set,
            column(&[-3.0, -0.5, 2.5]).as_ref(),
            1.0,
            no_data(1).as_ref(),
        );
        assert_eq!(x, column(&[-1.0, 0.0, 2.5]));
        let x = project(
            &set,
            column(&[0.25, 1e300, 7.0]).as_ref(),
            1.0,
            no_data(1).as_ref(),
        );
        assert_eq!(x, column(&[0.25, 1e300, 3.0]));

        let uniform = BoxSet::uniform(-0.5, 0.5).unwrap();
        let x = project(
            &uniform,
            column(&[-2.0, 0.1, 0.5, 9.0]).as_ref(),
            1.0,
            no_data(1).as_ref(),
        );
        assert_eq!(x, column(&[-0.5, 0.1, 0.5, 0.5]));
    }

    #[test]
    fn box_one_point_projects_everything_there() {
        let set = BoxSet::new(vec![2.0, 2.0], vec![2.0, 2.0]).unwrap();
        let v = Mat::from_fn(2, 4, |i, j| {
            [[-5.0, 2.0], [2.0, 2.0], [1e200, -1e200], [0.0, 3.0]][j][i]
        });
        let x = project(&set, v.as_ref(), 1.0, no_data(4).as_ref());
        assert_eq!(x, Mat::from_fn(2, 4, |_, _| 2.0));
        let c = gaussian(2, 4, 1);
        assert_eq!(
            vjp(&set, v.as_ref(), 1.0, no_data(4).as_ref(), c.as_ref()),
            Mat::zeros(2, 4)
        );
        for col in 0..4 {
            assert_eq!(set.value(x.as_ref(), no_data(4).as_ref(), col), Some(0.0));
            assert_eq!(
                set.value(v.as_ref(), no_data(4).as_ref(), col),
                Some(if col == 1 { 0.0 } else { f64::INFINITY })
            );
        }
    }

    #[test]
    fn box_infinite_bounds_give_half_line() {
        let set = BoxSet::uniform(0.0, f64::INFINITY).unwrap();
        let v = column(&[-1e200, -1.0, 0.0, 3.0, 1e200]);
        let x = project(&set, v.as_ref(), 1.0, no_data(1).as_ref());
        assert_eq!(x, column(&[0.0, 0.0, 0.0, 3.0, 1e200]));
        let c = column(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(
            vjp(&set, v.as_ref(), 1.0, no_data(1).as_ref(), c.as_ref()),
            column(&[0.0, 0.0, 0.0, 4.0, 5.0])
        );

        let everything = BoxSet::uniform(f64::NEG_INFINITY, f64::INFINITY).unwrap();
        assert_eq!(project(&everything, v.as_ref(), 1.0, no_data(1).as_ref()), v);
        assert_eq!(
            vjp(&everything, v.as_ref(), 1.0, no_data(1).as_ref(), c.as_ref()),
            c
        );
    }

    #[test]
    fn box_huge_entries_stay_finite() {
        let set = BoxSet::new(vec![-1e200, 0.0], vec![1e200, 1e250]).unwrap();
        let v = Mat::from_fn(2, 3, |i, j| {
            [[-1e300, 5e249], [3e199, 2e250], [-1e200, -1e-300]][j][i]
        });
        let x = project(&set, v.as_ref(), 1.0, no_data(3).as_ref());
        let expected = Mat::from_fn(2, 3, |i, j| {
            [[-1e200, 5e249], [3e199, 1e250], [-1e200, 0.0]][j][i]
        });
        assert_eq!(x, expected);
        for col in 0..3 {
            assert_eq!(set.value(x.as_ref(), no_data(3).as_ref(), col), Some(0.0));
        }
        assert_eq!(set.value(v.as_ref(), no_data(3).as_ref(), 0), Some(f64::INFINITY));
    }

    #[test]
    fn box_derivative_on_bound_is_zero() {
        let set = BoxSet::uniform(-1.0, 1.0).unwrap();
        let v = column(&[-1.0, -0.999, 0.0, 0.999, 1.0, 1.5]);
        let ones = Mat::from_fn(6, 1, |_, _| 1.0);
        let d = vjp(&set, v.as_ref(), 1.0, no_data(1).as_ref(), ones.as_ref());
        assert_eq!(d, column(&[0.0, 1.0, 1.0, 1.0, 0.0, 0.0]));
    }

    #[test]
    fn box_value_tolerance() {
        let set = BoxSet::uniform(0.0, 1.0).unwrap();
        let data = no_data(1);
        let value = |x: f64| set.value(column(&[x]).as_ref(), data.as_ref(), 0);
        assert_eq!(value(1.0 + 1e-12), Some(0.0));
        assert_eq!(value(-1e-12), Some(0.0));
        assert_eq!(value(1.0 + 1e-6), Some(f64::INFINITY));
        assert_eq!(value(-1e-6), Some(f64::INFINITY));
        assert_eq!(value(f64::NAN), Some(f64::INFINITY));
    }

    #[test]
    fn box_invalid_bounds_rejected() {
        let err = BoxSet::new(vec![0.0, 3.0, 0.0], vec![1.0, 2.0, 1.0]).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
        assert!(err.to_string().contains("lower bound [1]"), "{err}");
        assert!(err.to_string().contains("upper bound [1] = 2"), "{err}");

        let err = BoxSet::new(vec![0.0, f64::NAN], vec![1.0, 2.0]).unwrap_err();
        assert!(err.to_string().contains("lower bound [1]"), "{err}");
        let err = BoxSet::new(vec![0.0], vec![f64::NAN]).unwrap_err();
        assert!(err.to_string().contains("upper bound [0]"), "{err}");
        let err = BoxSet::new(vec![f64::INFINITY], vec![f64::INFINITY]).unwrap_err();
        assert!(err.to_string().contains("lower bound [0]"), "{err}");
        let err = BoxSet::new(vec![f64::NEG_INFINITY], vec![f64::NEG_INFINITY]).unwrap_err();
        assert!(err.to_string().contains("upper bound [0]"), "{err}");

        assert!(matches!(
            BoxSet::uniform(1.0, 0.0),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            BoxSet::uniform(f64::NAN, 0.0),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            BoxSet::<f64>::new(vec![], vec![]),
            Err(Error::Empty { .. })
        ));
        assert!(matches!(
            BoxSet::new(vec![0.0], vec![1.0, 2.0]),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    /// Returns a box on `dim` entries with some infinite bounds and random
    /// points inside it, entry `i` of column `j` drawn in `[l_i, u_i]`.
    fn random_box(dim: usize, seed: u64) -> (BoxSet<f64>, Vec<f64>, Vec<f64>, Mat<f64>) {
        let mut rng = rng(seed);
        let mut lower = Vec::with_capacity(dim);
        let mut upper = Vec::with_capacity(dim);
        for i in 0..dim {
            let l: f64 = rng.random_range(-2.0..0.5);
            let u = l + rng.random_range(0.2..2.0);
            lower.push(if i % 4 == 1 { f64::NEG_INFINITY } else { l });
            upper.push(if i % 4 == 2 { f64::INFINITY } else { u });
        }
        let feasible = Mat::from_fn(dim, 3, |i, _| {
            let l = if lower[i].is_finite() {
                lower[i]
            } else {
                upper[i] - 5.0
            };
            let u = if upper[i].is_finite() {
                upper[i]
            } else {
                lower[i] + 5.0
            };
            rng.random_range(l..=u)
        });
        (
            BoxSet::new(lower.clone(), upper.clone()).unwrap(),
            lower,
            upper,
            feasible,
        )
    }

    /// Returns points whose first column lies strictly inside the box and
    /// whose other columns are Gaussian with standard deviation 2, with
    /// entries within 1e-3 of a bound moved away from it.
    fn points_off_bounds(lower: &[f64], upper: &[f64], batch: usize, seed: u64) -> Mat<f64> {
        let noise = gaussian(lower.len(), batch, seed);
        let mut v = Mat::from_fn(lower.len(), batch, |i, j| match j {
            0 if lower[i].is_finite() => lower[i] + 0.1,
            0 => upper[i] - 0.1,
            _ => 2.0 * noise[(i, j)],
        });
        for j in 0..batch {
            for i in 0..lower.len() {
                if (v[(i, j)] - lower[i]).abs() < 1e-3 || (v[(i, j)] - upper[i]).abs() < 1e-3 {
                    v[(i, j)] += 0.01;
                }
            }
        }
        v
    }

    #[test]
    fn box_projection_properties() {
        for seed in 0..20 {
            let dim = 1 + (seed as usize % 7);
            let (set, lower, upper, feasible) = random_box(dim, seed);
            let v = points_off_bounds(&lower, &upper, 3, seed + 100);
            assert_projection_properties(&set, v.as_ref(), no_data(3).as_ref(), &[feasible]);
            assert_vjp_matches_fd(&set, v.as_ref(), no_data(3).as_ref(), seed + 200, false);

            let set32 = BoxSet::new(
                lower.iter().map(|&l| l as f32).collect(),
                upper.iter().map(|&u| u as f32).collect(),
            )
            .unwrap();
            assert_f32_matches_f64(&set32, &set, v.as_ref(), no_data(3).as_ref(), seed + 300);
        }
    }
}
