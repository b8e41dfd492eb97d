use faer::{MatMut, MatRef};
use optlayer_core::columns::map1;
use optlayer_core::validate::check_nonnegative;
use optlayer_core::{Entrywise, Parameterized, Prox, Result, Scalar};

use super::projection::{clip, indicator_value, inside_open_interval, membership_tolerance};

/// The indicator of the ℓ∞ ball `{x : ‖x‖∞ ≤ r}`, whose prox is the entrywise
/// clipping `x_i = min(max(v_i, −r), r)` for every `γ`.
///
/// Derivative convention, used identically by the map and its
/// vector-Jacobian product: the derivative of entry `i` is 1 where
/// `|v_i| < r` and 0 where `|v_i| ≥ r`, so an entry on the boundary counts as
/// clipped. With `r = 0` the map is the constant 0 and its vector-Jacobian
/// product is zero.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinfBall<T> {
    radius: T,
}

impl<T: Scalar> LinfBall<T> {
    /// Creates the ball `{x : ‖x‖∞ ≤ radius}` on vectors of any length.
    ///
    /// # Errors
    /// When `radius` is negative or not finite.
    pub fn new(radius: T) -> Result<Self> {
        check_nonnegative("linf ball radius", radius)?;
        Ok(Self { radius })
    }

    /// Returns the radius `r`.
    pub fn radius(&self) -> T {
        self.radius
    }
}

impl<T: Scalar> Parameterized<T> for LinfBall<T> {}

impl<T: Scalar> Prox<T> for LinfBall<T> {
    fn is_indicator(&self) -> bool {
        true
    }

    fn is_separable(&self) -> bool {
        true
    }

    /// Returns zero when every entry is finite with `|x_i| ≤ r + √ε (1 + r)`,
    /// and infinity otherwise.
    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> Option<T> {
        let bound = self.radius + membership_tolerance(self.radius);
        let inside = (0..x.nrows()).all(|row| {
            let entry = x[(row, col)];
            entry.is_finite() && entry.abs() <= bound
        });
        Some(indicator_value(inside))
    }

    fn entrywise(&self, _gamma: T) -> Option<Entrywise<T>> {
        let r = self.radius;
        Some(Entrywise::Clip { lower: -r, upper: r })
    }

    fn prox(&self, out: MatMut<'_, T>, v: MatRef<'_, T>, _gamma: T, _data: MatRef<'_, T>) {
        let r = self.radius;
        map1(out, v, move |v| clip(v, -r, r));
    }

    fn prox_vjp(
        &self,
        v_bar: MatMut<'_, T>,
        v: MatRef<'_, T>,
        _gamma: T,
        _data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        let r = self.radius;
        faer::zip!(v_bar, v, cotangent).for_each(|faer::unzip!(o, v, c)| {
            *o = if inside_open_interval(*v, -r, r) {
                *c
            } else {
                T::zero()
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prox::projection_checks::{
        assert_f32_matches_f64, assert_projection_properties, assert_vjp_matches_fd, project, vjp,
    };
    use faer::Mat;
    use optlayer_core::Error;
    use optlayer_testing::random::{gaussian, rng};
    use rand::Rng;

    fn column(values: &[f64]) -> Mat<f64> {
        Mat::from_fn(values.len(), 1, |i, _| values[i])
    }

    #[test]
    fn linf_ball_known_values() {
        let data = Mat::<f64>::zeros(0, 1);
        let ball = LinfBall::new(1.5).unwrap();
        let v = column(&[-1e200, -1.5, -0.2, 1.0, 1.5, 3.0]);
        let x = project(&ball, v.as_ref(), 1.0, data.as_ref());
        assert_eq!(x, column(&[-1.5, -1.5, -0.2, 1.0, 1.5, 1.5]));
        let c = column(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let d = vjp(&ball, v.as_ref(), 1.0, data.as_ref(), c.as_ref());
        assert_eq!(d, column(&[0.0, 0.0, 3.0, 4.0, 0.0, 0.0]));

        let point = LinfBall::new(0.0).unwrap();
        let x = project(&point, v.as_ref(), 1.0, data.as_ref());
        assert_eq!(x, column(&[0.0; 6]));
        assert_eq!(
            vjp(&point, v.as_ref(), 1.0, data.as_ref(), c.as_ref()),
            column(&[0.0; 6])
        );
    }

    #[test]
    fn linf_ball_value_tolerance() {
        let data = Mat::<f64>::zeros(0, 1);
        let ball = LinfBall::new(2.0).unwrap();
        let value = |x: &[f64]| ball.value(column(x).as_ref(), data.as_ref(), 0);
        assert_eq!(value(&[-2.0 - 1e-12, 1.0]), Some(0.0));
        assert_eq!(value(&[0.0, 2.0 + 1e-6]), Some(f64::INFINITY));
        assert_eq!(value(&[f64::NAN, 0.0]), Some(f64::INFINITY));
    }

    #[test]
    fn linf_ball_invalid_radius_rejected() {
        assert!(matches!(LinfBall::new(-0.1), Err(Error::InvalidParameter { .. })));
        assert!(matches!(
            LinfBall::new(f64::NAN),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            LinfBall::new(f64::INFINITY),
            Err(Error::InvalidParameter { .. })
        ));
    }

    #[test]
    fn linf_ball_projection_properties() {
        for seed in 0..20 {
            let dim = 1 + (seed as usize % 7);
            let radius = 0.3 + 0.1 * seed as f64;
            let ball = LinfBall::new(radius).unwrap();
            let mut v = gaussian(dim, 3, seed);
            // The first entry of the first column lies inside, so that the
            // finite differences are not all zero, and no entry lies within
            // 1e-3 of ±r.
            v[(0, 0)] = 0.5 * radius;
            for j in 0..3 {
                for i in 0..dim {
                    if (v[(i, j)].abs() - radius).abs() < 1e-3 {
                        v[(i, j)] *= 1.01;
                    }
                }
            }
            let mut rng = rng(seed + 1);
            let feasible = Mat::from_fn(dim, 3, |_, _| rng.random_range(-radius..=radius));
            let no_data = Mat::<f64>::zeros(0, 3);
            assert_projection_properties(&ball, v.as_ref(), no_data.as_ref(), &[feasible]);
            assert_vjp_matches_fd(&ball, v.as_ref(), no_data.as_ref(), seed + 100, false);
            let ball32 = LinfBall::new(radius as f32).unwrap();
            assert_f32_matches_f64(&ball32, &ball, v.as_ref(), no_data.as_ref(), seed + 200);
        }
    }
}
