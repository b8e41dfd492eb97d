//! Column-wise helpers on batches (matrices whose columns are samples).
//!
//! Norms are computed with scaling, so entries near the overflow threshold
//! (1e200 in `f64`) give finite results instead of infinity.

use faer::prelude::{Reborrow, ReborrowMut};
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
        let chunk = lanes_of(chunk);
        for k in 0..LANES {
            lanes[k] += chunk[k] * chunk[k];
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
        let (chunk_a, chunk_b) = (lanes_of(chunk_a), lanes_of(chunk_b));
        for k in 0..LANES {
            let d = chunk_a[k] - chunk_b[k];
            lanes[k] += d * d;
        }
    }
    let mut sum = lanes.iter().fold(T::zero(), |acc, &lane| acc + lane);
    for (&x, &y) in rest_a.iter().zip(rest_b) {
        sum += (x - y) * (x - y);
    }
    sum
}

/// Views a chunk of `chunks_exact(LANES)` as an array, so that the lane
/// loops have a length known at compile time.
#[inline(always)]
fn lanes_of<T>(chunk: &[T]) -> &[T; LANES] {
    chunk
        .try_into()
        .expect("chunks_exact yields chunks of LANES entries")
}

/// Returns the Euclidean norm of a slice; see [`norm2`].
pub fn slice_norm2<T: Scalar>(values: &[T]) -> T {
    let sum = sum_squares_fast(values);
    if sum.is_finite() && sum > T::min_positive_value().sqrt() {
        return sum.sqrt();
    }
    norm2(values.iter().copied())
}

/// Returns the Euclidean norm of `a − b` for slices of equal length; see [`norm2`].
pub fn slice_diff_norm2<T: Scalar>(a: &[T], b: &[T]) -> T {
    assert_eq!(a.len(), b.len(), "slice_diff_norm2: lengths differ");
    let sum = sum_squared_differences_fast(a, b);
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

/// Returns `(‖a − b‖, ‖a‖)` for column `col` of `a` and `b`: the residual
/// and the scale of the stopping test. The values equal those of
/// [`col_diff_norm2`] and [`col_norm2`] bit for bit.
pub fn col_residual_norms<T: Scalar>(a: MatRef<'_, T>, b: MatRef<'_, T>, col: usize) -> (T, T) {
    let (Some(sa), Some(sb)) = (col_slice(a, col), col_slice(b, col)) else {
        return (col_diff_norm2(a, b, col), col_norm2(a, col));
    };
    assert_eq!(sa.len(), sb.len(), "col_residual_norms: lengths differ");
    let (diff_sum, sum) = (sum_squared_differences_fast(sa, sb), sum_squares_fast(sa));
    let tiny = T::min_positive_value().sqrt();
    let diff = if diff_sum.is_finite() && diff_sum > tiny {
        diff_sum.sqrt()
    } else {
        norm2(sa.iter().zip(sb).map(|(&x, &y)| x - y))
    };
    let norm = if sum.is_finite() && sum > tiny {
        sum.sqrt()
    } else {
        norm2(sa.iter().copied())
    };
    (diff, norm)
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

/// Returns whether the processor runs AVX2 and FMA instructions. The standard
/// library detects the features once and caches them.
#[inline(always)]
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Returns whether the processor runs AVX-512F, AVX2 and FMA instructions.
#[inline(always)]
fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && has_avx2()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

// The crates are built for the baseline x86-64 instruction set, whose vector
// registers hold 128 bits. The kernels below are also compiled for AVX2, with
// 256-bit registers, and for AVX-512, with 512-bit registers, and the
// processor's support picks the copy at run time.
// Results do not depend on the copy: without fast-math flags the compiler
// neither fuses multiplications with additions nor reorders operations, so
// every operation rounds as in the baseline build. The exception is the
// sign of a NaN result. The AVX2 and AVX-512 copies of the sums of squares
// return NaN with the sign bit set where the baseline copy returns it
// clear, probably because the compiler swaps the operands of an addition
// (not traced).

/// Defines `$name`, which calls the `#[inline(always)]` kernel `$kernel`
/// compiled for AVX-512 or for AVX2 and FMA when the processor has them.
macro_rules! dispatch {
    (
        $(#[$doc:meta])*
        fn $name:ident<$($generic:ident: $bound:path),*>($($arg:ident: $ty:ty),*) -> $ret:ty = $kernel:ident
    ) => {
        $(#[$doc])*
        #[inline(always)]
        fn $name<$($generic: $bound),*>($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn with_avx2<$($generic: $bound),*>($($arg: $ty),*) -> $ret {
                    $kernel($($arg),*)
                }
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn with_avx512<$($generic: $bound),*>($($arg: $ty),*) -> $ret {
                    $kernel($($arg),*)
                }
                if has_avx512() {
                    // SAFETY: the processor supports AVX-512F, AVX2 and FMA, checked by `has_avx512`.
                    return unsafe { with_avx512($($arg),*) };
                }
                if has_avx2() {
                    // SAFETY: the processor supports AVX2 and FMA, checked by `has_avx2`.
                    return unsafe { with_avx2($($arg),*) };
                }
            }
            $kernel($($arg),*)
        }
    };
}

dispatch! {
    /// Returns [`sum_squares`], from the copy compiled for the processor.
    fn sum_squares_fast<T: Scalar>(values: &[T]) -> T = sum_squares
}

dispatch! {
    /// Returns [`sum_squared_differences`], from the copy compiled for the processor.
    fn sum_squared_differences_fast<T: Scalar>(a: &[T], b: &[T]) -> T = sum_squared_differences
}

/// Returns column `col` of `m` as a mutable slice when its entries are contiguous.
#[inline(always)]
fn col_slice_mut<'a, T>(m: MatMut<'a, T>, col: usize) -> Option<&'a mut [T]> {
    m.col_mut(col).try_as_col_major_mut().map(|c| c.as_slice_mut())
}

/// Runs the loop of [`map1`] on contiguous columns. Returns `false`, having
/// written nothing, when they are not. Contiguity depends only on the row
/// stride and the row count, so the first column decides for all.
#[inline(always)]
fn map1_kernel<T: Scalar, F: Fn(T) -> T>(mut out: MatMut<'_, T>, a: MatRef<'_, T>, f: &F) -> bool {
    for col in 0..out.ncols() {
        let (Some(o), Some(a)) = (col_slice_mut(out.rb_mut(), col), col_slice(a, col)) else {
            return false;
        };
        map1_column(o, a, f);
    }
    true
}

/// Runs the loop of [`map1_kernel`] on one column. Slices passed as
/// arguments carry the compiler's no-alias guarantee into the inlined loop,
/// so it is vectorized without a runtime overlap test. Inlined into the
/// column loop, that test spans all columns of the matrices. It fails when
/// `out` and an input are row blocks of one matrix, as two parts of a
/// splitting's state are, and the scalar loop then ran instead.
#[inline(always)]
fn map1_column<T: Scalar, F: Fn(T) -> T>(o: &mut [T], a: &[T], f: &F) {
    let a = &a[..o.len()];
    for i in 0..o.len() {
        o[i] = f(a[i]);
    }
}

/// Runs the loop of [`map2`] on contiguous columns; see [`map1_kernel`].
#[inline(always)]
fn map2_kernel<T: Scalar, F: Fn(T, T) -> T>(
    mut out: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    f: &F,
) -> bool {
    for col in 0..out.ncols() {
        let (Some(o), Some(a), Some(b)) = (
            col_slice_mut(out.rb_mut(), col),
            col_slice(a, col),
            col_slice(b, col),
        ) else {
            return false;
        };
        map2_column(o, a, b, f);
    }
    true
}

/// Runs the loop of [`map2_kernel`] on one column, as [`map1_column`] does.
#[inline(always)]
fn map2_column<T: Scalar, F: Fn(T, T) -> T>(o: &mut [T], a: &[T], b: &[T], f: &F) {
    let (a, b) = (&a[..o.len()], &b[..o.len()]);
    for i in 0..o.len() {
        o[i] = f(a[i], b[i]);
    }
}

/// Runs the loop of [`map3`] on contiguous columns; see [`map1_kernel`].
#[inline(always)]
fn map3_kernel<T: Scalar, F: Fn(T, T, T) -> T>(
    mut out: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: MatRef<'_, T>,
    f: &F,
) -> bool {
    for col in 0..out.ncols() {
        let (Some(o), Some(a), Some(b), Some(c)) = (
            col_slice_mut(out.rb_mut(), col),
            col_slice(a, col),
            col_slice(b, col),
            col_slice(c, col),
        ) else {
            return false;
        };
        map3_column(o, a, b, c, f);
    }
    true
}

/// Runs the loop of [`map3_kernel`] on one column, as [`map1_column`] does.
#[inline(always)]
fn map3_column<T: Scalar, F: Fn(T, T, T) -> T>(o: &mut [T], a: &[T], b: &[T], c: &[T], f: &F) {
    let (a, b, c) = (&a[..o.len()], &b[..o.len()], &c[..o.len()]);
    for i in 0..o.len() {
        o[i] = f(a[i], b[i], c[i]);
    }
}

/// Runs the loop of [`update1`] on contiguous columns; see [`map1_kernel`].
#[inline(always)]
fn update1_kernel<T: Scalar, F: Fn(T, T) -> T>(mut out: MatMut<'_, T>, a: MatRef<'_, T>, f: &F) -> bool {
    for col in 0..out.ncols() {
        let (Some(o), Some(a)) = (col_slice_mut(out.rb_mut(), col), col_slice(a, col)) else {
            return false;
        };
        update1_column(o, a, f);
    }
    true
}

/// Runs the loop of [`update1_kernel`] on one column, as [`map1_column`] does.
#[inline(always)]
fn update1_column<T: Scalar, F: Fn(T, T) -> T>(o: &mut [T], a: &[T], f: &F) {
    let a = &a[..o.len()];
    for i in 0..o.len() {
        o[i] = f(o[i], a[i]);
    }
}

/// Runs the loop of [`update2`] on contiguous columns; see [`map1_kernel`].
#[inline(always)]
fn update2_kernel<T: Scalar, F: Fn(T, T, T) -> T>(
    mut out: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    f: &F,
) -> bool {
    for col in 0..out.ncols() {
        let (Some(o), Some(a), Some(b)) = (
            col_slice_mut(out.rb_mut(), col),
            col_slice(a, col),
            col_slice(b, col),
        ) else {
            return false;
        };
        update2_column(o, a, b, f);
    }
    true
}

/// Runs the loop of [`update2_kernel`] on one column, as [`map1_column`] does.
#[inline(always)]
fn update2_column<T: Scalar, F: Fn(T, T, T) -> T>(o: &mut [T], a: &[T], b: &[T], f: &F) {
    let (a, b) = (&a[..o.len()], &b[..o.len()]);
    for i in 0..o.len() {
        o[i] = f(o[i], a[i], b[i]);
    }
}

/// Runs the loop of [`update_with_outputs`] on contiguous columns; see
/// [`map1_kernel`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn update_with_outputs_kernel<T: Scalar, F: Fn(T, T, T, T) -> (T, T, T)>(
    mut c: MatMut<'_, T>,
    mut out1: MatMut<'_, T>,
    mut out2: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    d: MatRef<'_, T>,
    f: &F,
) -> bool {
    for col in 0..c.ncols() {
        let (Some(c), Some(o1), Some(o2), Some(a), Some(b), Some(d)) = (
            col_slice_mut(c.rb_mut(), col),
            col_slice_mut(out1.rb_mut(), col),
            col_slice_mut(out2.rb_mut(), col),
            col_slice(a, col),
            col_slice(b, col),
            col_slice(d, col),
        ) else {
            return false;
        };
        update_with_outputs_column(c, o1, o2, a, b, d, f);
    }
    true
}

/// Runs the loop of [`update_with_outputs_kernel`] on one column, as
/// [`map1_column`] does.
#[inline(always)]
fn update_with_outputs_column<T: Scalar, F: Fn(T, T, T, T) -> (T, T, T)>(
    c: &mut [T],
    o1: &mut [T],
    o2: &mut [T],
    a: &[T],
    b: &[T],
    d: &[T],
    f: &F,
) {
    let n = c.len();
    let (o1, o2, a, b, d) = (&mut o1[..n], &mut o2[..n], &a[..n], &b[..n], &d[..n]);
    for i in 0..n {
        (c[i], o1[i], o2[i]) = f(c[i], a[i], b[i], d[i]);
    }
}

dispatch! {
    /// Runs [`update1_kernel`] in the copy compiled for the processor.
    fn update1_fast<T: Scalar, F: Fn(T, T) -> T>(out: MatMut<'_, T>, a: MatRef<'_, T>, f: &F) -> bool = update1_kernel
}

dispatch! {
    /// Runs [`update2_kernel`] in the copy compiled for the processor.
    fn update2_fast<T: Scalar, F: Fn(T, T, T) -> T>(out: MatMut<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>, f: &F) -> bool = update2_kernel
}

dispatch! {
    /// Runs [`map1_kernel`] in the copy compiled for the processor.
    fn map1_fast<T: Scalar, F: Fn(T) -> T>(out: MatMut<'_, T>, a: MatRef<'_, T>, f: &F) -> bool = map1_kernel
}

dispatch! {
    /// Runs [`map2_kernel`] in the copy compiled for the processor.
    fn map2_fast<T: Scalar, F: Fn(T, T) -> T>(out: MatMut<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>, f: &F) -> bool = map2_kernel
}

dispatch! {
    /// Runs [`map3_kernel`] in the copy compiled for the processor.
    fn map3_fast<T: Scalar, F: Fn(T, T, T) -> T>(
        out: MatMut<'_, T>,
        a: MatRef<'_, T>,
        b: MatRef<'_, T>,
        c: MatRef<'_, T>,
        f: &F
    ) -> bool = map3_kernel
}

dispatch! {
    /// Runs [`update_with_outputs_kernel`] in the copy compiled for the processor.
    fn update_with_outputs_fast<T: Scalar, F: Fn(T, T, T, T) -> (T, T, T)>(
        c: MatMut<'_, T>,
        out1: MatMut<'_, T>,
        out2: MatMut<'_, T>,
        a: MatRef<'_, T>,
        b: MatRef<'_, T>,
        d: MatRef<'_, T>,
        f: &F
    ) -> bool = update_with_outputs_kernel
}

/// Writes `out[i, j] = f(a[i, j])`. Contiguous columns run in a loop
/// vectorized for the processor (AVX2 where available), others entry by
/// entry, with the same result.
///
/// # Panics
/// When `a` and `out` differ in shape.
pub fn map1<T: Scalar>(mut out: MatMut<'_, T>, a: MatRef<'_, T>, f: impl Fn(T) -> T) {
    assert_same_shape(out.rb(), [a]);
    if !map1_fast(out.rb_mut(), a, &f) {
        faer::zip!(out, a).for_each(|faer::unzip!(o, a)| *o = f(*a));
    }
}

/// Writes `out[i, j] = f(a[i, j], b[i, j])`; see [`map1`].
///
/// # Panics
/// When an input and `out` differ in shape.
pub fn map2<T: Scalar>(mut out: MatMut<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>, f: impl Fn(T, T) -> T) {
    assert_same_shape(out.rb(), [a, b]);
    if !map2_fast(out.rb_mut(), a, b, &f) {
        faer::zip!(out, a, b).for_each(|faer::unzip!(o, a, b)| *o = f(*a, *b));
    }
}

/// Writes `out[i, j] = f(a[i, j], b[i, j], c[i, j])`; see [`map1`].
///
/// # Panics
/// When an input and `out` differ in shape.
pub fn map3<T: Scalar>(
    mut out: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: MatRef<'_, T>,
    f: impl Fn(T, T, T) -> T,
) {
    assert_same_shape(out.rb(), [a, b, c]);
    if !map3_fast(out.rb_mut(), a, b, c, &f) {
        faer::zip!(out, a, b, c).for_each(|faer::unzip!(o, a, b, c)| *o = f(*a, *b, *c));
    }
}

/// Writes `out[i, j] = f(out[i, j], a[i, j])`; see [`map1`].
///
/// # Panics
/// When `a` and `out` differ in shape.
pub fn update1<T: Scalar>(mut out: MatMut<'_, T>, a: MatRef<'_, T>, f: impl Fn(T, T) -> T) {
    assert_same_shape(out.rb(), [a]);
    if !update1_fast(out.rb_mut(), a, &f) {
        faer::zip!(out, a).for_each(|faer::unzip!(o, a)| *o = f(*o, *a));
    }
}

/// Writes `out[i, j] = f(out[i, j], a[i, j], b[i, j])`; see [`map1`].
///
/// # Panics
/// When an input and `out` differ in shape.
pub fn update2<T: Scalar>(
    mut out: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    f: impl Fn(T, T, T) -> T,
) {
    assert_same_shape(out.rb(), [a, b]);
    if !update2_fast(out.rb_mut(), a, b, &f) {
        faer::zip!(out, a, b).for_each(|faer::unzip!(o, a, b)| *o = f(*o, *a, *b));
    }
}

/// For every entry, with `c` read and then overwritten, writes
/// `(c, out1, out2)[i, j] = f(c[i, j], a[i, j], b[i, j], d[i, j])`: one pass
/// over memory for an update with two further outputs. See [`map1`] for
/// the vectorized loop.
///
/// # Panics
/// When an input or output differs in shape from `c`.
pub fn update_with_outputs<T: Scalar>(
    mut c: MatMut<'_, T>,
    mut out1: MatMut<'_, T>,
    mut out2: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    d: MatRef<'_, T>,
    f: impl Fn(T, T, T, T) -> (T, T, T),
) {
    assert_same_shape(c.rb(), [out1.rb(), out2.rb(), a, b, d]);
    if !update_with_outputs_fast(c.rb_mut(), out1.rb_mut(), out2.rb_mut(), a, b, d, &f) {
        faer::zip!(c, out1, out2, a, b, d).for_each(|faer::unzip!(c, o1, o2, a, b, d)| {
            (*c, *o1, *o2) = f(*c, *a, *b, *d);
        });
    }
}

fn assert_same_shape<T, const K: usize>(out: MatRef<'_, T>, inputs: [MatRef<'_, T>; K]) {
    for input in inputs {
        assert!(
            input.nrows() == out.nrows() && input.ncols() == out.ncols(),
            "element-wise map: an input is {} x {}, the output {} x {}",
            input.nrows(),
            input.ncols(),
            out.nrows(),
            out.ncols()
        );
    }
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

    /// Entries with mixed signs and magnitudes, so that a change in the order
    /// of operations would change the rounding.
    fn entries<T: Scalar>(nrows: usize, ncols: usize, seed: f64) -> Mat<T> {
        Mat::from_fn(nrows, ncols, |i, j| {
            let x = ((i * 31 + j * 17) as f64 * 0.618 + seed).sin();
            T::lit(x * 10f64.powi(((i + 2 * j) % 7) as i32 - 3))
        })
    }

    /// Checks `update_with_outputs` against `f` entry by entry, bit for bit,
    /// with every matrix column-major, every one row-major, or one row-major.
    fn update_with_outputs_matches_entrywise<T: Scalar>() {
        let f = |c: T, a: T, b: T, d: T| {
            let first = c + T::lit(0.7) * (a - b);
            (first, T::lit(2.0) * first - d, a * d - c)
        };
        for (nrows, ncols) in [(0, 3), (1, 4), (5, 1), (37, 6), (250, 3)] {
            let [start, a, b, d] = [0.1, 0.2, 0.3, 0.4].map(|seed| entries::<T>(nrows, ncols, seed));
            let expected = |i: usize, j: usize| f(start[(i, j)], a[(i, j)], b[(i, j)], d[(i, j)]);
            // Which of the six matrices are row-major views: none (the
            // vectorized loop), all, or one input or one output alone (the
            // entry-by-entry loop for all columns).
            for strided in [
                [false; 6],
                [true; 6],
                [false, false, false, false, true, false],
                [false, true, false, false, false, false],
            ] {
                let layout = |m: &Mat<T>, row_major: bool| {
                    if row_major {
                        m.transpose().to_owned()
                    } else {
                        m.clone()
                    }
                };
                fn view<T: Scalar>(m: &Mat<T>, row_major: bool) -> MatRef<'_, T> {
                    if row_major { m.transpose() } else { m.as_ref() }
                }
                let zeros = Mat::<T>::zeros(nrows, ncols);
                let (mut c, mut o1, mut o2) = (
                    layout(&start, strided[0]),
                    layout(&zeros, strided[1]),
                    layout(&zeros, strided[2]),
                );
                let (ia, ib, id) = (
                    layout(&a, strided[3]),
                    layout(&b, strided[4]),
                    layout(&d, strided[5]),
                );
                {
                    let cm = if strided[0] {
                        c.as_mut().transpose_mut()
                    } else {
                        c.as_mut()
                    };
                    let m1 = if strided[1] {
                        o1.as_mut().transpose_mut()
                    } else {
                        o1.as_mut()
                    };
                    let m2 = if strided[2] {
                        o2.as_mut().transpose_mut()
                    } else {
                        o2.as_mut()
                    };
                    update_with_outputs(
                        cm,
                        m1,
                        m2,
                        view(&ia, strided[3]),
                        view(&ib, strided[4]),
                        view(&id, strided[5]),
                        f,
                    );
                }
                let label = format!("update_with_outputs, {nrows} x {ncols}, row-major {strided:?}");
                let [c, o1, o2] = [(&c, strided[0]), (&o1, strided[1]), (&o2, strided[2])]
                    .map(|(m, row_major)| layout(m, row_major));
                assert_bits_equal(&format!("{label}, c"), &c, |i, j| expected(i, j).0);
                assert_bits_equal(&format!("{label}, out1"), &o1, |i, j| expected(i, j).1);
                assert_bits_equal(&format!("{label}, out2"), &o2, |i, j| expected(i, j).2);
            }
        }
    }

    #[test]
    fn update_with_outputs_matches_entrywise_f32() {
        update_with_outputs_matches_entrywise::<f32>();
    }

    #[test]
    fn update_with_outputs_matches_entrywise_f64() {
        update_with_outputs_matches_entrywise::<f64>();
    }

    /// Runs `write` on a zero output of the given shape, contiguous or a
    /// transposed (strided) view, and returns what it wrote.
    fn written<T: Scalar>(
        nrows: usize,
        ncols: usize,
        strided: bool,
        write: impl FnOnce(MatMut<'_, T>),
    ) -> Mat<T> {
        if strided {
            let mut out = Mat::<T>::zeros(ncols, nrows);
            write(out.as_mut().transpose_mut());
            out.transpose().to_owned()
        } else {
            let mut out = Mat::<T>::zeros(nrows, ncols);
            write(out.as_mut());
            out
        }
    }

    fn assert_bits_equal<T: Scalar>(label: &str, got: &Mat<T>, expected: impl Fn(usize, usize) -> T) {
        for j in 0..got.ncols() {
            for i in 0..got.nrows() {
                assert_eq!(
                    got[(i, j)].to_f64_lossless().to_bits(),
                    expected(i, j).to_f64_lossless().to_bits(),
                    "{label}: entry ({i}, {j})"
                );
            }
        }
    }

    /// Checks the maps against the formula evaluated entry by entry, bit for
    /// bit, on contiguous columns and on transposed (strided) views.
    fn maps_match_entrywise<T: Scalar>() {
        let f1 = |a: T| a * T::lit(0.3) - a.abs();
        let f2 = |a: T, b: T| T::lit(2.0) * a - b;
        let f3 = |a: T, b: T, c: T| a + T::lit(0.7) * (b + T::lit(0.3) * (c - a));
        for (nrows, ncols) in [(0, 3), (1, 4), (5, 1), (37, 6), (250, 3)] {
            let a = entries::<T>(nrows, ncols, 0.1);
            let b = entries::<T>(nrows, ncols, 0.2);
            let c = entries::<T>(nrows, ncols, 0.3);
            let (at, bt, ct) = (
                a.transpose().to_owned(),
                b.transpose().to_owned(),
                c.transpose().to_owned(),
            );
            for strided in [false, true] {
                let (va, vb, vc) = if strided {
                    (at.transpose(), bt.transpose(), ct.transpose())
                } else {
                    (a.as_ref(), b.as_ref(), c.as_ref())
                };
                let label = format!("{nrows} x {ncols}, strided {strided}");
                let got = written(nrows, ncols, strided, |out| map1(out, va, f1));
                assert_bits_equal(&format!("map1, {label}"), &got, |i, j| f1(a[(i, j)]));
                let got = written(nrows, ncols, strided, |out| map2(out, va, vb, f2));
                assert_bits_equal(&format!("map2, {label}"), &got, |i, j| f2(a[(i, j)], b[(i, j)]));
                let got = written(nrows, ncols, strided, |out| map3(out, va, vb, vc, f3));
                assert_bits_equal(&format!("map3, {label}"), &got, |i, j| {
                    f3(a[(i, j)], b[(i, j)], c[(i, j)])
                });
                let start = entries::<T>(nrows, ncols, 0.4);
                let start_view = |mut out: MatMut<'_, T>| out.copy_from(&start);
                let got = written(nrows, ncols, strided, |mut out| {
                    start_view(out.rb_mut());
                    update1(out, va, f2);
                });
                assert_bits_equal(&format!("update1, {label}"), &got, |i, j| {
                    f2(start[(i, j)], a[(i, j)])
                });
                let got = written(nrows, ncols, strided, |mut out| {
                    start_view(out.rb_mut());
                    update2(out, va, vb, f3);
                });
                assert_bits_equal(&format!("update2, {label}"), &got, |i, j| {
                    f3(start[(i, j)], a[(i, j)], b[(i, j)])
                });
                if !strided {
                    // The baseline copy of the kernel, which processors without AVX2 run.
                    let got = written(nrows, ncols, false, |out| {
                        assert!(map3_kernel(out, va, vb, vc, &f3))
                    });
                    assert_bits_equal(&format!("baseline map3, {label}"), &got, |i, j| {
                        f3(a[(i, j)], b[(i, j)], c[(i, j)])
                    });
                    let column: Vec<T> = (0..nrows).map(|i| a[(i, 0)]).collect();
                    assert_eq!(
                        sum_squares(&column).to_f64_lossless().to_bits(),
                        sum_squares_fast(&column).to_f64_lossless().to_bits()
                    );
                }
            }
        }
    }

    #[test]
    fn maps_match_entrywise_f32() {
        maps_match_entrywise::<f32>();
    }

    #[test]
    fn maps_match_entrywise_f64() {
        maps_match_entrywise::<f64>();
    }

    #[test]
    #[should_panic(expected = "an input is 3 x 2, the output 3 x 3")]
    fn map_rejects_a_shape_mismatch() {
        let mut out = Mat::<f64>::zeros(3, 3);
        map2(
            out.as_mut(),
            Mat::zeros(3, 3).as_ref(),
            Mat::zeros(3, 2).as_ref(),
            |a, b| a + b,
        );
    }

    /// The residual norms of the stopping test equal the two separate norms
    /// bit for bit, for plain, huge, tiny, zero and non-finite columns, on
    /// contiguous and strided columns.
    #[test]
    fn residual_norms_match_separate_norms() {
        let base = entries::<f64>(700, 4, 0.5);
        let prev = entries::<f64>(700, 4, 0.9);
        let cases: Vec<(Mat<f64>, Mat<f64>)> = vec![
            (base.clone(), prev.clone()),
            (
                Mat::from_fn(700, 4, |i, j| base[(i, j)] * 1e300),
                Mat::from_fn(700, 4, |i, j| prev[(i, j)] * 1e300),
            ),
            (Mat::from_fn(700, 4, |i, j| base[(i, j)] * 1e-300), prev.clone()),
            (Mat::zeros(700, 4), Mat::zeros(700, 4)),
            (
                Mat::from_fn(
                    700,
                    4,
                    |i, j| if i == 5 && j == 2 { f64::NAN } else { base[(i, j)] },
                ),
                prev.clone(),
            ),
            (
                Mat::from_fn(700, 4, |i, j| if i == 9 { f64::INFINITY } else { base[(i, j)] }),
                prev.clone(),
            ),
        ];
        for (case, (a, b)) in cases.iter().enumerate() {
            let (at, bt) = (a.transpose().to_owned(), b.transpose().to_owned());
            for col in 0..4 {
                for (label, va, vb) in [
                    ("contiguous", a.as_ref(), b.as_ref()),
                    ("strided", at.transpose(), bt.transpose()),
                ] {
                    let got = col_residual_norms(va, vb, col);
                    let expected = (col_diff_norm2(va, vb, col), col_norm2(va, col));
                    assert_eq!(
                        got.0.to_bits(),
                        expected.0.to_bits(),
                        "case {case}, column {col}, {label}: residual"
                    );
                    assert_eq!(
                        got.1.to_bits(),
                        expected.1.to_bits(),
                        "case {case}, column {col}, {label}: scale"
                    );
                }
            }
        }
        let direct = norm2((0..700).map(|i| base[(i, 1)] - prev[(i, 1)]));
        let (residual, _) = col_residual_norms(base.as_ref(), prev.as_ref(), 1);
        assert!(
            (residual / direct - 1.0).abs() < 1e-14,
            "{residual} against {direct}"
        );
    }
}
