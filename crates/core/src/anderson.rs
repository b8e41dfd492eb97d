//! Anderson acceleration of the forward iteration, with a safeguard.
//!
//! For one sample, let `z_k` be the points at which the splitting is
//! evaluated, `f_k = T(z_k)` the plain steps and `g_k = f_k − z_k` the
//! fixed-point residuals. With the last `m' ≤ m` differences
//! `Δg_i = g_{i+1} − g_i` and `Δf_i = f_{i+1} − f_i`, the next point is
//!
//! ```text
//! z_{k+1} = f_k − Σ_i γ_i Δf_i,
//! γ       = argmin_γ ‖g_k − Σ_i γ_i Δg_i‖² + λ Σ_i ‖Δg_i‖² γ_i²,
//! ```
//!
//! type-II Anderson mixing with mixing parameter 1 (D. G. Anderson,
//! "Iterative procedures for nonlinear integral equations", J. ACM 12(4),
//! 1965). Without the penalty it is the same as `z_{k+1} = Σ_i α_i f_i` with
//! `α` minimizing `‖Σ_i α_i g_i‖` over `Σ_i α_i = 1`. The penalty weight
//! `‖Δg_i‖²` makes `λ` relative: the coefficients are solved for the
//! normalized differences `Δg_i/‖Δg_i‖`, whose Gram matrix has a unit
//! diagonal, and `λ` is added to that diagonal.
//!
//! The safeguard keeps a candidate only when its residual is at most a
//! factor times the last one ([`AndersonOptions::safeguard`]). Rejecting a candidate and restarting the
//! history follows the idea of Zhang, O'Donoghue and Boyd, "Globally
//! convergent type-I Anderson acceleration for nonsmooth fixed-point
//! iterations", SIAM J. Optim. 30(4), 2020, with a simpler acceptance test.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::prelude::ReborrowMut;
use faer::{MatMut, MatRef, Par};

use crate::columns::{slice_norm2, swap_cols};
use crate::layer::{ForwardOptions, SampleReport, Status, relative};
use crate::validate::check_nonnegative;
use crate::{Error, Result, Scalar, Splitting};

/// The largest accepted [`AndersonOptions::memory`]. The coefficients come
/// from normal equations of this size at most, solved by a Cholesky
/// factorization written for small systems.
pub const MAX_ANDERSON_MEMORY: usize = 32;

/// Settings of Anderson acceleration of the forward pass, enabled with
/// [`ForwardOptions::with_anderson`].
///
/// Each sample keeps its own history of the last `memory` differences of
/// plain steps and residuals and extrapolates from them (see the module
/// documentation for the formula). Samples never mix, so a batch gives the
/// same result as its samples run one by one, on any number of threads.
///
/// The stopping rule and the reported residual are those of the plain
/// iteration, `‖T(z) − z‖ ≤ max(rtol·‖T(z)‖, atol)` as measured by
/// [`Splitting::fixed_point_residual`], and the returned state is always a
/// plain step `T(z)`. So the primal iterate keeps the feasibility that the
/// scheme's last prox gives it, and Jacobian-free backpropagation
/// differentiates at a point the plain iteration could have produced.
///
/// The extrapolation assumes one fixed map. FISTA
/// (`optlayer_splittings::Acceleration::Fista`) changes its map with its
/// momentum counter: on the lasso of tests/anderson.rs the safeguard
/// rejects most candidates and the accelerated pass takes about twice the
/// plain iterations. Accelerate the plain proximal gradient iteration
/// instead.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AndersonOptions {
    /// Number of past differences used, from 1 to [`MAX_ANDERSON_MEMORY`].
    /// The default is 5. The forward pass stores `2·memory + 2` extra
    /// state-sized columns per sample.
    pub memory: usize,
    /// The relative Tikhonov weight `λ ≥ 0` of the coefficient problem,
    /// added to the unit diagonal of the Gram matrix of the normalized
    /// residual differences. The default is `1e-10`. Differences that are
    /// numerically dependent on newer ones (the part orthogonal to them has
    /// squared relative size below `√ε` of the scalar type) are left out of
    /// the fit whatever `λ` is, so `λ = 0` is valid.
    pub regularization: f64,
    /// The acceptance factor `c > 0` of the safeguard. A candidate `z_{k+1}`
    /// extrapolated at `z_k` is accepted when its residual satisfies
    /// `‖T(z_{k+1}) − z_{k+1}‖ ≤ c·‖T(z_k) − z_k‖`, both measured by
    /// [`Splitting::fixed_point_residual`]. Meeting the stopping rule is not
    /// enough, because its relative test passes for any residual once an
    /// extrapolation has made the state large enough. A candidate that fails
    /// is rejected: the next point is the plain step `T(z_k)`, which was
    /// already computed, and the sample's history restarts. A rejection
    /// costs the one evaluation of `T` at the candidate. The default `c = 1`
    /// lets no accepted candidate increase the residual. `f64::INFINITY`
    /// accepts every candidate whose residual is finite, which removes the
    /// safeguard.
    pub safeguard: f64,
}

impl Default for AndersonOptions {
    fn default() -> Self {
        Self {
            memory: 5,
            regularization: 1e-10,
            safeguard: 1.0,
        }
    }
}

impl AndersonOptions {
    /// Creates settings with the given memory and the default regularization and safeguard.
    pub fn new(memory: usize) -> Self {
        Self {
            memory,
            ..Self::default()
        }
    }

    /// Sets the relative Tikhonov weight of the coefficient problem.
    pub fn with_regularization(mut self, regularization: f64) -> Self {
        self.regularization = regularization;
        self
    }

    /// Sets the acceptance factor of the safeguard.
    pub fn with_safeguard(mut self, safeguard: f64) -> Self {
        self.safeguard = safeguard;
        self
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the setting: `memory` outside
    /// `1..=MAX_ANDERSON_MEMORY`, `regularization` negative or not finite,
    /// `safeguard` NaN or not positive.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_ANDERSON_MEMORY).contains(&self.memory) {
            return Err(Error::InvalidParameter {
                name: "anderson memory".into(),
                value: self.memory as f64,
                requirement: format!("must be between 1 and {MAX_ANDERSON_MEMORY}"),
            });
        }
        check_nonnegative("anderson regularization", self.regularization)?;
        if self.safeguard.is_nan() || self.safeguard <= 0.0 {
            return Err(Error::InvalidParameter {
                name: "anderson safeguard".into(),
                value: self.safeguard,
                requirement: "must be greater than zero (1 accepts candidates that do not increase \
                              the residual, infinity accepts every candidate)"
                    .into(),
            });
        }
        Ok(())
    }
}

/// Counts of accelerated steps for one sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AndersonReport {
    /// Extrapolated points that passed the safeguard and became iterates.
    pub accepted: usize,
    /// Extrapolated points that failed the safeguard or had a non-finite
    /// residual. Each was replaced by a plain step and restarted the history.
    pub rejected: usize,
}

/// Minimum number of columns a step runs on, explained at [`iterate_block`].
pub(crate) const MIN_STEP_COLUMNS: usize = 2;

/// Per-sample histories of one block of columns.
///
/// Every vector holds one contiguous block per active column, so compaction
/// swaps blocks. Differences sit in a ring of `memory` slots per column.
struct History<T> {
    dim: usize,
    memory: usize,
    /// `Δg` slots, `dim·memory` entries per column.
    delta_g: Vec<T>,
    /// `Δf` slots, `dim·memory` entries per column.
    delta_f: Vec<T>,
    /// `g = T(z) − z` at the last accepted point, `dim` entries per column.
    g_last: Vec<T>,
    /// `T(z)` at the last accepted point, `dim` entries per column: the
    /// state returned if the sample stops at a rejected candidate or at the
    /// iteration limit.
    f_last: Vec<T>,
    /// Fixed-point residual at the last accepted point.
    residual: Vec<T>,
    /// Number of stored differences.
    len: Vec<usize>,
    /// Ring slot the next difference is written to.
    head: Vec<usize>,
    /// Whether `g_last` and `f_last` hold a point.
    anchored: Vec<bool>,
    /// Whether the column's current point is a candidate awaiting the safeguard.
    pending: Vec<bool>,
}

impl<T: Scalar> History<T> {
    fn new(dim: usize, memory: usize, batch: usize) -> Self {
        Self {
            dim,
            memory,
            delta_g: vec![T::zero(); dim * memory * batch],
            delta_f: vec![T::zero(); dim * memory * batch],
            g_last: vec![T::zero(); dim * batch],
            f_last: vec![T::zero(); dim * batch],
            residual: vec![T::zero(); batch],
            len: vec![0; batch],
            head: vec![0; batch],
            anchored: vec![false; batch],
            pending: vec![false; batch],
        }
    }

    /// Returns the ring slot of the `age`-th newest difference of `col` (0 is the newest).
    fn slot(&self, col: usize, age: usize) -> usize {
        (self.head[col] + self.memory - 1 - age) % self.memory
    }

    fn delta_g(&self, col: usize, slot: usize) -> &[T] {
        let start = (col * self.memory + slot) * self.dim;
        &self.delta_g[start..start + self.dim]
    }

    fn delta_f(&self, col: usize, slot: usize) -> &[T] {
        let start = (col * self.memory + slot) * self.dim;
        &self.delta_f[start..start + self.dim]
    }

    fn g_last(&self, col: usize) -> &[T] {
        &self.g_last[col * self.dim..(col + 1) * self.dim]
    }

    fn f_last(&self, col: usize) -> &[T] {
        &self.f_last[col * self.dim..(col + 1) * self.dim]
    }

    /// Records the accepted point `z` with plain step `f = T(z)` and its
    /// residual: adds the differences to the previous point, if any, and
    /// makes `z` the last accepted point.
    fn push(&mut self, col: usize, z: &[T], f: &[T], residual: T) {
        let dim = self.dim;
        let last = col * dim..(col + 1) * dim;
        if self.anchored[col] {
            let slot = self.head[col];
            let start = (col * self.memory + slot) * dim;
            let delta_g = &mut self.delta_g[start..start + dim];
            let delta_f = &mut self.delta_f[start..start + dim];
            let g_last = &mut self.g_last[last.clone()];
            let f_last = &mut self.f_last[last];
            for i in 0..dim {
                let g = f[i] - z[i];
                delta_g[i] = g - g_last[i];
                delta_f[i] = f[i] - f_last[i];
                g_last[i] = g;
                f_last[i] = f[i];
            }
            self.head[col] = (slot + 1) % self.memory;
            self.len[col] = (self.len[col] + 1).min(self.memory);
        } else {
            let g_last = &mut self.g_last[last.clone()];
            let f_last = &mut self.f_last[last];
            for i in 0..dim {
                g_last[i] = f[i] - z[i];
                f_last[i] = f[i];
            }
            self.anchored[col] = true;
        }
        self.residual[col] = residual;
    }

    /// Discards the candidate of `col`: writes the plain step of the last
    /// accepted point to `next` and clears the differences. The last
    /// accepted point stays, so the next difference is taken from it.
    fn restart(&mut self, col: usize, next: &mut [T]) {
        next.copy_from_slice(self.f_last(col));
        self.len[col] = 0;
        self.head[col] = 0;
        self.pending[col] = false;
    }

    /// Swaps the histories of columns `i` and `j`.
    fn swap(&mut self, i: usize, j: usize) {
        if i == j {
            return;
        }
        let ring = self.dim * self.memory;
        swap_blocks(&mut self.delta_g, ring, i, j);
        swap_blocks(&mut self.delta_f, ring, i, j);
        swap_blocks(&mut self.g_last, self.dim, i, j);
        swap_blocks(&mut self.f_last, self.dim, i, j);
        self.residual.swap(i, j);
        self.len.swap(i, j);
        self.head.swap(i, j);
        self.anchored.swap(i, j);
        self.pending.swap(i, j);
    }
}

/// Swaps blocks `i` and `j` (each `block` entries long) of `values`.
fn swap_blocks<T>(values: &mut [T], block: usize, i: usize, j: usize) {
    let (low, high) = (i.min(j), i.max(j));
    let (head, tail) = values.split_at_mut(high * block);
    head[low * block..(low + 1) * block].swap_with_slice(&mut tail[..block]);
}

/// Returns `Σ (a_i·scale_a)(b_i·scale_b)`. With the inverse norms as scales
/// it is the cosine of the angle between `a` and `b` and cannot overflow.
fn scaled_dot<T: Scalar>(a: &[T], scale_a: T, b: &[T], scale_b: T) -> T {
    a.iter()
        .zip(b)
        .fold(T::zero(), |acc, (&x, &y)| acc + (x * scale_a) * (y * scale_b))
}

/// Workspace and solver of the coefficient problem of one column, sized for
/// the memory once before the loop.
struct CoefficientSolver<T> {
    memory: usize,
    regularization: T,
    /// A difference whose squared part orthogonal to the newer kept ones is
    /// below this fraction of its diagonal entry is left out of the fit.
    drop_tolerance: T,
    /// The regularized Gram matrix, row-major `memory x memory`. Its lower
    /// triangle is overwritten by the Cholesky factor.
    gram: Vec<T>,
    /// The right-hand side, then the solution, then the coefficients `γ`.
    solution: Vec<T>,
    /// `1/‖Δg_p‖`, zero for a difference left out.
    inverse_norms: Vec<T>,
    kept: Vec<bool>,
}

impl<T: Scalar> CoefficientSolver<T> {
    fn new(memory: usize, regularization: f64) -> Self {
        Self {
            memory,
            regularization: T::lit(regularization),
            drop_tolerance: T::epsilon().sqrt(),
            gram: vec![T::zero(); memory * memory],
            solution: vec![T::zero(); memory],
            inverse_norms: vec![T::zero(); memory],
            kept: vec![false; memory],
        }
    }

    /// Solves `min_γ ‖g − Σ_p γ_p Δg_p‖² + λ Σ_p ‖Δg_p‖² γ_p²` for the `len`
    /// differences `delta_g(p)` (newest first) and leaves `γ` in
    /// `self.solution[..len]`. Returns false when no difference could be
    /// used or a coefficient is not finite, and the caller then takes the
    /// plain step.
    fn solve<'a>(&mut self, len: usize, delta_g: impl Fn(usize) -> &'a [T], g: &[T]) -> bool
    where
        T: 'a,
    {
        let m = self.memory;
        let g_norm = slice_norm2(g);
        let g_scale = g_norm.recip();
        if !(g_norm > T::zero() && g_scale.is_finite()) {
            return false;
        }
        for p in 0..len {
            let norm = slice_norm2(delta_g(p));
            let scale = norm.recip();
            self.inverse_norms[p] = if norm > T::zero() && scale.is_finite() {
                scale
            } else {
                T::zero()
            };
        }

        // Normal equations of the normalized problem: the Gram matrix of
        // u_p = Δg_p/‖Δg_p‖ plus λI, and the right-hand side ⟨u_p, g/‖g‖⟩.
        for p in 0..len {
            let scale_p = self.inverse_norms[p];
            let row = &mut self.gram[p * m..(p + 1) * m];
            if scale_p == T::zero() {
                self.solution[p] = T::zero();
                row[..=p].fill(T::zero());
                continue;
            }
            let column_p = delta_g(p);
            self.solution[p] = scaled_dot(column_p, scale_p, g, g_scale);
            for (q, entry) in row.iter_mut().enumerate().take(p + 1) {
                let scale_q = self.inverse_norms[q];
                *entry = if scale_q == T::zero() {
                    T::zero()
                } else {
                    scaled_dot(column_p, scale_p, delta_g(q), scale_q)
                };
            }
            row[p] += self.regularization;
        }

        // Cholesky factorization in place, column by column from the newest
        // difference. A column whose pivot falls below the tolerance is
        // nearly a combination of newer ones: it is dropped, and the sums
        // below skip it.
        let mut any_kept = false;
        for p in 0..len {
            self.kept[p] = false;
            if self.inverse_norms[p] == T::zero() {
                continue;
            }
            let diagonal = self.gram[p * m + p];
            let mut pivot = diagonal;
            for q in 0..p {
                if self.kept[q] {
                    let l = self.gram[p * m + q];
                    pivot -= l * l;
                }
            }
            // NaN pivots are dropped as well.
            if pivot.is_nan() || pivot <= self.drop_tolerance * diagonal {
                continue;
            }
            let l_pp = pivot.sqrt();
            self.gram[p * m + p] = l_pp;
            self.kept[p] = true;
            any_kept = true;
            for r in p + 1..len {
                let mut entry = self.gram[r * m + p];
                for q in 0..p {
                    if self.kept[q] {
                        entry -= self.gram[r * m + q] * self.gram[p * m + q];
                    }
                }
                self.gram[r * m + p] = entry / l_pp;
            }
        }
        if !any_kept {
            return false;
        }

        // Forward substitution L y = b, then back substitution Lᵀ β = y, both
        // in place. Dropped columns get zero.
        for p in 0..len {
            if !self.kept[p] {
                self.solution[p] = T::zero();
                continue;
            }
            let mut value = self.solution[p];
            for q in 0..p {
                if self.kept[q] {
                    value -= self.gram[p * m + q] * self.solution[q];
                }
            }
            self.solution[p] = value / self.gram[p * m + p];
        }
        for p in (0..len).rev() {
            if !self.kept[p] {
                continue;
            }
            let mut value = self.solution[p];
            for r in p + 1..len {
                if self.kept[r] {
                    value -= self.gram[r * m + p] * self.solution[r];
                }
            }
            self.solution[p] = value / self.gram[p * m + p];
        }

        // Back to the unnormalized problem: γ_p = β_p ‖g‖ / ‖Δg_p‖.
        for p in 0..len {
            let gamma = self.solution[p] * g_norm * self.inverse_norms[p];
            if !gamma.is_finite() {
                return false;
            }
            self.solution[p] = gamma;
        }
        true
    }

    /// Writes the extrapolated point `f − Σ_p γ_p Δf_p` of column `col` to
    /// `next`. Returns false, leaving `next` unchanged, when there is no
    /// history, the coefficient problem has no usable difference, or the
    /// point is not finite.
    fn extrapolate(&mut self, history: &History<T>, col: usize, next: &mut [T]) -> bool {
        let len = history.len[col];
        if len == 0 {
            return false;
        }
        let delta_g = |age: usize| history.delta_g(col, history.slot(col, age));
        if !self.solve(len, delta_g, history.g_last(col)) {
            return false;
        }
        let f = history.f_last(col);
        for (i, value) in f.iter().enumerate() {
            let mut point = *value;
            for age in 0..len {
                let gamma = self.solution[age];
                if gamma != T::zero() {
                    point -= gamma * history.delta_f(col, history.slot(col, age))[i];
                }
            }
            if !point.is_finite() {
                return false;
            }
            next[i] = point;
        }
        true
    }
}

/// Iterates one block of columns with Anderson acceleration and writes the
/// final states into `out` (`state_dim x b`). Returns one report per column.
///
/// As in the plain loop, active samples occupy the leading columns. A
/// stopped sample is swapped with the last active one, and its history
/// moves with it. The buffers `z` and `z_next` contain the points and their
/// plain steps. They are not swapped, because the acceleration writes the
/// next point of each column into `z`.
///
/// The step always runs on at least two columns: when one sample is left,
/// a copy of it fills the second column. faer 0.24 multiplies a transposed
/// matrix by a single column with a dot-product kernel whose rounding
/// differs from the one it uses for two or more columns. The accept and
/// reject decisions of the safeguard can amplify that rounding into
/// different iterates. With the copy, each sample's result does not depend
/// on the batch it was in or on the number of threads. The copy doubles the
/// cost of a step while one sample is left, including a batch of one.
pub(crate) fn iterate_block<T: Scalar, Alg: Splitting<Real = T>>(
    splitting: &Alg,
    initial_state: MatRef<'_, T>,
    data: MatRef<'_, T>,
    options: &ForwardOptions,
    anderson: &AndersonOptions,
    par: Par,
    mut out: MatMut<'_, T>,
) -> Vec<SampleReport<T>> {
    let (dim, batch) = (initial_state.nrows(), initial_state.ncols());
    let (mut z, mut z_next, mut data_work) =
        crate::layer::padded_buffers(initial_state, data, MIN_STEP_COLUMNS);
    let width = z.ncols();
    let mut order: Vec<usize> = (0..batch).collect();
    let mut reports = vec![
        SampleReport {
            iterations: 0,
            residual: T::nan(),
            relative_residual: T::nan(),
            status: Status::IterationLimit,
            constraint_residual: None,
            anderson: Some(AndersonReport::default()),
        };
        batch
    ];
    let mut history = History::new(dim, anderson.memory, batch);
    let mut solver = CoefficientSolver::new(anderson.memory, anderson.regularization);
    let mut buffer = MemBuffer::new(splitting.step_scratch(width, par));
    let stack = MemStack::new(&mut buffer);
    let rtol = T::lit(options.rtol);
    let atol = T::lit(options.atol);
    let safeguard = T::lit(anderson.safeguard);
    let mut active = batch;

    for iteration in 1..=options.max_iters {
        if active == 0 {
            break;
        }
        crate::layer::step_padded(
            splitting,
            &mut z_next,
            &mut z,
            &mut data_work,
            active,
            crate::layer::BlockSteps {
                min_columns: MIN_STEP_COLUMNS,
                par,
            },
            stack,
        );

        let mut j = 0;
        while j < active {
            let (residual, scale) = splitting.fixed_point_residual(z_next.as_ref(), z.as_ref(), j);
            let finite = residual.is_finite() && scale.is_finite();
            let converged = finite && residual <= (rtol * scale).max(atol);
            let report = &mut reports[order[j]];
            report.iterations = iteration;

            if history.pending[j] {
                let count = report.anderson.get_or_insert_default();
                // The stopping rule alone does not accept a candidate: its
                // relative test passes for any residual once an
                // extrapolation has made the state large enough.
                if finite && residual <= safeguard * history.residual[j] {
                    count.accepted += 1;
                } else {
                    // The report keeps the residual of the last accepted
                    // point, whose plain step is the state returned if the
                    // sample stops now.
                    count.rejected += 1;
                    history.restart(j, z.col_as_slice_mut(j));
                    j += 1;
                    continue;
                }
            }

            report.residual = residual;
            report.relative_residual = relative(residual, scale);
            let stopped = if !finite {
                Some(Status::NonFinite)
            } else if converged {
                Some(Status::Converged)
            } else {
                None
            };
            if let Some(status) = stopped {
                report.status = status;
                out.rb_mut().col_mut(order[j]).copy_from(z_next.col(j));
                let last = active - 1;
                swap_cols(z.as_mut(), j, last);
                swap_cols(z_next.as_mut(), j, last);
                swap_cols(data_work.as_mut(), j, last);
                history.swap(j, last);
                order.swap(j, last);
                active -= 1;
                continue;
            }

            history.push(j, z.col_as_slice(j), z_next.col_as_slice(j), residual);
            let accelerated = solver.extrapolate(&history, j, z.col_as_slice_mut(j));
            if !accelerated {
                z.col_as_slice_mut(j).copy_from_slice(z_next.col_as_slice(j));
            }
            history.pending[j] = accelerated;
            j += 1;
        }
    }

    // Samples still active return the plain step of their last accepted point.
    for (j, &original) in order.iter().enumerate().take(active) {
        for (i, &value) in history.f_last(j).iter().enumerate() {
            out[(i, original)] = value;
        }
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;
    use faer::linalg::solvers::Solve;

    /// Returns a deterministic `rows x cols` matrix with entries in [-1, 1].
    fn pseudo_random(rows: usize, cols: usize, seed: u64) -> Mat<f64> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Mat::from_fn(rows, cols, |_, _| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
    }

    /// Solves `(AᵀA + λ D²) γ = Aᵀ g` with `D = diag(‖a_p‖)` by faer's LU.
    fn reference_coefficients(a: &Mat<f64>, g: &Mat<f64>, lambda: f64) -> Mat<f64> {
        let mut normal = a.transpose() * a;
        for p in 0..a.ncols() {
            normal[(p, p)] += lambda * a.col(p).squared_norm_l2();
        }
        normal.partial_piv_lu().solve(a.transpose() * g)
    }

    fn solve_with(solver: &mut CoefficientSolver<f64>, a: &Mat<f64>, g: &Mat<f64>) -> bool {
        let columns: Vec<&[f64]> = (0..a.ncols()).map(|p| a.col_as_slice(p)).collect();
        solver.solve(a.ncols(), |p| columns[p], g.col_as_slice(0))
    }

    #[test]
    fn coefficients_match_least_squares() {
        let a = pseudo_random(12, 4, 1);
        let g = pseudo_random(12, 1, 2);
        let mut solver = CoefficientSolver::<f64>::new(6, 0.0);
        assert!(solve_with(&mut solver, &a, &g));
        let expected = reference_coefficients(&a, &g, 0.0);
        for p in 0..4 {
            assert!(
                (solver.solution[p] - expected[(p, 0)]).abs() < 1e-10 * (1.0 + expected[(p, 0)].abs()),
                "γ_{p} = {}, expected {}",
                solver.solution[p],
                expected[(p, 0)]
            );
        }
    }

    #[test]
    fn regularization_is_relative_to_column_norms() {
        // Columns of very different sizes: the penalty λ‖a_p‖²γ_p² acts
        // on each in proportion.
        let mut a = pseudo_random(10, 3, 3);
        for i in 0..10 {
            a[(i, 1)] *= 1e6;
            a[(i, 2)] *= 1e-4;
        }
        let g = pseudo_random(10, 1, 4);
        let lambda = 0.3;
        let mut solver = CoefficientSolver::<f64>::new(3, lambda);
        assert!(solve_with(&mut solver, &a, &g));
        let expected = reference_coefficients(&a, &g, lambda);
        for p in 0..3 {
            let relative_error = (solver.solution[p] - expected[(p, 0)]).abs() / expected[(p, 0)].abs();
            assert!(relative_error < 1e-10, "γ_{p}: relative error {relative_error:e}");
        }
    }

    #[test]
    fn dependent_difference_is_dropped() {
        // The oldest column repeats the newest one: it is left out, and the
        // fit on the other two is the least-squares solution.
        let independent = pseudo_random(8, 2, 5);
        let source = [0, 1, 0];
        let a = Mat::from_fn(8, 3, |i, p| independent[(i, source[p])]);
        assert_eq!(a.col(2), a.col(0));
        let g = pseudo_random(8, 1, 6);
        let mut solver = CoefficientSolver::<f64>::new(3, 0.0);
        assert!(solve_with(&mut solver, &a, &g));
        assert_eq!(solver.kept[..3], [true, true, false]);
        assert_eq!(solver.solution[2], 0.0);
        let expected = reference_coefficients(&independent, &g, 0.0);
        for p in 0..2 {
            assert!((solver.solution[p] - expected[(p, 0)]).abs() < 1e-10);
        }
    }

    #[test]
    fn zero_differences_give_no_coefficients() {
        let a = Mat::<f64>::zeros(5, 2);
        let g = pseudo_random(5, 1, 7);
        let mut solver = CoefficientSolver::<f64>::new(2, 0.0);
        assert!(!solve_with(&mut solver, &a, &g));
        let zero_g = Mat::<f64>::zeros(5, 1);
        let b = pseudo_random(5, 2, 8);
        assert!(!solve_with(&mut solver, &b, &zero_g));
    }

    #[test]
    fn huge_entries_keep_coefficients_finite() {
        let mut a = pseudo_random(6, 2, 9);
        let mut g = pseudo_random(6, 1, 10);
        let expected = reference_coefficients(&a, &g, 0.0);
        for i in 0..6 {
            a[(i, 0)] *= 1e200;
            a[(i, 1)] *= 1e200;
            g[(i, 0)] *= 1e200;
        }
        let mut solver = CoefficientSolver::<f64>::new(2, 0.0);
        assert!(solve_with(&mut solver, &a, &g));
        for p in 0..2 {
            assert!((solver.solution[p] - expected[(p, 0)]).abs() < 1e-10 * (1.0 + expected[(p, 0)].abs()));
        }
    }

    #[test]
    fn history_ring_keeps_newest_differences() {
        // Points z_k = k with plain steps f_k = k + 1 + k² in one dimension
        // and memory 2: after four points the ring contains the two newest
        // differences, newest first.
        let mut history = History::<f64>::new(1, 2, 1);
        for k in 0..4 {
            let z = [k as f64];
            let f = [(k + 1 + k * k) as f64];
            history.push(0, &z, &f, 1.0);
        }
        assert_eq!(history.len[0], 2);
        // g_k = 1 + k², so Δg between k = 2 and 3 is 5 and between 1 and 2 is 3.
        assert_eq!(history.delta_g(0, history.slot(0, 0)), &[5.0]);
        assert_eq!(history.delta_g(0, history.slot(0, 1)), &[3.0]);
        // f_k = k + 1 + k²: Δf is 6 and 4.
        assert_eq!(history.delta_f(0, history.slot(0, 0)), &[6.0]);
        assert_eq!(history.delta_f(0, history.slot(0, 1)), &[4.0]);
        assert_eq!(history.f_last(0), &[13.0]);
    }

    #[test]
    fn history_swap_moves_every_part() {
        let mut history = History::<f64>::new(2, 3, 3);
        history.push(0, &[0.0, 0.0], &[1.0, 1.0], 1.0);
        history.push(0, &[1.0, 1.0], &[3.0, 2.0], 0.5);
        history.push(2, &[5.0, 5.0], &[6.0, 6.0], 2.0);
        history.pending[0] = true;
        history.swap(0, 2);
        assert_eq!(history.len[2], 1);
        assert_eq!(history.len[0], 0);
        assert!(history.pending[2]);
        assert!(!history.pending[0]);
        assert_eq!(history.residual[2], 0.5);
        assert_eq!(history.residual[0], 2.0);
        assert_eq!(history.f_last(2), &[3.0, 2.0]);
        assert_eq!(history.f_last(0), &[6.0, 6.0]);
        assert_eq!(history.delta_g(2, history.slot(2, 0)), &[1.0, 0.0]);
    }

    #[test]
    fn restart_returns_last_plain_step() {
        let mut history = History::<f64>::new(2, 2, 1);
        history.push(0, &[0.0, 0.0], &[1.0, 2.0], 1.0);
        history.push(0, &[1.0, 2.0], &[1.5, 2.5], 0.7);
        history.pending[0] = true;
        let mut next = [9.0, 9.0];
        history.restart(0, &mut next);
        assert_eq!(next, [1.5, 2.5]);
        assert_eq!(history.len[0], 0);
        assert!(!history.pending[0]);
        assert!(history.anchored[0]);
    }

    #[test]
    fn invalid_options_rejected() {
        assert!(AndersonOptions::default().validate().is_ok());
        assert!(AndersonOptions::new(MAX_ANDERSON_MEMORY).validate().is_ok());
        assert!(
            AndersonOptions::default()
                .with_safeguard(f64::INFINITY)
                .with_regularization(0.0)
                .validate()
                .is_ok()
        );
        let invalid = [
            ("anderson memory", AndersonOptions::new(0)),
            ("anderson memory", AndersonOptions::new(MAX_ANDERSON_MEMORY + 1)),
            (
                "anderson regularization",
                AndersonOptions::default().with_regularization(-1e-3),
            ),
            (
                "anderson regularization",
                AndersonOptions::default().with_regularization(f64::NAN),
            ),
            (
                "anderson regularization",
                AndersonOptions::default().with_regularization(f64::INFINITY),
            ),
            (
                "anderson safeguard",
                AndersonOptions::default().with_safeguard(0.0),
            ),
            (
                "anderson safeguard",
                AndersonOptions::default().with_safeguard(-1.0),
            ),
            (
                "anderson safeguard",
                AndersonOptions::default().with_safeguard(f64::NAN),
            ),
        ];
        for (expected, options) in invalid {
            match options.validate() {
                Err(Error::InvalidParameter { name, .. }) => assert_eq!(name, expected, "{options:?}"),
                other => panic!("{options:?} gave {other:?}"),
            }
            let forward = ForwardOptions::default().with_anderson(options);
            assert!(forward.validate().is_err(), "{options:?}");
        }
    }
}
