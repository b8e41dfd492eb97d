//! Linearized ADMM iterations per second against faer's own matrix product.
//!
//! For each precision and batch size, the bench times one call of
//! `LinearizedAdmm::step` on the reference sparse inverse problem (n = 250,
//! m = 100) and, in the same run, the four matrix products that the step
//! contains, called directly through `faer::linalg::matmul::matmul` on the
//! same shapes: Θ·X and A·X (overwriting) and Θᵀ·V and Aᵀ·W (accumulating).
//! The adjoint products run on transposed copies of Θ and A for two columns
//! or more, as the step's dense operators do, and a later column of the
//! table times them on the transposed views. The step itself multiplies by
//! one stacked copy `K = [Θ; A]`: `K·X` and `Kᵀ·Y` with `Kᵀ` stored, whose
//! bare time is the last column, with the step's share of that rate.
//! Both rates count `2 (2n² + 2mn)` flops per sample, so their ratio is the
//! share of the bare product rate that the whole step reaches. The rest of the
//! step is the element-wise prox and update work.
//!
//! Each figure is the median of 15 rounds; a round repeats the call until
//! 40 ms have passed and divides. Single-threaded (`Par::Seq`), as the layer
//! runs each block of samples.
//!
//! A second table times a two-column step on one thread and on two
//! (`Par::rayon(2)`) for larger problems, the case where the layer's
//! `ThreadPlan` gives a block spare threads, around `PARALLEL_STEP_MIN_STATE`.
//!
//! A third table times a forward pass of 1,000 samples (20 iterations, all
//! samples active) iterated in column blocks of several widths
//! (`ForwardOptions::block_columns`), one thread, per sample and iteration.
//!
//! A fourth table times `Dense::apply`, which runs a single-threaded
//! product of 13 to 64 columns in chunks of at most 12 columns, against one
//! call of faer's product on the same shapes.
//!
//! Last, it times the fingerprint of a 250 x 250 `f32` matrix, which a
//! training step computes for Θ to detect a stale forward pass.
//!
//! Run with `cargo bench --bench throughput`; the tables are printed and the
//! figures are recorded in docs/benchmarks.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use optlayer::ops::Dense;
use optlayer::problems::sparse_inverse::{SparseInverseConfig, SparseInverseProblem, build_model, cast};
use optlayer::splittings::LadmmSteps;
use optlayer::{
    ForwardOptions, Operator, OptLayer, PARALLEL_STEP_MIN_STATE, Scalar, Splitting, block_columns,
    matrix_fingerprint,
};

const ROUNDS: usize = 15;
const ROUND_TIME: Duration = Duration::from_millis(40);
const BATCHES: [usize; 5] = [1, 10, 32, 100, 1000];

/// Returns the median over [`ROUNDS`] rounds of the seconds per call of `f`.
fn median_seconds(mut f: impl FnMut()) -> f64 {
    // Warm-up: caches, page faults and the first-call dispatch.
    let warm = Instant::now();
    while warm.elapsed() < ROUND_TIME {
        f();
    }
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let mut calls = 0u64;
            while start.elapsed() < ROUND_TIME {
                f();
                calls += 1;
            }
            start.elapsed().as_secs_f64() / calls as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

struct Row {
    precision: &'static str,
    batch: usize,
    step: f64,
    gemm: f64,
    gemm_views: f64,
    gemm_stacked: f64,
    flops: f64,
}

fn measure<T: Scalar>(problem: &SparseInverseProblem, rows: &mut Vec<Row>) {
    let (n, m) = (problem.config.n, problem.config.m);
    let steps = problem.reference_steps().unwrap();
    let model = build_model::<T>(&problem.theta0, &problem.a, steps).unwrap();
    let theta = cast::<T>(&problem.theta0);
    let a = cast::<T>(&problem.a);
    let one = T::lit(1.0);
    for batch in BATCHES {
        let data = cast::<T>(&problem.train.data().subcols(0, batch).to_owned());
        let mut z = Mat::<T>::zeros(model.state_dim(), batch);
        let mut z_next = Mat::<T>::zeros(model.state_dim(), batch);
        let mut buffer = MemBuffer::new(model.step_scratch(batch, Par::Seq));
        let stack = MemStack::new(&mut buffer);
        // From the state after 50 iterations, so that the prox has a realistic active set.
        for _ in 0..50 {
            model.step(z_next.as_mut(), z.as_ref(), data.as_ref(), Par::Seq, stack);
            std::mem::swap(&mut z, &mut z_next);
        }
        let step = median_seconds(|| {
            model.step(z_next.as_mut(), z.as_ref(), data.as_ref(), Par::Seq, stack);
            black_box(&z_next);
        });

        let x = Mat::<T>::from_fn(n, batch, |i, j| T::lit(((i + 3 * j) % 7) as f64 - 3.0));
        let v = Mat::<T>::from_fn(n, batch, |i, j| T::lit(((2 * i + j) % 5) as f64 - 2.0));
        let w = Mat::<T>::from_fn(m, batch, |i, j| T::lit(((i + j) % 3) as f64 - 1.0));
        let mut theta_x = Mat::<T>::zeros(n, batch);
        let mut a_x = Mat::<T>::zeros(m, batch);
        let mut back = Mat::<T>::zeros(n, batch);
        // The adjoint products as the step runs them, on the transposed copies
        // for two columns or more and on the views for one. They are timed on
        // the views alone too, for comparison.
        let theta_t = theta.transpose().to_owned();
        let a_t = a.transpose().to_owned();
        let uses_copy = batch >= 2;
        let mut products = |theta_adjoint: MatRef<'_, T>, a_adjoint: MatRef<'_, T>| {
            median_seconds(|| {
                matmul(
                    theta_x.as_mut(),
                    Accum::Replace,
                    theta.as_ref(),
                    x.as_ref(),
                    one,
                    Par::Seq,
                );
                matmul(
                    a_x.as_mut(),
                    Accum::Replace,
                    a.as_ref(),
                    x.as_ref(),
                    one,
                    Par::Seq,
                );
                matmul(
                    back.as_mut(),
                    Accum::Add,
                    theta_adjoint,
                    v.as_ref(),
                    one,
                    Par::Seq,
                );
                matmul(back.as_mut(), Accum::Add, a_adjoint, w.as_ref(), one, Par::Seq);
                black_box((&theta_x, &a_x, &back));
            })
        };
        let gemm_views = products(theta.transpose(), a.transpose());
        let gemm = if uses_copy {
            products(theta_t.as_ref(), a_t.as_ref())
        } else {
            gemm_views
        };

        // The two products of the stacked copy, as the step runs them: Kᵀ
        // stored for two columns or more, the view for one.
        let k = Mat::<T>::from_fn(n + m, n, |i, j| if i < n { theta[(i, j)] } else { a[(i - n, j)] });
        let k_t = k.transpose().to_owned();
        let k_adjoint = if uses_copy { k_t.as_ref() } else { k.transpose() };
        let y = Mat::<T>::from_fn(n + m, batch, |i, j| T::lit(((2 * i + j) % 5) as f64 - 2.0));
        let mut k_x = Mat::<T>::zeros(n + m, batch);
        let gemm_stacked = median_seconds(|| {
            matmul(
                k_x.as_mut(),
                Accum::Replace,
                k.as_ref(),
                x.as_ref(),
                one,
                Par::Seq,
            );
            matmul(back.as_mut(), Accum::Add, k_adjoint, y.as_ref(), one, Par::Seq);
            black_box((&k_x, &back));
        });
        rows.push(Row {
            precision: T::NAME,
            batch,
            step,
            gemm,
            gemm_views,
            gemm_stacked,
            flops: (2 * batch * (2 * n * n + 2 * m * n)) as f64,
        });
    }
}

/// Times a two-column `f32` step of a sparse inverse model with `n` unknowns
/// and `2n/5` measurements, on one thread and on two. Returns the state
/// dimension and both times.
fn spare_thread_step(n: usize) -> (usize, f64, f64) {
    let m = 2 * n / 5;
    // Deterministic entries of unit scale; the values do not matter for the time.
    let theta = Mat::<f64>::from_fn(n, n, |i, j| {
        (((i * 7919 + j * 104_729) % 1000) as f64 / 1000.0 - 0.5) / (n as f64).sqrt()
    });
    let a = Mat::<f64>::from_fn(m, n, |i, j| {
        (((i * 31 + j * 17) % 997) as f64 / 997.0 - 0.5) / (m as f64).sqrt()
    });
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.1,
        lambda: 1.0,
    };
    let model = build_model::<f32>(&theta, &a, steps).unwrap();
    let data = Mat::<f32>::from_fn(m, 2, |i, j| ((i + 7 * j) as f32 * 0.37).sin());
    let state = model.state_dim();
    let mut times = [0.0; 2];
    for (time, par) in times.iter_mut().zip([Par::Seq, Par::rayon(2)]) {
        let mut z = Mat::<f32>::zeros(state, 2);
        let mut z_next = Mat::<f32>::zeros(state, 2);
        let mut buffer = MemBuffer::new(model.step_scratch(2, par));
        let stack = MemStack::new(&mut buffer);
        *time = median_seconds(|| {
            model.step(z_next.as_mut(), z.as_ref(), data.as_ref(), par, stack);
            std::mem::swap(&mut z, &mut z_next);
        });
    }
    (state, times[0], times[1])
}

/// Times a 20-iteration forward pass of the 1,000 training samples in blocks
/// of 1,000, 256, 128 and 64 columns and of the default width. Returns the
/// precision, the width (marked when it is the default) and the seconds per
/// sample and iteration of each.
fn block_widths<T: Scalar>(problem: &SparseInverseProblem) -> Vec<(&'static str, String, f64)> {
    const ITERS: usize = 20;
    let precision = if size_of::<T>() == 4 { "f32" } else { "f64" };
    let model = build_model::<T>(&problem.theta0, &problem.a, problem.reference_steps().unwrap()).unwrap();
    let default = block_columns::<T>(model.state_dim());
    let options = ForwardOptions::new(ITERS, 0.0);
    let layer = OptLayer::new(model, options.clone()).unwrap();
    let data = cast::<T>(&problem.train.data().to_owned());
    let batch = data.ncols();
    let widths = [1000, 256, 128, 64].map(|width| (width, width.to_string()));
    let default = (default, format!("{default} (default)"));
    widths
        .into_iter()
        .chain([default])
        .map(|(width, label)| {
            let options = options.clone().with_block_columns(width);
            let seconds = median_seconds(|| {
                black_box(layer.forward_with(data.as_ref(), &options).unwrap());
            });
            (precision, label, seconds / (ITERS * batch) as f64)
        })
        .collect()
}

/// Times `Dense::apply` and one faer product on Θ (250 x 250), A (100 x 250)
/// and Aᵀ (250 x 100) for several column counts. Returns the precision, the
/// shape, the column count and the seconds of the single call and of `apply`.
fn dense_chunks<T: Scalar>(problem: &SparseInverseProblem) -> Vec<(&'static str, String, usize, f64, f64)> {
    let precision = if size_of::<T>() == 4 { "f32" } else { "f64" };
    let a = cast::<T>(&problem.a);
    let matrices = [cast::<T>(&problem.theta0), a.clone(), a.transpose().to_owned()];
    let mut rows = Vec::new();
    for matrix in matrices {
        let operator = Dense::new(matrix.clone()).unwrap();
        let shape = format!("{} x {}", matrix.nrows(), matrix.ncols());
        for columns in [13, 32, 64, 100, 1000] {
            let x = Mat::<T>::from_fn(matrix.ncols(), columns, |i, j| {
                T::lit(((i * 7 + j * 3) % 11) as f64 * 0.1 - 0.5)
            });
            let mut out = Mat::<T>::zeros(matrix.nrows(), columns);
            let one_call = median_seconds(|| {
                matmul(
                    out.as_mut(),
                    Accum::Replace,
                    matrix.as_ref(),
                    x.as_ref(),
                    T::one(),
                    Par::Seq,
                );
                black_box(&out);
            });
            let mut buffer = MemBuffer::new(operator.apply_scratch(columns, Par::Seq));
            let stack = MemStack::new(&mut buffer);
            let chunked = median_seconds(|| {
                operator.apply(
                    out.as_mut(),
                    Accum::Replace,
                    T::one(),
                    x.as_ref(),
                    Par::Seq,
                    stack,
                );
                black_box(&out);
            });
            rows.push((precision, shape.clone(), columns, one_call, chunked));
        }
    }
    rows
}

fn format_time(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.1} µs", seconds * 1e6)
    } else {
        format!("{:.2} ms", seconds * 1e3)
    }
}

fn main() {
    // `cargo bench` passes --bench; other arguments select nothing here.
    let problem = SparseInverseProblem::generate(&SparseInverseConfig {
        train_samples: 1000,
        test_samples: 1,
        ..SparseInverseConfig::default()
    })
    .unwrap();
    let mut rows = Vec::new();
    measure::<f32>(&problem, &mut rows);
    measure::<f64>(&problem, &mut rows);

    println!(
        "| precision | batch | step | iterations/s | step GFLOP/s | faer products | products GFLOP/s | ratio | products on views | stacked products | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {} | {:.1} | {:.0}% | {} | {} | {:.0}% |",
            row.precision,
            row.batch,
            format_time(row.step),
            1.0 / row.step,
            row.flops / row.step / 1e9,
            format_time(row.gemm),
            row.flops / row.gemm / 1e9,
            100.0 * row.gemm / row.step,
            format_time(row.gemm_views),
            format_time(row.gemm_stacked),
            100.0 * row.gemm_stacked / row.step
        );
    }
    for batch in BATCHES {
        let time = |precision: &str| {
            rows.iter()
                .find(|r| r.precision == precision && r.batch == batch)
                .map(|r| r.step)
        };
        if let (Some(single), Some(double)) = (time("f32"), time("f64")) {
            println!("batch {batch}: f32 step {:.2}x faster than f64", double / single);
        }
    }

    println!();
    println!(
        "two-column f32 steps; the layer parallelizes steps from a state of {PARALLEL_STEP_MIN_STATE} entries"
    );
    println!("| n | m | state | one thread | two threads | speed-up |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in [600, 800, 1200, 1600, 2400] {
        let (state, one, two) = spare_thread_step(n);
        println!(
            "| {n} | {} | {state} | {} | {} | {:.2}x |",
            2 * n / 5,
            format_time(one),
            format_time(two),
            one / two
        );
    }

    println!();
    println!("forward pass of 1000 samples in column blocks, one thread, per sample and iteration");
    println!("| precision | block width | time |");
    println!("|---|---:|---:|");
    for (precision, width, seconds) in block_widths::<f32>(&problem)
        .into_iter()
        .chain(block_widths::<f64>(&problem))
    {
        println!("| {precision} | {width} | {:.3} µs |", seconds * 1e6);
    }

    println!();
    println!(
        "dense products on one thread: one faer call against Dense::apply (chunks of at most 12 columns from 13 to 64)"
    );
    println!("| precision | shape | columns | one call | Dense::apply | change |");
    println!("|---|---|---:|---:|---:|---:|");
    for (precision, shape, columns, one_call, chunked) in dense_chunks::<f32>(&problem)
        .into_iter()
        .chain(dense_chunks::<f64>(&problem))
    {
        println!(
            "| {precision} | {shape} | {columns} | {} | {} | {:+.1}% |",
            format_time(one_call),
            format_time(chunked),
            (chunked / one_call - 1.0) * 100.0
        );
    }

    // A training step hashes Θ and the data batch to detect a stale forward pass.
    let theta = Mat::<f32>::from_fn(250, 250, |i, j| ((i * 3 + j) as f32 * 0.01).sin());
    let hash = median_seconds(|| {
        black_box(matrix_fingerprint(black_box(theta.as_ref())));
    });
    println!();
    println!("fingerprint of a 250 x 250 f32 matrix: {}", format_time(hash));
}
