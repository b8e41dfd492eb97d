use faer::{MatMut, MatRef};
use optlayer_core::{Parameterized, Prox, Scalar};

use super::projection::{indicator_value, membership_tolerance};

/// The indicator of the probability simplex `{x : x ≥ 0, Σ_i x_i = 1}`; its
/// prox is the Euclidean projection onto the simplex, for every `γ`.
///
/// The projection is `x_i = max(v_i − τ, 0)` with the threshold `τ` found by
/// Michelot's algorithm ("A finite algorithm for finding the projection of a
/// point onto the canonical simplex of Rⁿ", JOTA 50, 1986): start from
/// `τ = (Σ v − 1)/n` and repeat `τ = (Σ_{v_i > τ} v_i − 1)/|{i : v_i > τ}|`
/// until the set stops changing. It needs no sorting and no scratch memory,
/// and ends after at most `n` passes.
///
/// The projection does not change when a multiple of `1` is added to `v`,
/// so the threshold is computed on `v − max_i v_i`. The entries of the
/// support then lie within 1 of zero, and large entries such as `1e200` do
/// not round the unit sum away. A NaN or `+∞` entry makes the whole column
/// NaN.
///
/// The Jacobian on the support `S = {i : v_i > τ}` is `I − 1 1ᵀ/|S|`, and
/// zero outside it. Entries with `v_i = τ` exactly count as outside, in the
/// projection and in its vector-Jacobian product alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Simplex;

/// Returns the largest entry of column `col`, or NaN when the column has a NaN entry.
fn column_max<T: Scalar>(v: MatRef<'_, T>, col: usize) -> T {
    let mut max = T::neg_infinity();
    for row in 0..v.nrows() {
        let value = v[(row, col)];
        if value.is_nan() {
            return value;
        }
        max = max.max(value);
    }
    max
}

/// Returns the threshold `τ` of the projection of `v` onto the simplex.
fn simplex_threshold<T: Scalar>(v: impl Fn(usize) -> T, len: usize) -> T {
    let mut sum = T::zero();
    for i in 0..len {
        sum += v(i);
    }
    let mut tau = (sum - T::one()) / T::from_usize(len).unwrap_or_else(T::one);
    for _ in 0..len {
        let mut active_sum = T::zero();
        let mut active = 0usize;
        for i in 0..len {
            let value = v(i);
            if value > tau {
                active_sum += value;
                active += 1;
            }
        }
        if active == 0 {
            break;
        }
        let next = (active_sum - T::one()) / T::from_usize(active).unwrap_or_else(T::one);
        if next == tau {
            break;
        }
        tau = next;
    }
    tau
}

impl<T: Scalar> Parameterized<T> for Simplex {}

impl<T: Scalar> Prox<T> for Simplex {
    fn is_indicator(&self) -> bool {
        true
    }

    /// Returns zero when every entry is finite and at least `−√ε` and
    /// `|Σ_i x_i − 1| ≤ √ε (1 + Σ_i |x_i|)`, and infinity otherwise.
    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> Option<T> {
        let floor = -membership_tolerance(T::zero());
        let mut sum = T::zero();
        let mut abs_sum = T::zero();
        for row in 0..x.nrows() {
            let entry = x[(row, col)];
            if !(entry.is_finite() && entry >= floor) {
                return Some(T::infinity());
            }
            sum += entry;
            abs_sum += entry.abs();
        }
        Some(indicator_value(
            (sum - T::one()).abs() <= membership_tolerance(abs_sum),
        ))
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, _gamma: T, _data: MatRef<'_, T>) {
        let len = v.nrows();
        for col in 0..v.ncols() {
            let shift = column_max(v, col);
            let tau = simplex_threshold(|i| v[(i, col)] - shift, len);
            for row in 0..len {
                let entry = (v[(row, col)] - shift) - tau;
                // NaN fails the comparison and passes through.
                out[(row, col)] = if entry <= T::zero() { T::zero() } else { entry };
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
        let len = v.nrows();
        for col in 0..v.ncols() {
            let shift = column_max(v, col);
            let tau = simplex_threshold(|i| v[(i, col)] - shift, len);
            let is_active = |row: usize| v[(row, col)] - shift > tau;
            let mut active_sum = T::zero();
            let mut active = 0usize;
            for row in 0..len {
                if is_active(row) {
                    active_sum += cotangent[(row, col)];
                    active += 1;
                }
            }
            let mean = if active > 0 {
                active_sum / T::from_usize(active).unwrap_or_else(T::one)
            } else {
                T::zero()
            };
            for row in 0..len {
                v_bar[(row, col)] = if is_active(row) {
                    cotangent[(row, col)] - mean
                } else {
                    T::zero()
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prox::projection_checks::{
        assert_f32_matches_f64, assert_projection_properties, assert_vjp_matches_fd,
    };
    use faer::Mat;
    use optlayer_testing::random::gaussian;

    fn project(values: &[f64]) -> Vec<f64> {
        let v = Mat::from_fn(values.len(), 1, |i, _| values[i]);
        let mut out = Mat::zeros(values.len(), 1);
        Simplex.prox(out.as_mut(), v.as_ref(), 1.0, Mat::<f64>::zeros(0, 1).as_ref());
        (0..values.len()).map(|i| out[(i, 0)]).collect()
    }

    #[test]
    fn simplex_projection_known_values() {
        let cases: [(&[f64], &[f64]); 5] = [
            (
                &[0.4, 0.5, 0.6],
                &[0.4 - 0.5 / 3.0, 0.5 - 0.5 / 3.0, 0.6 - 0.5 / 3.0],
            ),
            (&[1.5, 2.0, 0.3], &[0.25, 0.75, 0.0]),
            (&[0.5, 0.0, 0.0], &[2.0 / 3.0, 1.0 / 6.0, 1.0 / 6.0]),
            (&[1.0, 1.0, 0.0], &[0.5, 0.5, 0.0]),
            (&[-5.0, -6.0, 3.0, 4.0], &[0.0, 0.0, 0.0, 1.0]),
        ];
        for (input, expected) in cases {
            let x = project(input);
            for (got, want) in x.iter().zip(expected) {
                assert!(
                    (got - want).abs() < 1e-12,
                    "{input:?}: got {x:?}, expected {expected:?}"
                );
            }
            assert!(x.iter().all(|&xi| xi >= 0.0), "{x:?}");
            assert!((x.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{x:?}");
        }
        let x = project(&[0.4, 0.5, 0.6]);
        assert!((x[0] - 0.233333).abs() < 1e-6);
        assert!((x[1] - 0.333333).abs() < 1e-6);
        assert!((x[2] - 0.433333).abs() < 1e-6);
    }

    #[test]
    fn simplex_derivative_two_active() {
        // c = [0.6, 0.58] projects to [0.51, 0.49], with ∂x₁/∂c₂ = −0.5.
        let v = Mat::from_fn(2, 1, |i, _| [0.6, 0.58][i]);
        assert_eq!(
            project(&[0.6, 0.58])
                .iter()
                .map(|x| (x * 1e12).round() / 1e12)
                .collect::<Vec<_>>(),
            vec![0.51, 0.49]
        );
        let c = Mat::from_fn(2, 1, |i, _| [1.0, 0.0][i]);
        let mut v_bar = Mat::zeros(2, 1);
        Simplex.prox_vjp(
            v_bar.as_mut(),
            v.as_ref(),
            1.0,
            Mat::<f64>::zeros(0, 1).as_ref(),
            c.as_ref(),
        );
        assert!((v_bar[(0, 0)] - 0.5).abs() < 1e-15);
        assert!((v_bar[(1, 0)] + 0.5).abs() < 1e-15);
    }

    #[test]
    fn simplex_value_tolerance() {
        let no_data = Mat::<f64>::zeros(0, 1);
        let value = |x: &[f64]| {
            let column = Mat::from_fn(x.len(), 1, |i, _| x[i]);
            Prox::<f64>::value(&Simplex, column.as_ref(), no_data.as_ref(), 0)
        };
        assert_eq!(value(&[0.25, 0.75, 0.0]), Some(0.0));
        assert_eq!(value(&[0.25, 0.75 + 1e-12, -1e-12]), Some(0.0));
        assert_eq!(value(&[0.25, 0.75 + 1e-6, 0.0]), Some(f64::INFINITY));
        assert_eq!(value(&[0.25, 0.75 + 1e-6, -1e-6]), Some(f64::INFINITY));
        assert_eq!(value(&[f64::NAN, 1.0]), Some(f64::INFINITY));
        for input in [[0.4, 0.5, 0.6], [1e200, -1e200, 3.0], [-5.0, -6.0, 3.0]] {
            let x = project(&input);
            assert_eq!(value(&x), Some(0.0), "{x:?}");
        }
    }

    #[test]
    fn simplex_huge_entries_keep_unit_sum() {
        assert_eq!(project(&[1e200, -1e200, 3.0]), vec![1.0, 0.0, 0.0]);
        assert_eq!(project(&[1e200, 1e200 - 2e184, -1e200]), vec![1.0, 0.0, 0.0]);
        let x = project(&[1e200 + 0.5, 1e200, 1e200]);
        let sum: f64 = x.iter().sum();
        assert!((sum - 1.0).abs() < 1e-15, "{x:?}");
        assert!(x.iter().all(|&xi| (xi - 1.0 / 3.0).abs() < 1e-15), "{x:?}");
        assert_eq!(project(&[-1e200, -3e200]), vec![1.0, 0.0]);
    }

    #[test]
    fn simplex_non_finite_entries_give_nan() {
        for bad in [f64::NAN, f64::INFINITY] {
            let x = project(&[0.2, bad, 0.3]);
            assert!(x.iter().all(|xi| xi.is_nan()), "{bad}: {x:?}");
        }
    }

    /// Returns Gaussian points with no entry within 1e-3 of its column's
    /// threshold, the kink of the projection.
    fn points_off_kinks(dim: usize, batch: usize, seed: u64) -> Mat<f64> {
        (0..)
            .map(|attempt| gaussian(dim, batch, 1000 * seed + attempt))
            .find(|v| {
                (0..batch).all(|col| {
                    let shift = column_max(v.as_ref(), col);
                    let tau = simplex_threshold(|i| v[(i, col)] - shift, dim);
                    (0..dim).all(|i| (v[(i, col)] - shift - tau).abs() > 1e-3)
                })
            })
            .unwrap()
    }

    #[test]
    fn simplex_projection_properties() {
        for seed in 0..20 {
            let dim = 1 + (seed as usize % 7);
            let v = points_off_kinks(dim, 3, seed);
            let draws = gaussian(dim, 3, seed + 50);
            let feasible = Mat::from_fn(dim, 3, |i, j| {
                let total: f64 = (0..dim).map(|k| draws[(k, j)].abs()).sum();
                draws[(i, j)].abs() / total
            });
            let no_data = Mat::<f64>::zeros(0, 3);
            assert_projection_properties(&Simplex, v.as_ref(), no_data.as_ref(), &[feasible]);
            // With one positive entry per column the projection is a vertex,
            // locally constant, and the product vanishes.
            let mut x = Mat::zeros(dim, 3);
            Simplex.prox(x.as_mut(), v.as_ref(), 1.0, no_data.as_ref());
            let at_vertex = (0..3).all(|j| (0..dim).filter(|&i| x[(i, j)] > 0.0).count() == 1);
            assert_vjp_matches_fd(&Simplex, v.as_ref(), no_data.as_ref(), seed + 100, at_vertex);
            assert_f32_matches_f64(&Simplex, &Simplex, v.as_ref(), no_data.as_ref(), seed + 200);
        }
    }
}
