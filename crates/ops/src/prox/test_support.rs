//! Checks shared by the unit tests of the proximal maps.

use faer::{Mat, MatRef};
use optlayer_core::{Prox, Scalar};
use optlayer_testing::fd::{FdOptions, check_prox_vjp};

/// Returns a data batch with no rows and `batch` columns, for maps that read no data.
pub(crate) fn no_data<T: Scalar>(batch: usize) -> Mat<T> {
    Mat::zeros(0, batch)
}

/// Returns `values` as one column.
pub(crate) fn column<T: Scalar>(values: &[f64]) -> Mat<T> {
    Mat::from_fn(values.len(), 1, |i, _| T::lit(values[i]))
}

/// Returns `prox_{γg}(v)` for the single column `v = values`.
pub(crate) fn apply<P: Prox<f64> + ?Sized>(prox: &P, values: &[f64], gamma: f64) -> Vec<f64> {
    let v = column::<f64>(values);
    let mut out = Mat::zeros(values.len(), 1);
    prox.prox(out.as_mut(), v.as_ref(), gamma, no_data::<f64>(1).as_ref());
    (0..values.len()).map(|i| out[(i, 0)]).collect()
}

/// Returns `J(v)ᵀ c` for the single column `v = values`.
pub(crate) fn vjp<P: Prox<f64> + ?Sized>(
    prox: &P,
    values: &[f64],
    gamma: f64,
    cotangent: &[f64],
) -> Vec<f64> {
    let v = column::<f64>(values);
    let c = column::<f64>(cotangent);
    let mut v_bar = Mat::zeros(values.len(), 1);
    prox.prox_vjp(
        v_bar.as_mut(),
        v.as_ref(),
        gamma,
        no_data::<f64>(1).as_ref(),
        c.as_ref(),
    );
    (0..values.len()).map(|i| v_bar[(i, 0)]).collect()
}

/// Returns `g(x)` for the single column `x = values`.
pub(crate) fn value<P: Prox<f64> + ?Sized>(prox: &P, values: &[f64]) -> f64 {
    let x = column::<f64>(values);
    prox.value(x.as_ref(), no_data::<f64>(1).as_ref(), 0)
        .expect("the map provides g")
}

/// Asserts that `got` and `want` agree entry by entry within `tol · (1 + |want|)`.
pub(crate) fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "entry {i}: got {g}, expected {w} (all: {got:?} vs {want:?})"
        );
    }
}

/// Asserts that step `γ = 0` gives the identity map with the identity Jacobian on `v`.
pub(crate) fn assert_zero_step_is_identity<P: Prox<f64> + ?Sized>(prox: &P, v: MatRef<'_, f64>) {
    let data = no_data::<f64>(v.ncols());
    let mut out = Mat::zeros(v.nrows(), v.ncols());
    prox.prox(out.as_mut(), v, 0.0, data.as_ref());
    assert_eq!(out, v.to_owned(), "prox with step 0");
    let cotangent = Mat::from_fn(v.nrows(), v.ncols(), |i, j| 1.0 + (i + 3 * j) as f64 * 0.25);
    let mut v_bar = Mat::zeros(v.nrows(), v.ncols());
    prox.prox_vjp(v_bar.as_mut(), v, 0.0, data.as_ref(), cotangent.as_ref());
    assert_eq!(v_bar, cotangent, "vector-Jacobian product with step 0");
}

/// Asserts that the vector-Jacobian product matches central finite
/// differences at `v`, a point away from kinks, and that the check compared
/// every coordinate against a nonzero difference.
pub(crate) fn assert_vjp_matches_fd<P: Prox<f64> + ?Sized>(
    prox: &P,
    v: MatRef<'_, f64>,
    gamma: f64,
    cotangent: MatRef<'_, f64>,
) {
    let data = no_data::<f64>(v.ncols());
    let check = check_prox_vjp(prox, v, gamma, data.as_ref(), cotangent, &FdOptions::default());
    assert!(check.rel_error < 1e-7, "{check:?}");
    assert_eq!(check.skipped_nonsmooth, 0, "{check:?}");
    assert_eq!(check.checked, v.nrows() * v.ncols(), "{check:?}");
    assert!(check.fd_norm > 0.0, "{check:?}");
}

/// Asserts that the `f32` and `f64` versions of one map agree on `v` within
/// `1e-5 · (1 + |x|)`, for the map and for its vector-Jacobian product.
pub(crate) fn assert_f32_matches_f64<P32: Prox<f32> + ?Sized, P64: Prox<f64> + ?Sized>(
    prox32: &P32,
    prox64: &P64,
    v: MatRef<'_, f64>,
    gamma: f64,
    cotangent: MatRef<'_, f64>,
) {
    let (rows, cols) = v.shape();
    let v32 = Mat::from_fn(rows, cols, |i, j| v[(i, j)] as f32);
    let c32 = Mat::from_fn(rows, cols, |i, j| cotangent[(i, j)] as f32);

    let mut out32 = Mat::<f32>::zeros(rows, cols);
    let mut out64 = Mat::<f64>::zeros(rows, cols);
    prox32.prox(
        out32.as_mut(),
        v32.as_ref(),
        gamma as f32,
        no_data::<f32>(cols).as_ref(),
    );
    prox64.prox(out64.as_mut(), v, gamma, no_data::<f64>(cols).as_ref());

    let mut bar32 = Mat::<f32>::zeros(rows, cols);
    let mut bar64 = Mat::<f64>::zeros(rows, cols);
    prox32.prox_vjp(
        bar32.as_mut(),
        v32.as_ref(),
        gamma as f32,
        no_data::<f32>(cols).as_ref(),
        c32.as_ref(),
    );
    prox64.prox_vjp(bar64.as_mut(), v, gamma, no_data::<f64>(cols).as_ref(), cotangent);

    for j in 0..cols {
        for i in 0..rows {
            let (x32, x64) = (f64::from(out32[(i, j)]), out64[(i, j)]);
            assert!(
                (x32 - x64).abs() <= 1e-5 * (1.0 + x64.abs()),
                "prox ({i}, {j}): f32 {x32}, f64 {x64}"
            );
            let (b32, b64) = (f64::from(bar32[(i, j)]), bar64[(i, j)]);
            assert!(
                (b32 - b64).abs() <= 1e-5 * (1.0 + b64.abs()),
                "vjp ({i}, {j}): f32 {b32}, f64 {b64}"
            );
        }
    }
}

/// Asserts the optimality condition `(v − x)/γ ∈ ∂g(x)` of `x = prox_{γg}(v)`
/// through the subgradient inequality `g(y) ≥ g(x) + ⟨(v − x)/γ, y − x⟩`, for
/// every column of `v` and every column of each `y` in `points` (same shape
/// as `v`). Also asserts that `g(x)` is finite.
pub(crate) fn assert_subgradient_inequality<P: Prox<f64> + ?Sized>(
    prox: &P,
    v: MatRef<'_, f64>,
    gamma: f64,
    points: &[Mat<f64>],
) {
    let (rows, cols) = v.shape();
    let data = no_data::<f64>(cols);
    let mut x = Mat::zeros(rows, cols);
    prox.prox(x.as_mut(), v, gamma, data.as_ref());
    for col in 0..cols {
        let gx = prox
            .value(x.as_ref(), data.as_ref(), col)
            .expect("the map provides g");
        assert!(gx.is_finite(), "g(x) = {gx} at column {col}");
        for (k, y) in points.iter().enumerate() {
            let gy = prox
                .value(y.as_ref(), data.as_ref(), col)
                .expect("the map provides g");
            let mut linear = 0.0;
            let mut scale = gx.abs() + gy.abs();
            for row in 0..rows {
                let subgradient = (v[(row, col)] - x[(row, col)]) / gamma;
                let term = subgradient * (y[(row, col)] - x[(row, col)]);
                linear += term;
                scale += term.abs();
            }
            assert!(
                gy >= gx + linear - 1e-10 * (1.0 + scale),
                "column {col}, point {k}: g(y) = {gy} < g(x) + <p, y - x> = {gx} + {linear}"
            );
        }
    }
}

/// Returns an `nrows x ncols` matrix of independent normal entries with
/// standard deviation `scale`.
pub(crate) fn scaled_gaussian(nrows: usize, ncols: usize, seed: u64, scale: f64) -> Mat<f64> {
    let mut m = optlayer_testing::random::gaussian(nrows, ncols, seed);
    for j in 0..ncols {
        for i in 0..nrows {
            m[(i, j)] *= scale;
        }
    }
    m
}
