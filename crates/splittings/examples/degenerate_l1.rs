//! Linearized ADMM on a small problem where it converges very slowly.
//!
//! `min ‖Θx‖₁ s.t. Ax = d` with a 4 x 4 Gaussian Θ and a 3 x 4 Gaussian A
//! (seed 495 of `optlayer_testing::random::gaussian`). The iterates stay for
//! hundreds of thousands of steps in a phase where `x` barely moves and the
//! dual of the equality constraint drifts at constant speed, before the
//! residual starts to fall. The example prints the residual every
//! `ITERS / 10` steps (default 4,000,000) and the exact optimum for comparison.
//!
//! Run with `cargo run --release -p optlayer-splittings --example degenerate_l1`.

use faer::{Mat, Par};
use optlayer_core::{ForwardOptions, OptLayer, Splitting};
use optlayer_ops::{Dense, IndicatorPoint, L1Norm, LearnableDense};
use optlayer_splittings::{Block, LadmmSteps, LinearizedAdmm};
use optlayer_testing::random::gaussian;
use optlayer_testing::reference::analysis_l1_exact;

fn main() {
    let iterations: usize = std::env::var("ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4_000_000);
    let (seed, n, m) = (495, 4, 3);
    let theta = gaussian(n, n, seed);
    let a = gaussian(m, n, seed + 1);
    let d = &a * gaussian(n, 1, seed + 2);

    let a_norm = a.as_ref().singular_values().unwrap()[0];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 1.0 / (1.0 + a_norm),
        lambda: 1.0,
    };
    let blocks = vec![
        Block::new(
            LearnableDense::new("theta", theta.clone()).unwrap(),
            L1Norm::new(1.0).unwrap(),
        ),
        Block::new(
            Dense::new(a.clone()).unwrap(),
            IndicatorPoint::from_data(0, m).unwrap(),
        ),
    ];
    let splitting: LinearizedAdmm<f64> = LinearizedAdmm::new(n, m, blocks, steps).unwrap();
    println!("alpha beta ||K||^2 = {:.4}", splitting.step_condition());
    let layer = OptLayer::new(splitting, ForwardOptions::new(1, 0.0)).unwrap();

    let mut z = Mat::<f64>::zeros(layer.splitting().state_dim(), 1);
    for k in 0..iterations {
        let z_next = layer.apply_step(z.as_ref(), d.as_ref(), Par::Seq).unwrap();
        if k % (iterations / 10).max(1) == 0 {
            let residual = (&z_next - &z).norm_l2() / z_next.norm_l2();
            let constraint = (&a * layer.splitting().primal(z_next.as_ref()) - &d).norm_l2();
            println!("iteration {k:>8}: relative residual {residual:.3e}, ||Ax - d|| {constraint:.3e}");
        }
        z = z_next;
    }
    let (_, optimum) = analysis_l1_exact(theta.as_ref(), a.as_ref(), d.as_ref()).unwrap();
    let value: f64 = (0..n)
        .map(|i| (&theta * layer.splitting().primal(z.as_ref()))[(i, 0)].abs())
        .sum();
    println!("||Theta x||_1 = {value:.6}, exact optimum {optimum:.6}");
}
