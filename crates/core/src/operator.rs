//! Linear operators applied to batches.

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use crate::{Parameterized, Scalar, columns};

/// A linear map `K: R^ncols -> R^nrows` with its adjoint, applied to batches
/// whose columns are samples.
///
/// Outputs are written into preallocated views in the style of faer's
/// `matmul`: `out = alpha * K x` with [`Accum::Replace`], or
/// `out += alpha * K x` with [`Accum::Add`]. An operator that needs temporary
/// memory reports its size through [`apply_scratch`](Self::apply_scratch) and
/// takes it from the `stack` argument, so the iteration loop never allocates.
///
/// A learnable operator (such as a dense matrix Θ) also implements
/// [`Parameterized`] and accumulates the gradients of the two bilinear forms
/// that a splitting's vector-Jacobian product needs:
/// `∂⟨G, K X⟩/∂K` and `∂⟨H, Kᵀ Y⟩/∂K`.
///
/// # Example
/// ```
/// use faer::{Accum, Mat, Par, mat};
/// use faer::dyn_stack::{MemBuffer, MemStack};
/// use optlayer_core::{Operator, Parameterized, Scalar};
///
/// /// Multiplies every entry by a fixed factor.
/// struct Scale(f64, usize);
///
/// impl Parameterized<f64> for Scale {}
///
/// impl Operator<f64> for Scale {
///     fn nrows(&self) -> usize { self.1 }
///     fn ncols(&self) -> usize { self.1 }
///     fn apply(&self, mut out: faer::MatMut<'_, f64>, accum: Accum, alpha: f64,
///              x: faer::MatRef<'_, f64>, _par: Par, _stack: &mut MemStack) {
///         for j in 0..x.ncols() {
///             for i in 0..x.nrows() {
///                 let v = alpha * self.0 * x[(i, j)];
///                 out[(i, j)] = match accum { Accum::Replace => v, Accum::Add => out[(i, j)] + v };
///             }
///         }
///     }
///     fn apply_adjoint(&self, out: faer::MatMut<'_, f64>, accum: Accum, alpha: f64,
///                      y: faer::MatRef<'_, f64>, par: Par, stack: &mut MemStack) {
///         self.apply(out, accum, alpha, y, par, stack);
///     }
/// }
///
/// let op = Scale(3.0, 2);
/// assert!((op.norm_estimate(50, 1e-12, 0) - 3.0).abs() < 1e-12);
/// ```
pub trait Operator<T: Scalar>: Parameterized<T> + Send + Sync {
    /// Returns the output dimension.
    fn nrows(&self) -> usize;

    /// Returns the input dimension.
    fn ncols(&self) -> usize;

    /// Computes `out = alpha * K x` ([`Accum::Replace`]) or
    /// `out += alpha * K x` ([`Accum::Add`]).
    ///
    /// `x` is `ncols x b` and `out` is `nrows x b` for any batch size `b`.
    fn apply(
        &self,
        out: MatMut<'_, T>,
        accum: Accum,
        alpha: T,
        x: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    );

    /// Computes `out = alpha * Kᵀ y` ([`Accum::Replace`]) or
    /// `out += alpha * Kᵀ y` ([`Accum::Add`]).
    ///
    /// `y` is `nrows x b` and `out` is `ncols x b`.
    fn apply_adjoint(
        &self,
        out: MatMut<'_, T>,
        accum: Accum,
        alpha: T,
        y: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    );

    /// Returns the scratch memory that [`apply`](Self::apply) and
    /// [`apply_adjoint`](Self::apply_adjoint) need for a batch of `batch` columns.
    fn apply_scratch(&self, batch: usize, par: Par) -> StackReq {
        let _ = (batch, par);
        StackReq::EMPTY
    }

    /// Returns the matrix of `K` when the operator multiplies by a dense
    /// matrix that it stores, so that a splitting can stack it with other
    /// operators and multiply by all of them at once. `apply` must then
    /// compute `alpha * M x` with the `M` returned, and `apply_adjoint`
    /// `alpha * Mᵀ y`.
    ///
    /// The matrix may change only through the operator's parameters; a
    /// splitting that keeps a copy of it refreshes the copy in
    /// [`Parameterized::after_param_update`]. The provided method returns
    /// `None`, which keeps the operator's own products.
    fn dense(&self) -> Option<MatRef<'_, T>> {
        None
    }

    /// Adds `alpha * ∂⟨G, K X⟩/∂params` to `grads`, the slice of this
    /// operator's own gradients in parameter order.
    ///
    /// For a dense matrix the gradient is `G Xᵀ`, summed over the batch.
    /// Operators without parameters keep the provided no-op.
    fn accumulate_grad(&self, grads: &mut [Mat<T>], alpha: T, g: MatRef<'_, T>, x: MatRef<'_, T>, par: Par) {
        let _ = (grads, alpha, g, x, par);
    }

    /// Adds `alpha * ∂⟨H, Kᵀ Y⟩/∂params` to `grads`.
    ///
    /// For a dense matrix the gradient is `Y Hᵀ`, summed over the batch.
    fn accumulate_grad_adjoint(
        &self,
        grads: &mut [Mat<T>],
        alpha: T,
        h: MatRef<'_, T>,
        y: MatRef<'_, T>,
        par: Par,
    ) {
        let _ = (grads, alpha, h, y, par);
    }

    /// Estimates the spectral norm `‖K‖₂` by power iteration on `KᵀK`.
    ///
    /// The start vector is Gaussian with the given `seed`. Iteration stops
    /// after `max_iters` steps or when the estimate changes by less than
    /// `rel_tol` relative. Every iterate is a unit vector `v` and the estimate
    /// is `‖K v‖`, so the result never exceeds the true norm: it is a lower
    /// bound. Callers that size step sizes from it should leave a margin.
    fn norm_estimate(&self, max_iters: usize, rel_tol: f64, seed: u64) -> T {
        power_iteration(self, max_iters, rel_tol, seed).0
    }
}

/// Runs power iteration on `KᵀK` and returns the norm estimate with the
/// final unit vector, so callers can warm-start a later estimate.
pub fn power_iteration<T: Scalar, K: Operator<T> + ?Sized>(
    op: &K,
    max_iters: usize,
    rel_tol: f64,
    seed: u64,
) -> (T, Mat<T>) {
    power_iteration_from(op, gaussian_start(op.ncols(), seed), max_iters, rel_tol)
}

fn gaussian_start<T: Scalar>(dim: usize, seed: u64) -> Mat<T> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Mat::from_fn(dim, 1, |_, _| {
        let sample: f64 = StandardNormal.sample(&mut rng);
        T::lit(sample)
    })
}

/// Runs power iteration on `KᵀK` from the vector `start` (an `ncols x 1`
/// matrix), typically the vector an earlier estimate returned.
///
/// Returns the estimate `‖K v‖` for the last unit iterate `v`, and `v`. The
/// returned vector is always a finite unit vector, so it can warm-start the
/// next estimate. A zero or non-finite `start` is replaced by a seeded
/// Gaussian one, and an iterate that `KᵀK` maps to zero is kept as it is. A
/// zero operator gives an estimate of zero.
pub fn power_iteration_from<T: Scalar, K: Operator<T> + ?Sized>(
    op: &K,
    start: Mat<T>,
    max_iters: usize,
    rel_tol: f64,
) -> (T, Mat<T>) {
    let par = Par::Seq;
    let mut buffer = MemBuffer::new(op.apply_scratch(1, par));
    let stack = MemStack::new(&mut buffer);
    let mut v = start;
    let mut v_norm = columns::col_norm2(v.as_ref(), 0);
    if v_norm == T::zero() || !v_norm.is_finite() {
        v = gaussian_start(op.ncols(), 0);
        v_norm = columns::col_norm2(v.as_ref(), 0);
    }
    if v_norm == T::zero() {
        // Only for ncols = 0, where every norm is zero.
        return (T::zero(), v);
    }
    scale_in_place(v.as_mut(), v_norm.recip());

    let mut kv = Mat::<T>::zeros(op.nrows(), 1);
    let mut next = Mat::<T>::zeros(op.ncols(), 1);
    let tol = T::lit(rel_tol);
    let mut estimate = T::zero();
    for _ in 0..max_iters.max(1) {
        op.apply(kv.as_mut(), Accum::Replace, T::one(), v.as_ref(), par, stack);
        let previous = estimate;
        estimate = columns::col_norm2(kv.as_ref(), 0);
        op.apply_adjoint(next.as_mut(), Accum::Replace, T::one(), kv.as_ref(), par, stack);
        let next_norm = columns::col_norm2(next.as_ref(), 0);
        if next_norm == T::zero() || !next_norm.is_finite() {
            break;
        }
        scale_in_place(next.as_mut(), next_norm.recip());
        core::mem::swap(&mut v, &mut next);
        if (estimate - previous).abs() <= tol * estimate {
            break;
        }
    }
    (estimate, v)
}

fn scale_in_place<T: Scalar>(mut m: MatMut<'_, T>, factor: T) {
    for col in 0..m.ncols() {
        for row in 0..m.nrows() {
            m[(row, col)] *= factor;
        }
    }
}
