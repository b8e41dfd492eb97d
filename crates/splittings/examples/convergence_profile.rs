//! Iterations that linearized ADMM needs on random sparse recovery problems,
//! the distribution behind the convergence property test.
//!
//! Each problem is `min ‖Θx‖₁ s.t. Ax = d` with `n` in 4..9, `m` between
//! 0.4n and 0.9n (at least 2, below n), `Θ = I + G/(2‖G‖₂)` for a Gaussian `G`,
//! `A` Gaussian with unit columns, and `d = A x*` where `Θx*` has
//! `max(1, (m − 1)/2)` nonzeros. Steps are `α = 0.5`, `λ = 1`,
//! `β = 1/(1 + ‖A‖₂)`, and the tolerance is `rtol = 1e-10`.
//!
//! The example prints the median, 99th percentile and maximum iteration
//! count, the slowest problems, and the relative gap between the two best
//! vertex values of each slow problem (0 means the solution is not unique).
//!
//! Run with `cargo run --release -p optlayer-splittings --example convergence_profile -- [PROBLEMS]`.

use faer::Mat;
use faer::linalg::solvers::Solve;
use optlayer_core::{ForwardOptions, OptLayer};
use optlayer_ops::{Dense, IndicatorPoint, L1Norm, LearnableDense};
use optlayer_splittings::{Block, LadmmSteps, LinearizedAdmm};
use optlayer_testing::random::{gaussian, rng};
use optlayer_testing::reference::analysis_l1_vertex_values;
use rand::Rng;
use rand::seq::index::sample;

const MAX_ITERS: usize = 1_500_000;

struct Outcome {
    iterations: usize,
    n: usize,
    m: usize,
    seed: u64,
    vertex_gap: f64,
}

fn well_conditioned(n: usize, seed: u64) -> Mat<f64> {
    let g = gaussian(n, n, seed);
    let scale = 0.5 / g.as_ref().singular_values().unwrap()[0];
    Mat::from_fn(n, n, |i, j| if i == j { 1.0 } else { 0.0 } + scale * g[(i, j)])
}

fn unit_columns(mut a: Mat<f64>) -> Mat<f64> {
    for j in 0..a.ncols() {
        let norm = a.col(j).norm_l2();
        for i in 0..a.nrows() {
            a[(i, j)] /= norm;
        }
    }
    a
}

fn solve_one(n: usize, m: usize, seed: u64) -> Outcome {
    let k = ((m - 1) / 2).max(1);
    let theta = well_conditioned(n, seed);
    let a = unit_columns(gaussian(m, n, seed + 1));
    let values = gaussian(k, 1, seed + 2);
    let mut positions = rng(seed + 3);
    let mut y = Mat::<f64>::zeros(n, 1);
    for (i, index) in sample(&mut positions, n, k).into_iter().enumerate() {
        y[(index, 0)] = values[(i, 0)];
    }
    let d = &a * theta.partial_piv_lu().solve(&y);

    let vertices = analysis_l1_vertex_values(theta.as_ref(), a.as_ref(), d.as_ref()).unwrap();
    let vertex_gap = if vertices.len() > 1 {
        (vertices[1] - vertices[0]) / vertices[0]
    } else {
        f64::INFINITY
    };

    let a_norm = a.as_ref().singular_values().unwrap()[0];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 1.0 / (1.0 + a_norm),
        lambda: 1.0,
    };
    let blocks = vec![
        Block::new(
            LearnableDense::new("theta", theta).unwrap(),
            L1Norm::new(1.0).unwrap(),
        ),
        Block::new(Dense::new(a).unwrap(), IndicatorPoint::from_data(0, m).unwrap()),
    ];
    let splitting: LinearizedAdmm<f64> = LinearizedAdmm::new(n, m, blocks, steps).unwrap();
    let layer = OptLayer::new(splitting, ForwardOptions::new(MAX_ITERS, 1e-10)).unwrap();
    let iterations = layer.forward(d.as_ref()).unwrap().samples[0].iterations;
    Outcome {
        iterations,
        n,
        m,
        seed,
        vertex_gap,
    }
}

fn main() {
    let problems: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut draw = rng(12345);
    let mut outcomes: Vec<Outcome> = (0..problems)
        .map(|_| {
            let n = draw.random_range(4..9usize);
            let m_frac: f64 = draw.random_range(0.4..0.9);
            let seed = draw.random_range(0..100_000u64);
            let m = ((n as f64 * m_frac) as usize).clamp(2, n - 1);
            solve_one(n, m, seed)
        })
        .collect();
    outcomes.sort_by_key(|o| o.iterations);

    let at = |q: f64| outcomes[((outcomes.len() - 1) as f64 * q) as usize].iterations;
    println!("{problems} problems, limit {MAX_ITERS} iterations");
    println!(
        "iterations: median {}, 99th percentile {}, max {}",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    let unfinished = outcomes.iter().filter(|o| o.iterations >= MAX_ITERS).count();
    println!("not converged within the limit: {unfinished}");
    println!("slowest problems (iterations, n, m, seed, relative gap of the two best vertices):");
    for o in outcomes.iter().rev().take(8) {
        println!(
            "  {:>8} n = {} m = {} seed = {:>5} gap = {:.4}",
            o.iterations, o.n, o.m, o.seed, o.vertex_gap
        );
    }
}
