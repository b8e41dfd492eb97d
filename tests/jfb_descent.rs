//! JFB gives descent directions on the reference sparse inverse problem
//! (n = 250, m = 100) near a trained Θ.

use faer::Mat;
use optlayer::problems::sparse_inverse::{SparseInverseConfig, SparseInverseProblem, build_model};
use optlayer::train::{Adam, AdamConfig, TrainConfig, Trainer};
use optlayer::{FixedPointJfb, ForwardOptions, Gradients, OptLayer, Parameterized, mse, mse_loss, set_param};
use optlayer_testing::random::gaussian;

#[test]
fn jfb_descends_near_trained_theta() {
    let config = SparseInverseConfig {
        train_samples: 1_000,
        test_samples: 1,
        seed: 3,
        ..SparseInverseConfig::default()
    };
    let problem = SparseInverseProblem::generate(&config).unwrap();
    let steps = problem.reference_steps().unwrap();
    // rtol = 0 fixes the depth at 400, so the loss is a fixed 400-step map.
    let forward = ForwardOptions::new(400, 0.0).with_threads(2);
    let mut layer = OptLayer::new(
        build_model::<f64>(&problem.theta0, &problem.a, steps).unwrap(),
        forward.clone(),
    )
    .unwrap();

    // One epoch at learning rate 1e-3 moves Θ well away from its random start.
    let optimizer = Adam::new(
        AdamConfig {
            learning_rate: 1e-3,
            ..AdamConfig::default()
        },
        &layer,
    )
    .unwrap();
    let train_config = TrainConfig {
        epochs: 1,
        batch_size: 100,
        forward: forward.clone(),
        eval_forward: forward,
        ..TrainConfig::default()
    };
    Trainer::new(train_config, optimizer)
        .unwrap()
        .run_epoch(&mut layer, &problem.train, None)
        .unwrap();
    let trained = layer.param(0).to_owned();

    let data = problem.train.data().subcols(0, 100).to_owned();
    let target = problem.train.targets().subcols(0, 100).to_owned();
    let loss_at =
        |layer: &OptLayer<_>| mse(layer.forward(data.as_ref()).unwrap().x.as_ref(), target.as_ref());

    let draws = 20;
    let mut descents = 0;
    for draw in 0..draws {
        // Θ = trained + 5% of its norm in a random direction, renormalized.
        let noise = gaussian(250, 250, 1_000 + draw);
        let scale = 0.05 * trained.norm_l2() / noise.norm_l2();
        let perturbed = Mat::from_fn(250, 250, |i, j| trained[(i, j)] + scale * noise[(i, j)]);
        set_param(&mut layer, "theta", perturbed.as_ref()).unwrap();

        let result = layer.forward(data.as_ref()).unwrap();
        let mut grads = Gradients::zeros_for(&layer);
        layer
            .jfb_gradient(
                &result,
                data.as_ref(),
                &mut |x, g| mse_loss(x, target.as_ref(), g),
                &mut grads,
            )
            .unwrap();
        let g = grads.tensors()[0].clone();
        let unit = &g * faer::Scale(1.0 / g.norm_l2());

        // Central difference of the loss along g/‖g‖, without renormalizing Θ.
        let t = 1e-5 * layer.param(0).norm_l2();
        let base = layer.param(0).to_owned();
        layer.param_mut(0).copy_from(&base + &unit * faer::Scale(t));
        let plus = loss_at(&layer);
        layer.param_mut(0).copy_from(&base - &unit * faer::Scale(t));
        let minus = loss_at(&layer);
        layer.param_mut(0).copy_from(&base);
        let derivative = (plus - minus) / (2.0 * t);
        if derivative > 0.0 {
            descents += 1;
        }
        eprintln!("draw {draw}: derivative along the JFB gradient {derivative:.4e}");
    }
    assert!(
        descents * 100 >= 95 * draws as usize,
        "JFB was a descent direction in {descents} of {draws} draws"
    );
}
