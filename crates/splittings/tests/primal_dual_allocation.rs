//! `CondatVu::step` and `CondatVu::step_vjp` make no heap allocation once
//! their scratch is allocated. The test binary counts allocations with a
//! wrapping global allocator, on the test's own thread only.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::{Mat, Par};
use optlayer_core::{Parameterized, Splitting};
use optlayer_ops::{IndicatorPoint, L1Norm, LearnableDense, LeastSquares};
use optlayer_splittings::{CondatVu, PrimalDualSteps};
use optlayer_testing::alloc::{CountingAllocator, allocations_during};
use optlayer_testing::random::gaussian;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `step` and `step_vjp` (with both outputs) on preallocated buffers
/// and returns the allocations each made.
fn count_step_allocations(s: &CondatVu<f64>, data_dim: usize, batch: usize) -> (usize, usize) {
    let z = gaussian(s.state_dim(), batch, 1);
    let data = gaussian(data_dim, batch, 2);
    let cotangent = gaussian(s.state_dim(), batch, 3);
    let mut z_next = Mat::zeros(s.state_dim(), batch);
    let mut z_bar = Mat::zeros(s.state_dim(), batch);
    let mut grads: Vec<Mat<f64>> = (0..s.param_count())
        .map(|i| s.param_info(i))
        .map(|info| Mat::zeros(info.nrows, info.ncols))
        .collect();
    let mut step_buffer = MemBuffer::new(s.step_scratch(batch, Par::Seq));
    let mut vjp_buffer = MemBuffer::new(s.step_vjp_scratch(batch, Par::Seq));

    let step = allocations_during(|| {
        s.step(
            z_next.as_mut(),
            z.as_ref(),
            data.as_ref(),
            Par::Seq,
            MemStack::new(&mut step_buffer),
        )
    });
    let vjp = allocations_during(|| {
        s.step_vjp(
            Some(z_bar.as_mut()),
            z.as_ref(),
            data.as_ref(),
            cotangent.as_ref(),
            Some(&mut grads),
            Par::Seq,
            MemStack::new(&mut vjp_buffer),
        )
    });
    assert!(z_next.norm_l2() > 0.0);
    assert!(z_bar.norm_l2() > 0.0);
    (step, vjp)
}

#[test]
fn condat_vu_step_and_vjp_do_not_allocate() {
    // Every term is learnable, so the vector-Jacobian product runs every
    // parameter-gradient path, the least-squares one included.
    let (n, m, p, batch) = (6, 4, 5, 3);
    let s = CondatVu::with_smooth(
        p,
        Box::new(LeastSquares::new(LearnableDense::new("a", gaussian(p, n, 4)).unwrap()).unwrap()),
        Box::new(LearnableDense::new("k", gaussian(m, n, 5)).unwrap()),
        Box::new(L1Norm::learnable("lambda_g", 0.3).unwrap()),
        Box::new(L1Norm::learnable("lambda_h", 0.5).unwrap()),
        PrimalDualSteps::default(),
    )
    .unwrap();
    assert_eq!(count_step_allocations(&s, p, batch), (0, 0));
}

#[test]
fn chambolle_pock_step_and_vjp_do_not_allocate() {
    let (n, m, batch) = (6, 4, 3);
    let s = CondatVu::new(
        m,
        Box::new(LearnableDense::new("k", gaussian(m, n, 5)).unwrap()),
        Box::new(L1Norm::new(1.0).unwrap()),
        Box::new(IndicatorPoint::from_data(0, m).unwrap()),
        PrimalDualSteps::default(),
    )
    .unwrap();
    assert_eq!(count_step_allocations(&s, m, batch), (0, 0));
}
