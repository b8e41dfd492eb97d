//! optlayer against PyTorch on the same linearized ADMM iteration and JFB
//! training step, measured in one run.
//!
//! The bench writes the reference sparse inverse problem (n = 250, m = 100,
//! the Θ and step sizes of the model as built) to a temporary folder and
//! starts `benches/peer/ladmm_torch.py` on the same files with the same
//! thread count, in the script's serve mode. Each row is measured
//! [`REPEATS`] times by each side, alternating which side goes first. A
//! measurement is the median over rounds of the same length on both sides
//! (see `median_seconds`). A row prints the median of each side's times,
//! the median of the per-repeat ratios and their range.
//!
//! - step: one forward iteration, single-threaded, from the state after 50
//!   iterations;
//! - training step: 400 forward iterations without recording, computing the
//!   residual after the last one only (`check_every = 400`), the JFB
//!   backward step, the Adam update, the rescaling of Θ and the β refresh,
//!   at 1 and 2 threads.
//!
//! Run with `cargo bench --bench peer`. The Python interpreter is `python3`,
//! or the one named by the environment variable PEER_PYTHON; it needs torch
//! and numpy (`pip install torch numpy`). Without them the bench prints the
//! optlayer figures alone and prints the reason.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
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
/// Number of measurements of each row by each side, alternating which goes first.
const REPEATS: usize = 3;
/// Maximum wait for one reply of the PyTorch script. Its longest
/// measurement, the one-thread `f64` training step at batch 1,000, takes
/// about 35 s (seven calls of about 5 s).
const REPLY_TIMEOUT: Duration = Duration::from_secs(600);

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
    // rtol = 0 runs all iterations, as the PyTorch loop does, and like that
    // loop the forward pass computes no residual before the last step.
    let options = ForwardOptions::new(TRAIN_ITERS, 0.0)
        .with_check_every(TRAIN_ITERS)
        .with_threads(threads);
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

/// The PyTorch script running in its serve mode: it replies to one timing
/// request per line, so the bench can alternate its measurements with the
/// script's.
struct Torch {
    child: Child,
    requests: ChildStdin,
    /// Lines of the script's output, read on a thread of their own so that
    /// a wait for a reply can time out.
    replies: Receiver<std::io::Result<String>>,
    /// torch's version and thread count, from the script's first line.
    version: String,
    threads: u64,
}

impl Torch {
    /// Starts the script on the problem in `dir` with `threads` threads.
    fn start(dir: &Path, threads: usize) -> Result<Self, String> {
        let python = std::env::var("PEER_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer/ladmm_torch.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(dir)
            .args(["--threads", &threads.to_string()])
            .args(["--train-iters", &TRAIN_ITERS.to_string()])
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {python}: {e}"))?;
        let (Some(requests), Some(replies)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the script's standard input or output is not a pipe".into());
        };
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(replies).lines() {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut torch = Self {
            child,
            requests,
            replies: receiver,
            version: String::new(),
            threads: 0,
        };
        let hello = torch
            .read_reply()
            .map_err(|e| format!("{python} {}: {e}", script.display()))?;
        torch.version = hello["torch"].as_str().unwrap_or("?").to_string();
        torch.threads = hello["threads"].as_u64().unwrap_or(0);
        Ok(torch)
    }

    /// Returns the script's next reply line, parsed. Waits at most
    /// [`REPLY_TIMEOUT`], then stops the script.
    fn read_reply(&mut self) -> Result<serde_json::Value, String> {
        let line = match self.replies.recv_timeout(REPLY_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return Err(format!("cannot read the script's reply: {e}")),
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                return Err(format!(
                    "no reply within {} s, so the script was stopped",
                    REPLY_TIMEOUT.as_secs()
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err("the script stopped (its error output is above)".into());
            }
        };
        let reply: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("unreadable reply {line:?}: {e}"))?;
        match reply["error"].as_str() {
            Some(error) => Err(format!("the script replied: {error}")),
            None => Ok(reply),
        }
    }

    /// Sends one request line and returns the reply.
    fn ask(&mut self, request: &str) -> Result<serde_json::Value, String> {
        writeln!(self.requests, "{request}")
            .and_then(|()| self.requests.flush())
            .map_err(|e| format!("cannot send {request:?} to the script: {e}"))?;
        self.read_reply()
    }

    /// Returns PyTorch's median seconds of `kind` (`step` or
    /// `training_step`) in `precision` at `batch`.
    fn seconds(&mut self, kind: &str, precision: &str, batch: usize) -> Result<f64, String> {
        let reply = self.ask(&format!("{kind} {precision} {batch}"))?;
        reply["seconds"]
            .as_f64()
            .ok_or_else(|| format!("no seconds in the reply {reply}"))
    }
}

impl Drop for Torch {
    /// Sends `quit` to the script and kills it if it has not exited within 10 s.
    fn drop(&mut self) {
        let _ = writeln!(self.requests, "quit").and_then(|()| self.requests.flush());
        let quit_sent = Instant::now();
        while quit_sent.elapsed() < Duration::from_secs(10) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns the largest difference between optlayer's iterate after the
/// script's iteration count on its first samples (in f64) and the script's,
/// from the script's reply to `check`.
fn check_same_iteration(problem: &SparseInverseProblem, json: &serde_json::Value) -> Option<f64> {
    let iters = json["iters"].as_u64()? as usize;
    let rows = json["x"].as_array()?;
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

/// Measures one row of the table and returns its cells: the medians of both
/// sides' times over [`REPEATS`] alternating measurements, and the median,
/// smallest and largest of the per-repeat ratios.
fn measure_row(
    torch: &mut Option<Torch>,
    kind: &str,
    precision: &str,
    batch: usize,
    mut ours: impl FnMut() -> f64,
) -> String {
    let mut our_times = Vec::with_capacity(REPEATS);
    let mut their_times = Vec::with_capacity(REPEATS);
    for repeat in 0..REPEATS {
        // Alternate which side goes first, so that neither always runs
        // right after the other's warm-up.
        let mut theirs = || match torch.as_mut().map(|t| t.seconds(kind, precision, batch)) {
            Some(Ok(seconds)) => Some(seconds),
            Some(Err(reason)) => {
                eprintln!(
                    "PyTorch measurement of {kind} {precision} {batch} failed: {reason}; \
                     the rows left for this thread count show optlayer alone"
                );
                *torch = None;
                None
            }
            None => None,
        };
        let (our_seconds, their_seconds) = if repeat % 2 == 0 {
            let our_seconds = ours();
            (our_seconds, theirs())
        } else {
            let their_seconds = theirs();
            (ours(), their_seconds)
        };
        our_times.push(our_seconds);
        their_times.extend(their_seconds);
    }
    let ours = median(&mut our_times);
    if their_times.len() < REPEATS {
        return format!("{} | - | - | - |", format_time(ours));
    }
    let mut ratios: Vec<f64> = their_times.iter().zip(&our_times).map(|(t, o)| t / o).collect();
    ratios.sort_by(f64::total_cmp);
    format!(
        "{} | {} | {:.2}x | {:.2}x to {:.2}x |",
        format_time(ours),
        format_time(median(&mut their_times)),
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
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

    println!(
        "| measurement | precision | batch | threads | optlayer | PyTorch | PyTorch / optlayer | range of the ratio |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for threads in THREADS {
        let mut torch = match Torch::start(dir.path(), threads) {
            Ok(mut torch) => {
                let difference = torch
                    .ask("check")
                    .ok()
                    .and_then(|json| check_same_iteration(&problem, &json))
                    .map_or("not comparable".to_string(), |d| format!("{d:.2e}"));
                eprintln!(
                    "torch {} with {} threads; largest difference of the iterates after {TRAIN_ITERS} steps: {difference}",
                    torch.version, torch.threads
                );
                Some(torch)
            }
            Err(reason) => {
                eprintln!("PyTorch is not available: {reason}; printing optlayer's figures alone");
                None
            }
        };
        if threads == 1 {
            for batch in STEP_BATCHES {
                for precision in ["f32", "f64"] {
                    let row = measure_row(&mut torch, "step", precision, batch, || match precision {
                        "f32" => step_seconds::<f32>(&problem, batch),
                        _ => step_seconds::<f64>(&problem, batch),
                    });
                    println!("| step | {precision} | {batch} | 1 | {row}");
                }
            }
        }
        for batch in TRAIN_BATCHES {
            for precision in ["f32", "f64"] {
                let row = measure_row(
                    &mut torch,
                    "training_step",
                    precision,
                    batch,
                    || match precision {
                        "f32" => training_step_seconds::<f32>(&problem, batch, threads),
                        _ => training_step_seconds::<f64>(&problem, batch, threads),
                    },
                );
                println!("| training step | {precision} | {batch} | {threads} | {row}");
            }
        }
    }
}
