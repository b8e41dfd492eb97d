//! Jacobian-free backpropagation: the gradient against finite differences
//! of the loss at `T_Θ(z*)` with `z*` held fixed, and its bookkeeping.

mod common;

use common::{sparse_model, unit_column_matrix};
use faer::{Mat, MatMut, MatRef};
use optlayer::{
    Error, FixedPointJfb, ForwardOptions, Gradients, OptLayer, Parameterized, Splitting, find_param, mse,
    mse_loss, set_param,
};
use optlayer_testing::random::gaussian;
use proptest::prelude::*;

/// Returns `mse(primal(T(z; d)), target)` for the layer's current parameters.
fn jfb_surrogate<Alg: Splitting<Real = f64>>(
    layer: &OptLayer<Alg>,
    z: MatRef<'_, f64>,
    d: MatRef<'_, f64>,
    target: MatRef<'_, f64>,
) -> f64 {
    let z_next = layer.apply_step(z, d, faer::Par::Seq).unwrap();
    let rows = layer.splitting().primal_rows();
    mse(z_next.as_ref().subrows(rows.start, rows.len()), target)
}

proptest! {
    #![proptest_config(optlayer_testing::proptest_config(24))]

    #[test]
    fn jfb_gradient_matches_finite_differences(n in 4usize..9, batch in 1usize..5, seed in 0u64..10_000) {
        let m = n / 2;
        let a = unit_column_matrix(m, n, seed);
        let theta = gaussian(n, n, seed + 1);
        let d = &a * gaussian(n, batch, seed + 2);
        let target = gaussian(n, batch, seed + 3);
        let mut layer = OptLayer::new(sparse_model::<f64>(&theta, &a, true), ForwardOptions::new(300, 1e-9)).unwrap();
        let forward = layer.forward(d.as_ref()).unwrap();

        let mut grads = Gradients::zeros_for(&layer);
        let output = layer
            .jfb_gradient(&forward, d.as_ref(), &mut |x: MatRef<'_, f64>, g: MatMut<'_, f64>| mse_loss(x, target.as_ref(), g), &mut grads)
            .unwrap();
        let center = jfb_surrogate(&layer, forward.state.as_ref(), d.as_ref(), target.as_ref());
        prop_assert!((output.loss - center).abs() <= 1e-14 * center.max(1.0));

        let index = find_param(&layer, "theta").unwrap();
        let analytic = grads.get("theta").unwrap().to_owned();
        let eps = 1e-6;
        let (mut diff_sq, mut norm_sq, mut kinks) = (0.0, 0.0, 0);
        for j in 0..n {
            for i in 0..n {
                let original = layer.param(index)[(i, j)];
                layer.param_mut(index)[(i, j)] = original + eps;
                let plus = jfb_surrogate(&layer, forward.state.as_ref(), d.as_ref(), target.as_ref());
                layer.param_mut(index)[(i, j)] = original - eps;
                let minus = jfb_surrogate(&layer, forward.state.as_ref(), d.as_ref(), target.as_ref());
                layer.param_mut(index)[(i, j)] = original;
                let (forward_diff, backward_diff) = ((plus - center) / eps, (center - minus) / eps);
                if (forward_diff - backward_diff).abs() > 1e-3 * forward_diff.abs().max(backward_diff.abs()).max(1e-8) {
                    kinks += 1;
                    continue;
                }
                let fd = (plus - minus) / (2.0 * eps);
                diff_sq += (fd - analytic[(i, j)]).powi(2);
                norm_sq += fd * fd;
            }
        }
        prop_assert!(norm_sq > 0.0);
        // Entries where Θx crosses a soft-threshold kink within ε are skipped;
        // at least half must be compared.
        prop_assert!(2 * kinks <= n * n, "{kinks} of {} entries at kinks", n * n);
        let rel = (diff_sq / norm_sq).sqrt();
        prop_assert!(rel < 1e-6, "relative error {rel:e}");
    }
}

#[test]
fn jfb_output_one_step_from_fixed_point() {
    let (m, n) = (5, 10);
    let a = unit_column_matrix(m, n, 1);
    let d = &a * gaussian(n, 3, 2);
    let target = gaussian(n, 3, 3);
    let layer = OptLayer::new(
        sparse_model::<f64>(&gaussian(n, n, 4), &a, true),
        ForwardOptions::new(200, 1e-8),
    )
    .unwrap();
    let forward = layer.forward(d.as_ref()).unwrap();
    let mut grads = Gradients::zeros_for(&layer);
    let output = layer
        .jfb_gradient(
            &forward,
            d.as_ref(),
            &mut |x, g| mse_loss(x, target.as_ref(), g),
            &mut grads,
        )
        .unwrap();
    let z_next = layer
        .apply_step(forward.state.as_ref(), d.as_ref(), faer::Par::Seq)
        .unwrap();
    assert_eq!(output.x, z_next.as_ref().subrows(0, n).to_owned());
}

#[test]
fn jfb_gradient_accumulates() {
    let (m, n) = (5, 10);
    let a = unit_column_matrix(m, n, 5);
    let d = &a * gaussian(n, 2, 6);
    let target = gaussian(n, 2, 7);
    let layer = OptLayer::new(
        sparse_model::<f64>(&gaussian(n, n, 8), &a, true),
        ForwardOptions::new(100, 1e-8),
    )
    .unwrap();
    let forward = layer.forward(d.as_ref()).unwrap();

    let mut once = Gradients::zeros_for(&layer);
    layer
        .jfb_gradient(
            &forward,
            d.as_ref(),
            &mut |x, g| mse_loss(x, target.as_ref(), g),
            &mut once,
        )
        .unwrap();

    let mut twice = Gradients::zeros_for(&layer);
    for _ in 0..2 {
        layer
            .jfb_gradient(
                &forward,
                d.as_ref(),
                &mut |x, g| mse_loss(x, target.as_ref(), g),
                &mut twice,
            )
            .unwrap();
    }
    let expected = &once.tensors()[0] * faer::Scale(2.0);
    assert!((&twice.tensors()[0] - &expected).norm_max() <= 1e-14 * expected.norm_max());
}

#[test]
fn stale_forward_rejected_after_step_change() {
    // Scaling Θ up by 10 without normalization raises ‖[Θ; A]‖, so the step
    // rule lowers β and the recorded forward no longer matches.
    let (m, n) = (4, 8);
    let a = unit_column_matrix(m, n, 9);
    let d = &a * gaussian(n, 2, 10);
    let mut layer = OptLayer::new(
        sparse_model::<f64>(&gaussian(n, n, 11), &a, false),
        ForwardOptions::new(50, 1e-8),
    )
    .unwrap();
    let forward = layer.forward(d.as_ref()).unwrap();
    let theta = layer.param(0).to_owned();
    set_param(&mut layer, "theta", (&theta * faer::Scale(10.0)).as_ref()).unwrap();
    let mut grads = Gradients::zeros_for(&layer);
    let error = layer
        .jfb_gradient(
            &forward,
            d.as_ref(),
            &mut |x, g| mse_loss(x, gaussian(n, 2, 1).as_ref(), g),
            &mut grads,
        )
        .unwrap_err();
    assert!(matches!(error, Error::StaleForward { .. }), "{error}");
}

#[test]
fn f32_gradient_close_to_f64() {
    let (m, n) = (6, 12);
    let a = unit_column_matrix(m, n, 12);
    let theta = gaussian(n, n, 13);
    let d = &a * gaussian(n, 4, 14);
    let target = gaussian(n, 4, 15);
    let options = ForwardOptions::new(400, 1e-6);
    let layer64 = OptLayer::new(sparse_model::<f64>(&theta, &a, true), options.clone()).unwrap();
    let layer32 = OptLayer::new(sparse_model::<f32>(&theta, &a, true), options).unwrap();
    let forward64 = layer64.forward(d.as_ref()).unwrap();
    let d32 = common::cast::<f32>(&d);
    let target32 = common::cast::<f32>(&target);
    let forward32 = layer32.forward(d32.as_ref()).unwrap();

    let mut g64 = Gradients::zeros_for(&layer64);
    let mut g32 = Gradients::zeros_for(&layer32);
    layer64
        .jfb_gradient(
            &forward64,
            d.as_ref(),
            &mut |x, g| mse_loss(x, target.as_ref(), g),
            &mut g64,
        )
        .unwrap();
    layer32
        .jfb_gradient(
            &forward32,
            d32.as_ref(),
            &mut |x, g| mse_loss(x, target32.as_ref(), g),
            &mut g32,
        )
        .unwrap();

    let a64 = &g64.tensors()[0];
    let a32 = Mat::from_fn(n, n, |i, j| f64::from(g32.tensors()[0][(i, j)]));
    let rel = (a64 - &a32).norm_l2() / a64.norm_l2();
    assert!(rel < 1e-2, "relative difference {rel:e}");
}

#[test]
fn stale_forward_rejected_after_parameter_change() {
    // A small change of Θ keeps β but must still invalidate the forward result.
    let (m, n) = (4, 8);
    let a = unit_column_matrix(m, n, 12);
    let d = &a * gaussian(n, 2, 13);
    let mut layer = OptLayer::new(
        sparse_model::<f64>(&gaussian(n, n, 14), &a, true),
        ForwardOptions::new(50, 1e-8),
    )
    .unwrap();
    let forward = layer.forward(d.as_ref()).unwrap();
    let mut theta = layer.param(0).to_owned();
    theta[(0, 0)] += 1e-3;
    set_param(&mut layer, "theta", theta.as_ref()).unwrap();
    assert_eq!(forward.step_sizes, layer.splitting().step_sizes());

    let mut grads = Gradients::zeros_for(&layer);
    let target = gaussian(n, 2, 15);
    let error = layer
        .jfb_gradient(
            &forward,
            d.as_ref(),
            &mut |x, g| mse_loss(x, target.as_ref(), g),
            &mut grads,
        )
        .unwrap_err();
    assert!(error.to_string().contains("parameters changed"), "{error}");
}

#[test]
fn stale_forward_rejected_for_other_batch() {
    let (m, n) = (4, 8);
    let a = unit_column_matrix(m, n, 16);
    let d = &a * gaussian(n, 2, 17);
    let other = &a * gaussian(n, 2, 18);
    let layer = OptLayer::new(
        sparse_model::<f64>(&gaussian(n, n, 19), &a, true),
        ForwardOptions::new(50, 1e-8),
    )
    .unwrap();
    let forward = layer.forward(d.as_ref()).unwrap();
    let mut grads = Gradients::zeros_for(&layer);
    let target = gaussian(n, 2, 20);
    let error = layer
        .jfb_gradient(
            &forward,
            other.as_ref(),
            &mut |x, g| mse_loss(x, target.as_ref(), g),
            &mut grads,
        )
        .unwrap_err();
    assert!(error.to_string().contains("another data batch"), "{error}");
}
