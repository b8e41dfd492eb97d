use faer::{MatMut, MatRef};
use optlayer_core::validate::check_nonnegative;
use optlayer_core::{Parameterized, Prox, Result, Scalar};

/// The threshold `τ` of a projection onto an ℓ1 ball, stored relative to the
/// largest magnitude `m = max_i |v_i|` of the column as `τ − m ≤ 0`.
///
/// Each `|v_i| − τ` is computed as `(|v_i| − m) − (τ − m)`. For the entries
/// near `m`, the only ones that can stay in the support when the radius is
/// small against `m`, both differences are small and exact or nearly so, so
/// the radius is not rounded away: `[1e17, 1e17]` projects onto the unit
/// ball as `[0.5, 0.5]`, where `|v_i| − τ` with `τ` itself rounded to a
/// multiple of 16 would give `[0, 0]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct L1Threshold<T> {
    max_magnitude: T,
    offset: T,
}

impl<T: Scalar> L1Threshold<T> {
    /// Returns `|entry| − τ`, positive exactly on the support.
    #[inline(always)]
    pub(crate) fn excess(&self, entry: T) -> T {
        (entry.abs() - self.max_magnitude) - self.offset
    }

    /// Returns `τ` itself.
    pub(crate) fn value(&self) -> T {
        self.max_magnitude + self.offset
    }
}

/// Returns the threshold of the projection of `v` (entries `v(i)` for
/// `i < len`) onto the ℓ1 ball `{x : ‖x‖₁ ≤ radius}`, or `None` when
/// `‖v‖₁ ≤ radius` or `v` has a NaN entry, so that `v` is its own projection.
///
/// The projection is `x_i = sign(v_i) · max(|v_i| − τ, 0)`, with `τ` the
/// root of `Σ_i max(|v_i| − τ, 0) = radius`. In the shifted magnitudes
/// `u_i = |v_i| − m ≤ 0`, with `m = max_i |v_i|`, the offset `t = τ − m` is
/// the root of `Σ_i max(u_i − t, 0) = radius`, the simplex threshold of `u`
/// for the sum `radius`. Michelot's algorithm finds it without sorting or
/// scratch memory: start from a lower bound of the root and repeat
/// `t = (Σ_{u_i > t} u_i − radius)/|{i : u_i > t}|`, which never
/// decreases, until it stops rising. Each pass that rises drops at least one
/// entry from the set, so there are at most `n` passes. Both `−radius` (the
/// largest entry alone already reaches the sum there) and
/// `(Σ_i u_i − radius)/n` are lower bounds, and the start is the larger.
///
/// An infinite entry gives a NaN threshold, so the column becomes NaN.
pub(crate) fn l1_ball_threshold<T: Scalar>(
    v: impl Fn(usize) -> T,
    len: usize,
    radius: T,
) -> Option<L1Threshold<T>> {
    let mut total = T::zero();
    let mut max_magnitude = T::zero();
    for i in 0..len {
        let magnitude = v(i).abs();
        total += magnitude;
        max_magnitude = max_magnitude.max(magnitude);
    }
    // NaN input returns None, so the identity passes the NaN through.
    if total.is_nan() || total <= radius {
        return None;
    }
    if max_magnitude.is_infinite() {
        return Some(L1Threshold {
            max_magnitude,
            offset: T::nan(),
        });
    }
    let shifted = |i: usize| v(i).abs() - max_magnitude;
    let mut shifted_sum = T::zero();
    for i in 0..len {
        shifted_sum += shifted(i);
    }
    let mean_bound = (shifted_sum - radius) / T::from_usize(len).unwrap_or_else(T::one);
    // `max` ignores a mean bound of −∞ from an overflowing sum.
    let mut offset = mean_bound.max(-radius);
    for _ in 0..len {
        let mut active_sum = T::zero();
        let mut active = 0usize;
        for i in 0..len {
            let value = shifted(i);
            if value > offset {
                active_sum += value;
                active += 1;
            }
        }
        if active == 0 {
            break;
        }
        let next = (active_sum - radius) / T::from_usize(active).unwrap_or_else(T::one);
        // In exact arithmetic `next ≥ offset`; stopping at the first pass
        // that does not rise also ends any oscillation from rounding.
        if next <= offset {
            break;
        }
        offset = next;
    }
    Some(L1Threshold {
        max_magnitude,
        offset,
    })
}

/// The indicator of the ℓ1 ball `{x : ‖x‖₁ ≤ r}`; its prox is the
/// Euclidean projection onto the ball, for every `γ`.
///
/// Outside the ball the projection is soft-thresholding,
/// `x_i = sign(v_i) · max(|v_i| − τ, 0)`, with the threshold `τ > 0` chosen so
/// that `‖x‖₁ = r` (Duchi, Shalev-Shwartz, Singer and Chandra, "Efficient
/// projections onto the ℓ1-ball for learning in high dimensions", ICML
/// 2008). `τ` is found by Michelot's algorithm on `|v|`, without sorting and
/// without scratch memory, in at most `n` passes over the column. It is
/// computed relative to `m = max_i |v_i|`, and `|v_i| − τ` as
/// `(|v_i| − m) − (τ − m)`, so entries such as `1e17` or `1e200` keep their
/// share of a small radius. A NaN entry passes the column through unchanged,
/// and an infinite entry makes it NaN.
///
/// Derivative convention, used identically by the map and its
/// vector-Jacobian product: inside the ball, `‖v‖₁ ≤ r` with the boundary
/// included, the Jacobian is the identity. Outside it, the Jacobian on the
/// support `S = {i : |v_i| > τ}` is `I − s sᵀ/|S|` with `s = sign(v_S)`, and
/// zero outside the support. The support is the set where the computed
/// `(|v_i| − m) − (τ − m)` is positive, so entries where it is zero count as
/// outside.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct L1Ball<T> {
    radius: T,
}

impl<T: Scalar> L1Ball<T> {
    /// Creates the indicator of `{x : ‖x‖₁ ≤ radius}`. A zero radius gives
    /// the projection onto the origin.
    ///
    /// # Errors
    /// When `radius` is negative or not finite.
    pub fn new(radius: T) -> Result<Self> {
        check_nonnegative("l1 ball radius", radius)?;
        Ok(Self { radius })
    }

    /// Returns the radius `r`.
    pub fn radius(&self) -> T {
        self.radius
    }
}

impl<T: Scalar> Parameterized<T> for L1Ball<T> {}

impl<T: Scalar> Prox<T> for L1Ball<T> {
    fn is_indicator(&self) -> bool {
        true
    }

    /// Returns 0 when `‖x‖₁ ≤ r + √ε (1 + r)` and +∞ otherwise.
    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> Option<T> {
        let mut norm = T::zero();
        for row in 0..x.nrows() {
            norm += x[(row, col)].abs();
        }
        let tolerance = T::epsilon().sqrt() * (T::one() + self.radius);
        Some(if norm <= self.radius + tolerance {
            T::zero()
        } else {
            T::infinity()
        })
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, _gamma: T, _data: MatRef<'_, T>) {
        let len = v.nrows();
        for col in 0..v.ncols() {
            match l1_ball_threshold(|i| v[(i, col)], len, self.radius) {
                None => {
                    for row in 0..len {
                        out[(row, col)] = v[(row, col)];
                    }
                }
                Some(threshold) => {
                    for row in 0..len {
                        let entry = v[(row, col)];
                        let excess = threshold.excess(entry);
                        // NaN fails the comparison and passes through.
                        let shrunk = if excess <= T::zero() { T::zero() } else { excess };
                        out[(row, col)] = if entry < T::zero() { -shrunk } else { shrunk };
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
        let len = v.nrows();
        for col in 0..v.ncols() {
            match l1_ball_threshold(|i| v[(i, col)], len, self.radius) {
                None => {
                    for row in 0..len {
                        v_bar[(row, col)] = cotangent[(row, col)];
                    }
                }
                Some(threshold) => {
                    let mean = support_signed_mean(v, cotangent, col, threshold);
                    for row in 0..len {
                        let entry = v[(row, col)];
                        v_bar[(row, col)] = if threshold.excess(entry) > T::zero() {
                            cotangent[(row, col)] - entry.signum() * mean
                        } else {
                            T::zero()
                        };
                    }
                }
            }
        }
    }
}

/// Returns `⟨s, c_S⟩/|S|` over the support `S = {i : |v_i| > τ}` of column
/// `col`, with `s = sign(v_S)`, or 0 when the support is empty.
pub(crate) fn support_signed_mean<T: Scalar>(
    v: MatRef<'_, T>,
    cotangent: MatRef<'_, T>,
    col: usize,
    threshold: L1Threshold<T>,
) -> T {
    let mut sum = T::zero();
    let mut count = 0usize;
    for row in 0..v.nrows() {
        let entry = v[(row, col)];
        if threshold.excess(entry) > T::zero() {
            sum += entry.signum() * cotangent[(row, col)];
            count += 1;
        }
    }
    if count == 0 {
        T::zero()
    } else {
        sum / T::from_usize(count).unwrap_or_else(T::one)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prox::test_support::*;
    use faer::Mat;
    use optlayer_core::Error;
    use optlayer_testing::random::gaussian;

    fn l1_norm(values: &[f64]) -> f64 {
        values.iter().map(|v| v.abs()).sum()
    }

    /// Returns the projection by the sort-based rule: sort `|v|` in
    /// decreasing order `u`, take the largest `k` with
    /// `u_k > (Σ_{j ≤ k} u_j − r)/k`, and threshold at that value.
    fn sorted_projection(values: &[f64], radius: f64) -> Vec<f64> {
        if l1_norm(values) <= radius {
            return values.to_vec();
        }
        let mut u: Vec<f64> = values.iter().map(|v| v.abs()).collect();
        u.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let mut cumulative = 0.0;
        // k = 1 gives τ = u₁ − r, the result when no larger k qualifies (as for r = 0).
        let mut tau = u[0] - radius;
        for (k, &uk) in u.iter().enumerate() {
            cumulative += uk;
            let candidate = (cumulative - radius) / (k + 1) as f64;
            if uk > candidate {
                tau = candidate;
            }
        }
        values
            .iter()
            .map(|v| v.signum() * (v.abs() - tau).max(0.0))
            .collect()
    }

    #[test]
    fn projection_known_values() {
        let ball = L1Ball::new(1.0).unwrap();
        // Inside or on the boundary: unchanged.
        assert_eq!(apply(&ball, &[0.2, -0.3], 1.0), vec![0.2, -0.3]);
        assert_eq!(apply(&ball, &[0.5, -0.5], 1.0), vec![0.5, -0.5]);
        // τ = (2 + 1.5 − 1)/2 = 1.25: [2, −1.5, 0.5] → [0.75, −0.25, 0].
        assert_close(&apply(&ball, &[2.0, -1.5, 0.5], 1.0), &[0.75, -0.25, 0.0], 1e-15);
        // τ = 1.5 with r = 2: [3, −2, 1, 0] → [1.5, −0.5, 0, 0].
        let ball = L1Ball::new(2.0).unwrap();
        assert_close(
            &apply(&ball, &[3.0, -2.0, 1.0, 0.0], 1.0),
            &[1.5, -0.5, 0.0, 0.0],
            1e-15,
        );
        // Equal magnitudes share the radius: τ = 0.5.
        assert_close(&apply(&ball, &[-1.5, 1.5], 1.0), &[-1.0, 1.0], 1e-15);
    }

    #[test]
    fn projection_matches_sort_based_rule() {
        for seed in 0..20 {
            let v = scaled_gaussian(9, 1, seed, 1.0 + seed as f64 * 0.3);
            let values: Vec<f64> = (0..9).map(|i| v[(i, 0)]).collect();
            for radius in [0.0, 0.1, 1.0, 3.0, 100.0] {
                let x = apply(&L1Ball::new(radius).unwrap(), &values, 1.0);
                assert_close(&x, &sorted_projection(&values, radius), 1e-12);
                assert!(l1_norm(&x) <= radius * (1.0 + 1e-12) + 1e-15, "{x:?}");
            }
        }
    }

    #[test]
    fn zero_radius_projects_to_origin() {
        let ball = L1Ball::new(0.0).unwrap();
        assert_eq!(apply(&ball, &[1.0, -2.0, 2.0], 1.0), vec![0.0, 0.0, 0.0]);
        assert_eq!(
            vjp(&ball, &[1.0, -2.0, 2.0], 1.0, &[1.0, 1.0, 1.0]),
            vec![0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn jacobian_known_values() {
        let ball = L1Ball::new(1.0).unwrap();
        // Support {0, 1} with signs [+, −]: J = I − s sᵀ/2 on the support.
        // Jᵀ [1, 2, 3] = [1 − (1 − 2)/2, 2 + (1 − 2)/2, 0] = [1.5, 1.5, 0].
        let v_bar = vjp(&ball, &[2.0, -1.5, 0.5], 1.0, &[1.0, 2.0, 3.0]);
        assert_close(&v_bar, &[1.5, 1.5, 0.0], 1e-15);
        // Inside the ball, the boundary included: the identity.
        assert_eq!(vjp(&ball, &[0.5, -0.5], 1.0, &[1.0, 2.0]), vec![1.0, 2.0]);
    }

    #[test]
    fn projection_ignores_step() {
        let ball = L1Ball::new(1.0).unwrap();
        let values = [2.0, -1.5, 0.5];
        for gamma in [0.0, 0.5, 7.0] {
            assert_eq!(apply(&ball, &values, gamma), apply(&ball, &values, 1.0));
        }
    }

    #[test]
    fn vjp_matches_finite_differences() {
        for seed in 0..8 {
            let v = scaled_gaussian(7, 3, seed, 2.0);
            let c = gaussian(7, 3, seed + 60);
            // Radius 3 projects most of these columns; radius 100 leaves them inside.
            assert_vjp_matches_fd(&L1Ball::new(3.0).unwrap(), v.as_ref(), 1.0, c.as_ref());
            assert_vjp_matches_fd(&L1Ball::new(100.0).unwrap(), v.as_ref(), 1.0, c.as_ref());
        }
    }

    #[test]
    fn f32_matches_f64() {
        let v = scaled_gaussian(9, 4, 15, 2.0);
        let c = gaussian(9, 4, 16);
        assert_f32_matches_f64(
            &L1Ball::<f32>::new(2.5).unwrap(),
            &L1Ball::<f64>::new(2.5).unwrap(),
            v.as_ref(),
            1.0,
            c.as_ref(),
        );
    }

    #[test]
    fn huge_entries_stay_finite() {
        let ball = L1Ball::new(1e200).unwrap();
        let x = apply(&ball, &[3e200, -2e200, 1e199], 1.0);
        // τ = 2e200 from the top two entries: [1e200, 0, 0].
        assert_close(&x, &[1e200, 0.0, 0.0], 1e-14);
        let ball = L1Ball::new(1.0).unwrap();
        let x = apply(&ball, &[3e200, -4e200], 1.0);
        assert!(x.iter().all(|xi| xi.is_finite()), "{x:?}");
        assert_eq!(value(&ball, &x), 0.0);
    }

    #[test]
    fn large_entries_project_without_cancellation() {
        let ball = L1Ball::new(1.0).unwrap();
        // Equal magnitudes share the radius: τ = 1e17 − 0.5.
        assert_eq!(apply(&ball, &[1e17, 1e17], 1.0), vec![0.5, 0.5]);
        // Only the largest entry stays: τ = 3e200 − 1.
        assert_eq!(apply(&ball, &[3e200, -1e200], 1.0), vec![1.0, 0.0]);
        // The magnitudes differ by 16, more than the radius: τ = 1e17 + 15.
        assert_eq!(apply(&ball, &[1e17 + 16.0, 1e17], 1.0), vec![1.0, 0.0]);
        // Radius 24 keeps both: τ = 1e17 − 4, so [1e17 + 16, −1e17] ↦ [20, −4].
        let ball = L1Ball::new(24.0).unwrap();
        assert_eq!(apply(&ball, &[1e17 + 16.0, -1e17], 1.0), vec![20.0, -4.0]);
        let ball = L1Ball::<f32>::new(1.0).unwrap();
        let v = column::<f32>(&[1e10, -1e10]);
        let mut x = Mat::<f32>::zeros(2, 1);
        ball.prox(x.as_mut(), v.as_ref(), 1.0, no_data::<f32>(1).as_ref());
        assert_eq!(x, column::<f32>(&[0.5, -0.5]));
    }

    #[test]
    fn extreme_and_non_finite_entries() {
        let ball = L1Ball::new(1.0).unwrap();
        // The shifted magnitudes sum to −∞ here; the start −r keeps τ finite.
        assert_eq!(apply(&ball, &[f64::MAX, 0.0, -0.5], 1.0), vec![1.0, 0.0, 0.0]);
        // A NaN entry passes the column through; an infinite one makes it NaN.
        let x = apply(&ball, &[f64::NAN, 3.0], 1.0);
        assert!(x[0].is_nan(), "{x:?}");
        assert_eq!(x[1], 3.0);
        let x = apply(&ball, &[f64::INFINITY, 3.0], 1.0);
        assert!(x.iter().all(|xi| xi.is_nan()), "{x:?}");
    }

    #[test]
    fn large_entries_keep_support_in_vjp() {
        let ball = L1Ball::new(1.0).unwrap();
        // Support {0, 1} with equal signs: Jᵀ [1, 0] = [1 − 1/2, 0 − 1/2].
        assert_eq!(vjp(&ball, &[1e17, 1e17], 1.0, &[1.0, 0.0]), vec![0.5, -0.5]);
        // Support {0, 1} with signs [+, −]: ⟨s, c⟩/2 = −1/2, so Jᵀ [1, 2] = [1 + 1/2, 2 − 1/2].
        let ball = L1Ball::new(24.0).unwrap();
        assert_eq!(
            vjp(&ball, &[1e17 + 16.0, -1e17], 1.0, &[1.0, 2.0]),
            vec![1.5, 1.5]
        );
    }

    #[test]
    fn value_known_points() {
        let ball = L1Ball::new(2.0).unwrap();
        assert_eq!(value(&ball, &[1.0, -1.0]), 0.0);
        assert_eq!(value(&ball, &[0.5, 0.0]), 0.0);
        assert_eq!(value(&ball, &[1.5, -1.0]), f64::INFINITY);
        // Rounding of a projection stays inside the tolerance.
        assert_eq!(value(&ball, &[1.0 + 1e-12, -1.0]), 0.0);
    }

    #[test]
    fn optimality_by_subgradient_inequality() {
        // The subgradient inequality for an indicator is ⟨v − x, y − x⟩ ≤ 0
        // for every y in the ball; points outside it give g(y) = ∞.
        let ball = L1Ball::new(1.5).unwrap();
        let v = scaled_gaussian(5, 4, 41, 2.0);
        let points: Vec<Mat<f64>> = (0..30)
            .map(|k| {
                let mut y = gaussian(5, 4, 500 + k);
                for j in 0..4 {
                    let norm: f64 = (0..5).map(|i| y[(i, j)].abs()).sum();
                    let target = 1.5 * ((k % 5) as f64 + 0.5) / 5.0;
                    for i in 0..5 {
                        y[(i, j)] *= target / norm;
                    }
                }
                y
            })
            .collect();
        assert_subgradient_inequality(&ball, v.as_ref(), 1.0, &points);
    }

    #[test]
    fn invalid_radius_rejected() {
        let err = L1Ball::new(-1.0).unwrap_err();
        assert!(err.to_string().contains("l1 ball radius"), "{err}");
        assert!(matches!(
            L1Ball::new(f64::NAN),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            L1Ball::new(f64::INFINITY),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(L1Ball::new(0.0).is_ok());
    }
}
