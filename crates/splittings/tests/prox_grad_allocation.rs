//! Proximal gradient's `step` and `step_vjp` take all their memory from the
//! scratch stack: after a first call, further calls make no heap
//! allocation. The test binary counts allocations with a wrapping global
//! allocator, on the test's own thread only.

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::{Mat, Par};
use optlayer_core::Splitting;
use optlayer_ops::{L1Norm, LearnableDense, LeastSquares};
use optlayer_splittings::{Acceleration, ProximalGradient};
use optlayer_testing::alloc::{CountingAllocator, allocations_during};
use optlayer_testing::random::gaussian;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn step_and_step_vjp_do_not_allocate() {
    let (m, n, batch) = (30, 20, 8);
    for acceleration in [Acceleration::None, Acceleration::Fista] {
        let smooth = LeastSquares::new(LearnableDense::new("a", gaussian(m, n, 1)).unwrap()).unwrap();
        let prox = L1Norm::learnable("lambda", 0.3).unwrap();
        let s = ProximalGradient::new(smooth, prox, m, acceleration).unwrap();
        let mut z = gaussian(s.state_dim(), batch, 2);
        if let Some(row) = s.counter_row() {
            z.row_mut(row).fill(2.0);
        }
        let data = gaussian(m, batch, 3);
        let cotangent = gaussian(s.state_dim(), batch, 4);
        let mut z_next = Mat::zeros(s.state_dim(), batch);
        let mut z_bar = Mat::zeros(s.state_dim(), batch);
        let mut grads = vec![Mat::<f64>::zeros(m, n), Mat::<f64>::zeros(1, 1)];
        let mut buffer = MemBuffer::new(StackReq::any_of(&[
            s.step_scratch(batch, Par::Seq),
            s.step_vjp_scratch(batch, Par::Seq),
        ]));
        let stack = MemStack::new(&mut buffer);

        let mut run = || {
            for _ in 0..5 {
                s.step(z_next.as_mut(), z.as_ref(), data.as_ref(), Par::Seq, stack);
                s.step_vjp(
                    Some(z_bar.as_mut()),
                    z.as_ref(),
                    data.as_ref(),
                    cotangent.as_ref(),
                    Some(&mut grads),
                    Par::Seq,
                    stack,
                );
            }
        };
        // A first, uncounted round leaves out any one-time set-up inside faer.
        run();
        let count = allocations_during(run);
        assert_eq!(
            count, 0,
            "{acceleration:?}: {count} allocations in 5 steps and 5 products"
        );
        assert!(grads[0][(0, 0)] != 0.0);
    }
}
