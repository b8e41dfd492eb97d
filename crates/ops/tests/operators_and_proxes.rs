//! Operators and proximal maps: adjoints by the dot test, gradients and
//! vector-Jacobian products against finite differences, normalization.

use faer::{Mat, mat};
use optlayer_core::{Operator, Parameterized};
use optlayer_ops::{
    Dense, Identity, IndicatorPoint, L1Norm, LearnableDense, Normalization, Simplex, SquaredL2, Zero,
};
use optlayer_testing::fd::{FdOptions, check_operator_grads, check_prox_grads, check_prox_vjp, dot_test};
use optlayer_testing::random::gaussian;
use proptest::prelude::*;

proptest! {
    #![proptest_config(optlayer_testing::proptest_config(32))]

    #[test]
    fn dense_adjoints_pass_dot_test(rows in 1usize..12, cols in 1usize..12, batch in 1usize..4, seed in 0u64..10_000) {
        let x = gaussian(cols, batch, seed + 1);
        let y = gaussian(rows, batch, seed + 2);
        let fixed = Dense::new(gaussian(rows, cols, seed)).unwrap();
        prop_assert!(dot_test(&fixed, x.as_ref(), y.as_ref()) < 1e-12);
        let learnable = LearnableDense::new("theta", gaussian(rows, cols, seed)).unwrap();
        prop_assert!(dot_test(&learnable, x.as_ref(), y.as_ref()) < 1e-12);
    }

    #[test]
    fn learnable_dense_gradients_match_finite_differences(
        rows in 1usize..8, cols in 1usize..8, batch in 1usize..4, seed in 0u64..10_000,
    ) {
        let mut op = LearnableDense::new("theta", gaussian(rows, cols, seed)).unwrap();
        let x = gaussian(cols, batch, seed + 1);
        let g = gaussian(rows, batch, seed + 2);
        let y = gaussian(rows, batch, seed + 3);
        let h = gaussian(cols, batch, seed + 4);
        let check = check_operator_grads(&mut op, x.as_ref(), g.as_ref(), y.as_ref(), h.as_ref(), &FdOptions::default());
        prop_assert!(check.rel_error < 1e-8, "{check:?}");
        prop_assert_eq!(check.checked, rows * cols);
        prop_assert!(check.fd_norm > 0.0);
    }

    #[test]
    fn l1_vjp_matches_finite_differences(dim in 1usize..10, batch in 1usize..4, gamma in 0.0f64..2.0, seed in 0u64..10_000) {
        let v = gaussian(dim, batch, seed);
        let c = gaussian(dim, batch, seed + 1);
        let no_data = Mat::<f64>::zeros(0, batch);
        let scalar = L1Norm::new(0.7).unwrap();
        let check = check_prox_vjp(&scalar, v.as_ref(), gamma, no_data.as_ref(), c.as_ref(), &FdOptions::default());
        prop_assert!(check.rel_error < 1e-8, "{check:?}");
        prop_assert!(check.skipped_nonsmooth <= 1);

        let weights: Vec<f64> = (0..dim).map(|i| (i % 3) as f64 * 0.4).collect();
        let per_entry = L1Norm::with_weights(weights).unwrap();
        let check = check_prox_vjp(&per_entry, v.as_ref(), gamma, no_data.as_ref(), c.as_ref(), &FdOptions::default());
        prop_assert!(check.rel_error < 1e-8, "{check:?}");
    }

    #[test]
    fn simplex_and_squared_vjps_match_finite_differences(
        dim in 2usize..10, batch in 1usize..4, gamma in 0.0f64..2.0, seed in 0u64..10_000,
    ) {
        let v = gaussian(dim, batch, seed);
        let c = gaussian(dim, batch, seed + 1);
        let no_data = Mat::<f64>::zeros(0, batch);
        // A projection onto a vertex is locally constant, so the differences may all be zero.
        let check = check_prox_vjp(&Simplex, v.as_ref(), gamma, no_data.as_ref(), c.as_ref(), &FdOptions::default());
        prop_assert!(check.rel_error < 1e-8, "{check:?}");
        let squared = SquaredL2::new(0.8).unwrap();
        let check = check_prox_vjp(&squared, v.as_ref(), gamma, no_data.as_ref(), c.as_ref(), &FdOptions::default());
        prop_assert!(check.rel_error < 1e-8, "{check:?}");
    }

    #[test]
    fn learnable_l1_weight_gradient_matches_finite_differences(
        dim in 1usize..10, batch in 1usize..4, gamma in 0.1f64..2.0, weight in 0.0f64..1.0, seed in 0u64..10_000,
    ) {
        let v = gaussian(dim, batch, seed);
        let c = gaussian(dim, batch, seed + 1);
        let no_data = Mat::<f64>::zeros(0, batch);
        let mut prox = L1Norm::learnable("lambda", weight).unwrap();
        let check = check_prox_grads(&mut prox, v.as_ref(), gamma, no_data.as_ref(), c.as_ref(), &FdOptions::default());
        prop_assert!(check.rel_error < 1e-8, "{check:?}");
    }

    #[test]
    fn point_and_zero_vjps_match_finite_differences(dim in 1usize..10, batch in 1usize..4, seed in 0u64..10_000) {
        let v = gaussian(dim, batch, seed);
        let c = gaussian(dim, batch, seed + 1);
        let data = gaussian(dim + 2, batch, seed + 2);
        let point = IndicatorPoint::from_data(1, dim).unwrap();
        let check = check_prox_vjp(&point, v.as_ref(), 0.5, data.as_ref(), c.as_ref(), &FdOptions::default());
        prop_assert_eq!(check.max_abs_error, 0.0);
        prop_assert_eq!(check.fd_norm, 0.0);
        let check = check_prox_vjp(&Zero, v.as_ref(), 0.5, data.as_ref(), c.as_ref(), &FdOptions::default());
        prop_assert!(check.rel_error < 1e-8, "{check:?}");
        prop_assert!(check.fd_norm > 0.0);
    }
}

#[test]
fn identity_passes_dot_test() {
    let x = gaussian(5, 3, 1);
    let y = gaussian(5, 3, 2);
    assert!(dot_test(&Identity::new(5), x.as_ref(), y.as_ref()) < 1e-14);
}

#[test]
fn point_prox_reads_its_data_rows() {
    let point = IndicatorPoint::from_data(1, 2).unwrap();
    let data = mat![[9.0, 8.0], [1.0, 2.0], [3.0, 4.0]];
    let mut out = Mat::zeros(2, 2);
    optlayer_core::Prox::prox(
        &point,
        out.as_mut(),
        Mat::<f64>::zeros(2, 2).as_ref(),
        1.0,
        data.as_ref(),
    );
    assert_eq!(out, mat![[1.0, 2.0], [3.0, 4.0]]);

    let fixed = IndicatorPoint::fixed(vec![5.0, -1.0]).unwrap();
    optlayer_core::Prox::prox(
        &fixed,
        out.as_mut(),
        Mat::<f64>::zeros(2, 2).as_ref(),
        1.0,
        data.as_ref(),
    );
    assert_eq!(out, mat![[5.0, 5.0], [-1.0, -1.0]]);
}

#[test]
fn unit_spectral_norm_matches_svd() {
    let op = LearnableDense::new("theta", gaussian(30, 30, 3))
        .unwrap()
        .with_normalization(Normalization::unit_spectral_norm())
        .unwrap();
    let sigma = op.matrix().singular_values().unwrap()[0];
    assert!(
        (sigma - 1.0).abs() < 1e-3,
        "spectral norm after normalization: {sigma}"
    );
}

#[test]
fn normalization_after_update_warm_starts() {
    let mut op = LearnableDense::new("theta", gaussian(40, 40, 4))
        .unwrap()
        .with_normalization(Normalization::unit_spectral_norm())
        .unwrap();
    // A small update, as an optimizer step makes.
    let update = gaussian(40, 40, 5);
    for j in 0..40 {
        for i in 0..40 {
            op.param_mut(0)[(i, j)] += 1e-3 * update[(i, j)];
        }
    }
    op.after_param_update().unwrap();
    let sigma = op.matrix().singular_values().unwrap()[0];
    assert!((sigma - 1.0).abs() < 1e-4, "spectral norm after update: {sigma}");
}

#[test]
fn non_finite_parameter_rejected_after_update() {
    let mut op = LearnableDense::new("theta", gaussian(3, 3, 6)).unwrap();
    op.param_mut(0)[(1, 2)] = f64::NAN;
    let error = op.after_param_update().unwrap_err();
    let message = error.to_string();
    assert!(message.contains("'theta'"), "{message}");
    assert!(message.contains("(1, 2)"), "{message}");
}

#[test]
fn zero_matrix_cannot_be_normalized() {
    let error = LearnableDense::new("theta", Mat::<f64>::zeros(3, 3))
        .unwrap()
        .with_normalization(Normalization::unit_spectral_norm())
        .map(|_| ())
        .unwrap_err();
    assert!(error.to_string().contains("nonzero"), "{error}");
}

#[test]
fn operator_dimensions() {
    let op = Dense::new(gaussian(3, 7, 1)).unwrap();
    assert_eq!((Operator::<f64>::nrows(&op), Operator::<f64>::ncols(&op)), (3, 7));
    assert!(Dense::new(Mat::<f64>::zeros(0, 3)).is_err());
    let mut with_nan = gaussian(2, 2, 1);
    with_nan[(0, 1)] = f64::NAN;
    assert!(Dense::new(with_nan).is_err());
}
