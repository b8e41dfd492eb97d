//! Column-wise helpers on batches (matrices whose columns are samples).
//!
//! Norms are computed with scaling, so entries near the overflow threshold
//! (1e200 in `f64`) give finite results instead of infinity.

use faer::{MatMut, MatRef};

use crate::Scalar;

/// Returns the Euclidean norm of `values`, scaled to avoid overflow and underflow.
pub fn norm2<T: Scalar>(values: impl Iterator<Item = T> + Clone) -> T {
    // Fast path: a plain sum of squares is exact enough unless it overflowed
    // or fell into the range where squares of small entries underflow.
    let sum = values.clone().fold(T::zero(), |acc, v| acc + v * v);
    if sum.is_finite() && sum > T::min_positive_value().sqrt() {
        return sum.sqrt();
    }
    let max_abs = values.clone().fold(T::zero(), |acc, v| {
        if v.is_nan() || acc.is_nan() {
            T::nan()
        } else {
            acc.max(v.abs())
        }
    });
    if max_abs == T::zero() || !max_abs.is_finite() {
        // Zero vector, or NaN or infinity, which must propagate as is.
        return max_abs;
    }
    let inv = max_abs.recip();
    let scaled_sum = values.fold(T::zero(), |acc, v| {
        let scaled = v * inv;
        acc + scaled * scaled
    });
    max_abs * scaled_sum.sqrt()
}

/// Independent partial sums in the sum-of-squares loops: enough for the
/// compiler to vectorize them and to hide the latency of the additions.
const LANES: usize = 16;

/// Returns the sum of the squares of `values`, accumulated in [`LANES`] lanes.
#[inline(always)]
fn sum_squares<T: Scalar>(values: &[T]) -> T {
    let mut lanes = [T::zero(); LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v * v;
        }
    }
    let mut sum = lanes.iter().fold(T::zero(), |acc, &lane| acc + lane);
    for &v in rest {
        sum += v * v;
    }
    sum
}

/// Returns the sum of the squares of `a − b`, accumulated in [`LANES`] lanes.
#[inline(always)]
fn sum_squared_differences<T: Scalar>(a: &[T], b: &[T]) -> T {
    let mut lanes = [T::zero(); LANES];
    let chunks_a = a.chunks_exact(LANES);
    let chunks_b = b.chunks_exact(LANES);
    let (rest_a, rest_b) = (chunks_a.remainder(), chunks_b.remainder());
    for (chunk_a, chunk_b) in chunks_a.zip(chunks_b) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(chunk_a).zip(chunk_b) {
            let d = x - y;
            *lane += d * d;
        }
    }
    let mut sum = lanes.iter().fold(T::zero(), |acc, &lane| acc + lane);
    for (&x, &y) in rest_a.iter().zip(rest_b) {
        sum += (x - y) * (x - y);
    }
    sum
}

/// Returns the Euclidean norm of a slice; see [`norm2`].
pub fn slice_norm2<T: Scalar>(values: &[T]) -> T {
    let sum = sum_squares(values);
    if sum.is_finite() && sum > T::min_positive_value().sqrt() {
        return sum.sqrt();
    }
    norm2(values.iter().copied())
}

/// Returns the Euclidean norm of `a − b` for slices of equal length; see [`norm2`].
pub fn slice_diff_norm2<T: Scalar>(a: &[T], b: &[T]) -> T {
    assert_eq!(a.len(), b.len(), "slice_diff_norm2: lengths differ");
    let sum = sum_squared_differences(a, b);
    if sum.is_finite() && sum > T::min_positive_value().sqrt() {
        return sum.sqrt();
    }
    norm2(a.iter().zip(b).map(|(&x, &y)| x - y))
}

/// Returns column `col` of `m` as a slice when its entries are contiguous.
pub fn col_slice<'a, T>(m: MatRef<'a, T>, col: usize) -> Option<&'a [T]> {
    m.col(col).try_as_col_major().map(|c| c.as_slice())
}

/// Returns the Euclidean norm of column `col` of `m`.
pub fn col_norm2<T: Scalar>(m: MatRef<'_, T>, col: usize) -> T {
    match col_slice(m, col) {
        Some(values) => slice_norm2(values),
        None => {
            let c = m.col(col);
            norm2((0..m.nrows()).map(move |i| c[i]))
        }
    }
}

/// Returns the Euclidean norm of the difference of column `col` of `a` and `b`.
pub fn col_diff_norm2<T: Scalar>(a: MatRef<'_, T>, b: MatRef<'_, T>, col: usize) -> T {
    match (col_slice(a, col), col_slice(b, col)) {
        (Some(sa), Some(sb)) => slice_diff_norm2(sa, sb),
        _ => {
            let ca = a.col(col);
            let cb = b.col(col);
            norm2((0..a.nrows()).map(move |i| ca[i] - cb[i]))
        }
    }
}

/// Swaps columns `i` and `j` of `m` in place.
pub fn swap_cols<T: Scalar>(m: MatMut<'_, T>, i: usize, j: usize) {
    if i == j {
        return;
    }
    let (mut a, mut b) = m.two_cols_mut(i, j);
    for row in 0..a.nrows() {
        std::mem::swap(&mut a[row], &mut b[row]);
    }
}

/// Writes `out = a * x + b * y` entry by entry; all three must have one shape.
pub fn axpby<T: Scalar>(out: MatMut<'_, T>, a: T, x: MatRef<'_, T>, b: T, y: MatRef<'_, T>) {
    faer::zip!(out, x, y).for_each(|faer::unzip!(o, x, y)| *o = a * *x + b * *y);
}

/// Returns the first non-finite entry of `m` as (row, column, value), if any.
pub fn first_non_finite<T: Scalar>(m: MatRef<'_, T>) -> Option<(usize, usize, T)> {
    for col in 0..m.ncols() {
        for row in 0..m.nrows() {
            let v = m[(row, col)];
            if !v.is_finite() {
                return Some((row, col, v));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;

    #[test]
    fn norm2_huge_entries_stay_finite() {
        let values = [3e200_f64, 4e200];
        let n = norm2(values.iter().copied());
        assert!(n.is_finite());
        assert!((n / 5e200 - 1.0).abs() < 1e-14);
    }

    #[test]
    fn norm2_zero_vector_is_zero() {
        assert_eq!(norm2([0.0_f64; 3].iter().copied()), 0.0);
    }

    #[test]
    fn norm2_tiny_entries_do_not_underflow() {
        let values = [3e-200_f64, 4e-200];
        let n = norm2(values.iter().copied());
        assert!((n / 5e-200 - 1.0).abs() < 1e-14);
    }

    #[test]
    fn norm2_infinity_propagates() {
        assert_eq!(norm2([1.0_f64, f64::INFINITY].iter().copied()), f64::INFINITY);
    }

    #[test]
    fn norm2_nan_propagates() {
        assert!(norm2([1.0_f64, f64::NAN].iter().copied()).is_nan());
    }

    #[test]
    fn slice_norms_match_scaled_norm() {
        let values: Vec<f64> = (0..37).map(|i| (i as f64 * 0.37).sin() * 1e3).collect();
        let shifted: Vec<f64> = values.iter().map(|v| v * 0.5 + 1.0).collect();
        let expected = norm2(values.iter().copied());
        assert!((slice_norm2(&values) / expected - 1.0).abs() < 1e-14);
        let expected_diff = norm2(values.iter().zip(&shifted).map(|(a, b)| a - b));
        assert!((slice_diff_norm2(&values, &shifted) / expected_diff - 1.0).abs() < 1e-14);
        let huge: Vec<f64> = values.iter().map(|v| v * 1e200).collect();
        assert!((slice_norm2(&huge) / (expected * 1e200) - 1.0).abs() < 1e-14);
        assert_eq!(slice_norm2::<f64>(&[]), 0.0);
    }

    #[test]
    fn swap_cols_exchanges_columns() {
        let mut m = Mat::<f64>::from_fn(2, 3, |i, j| (10 * j + i) as f64);
        swap_cols(m.as_mut(), 0, 2);
        assert_eq!(m[(0, 0)], 20.0);
        assert_eq!(m[(1, 2)], 1.0);
        assert_eq!(m[(1, 1)], 11.0);
    }
}
