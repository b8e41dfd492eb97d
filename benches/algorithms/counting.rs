//! Operators and proximal maps that count how often a splitting calls them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use faer::dyn_stack::{MemStack, StackReq};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use optlayer::{Operator, ParamInfo, Parameterized, Prox, Result};

/// Call counts shared by every counted term of one splitting.
///
/// A count goes up by one per call, whatever the number of columns, so on a
/// batch of one sample it counts matrix-vector products and prox evaluations.
#[derive(Debug, Default)]
pub struct Counter {
    products: AtomicUsize,
    proxes: AtomicUsize,
}

/// The counts read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Products with a problem matrix or its transpose.
    pub products: usize,
    /// Prox evaluations.
    pub proxes: usize,
}

impl Counter {
    /// Creates a counter, shared through an `Arc` by the terms it counts.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Sets both counts to zero.
    pub fn reset(&self) {
        self.products.store(0, Ordering::Relaxed);
        self.proxes.store(0, Ordering::Relaxed);
    }

    /// Returns the current counts.
    pub fn read(&self) -> Counts {
        Counts {
            products: self.products.load(Ordering::Relaxed),
            proxes: self.proxes.load(Ordering::Relaxed),
        }
    }

    /// Adds `count` products, for terms that multiply by a matrix without an
    /// [`Operator`].
    pub fn add_products(&self, count: usize) {
        self.products.fetch_add(count, Ordering::Relaxed);
    }

    fn add_prox(&self) {
        self.proxes.fetch_add(1, Ordering::Relaxed);
    }
}

/// An operator that counts its forward and adjoint products.
pub struct CountedOperator {
    inner: Box<dyn Operator<f64>>,
    counter: Arc<Counter>,
}

impl CountedOperator {
    /// Wraps `inner`, counting its products into `counter`.
    pub fn new(inner: impl Operator<f64> + 'static, counter: &Arc<Counter>) -> Self {
        Self {
            inner: Box::new(inner),
            counter: Arc::clone(counter),
        }
    }
}

impl Parameterized<f64> for CountedOperator {
    fn param_count(&self) -> usize {
        self.inner.param_count()
    }

    fn param_info(&self, index: usize) -> ParamInfo {
        self.inner.param_info(index)
    }

    fn param(&self, index: usize) -> MatRef<'_, f64> {
        self.inner.param(index)
    }

    fn param_mut(&mut self, index: usize) -> MatMut<'_, f64> {
        self.inner.param_mut(index)
    }

    fn after_param_update(&mut self) -> Result<()> {
        self.inner.after_param_update()
    }
}

impl Operator<f64> for CountedOperator {
    fn nrows(&self) -> usize {
        self.inner.nrows()
    }

    fn ncols(&self) -> usize {
        self.inner.ncols()
    }

    fn apply(
        &self,
        out: MatMut<'_, f64>,
        accum: Accum,
        alpha: f64,
        x: MatRef<'_, f64>,
        par: Par,
        stack: &mut MemStack,
    ) {
        self.counter.add_products(1);
        self.inner.apply(out, accum, alpha, x, par, stack);
    }

    fn apply_adjoint(
        &self,
        out: MatMut<'_, f64>,
        accum: Accum,
        alpha: f64,
        y: MatRef<'_, f64>,
        par: Par,
        stack: &mut MemStack,
    ) {
        self.counter.add_products(1);
        self.inner.apply_adjoint(out, accum, alpha, y, par, stack);
    }

    fn apply_scratch(&self, batch: usize, par: Par) -> StackReq {
        self.inner.apply_scratch(batch, par)
    }

    fn accumulate_grad(
        &self,
        grads: &mut [Mat<f64>],
        alpha: f64,
        g: MatRef<'_, f64>,
        x: MatRef<'_, f64>,
        par: Par,
    ) {
        self.inner.accumulate_grad(grads, alpha, g, x, par);
    }

    fn accumulate_grad_adjoint(
        &self,
        grads: &mut [Mat<f64>],
        alpha: f64,
        h: MatRef<'_, f64>,
        y: MatRef<'_, f64>,
        par: Par,
    ) {
        self.inner.accumulate_grad_adjoint(grads, alpha, h, y, par);
    }
}

/// A proximal map that counts its evaluations. It does not forward
/// `Prox::entrywise`, so every scheme calls `prox` and each call is counted.
/// Linearized ADMM and proximal gradient would otherwise fuse an entry-wise
/// prox into their own passes.
pub struct CountedProx {
    inner: Box<dyn Prox<f64>>,
    counter: Arc<Counter>,
}

impl CountedProx {
    /// Wraps `inner`, counting its evaluations into `counter`.
    pub fn new(inner: impl Prox<f64> + 'static, counter: &Arc<Counter>) -> Self {
        Self {
            inner: Box::new(inner),
            counter: Arc::clone(counter),
        }
    }
}

impl Parameterized<f64> for CountedProx {
    fn param_count(&self) -> usize {
        self.inner.param_count()
    }

    fn param_info(&self, index: usize) -> ParamInfo {
        self.inner.param_info(index)
    }

    fn param(&self, index: usize) -> MatRef<'_, f64> {
        self.inner.param(index)
    }

    fn param_mut(&mut self, index: usize) -> MatMut<'_, f64> {
        self.inner.param_mut(index)
    }

    fn after_param_update(&mut self) -> Result<()> {
        self.inner.after_param_update()
    }
}

impl Prox<f64> for CountedProx {
    fn dim(&self) -> Option<usize> {
        self.inner.dim()
    }

    fn data_rows_needed(&self) -> usize {
        self.inner.data_rows_needed()
    }

    fn value(&self, x: MatRef<'_, f64>, data: MatRef<'_, f64>, col: usize) -> Option<f64> {
        self.inner.value(x, data, col)
    }

    fn is_separable(&self) -> bool {
        self.inner.is_separable()
    }

    fn is_indicator(&self) -> bool {
        self.inner.is_indicator()
    }

    fn infeasibility(&self, v: MatRef<'_, f64>, data: MatRef<'_, f64>, col: usize) -> Option<f64> {
        self.inner.infeasibility(v, data, col)
    }

    fn prox(&self, out: MatMut<'_, f64>, v: MatRef<'_, f64>, gamma: f64, data: MatRef<'_, f64>) {
        self.counter.add_prox();
        self.inner.prox(out, v, gamma, data);
    }

    fn prox_vjp(
        &self,
        v_bar: MatMut<'_, f64>,
        v: MatRef<'_, f64>,
        gamma: f64,
        data: MatRef<'_, f64>,
        cotangent: MatRef<'_, f64>,
    ) {
        self.inner.prox_vjp(v_bar, v, gamma, data, cotangent);
    }

    fn accumulate_grad(
        &self,
        grads: &mut [Mat<f64>],
        v: MatRef<'_, f64>,
        gamma: f64,
        data: MatRef<'_, f64>,
        cotangent: MatRef<'_, f64>,
    ) {
        self.inner.accumulate_grad(grads, v, gamma, data, cotangent);
    }
}
