//! The forward iteration loop does not allocate, with or without Anderson
//! acceleration: a forward pass makes the same number of heap allocations
//! whatever its iteration count. The test
//! binary counts allocations with a wrapping global allocator, per thread,
//! because the test harness allocates on its main thread at moments that
//! vary from run to run and the tests run in parallel.

mod common;

use common::{sparse_model, unit_column_matrix};
use optlayer::{AndersonOptions, FixedPointJfb, ForwardOptions, Gradients, OptLayer, mse_loss};
use optlayer_testing::alloc::{CountingAllocator, allocations_during};
use optlayer_testing::random::gaussian;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn forward_allocations_independent_of_iterations() {
    // One thread, so that all work runs on the counting thread.
    let (m, n) = (20, 40);
    let a = unit_column_matrix(m, n, 1);
    let data = &a * gaussian(n, 16, 2);
    let target = gaussian(n, 16, 3);
    let layer = OptLayer::new(
        sparse_model::<f64>(&gaussian(n, n, 4), &a, true),
        ForwardOptions::new(10, 0.0),
    )
    .unwrap();
    let mut grads = Gradients::zeros_for(&layer);

    // rtol = 0 and atol = 0 run every sample to the iteration limit.
    let mut counts = Vec::new();
    for iterations in [10, 100, 1_000] {
        let options = ForwardOptions::new(iterations, 0.0);
        counts.push(allocations_during(|| {
            let forward = layer.forward_with(data.as_ref(), &options).unwrap();
            assert_eq!(forward.samples[0].iterations, iterations);
            layer
                .jfb_gradient(
                    &forward,
                    data.as_ref(),
                    &mut |x, g| mse_loss(x, target.as_ref(), g),
                    &mut grads,
                )
                .unwrap();
        }));
    }
    assert!(counts[0] > 0);
    assert_eq!(
        counts[0], counts[1],
        "allocations at 10 and 100 iterations: {counts:?}"
    );
    assert_eq!(
        counts[1], counts[2],
        "allocations at 100 and 1,000 iterations: {counts:?}"
    );
}

#[test]
fn accelerated_forward_allocations_independent_of_iterations() {
    let (m, n) = (20, 40);
    let a = unit_column_matrix(m, n, 5);
    let data = &a * gaussian(n, 16, 6);
    let target = gaussian(n, 16, 7);
    let layer = OptLayer::new(
        sparse_model::<f64>(&gaussian(n, n, 8), &a, true),
        ForwardOptions::new(10, 0.0),
    )
    .unwrap();
    let mut grads = Gradients::zeros_for(&layer);

    // rtol = 0 and atol = 0 run every sample to the iteration limit, with
    // accepted and rejected candidates along the way.
    let mut counts = Vec::new();
    for iterations in [10, 100, 1_000] {
        let options = ForwardOptions::new(iterations, 0.0).with_anderson(AndersonOptions::default());
        counts.push(allocations_during(|| {
            let forward = layer.forward_with(data.as_ref(), &options).unwrap();
            assert_eq!(forward.samples[0].iterations, iterations);
            let totals = forward.anderson_totals().unwrap();
            assert!(totals.accepted > 0, "{totals:?}");
            if iterations == 1_000 {
                assert!(totals.rejected > 0, "{totals:?}");
            }
            layer
                .jfb_gradient(
                    &forward,
                    data.as_ref(),
                    &mut |x, g| mse_loss(x, target.as_ref(), g),
                    &mut grads,
                )
                .unwrap();
        }));
    }
    assert!(counts[0] > 0);
    assert_eq!(
        counts[0], counts[1],
        "allocations at 10 and 100 iterations: {counts:?}"
    );
    assert_eq!(
        counts[1], counts[2],
        "allocations at 100 and 1,000 iterations: {counts:?}"
    );
}

#[test]
fn blocked_forward_allocations_independent_of_iterations() {
    // 16 samples in blocks of at most 5 columns: four blocks, each with its
    // own working buffers and scratch, allocated before its iterations.
    let (m, n) = (20, 40);
    let a = unit_column_matrix(m, n, 9);
    let data = &a * gaussian(n, 16, 10);
    let layer = OptLayer::new(
        sparse_model::<f64>(&gaussian(n, n, 11), &a, true),
        ForwardOptions::new(10, 0.0),
    )
    .unwrap();

    for anderson in [None, Some(AndersonOptions::default())] {
        let mut counts = Vec::new();
        for iterations in [10, 100, 1_000] {
            let mut options = ForwardOptions::new(iterations, 0.0).with_block_columns(5);
            options.anderson = anderson;
            counts.push(allocations_during(|| {
                let forward = layer.forward_with(data.as_ref(), &options).unwrap();
                assert_eq!(forward.samples[15].iterations, iterations);
            }));
        }
        let label = if anderson.is_some() { "Anderson" } else { "plain" };
        assert!(counts[0] > 0);
        assert_eq!(
            counts[0], counts[1],
            "{label}: allocations at 10 and 100 iterations: {counts:?}"
        );
        assert_eq!(
            counts[1], counts[2],
            "{label}: allocations at 100 and 1,000 iterations: {counts:?}"
        );
    }
}
