//! The combinators allocate nothing once warmed up: `Translated` and
//! `Conjugate` allocate their buffer on the first call only, and the other
//! maps and the forward difference never allocate. The test binary counts
//! allocations on the test's own thread with a wrapping global allocator.

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::{Accum, Mat, Par};
use optlayer_core::{Operator, Prox};
use optlayer_ops::{
    Conjugate, ForwardDifference, L1Norm, Scaled, SeparableBlock, SeparableSum, Simplex, Translated,
};
use optlayer_testing::alloc::{CountingAllocator, allocations_during};
use optlayer_testing::random::gaussian;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs prox, prox_vjp and accumulate_grad once on a batch of `batch` columns.
fn run_all(g: &dyn Prox<f64>, batch: usize, grads: &mut [Mat<f64>], buffers: &mut [Mat<f64>; 3]) {
    let [v, out, c] = buffers;
    let no_data = Mat::<f64>::zeros(0, batch);
    g.prox(out.as_mut(), v.as_ref(), 0.7, no_data.as_ref());
    g.prox_vjp(out.as_mut(), v.as_ref(), 0.7, no_data.as_ref(), c.as_ref());
    g.accumulate_grad(grads, v.as_ref(), 0.7, no_data.as_ref(), c.as_ref());
}

#[test]
fn combinators_allocate_only_on_first_call() {
    let (dim, batch) = (6, 70);
    let maps: Vec<(&str, Box<dyn Prox<f64>>, usize)> = vec![
        (
            "scaled",
            Box::new(Scaled::new(L1Norm::learnable("lambda", 0.5).unwrap(), 2.0).unwrap()),
            0,
        ),
        (
            "translated",
            Box::new(Translated::new(L1Norm::learnable("lambda", 0.5).unwrap(), vec![0.5; dim]).unwrap()),
            2,
        ),
        (
            "separable",
            Box::new(
                SeparableSum::new(
                    dim,
                    vec![
                        SeparableBlock::new(0..2, L1Norm::learnable("lambda", 0.5).unwrap()),
                        SeparableBlock::new(2..dim, Simplex),
                    ],
                )
                .unwrap(),
            ),
            0,
        ),
        (
            "conjugate",
            Box::new(Conjugate::new(L1Norm::learnable("lambda", 0.5).unwrap())),
            3,
        ),
    ];
    for (name, g, first_call) in &maps {
        let mut grads = vec![Mat::zeros(1, 1)];
        let mut buffers = [
            gaussian(dim, batch, 1),
            Mat::zeros(dim, batch),
            gaussian(dim, batch, 2),
        ];
        // The first call of Translated allocates its buffer and the pool's
        // list of free buffers, once for all three products. Conjugate also
        // grows the buffer once, to two copies, for the gradient.
        let first = allocations_during(|| run_all(&**g, batch, &mut grads, &mut buffers));
        assert_eq!(first, *first_call, "{name}: allocations on the first call");
        let later = allocations_during(|| {
            for _ in 0..5 {
                run_all(&**g, batch, &mut grads, &mut buffers);
            }
        });
        assert_eq!(later, 0, "{name}: allocations after the first call");
    }
}

#[test]
fn forward_difference_never_allocates() {
    let op = ForwardDifference::new(9).unwrap();
    let x = gaussian(9, 4, 3);
    let mut out = Mat::zeros(9, 4);
    let mut buffer = MemBuffer::new(StackReq::EMPTY);
    let stack = MemStack::new(&mut buffer);
    let count = allocations_during(|| {
        op.apply(out.as_mut(), Accum::Replace, 1.0, x.as_ref(), Par::Seq, stack);
        op.apply_adjoint(out.as_mut(), Accum::Add, 1.0, x.as_ref(), Par::Seq, stack);
    });
    assert_eq!(count, 0);
}
