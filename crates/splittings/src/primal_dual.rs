//! The primal–dual splitting of Condat and Vũ for `min_x f(x) + g(x) + h(Kx)`.

use faer::dyn_stack::{MemStack, StackReq};
use faer::linalg::{temp_mat_scratch, temp_mat_zeroed};
use faer::mat::AsMatMut;
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use optlayer_core::columns::{map1, map2, update1};
use optlayer_core::validate::{check_computed_step, step_in};
use optlayer_core::warm_start::{
    check_warm_start_count, decode_estimate, decode_warm_start_vector, encode_estimate,
    encode_warm_start_vector, set_parts_warm_start_state,
};
use optlayer_core::{
    Error, Operator, ParamInfo, Parameterized, Prox, Result, Scalar, Smooth, Splitting,
    check_unique_param_names, power_iteration, power_iteration_from, split_grads,
};

/// The safety factor of [`PrimalDualSteps::default`] and
/// [`PrimalDualSteps::fixed`]: the estimated `τ (σ ‖K‖₂² + L/2)` stays below
/// it instead of below 1, because `‖K‖₂` and `L` are estimated from below.
pub const DEFAULT_STEP_SAFETY: f64 = 0.99;

/// Power-iteration settings for `‖K‖₂`: a cold start runs up to this many
/// steps, warm starts usually stop after a few.
const NORM_MAX_ITERS: usize = 2000;
const NORM_REL_TOL: f64 = 1e-9;

/// The step sizes of [`CondatVu`] and the rule that keeps them within the
/// convergence condition `τ (σ ‖K‖₂² + L/2) < 1`.
///
/// `‖K‖₂` is estimated by power iteration and `L` comes from
/// [`Smooth::lipschitz_estimate`]. Both estimates can be lower bounds of the
/// true values, so each rule compares with a `safety` factor below 1 instead
/// of 1 itself. The estimates are refreshed at construction and after every
/// parameter update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PrimalDualSteps {
    /// `σ = 1/‖K‖₂` and `τ = safety / (σ ‖K‖₂² + L/2)`, recomputed after
    /// every parameter update, so that `τ (σ ‖K‖₂² + L/2) = safety`. A zero
    /// `K` gives `σ = 1`, and a zero `K` without a smooth term gives `τ = 1`.
    Balanced {
        /// The bound, in (0, 1).
        safety: f64,
    },
    /// `τ` and `σ` as given, rejected with [`Error::StepCondition`] when
    /// `τ (σ ‖K‖₂² + L/2) ≥ safety`, at construction or after a parameter
    /// update.
    Fixed {
        /// Primal step `τ > 0`.
        tau: f64,
        /// Dual step `σ > 0`.
        sigma: f64,
        /// The bound, in (0, 1].
        safety: f64,
    },
}

impl Default for PrimalDualSteps {
    /// Balanced steps with the margin [`DEFAULT_STEP_SAFETY`].
    fn default() -> Self {
        PrimalDualSteps::Balanced {
            safety: DEFAULT_STEP_SAFETY,
        }
    }
}

impl PrimalDualSteps {
    /// Returns fixed steps `τ`, `σ` with the margin [`DEFAULT_STEP_SAFETY`].
    pub fn fixed(tau: f64, sigma: f64) -> Self {
        PrimalDualSteps::Fixed {
            tau,
            sigma,
            safety: DEFAULT_STEP_SAFETY,
        }
    }

    fn safety(&self) -> f64 {
        match *self {
            PrimalDualSteps::Balanced { safety } | PrimalDualSteps::Fixed { safety, .. } => safety,
        }
    }
}

/// The primal–dual splitting of Condat and Vũ for
///
/// ```text
/// min_x f(x; d) + g(x) + h(K x; d)
/// ```
///
/// with `f` convex with an `L`-Lipschitz gradient (optional), `g` and `h`
/// closed convex functions given by their proxes, and `K` a linear operator.
/// The state of one sample is `z = (x, y)`, with the primal iterate `x`
/// (`K.ncols()` rows, returned by the layer) followed by the dual variable
/// `y` (`K.nrows()` rows). One step is
///
/// ```text
/// x⁺ = prox_{τg}(x − τ (∇f(x) + Kᵀ y))
/// y⁺ = prox_{σh*}(y + σ K (2x⁺ − x)),   prox_{σh*}(u) = u − σ prox_{h/σ}(u/σ)
/// ```
///
/// where the prox of the conjugate `h*` comes from the prox of `h` by
/// Moreau's identity. A fixed point satisfies `−∇f(x) − Kᵀy ∈ ∂g(x)` and
/// `Kx ∈ ∂h*(y)`, the optimality conditions of the model, whatever the
/// steps. The iteration converges when `1/τ − σ ‖K‖₂² > L/2` (Condat, with
/// relaxation parameter 1), that is `τ (σ ‖K‖₂² + L/2) < 1`.
/// [`PrimalDualSteps`] keeps the estimated left-hand side below a safety
/// factor.
///
/// Without `f` the scheme is the method of Chambolle and Pock, with the
/// condition `τ σ ‖K‖₂² < 1`.
///
/// The vector-Jacobian product is exact where the proxes are
/// differentiable. At their kinks it uses the element of the generalized
/// Jacobian each prox documents, through that prox's `prox_vjp`.
///
/// Parameters are listed in the order `K`, `f`, `g`, `h`; their names must be
/// distinct.
///
/// References: L. Condat, "A primal–dual splitting method for convex
/// optimization involving Lipschitzian, proximable and linear composite
/// terms", J. Optim. Theory Appl. 158, 2013. B. C. Vũ, "A splitting algorithm
/// for dual monotone inclusions involving cocoercive operators", Adv. Comput.
/// Math. 38, 2013. A. Chambolle and T. Pock, "A first-order primal-dual
/// algorithm for convex problems with applications to imaging", J. Math.
/// Imaging Vision 40, 2011.
pub struct CondatVu<T: Scalar> {
    primal_dim: usize,
    dual_dim: usize,
    data_dim: usize,
    operator: Box<dyn Operator<T>>,
    smooth: Option<Box<dyn Smooth<T>>>,
    g: Box<dyn Prox<T>>,
    h: Box<dyn Prox<T>>,
    rule: PrimalDualSteps,
    tau: T,
    sigma: T,
    norm_estimate: T,
    lipschitz_estimate: T,
    power_vector: Option<Mat<T>>,
}

impl<T: Scalar> std::fmt::Debug for CondatVu<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let params: Vec<String> = (0..self.param_count())
            .map(|i| {
                let info = self.param_info(i);
                format!("{} ({} x {})", info.name, info.nrows, info.ncols)
            })
            .collect();
        f.debug_struct("CondatVu")
            .field("primal_dim", &self.primal_dim)
            .field("dual_dim", &self.dual_dim)
            .field("data_dim", &self.data_dim)
            .field("smooth", &self.smooth.is_some())
            .field("params", &params)
            .field("rule", &self.rule)
            .field("tau", &self.tau)
            .field("sigma", &self.sigma)
            .field("norm_estimate", &self.norm_estimate)
            .field("lipschitz_estimate", &self.lipschitz_estimate)
            .finish()
    }
}

/// The parts of a [`CondatVu`] model, in parameter order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Operator,
    Smooth,
    G,
    H,
}

const PARTS: [Part; 4] = [Part::Operator, Part::Smooth, Part::G, Part::H];

impl<T: Scalar> CondatVu<T> {
    /// Creates the splitting for `min_x g(x) + h(K x; d)` (Chambolle–Pock),
    /// with `x ∈ R^K.ncols()` and data batches of `data_dim` rows.
    ///
    /// # Errors
    /// As [`with_smooth`](Self::with_smooth).
    pub fn new(
        data_dim: usize,
        operator: Box<dyn Operator<T>>,
        g: Box<dyn Prox<T>>,
        h: Box<dyn Prox<T>>,
        steps: PrimalDualSteps,
    ) -> Result<Self> {
        Self::build(data_dim, operator, None, g, h, steps)
    }

    /// Creates the splitting for `min_x f(x; d) + g(x) + h(K x; d)`.
    ///
    /// # Errors
    /// - `K` has no columns;
    /// - `f` or `g` is defined on another dimension than `K.ncols()`, or `h`
    ///   on another than `K.nrows()`;
    /// - a term reads more data rows than `data_dim`;
    /// - two parameters share a name ([`Error::DuplicateParameter`]);
    /// - a step is not finite and positive, or the safety factor is not in
    ///   (0, 1] for fixed steps or (0, 1) for balanced steps
    ///   ([`Error::InvalidParameter`]);
    /// - fixed steps break the convergence condition
    ///   ([`Error::StepCondition`]);
    /// - the estimate of `‖K‖₂` or `L` is not finite ([`Error::Numerical`]).
    pub fn with_smooth(
        data_dim: usize,
        smooth: Box<dyn Smooth<T>>,
        operator: Box<dyn Operator<T>>,
        g: Box<dyn Prox<T>>,
        h: Box<dyn Prox<T>>,
        steps: PrimalDualSteps,
    ) -> Result<Self> {
        Self::build(data_dim, operator, Some(smooth), g, h, steps)
    }

    fn build(
        data_dim: usize,
        operator: Box<dyn Operator<T>>,
        smooth: Option<Box<dyn Smooth<T>>>,
        g: Box<dyn Prox<T>>,
        h: Box<dyn Prox<T>>,
        steps: PrimalDualSteps,
    ) -> Result<Self> {
        // Fixed steps are rejected at the safety bound, so 1 is valid there.
        // Balanced steps meet the condition with equality at the safety, so
        // the safety must stay strictly below 1.
        let safety = steps.safety();
        let (upper_ok, requirement) = match steps {
            PrimalDualSteps::Fixed { .. } => (safety <= 1.0, "must be in (0, 1]"),
            PrimalDualSteps::Balanced { .. } => (safety < 1.0, "must be in (0, 1)"),
        };
        if !(safety > 0.0 && upper_ok) {
            return Err(Error::InvalidParameter {
                name: "step safety".into(),
                value: safety,
                requirement: requirement.into(),
            });
        }
        if let PrimalDualSteps::Fixed { tau, sigma, .. } = steps {
            step_in::<T>("tau", tau)?;
            step_in::<T>("sigma", sigma)?;
        }
        let mut splitting = Self {
            primal_dim: operator.ncols(),
            dual_dim: operator.nrows(),
            data_dim,
            operator,
            smooth,
            g,
            h,
            rule: steps,
            tau: T::zero(),
            sigma: T::zero(),
            norm_estimate: T::zero(),
            lipschitz_estimate: T::zero(),
            power_vector: None,
        };
        splitting.validate()?;
        splitting.refresh_steps()?;
        Ok(splitting)
    }

    /// Checks the dimensions, data rows and parameter names of the terms.
    fn validate(&self) -> Result<()> {
        let (n, m) = (self.primal_dim, self.dual_dim);
        if n == 0 {
            return Err(Error::Empty {
                what: "input dimension of the operator K".into(),
                fix: "pass an operator with at least one column, the dimension of x".into(),
            });
        }
        let checks = [
            (
                "smooth term f",
                self.smooth.as_ref().map(|f| f.dim()),
                n,
                "the columns of K",
            ),
            ("prox of g", self.g.dim(), n, "the columns of K"),
            ("prox of h", self.h.dim(), m, "the rows of K"),
        ];
        for (what, dim, expected, source) in checks {
            if let Some(dim) = dim
                && dim != expected
            {
                return Err(Error::ShapeMismatch {
                    what: what.into(),
                    expected: format!("dimension {expected} ({source})"),
                    found: format!("dimension {dim}"),
                });
            }
        }
        let rows_read = [
            (
                "smooth term f",
                self.smooth.as_ref().map_or(0, |f| f.data_rows_needed()),
            ),
            ("prox of g", self.g.data_rows_needed()),
            ("prox of h", self.h.data_rows_needed()),
        ];
        for (what, rows) in rows_read {
            if rows > self.data_dim {
                return Err(Error::ShapeMismatch {
                    what: what.into(),
                    expected: format!("at most {} data rows (the data dimension)", self.data_dim),
                    found: format!("{rows} data rows read"),
                });
            }
        }
        check_unique_param_names(self)
    }

    /// Returns the linear operator `K`.
    pub fn operator(&self) -> &dyn Operator<T> {
        &*self.operator
    }

    /// Returns the smooth term `f`, if the model has one.
    pub fn smooth(&self) -> Option<&dyn Smooth<T>> {
        self.smooth.as_deref()
    }

    /// Returns the prox of `g`.
    pub fn g(&self) -> &dyn Prox<T> {
        &*self.g
    }

    /// Returns the prox of `h`.
    pub fn h(&self) -> &dyn Prox<T> {
        &*self.h
    }

    /// Returns the rows of the state that hold the dual variable `y`.
    pub fn dual_rows(&self) -> std::ops::Range<usize> {
        self.primal_dim..self.primal_dim + self.dual_dim
    }

    /// Returns the primal step `τ` in use.
    pub fn tau(&self) -> T {
        self.tau
    }

    /// Returns the dual step `σ` in use.
    pub fn sigma(&self) -> T {
        self.sigma
    }

    /// Returns the last power-iteration estimate of `‖K‖₂`.
    pub fn norm_estimate(&self) -> T {
        self.norm_estimate
    }

    /// Returns the last estimate of the Lipschitz constant `L` of `∇f`, zero
    /// without `f`.
    pub fn lipschitz_estimate(&self) -> T {
        self.lipschitz_estimate
    }

    /// Returns `τ (σ ‖K‖₂² + L/2)` for the steps in use, with the estimated
    /// `‖K‖₂` and `L`.
    pub fn step_condition(&self) -> T {
        let norm_sq = self.norm_estimate * self.norm_estimate;
        self.tau * (self.sigma * norm_sq + self.lipschitz_estimate * T::lit(0.5))
    }

    /// Re-estimates `‖K‖₂` and `L`, then sets or checks the steps by the rule.
    fn refresh_steps(&mut self) -> Result<()> {
        let (norm, vector) = match self.power_vector.take() {
            Some(start) => power_iteration_from(&*self.operator, start, NORM_MAX_ITERS, NORM_REL_TOL),
            None => power_iteration(&*self.operator, NORM_MAX_ITERS, NORM_REL_TOL, 0),
        };
        if !norm.is_finite() {
            return Err(Error::Numerical {
                what: "estimate of ||K||_2 for the Condat-Vu splitting".into(),
                reason: format!("power iteration returned {norm}; check the operator for non-finite entries"),
            });
        }
        self.power_vector = Some(vector);
        self.norm_estimate = norm;
        let lipschitz = self.read_lipschitz()?;
        self.lipschitz_estimate = lipschitz;
        let (tau, sigma) = self.steps_for(norm, lipschitz)?;
        self.tau = tau;
        self.sigma = sigma;
        Ok(())
    }

    /// Returns the smooth term's Lipschitz estimate, zero without one.
    fn read_lipschitz(&self) -> Result<T> {
        let lipschitz = self.smooth.as_ref().map_or(T::zero(), |f| f.lipschitz_estimate());
        if !(lipschitz.is_finite() && lipschitz >= T::zero()) {
            return Err(Error::Numerical {
                what: "Lipschitz estimate of the smooth term for the Condat-Vu splitting".into(),
                reason: format!(
                    "the smooth term returned {lipschitz}; it must be finite and not negative, so check its parameters"
                ),
            });
        }
        Ok(lipschitz)
    }

    /// Returns `(τ, σ)` set or checked by the rule for the estimates
    /// `norm ≈ ‖K‖₂` and `lipschitz ≈ L`.
    fn steps_for(&self, norm: T, lipschitz: T) -> Result<(T, T)> {
        let norm_sq = norm * norm;
        let half_l = lipschitz * T::lit(0.5);
        match self.rule {
            PrimalDualSteps::Balanced { safety } => {
                let sigma = if norm > T::zero() { norm.recip() } else { T::one() };
                let denominator = sigma * norm_sq + half_l;
                let tau = if denominator > T::zero() {
                    T::lit(safety) / denominator
                } else {
                    T::one()
                };
                let source = format!("||K||_2 ≈ {norm} and L ≈ {lipschitz}");
                check_computed_step(self.name(), "sigma", sigma, &source)?;
                check_computed_step(self.name(), "tau", tau, &source)?;
                Ok((tau, sigma))
            }
            PrimalDualSteps::Fixed {
                tau: tau_f64,
                sigma: sigma_f64,
                safety,
            } => {
                let (tau, sigma) = (T::lit(tau_f64), T::lit(sigma_f64));
                // The same expression as `step_condition`, with the new estimates.
                let condition = tau * (sigma * norm_sq + lipschitz * T::lit(0.5));
                if condition.is_nan() || condition >= T::lit(safety) {
                    let tau_max = safety / (sigma * norm_sq + half_l).to_f64_lossless();
                    return Err(Error::StepCondition {
                        algorithm: self.name().into(),
                        condition: "tau * (sigma * ||K||_2^2 + L/2) < safety".into(),
                        value: condition.to_f64_lossless(),
                        bound: safety,
                        fix: format!(
                            "choose tau below {tau_max:.6e} for sigma = {sigma_f64}, ||K||_2 ≈ {norm:.6} and L ≈ {lipschitz:.6}, \
                             or use PrimalDualSteps::Balanced"
                        ),
                    });
                }
                Ok((tau, sigma))
            }
        }
    }

    /// Returns the states of `K`, `f` (empty without `f`), `g` and `h`.
    fn part_warm_start_states(&self) -> [Vec<Mat<T>>; 4] {
        [
            self.operator.warm_start_state(),
            self.smooth
                .as_ref()
                .map_or_else(Vec::new, |f| f.warm_start_state()),
            self.g.warm_start_state(),
            self.h.warm_start_state(),
        ]
    }

    /// Sets the states of `K`, `f`, `g` and `h` from `state`, their
    /// concatenation; `previous` is their current states.
    fn set_part_warm_start_states(&mut self, previous: &[Vec<Mat<T>>], state: &[Mat<T>]) -> Result<()> {
        let (operator, smooth, g, h) = (&mut self.operator, &mut self.smooth, &mut self.g, &mut self.h);
        set_parts_warm_start_state(
            "the terms of the Condat-Vu splitting",
            previous,
            state,
            |part, value| match part {
                0 => operator.set_warm_start_state(value),
                1 => smooth.as_mut().map_or(Ok(()), |f| f.set_warm_start_state(value)),
                2 => g.set_warm_start_state(value),
                _ => h.set_warm_start_state(value),
            },
        )
    }

    fn part_param_count(&self, part: Part) -> usize {
        match part {
            Part::Operator => self.operator.param_count(),
            Part::Smooth => self.smooth.as_ref().map_or(0, |f| f.param_count()),
            Part::G => self.g.param_count(),
            Part::H => self.h.param_count(),
        }
    }

    /// Returns the part that owns parameter `index` and the index within it.
    fn locate_param(&self, index: usize) -> (Part, usize) {
        let mut start = 0;
        for part in PARTS {
            let count = self.part_param_count(part);
            if index < start + count {
                return (part, index - start);
            }
            start += count;
        }
        panic!("parameter index {index} out of range: the Condat-Vu splitting has {start} parameters")
    }

    /// Returns the smooth term, which exists whenever one of its parameters is addressed.
    fn smooth_part(&self) -> &dyn Smooth<T> {
        self.smooth
            .as_deref()
            .expect("a parameter of the smooth term implies the term exists")
    }

    /// Writes `v = x − τ (∇f(x) + Kᵀ y)`.
    fn primal_argument(
        &self,
        mut v: MatMut<'_, T>,
        x: MatRef<'_, T>,
        y: MatRef<'_, T>,
        data: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        let one = T::one();
        match &self.smooth {
            Some(f) => {
                f.gradient(v.rb_mut(), x, data, par, stack);
                self.operator
                    .apply_adjoint(v.rb_mut(), Accum::Add, one, y, par, stack);
            }
            None => self
                .operator
                .apply_adjoint(v.rb_mut(), Accum::Replace, one, y, par, stack),
        }
        let tau = self.tau;
        update1(v, x, move |v, x| x - tau * v);
    }

    /// Returns the scratch of the operator and the smooth term, used one after another.
    fn parts_scratch(&self, batch: usize, par: Par) -> StackReq {
        let smooth = self
            .smooth
            .as_ref()
            .map_or(StackReq::EMPTY, |f| f.scratch(batch, par));
        StackReq::any_of(&[smooth, self.operator.apply_scratch(batch, par)])
    }

    fn scratch(&self, batch: usize, par: Par, primal_temps: usize, dual_temps: usize) -> StackReq {
        let mut reqs = vec![temp_mat_scratch::<T>(self.primal_dim, batch); primal_temps];
        reqs.extend(std::iter::repeat_n(
            temp_mat_scratch::<T>(self.dual_dim, batch),
            dual_temps,
        ));
        reqs.push(self.parts_scratch(batch, par));
        StackReq::all_of(&reqs)
    }
}

impl<T: Scalar> Parameterized<T> for CondatVu<T> {
    fn param_count(&self) -> usize {
        PARTS.iter().map(|&part| self.part_param_count(part)).sum()
    }

    fn param_info(&self, index: usize) -> ParamInfo {
        match self.locate_param(index) {
            (Part::Operator, i) => self.operator.param_info(i),
            (Part::Smooth, i) => self.smooth_part().param_info(i),
            (Part::G, i) => self.g.param_info(i),
            (Part::H, i) => self.h.param_info(i),
        }
    }

    fn param(&self, index: usize) -> MatRef<'_, T> {
        match self.locate_param(index) {
            (Part::Operator, i) => self.operator.param(i),
            (Part::Smooth, i) => self.smooth_part().param(i),
            (Part::G, i) => self.g.param(i),
            (Part::H, i) => self.h.param(i),
        }
    }

    fn param_mut(&mut self, index: usize) -> MatMut<'_, T> {
        match self.locate_param(index) {
            (Part::Operator, i) => self.operator.param_mut(i),
            (Part::Smooth, i) => self
                .smooth
                .as_deref_mut()
                .expect("a parameter of the smooth term implies the term exists")
                .param_mut(i),
            (Part::G, i) => self.g.param_mut(i),
            (Part::H, i) => self.h.param_mut(i),
        }
    }

    /// Calls every part's `after_param_update`, then re-estimates `‖K‖₂`
    /// (power iteration warm-started from the previous singular vector) and
    /// `L`, and sets or checks the steps by the [`PrimalDualSteps`] rule.
    fn after_param_update(&mut self) -> Result<()> {
        self.operator.after_param_update()?;
        if let Some(f) = self.smooth.as_mut() {
            f.after_param_update()?;
        }
        self.g.after_param_update()?;
        self.h.after_param_update()?;
        self.refresh_steps()
    }

    /// Returns the states of `K`, `f` (when present), `g` and `h`, then the
    /// power-iteration vector for `‖K‖₂` and the estimate (`1 x 1`).
    fn warm_start_state(&self) -> Vec<Mat<T>> {
        let mut state: Vec<Mat<T>> = self.part_warm_start_states().into_iter().flatten().collect();
        state.push(encode_warm_start_vector(self.power_vector.as_ref()));
        state.push(encode_estimate(self.norm_estimate));
        state
    }

    /// Restores the state, re-reads `L` from the restored smooth term and
    /// sets or checks the steps by the rule for the restored estimates.
    fn set_warm_start_state(&mut self, state: &[Mat<T>]) -> Result<()> {
        let previous = self.part_warm_start_states();
        let parts_len: usize = previous.iter().map(Vec::len).sum();
        check_warm_start_count("the Condat-Vu splitting", state, parts_len + 2)?;
        let vector = decode_warm_start_vector(
            "power-iteration vector of the Condat-Vu splitting",
            &state[parts_len],
            self.primal_dim,
        )?;
        let norm = decode_estimate(
            "estimate of ||K||_2 of the Condat-Vu splitting",
            &state[parts_len + 1],
        )?;

        self.set_part_warm_start_states(&previous, &state[..parts_len])?;
        let steps = self
            .read_lipschitz()
            .and_then(|lipschitz| Ok((lipschitz, self.steps_for(norm, lipschitz)?)));
        let (lipschitz, (tau, sigma)) = match steps {
            Ok(steps) => steps,
            Err(error) => {
                // Give the terms back their previous states, which they accepted before.
                let unchanged: Vec<Mat<T>> = previous.iter().flatten().cloned().collect();
                let _ = self.set_part_warm_start_states(&previous, &unchanged);
                return Err(error);
            }
        };

        self.power_vector = vector;
        self.norm_estimate = norm;
        self.lipschitz_estimate = lipschitz;
        self.tau = tau;
        self.sigma = sigma;
        Ok(())
    }
}

/// Scratch matrices in [`CondatVu::step`]: primal `v`, then dual `u` and `u/σ`.
const STEP_PRIMAL_TEMPS: usize = 1;
const STEP_DUAL_TEMPS: usize = 2;
/// Scratch matrices in [`CondatVu::step_vjp`]: primal `v`, `x⁺`, `w`, `w̄`,
/// then dual `u/σ` and `ū`.
const VJP_PRIMAL_TEMPS: usize = 4;
const VJP_DUAL_TEMPS: usize = 2;

impl<T: Scalar> Splitting for CondatVu<T> {
    type Real = T;

    /// Returns "Chambolle-Pock" without a smooth term and "Condat-Vu" with one.
    fn name(&self) -> &str {
        if self.smooth.is_some() {
            "Condat-Vu"
        } else {
            "Chambolle-Pock"
        }
    }

    fn primal_dim(&self) -> usize {
        self.primal_dim
    }

    fn data_dim(&self) -> usize {
        self.data_dim
    }

    fn state_dim(&self) -> usize {
        self.primal_dim + self.dual_dim
    }

    /// Returns the distances of `x` from the set of `g` and of `Kx` from the
    /// set of `h`, combined as a root sum of squares. Terms that are not
    /// indicators are skipped, and the result is `None` when neither is one.
    fn constraint_residual(&self, z: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        let x = z.subrows(0, self.primal_dim);
        let on_h = if self.h.is_indicator() {
            let mut kx = Mat::zeros(self.dual_dim, 1);
            let mut buffer = faer::dyn_stack::MemBuffer::new(self.operator.apply_scratch(1, Par::Seq));
            self.operator.apply(
                kx.as_mut(),
                Accum::Replace,
                T::one(),
                x.subcols(col, 1),
                Par::Seq,
                MemStack::new(&mut buffer),
            );
            self.h.infeasibility(kx.as_ref(), data.subcols(col, 1), 0)
        } else {
            None
        };
        crate::combine_distances([self.g.infeasibility(x, data, col), on_h])
    }

    fn step_sizes(&self) -> Vec<(String, f64)> {
        vec![
            ("tau".into(), self.tau.to_f64_lossless()),
            ("sigma".into(), self.sigma.to_f64_lossless()),
        ]
    }

    fn step_scratch(&self, batch: usize, par: Par) -> StackReq {
        self.scratch(batch, par, STEP_PRIMAL_TEMPS, STEP_DUAL_TEMPS)
    }

    fn step(
        &self,
        z_next: MatMut<'_, T>,
        z: MatRef<'_, T>,
        data: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        let batch = z.ncols();
        let (n, m) = (self.primal_dim, self.dual_dim);
        let (tau, sigma) = (self.tau, self.sigma);
        let inv_sigma = sigma.recip();
        let two = T::lit(2.0);
        let x = z.subrows(0, n);
        let y = z.subrows(n, m);
        let (mut x_next, mut y_next) = z_next.split_at_row_mut(n);

        let (mut v, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut v = v.as_mat_mut();
        let (mut u, stack) = temp_mat_zeroed::<T, _, _>(m, batch, stack);
        let mut u = u.as_mat_mut();
        let (mut s, stack) = temp_mat_zeroed::<T, _, _>(m, batch, stack);
        let mut s = s.as_mat_mut();

        // x⁺ = prox_{τg}(v) with v = x − τ(∇f(x) + Kᵀy).
        self.primal_argument(v.rb_mut(), x, y, data, par, stack);
        self.g.prox(x_next.rb_mut(), v.rb(), tau, data);

        // u = y + σK(2x⁺ − x), with v reused for 2x⁺ − x.
        map2(v.rb_mut(), x_next.rb(), x, move |xn, x| two * xn - x);
        self.operator
            .apply(u.rb_mut(), Accum::Replace, sigma, v.rb(), par, stack);
        update1(u.rb_mut(), y, |u, y| u + y);

        // y⁺ = u − σ prox_{h/σ}(u/σ).
        map1(s.rb_mut(), u.rb(), move |u| u * inv_sigma);
        self.h.prox(y_next.rb_mut(), s.rb(), inv_sigma, data);
        update1(y_next.rb_mut(), u.rb(), move |yn, u| u - sigma * yn);
    }

    fn step_vjp_scratch(&self, batch: usize, par: Par) -> StackReq {
        self.scratch(batch, par, VJP_PRIMAL_TEMPS, VJP_DUAL_TEMPS)
    }

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
        let batch = z.ncols();
        let (n, m) = (self.primal_dim, self.dual_dim);
        let (tau, sigma) = (self.tau, self.sigma);
        let inv_sigma = sigma.recip();
        let two = T::lit(2.0);
        let x = z.subrows(0, n);
        let y = z.subrows(n, m);
        let x_next_bar = cotangent.subrows(0, n);
        let y_next_bar = cotangent.subrows(n, m);

        let (mut op_grads, mut smooth_grads, mut g_grads, mut h_grads) = (None, None, None, None);
        if let Some(all) = grads {
            let (op, tail) = split_grads(all, self.part_param_count(Part::Operator));
            let (smooth, tail) = split_grads(tail, self.part_param_count(Part::Smooth));
            let (g, tail) = split_grads(tail, self.part_param_count(Part::G));
            let (h, _) = split_grads(tail, self.part_param_count(Part::H));
            (op_grads, smooth_grads, g_grads, h_grads) = (Some(op), Some(smooth), Some(g), Some(h));
        }

        let (mut v, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut v = v.as_mat_mut();
        let (mut x_next, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut x_next = x_next.as_mat_mut();
        let (mut w, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut w = w.as_mat_mut();
        let (mut w_bar, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut w_bar = w_bar.as_mat_mut();
        let (mut s, stack) = temp_mat_zeroed::<T, _, _>(m, batch, stack);
        let mut s = s.as_mat_mut();
        let (mut u_bar, stack) = temp_mat_zeroed::<T, _, _>(m, batch, stack);
        let mut u_bar = u_bar.as_mat_mut();

        // Recompute the forward quantities: v, x⁺, w = 2x⁺ − x and s = u/σ
        // with u = y + σKw.
        self.primal_argument(v.rb_mut(), x, y, data, par, stack);
        self.g.prox(x_next.rb_mut(), v.rb(), tau, data);
        faer::zip!(w.rb_mut(), x_next.rb(), x).for_each(|faer::unzip!(w, xn, x)| *w = two * *xn - *x);
        self.operator
            .apply(s.rb_mut(), Accum::Replace, sigma, w.rb(), par, stack);
        faer::zip!(s.rb_mut(), y).for_each(|faer::unzip!(s, y)| *s = (*s + *y) * inv_sigma);

        // y⁺ = u − σ prox_{h/σ}(s): the parameters of h see the cotangent
        // −σ ȳ⁺, and ū = ȳ⁺ − J(s)ᵀ ȳ⁺ because ∂s/∂u = 1/σ.
        if let Some(g) = h_grads {
            faer::zip!(u_bar.rb_mut(), y_next_bar).for_each(|faer::unzip!(t, c)| *t = -sigma * *c);
            self.h.accumulate_grad(g, s.rb(), inv_sigma, data, u_bar.rb());
        }
        self.h
            .prox_vjp(u_bar.rb_mut(), s.rb(), inv_sigma, data, y_next_bar);
        faer::zip!(u_bar.rb_mut(), y_next_bar).for_each(|faer::unzip!(t, c)| *t = *c - *t);

        // u = y + σKw: the parameter term σ ū wᵀ and w̄ = σKᵀū.
        if let Some(g) = op_grads.as_deref_mut() {
            self.operator.accumulate_grad(g, sigma, u_bar.rb(), w.rb(), par);
        }
        self.operator
            .apply_adjoint(w_bar.rb_mut(), Accum::Replace, sigma, u_bar.rb(), par, stack);

        // w = 2x⁺ − x: the total cotangent on x⁺, stored in x_next.
        faer::zip!(x_next.rb_mut(), x_next_bar, w_bar.rb())
            .for_each(|faer::unzip!(t, c, wb)| *t = *c + two * *wb);

        // x⁺ = prox_{τg}(v): v̄, stored in w.
        if let Some(g) = g_grads {
            self.g.accumulate_grad(g, v.rb(), tau, data, x_next.rb());
        }
        self.g.prox_vjp(w.rb_mut(), v.rb(), tau, data, x_next.rb());
        let v_bar = w.rb();

        // v = x − τ∇f(x) − τKᵀy: the parameter terms of K and f.
        if let Some(g) = op_grads {
            self.operator.accumulate_grad_adjoint(g, -tau, v_bar, y, par);
        }
        if let (Some(f), Some(g)) = (self.smooth.as_ref(), smooth_grads) {
            faer::zip!(x_next.rb_mut(), v_bar).for_each(|faer::unzip!(t, vb)| *t = -tau * *vb);
            f.accumulate_grad(g, x, data, x_next.rb(), par, stack);
        }

        // z̄ = (v̄ − τ∇²f(x) v̄ − w̄, ū − τKv̄).
        if let Some(z_bar) = z_bar {
            let (mut x_bar, mut y_bar) = z_bar.split_at_row_mut(n);
            match self.smooth.as_ref() {
                Some(f) => {
                    f.hessian_vjp(x_bar.rb_mut(), x, data, v_bar, par, stack);
                    faer::zip!(x_bar.rb_mut(), v_bar, w_bar.rb())
                        .for_each(|faer::unzip!(xb, vb, wb)| *xb = *vb - *wb - tau * *xb);
                }
                None => faer::zip!(x_bar.rb_mut(), v_bar, w_bar.rb())
                    .for_each(|faer::unzip!(xb, vb, wb)| *xb = *vb - *wb),
            }
            self.operator
                .apply(y_bar.rb_mut(), Accum::Replace, -tau, v_bar, par, stack);
            faer::zip!(y_bar.rb_mut(), u_bar.rb()).for_each(|faer::unzip!(yb, ub)| *yb += *ub);
        }
    }
}
