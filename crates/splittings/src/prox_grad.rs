//! Proximal gradient (forward-backward splitting) and FISTA for
//! `min_x f(x; d) + g(x)`.

use optlayer_core::columns::{map3, update1};
use optlayer_core::prox::EntrywisePass;
use std::ops::Range;

use faer::dyn_stack::{MemStack, StackReq};
use faer::linalg::{temp_mat_scratch, temp_mat_zeroed};
use faer::mat::AsMatMut;
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Mat, MatMut, MatRef, Par};
use optlayer_core::validate::{check_computed_step, check_positive};
use optlayer_core::warm_start::set_parts_warm_start_state;
use optlayer_core::{
    Entrywise, Error, ParamInfo, Parameterized, Prox, Result, Scalar, Smooth, Splitting,
    check_unique_param_names, columns, split_grads,
};

/// The acceleration of a [`ProximalGradient`] iteration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Acceleration {
    /// The plain iteration `x⁺ = prox_{γg}(x − γ∇f(x))`.
    #[default]
    None,
    /// FISTA: the same step taken from an extrapolated point, with Beck and
    /// Teboulle's momentum sequence.
    Fista,
}

/// The factor by which the default step stays below `1/L̂`: the default is
/// `γ = 1/(DEFAULT_STEP_MARGIN · L̂)`.
pub const DEFAULT_STEP_MARGIN: f64 = 1.05;

/// Proximal gradient for `min_x f(x; d) + g(x)`, with `f` convex with an
/// `L`-Lipschitz gradient ([`Smooth`]) and `g` closed convex ([`Prox`]).
///
/// # Plain iteration
/// The state is `z = x` and one step is
///
/// ```text
/// x⁺ = prox_{γg}(x − γ ∇f(x; d)),
/// ```
///
/// which converges to a minimizer for `0 < γ < 2/L`. The fixed points are
/// the minimizers for every such `γ`.
///
/// # FISTA
/// With [`Acceleration::Fista`] the state of a sample is `z = (x, x_prev, t)`
/// (rows `0..n`, `n..2n` and `2n`), initialized to `(0, 0, 1)`, and one step is
///
/// ```text
/// t⁺     = (1 + √(1 + 4t²)) / 2
/// y      = x + ((t − 1)/t⁺) (x − x_prev)
/// x⁺     = prox_{γg}(y − γ ∇f(y; d))
/// x_prev⁺ = x
/// ```
///
/// (Beck and Teboulle, "A fast iterative shrinkage-thresholding algorithm
/// for linear inverse problems", SIAM J. Imaging Sciences 2(1), 2009), which
/// needs `0 < γ ≤ 1/L`. The counter `t` grows without bound (`t_k ≥ (k+1)/2`),
/// so [`fixed_point_residual`](Splitting::fixed_point_residual) leaves its row
/// out: with it, `‖t⁺ − t‖ → ½` would never fall below an absolute tolerance,
/// and `t` would dominate the scale `‖z⁺‖` of the relative test.
///
/// FISTA's map changes with `t`: its momentum `(t − 1)/t⁺` tends to 1, so
/// near a solution the Jacobian of a step has spectral radius close to 1.
/// Gradient modes that rely on a contractive step, such as JFB's descent
/// guarantee and the Neumann series of implicit differentiation, therefore
/// suit the plain iteration better.
///
/// # Step size
/// `L̂ = f.lipschitz_estimate()` is treated as a lower bound of `L`, as
/// power-iteration estimates are. The default step is
/// `γ = 1/(1.05 · L̂)` for both variants (`γ = 1` when `L̂ = 0`):
/// - FISTA needs `γ ≤ 1/L`, which the default meets while `L̂ ≥ L/1.05`;
/// - the plain iteration needs only `γ < 2/L`, which the default meets while
///   `L̂ > L/2.1`. It keeps `γ L < 1` rather than approaching `2/L`, so
///   `I − γ∇²f` has eigenvalues in `[0, 1)`: `f + g` decreases at every step
///   and the gradient step does not oscillate.
///
/// The default is recomputed after every parameter update. A step given with
/// [`with_step`](Self::with_step) is kept, and checked against the condition
/// with `L̂` at construction and after every update.
///
/// # Derivatives
/// The vector-Jacobian product uses the prox's generalized Jacobian (see
/// each prox's documentation for its convention at kinks) and the Hessian of
/// `f` at the point where the gradient is taken. The counter row is
/// differentiated as well: `∂t⁺/∂t = 2t/√(1 + 4t²)`, and `x⁺` depends on `t`
/// through the momentum, with a derivative proportional to `x − x_prev`.
///
/// Parameters are those of `f` followed by those of `g`.
pub struct ProximalGradient<T: Scalar> {
    smooth: Box<dyn Smooth<T>>,
    prox: Box<dyn Prox<T>>,
    data_dim: usize,
    acceleration: Acceleration,
    requested_step: Option<T>,
    gamma: T,
    lipschitz: T,
}

impl<T: Scalar> std::fmt::Debug for ProximalGradient<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let params: Vec<String> = (0..self.param_count())
            .map(|i| {
                let info = self.param_info(i);
                format!("{} ({} x {})", info.name, info.nrows, info.ncols)
            })
            .collect();
        f.debug_struct("ProximalGradient")
            .field("primal_dim", &self.smooth.dim())
            .field("data_dim", &self.data_dim)
            .field("acceleration", &self.acceleration)
            .field("gamma", &self.gamma)
            .field("requested_step", &self.requested_step)
            .field("lipschitz_estimate", &self.lipschitz)
            .field("params", &params)
            .finish()
    }
}

impl<T: Scalar> ProximalGradient<T> {
    /// Creates the splitting for `min_x f(x; d) + g(x)` with `f = smooth`,
    /// `g` given by `prox`, data batches of `data_dim` rows and the default
    /// step `γ = 1/(1.05 · L̂)`.
    ///
    /// # Errors
    /// - `f` has dimension 0, or `g` is defined on another dimension than `f`;
    /// - `f` or `g` reads more data rows than `data_dim`;
    /// - two parameters share a name;
    /// - the Lipschitz estimate of `f` is negative or not finite.
    pub fn new(
        smooth: impl Smooth<T> + 'static,
        prox: impl Prox<T> + 'static,
        data_dim: usize,
        acceleration: Acceleration,
    ) -> Result<Self> {
        Self::from_boxed(Box::new(smooth), Box::new(prox), data_dim, acceleration)
    }

    /// Creates the splitting from terms that are already boxed; see [`new`](Self::new).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_boxed(
        smooth: Box<dyn Smooth<T>>,
        prox: Box<dyn Prox<T>>,
        data_dim: usize,
        acceleration: Acceleration,
    ) -> Result<Self> {
        validate_terms(&*smooth, &*prox, data_dim)?;
        let mut splitting = Self {
            smooth,
            prox,
            data_dim,
            acceleration,
            requested_step: None,
            gamma: T::one(),
            lipschitz: T::zero(),
        };
        check_unique_param_names(&splitting)?;
        splitting.refresh_step()?;
        Ok(splitting)
    }

    /// Uses the step `gamma` instead of the default, now and after every
    /// parameter update.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `gamma` is not positive and finite;
    /// [`Error::StepCondition`] when `γ L̂ ≥ 2` (plain) or `γ L̂ > 1` (FISTA).
    /// Because `L̂` may underestimate `L`, a step close to the bound can still
    /// break the true condition.
    pub fn with_step(mut self, gamma: T) -> Result<Self> {
        check_positive("proximal-gradient step gamma", gamma)?;
        self.requested_step = Some(gamma);
        self.refresh_step()?;
        Ok(self)
    }

    /// Returns the step `γ` in use.
    pub fn gamma(&self) -> T {
        self.gamma
    }

    /// Returns the Lipschitz estimate `L̂` the step was chosen or checked with.
    pub fn lipschitz_estimate(&self) -> T {
        self.lipschitz
    }

    /// Returns the acceleration.
    pub fn acceleration(&self) -> Acceleration {
        self.acceleration
    }

    /// Returns the smooth term `f`.
    pub fn smooth(&self) -> &dyn Smooth<T> {
        &*self.smooth
    }

    /// Returns the prox of `g`.
    pub fn prox(&self) -> &dyn Prox<T> {
        &*self.prox
    }

    /// Returns the row of the FISTA counter `t`, or `None` for the plain iteration.
    pub fn counter_row(&self) -> Option<usize> {
        match self.acceleration {
            Acceleration::None => None,
            Acceleration::Fista => Some(2 * self.smooth.dim()),
        }
    }

    /// Reads `L̂` from the smooth term and sets `γ`: the default rule, or the
    /// requested step after checking the convergence condition.
    fn refresh_step(&mut self) -> Result<()> {
        let lipschitz = self.smooth.lipschitz_estimate();
        if !(lipschitz.is_finite() && lipschitz >= T::zero()) {
            return Err(Error::Numerical {
                what: "Lipschitz estimate of the smooth term of proximal gradient".into(),
                reason: format!(
                    "the estimate is {lipschitz}, but it must be finite and not negative; check the smooth term's parameters"
                ),
            });
        }
        let Some(gamma) = self.requested_step else {
            let gamma = if lipschitz > T::zero() {
                (T::lit(DEFAULT_STEP_MARGIN) * lipschitz).recip()
            } else {
                T::one()
            };
            check_computed_step(self.name(), "gamma", gamma, &format!("L ≈ {lipschitz}"))?;
            self.lipschitz = lipschitz;
            self.gamma = gamma;
            return Ok(());
        };
        let product = gamma * lipschitz;
        let (condition, bound, broken) = match self.acceleration {
            Acceleration::None => ("gamma * L < 2", 2.0, product >= T::lit(2.0)),
            Acceleration::Fista => ("gamma * L <= 1", 1.0, product > T::one()),
        };
        if broken {
            return Err(Error::StepCondition {
                algorithm: self.name().into(),
                condition: condition.into(),
                value: product.to_f64_lossless(),
                bound,
                fix: format!(
                    "choose gamma at most {:.6e} (the bound divided by L ≈ {:.6e} and by the default margin {DEFAULT_STEP_MARGIN}), or use the default step",
                    bound / (DEFAULT_STEP_MARGIN * lipschitz.to_f64_lossless()),
                    lipschitz.to_f64_lossless(),
                ),
            });
        }
        self.lipschitz = lipschitz;
        self.gamma = gamma;
        Ok(())
    }

    /// Returns the rows that the fixed-point residual compares: `x`, and
    /// `x_prev` for FISTA, leaving out the counter.
    fn residual_rows(&self) -> Range<usize> {
        match self.acceleration {
            Acceleration::None => 0..self.smooth.dim(),
            Acceleration::Fista => 0..2 * self.smooth.dim(),
        }
    }

    fn temps_scratch(&self, batch: usize, par: Par, temps: usize) -> StackReq {
        let n = self.smooth.dim();
        let mut reqs = vec![temp_mat_scratch::<T>(n, batch); temps];
        reqs.push(self.smooth.scratch(batch, par));
        StackReq::all_of(&reqs)
    }
}

/// Returns `(t⁺, β)` with `t⁺ = (1 + √(1 + 4t²))/2` and the momentum
/// `β = (t − 1)/t⁺`; `hypot` keeps `√(1 + 4t²)` finite for huge `t`.
#[inline]
fn momentum<T: Scalar>(t: T) -> (T, T) {
    let two = T::lit(2.0);
    let t_next = (T::one() + T::one().hypot(two * t)) / two;
    (t_next, (t - T::one()) / t_next)
}

/// Returns `(∂t⁺/∂t, ∂β/∂t)` for [`momentum`].
#[inline]
fn momentum_derivatives<T: Scalar>(t: T) -> (T, T) {
    let two = T::lit(2.0);
    let (t_next, _) = momentum(t);
    let dt_next = two * t / T::one().hypot(two * t);
    let dbeta = (t_next - (t - T::one()) * dt_next) / (t_next * t_next);
    (dt_next, dbeta)
}

fn validate_terms<T: Scalar>(smooth: &dyn Smooth<T>, prox: &dyn Prox<T>, data_dim: usize) -> Result<()> {
    let n = smooth.dim();
    if n == 0 {
        return Err(Error::Empty {
            what: "the variable x of proximal gradient (the smooth term has dimension 0)".into(),
            fix: "pass a smooth term defined on vectors of length at least 1".into(),
        });
    }
    if let Some(dim) = prox.dim()
        && dim != n
    {
        return Err(Error::ShapeMismatch {
            what: "prox of proximal gradient".into(),
            expected: format!("dimension {n} (the dimension of the smooth term)"),
            found: format!("dimension {dim}"),
        });
    }
    let terms = [
        ("smooth term", smooth.data_rows_needed()),
        ("prox", prox.data_rows_needed()),
    ];
    for (what, rows) in terms {
        if rows > data_dim {
            return Err(Error::ShapeMismatch {
                what: format!("{what} of proximal gradient"),
                expected: format!("at most {data_dim} data rows (the data dimension)"),
                found: format!("{rows} data rows read"),
            });
        }
    }
    Ok(())
}

impl<T: Scalar> Parameterized<T> for ProximalGradient<T> {
    fn param_count(&self) -> usize {
        self.smooth.param_count() + self.prox.param_count()
    }

    fn param_info(&self, index: usize) -> ParamInfo {
        let count = self.smooth.param_count();
        if index < count {
            self.smooth.param_info(index)
        } else {
            self.prox.param_info(index - count)
        }
    }

    fn param(&self, index: usize) -> MatRef<'_, T> {
        let count = self.smooth.param_count();
        if index < count {
            self.smooth.param(index)
        } else {
            self.prox.param(index - count)
        }
    }

    fn param_mut(&mut self, index: usize) -> MatMut<'_, T> {
        let count = self.smooth.param_count();
        if index < count {
            self.smooth.param_mut(index)
        } else {
            self.prox.param_mut(index - count)
        }
    }

    fn after_param_update(&mut self) -> Result<()> {
        self.smooth.after_param_update()?;
        self.prox.after_param_update()?;
        self.refresh_step()
    }

    /// Returns the states of `f`, then `g`.
    fn warm_start_state(&self) -> Vec<Mat<T>> {
        let mut state = self.smooth.warm_start_state();
        state.extend(self.prox.warm_start_state());
        state
    }

    /// Restores the states of `f` and `g` and recomputes `γ` from the
    /// restored Lipschitz estimate.
    fn set_warm_start_state(&mut self, state: &[Mat<T>]) -> Result<()> {
        let previous = [self.smooth.warm_start_state(), self.prox.warm_start_state()];
        let what = format!("the terms of {}", self.name());
        let (smooth, prox) = (&mut self.smooth, &mut self.prox);
        set_parts_warm_start_state(&what, &previous, state, |part, value| match part {
            0 => smooth.set_warm_start_state(value),
            _ => prox.set_warm_start_state(value),
        })?;
        if let Err(error) = self.refresh_step() {
            let (smooth, prox) = (&mut self.smooth, &mut self.prox);
            let _ = smooth.set_warm_start_state(&previous[0]);
            let _ = prox.set_warm_start_state(&previous[1]);
            return Err(error);
        }
        Ok(())
    }
}

/// Scratch matrices (`n x batch`) in [`ProximalGradient::step`]: `v`, and `y` for FISTA.
const STEP_TEMPS: usize = 2;
/// Scratch matrices in [`ProximalGradient::step_vjp`]: `y`, `v`, `v̄` and a
/// product with the Hessian.
const VJP_TEMPS: usize = 4;

impl<T: Scalar> ProximalGradient<T> {
    /// Writes the extrapolated point `y` (`x` for the plain iteration) and,
    /// for FISTA, `t⁺` into `t_next` when it is given.
    fn extrapolate(&self, mut y: MatMut<'_, T>, z: MatRef<'_, T>, mut t_next: Option<MatMut<'_, T>>) {
        let n = self.smooth.dim();
        let x = z.subrows(0, n);
        match self.acceleration {
            Acceleration::None => y.copy_from(x),
            Acceleration::Fista => {
                let x_prev = z.subrows(n, n);
                for col in 0..z.ncols() {
                    let (t_plus, beta) = momentum(z[(2 * n, col)]);
                    if let Some(t_next) = t_next.as_mut() {
                        t_next[(0, col)] = t_plus;
                    }
                    for row in 0..n {
                        let current = x[(row, col)];
                        y[(row, col)] = current + beta * (current - x_prev[(row, col)]);
                    }
                }
            }
        }
    }

    /// Writes `x⁺ = prox_{γg}(y − γ∇f(y; d))`, with `v` as scratch. A prox
    /// with an entry-wise form is applied in the same pass as the gradient
    /// step, with the operations of the separate passes in the same order.
    fn forward_backward(
        &self,
        x_next: MatMut<'_, T>,
        mut v: MatMut<'_, T>,
        y: MatRef<'_, T>,
        data: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        let gamma = self.gamma;
        self.smooth.gradient(v.rb_mut(), y, data, par, stack);
        let mut x_next = x_next;
        let fused = self
            .prox
            .entrywise(gamma)
            .is_some_and(|form| fused_prox(form, x_next.rb_mut(), v.rb(), y, data, gamma));
        if !fused {
            update1(v.rb_mut(), y, move |v, y| y - gamma * v);
            self.prox.prox(x_next, v.rb(), gamma, data);
        }
    }

    /// Writes `v = y − γ∇f(y; d)`.
    fn gradient_step(
        &self,
        mut v: MatMut<'_, T>,
        y: MatRef<'_, T>,
        data: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        let gamma = self.gamma;
        self.smooth.gradient(v.rb_mut(), y, data, par, stack);
        update1(v, y, move |v, y| y - gamma * v);
    }
}

impl<T: Scalar> Splitting for ProximalGradient<T> {
    type Real = T;

    fn name(&self) -> &str {
        match self.acceleration {
            Acceleration::None => "proximal gradient",
            Acceleration::Fista => "FISTA",
        }
    }

    fn primal_dim(&self) -> usize {
        self.smooth.dim()
    }

    fn data_dim(&self) -> usize {
        self.data_dim
    }

    fn state_dim(&self) -> usize {
        match self.acceleration {
            Acceleration::None => self.smooth.dim(),
            Acceleration::Fista => 2 * self.smooth.dim() + 1,
        }
    }

    /// Returns `‖z⁺ − z‖₂` and `‖z⁺‖₂` over the rows of `x` and, for FISTA,
    /// `x_prev`, with the scaled norms of [`columns`]. The FISTA counter `t`
    /// is left out because it grows without bound (see the type's documentation).
    fn fixed_point_residual(&self, z_next: MatRef<'_, T>, z: MatRef<'_, T>, col: usize) -> (T, T) {
        let rows = self.residual_rows();
        let z_next = z_next.subrows(rows.start, rows.len());
        let z = z.subrows(rows.start, rows.len());
        columns::col_residual_norms(z_next, z, col)
    }

    /// Returns the distance of `x` from the set of `g` when `g` is an
    /// indicator. Because `x` is a prox output, this is zero up to rounding.
    fn constraint_residual(&self, z: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        self.prox.infeasibility(self.primal(z), data, col)
    }

    fn step_sizes(&self) -> Vec<(String, f64)> {
        vec![("gamma".into(), self.gamma.to_f64_lossless())]
    }

    /// Writes `x = 0` and, for FISTA, `x_prev = 0` and `t = 1`.
    fn init(&self, mut z: MatMut<'_, T>, _data: MatRef<'_, T>) {
        z.fill(T::zero());
        if let Some(row) = self.counter_row() {
            z.row_mut(row).fill(T::one());
        }
    }

    fn step_scratch(&self, batch: usize, par: Par) -> StackReq {
        self.temps_scratch(batch, par, STEP_TEMPS)
    }

    fn step(
        &self,
        z_next: MatMut<'_, T>,
        z: MatRef<'_, T>,
        data: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        let n = self.smooth.dim();
        let batch = z.ncols();
        let (x_next, rest) = z_next.split_at_row_mut(n);

        let (mut v, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let v = v.as_mat_mut();

        match self.acceleration {
            // The plain iteration's y is x itself, read in place.
            Acceleration::None => self.forward_backward(x_next, v, z.subrows(0, n), data, par, stack),
            Acceleration::Fista => {
                let (mut y, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
                let mut y = y.as_mat_mut();
                let (mut x_prev_next, t_next) = rest.split_at_row_mut(n);
                self.extrapolate(y.rb_mut(), z, Some(t_next));
                x_prev_next.copy_from(z.subrows(0, n));
                self.forward_backward(x_next, v, y.rb(), data, par, stack);
            }
        }
    }

    fn step_vjp_scratch(&self, batch: usize, par: Par) -> StackReq {
        self.temps_scratch(batch, par, VJP_TEMPS)
    }

    /// Computes the vector-Jacobian product of one step.
    ///
    /// With `c = (c_x, c_prev, c_t)` and `v̄ = J_proxᵀ c_x`, the cotangent of
    /// `y` is `ȳ = v̄ − γ ∇²f(y) v̄`, and
    ///
    /// ```text
    /// x̄      = (1 + β) ȳ + c_prev
    /// x̄_prev = −β ȳ
    /// t̄      = c_t ∂t⁺/∂t + (∂β/∂t) ⟨ȳ, x − x_prev⟩
    /// ```
    ///
    /// (`x̄ = ȳ` for the plain iteration). The parameter gradient adds the
    /// prox's `accumulate_grad` with `c_x`, and the smooth term's with the
    /// cotangent `−γ v̄` on `∇f(y)`.
    fn step_vjp(
        &self,
        z_bar: Option<MatMut<'_, T>>,
        z: MatRef<'_, T>,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
        grads: Option<&mut [Mat<T>]>,
        par: Par,
        stack: &mut MemStack,
    ) {
        if z_bar.is_none() && grads.is_none() {
            return;
        }
        let n = self.smooth.dim();
        let batch = z.ncols();
        let gamma = self.gamma;
        let x_next_bar = cotangent.subrows(0, n);

        let (mut y, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut y = y.as_mat_mut();
        let (mut v, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut v = v.as_mat_mut();
        let (mut v_bar, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut v_bar = v_bar.as_mat_mut();
        let (mut work, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut work = work.as_mat_mut();

        // Recompute y and v = y − γ∇f(y), then v̄ = J_proxᵀ c_x.
        self.extrapolate(y.rb_mut(), z, None);
        self.gradient_step(v.rb_mut(), y.rb(), data, par, stack);
        self.prox
            .prox_vjp(v_bar.rb_mut(), v.rb(), gamma, data, x_next_bar);

        if let Some(all) = grads {
            let (smooth_grads, rest) = split_grads(all, self.smooth.param_count());
            let (prox_grads, _) = split_grads(rest, self.prox.param_count());
            self.prox
                .accumulate_grad(prox_grads, v.rb(), gamma, data, x_next_bar);
            if !smooth_grads.is_empty() {
                // v = y − γ∇f(y): the cotangent on ∇f(y) is −γ v̄.
                faer::zip!(work.rb_mut(), v_bar.rb()).for_each(|faer::unzip!(w, vb)| *w = -gamma * *vb);
                self.smooth
                    .accumulate_grad(smooth_grads, y.rb(), data, work.rb(), par, stack);
            }
        }

        let Some(mut z_bar) = z_bar else {
            return;
        };
        // ȳ = v̄ − γ∇²f(y) v̄, stored in `work`.
        self.smooth
            .hessian_vjp(work.rb_mut(), y.rb(), data, v_bar.rb(), par, stack);
        faer::zip!(work.rb_mut(), v_bar.rb()).for_each(|faer::unzip!(w, vb)| *w = *vb - gamma * *w);
        let y_bar = work.rb();

        match self.acceleration {
            Acceleration::None => z_bar.copy_from(y_bar),
            Acceleration::Fista => {
                let x = z.subrows(0, n);
                let x_prev = z.subrows(n, n);
                let x_prev_next_bar = cotangent.subrows(n, n);
                for col in 0..batch {
                    let t = z[(2 * n, col)];
                    let (_, beta) = momentum(t);
                    let (dt_next, dbeta) = momentum_derivatives(t);
                    let mut inner = T::zero();
                    for row in 0..n {
                        let yb = y_bar[(row, col)];
                        z_bar[(row, col)] = (T::one() + beta) * yb + x_prev_next_bar[(row, col)];
                        z_bar[(n + row, col)] = -beta * yb;
                        inner += yb * (x[(row, col)] - x_prev[(row, col)]);
                    }
                    z_bar[(2 * n, col)] = cotangent[(2 * n, col)] * dt_next + dbeta * inner;
                }
            }
        }
    }
}

/// Writes `x⁺ = form(y − γ g)` entry by entry for the gradient `g`, in one
/// pass. Returns `false`, having written nothing, for forms it does not know
/// and for data without the rows a form reads.
fn fused_prox<T: Scalar>(
    form: Entrywise<T>,
    x_next: MatMut<'_, T>,
    gradient: MatRef<'_, T>,
    y: MatRef<'_, T>,
    data: MatRef<'_, T>,
    gamma: T,
) -> bool {
    let pass = ForwardBackwardPass {
        x_next,
        gradient,
        y,
        gamma,
    };
    form.run_pass(pass, data, y.nrows(), y)
}

/// The pass of [`fused_prox`].
struct ForwardBackwardPass<'a, T> {
    x_next: MatMut<'a, T>,
    gradient: MatRef<'a, T>,
    y: MatRef<'a, T>,
    gamma: T,
}

impl<T: Scalar> EntrywisePass<T> for ForwardBackwardPass<'_, T> {
    fn run<P: Fn(T, T) -> T + Copy>(self, prox: P, data: MatRef<'_, T>) {
        let gamma = self.gamma;
        map3(self.x_next, self.gradient, self.y, data, move |g, y, d| {
            prox(y - gamma * g, d)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn momentum_follows_beck_teboulle() {
        // t_1 = 1 gives t_2 = (1 + √5)/2 and zero momentum.
        let (t2, beta1) = momentum(1.0_f64);
        assert!((t2 - (1.0 + 5.0_f64.sqrt()) / 2.0).abs() < 1e-15);
        assert_eq!(beta1, 0.0);
        let (t3, beta2) = momentum(t2);
        assert!((t3 - (1.0 + (1.0 + 4.0 * t2 * t2).sqrt()) / 2.0).abs() < 1e-15);
        assert!((beta2 - (t2 - 1.0) / t3).abs() < 1e-15);
    }

    #[test]
    fn momentum_derivatives_match_finite_differences() {
        for t in [0.3_f64, 1.0, 2.7, 40.0] {
            let eps = 1e-6;
            let (plus_t, plus_beta) = momentum(t + eps);
            let (minus_t, minus_beta) = momentum(t - eps);
            let (dt, dbeta) = momentum_derivatives(t);
            assert!((dt - (plus_t - minus_t) / (2.0 * eps)).abs() < 1e-8, "t = {t}");
            assert!(
                (dbeta - (plus_beta - minus_beta) / (2.0 * eps)).abs() < 1e-8,
                "t = {t}"
            );
        }
    }

    #[test]
    fn momentum_stays_finite_for_huge_counter() {
        let (t_next, beta) = momentum(1e30_f32);
        assert!(t_next.is_finite());
        assert!(beta.is_finite());
        assert!(beta <= 1.0);
    }
}
