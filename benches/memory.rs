//! Peak memory of one training step on the reference sparse inverse problem
//! (n = 250, m = 100, batch 100, f32) at 100, 1,000 and 10,000 forward
//! iterations, for JFB, implicit differentiation and unrolled
//! backpropagation, and the error of unrolled mode under a memory limit.
//!
//! Each case runs in its own process, which reports its peak resident memory
//! (`VmHWM` in /proc/self/status, so Linux only) before and after the step.
//! Run with `cargo bench --bench memory`; the figures are recorded in
//! docs/benchmarks.md.

use std::process::Command;
use std::time::Instant;

use optlayer::problems::sparse_inverse::{SparseInverseConfig, SparseInverseProblem, build_model, cast};
use optlayer::train::{Adam, AdamConfig};
use optlayer::{AdjointSolver, ForwardOptions, GradientMode, Gradients, ImplicitOptions, OptLayer, mse_loss};

const CASE_VARIABLE: &str = "OPTLAYER_MEMORY_CASE";

/// Returns the peak resident memory of this process in KiB.
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status needs Linux");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM missing from /proc/self/status")
}

fn mode(name: &str, limit: Option<usize>) -> GradientMode {
    match name {
        "jfb" => GradientMode::Jfb,
        "implicit" => GradientMode::Implicit(ImplicitOptions {
            solver: AdjointSolver::BiCgStab,
            max_iters: 50,
            rtol: 1e-4,
            allow_unconverged_forward: true,
        }),
        "unrolled" => GradientMode::Unrolled {
            steps: None,
            memory_limit_bytes: limit,
        },
        other => panic!("unknown mode {other}"),
    }
}

/// Runs one training step and prints `peak_before peak_after seconds outcome`.
fn run_case(name: &str, iterations: usize, limit: Option<usize>) {
    let config = SparseInverseConfig {
        train_samples: 100,
        test_samples: 1,
        ..SparseInverseConfig::default()
    };
    let problem = SparseInverseProblem::generate(&config).unwrap();
    let steps = problem.reference_steps().unwrap();
    let model = build_model::<f32>(&problem.theta0, &problem.a, steps).unwrap();
    let mut layer = OptLayer::new(model, ForwardOptions::new(iterations, 0.0)).unwrap();
    let data = cast::<f32>(&problem.train.data().to_owned());
    let targets = cast::<f32>(&problem.train.targets().to_owned());
    let mut optimizer = Adam::new(AdamConfig::default(), &layer).unwrap();
    let mut grads = Gradients::zeros_for(&layer);
    let before = peak_kib();

    let started = Instant::now();
    let forward = layer.forward(data.as_ref()).unwrap();
    let outcome = layer
        .gradient(
            &mode(name, limit),
            &forward,
            data.as_ref(),
            &mut |x, g| mse_loss(x, targets.as_ref(), g),
            &mut grads,
        )
        .and_then(|_| optimizer.step(&mut layer, &grads));
    let seconds = started.elapsed().as_secs_f64();
    let outcome = match outcome {
        Ok(()) => "ok".to_string(),
        Err(error) => format!("error: {error}"),
    };
    println!("{before} {} {seconds:.2} {outcome}", peak_kib());
}

fn main() {
    if let Ok(case) = std::env::var(CASE_VARIABLE) {
        let parts: Vec<&str> = case.split(':').collect();
        let limit = parts.get(2).map(|bytes| bytes.parse().unwrap());
        run_case(parts[0], parts[1].parse().unwrap(), limit);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    println!(
        "{:<10} {:>10} {:>14} {:>14} {:>10}  outcome",
        "mode", "iterations", "peak before", "peak after", "seconds"
    );
    let mut cases: Vec<(String, usize, Option<usize>)> = Vec::new();
    for name in ["jfb", "implicit", "unrolled"] {
        for iterations in [100, 1_000, 10_000] {
            cases.push((name.to_string(), iterations, None));
        }
    }
    cases.push(("unrolled".to_string(), 10_000, Some(1 << 30)));
    for (name, iterations, limit) in cases {
        let case = match limit {
            Some(bytes) => format!("{name}:{iterations}:{bytes}"),
            None => format!("{name}:{iterations}"),
        };
        let output = Command::new(&exe).env(CASE_VARIABLE, &case).output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let fields: Vec<&str> = text.trim().splitn(4, ' ').collect();
        if fields.len() < 4 {
            println!("{case}: failed: {}", String::from_utf8_lossy(&output.stderr));
            continue;
        }
        let mib = |kib: &str| format!("{:.1} MiB", kib.parse::<f64>().unwrap() / 1024.0);
        let label = match limit {
            Some(bytes) => format!("{name} (limit {} MiB)", bytes >> 20),
            None => name,
        };
        println!(
            "{:<10} {:>10} {:>14} {:>14} {:>10}  {}",
            label,
            iterations,
            mib(fields[0]),
            mib(fields[1]),
            fields[2],
            fields[3]
        );
    }
}
