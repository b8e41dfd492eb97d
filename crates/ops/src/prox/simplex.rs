use faer::{MatMut, MatRef};
use optlayer_core::{Parameterized, Prox, Scalar};

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
/// The Jacobian on the support `S = {i : v_i > τ}` is `I − 1 1ᵀ/|S|`, and
/// zero outside it. Entries with `v_i = τ` exactly count as outside, in the
/// projection and in its vector-Jacobian product alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Simplex;

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
    /// Returns 0 when every entry is at least `−τ` and the entries sum to 1
    /// within `τ`, and infinity otherwise, where `τ = √ε (1 + Σ_i |x_i|)`.
    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> Option<T> {
        let mut sum = T::zero();
        let mut abs_sum = T::zero();
        let mut min = T::infinity();
        for row in 0..x.nrows() {
            let entry = x[(row, col)];
            sum += entry;
            abs_sum += entry.abs();
            min = if entry.is_nan() { entry } else { min.min(entry) };
        }
        let tol = T::epsilon().sqrt() * (T::one() + abs_sum);
        let inside = min >= -tol && (sum - T::one()).abs() <= tol;
        Some(if inside { T::zero() } else { T::infinity() })
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, _gamma: T, _data: MatRef<'_, T>) {
        let len = v.nrows();
        for col in 0..v.ncols() {
            let tau = simplex_threshold(|i| v[(i, col)], len);
            for row in 0..len {
                out[(row, col)] = (v[(row, col)] - tau).max(T::zero());
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
            let tau = simplex_threshold(|i| v[(i, col)], len);
            let mut active_sum = T::zero();
            let mut active = 0usize;
            for row in 0..len {
                if v[(row, col)] > tau {
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
                v_bar[(row, col)] = if v[(row, col)] > tau {
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
    use faer::Mat;

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
}
