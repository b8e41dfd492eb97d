//! optlayer against PyTorch on the same linearized ADMM iteration and JFB
//! training step, measured in one run.
//!
//! The bench writes the reference sparse inverse problem (n = 250, m = 100,
//! the Θ and step sizes of the model as built) to a temporary folder, times
//! optlayer, then runs `benches/peer/ladmm_torch.py` on the same files with
//! the same thread count and prints both figures and their ratio. Both sides
//! take the median over rounds of the same length (see `median_seconds`).
//!
//! - step: one forward iteration, single-threaded, from the state after 50
//!   iterations;
//! - training step: 400 forward iterations without recording, the JFB
//!   backward step, the Adam update, the rescaling of Θ and the β refresh, at
//!   1 and 2 threads.
//!
//! Run with `cargo bench --bench peer`. The Python interpreter is `python3`,
//! or the one named by the environment variable PEER_PYTHON; it needs torch
//! and numpy (`pip install torch numpy`). Without them the bench prints the
//! optlayer figures alone and prints the reason.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::{Mat, Par};
use optlayer::problems::sparse_inverse::{SparseInverseConfig, SparseInverseProblem, build_model, cast};
use optlayer::splittings::LinearizedAdmm;
use optlayer::train::{Adam, AdamConfig, npy};
use optlayer::{
    FixedPointJfb, ForwardOptions, Gradients, OptLayer, Parameterized, Scalar, Splitting, find_param,
    mse_loss,
};
use optlayer_testing::temp::TempDir;

const ROUNDS: usize = 15;
const LONG_ROUNDS: usize = 5;
const ROUND_TIME: Duration = Duration::from_millis(40);
const STEP_BATCHES: [usize; 5] = [1, 10, 32, 100, 1000];
const TRAIN_BATCHES: [usize; 5] = [1, 10, 32, 100, 1000];
const TRAIN_ITERS: usize = 400;
const THREADS: [usize; 2] = [1, 2];

/// Returns the median over rounds of the seconds per call of `f`; a round
/// repeats the call until [`ROUND_TIME`] has passed. Calls of more than 0.1 s
/// get [`LONG_ROUNDS`] rounds instead of [`ROUNDS`].
fn median_seconds(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    f();
    let first = start.elapsed();
    let warm = Instant::now();
    while warm.elapsed() < ROUND_TIME {
        f();
    }
    let rounds = if first < Duration::from_millis(100) {
        ROUNDS
    } else {
        LONG_ROUNDS
    };
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            let mut calls = 0u64;
            loop {
                f();
                calls += 1;
                if start.elapsed() >= ROUND_TIME {
                    break;
                }
            }
            start.elapsed().as_secs_f64() / calls as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn model<T: Scalar>(problem: &SparseInverseProblem) -> LinearizedAdmm<T> {
    build_model::<T>(&problem.theta0, &problem.a, problem.reference_steps().unwrap()).unwrap()
}

/// Writes Θ (as the model normalized it), A, the training pairs and the step sizes.
fn write_problem(problem: &SparseInverseProblem, dir: &Path) {
    let built = model::<f64>(problem);
    let layer = OptLayer::new(built, ForwardOptions::default()).unwrap();
    let theta = layer.param(find_param(&layer, "theta").unwrap());
    npy::write_matrix(&dir.join("theta.npy"), theta).unwrap();
    npy::write_matrix(&dir.join("A.npy"), problem.a.as_ref()).unwrap();
    problem.train.save(dir, "train").unwrap();
    let steps = layer.splitting().step_sizes();
    let json: serde_json::Map<String, serde_json::Value> = steps
        .into_iter()
        .map(|(name, value)| (name, value.into()))
        .collect();
    std::fs::write(dir.join("steps.json"), serde_json::to_string(&json).unwrap()).unwrap();
}

fn step_seconds<T: Scalar>(problem: &SparseInverseProblem, batch: usize) -> f64 {
    let model = model::<T>(problem);
    let data = cast::<T>(&problem.train.data().subcols(0, batch).to_owned());
    let mut z = Mat::<T>::zeros(model.state_dim(), batch);
    let mut z_next = Mat::<T>::zeros(model.state_dim(), batch);
    let mut buffer = MemBuffer::new(model.step_scratch(batch, Par::Seq));
    let stack = MemStack::new(&mut buffer);
    for _ in 0..50 {
        model.step(z_next.as_mut(), z.as_ref(), data.as_ref(), Par::Seq, stack);
        std::mem::swap(&mut z, &mut z_next);
    }
    median_seconds(|| {
        model.step(z_next.as_mut(), z.as_ref(), data.as_ref(), Par::Seq, stack);
        black_box(&z_next);
    })
}

fn training_step_seconds<T: Scalar>(problem: &SparseInverseProblem, batch: usize, threads: usize) -> f64 {
    // rtol = 0 runs all iterations, as the PyTorch loop does.
    let options = ForwardOptions::new(TRAIN_ITERS, 0.0).with_threads(threads);
    let mut layer = OptLayer::new(model::<T>(problem), options).unwrap();
    let data = cast::<T>(&problem.train.data().subcols(0, batch).to_owned());
    let targets = cast::<T>(&problem.train.targets().subcols(0, batch).to_owned());
    let config = AdamConfig {
        learning_rate: 1e-6,
        weight_decay: 1e-5,
        ..AdamConfig::default()
    };
    let mut optimizer = Adam::new(config, &layer).unwrap();
    let mut grads = Gradients::zeros_for(&layer);
    median_seconds(|| {
        let forward = layer.forward(data.as_ref()).unwrap();
        grads.fill_zero();
        layer
            .jfb_gradient(
                &forward,
                data.as_ref(),
                &mut |x, g| mse_loss(x, targets.as_ref(), g),
                &mut grads,
            )
            .unwrap();
        optimizer.step(&mut layer, &grads).unwrap();
    })
}

/// Runs the PyTorch script; returns its JSON output or the reason it failed.
fn run_torch(dir: &Path, threads: usize, steps: bool) -> Result<serde_json::Value, String> {
    let python = std::env::var("PEER_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer/ladmm_torch.py");
    let list = |batches: &[usize]| {
        batches
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let output = Command::new(&python)
        .arg(&script)
        .arg(dir)
        .args(["--threads", &threads.to_string()])
        .args([
            "--batches",
            &if steps { list(&STEP_BATCHES) } else { String::new() },
        ])
        .args(["--train-batches", &list(&TRAIN_BATCHES)])
        .args(["--train-iters", &TRAIN_ITERS.to_string()])
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{python} {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("unreadable output of the script: {e}"))
}

/// Returns the largest difference between optlayer's iterate after the
/// script's iteration count on its first samples (in f64) and the script's.
fn check_same_iteration(problem: &SparseInverseProblem, json: &serde_json::Value) -> Option<f64> {
    let iters = json["check"]["iters"].as_u64()? as usize;
    let rows = json["check"]["x"].as_array()?;
    let layer = OptLayer::new(model::<f64>(problem), ForwardOptions::new(iters, 0.0)).ok()?;
    let data = problem.train.data().subcols(0, rows.len()).to_owned();
    let x = layer.forward(data.as_ref()).ok()?.x;
    let mut largest = 0.0f64;
    for (j, row) in rows.iter().enumerate() {
        for (i, value) in row.as_array()?.iter().enumerate() {
            largest = largest.max((x[(i, j)] - value.as_f64()?).abs());
        }
    }
    Some(largest)
}

fn format_time(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.1} µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

fn cell(torch: Option<f64>, ours: f64) -> (String, String) {
    match torch {
        Some(t) => (format_time(t), format!("{:.2}x", t / ours)),
        None => ("-".into(), "-".into()),
    }
}

fn main() {
    let problem = SparseInverseProblem::generate(&SparseInverseConfig {
        train_samples: 1000,
        test_samples: 1,
        ..SparseInverseConfig::default()
    })
    .unwrap();
    let dir = TempDir::new("peer-problem");
    write_problem(&problem, dir.path());

    println!("| measurement | precision | batch | threads | optlayer | PyTorch | PyTorch / optlayer |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for threads in THREADS {
        let torch = run_torch(dir.path(), threads, threads == 1);
        if let Err(reason) = &torch {
            eprintln!("PyTorch figures are missing: {reason}");
        } else if let Ok(json) = &torch {
            let difference = check_same_iteration(&problem, json)
                .map_or("not comparable".to_string(), |d| format!("{d:.2e}"));
            eprintln!(
                "torch {} with {} threads; largest difference of the iterates after {} steps: {difference}",
                json["torch"].as_str().unwrap_or("?"),
                json["threads"],
                json["check"]["iters"]
            );
        }
        let torch_time = |kind: &str, precision: &str, batch: usize| {
            torch
                .as_ref()
                .ok()
                .and_then(|json| json[kind][precision][batch.to_string()].as_f64())
        };
        if threads == 1 {
            for batch in STEP_BATCHES {
                for (precision, ours) in [
                    ("f32", step_seconds::<f32>(&problem, batch)),
                    ("f64", step_seconds::<f64>(&problem, batch)),
                ] {
                    let (theirs, ratio) = cell(torch_time("step", precision, batch), ours);
                    println!(
                        "| step | {precision} | {batch} | 1 | {} | {theirs} | {ratio} |",
                        format_time(ours)
                    );
                }
            }
        }
        for batch in TRAIN_BATCHES {
            for (precision, ours) in [
                ("f32", training_step_seconds::<f32>(&problem, batch, threads)),
                ("f64", training_step_seconds::<f64>(&problem, batch, threads)),
            ] {
                let (theirs, ratio) = cell(torch_time("training_step", precision, batch), ours);
                println!(
                    "| training step | {precision} | {batch} | {threads} | {} | {theirs} | {ratio} |",
                    format_time(ours)
                );
            }
        }
    }
}
