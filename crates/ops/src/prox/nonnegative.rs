use faer::{MatMut, MatRef};
use optlayer_core::columns::map1;
use optlayer_core::{Parameterized, Prox, Scalar};

use super::projection::{indicator_value, membership_tolerance};

/// The indicator of the nonnegative orthant `{x : x ≥ 0}`, whose prox is
/// `x_i = max(v_i, 0)` for every `γ`.
///
/// Derivative convention, used identically by the map and its
/// vector-Jacobian product: the derivative of entry `i` is 1 where `v_i > 0`
/// and 0 where `v_i ≤ 0`, so an entry at zero counts as clipped. NaN entries
/// pass through the map unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nonnegative;

impl<T: Scalar> Parameterized<T> for Nonnegative {}

impl<T: Scalar> Prox<T> for Nonnegative {
    fn is_indicator(&self) -> bool {
        true
    }

    fn is_separable(&self) -> bool {
        true
    }

    /// Returns zero when every entry is finite and at least `−√ε`, and
    /// infinity otherwise.
    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> Option<T> {
        let floor = -membership_tolerance(T::zero());
        let inside = (0..x.nrows()).all(|row| {
            let entry = x[(row, col)];
            entry.is_finite() && entry >= floor
        });
        Some(indicator_value(inside))
    }

    fn prox(&self, out: MatMut<'_, T>, v: MatRef<'_, T>, _gamma: T, _data: MatRef<'_, T>) {
        map1(out, v, |v| if v <= T::zero() { T::zero() } else { v });
    }

    fn prox_vjp(
        &self,
        v_bar: MatMut<'_, T>,
        v: MatRef<'_, T>,
        _gamma: T,
        _data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        faer::zip!(v_bar, v, cotangent)
            .for_each(|faer::unzip!(o, v, c)| *o = if *v > T::zero() { *c } else { T::zero() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prox::projection_checks::{
        assert_f32_matches_f64, assert_projection_properties, assert_vjp_matches_fd, project, vjp,
    };
    use faer::Mat;
    use optlayer_testing::random::gaussian;

    fn column(values: &[f64]) -> Mat<f64> {
        Mat::from_fn(values.len(), 1, |i, _| values[i])
    }

    #[test]
    fn nonnegative_known_values() {
        let no_data = Mat::<f64>::zeros(0, 1);
        let v = column(&[-1e200, -2.5, 0.0, 1e-300, 3.0, 1e200]);
        let x = project(&Nonnegative, v.as_ref(), 1.0, no_data.as_ref());
        assert_eq!(x, column(&[0.0, 0.0, 0.0, 1e-300, 3.0, 1e200]));
        let c = column(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let d = vjp(&Nonnegative, v.as_ref(), 1.0, no_data.as_ref(), c.as_ref());
        assert_eq!(d, column(&[0.0, 0.0, 0.0, 4.0, 5.0, 6.0]));
        assert!(project(&Nonnegative, column(&[f64::NAN]).as_ref(), 1.0, no_data.as_ref())[(0, 0)].is_nan());
    }

    #[test]
    fn nonnegative_value_tolerance() {
        let no_data = Mat::<f64>::zeros(0, 1);
        let value = |x: &[f64]| Prox::<f64>::value(&Nonnegative, column(x).as_ref(), no_data.as_ref(), 0);
        assert_eq!(value(&[0.0, 5.0, 1e200]), Some(0.0));
        assert_eq!(value(&[-1e-12, 5.0]), Some(0.0));
        assert_eq!(value(&[-1e-6, 5.0]), Some(f64::INFINITY));
        assert_eq!(value(&[f64::INFINITY]), Some(f64::INFINITY));
    }

    #[test]
    fn nonnegative_projection_properties() {
        for seed in 0..20 {
            let dim = 1 + (seed as usize % 7);
            let mut v = gaussian(dim, 3, seed);
            // Keep the first entry of the first column positive, so that the
            // finite differences are not all zero, and every entry off zero.
            v[(0, 0)] = v[(0, 0)].abs() + 0.1;
            for j in 0..3 {
                for i in 0..dim {
                    if v[(i, j)].abs() < 1e-3 {
                        v[(i, j)] += 0.01;
                    }
                }
            }
            let draws = gaussian(dim, 3, seed + 50);
            let feasible = Mat::from_fn(dim, 3, |i, j| draws[(i, j)].abs());
            let no_data = Mat::<f64>::zeros(0, 3);
            assert_projection_properties(&Nonnegative, v.as_ref(), no_data.as_ref(), &[feasible]);
            assert_vjp_matches_fd(&Nonnegative, v.as_ref(), no_data.as_ref(), seed + 100, false);
            assert_f32_matches_f64(
                &Nonnegative,
                &Nonnegative,
                v.as_ref(),
                no_data.as_ref(),
                seed + 200,
            );
        }
    }
}
