//! Throughput of linearized ADMM on the reference sparse inverse problem
//! (n = 250, m = 100, Θ of size 250 x 250): one iteration at several batch
//! sizes in f32 and f64, and one JFB training step at batch 100 (a
//! 400-iteration forward pass, the backward step and the Adam update, which
//! renormalizes Θ and re-estimates ‖[Θ; A]‖₂), whole and by part.
//!
//! Run with `cargo bench --bench ladmm`; the figures are recorded in
//! docs/benchmarks.md.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::{Mat, Par};
use optlayer::problems::sparse_inverse::{SparseInverseConfig, SparseInverseProblem, build_model, cast};
use optlayer::train::{Adam, AdamConfig};
use optlayer::{FixedPointJfb, ForwardOptions, Gradients, OptLayer, Scalar, Splitting, mse_loss};

fn problem(samples: usize) -> SparseInverseProblem {
    let config = SparseInverseConfig {
        train_samples: samples,
        test_samples: 1,
        ..SparseInverseConfig::default()
    };
    SparseInverseProblem::generate(&config).unwrap()
}

/// Floating-point operations of one iteration per sample: the four matrix
/// products Θx, Ax, Θᵀw and Aᵀw at 2 flops per multiply-add.
fn flops_per_sample(n: usize, m: usize) -> u64 {
    (2 * (2 * n * n + 2 * m * n)) as u64
}

fn bench_step<T: Scalar>(c: &mut Criterion, problem: &SparseInverseProblem) {
    let (n, m) = (problem.config.n, problem.config.m);
    let steps = problem.reference_steps().unwrap();
    let model = build_model::<T>(&problem.theta0, &problem.a, steps).unwrap();
    let mut group = c.benchmark_group(format!("ladmm_step_{}", T::NAME));
    group.sample_size(20);
    for batch in [1usize, 10, 100, 1000] {
        let data = cast::<T>(&problem.train.data().subcols(0, batch).to_owned());
        let mut z = Mat::<T>::zeros(model.state_dim(), batch);
        let mut z_next = Mat::<T>::zeros(model.state_dim(), batch);
        // Start from a state after 50 iterations, so the prox has a realistic active set.
        let mut buffer = MemBuffer::new(model.step_scratch(batch, Par::Seq));
        let stack = MemStack::new(&mut buffer);
        for _ in 0..50 {
            model.step(z_next.as_mut(), z.as_ref(), data.as_ref(), Par::Seq, stack);
            std::mem::swap(&mut z, &mut z_next);
        }
        group.throughput(Throughput::Elements(batch as u64 * flops_per_sample(n, m)));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
            b.iter(|| model.step(z_next.as_mut(), z.as_ref(), data.as_ref(), Par::Seq, stack));
        });
    }
    group.finish();
}

fn bench_training_step<T: Scalar>(c: &mut Criterion, problem: &SparseInverseProblem, threads: usize) {
    let steps = problem.reference_steps().unwrap();
    let model = build_model::<T>(&problem.theta0, &problem.a, steps).unwrap();
    // rtol = 0 runs all 400 iterations, the training depth of the reference.
    let options = ForwardOptions::new(400, 0.0).with_threads(threads);
    let mut layer = OptLayer::new(model, options).unwrap();
    let data = cast::<T>(&problem.train.data().subcols(0, 100).to_owned());
    let targets = cast::<T>(&problem.train.targets().subcols(0, 100).to_owned());
    let mut optimizer = Adam::new(
        AdamConfig {
            learning_rate: 1e-6,
            ..AdamConfig::default()
        },
        &layer,
    )
    .unwrap();
    let mut grads = Gradients::zeros_for(&layer);

    let mut group = c.benchmark_group(format!("jfb_training_step_{}", T::NAME));
    group.sample_size(10);
    if threads == 1 {
        // The parts of a training step, measured alone.
        group.bench_function("forward_only", |b| {
            b.iter(|| layer.forward(data.as_ref()).unwrap())
        });
        let forward = layer.forward(data.as_ref()).unwrap();
        group.bench_function("jfb_backward_only", |b| {
            b.iter(|| {
                grads.fill_zero();
                layer
                    .jfb_gradient(
                        &forward,
                        data.as_ref(),
                        &mut |x, g| mse_loss(x, targets.as_ref(), g),
                        &mut grads,
                    )
                    .unwrap()
            })
        });
        group.bench_function("adam_step_only", |b| {
            b.iter(|| optimizer.step(&mut layer, &grads).unwrap())
        });
    }
    group.bench_function(BenchmarkId::new("batch100_iters400_threads", threads), |b| {
        b.iter(|| {
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
        });
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let problem = problem(1000);
    bench_step::<f32>(c, &problem);
    bench_step::<f64>(c, &problem);
    for threads in [1, 2] {
        bench_training_step::<f32>(c, &problem, threads);
        bench_training_step::<f64>(c, &problem, threads);
    }
}

criterion_group!(ladmm, benches);
criterion_main!(ladmm);
