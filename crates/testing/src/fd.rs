//! Central finite-difference checks of vector-Jacobian products (in `f64`).
//!
//! Each check compares an analytic product `Jᵀc` with the central difference
//! `⟨c, f(u + εe_k) − f(u − εe_k)⟩ / (2ε)` for every coordinate `k`.
//!
//! Splittings built from proxes such as soft-thresholding are piecewise
//! smooth. Where the one-sided differences of a coordinate disagree, the
//! point lies within `ε` of a kink, so the central difference is not a
//! derivative there. Such coordinates are counted in
//! [`GradientCheck::skipped_nonsmooth`] and not compared. Tests should assert
//! that few coordinates were skipped.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use optlayer_core::{Operator, Parameterized, Prox, Splitting};

/// Settings of a finite-difference check.
#[derive(Clone, Copy, Debug)]
pub struct FdOptions {
    /// Step `ε` of the central difference.
    pub eps: f64,
    /// Relative disagreement of the two one-sided differences above which a
    /// coordinate counts as non-smooth.
    pub kink_tol: f64,
}

impl Default for FdOptions {
    fn default() -> Self {
        Self {
            eps: 1e-6,
            kink_tol: 1e-3,
        }
    }
}

/// The outcome of a finite-difference check.
#[derive(Clone, Debug, Default)]
pub struct GradientCheck {
    /// Coordinates compared.
    pub checked: usize,
    /// Coordinates skipped because the map is not smooth there.
    pub skipped_nonsmooth: usize,
    /// `max_k |analytic_k − fd_k|`.
    pub max_abs_error: f64,
    /// `‖analytic − fd‖ / max(‖analytic‖, ‖fd‖)` over the compared
    /// coordinates, or 0 when both are zero.
    pub rel_error: f64,
    /// Euclidean norm of the finite-difference vector, to tell a trivial
    /// pass (all zero) from a real one.
    pub fd_norm: f64,
    /// Description of the coordinate with the largest error.
    pub worst: String,
}

impl GradientCheck {
    /// Returns whether the relative error is at most `rel_tol`.
    pub fn passes(&self, rel_tol: f64) -> bool {
        self.rel_error <= rel_tol
    }
}

struct Accumulator {
    check: GradientCheck,
    diff_sq: f64,
    analytic_sq: f64,
    fd_sq: f64,
    worst_error: f64,
}

impl Accumulator {
    fn new() -> Self {
        Self {
            check: GradientCheck::default(),
            diff_sq: 0.0,
            analytic_sq: 0.0,
            fd_sq: 0.0,
            worst_error: -1.0,
        }
    }

    /// Records one coordinate from the loss values at `u − ε`, `u` and `u + ε`.
    fn record(
        &mut self,
        label: impl FnOnce() -> String,
        minus: f64,
        center: f64,
        plus: f64,
        analytic: f64,
        opts: &FdOptions,
    ) {
        let forward = (plus - center) / opts.eps;
        let backward = (center - minus) / opts.eps;
        let scale = forward.abs().max(backward.abs()).max(1e-8);
        if (forward - backward).abs() > opts.kink_tol * scale {
            self.check.skipped_nonsmooth += 1;
            return;
        }
        let fd = (plus - minus) / (2.0 * opts.eps);
        let error = (analytic - fd).abs();
        self.check.checked += 1;
        self.diff_sq += error * error;
        self.analytic_sq += analytic * analytic;
        self.fd_sq += fd * fd;
        if error > self.worst_error {
            self.worst_error = error;
            self.check.worst = format!("{}: analytic {analytic:.9e}, finite difference {fd:.9e}", label());
        }
        self.check.max_abs_error = self.check.max_abs_error.max(error);
    }

    fn finish(mut self) -> GradientCheck {
        let denom = self.analytic_sq.max(self.fd_sq).sqrt();
        self.check.rel_error = if denom > 0.0 {
            self.diff_sq.sqrt() / denom
        } else {
            0.0
        };
        self.check.fd_norm = self.fd_sq.sqrt();
        self.check
    }
}

fn inner(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> f64 {
    let mut sum = 0.0;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            sum += a[(i, j)] * b[(i, j)];
        }
    }
    sum
}

/// Returns `⟨cotangent, T(z; data)⟩`.
fn step_loss<S: Splitting<Real = f64>>(
    s: &S,
    z: MatRef<'_, f64>,
    data: MatRef<'_, f64>,
    cotangent: MatRef<'_, f64>,
) -> f64 {
    let mut out = Mat::zeros(z.nrows(), z.ncols());
    let mut buffer = MemBuffer::new(s.step_scratch(z.ncols(), Par::Seq));
    s.step(out.as_mut(), z, data, Par::Seq, MemStack::new(&mut buffer));
    inner(cotangent, out.as_ref())
}

/// Returns zero gradients shaped like the parameters of `model`.
fn zero_grads<P: Parameterized<f64> + ?Sized>(model: &P) -> Vec<Mat<f64>> {
    (0..model.param_count())
        .map(|i| model.param_info(i))
        .map(|p| Mat::zeros(p.nrows, p.ncols))
        .collect()
}

/// Compares `analytic` with central differences of `value` in every entry
/// of `point`, which is restored after each perturbation.
fn compare_in_matrix(
    point: MatRef<'_, f64>,
    analytic: MatRef<'_, f64>,
    label: &str,
    opts: &FdOptions,
    mut value: impl FnMut(MatRef<'_, f64>) -> f64,
) -> GradientCheck {
    let center = value(point);
    let mut acc = Accumulator::new();
    let mut point = point.to_owned();
    for j in 0..point.ncols() {
        for i in 0..point.nrows() {
            let original = point[(i, j)];
            point[(i, j)] = original + opts.eps;
            let plus = value(point.as_ref());
            point[(i, j)] = original - opts.eps;
            let minus = value(point.as_ref());
            point[(i, j)] = original;
            acc.record(
                || format!("{label} entry ({i}, {j})"),
                minus,
                center,
                plus,
                analytic[(i, j)],
                opts,
            );
        }
    }
    acc.finish()
}

/// Compares `grads` with central differences of `value` in every parameter
/// entry of `model`. Entries are written through `param_mut` and restored,
/// without `after_param_update`, so steps and normalizations stay fixed.
fn compare_in_params<P: Parameterized<f64> + ?Sized>(
    model: &mut P,
    grads: &[Mat<f64>],
    opts: &FdOptions,
    mut value: impl FnMut(&P) -> f64,
) -> GradientCheck {
    let center = value(model);
    let mut acc = Accumulator::new();
    for (p, grad) in grads.iter().enumerate() {
        let name = model.param_info(p).name;
        for j in 0..grad.ncols() {
            for i in 0..grad.nrows() {
                let original = model.param(p)[(i, j)];
                model.param_mut(p)[(i, j)] = original + opts.eps;
                let plus = value(model);
                model.param_mut(p)[(i, j)] = original - opts.eps;
                let minus = value(model);
                model.param_mut(p)[(i, j)] = original;
                let label = || format!("parameter '{name}' entry ({i}, {j})");
                acc.record(label, minus, center, plus, grad[(i, j)], opts);
            }
        }
    }
    acc.finish()
}

/// Checks the state part of [`Splitting::step_vjp`]: `(∂T/∂z)ᵀ c` against
/// central differences of `⟨c, T(z)⟩` in every entry of `z`. The product is
/// computed without parameter gradients (`grads = None`).
pub fn check_step_vjp_state<S: Splitting<Real = f64>>(
    s: &S,
    z: MatRef<'_, f64>,
    data: MatRef<'_, f64>,
    cotangent: MatRef<'_, f64>,
    opts: &FdOptions,
) -> GradientCheck {
    let mut z_bar = Mat::zeros(z.nrows(), z.ncols());
    let mut buffer = MemBuffer::new(s.step_vjp_scratch(z.ncols(), Par::Seq));
    s.step_vjp(
        Some(z_bar.as_mut()),
        z,
        data,
        cotangent,
        None,
        Par::Seq,
        MemStack::new(&mut buffer),
    );
    compare_in_matrix(z, z_bar.as_ref(), "state", opts, |point| {
        step_loss(s, point, data, cotangent)
    })
}

/// Checks the parameter part of [`Splitting::step_vjp`]: `(∂T/∂Θ)ᵀ c`
/// against central differences of `⟨c, T(z)⟩` in every parameter entry. The
/// product is computed without the state part (`z_bar = None`).
///
/// Parameters are perturbed in place through
/// [`param_mut`](optlayer_core::Parameterized::param_mut) and restored, without
/// calling `after_param_update`, so step sizes and normalizations stay fixed
/// as they do inside one step.
pub fn check_step_vjp_params<S: Splitting<Real = f64>>(
    s: &mut S,
    z: MatRef<'_, f64>,
    data: MatRef<'_, f64>,
    cotangent: MatRef<'_, f64>,
    opts: &FdOptions,
) -> GradientCheck {
    let mut grads = zero_grads(s);
    let mut buffer = MemBuffer::new(s.step_vjp_scratch(z.ncols(), Par::Seq));
    s.step_vjp(
        None,
        z,
        data,
        cotangent,
        Some(&mut grads),
        Par::Seq,
        MemStack::new(&mut buffer),
    );
    compare_in_params(s, &grads, opts, |s| step_loss(s, z, data, cotangent))
}

/// Checks [`Prox::prox_vjp`] against central differences of
/// `⟨c, prox_{γg}(v)⟩` in every entry of `v`.
pub fn check_prox_vjp<P: Prox<f64> + ?Sized>(
    prox: &P,
    v: MatRef<'_, f64>,
    gamma: f64,
    data: MatRef<'_, f64>,
    cotangent: MatRef<'_, f64>,
    opts: &FdOptions,
) -> GradientCheck {
    let mut v_bar = Mat::zeros(v.nrows(), v.ncols());
    prox.prox_vjp(v_bar.as_mut(), v, gamma, data, cotangent);
    compare_in_matrix(v, v_bar.as_ref(), "input", opts, |point| {
        let mut out = Mat::zeros(point.nrows(), point.ncols());
        prox.prox(out.as_mut(), point, gamma, data);
        inner(cotangent, out.as_ref())
    })
}

/// Checks [`Prox::accumulate_grad`] against central differences of
/// `⟨c, prox_{γg}(v)⟩` in every parameter entry of the prox.
pub fn check_prox_grads<P: Prox<f64>>(
    prox: &mut P,
    v: MatRef<'_, f64>,
    gamma: f64,
    data: MatRef<'_, f64>,
    cotangent: MatRef<'_, f64>,
    opts: &FdOptions,
) -> GradientCheck {
    let mut grads = zero_grads(prox);
    prox.accumulate_grad(&mut grads, v, gamma, data, cotangent);
    compare_in_params(prox, &grads, opts, |prox| {
        let mut out = Mat::zeros(v.nrows(), v.ncols());
        prox.prox(out.as_mut(), v, gamma, data);
        inner(cotangent, out.as_ref())
    })
}

/// Checks [`Operator::accumulate_grad`] and
/// [`Operator::accumulate_grad_adjoint`] against central differences of
/// `⟨G, K X⟩ + ⟨H, Kᵀ Y⟩` in every parameter entry.
pub fn check_operator_grads<O: Operator<f64>>(
    op: &mut O,
    x: MatRef<'_, f64>,
    g: MatRef<'_, f64>,
    y: MatRef<'_, f64>,
    h: MatRef<'_, f64>,
    opts: &FdOptions,
) -> GradientCheck {
    let mut grads = zero_grads(op);
    op.accumulate_grad(&mut grads, 1.0, g, x, Par::Seq);
    op.accumulate_grad_adjoint(&mut grads, 1.0, h, y, Par::Seq);
    compare_in_params(op, &grads, opts, |op| {
        let mut buffer = MemBuffer::new(op.apply_scratch(x.ncols().max(y.ncols()), Par::Seq));
        let stack = MemStack::new(&mut buffer);
        let mut kx = Mat::zeros(op.nrows(), x.ncols());
        op.apply(kx.as_mut(), Accum::Replace, 1.0, x, Par::Seq, stack);
        let mut kty = Mat::zeros(op.ncols(), y.ncols());
        op.apply_adjoint(kty.as_mut(), Accum::Replace, 1.0, y, Par::Seq, stack);
        inner(g, kx.as_ref()) + inner(h, kty.as_ref())
    })
}

/// Returns the dot-test error `|⟨K x, y⟩ − ⟨x, Kᵀ y⟩| / (‖K x‖ ‖y‖)` for the
/// given `x` (`ncols x b`) and `y` (`nrows x b`).
///
/// The denominator bounds both inner products and, unlike their magnitude,
/// does not vanish when `K x` happens to be nearly orthogonal to `y`.
pub fn dot_test<O: Operator<f64> + ?Sized>(op: &O, x: MatRef<'_, f64>, y: MatRef<'_, f64>) -> f64 {
    let mut buffer = MemBuffer::new(op.apply_scratch(x.ncols(), Par::Seq));
    let stack = MemStack::new(&mut buffer);
    let mut kx = Mat::zeros(op.nrows(), x.ncols());
    op.apply(kx.as_mut(), Accum::Replace, 1.0, x, Par::Seq, stack);
    let mut kty = Mat::zeros(op.ncols(), y.ncols());
    op.apply_adjoint(kty.as_mut(), Accum::Replace, 1.0, y, Par::Seq, stack);
    let lhs = inner(kx.as_ref(), y);
    let rhs = inner(x, kty.as_ref());
    let scale = kx.norm_l2() * y.norm_l2();
    if scale == 0.0 {
        (lhs - rhs).abs()
    } else {
        (lhs - rhs).abs() / scale
    }
}

/// Writes `out = T(z; data)` with freshly allocated scratch; a convenience for tests.
pub fn apply_step<S: Splitting<Real = f64>>(
    s: &S,
    out: MatMut<'_, f64>,
    z: MatRef<'_, f64>,
    data: MatRef<'_, f64>,
) {
    let mut buffer = MemBuffer::new(s.step_scratch(z.ncols(), Par::Seq));
    s.step(out, z, data, Par::Seq, MemStack::new(&mut buffer));
}
