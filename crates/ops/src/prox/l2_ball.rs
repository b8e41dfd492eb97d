use faer::{Mat, MatMut, MatRef};
use optlayer_core::columns::{col_norm2, col_slice, norm2, slice_diff_norm2};
use optlayer_core::validate::{check_finite, check_nonempty, check_nonnegative};
use optlayer_core::{Parameterized, Prox, Result, Scalar};

use super::projection::{indicator_value, membership_tolerance};

/// The indicator of the Euclidean ball `{x : ‖x − c‖₂ ≤ r}`, whose prox is,
/// for every `γ`,
///
/// `P(v) = v` when `‖v − c‖₂ < r`, and `P(v) = c + (r/‖v − c‖₂)(v − c)` otherwise.
///
/// Its Jacobian is `I` inside and, with `w = v − c`,
/// `(r/‖w‖)(I − w wᵀ/‖w‖²)` outside. Derivative convention, used
/// identically by the map and its vector-Jacobian product: a point on the
/// sphere (`‖w‖ = r`) counts as outside, where the scaling factor is 1 and
/// the Jacobian is the outside one. With `r = 0` the map is the constant
/// `c` and its vector-Jacobian product is zero.
///
/// Norms are computed with scaling (see [`optlayer_core::columns::norm2`]),
/// so entries near `1e200` in `f64` give finite results.
#[derive(Clone, Debug, PartialEq)]
pub struct L2Ball<T: Scalar> {
    center: Option<Vec<T>>,
    radius: T,
}

impl<T: Scalar> L2Ball<T> {
    /// Creates the ball `{x : ‖x‖₂ ≤ radius}` centered at the origin, on
    /// vectors of any length.
    ///
    /// # Errors
    /// When `radius` is negative or not finite.
    pub fn new(radius: T) -> Result<Self> {
        check_nonnegative("l2 ball radius", radius)?;
        Ok(Self { center: None, radius })
    }

    /// Creates the ball `{x : ‖x − center‖₂ ≤ radius}` on vectors of length
    /// `center.len()`.
    ///
    /// # Errors
    /// When `radius` is negative or not finite, or `center` is empty or has
    /// a non-finite entry.
    pub fn with_center(center: Vec<T>, radius: T) -> Result<Self> {
        check_nonnegative("l2 ball radius", radius)?;
        let column = Mat::from_fn(center.len(), 1, |i, _| center[i]);
        check_nonempty("l2 ball center (transposed)", column.as_ref().transpose())?;
        check_finite("l2 ball center", column.as_ref())?;
        Ok(Self {
            center: Some(center),
            radius,
        })
    }

    /// Returns the radius `r`.
    pub fn radius(&self) -> T {
        self.radius
    }

    /// Returns the center `c`, or `None` for the origin.
    pub fn center(&self) -> Option<&[T]> {
        self.center.as_deref()
    }

    /// Returns entry `row` of the center.
    #[inline(always)]
    fn center_entry(&self, row: usize) -> T {
        self.center.as_ref().map_or_else(T::zero, |c| c[row])
    }

    /// Returns `‖v_col − c‖₂`, computed with scaling.
    fn distance(&self, v: MatRef<'_, T>, col: usize) -> T {
        match &self.center {
            None => col_norm2(v, col),
            Some(center) => match col_slice(v, col) {
                Some(values) => slice_diff_norm2(values, center),
                None => norm2((0..v.nrows()).map(|row| v[(row, col)] - center[row])),
            },
        }
    }
}

impl<T: Scalar> Parameterized<T> for L2Ball<T> {}

impl<T: Scalar> Prox<T> for L2Ball<T> {
    fn is_indicator(&self) -> bool {
        true
    }

    fn dim(&self) -> Option<usize> {
        self.center.as_ref().map(Vec::len)
    }

    /// Returns zero when `‖x − c‖₂ ≤ r + √ε (1 + r + ‖c‖∞)`, and infinity
    /// otherwise or when `x` has a non-finite entry.
    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> Option<T> {
        let center_scale = self
            .center
            .as_ref()
            .map_or_else(T::zero, |c| c.iter().fold(T::zero(), |acc, v| acc.max(v.abs())));
        let bound = self.radius + membership_tolerance(self.radius + center_scale);
        // A NaN or infinite distance fails the comparison.
        Some(indicator_value(self.distance(x, col) <= bound))
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, _gamma: T, _data: MatRef<'_, T>) {
        for col in 0..v.ncols() {
            let dist = self.distance(v, col);
            if self.radius > T::zero() && dist < self.radius {
                for row in 0..v.nrows() {
                    out[(row, col)] = v[(row, col)];
                }
                continue;
            }
            // Outside or on the sphere. With r = 0 the factor is 0, which
            // also covers v = c, where r/‖w‖ would be 0/0.
            let factor = if self.radius > T::zero() {
                self.radius / dist
            } else {
                T::zero()
            };
            for row in 0..v.nrows() {
                let c = self.center_entry(row);
                out[(row, col)] = c + factor * (v[(row, col)] - c);
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
        for col in 0..v.ncols() {
            if self.radius == T::zero() {
                for row in 0..v.nrows() {
                    v_bar[(row, col)] = T::zero();
                }
                continue;
            }
            let dist = self.distance(v, col);
            if dist < self.radius {
                for row in 0..v.nrows() {
                    v_bar[(row, col)] = cotangent[(row, col)];
                }
                continue;
            }
            // (r/‖w‖)(c − u ⟨u, c⟩) with the unit vector u = w/‖w‖, which
            // stays finite where ‖w‖² would overflow.
            let unit = |row: usize| (v[(row, col)] - self.center_entry(row)) / dist;
            let mut along = T::zero();
            for row in 0..v.nrows() {
                along += unit(row) * cotangent[(row, col)];
            }
            let factor = self.radius / dist;
            for row in 0..v.nrows() {
                v_bar[(row, col)] = factor * (cotangent[(row, col)] - unit(row) * along);
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
    use optlayer_core::Error;
    use optlayer_testing::random::{gaussian, rng};
    use rand::Rng;

    fn column(values: &[f64]) -> Mat<f64> {
        Mat::from_fn(values.len(), 1, |i, _| values[i])
    }

    fn assert_close(got: &Mat<f64>, expected: &Mat<f64>, tol: f64) {
        let error = (got - expected).norm_max();
        assert!(error <= tol, "got {got:?}, expected {expected:?}");
    }

    #[test]
    fn l2_ball_known_values() {
        let data = Mat::<f64>::zeros(0, 1);
        let unit = L2Ball::new(1.0).unwrap();
        let x = project(&unit, column(&[3.0, 4.0]).as_ref(), 1.0, data.as_ref());
        assert_close(&x, &column(&[0.6, 0.8]), 1e-15);
        let inside = column(&[0.3, -0.4]);
        assert_eq!(project(&unit, inside.as_ref(), 1.0, data.as_ref()), inside);

        let shifted = L2Ball::with_center(vec![1.0, 1.0], 2.0).unwrap();
        let x = project(&shifted, column(&[1.0, 5.0]).as_ref(), 1.0, data.as_ref());
        assert_close(&x, &column(&[1.0, 3.0]), 1e-15);
        let x = project(&shifted, column(&[4.0, -3.0]).as_ref(), 1.0, data.as_ref());
        assert_close(&x, &column(&[1.0 + 1.2, 1.0 - 1.6]), 1e-15);

        let point = L2Ball::with_center(vec![1.0, -2.0], 0.0).unwrap();
        for v in [[1.0, -2.0], [5.0, 7.0]] {
            let x = project(&point, column(&v).as_ref(), 1.0, data.as_ref());
            assert_eq!(x, column(&[1.0, -2.0]));
            let d = vjp(
                &point,
                column(&v).as_ref(),
                1.0,
                data.as_ref(),
                column(&[1.0, 1.0]).as_ref(),
            );
            assert_eq!(d, column(&[0.0, 0.0]));
        }
    }

    #[test]
    fn l2_ball_derivative_known_values() {
        // v = [3, 4], r = 1: (1/5)(e₁ − u u₁) with u = [0.6, 0.8] is [0.128, −0.096].
        let data = Mat::<f64>::zeros(0, 1);
        let unit = L2Ball::new(1.0).unwrap();
        let d = vjp(
            &unit,
            column(&[3.0, 4.0]).as_ref(),
            1.0,
            data.as_ref(),
            column(&[1.0, 0.0]).as_ref(),
        );
        assert_close(&d, &column(&[0.128, -0.096]), 1e-15);
        let d = vjp(
            &unit,
            column(&[0.3, 0.4]).as_ref(),
            1.0,
            data.as_ref(),
            column(&[1.0, 2.0]).as_ref(),
        );
        assert_eq!(d, column(&[1.0, 2.0]));
        // On the sphere the outside Jacobian I − u uᵀ applies: u = [0.6, 0.8]
        // and c = u give zero.
        let d = vjp(
            &unit,
            column(&[0.6, 0.8]).as_ref(),
            1.0,
            data.as_ref(),
            column(&[0.6, 0.8]).as_ref(),
        );
        assert_close(&d, &column(&[0.0, 0.0]), 1e-15);
    }

    #[test]
    fn l2_ball_huge_entries_stay_finite() {
        let data = Mat::<f64>::zeros(0, 1);
        let v = column(&[3e200, 4e200]);
        let unit = L2Ball::new(1.0).unwrap();
        let x = project(&unit, v.as_ref(), 1.0, data.as_ref());
        assert_close(&x, &column(&[0.6, 0.8]), 1e-15);
        let d = vjp(
            &unit,
            v.as_ref(),
            1.0,
            data.as_ref(),
            column(&[1.0, 0.0]).as_ref(),
        );
        assert_close(&d, &column(&[0.128e-200, -0.096e-200]), 1e-215);

        let huge = L2Ball::new(1e200).unwrap();
        let x = project(&huge, v.as_ref(), 1.0, data.as_ref());
        assert_close(&x, &column(&[0.6e200, 0.8e200]), 1e185);
        assert_eq!(huge.value(x.as_ref(), data.as_ref(), 0), Some(0.0));
        assert_eq!(huge.value(v.as_ref(), data.as_ref(), 0), Some(f64::INFINITY));
        let d = vjp(
            &huge,
            v.as_ref(),
            1.0,
            data.as_ref(),
            column(&[1.0, 0.0]).as_ref(),
        );
        assert_close(&d, &column(&[0.128, -0.096]), 1e-15);
    }

    #[test]
    fn l2_ball_value_tolerance() {
        let data = Mat::<f64>::zeros(0, 1);
        let ball = L2Ball::with_center(vec![0.0, 1.0], 1.0).unwrap();
        let value = |x: &[f64]| ball.value(column(x).as_ref(), data.as_ref(), 0);
        assert_eq!(value(&[0.0, 2.0 + 1e-12]), Some(0.0));
        assert_eq!(value(&[0.0, 2.0 + 1e-6]), Some(f64::INFINITY));
        assert_eq!(value(&[f64::NAN, 1.0]), Some(f64::INFINITY));
    }

    #[test]
    fn l2_ball_invalid_input_rejected() {
        assert!(matches!(L2Ball::new(-1.0), Err(Error::InvalidParameter { .. })));
        assert!(matches!(
            L2Ball::new(f64::NAN),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            L2Ball::new(f64::INFINITY),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            L2Ball::<f64>::with_center(vec![], 1.0),
            Err(Error::Empty { .. })
        ));
        let err = L2Ball::with_center(vec![0.0, f64::NAN], 1.0).unwrap_err();
        assert!(matches!(err, Error::NonFiniteInput { row: 1, .. }), "{err}");
    }

    /// Returns points around `center` with norms spread around the radius,
    /// none within 1% of it, and random points of the ball.
    fn points_around(center: &[f64], radius: f64, batch: usize, seed: u64) -> (Mat<f64>, Mat<f64>) {
        let dim = center.len();
        let directions = gaussian(dim, 2 * batch, seed);
        let mut rng = rng(seed + 1);
        let mut v = Mat::zeros(dim, batch);
        let mut feasible = Mat::zeros(dim, batch);
        for j in 0..batch {
            let norm = directions.col(j).norm_l2();
            let mut target: f64 = radius * rng.random_range(0.2..2.5);
            if (target - radius).abs() < 0.01 * radius {
                target = 1.1 * radius;
            }
            let norm_y = directions.col(batch + j).norm_l2();
            let target_y = radius * rng.random_range(0.0..1.0);
            for i in 0..dim {
                v[(i, j)] = center[i] + target * directions[(i, j)] / norm;
                feasible[(i, j)] = center[i] + target_y * directions[(i, batch + j)] / norm_y;
            }
        }
        (v, feasible)
    }

    #[test]
    fn l2_ball_projection_properties() {
        for seed in 0..20 {
            // In one dimension the projection of an outside point is
            // constant, and the rounding noise of its finite differences
            // would read as kinks.
            let dim = 2 + (seed as usize % 6);
            let radius = 0.5 + seed as f64 * 0.1;
            let center: Vec<f64> = (0..dim).map(|i| (i as f64 * 0.7).sin()).collect();
            let no_data = Mat::<f64>::zeros(0, 4);
            for ball in [
                L2Ball::new(radius).unwrap(),
                L2Ball::with_center(center.clone(), radius).unwrap(),
            ] {
                let c = ball.center().map_or_else(|| vec![0.0; dim], <[f64]>::to_vec);
                let (v, feasible) = points_around(&c, radius, 4, seed);
                assert_projection_properties(&ball, v.as_ref(), no_data.as_ref(), &[feasible]);
                assert_vjp_matches_fd(&ball, v.as_ref(), no_data.as_ref(), seed + 100, false);
                let ball32 = match ball.center() {
                    None => L2Ball::new(radius as f32).unwrap(),
                    Some(c) => {
                        L2Ball::with_center(c.iter().map(|&x| x as f32).collect(), radius as f32).unwrap()
                    }
                };
                assert_f32_matches_f64(&ball32, &ball, v.as_ref(), no_data.as_ref(), seed + 200);
            }
        }
    }
}
