//! Davis–Yin three-operator splitting for `min_x f(x; d) + g(x) + h(x)`, and
//! Douglas–Rachford splitting, its case `f = 0`.

use faer::dyn_stack::{MemStack, StackReq};
use faer::linalg::{temp_mat_scratch, temp_mat_zeroed};
use faer::mat::AsMatMut;
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Mat, MatMut, MatRef, Par};
use optlayer_core::columns::{map2, map3, update2};
use optlayer_core::validate::{check_computed_step, step_in};
use optlayer_core::warm_start::set_parts_warm_start_state;
use optlayer_core::{
    Error, ParamInfo, Parameterized, Prox, Result, Scalar, Smooth, Splitting, check_unique_param_names,
    split_grads,
};

/// The rule that sets the step `γ` of [`DavisYin`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GammaRule {
    /// `γ = safety / L̂`, where `L̂` is the smooth term's
    /// [`lipschitz_estimate`](Smooth::lipschitz_estimate), recomputed after
    /// every parameter update. `safety` must lie in (0, 2). When `L̂ = 0`,
    /// every `γ > 0` is valid and the rule uses `γ = safety`.
    FromLipschitz {
        /// The product `γ L̂`, in (0, 2).
        safety: f64,
    },
    /// A fixed `γ > 0`. Construction and parameter updates that give
    /// `γ L̂ ≥ 2` are rejected with [`Error::StepCondition`].
    Fixed {
        /// The step size.
        gamma: f64,
    },
}

impl Default for GammaRule {
    /// `γ = 1/L̂`, half the bound `2/L̂`. The estimate `L̂` may be a lower
    /// bound of the true constant `L` (power iteration gives one), and this
    /// default keeps `γ L < 2` for every `L < 2 L̂`.
    fn default() -> Self {
        GammaRule::FromLipschitz { safety: 1.0 }
    }
}

/// The step sizes of [`DavisYin`]: the step `γ` and the relaxation `λ`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DavisYinSteps {
    /// The rule for `γ`.
    pub gamma: GammaRule,
    /// The relaxation `λ`, in `(0, 2 − γ L̂ / 2)`.
    pub lambda: f64,
}

impl Default for DavisYinSteps {
    /// `γ = 1/L̂` and `λ = 1`. Both convergence conditions then hold while
    /// the true Lipschitz constant is below `2 L̂`.
    fn default() -> Self {
        Self {
            gamma: GammaRule::default(),
            lambda: 1.0,
        }
    }
}

/// Davis–Yin three-operator splitting for `min_x f(x; d) + g(x) + h(x)`,
/// with `f` convex with an `L`-Lipschitz gradient ([`Smooth`]) and `g`, `h`
/// closed convex functions given by their proxes.
///
/// The state of one sample is `(x, z)`: `z` is the governing sequence and
/// `x` the last value of `x_g`. One step with step `γ` and relaxation `λ` is
///
/// ```text
/// x_h = prox_{γh}(z)
/// x_g = prox_{γg}(2 x_h − z − γ ∇f(x_h; d))
/// z⁺  = z + λ (x_g − x_h)
/// x⁺  = x_g
/// ```
///
/// and reads only the `z` rows of the state. At a fixed point `x_g = x_h`
/// is the minimizer, while the governing point is `z = x + γ u` for some
/// `u ∈ ∂h(x)`, so it differs from the minimizer unless `u = 0`. The primal
/// rows contain `x_g`, so the returned `x` converges to the minimizer and
/// stays in the domain of `g` (for instance feasible when `g` is the
/// indicator of a constraint set).
///
/// Convergence needs `0 < γ < 2/L` and `0 < λ < 2 − γL/2` (Davis and Yin,
/// "A three-operator splitting scheme and its optimization applications",
/// Set-Valued and Variational Analysis 25, 2017). Both are checked against
/// the estimate `L̂` at construction and after every parameter update.
/// [`GammaRule`] describes the margin that covers an estimate below the true `L`.
///
/// Derivatives: [`step_vjp`](Splitting::step_vjp) composes the proxes'
/// vector-Jacobian products, so at a kink it uses the element of the
/// generalized Jacobian that each prox documents, the same one the forward
/// pass would differentiate. The Hessian of `f` enters through
/// [`Smooth::hessian_vjp`] at `x_h`.
///
/// The state rows are `x` (`primal_dim` rows) and then `z` (`primal_dim` rows).
pub struct DavisYin<T: Scalar> {
    /// "Davis-Yin splitting", or "Douglas-Rachford splitting" without `f`.
    algorithm: &'static str,
    primal_dim: usize,
    data_dim: usize,
    smooth: Option<Box<dyn Smooth<T>>>,
    g: Box<dyn Prox<T>>,
    h: Box<dyn Prox<T>>,
    rule: GammaRule,
    gamma: T,
    lambda: T,
    lipschitz: T,
}

impl<T: Scalar> std::fmt::Debug for DavisYin<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let params: Vec<String> = (0..self.param_count())
            .map(|i| {
                let info = self.param_info(i);
                format!("{} ({} x {})", info.name, info.nrows, info.ncols)
            })
            .collect();
        f.debug_struct("DavisYin")
            .field("algorithm", &self.algorithm)
            .field("primal_dim", &self.primal_dim)
            .field("data_dim", &self.data_dim)
            .field("has_smooth", &self.smooth.is_some())
            .field("params", &params)
            .field("rule", &self.rule)
            .field("gamma", &self.gamma)
            .field("lambda", &self.lambda)
            .field("lipschitz", &self.lipschitz)
            .finish()
    }
}

/// One of the three terms, in parameter order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Smooth,
    G,
    H,
}

impl<T: Scalar> DavisYin<T> {
    /// Creates the splitting for `min_x f(x; d) + g(x) + h(x)` with
    /// `x ∈ R^primal_dim` and data batches of `data_dim` rows.
    ///
    /// # Errors
    /// - `primal_dim` is zero;
    /// - `f`, `g` or `h` is defined on another dimension than `primal_dim`,
    ///   or reads more data rows than `data_dim`;
    /// - two parameters share a name ([`Error::DuplicateParameter`]);
    /// - `γ`, `λ` or the safety factor is NaN, infinite or not positive, or
    ///   the safety factor is not below 2 ([`Error::InvalidParameter`]);
    /// - `γ L̂ ≥ 2` or `λ ≥ 2 − γ L̂ / 2` ([`Error::StepCondition`]);
    /// - the Lipschitz estimate is negative or not finite ([`Error::Numerical`]).
    pub fn new(
        primal_dim: usize,
        data_dim: usize,
        smooth: Box<dyn Smooth<T>>,
        g: Box<dyn Prox<T>>,
        h: Box<dyn Prox<T>>,
        steps: DavisYinSteps,
    ) -> Result<Self> {
        Self::build(
            "Davis-Yin splitting",
            primal_dim,
            data_dim,
            Some(smooth),
            g,
            h,
            steps,
        )
    }

    fn build(
        algorithm: &'static str,
        primal_dim: usize,
        data_dim: usize,
        smooth: Option<Box<dyn Smooth<T>>>,
        g: Box<dyn Prox<T>>,
        h: Box<dyn Prox<T>>,
        steps: DavisYinSteps,
    ) -> Result<Self> {
        if primal_dim == 0 {
            return Err(Error::Empty {
                what: format!("primal dimension of {algorithm}"),
                fix: "pass primal_dim >= 1".into(),
            });
        }
        match steps.gamma {
            GammaRule::Fixed { gamma } => {
                step_in::<T>("gamma", gamma)?;
            }
            GammaRule::FromLipschitz { safety } => {
                if !(safety > 0.0 && safety < 2.0) {
                    return Err(Error::InvalidParameter {
                        name: "gamma safety factor (gamma * L)".into(),
                        value: safety,
                        requirement: "must be in (0, 2); 1 gives gamma = 1/L".into(),
                    });
                }
            }
        }
        let lambda = step_in::<T>("lambda", steps.lambda)?;
        let mut splitting = Self {
            algorithm,
            primal_dim,
            data_dim,
            smooth,
            g,
            h,
            rule: steps.gamma,
            gamma: T::one(),
            lambda,
            lipschitz: T::zero(),
        };
        splitting.validate_terms()?;
        splitting.refresh_steps()?;
        Ok(splitting)
    }

    /// Returns the step `γ` in use.
    pub fn gamma(&self) -> T {
        self.gamma
    }

    /// Returns the relaxation `λ`.
    pub fn lambda(&self) -> T {
        self.lambda
    }

    /// Returns the Lipschitz estimate `L̂` of `∇f` that the steps were
    /// checked against, zero without a smooth term.
    pub fn lipschitz(&self) -> T {
        self.lipschitz
    }

    /// Returns the smooth term `f`, if there is one.
    pub fn smooth(&self) -> Option<&dyn Smooth<T>> {
        self.smooth.as_deref()
    }

    /// Returns the prox of `g`, the term whose prox gives the returned `x`.
    pub fn g(&self) -> &dyn Prox<T> {
        &*self.g
    }

    /// Returns the prox of `h`, the term applied to the governing sequence `z`.
    pub fn h(&self) -> &dyn Prox<T> {
        &*self.h
    }

    /// Returns the state rows that contain the governing sequence `z`.
    pub fn governing_rows(&self) -> std::ops::Range<usize> {
        self.primal_dim..2 * self.primal_dim
    }

    /// Checks the dimensions, data rows and parameter names of the three terms.
    fn validate_terms(&self) -> Result<()> {
        let n = self.primal_dim;
        if let Some(f) = &self.smooth {
            if f.dim() != n {
                return Err(Error::ShapeMismatch {
                    what: format!("smooth term f of {}", self.algorithm),
                    expected: format!("dimension {n} (the primal dimension)"),
                    found: format!("dimension {}", f.dim()),
                });
            }
            self.check_data_rows("smooth term f", f.data_rows_needed())?;
        }
        for (label, prox) in [("prox of g", &self.g), ("prox of h", &self.h)] {
            if let Some(dim) = prox.dim()
                && dim != n
            {
                return Err(Error::ShapeMismatch {
                    what: format!("{label} of {}", self.algorithm),
                    expected: format!("dimension {n} (the primal dimension)"),
                    found: format!("dimension {dim}"),
                });
            }
            self.check_data_rows(label, prox.data_rows_needed())?;
        }
        check_unique_param_names(self)
    }

    fn check_data_rows(&self, label: &str, needed: usize) -> Result<()> {
        if needed > self.data_dim {
            return Err(Error::ShapeMismatch {
                what: format!("{label} of {}", self.algorithm),
                expected: format!("at most {} data rows (the data dimension)", self.data_dim),
                found: format!("{needed} data rows read"),
            });
        }
        Ok(())
    }

    /// Reads `L̂` from the smooth term, sets `γ` by the rule and checks both
    /// convergence conditions. On error the previous steps stay in place.
    fn refresh_steps(&mut self) -> Result<()> {
        let lipschitz = self.read_lipschitz()?;
        let gamma = match self.rule {
            GammaRule::Fixed { gamma } => T::lit(gamma),
            GammaRule::FromLipschitz { safety } if lipschitz > T::zero() => T::lit(safety) / lipschitz,
            GammaRule::FromLipschitz { safety } => T::lit(safety),
        };
        check_computed_step(self.algorithm, "gamma", gamma, &format!("L ≈ {lipschitz}"))?;
        self.check_step_conditions(gamma, lipschitz)?;

        self.lipschitz = lipschitz;
        self.gamma = gamma;
        Ok(())
    }

    /// Returns the smooth term's Lipschitz estimate, or zero without one.
    fn read_lipschitz(&self) -> Result<T> {
        let lipschitz = match &self.smooth {
            Some(f) => f.lipschitz_estimate(),
            None => T::zero(),
        };
        if !(lipschitz.is_finite() && lipschitz >= T::zero()) {
            return Err(Error::Numerical {
                what: format!("Lipschitz estimate of the smooth term of {}", self.algorithm),
                reason: format!(
                    "lipschitz_estimate returned {lipschitz}; it must be finite and not negative, \
                     so check the smooth term's parameters for non-finite entries"
                ),
            });
        }
        Ok(lipschitz)
    }

    /// Checks `γ L̂ < 2` and `λ < 2 − γ L̂ / 2`.
    fn check_step_conditions(&self, gamma: T, lipschitz: T) -> Result<()> {
        let lipschitz = lipschitz.to_f64_lossless();
        let gamma_l = gamma.to_f64_lossless() * lipschitz;
        if gamma_l >= 2.0 {
            return Err(Error::StepCondition {
                algorithm: self.algorithm.into(),
                condition: "gamma * L < 2".into(),
                value: gamma_l,
                bound: 2.0,
                fix: format!(
                    "choose gamma below {:.6e} for the Lipschitz estimate L = {lipschitz:.6e}, \
                     or use GammaRule::FromLipschitz",
                    2.0 / lipschitz
                ),
            });
        }

        let lambda = self.lambda.to_f64_lossless();
        let lambda_bound = 2.0 - gamma_l / 2.0;
        if lambda >= lambda_bound {
            let condition = if self.smooth.is_some() {
                "lambda < 2 - gamma * L / 2"
            } else {
                "lambda < 2"
            };
            return Err(Error::StepCondition {
                algorithm: self.algorithm.into(),
                condition: condition.into(),
                value: lambda,
                bound: lambda_bound,
                fix: format!("choose lambda in (0, {lambda_bound:.6}), for instance 1"),
            });
        }
        Ok(())
    }

    fn part_count(&self, part: Part) -> usize {
        match part {
            Part::Smooth => self.smooth.as_ref().map_or(0, |f| f.param_count()),
            Part::G => self.g.param_count(),
            Part::H => self.h.param_count(),
        }
    }

    /// Returns the term that owns a model-wide parameter index and the index within it.
    fn locate_param(&self, index: usize) -> (Part, usize) {
        let mut start = 0;
        for part in [Part::Smooth, Part::G, Part::H] {
            let count = self.part_count(part);
            if index < start + count {
                return (part, index - start);
            }
            start += count;
        }
        panic!(
            "parameter index {index} out of range: {} has {start} parameters",
            self.algorithm
        )
    }

    /// Writes `x_h = prox_{γh}(z)` and the argument of the prox of `g`,
    /// `v = 2 x_h − z − γ ∇f(x_h)`; `stack` needs the smooth term's scratch.
    fn forward_points(
        &self,
        mut x_h: MatMut<'_, T>,
        mut v: MatMut<'_, T>,
        z: MatRef<'_, T>,
        data: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        let gamma = self.gamma;
        let two = T::lit(2.0);
        self.h.prox(x_h.rb_mut(), z, gamma, data);
        match &self.smooth {
            Some(f) => {
                f.gradient(v.rb_mut(), x_h.rb(), data, par, stack);
                update2(v, x_h.rb(), z, move |v, xh, z| two * xh - z - gamma * v);
            }
            None => {
                map2(v, x_h.rb(), z, move |xh, z| two * xh - z);
            }
        }
    }

    fn smooth_scratch(&self, batch: usize, par: Par) -> StackReq {
        self.smooth
            .as_ref()
            .map_or(StackReq::EMPTY, |f| f.scratch(batch, par))
    }
}

impl<T: Scalar> Parameterized<T> for DavisYin<T> {
    /// Lists the parameters of `f`, then `g`, then `h`.
    fn param_count(&self) -> usize {
        self.part_count(Part::Smooth) + self.part_count(Part::G) + self.part_count(Part::H)
    }

    fn param_info(&self, index: usize) -> ParamInfo {
        match self.locate_param(index) {
            (Part::Smooth, local) => self.smooth.as_ref().map(|f| f.param_info(local)),
            (Part::G, local) => Some(self.g.param_info(local)),
            (Part::H, local) => Some(self.h.param_info(local)),
        }
        .expect("locate_param returns the smooth term only when it exists")
    }

    fn param(&self, index: usize) -> MatRef<'_, T> {
        match self.locate_param(index) {
            (Part::Smooth, local) => self.smooth.as_ref().map(|f| f.param(local)),
            (Part::G, local) => Some(self.g.param(local)),
            (Part::H, local) => Some(self.h.param(local)),
        }
        .expect("locate_param returns the smooth term only when it exists")
    }

    fn param_mut(&mut self, index: usize) -> MatMut<'_, T> {
        match self.locate_param(index) {
            (Part::Smooth, local) => self.smooth.as_mut().map(|f| f.param_mut(local)),
            (Part::G, local) => Some(self.g.param_mut(local)),
            (Part::H, local) => Some(self.h.param_mut(local)),
        }
        .expect("locate_param returns the smooth term only when it exists")
    }

    /// Updates the three terms, then re-reads `L̂`, resets `γ` by the
    /// [`GammaRule`] and checks the convergence conditions.
    fn after_param_update(&mut self) -> Result<()> {
        if let Some(f) = &mut self.smooth {
            f.after_param_update()?;
        }
        self.g.after_param_update()?;
        self.h.after_param_update()?;
        self.refresh_steps()
    }

    /// Returns the states of `f` (when present), then `g`, then `h`.
    fn warm_start_state(&self) -> Vec<Mat<T>> {
        self.part_warm_start_states().into_iter().flatten().collect()
    }

    /// Restores the states of the three terms, then re-reads `L̂` and resets
    /// `γ` as [`after_param_update`](Parameterized::after_param_update) does.
    fn set_warm_start_state(&mut self, state: &[Mat<T>]) -> Result<()> {
        let previous = self.part_warm_start_states();
        let what = format!("the terms of {}", self.algorithm);
        let (smooth, g, h) = (&mut self.smooth, &mut self.g, &mut self.h);
        set_parts_warm_start_state(&what, &previous, state, |part, value| match part {
            0 => smooth.as_mut().map_or(Ok(()), |f| f.set_warm_start_state(value)),
            1 => g.set_warm_start_state(value),
            _ => h.set_warm_start_state(value),
        })?;
        if let Err(error) = self.refresh_steps() {
            if let Some(f) = &mut self.smooth {
                let _ = f.set_warm_start_state(&previous[0]);
            }
            let _ = self.g.set_warm_start_state(&previous[1]);
            let _ = self.h.set_warm_start_state(&previous[2]);
            return Err(error);
        }
        Ok(())
    }
}

impl<T: Scalar> DavisYin<T> {
    /// Returns the states of `f` (empty without `f`), `g` and `h`.
    fn part_warm_start_states(&self) -> [Vec<Mat<T>>; 3] {
        [
            self.smooth
                .as_ref()
                .map_or_else(Vec::new, |f| f.warm_start_state()),
            self.g.warm_start_state(),
            self.h.warm_start_state(),
        ]
    }
}

/// Scratch matrices (`primal_dim x batch`) in [`DavisYin::step`].
const STEP_TEMPS: usize = 2;
/// Scratch matrices (`primal_dim x batch`) in [`DavisYin::step_vjp`].
const VJP_TEMPS: usize = 5;

impl<T: Scalar> Splitting for DavisYin<T> {
    type Real = T;

    fn name(&self) -> &str {
        self.algorithm
    }

    fn primal_dim(&self) -> usize {
        self.primal_dim
    }

    fn data_dim(&self) -> usize {
        self.data_dim
    }

    fn state_dim(&self) -> usize {
        2 * self.primal_dim
    }

    /// Returns the distance of `x = x_g` from the sets of `g` and `h`,
    /// combined as a root sum of squares. Terms that are not indicators are
    /// skipped, and the result is `None` when neither is one.
    fn constraint_residual(&self, z: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        let x = z.subrows(0, self.primal_dim);
        crate::combine_distances([
            self.g.infeasibility(x, data, col),
            self.h.infeasibility(x, data, col),
        ])
    }

    fn step_sizes(&self) -> Vec<(String, f64)> {
        vec![
            ("gamma".into(), self.gamma.to_f64_lossless()),
            ("lambda".into(), self.lambda.to_f64_lossless()),
        ]
    }

    fn step_scratch(&self, batch: usize, par: Par) -> StackReq {
        let temp = temp_mat_scratch::<T>(self.primal_dim, batch);
        StackReq::all_of(&[temp; STEP_TEMPS]).and(self.smooth_scratch(batch, par))
    }

    fn step(
        &self,
        z_next: MatMut<'_, T>,
        z: MatRef<'_, T>,
        data: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        let n = self.primal_dim;
        let batch = z.ncols();
        let lambda = self.lambda;
        let z_gov = z.subrows(n, n);
        let (mut x_next, z_gov_next) = z_next.split_at_row_mut(n);

        let (mut x_h, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut x_h = x_h.as_mat_mut();
        let (mut v, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut v = v.as_mat_mut();

        self.forward_points(x_h.rb_mut(), v.rb_mut(), z_gov, data, par, stack);
        self.g.prox(x_next.rb_mut(), v.rb(), self.gamma, data);
        map3(z_gov_next, z_gov, x_next.rb(), x_h.rb(), move |z, xg, xh| {
            z + lambda * (xg - xh)
        });
    }

    fn step_vjp_scratch(&self, batch: usize, par: Par) -> StackReq {
        let temp = temp_mat_scratch::<T>(self.primal_dim, batch);
        StackReq::all_of(&[temp; VJP_TEMPS]).and(self.smooth_scratch(batch, par))
    }

    /// With the cotangent `(c_x, c_z)` on `(x⁺, z⁺)`, propagates
    ///
    /// ```text
    /// x̄_g = c_x + λ c_z                        (x⁺ = x_g, z⁺ = z + λ (x_g − x_h))
    /// v̄   = J_gᵀ x̄_g                          (x_g = prox_{γg}(v))
    /// x̄_h = 2 v̄ − γ ∇²f(x_h) v̄ − λ c_z      (v = 2 x_h − z − γ ∇f(x_h))
    /// z̄   = c_z − v̄ + J_hᵀ x̄_h               (x_h = prox_{γh}(z))
    /// ```
    ///
    /// and writes zero in the `x` rows of `z_bar`, because the step does not
    /// read them. The parameter gradients are those of the prox of `g` at
    /// `(v, x̄_g)`, of `∇f` at `(x_h, −γ v̄)` and of the prox of `h` at `(z, x̄_h)`.
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
        let n = self.primal_dim;
        let batch = z.ncols();
        let (gamma, lambda) = (self.gamma, self.lambda);
        let two = T::lit(2.0);
        let z_gov = z.subrows(n, n);
        let c_x = cotangent.subrows(0, n);
        let c_z = cotangent.subrows(n, n);

        let (mut smooth_grads, mut g_grads, mut h_grads) = (None, None, None);
        if let Some(all) = grads {
            let (smooth, rest) = split_grads(all, self.part_count(Part::Smooth));
            let (g, rest) = split_grads(rest, self.part_count(Part::G));
            let (h, _) = split_grads(rest, self.part_count(Part::H));
            (smooth_grads, g_grads, h_grads) = (Some(smooth), Some(g), Some(h));
        }

        let (mut x_h, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut x_h = x_h.as_mat_mut();
        let (mut v, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut v = v.as_mat_mut();
        let (mut x_g_bar, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut x_g_bar = x_g_bar.as_mat_mut();
        let (mut v_bar, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut v_bar = v_bar.as_mat_mut();
        let (mut x_h_bar, stack) = temp_mat_zeroed::<T, _, _>(n, batch, stack);
        let mut x_h_bar = x_h_bar.as_mat_mut();

        self.forward_points(x_h.rb_mut(), v.rb_mut(), z_gov, data, par, stack);

        // x⁺ = x_g and z⁺ = z + λ (x_g − x_h), then x_g = prox_{γg}(v).
        faer::zip!(x_g_bar.rb_mut(), c_x, c_z).for_each(|faer::unzip!(b, cx, cz)| *b = *cx + lambda * *cz);
        self.g.prox_vjp(v_bar.rb_mut(), v.rb(), gamma, data, x_g_bar.rb());
        if let Some(grads) = g_grads {
            self.g.accumulate_grad(grads, v.rb(), gamma, data, x_g_bar.rb());
        }

        // v = 2 x_h − z − γ ∇f(x_h): x̄_h = 2 v̄ − γ ∇²f(x_h) v̄ − λ c_z.
        match &self.smooth {
            Some(f) => {
                f.hessian_vjp(x_h_bar.rb_mut(), x_h.rb(), data, v_bar.rb(), par, stack);
                if let Some(grads) = smooth_grads {
                    // x̄_g is not needed any more, so it now contains the cotangent −γ v̄ on ∇f(x_h).
                    faer::zip!(x_g_bar.rb_mut(), v_bar.rb())
                        .for_each(|faer::unzip!(c, vb)| *c = -gamma * *vb);
                    f.accumulate_grad(grads, x_h.rb(), data, x_g_bar.rb(), par, stack);
                }
                faer::zip!(x_h_bar.rb_mut(), v_bar.rb(), c_z)
                    .for_each(|faer::unzip!(b, vb, cz)| *b = two * *vb - gamma * *b - lambda * *cz);
            }
            None => {
                faer::zip!(x_h_bar.rb_mut(), v_bar.rb(), c_z)
                    .for_each(|faer::unzip!(b, vb, cz)| *b = two * *vb - lambda * *cz);
            }
        }

        // x_h = prox_{γh}(z).
        if let Some(grads) = h_grads {
            self.h.accumulate_grad(grads, z_gov, gamma, data, x_h_bar.rb());
        }
        if let Some(z_bar) = z_bar {
            let (mut x_rows, mut z_rows) = z_bar.split_at_row_mut(n);
            x_rows.fill(T::zero());
            self.h.prox_vjp(z_rows.rb_mut(), z_gov, gamma, data, x_h_bar.rb());
            faer::zip!(z_rows, c_z, v_bar.rb()).for_each(|faer::unzip!(zb, cz, vb)| *zb += *cz - *vb);
        }
    }
}

/// Douglas–Rachford splitting for `min_x g(x) + h(x)`: [`DavisYin`] without
/// the smooth term, so one step is
///
/// ```text
/// x_h = prox_{γh}(z)
/// x_g = prox_{γg}(2 x_h − z)
/// z⁺  = z + λ (x_g − x_h)
/// x⁺  = x_g
/// ```
///
/// with the same state layout `(x, z)` and the same derivative conventions.
/// Convergence needs `γ > 0` and `0 < λ < 2`; the returned `x` converges to
/// a minimizer, the governing `z` in general does not.
pub struct DouglasRachford<T: Scalar> {
    inner: DavisYin<T>,
}

impl<T: Scalar> std::fmt::Debug for DouglasRachford<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DouglasRachford").field(&self.inner).finish()
    }
}

impl<T: Scalar> DouglasRachford<T> {
    /// Creates the splitting for `min_x g(x) + h(x)` with `x ∈ R^primal_dim`
    /// and data batches of `data_dim` rows.
    ///
    /// # Errors
    /// - `primal_dim` is zero;
    /// - `g` or `h` is defined on another dimension than `primal_dim`, or
    ///   reads more data rows than `data_dim`;
    /// - two parameters share a name ([`Error::DuplicateParameter`]);
    /// - `gamma` or `lambda` is NaN, infinite or not positive
    ///   ([`Error::InvalidParameter`]);
    /// - `lambda ≥ 2` ([`Error::StepCondition`]).
    pub fn new(
        primal_dim: usize,
        data_dim: usize,
        g: Box<dyn Prox<T>>,
        h: Box<dyn Prox<T>>,
        gamma: f64,
        lambda: f64,
    ) -> Result<Self> {
        let steps = DavisYinSteps {
            gamma: GammaRule::Fixed { gamma },
            lambda,
        };
        let inner = DavisYin::build(
            "Douglas-Rachford splitting",
            primal_dim,
            data_dim,
            None,
            g,
            h,
            steps,
        )?;
        Ok(Self { inner })
    }

    /// Returns the step `γ`.
    pub fn gamma(&self) -> T {
        self.inner.gamma()
    }

    /// Returns the relaxation `λ`.
    pub fn lambda(&self) -> T {
        self.inner.lambda()
    }

    /// Returns the prox of `g`, the term whose prox gives the returned `x`.
    pub fn g(&self) -> &dyn Prox<T> {
        self.inner.g()
    }

    /// Returns the prox of `h`, the term applied to the governing sequence `z`.
    pub fn h(&self) -> &dyn Prox<T> {
        self.inner.h()
    }

    /// Returns the state rows that contain the governing sequence `z`.
    pub fn governing_rows(&self) -> std::ops::Range<usize> {
        self.inner.governing_rows()
    }
}

impl<T: Scalar> Parameterized<T> for DouglasRachford<T> {
    fn param_count(&self) -> usize {
        self.inner.param_count()
    }

    fn param_info(&self, index: usize) -> ParamInfo {
        self.inner.param_info(index)
    }

    fn param(&self, index: usize) -> MatRef<'_, T> {
        self.inner.param(index)
    }

    fn param_mut(&mut self, index: usize) -> MatMut<'_, T> {
        self.inner.param_mut(index)
    }

    fn after_param_update(&mut self) -> Result<()> {
        self.inner.after_param_update()
    }

    fn warm_start_state(&self) -> Vec<Mat<T>> {
        self.inner.warm_start_state()
    }

    fn set_warm_start_state(&mut self, state: &[Mat<T>]) -> Result<()> {
        self.inner.set_warm_start_state(state)
    }
}

impl<T: Scalar> Splitting for DouglasRachford<T> {
    type Real = T;

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn primal_dim(&self) -> usize {
        self.inner.primal_dim()
    }

    fn data_dim(&self) -> usize {
        self.inner.data_dim()
    }

    fn state_dim(&self) -> usize {
        self.inner.state_dim()
    }

    fn constraint_residual(&self, z: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        self.inner.constraint_residual(z, data, col)
    }

    fn step_sizes(&self) -> Vec<(String, f64)> {
        self.inner.step_sizes()
    }

    fn step_scratch(&self, batch: usize, par: Par) -> StackReq {
        self.inner.step_scratch(batch, par)
    }

    fn step(
        &self,
        z_next: MatMut<'_, T>,
        z: MatRef<'_, T>,
        data: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        self.inner.step(z_next, z, data, par, stack);
    }

    fn step_vjp_scratch(&self, batch: usize, par: Par) -> StackReq {
        self.inner.step_vjp_scratch(batch, par)
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
        self.inner.step_vjp(z_bar, z, data, cotangent, grads, par, stack);
    }
}
