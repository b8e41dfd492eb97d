//! `Prox::value` of the built-in maps at known points.

use faer::{Mat, mat};
use optlayer_core::Prox;
use optlayer_ops::{IndicatorPoint, L1Norm, Simplex, SquaredL2, Zero};

#[test]
fn l1_value_sums_weighted_magnitudes() {
    let x = mat![[1.0, 0.0], [-2.0, 4.0], [0.5, -1.0]];
    let no_data = Mat::<f64>::zeros(0, 2);
    assert_eq!(
        L1Norm::new(2.0).unwrap().value(x.as_ref(), no_data.as_ref(), 0),
        Some(7.0)
    );
    let per_entry = L1Norm::with_weights(vec![0.0, 1.0, 4.0]).unwrap();
    assert_eq!(per_entry.value(x.as_ref(), no_data.as_ref(), 1), Some(8.0));
    let learnable = L1Norm::learnable("lambda", 0.5).unwrap();
    assert_eq!(learnable.value(x.as_ref(), no_data.as_ref(), 0), Some(1.75));
}

#[test]
fn squared_l2_value_is_half_weighted_norm() {
    let no_data = Mat::<f64>::zeros(0, 1);
    let g = SquaredL2::new(4.0).unwrap();
    assert_eq!(
        g.value(mat![[3.0], [4.0]].as_ref(), no_data.as_ref(), 0),
        Some(50.0)
    );
    let large = mat![[3e100], [4e100]];
    let value = g.value(large.as_ref(), no_data.as_ref(), 0).unwrap();
    // (4/2) · (5e100)² = 5e201.
    assert!((value / 5e201 - 1.0).abs() < 1e-14, "{value}");
}

#[test]
fn simplex_value_is_indicator() {
    let no_data = Mat::<f64>::zeros(0, 1);
    let value = |x: Mat<f64>| Simplex.value(x.as_ref(), no_data.as_ref(), 0);
    assert_eq!(value(mat![[0.25], [0.75], [0.0]]), Some(0.0));
    assert_eq!(value(mat![[0.25], [0.75 + 1e-12], [0.0]]), Some(0.0));
    assert_eq!(value(mat![[0.25], [0.76], [0.0]]), Some(f64::INFINITY));
    assert_eq!(value(mat![[1.1], [-0.1]]), Some(f64::INFINITY));
    assert_eq!(value(mat![[f64::NAN], [1.0]]), Some(f64::INFINITY));
}

#[test]
fn point_value_reads_data_or_fixed_point() {
    let data = mat![[7.0, 7.0], [1.0, 2.0]];
    let from_data = IndicatorPoint::from_data(1, 1).unwrap();
    let x = mat![[1.0, 1.0]];
    assert_eq!(from_data.value(x.as_ref(), data.as_ref(), 0), Some(0.0));
    assert_eq!(from_data.value(x.as_ref(), data.as_ref(), 1), Some(f64::INFINITY));
    let fixed = IndicatorPoint::fixed(vec![1e6, -2.0]).unwrap();
    let near = mat![[1e6 + 1e-5], [-2.0]];
    assert_eq!(fixed.value(near.as_ref(), data.as_ref(), 0), Some(0.0));
    let far = mat![[1e6 + 1.0], [-2.0]];
    assert_eq!(fixed.value(far.as_ref(), data.as_ref(), 0), Some(f64::INFINITY));
}

#[test]
fn zero_value_is_zero() {
    let x = mat![[1e300], [-4.0]];
    assert_eq!(
        Zero.value(x.as_ref(), Mat::<f64>::zeros(0, 1).as_ref(), 0),
        Some(0.0)
    );
}
