use faer::Mat;
use optlayer_core::{ForwardOptions, OptLayer, Splitting};
use optlayer_ops::{Dense, IndicatorPoint, L1Norm, LearnableDense};
use optlayer_splittings::{Block, LadmmSteps, LinearizedAdmm};
use optlayer_testing::random::gaussian;
use optlayer_testing::reference::analysis_l1_exact;

fn main() {
    let args: Vec<f64> = std::env::args().skip(1).map(|s| s.parse().unwrap()).collect();
    let (lambda, alpha, beta_scale) = (args[0], args[1], args[2]);
    let seed = 495u64;
    let n = 4;
    let m = 3;
    let theta = gaussian(n, n, seed);
    let a = gaussian(m, n, seed + 1);
    let x0 = gaussian(n, 1, seed + 2);
    let d = &a * &x0;
    let a_norm = a.as_ref().singular_values().unwrap()[0];
    let steps = LadmmSteps {
        alpha,
        beta: beta_scale / (1.0 + a_norm),
        lambda,
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
    let s = LinearizedAdmm::new(n, m, blocks, steps).unwrap();
    println!("cond {} beta {}", s.step_condition(), s.beta());
    let layer = OptLayer::new(s, ForwardOptions::new(1, 0.0)).unwrap();
    let mut z = Mat::<f64>::zeros(layer.splitting().state_dim(), 1);
    let iters: usize = std::env::var("ITERS")
        .map(|s| s.parse().unwrap())
        .unwrap_or(400000);
    for k in 0..iters {
        let zn = layer.apply_step(z.as_ref(), d.as_ref(), faer::Par::Seq).unwrap();
        if k % (iters / 10) == 0 {
            let dz = &zn - &z;
            let parts: Vec<f64> = [(0, n), (n, n), (2 * n, n), (3 * n, m), (3 * n + m, m)]
                .iter()
                .map(|&(o, l)| dz.as_ref().subrows(o, l).norm_l2())
                .collect();
            let ax = &a * zn.as_ref().subrows(0, n) - &d;
            println!(
                "{k} res {:e} parts {:?} Ax-d {:e} nu_theta {:?}",
                dz.norm_l2(),
                parts,
                ax.norm_l2(),
                (0..n).map(|i| zn[(2 * n + i, 0)]).collect::<Vec<_>>()
            );
        }
        z = zn;
    }
    let exact = analysis_l1_exact(theta.as_ref(), a.as_ref(), d.as_ref()).unwrap();
    println!("exact {:?} {}", exact.0, exact.1);
    let y = &theta * z.as_ref().subrows(0, n);
    println!("value {}", (0..n).map(|i| y[(i, 0)].abs()).sum::<f64>());
}
