//! Prox combinators: vector-Jacobian products and parameter gradients
//! against central finite differences, and agreement of `f32` with `f64`.

use faer::{Mat, MatRef};
use optlayer_core::{Parameterized, Prox};
use optlayer_ops::{
    Conjugate, IndicatorPoint, L1Norm, Scaled, SeparableBlock, SeparableSum, Simplex, SquaredL2, Translated,
    Zero,
};
use optlayer_testing::fd::{FdOptions, GradientCheck, check_prox_grads, check_prox_vjp};
use optlayer_testing::random::gaussian;
use proptest::prelude::*;

/// Returns whether a finite-difference check agrees: a small relative
/// error, or an absolute error at the level of the differences' rounding
/// (about 1e-10 here), which dominates where the derivatives are small.
fn agrees(check: &GradientCheck) -> bool {
    check.rel_error < 1e-7 || check.max_abs_error < 1e-8
}

/// Checks the vector-Jacobian product of `prox` at `v` against finite differences.
fn vjp_check(
    prox: &dyn Prox<f64>,
    v: MatRef<'_, f64>,
    gamma: f64,
    data: MatRef<'_, f64>,
    seed: u64,
) -> GradientCheck {
    let c = gaussian(v.nrows(), v.ncols(), seed);
    check_prox_vjp(prox, v, gamma, data, c.as_ref(), &FdOptions::default())
}

/// Checks the parameter gradient of `prox` at `v` against finite differences.
fn grad_check<P: Prox<f64>>(
    prox: &mut P,
    v: MatRef<'_, f64>,
    gamma: f64,
    data: MatRef<'_, f64>,
    seed: u64,
) -> GradientCheck {
    let c = gaussian(v.nrows(), v.ncols(), seed);
    check_prox_grads(prox, v, gamma, data, c.as_ref(), &FdOptions::default())
}

fn separable(dim: usize) -> SeparableSum<f64> {
    let first = dim.div_ceil(2);
    let mut blocks = vec![SeparableBlock::new(
        0..first,
        L1Norm::learnable("a", 0.4).unwrap(),
    )];
    if dim > first {
        blocks.push(SeparableBlock::new(
            first..dim,
            Scaled::new(L1Norm::learnable("b", 0.3).unwrap(), 2.0).unwrap(),
        ));
    }
    SeparableSum::new(dim, blocks).unwrap()
}

proptest! {
    #![proptest_config(optlayer_testing::proptest_config(32))]

    #[test]
    fn scaled_derivatives_match_finite_differences(
        dim in 1usize..8, batch in 1usize..4, gamma in 0.1f64..2.0, factor in 0.0f64..3.0, seed in 0u64..10_000,
    ) {
        let v = gaussian(dim, batch, seed).as_ref() * 2.0;
        let no_data = Mat::<f64>::zeros(0, batch);
        let mut g = Scaled::new(L1Norm::learnable("lambda", 0.5).unwrap(), factor).unwrap();
        let check = vjp_check(&g, v.as_ref(), gamma, no_data.as_ref(), seed + 1);
        prop_assert!(agrees(&check), "{check:?}");
        prop_assert!(check.skipped_nonsmooth <= 1, "{check:?}");
        let check = grad_check(&mut g, v.as_ref(), gamma, no_data.as_ref(), seed + 2);
        prop_assert!(agrees(&check), "{check:?}");
        prop_assert_eq!(check.checked, 1);

        let squared = Scaled::new(SquaredL2::new(0.7).unwrap(), factor).unwrap();
        let check = vjp_check(&squared, v.as_ref(), gamma, no_data.as_ref(), seed + 3);
        prop_assert!(agrees(&check), "{check:?}");
        prop_assert!(check.fd_norm > 0.0);
    }

    #[test]
    fn translated_derivatives_match_finite_differences(
        dim in 2usize..8, batch in 1usize..4, gamma in 0.1f64..2.0, seed in 0u64..10_000,
    ) {
        let v = gaussian(dim, batch, seed).as_ref() * 2.0;
        let shift: Vec<f64> = (0..dim).map(|i| (i as f64 * 0.7).sin()).collect();
        let no_data = Mat::<f64>::zeros(0, batch);
        let mut g = Translated::new(L1Norm::learnable("lambda", 0.5).unwrap(), shift.clone()).unwrap();
        let check = vjp_check(&g, v.as_ref(), gamma, no_data.as_ref(), seed + 1);
        prop_assert!(agrees(&check), "{check:?}");
        prop_assert!(check.skipped_nonsmooth <= 1, "{check:?}");
        let check = grad_check(&mut g, v.as_ref(), gamma, no_data.as_ref(), seed + 2);
        prop_assert!(agrees(&check), "{check:?}");

        let simplex = Translated::new(Simplex, shift).unwrap();
        let check = vjp_check(&simplex, v.as_ref(), gamma, no_data.as_ref(), seed + 3);
        prop_assert!(agrees(&check), "{check:?}");

        let data = gaussian(dim + 1, batch, seed + 4);
        let by_data = Translated::by_data(SquaredL2::new(1.3).unwrap(), 1, dim).unwrap();
        let check = vjp_check(&by_data, v.as_ref(), gamma, data.as_ref(), seed + 5);
        prop_assert!(agrees(&check), "{check:?}");
        prop_assert!(check.fd_norm > 0.0);
    }

    #[test]
    fn separable_derivatives_match_finite_differences(
        dim in 1usize..8, batch in 1usize..4, gamma in 0.1f64..2.0, seed in 0u64..10_000,
    ) {
        let v = gaussian(dim, batch, seed).as_ref() * 2.0;
        let no_data = Mat::<f64>::zeros(0, batch);
        let mut g = separable(dim);
        let check = vjp_check(&g, v.as_ref(), gamma, no_data.as_ref(), seed + 1);
        prop_assert!(agrees(&check), "{check:?}");
        let check = grad_check(&mut g, v.as_ref(), gamma, no_data.as_ref(), seed + 2);
        prop_assert!(agrees(&check), "{check:?}");
        prop_assert_eq!(check.checked, g.param_count());
    }

    #[test]
    fn conjugate_derivatives_match_finite_differences(
        dim in 2usize..8, batch in 1usize..4, gamma in 0.1f64..2.0, seed in 0u64..10_000,
    ) {
        let v = gaussian(dim, batch, seed).as_ref() * 2.0;
        let no_data = Mat::<f64>::zeros(0, batch);
        let lambda = 1.5;
        let mut g = Conjugate::new(L1Norm::learnable("lambda", lambda).unwrap());
        let check = vjp_check(&g, v.as_ref(), gamma, no_data.as_ref(), seed + 1);
        prop_assert!(agrees(&check), "{check:?}");
        // Outside the ball the output v − γ·soft(v/γ) equals ±λ only up to
        // rounding of order ε|v|, which the finite differences may flag as a
        // kink. Inside the ball the output is v exactly, so those entries
        // must all be compared.
        let interior = v.col_iter().flat_map(|c| c.iter().copied().collect::<Vec<_>>()).filter(|x| x.abs() < lambda - 1e-3).count();
        prop_assert!(check.checked >= interior, "{interior} entries inside the ball: {check:?}");
        prop_assert_eq!(check.checked + check.skipped_nonsmooth, dim * batch);
        let check = grad_check(&mut g, v.as_ref(), gamma, no_data.as_ref(), seed + 2);
        prop_assert!(agrees(&check), "{check:?}");

        for inner in [Box::new(Simplex) as Box<dyn Prox<f64>>, Box::new(SquaredL2::new(0.6).unwrap())] {
            let g = Conjugate::from_boxed(inner);
            let check = vjp_check(&g, v.as_ref(), gamma, no_data.as_ref(), seed + 3);
            prop_assert!(agrees(&check), "{check:?}");
        }

        // The conjugate of the indicator of {d} is ⟨d, ·⟩, whose prox v − γd
        // has the identity as its Jacobian.
        let data = gaussian(dim, batch, seed + 4);
        let linear = Conjugate::new(IndicatorPoint::from_data(0, dim).unwrap());
        let check = vjp_check(&linear, v.as_ref(), gamma, data.as_ref(), seed + 5);
        prop_assert!(agrees(&check), "{check:?}");
        prop_assert!(check.fd_norm > 0.0);
    }
}

#[test]
fn combinators_match_in_f32() {
    let v64 = gaussian(5, 3, 7).as_ref() * 2.0;
    let v32 = Mat::<f32>::from_fn(5, 3, |i, j| v64[(i, j)] as f32);
    let shift = vec![0.5, -0.25, 1.0, 0.0, 2.0];
    let maps64: Vec<Box<dyn Prox<f64>>> = vec![
        Box::new(Scaled::new(L1Norm::new(0.5).unwrap(), 1.5).unwrap()),
        Box::new(Translated::new(Simplex, shift.clone()).unwrap()),
        Box::new(
            SeparableSum::new(
                5,
                vec![
                    SeparableBlock::new(0..2, L1Norm::new(0.3).unwrap()),
                    SeparableBlock::new(2..5, Zero),
                ],
            )
            .unwrap(),
        ),
        Box::new(Conjugate::new(L1Norm::new(0.4).unwrap())),
    ];
    let shift32: Vec<f32> = shift.iter().map(|&b| b as f32).collect();
    let maps32: Vec<Box<dyn Prox<f32>>> = vec![
        Box::new(Scaled::new(L1Norm::new(0.5f32).unwrap(), 1.5).unwrap()),
        Box::new(Translated::new(Simplex, shift32).unwrap()),
        Box::new(
            SeparableSum::new(
                5,
                vec![
                    SeparableBlock::new(0..2, L1Norm::new(0.3f32).unwrap()),
                    SeparableBlock::new(2..5, Zero),
                ],
            )
            .unwrap(),
        ),
        Box::new(Conjugate::new(L1Norm::new(0.4f32).unwrap())),
    ];
    for (k, (g64, g32)) in maps64.iter().zip(&maps32).enumerate() {
        let mut out64 = Mat::zeros(5, 3);
        g64.prox(out64.as_mut(), v64.as_ref(), 0.8, Mat::zeros(0, 3).as_ref());
        let mut out32 = Mat::zeros(5, 3);
        g32.prox(out32.as_mut(), v32.as_ref(), 0.8, Mat::zeros(0, 3).as_ref());
        for j in 0..3 {
            for i in 0..5 {
                let gap = (out64[(i, j)] - f64::from(out32[(i, j)])).abs();
                assert!(
                    gap < 1e-5,
                    "map {k} entry ({i}, {j}): {} vs {}",
                    out64[(i, j)],
                    out32[(i, j)]
                );
            }
        }
    }
}

#[test]
fn nested_combinators_compose() {
    // (2 ‖· − b‖₁)* clipped: the conjugate of f(x − b) is f*(y) + ⟨b, y⟩, so
    // the prox is clip(v − γb, ±2).
    let shift = vec![1.0, -1.0, 0.5];
    let g = Conjugate::new(
        Translated::new(
            Scaled::new(L1Norm::new(1.0).unwrap(), 2.0).unwrap(),
            shift.clone(),
        )
        .unwrap(),
    );
    let v = gaussian(3, 40, 11).as_ref() * 3.0;
    let gamma = 0.6;
    let mut out = Mat::zeros(3, 40);
    g.prox(out.as_mut(), v.as_ref(), gamma, Mat::zeros(0, 40).as_ref());
    for j in 0..40 {
        for i in 0..3 {
            let expected = (v[(i, j)] - gamma * shift[i]).clamp(-2.0, 2.0);
            assert!(
                (out[(i, j)] - expected).abs() < 1e-14,
                "entry ({i}, {j}): {} vs {expected}",
                out[(i, j)]
            );
        }
    }
}
