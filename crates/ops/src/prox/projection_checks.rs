//! Assertions shared by the tests of the projections: membership of the
//! output, idempotence, the variational inequality of a Euclidean
//! projection, independence of `γ`, the vector-Jacobian product against
//! finite differences, and agreement between `f32` and `f64`.

use faer::{Mat, MatRef};
use optlayer_core::Prox;
use optlayer_testing::fd::{FdOptions, check_prox_vjp};
use optlayer_testing::random::gaussian;

/// Returns `prox(v)` for the step `gamma`.
pub(crate) fn project<T: optlayer_core::Scalar, P: Prox<T> + ?Sized>(
    prox: &P,
    v: MatRef<'_, T>,
    gamma: T,
    data: MatRef<'_, T>,
) -> Mat<T> {
    let mut out = Mat::zeros(v.nrows(), v.ncols());
    prox.prox(out.as_mut(), v, gamma, data);
    out
}

/// Returns `J(v)ᵀ cotangent` for the step `gamma`.
pub(crate) fn vjp<T: optlayer_core::Scalar, P: Prox<T> + ?Sized>(
    prox: &P,
    v: MatRef<'_, T>,
    gamma: T,
    data: MatRef<'_, T>,
    cotangent: MatRef<'_, T>,
) -> Mat<T> {
    let mut out = Mat::zeros(v.nrows(), v.ncols());
    prox.prox_vjp(out.as_mut(), v, gamma, data, cotangent);
    out
}

fn column_dot(a: MatRef<'_, f64>, b: MatRef<'_, f64>, col: usize) -> f64 {
    (0..a.nrows()).map(|i| a[(i, col)] * b[(i, col)]).sum()
}

/// Asserts the properties of a Euclidean projection `P` onto a set `S` at
/// every column of `v`:
///
/// - `P v` is in `S` (`value` is zero) and every column of each batch in
///   `feasible` is in `S` too;
/// - `P(P v) = P v` within `1e-12` relative to the magnitude of `P v`;
/// - `P v` is the same for the steps `γ ∈ {0, 0.5, 1, 7, 1e6}`;
/// - `⟨v − P v, y − P v⟩ ≤ 0` for every feasible `y`, up to rounding.
pub(crate) fn assert_projection_properties<P: Prox<f64> + ?Sized>(
    prox: &P,
    v: MatRef<'_, f64>,
    data: MatRef<'_, f64>,
    feasible: &[Mat<f64>],
) {
    let x = project(prox, v, 1.0, data);
    for col in 0..v.ncols() {
        assert_eq!(
            prox.value(x.as_ref(), data, col),
            Some(0.0),
            "P v outside the set, column {col}"
        );
    }

    let xx = project(prox, x.as_ref(), 1.0, data);
    let scale = 1.0 + x.norm_max();
    let idempotence_error = (&xx - &x).norm_max();
    assert!(
        idempotence_error <= 1e-12 * scale,
        "P(P v) − P v = {idempotence_error:e}"
    );

    for gamma in [0.0, 0.5, 7.0, 1e6] {
        let x_gamma = project(prox, v, gamma, data);
        assert_eq!(x_gamma, x, "projection changed with gamma = {gamma}");
    }

    let residual = v - &x;
    for y in feasible {
        for col in 0..v.ncols() {
            assert_eq!(
                prox.value(y.as_ref(), data, col),
                Some(0.0),
                "feasible point outside, column {col}"
            );
        }
        let direction = y - &x;
        for col in 0..v.ncols() {
            let inner = column_dot(residual.as_ref(), direction.as_ref(), col);
            let bound = 1e-10
                * column_dot(residual.as_ref(), residual.as_ref(), col).sqrt()
                * column_dot(direction.as_ref(), direction.as_ref(), col).sqrt();
            assert!(
                inner <= bound + 1e-14,
                "⟨v − Pv, y − Pv⟩ = {inner:e} > 0 in column {col}"
            );
        }
    }
}

/// Asserts that `prox_vjp` matches central differences at `v`, which must lie
/// away from the kinks of the map, for a random cotangent.
///
/// With `expect_zero` the map is locally constant: the product must be
/// exactly zero and the differences at the level of rounding noise, which
/// the relative error cannot judge.
pub(crate) fn assert_vjp_matches_fd<P: Prox<f64> + ?Sized>(
    prox: &P,
    v: MatRef<'_, f64>,
    data: MatRef<'_, f64>,
    seed: u64,
    expect_zero: bool,
) {
    let cotangent = gaussian(v.nrows(), v.ncols(), seed);
    for gamma in [0.0, 1.0] {
        let check = check_prox_vjp(prox, v, gamma, data, cotangent.as_ref(), &FdOptions::default());
        if expect_zero {
            let product = vjp(prox, v, gamma, data, cotangent.as_ref());
            assert_eq!(product, Mat::zeros(v.nrows(), v.ncols()));
            assert!(check.fd_norm < 1e-8, "{check:?}");
            continue;
        }
        assert_eq!(check.skipped_nonsmooth, 0, "{check:?}");
        assert_eq!(check.checked, v.nrows() * v.ncols(), "{check:?}");
        assert!(check.rel_error < 1e-7, "{check:?}");
        assert!(check.fd_norm > 1e-6, "{check:?}");
    }
}

/// Asserts that the `f32` map gives the `f64` result within `1e-4` relative
/// to the magnitude of the result, for the projection and for its
/// vector-Jacobian product with a random cotangent.
pub(crate) fn assert_f32_matches_f64<P32: Prox<f32> + ?Sized, P64: Prox<f64> + ?Sized>(
    prox32: &P32,
    prox64: &P64,
    v: MatRef<'_, f64>,
    data: MatRef<'_, f64>,
    seed: u64,
) {
    let to_f32 = |m: MatRef<'_, f64>| Mat::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)] as f32);
    let cotangent = gaussian(v.nrows(), v.ncols(), seed);
    let (v32, data32, cotangent32) = (to_f32(v), to_f32(data), to_f32(cotangent.as_ref()));

    let x64 = project(prox64, v, 1.0, data);
    let x32 = project(prox32, v32.as_ref(), 1.0, data32.as_ref());
    let bar64 = vjp(prox64, v, 1.0, data, cotangent.as_ref());
    let bar32 = vjp(prox32, v32.as_ref(), 1.0, data32.as_ref(), cotangent32.as_ref());
    for (name, a64, a32) in [
        ("projection", &x64, &x32),
        ("vector-Jacobian product", &bar64, &bar32),
    ] {
        let scale = 1.0 + a64.norm_max();
        for j in 0..v.ncols() {
            for i in 0..v.nrows() {
                let error = (f64::from(a32[(i, j)]) - a64[(i, j)]).abs();
                assert!(
                    error <= 1e-4 * scale,
                    "{name} ({i}, {j}): f32 {} vs f64 {}",
                    a32[(i, j)],
                    a64[(i, j)]
                );
            }
        }
    }
}
