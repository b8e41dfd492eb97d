//! Proximal gradient's `step` and `step_vjp` take all their memory from the
//! scratch stack: after a first call, further calls make no heap
//! allocation. The test binary counts allocations with a wrapping global
//! allocator, on the test's own thread only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::{Mat, Par};
use optlayer_core::Splitting;
use optlayer_ops::{L1Norm, LearnableDense, LeastSquares};
use optlayer_splittings::{Acceleration, ProximalGradient};
use optlayer_testing::random::gaussian;

struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // A const-initialized Cell needs no allocation and no destructor, so the
    // allocator can read it.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count_one() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

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
