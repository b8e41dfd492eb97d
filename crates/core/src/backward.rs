//! Gradient modes, all built on [`Splitting::step_vjp`].
//!
//! With `z*` the fixed point of `T_Θ(·; d)` and a loss on the primal part
//! `x`, the modes compute:
//!
//! - [`GradientMode::Jfb`]: `(∂T/∂Θ)ᵀ g` at `z*`, with the loss at
//!   `x⁺ = primal(T(z*))`, from one `step_vjp`;
//! - [`GradientMode::Truncated`]: the exact gradient of the `k`-step map
//!   `z* ↦ T^k(z*)` with `z*` held fixed (`k = 1` is JFB);
//! - [`GradientMode::Unrolled`]: the exact gradient of the `K`-step map from
//!   the initial state, storing all `K` iterates;
//! - [`GradientMode::Implicit`]: the implicit-function gradient
//!   `(∂T/∂Θ)ᵀ u` with `u = g + (∂T/∂z)ᵀ u`, the loss at `x* = primal(z*)`.
//!
//! Every mode uses the step sizes of the forward pass: the forward result
//! must be current (see [`OptLayer::check_forward_is_current`]).

use faer::dyn_stack::{MemBuffer, MemStack, StackReq};
use faer::linalg::{temp_mat_scratch, temp_mat_zeroed};
use faer::mat::AsMatMut;
use faer::matrix_free::LinOp;
use faer::matrix_free::bicgstab::{BicgParams, bicgstab, bicgstab_scratch};
use faer::matrix_free::{IdentityPrecond, InitialGuessStatus};
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Mat, MatMut, MatRef, Par};

use crate::columns::col_norm2;
use crate::{
    Error, FixedPointJfb, ForwardResult, Gradients, LossFn, OptLayer, Result, Scalar, Splitting, Status,
    check_gradients,
};

/// The solver of the adjoint equation `(I − (∂T/∂z)ᵀ) u = g` in implicit mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjointSolver {
    /// `u ← g + (∂T/∂z)ᵀ u` (the Neumann series); converges when the
    /// spectral radius of `∂T/∂z` is below 1, at the rate of that radius.
    FixedPoint,
    /// BiCGSTAB (faer's matrix-free solver) on the whole batch as one vector;
    /// handles non-symmetric systems and needs no contraction, only an
    /// invertible `I − ∂T/∂z`.
    BiCgStab,
}

impl AdjointSolver {
    fn name(self) -> &'static str {
        match self {
            AdjointSolver::FixedPoint => "fixed-point iteration",
            AdjointSolver::BiCgStab => "BiCGSTAB",
        }
    }
}

/// Settings of implicit differentiation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImplicitOptions {
    /// The adjoint solver.
    pub solver: AdjointSolver,
    /// Maximum solver iterations.
    pub max_iters: usize,
    /// Relative tolerance `‖g − (I − Jᵀ) u‖ ≤ rtol ‖g‖` of the adjoint solve.
    /// Values below 64 machine epsilons of the scalar type (about 1.4e-14
    /// in `f64` and 7.6e-6 in `f32`) are raised to that, which rounding
    /// allows.
    pub rtol: f64,
    /// Whether to compute the gradient when some forward samples did not
    /// converge. With `false` such a batch is rejected with
    /// [`Error::ForwardNotConverged`]; with `true` the output carries a warning.
    pub allow_unconverged_forward: bool,
}

impl Default for ImplicitOptions {
    fn default() -> Self {
        Self {
            solver: AdjointSolver::FixedPoint,
            max_iters: 1000,
            rtol: 1e-8,
            allow_unconverged_forward: false,
        }
    }
}

/// The method that computes gradients from a forward pass.
#[derive(Clone, Debug, PartialEq)]
pub enum GradientMode {
    /// Jacobian-free backpropagation: one `step_vjp` at the fixed point.
    Jfb,
    /// Backpropagation through `steps` further iterations from the fixed
    /// point, which are stored (`steps` state batches of memory).
    Truncated {
        /// Number of iterations, at least 1; 1 is JFB.
        steps: usize,
        /// Largest memory for stored iterates in bytes; `None` for no limit.
        memory_limit_bytes: Option<usize>,
    },
    /// Backpropagation through the whole forward iteration from the initial
    /// state, which is run again and stored: memory grows linearly with the
    /// iteration count.
    Unrolled {
        /// Iterations, at least 1; `None` uses the `max_iters` of the forward pass.
        steps: Option<usize>,
        /// Largest memory for stored iterates in bytes; `None` for no limit.
        memory_limit_bytes: Option<usize>,
    },
    /// Implicit differentiation of the fixed-point equation.
    Implicit(ImplicitOptions),
}

impl GradientMode {
    /// Returns a short name, e.g. "jfb", "truncated:5", "unrolled",
    /// "unrolled:300", "implicit" or "implicit:bicgstab".
    pub fn label(&self) -> String {
        match self {
            GradientMode::Jfb => "jfb".into(),
            GradientMode::Truncated { steps, .. } => format!("truncated:{steps}"),
            GradientMode::Unrolled { steps: None, .. } => "unrolled".into(),
            GradientMode::Unrolled {
                steps: Some(steps), ..
            } => format!("unrolled:{steps}"),
            GradientMode::Implicit(options) => match options.solver {
                AdjointSolver::FixedPoint => "implicit".into(),
                AdjointSolver::BiCgStab => "implicit:bicgstab".into(),
            },
        }
    }

    /// Parses "jfb", "truncated:K", "unrolled", "unrolled:K", "implicit" or
    /// "implicit:bicgstab", with no memory limit and default implicit options.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] listing the accepted forms.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = || Error::InvalidValue {
            name: "gradient mode".into(),
            value: text.to_string(),
            requirement: "must be jfb, truncated:K or unrolled:K with K ≥ 1, unrolled, implicit or \
                          implicit:bicgstab"
                .into(),
        };
        let steps_after = |prefix: &str| -> Option<Result<usize>> {
            text.strip_prefix(prefix)
                .map(|k| k.parse::<usize>().ok().filter(|&k| k >= 1).ok_or_else(invalid))
        };
        match text {
            "jfb" => Ok(GradientMode::Jfb),
            "unrolled" => Ok(GradientMode::Unrolled {
                steps: None,
                memory_limit_bytes: None,
            }),
            "implicit" => Ok(GradientMode::Implicit(ImplicitOptions::default())),
            "implicit:bicgstab" => Ok(GradientMode::Implicit(ImplicitOptions {
                solver: AdjointSolver::BiCgStab,
                ..ImplicitOptions::default()
            })),
            _ => {
                if let Some(steps) = steps_after("truncated:") {
                    return Ok(GradientMode::Truncated {
                        steps: steps?,
                        memory_limit_bytes: None,
                    });
                }
                if let Some(steps) = steps_after("unrolled:") {
                    return Ok(GradientMode::Unrolled {
                        steps: Some(steps?),
                        memory_limit_bytes: None,
                    });
                }
                Err(invalid())
            }
        }
    }

    /// Returns the mode with its memory limit set, for the modes that store
    /// iterates; other modes are returned unchanged.
    pub fn with_memory_limit(self, limit: Option<usize>) -> Self {
        match self {
            GradientMode::Truncated { steps, .. } => GradientMode::Truncated {
                steps,
                memory_limit_bytes: limit,
            },
            GradientMode::Unrolled { steps, .. } => GradientMode::Unrolled {
                steps,
                memory_limit_bytes: limit,
            },
            other => other,
        }
    }

    /// Checks the settings of the mode.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for zero steps or invalid implicit options.
    pub fn validate(&self) -> Result<()> {
        let zero_steps = |name: &str| Error::InvalidParameter {
            name: name.into(),
            value: 0.0,
            requirement: "must be at least 1".into(),
        };
        match self {
            GradientMode::Truncated { steps: 0, .. } => Err(zero_steps("truncated steps")),
            GradientMode::Unrolled { steps: Some(0), .. } => Err(zero_steps("unrolled steps")),
            GradientMode::Implicit(options) => options.validate(),
            _ => Ok(()),
        }
    }

    /// Checks, before any work, that the iterates this mode stores for a
    /// batch fit its memory limit. `max_iters` is the iteration limit of the
    /// forward pass, which unrolled mode uses when its step count is `None`.
    ///
    /// # Errors
    /// [`Error::MemoryLimit`] with the bytes needed and the limit.
    pub fn check_memory(
        &self,
        state_dim: usize,
        batch: usize,
        max_iters: usize,
        scalar_bytes: usize,
    ) -> Result<()> {
        let (steps, limit, what) = match self {
            GradientMode::Truncated {
                steps,
                memory_limit_bytes,
            } => (
                *steps,
                *memory_limit_bytes,
                format!("truncated backpropagation through {steps} iterations"),
            ),
            GradientMode::Unrolled {
                steps,
                memory_limit_bytes,
            } => {
                let steps = steps.unwrap_or(max_iters);
                (
                    steps,
                    *memory_limit_bytes,
                    format!("unrolled backpropagation through {steps} iterations"),
                )
            }
            _ => return Ok(()),
        };
        let bytes = steps
            .checked_mul(state_dim)
            .and_then(|e| e.checked_mul(batch))
            .and_then(|e| e.checked_mul(scalar_bytes));
        match (bytes, limit) {
            (Some(bytes), Some(limit)) if bytes > limit => {
                Err(memory_error(&what, bytes, format!("{limit} bytes")))
            }
            (None, _) => Err(memory_error(&what, usize::MAX, "the address space".into())),
            _ => Ok(()),
        }
    }
}

fn memory_error(what: &str, needed_bytes: usize, limit: String) -> Error {
    Error::MemoryLimit {
        what: what.to_string(),
        needed_bytes,
        limit,
        fix: "use GradientMode::Jfb or Implicit, whose memory does not grow with the iteration count, \
              or lower the iteration count or the batch size"
            .into(),
    }
}

impl ImplicitOptions {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `max_iters` is zero or `rtol` is not
    /// finite and positive.
    pub fn validate(&self) -> Result<()> {
        if self.max_iters == 0 {
            return Err(Error::InvalidParameter {
                name: "adjoint max_iters".into(),
                value: 0.0,
                requirement: "must be at least 1".into(),
            });
        }
        crate::validate::check_positive("adjoint rtol", self.rtol)
    }
}

/// The iterations and final residual of an adjoint solve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdjointReport {
    /// Solver iterations.
    pub iterations: usize,
    /// `‖g − (I − Jᵀ) u‖ / ‖g‖` at the returned `u`.
    pub relative_residual: f64,
}

/// The result of a backward pass.
#[derive(Clone, Debug)]
pub struct GradientOutput<T: Scalar> {
    /// The loss.
    pub loss: T,
    /// The primal batch at which the loss was evaluated.
    pub x: Mat<T>,
    /// The largest relative fixed-point residual of the forward pass.
    pub forward_max_relative_residual: f64,
    /// Forward samples that did not converge.
    pub forward_unconverged: usize,
    /// The adjoint solve, in implicit mode.
    pub adjoint: Option<AdjointReport>,
    /// Memory used to store iterates, in bytes (truncated and unrolled modes).
    pub stored_bytes: usize,
    /// Conditions the caller should know about, such as an unconverged
    /// forward pass in implicit mode.
    pub warnings: Vec<String>,
}

/// Estimates of the spectral radius of `∂T/∂z` at the fixed point.
#[derive(Clone, Debug, PartialEq)]
pub struct ContractionEstimate {
    /// Largest estimate over the batch.
    pub max: f64,
    /// Mean estimate over the batch.
    pub mean: f64,
    /// One estimate per sample.
    pub per_sample: Vec<f64>,
}

fn parallelism(threads: usize) -> Par {
    if threads > 1 {
        Par::rayon(threads)
    } else {
        Par::Seq
    }
}

impl<T: Scalar, Alg: Splitting<Real = T>> OptLayer<Alg> {
    /// Evaluates `loss` and adds the gradient of the chosen `mode` to `grads`.
    ///
    /// `forward` must come from this layer on `data` with its current
    /// parameters. See the [module documentation](crate::backward) for what
    /// each mode computes and where it evaluates the loss.
    ///
    /// # Errors
    /// - [`Error::StaleForward`] or a shape error when `forward`, `data` or
    ///   `grads` do not match the layer;
    /// - [`Error::MemoryLimit`] when unrolled or truncated mode would exceed
    ///   its memory limit or the allocation fails;
    /// - [`Error::ForwardNotConverged`] in implicit mode at an unconverged
    ///   forward pass, unless allowed;
    /// - [`Error::AdjointSolveFailed`] when the implicit solve does not reach
    ///   its tolerance, with its residual;
    /// - [`Error::NonFiniteForward`] when the forward state has NaN or
    ///   infinite entries, and [`Error::NonFiniteGradient`] when the loss or
    ///   the gradient is not finite.
    ///
    /// On error, `grads` is unchanged.
    pub fn gradient(
        &self,
        mode: &GradientMode,
        forward: &ForwardResult<T>,
        data: MatRef<'_, T>,
        loss: &mut LossFn<'_, T>,
        grads: &mut Gradients<T>,
    ) -> Result<GradientOutput<T>> {
        mode.validate()?;
        self.check_data(data)?;
        self.check_forward_is_current(forward, data)?;
        check_gradients(self.splitting(), grads)?;
        mode.check_memory(
            forward.state.nrows(),
            data.ncols(),
            forward.options.max_iters,
            std::mem::size_of::<T>(),
        )?;
        let non_finite = forward.non_finite_count();
        if non_finite > 0 {
            return Err(Error::NonFiniteForward {
                samples: non_finite,
                batch: forward.samples.len(),
            });
        }

        // The gradient goes into a fresh buffer first, so that a failure or
        // a non-finite result leaves the caller's gradients unchanged.
        let mut local = Gradients::zeros_for(self.splitting());
        let mut output = match mode {
            GradientMode::Jfb => {
                let jfb = self.jfb_gradient(forward, data, loss, &mut local)?;
                self.output(forward, jfb.loss, jfb.x)
            }
            GradientMode::Truncated {
                steps,
                memory_limit_bytes,
            } => self.through_stored_steps(
                "truncated backpropagation",
                forward.state.as_ref(),
                *steps,
                *memory_limit_bytes,
                forward,
                data,
                loss,
                &mut local,
            )?,
            GradientMode::Unrolled {
                steps,
                memory_limit_bytes,
            } => {
                let mut initial = Mat::<T>::zeros(forward.state.nrows(), forward.state.ncols());
                self.splitting().init(initial.as_mut(), data);
                self.through_stored_steps(
                    "unrolled backpropagation",
                    initial.as_ref(),
                    steps.unwrap_or(forward.options.max_iters),
                    *memory_limit_bytes,
                    forward,
                    data,
                    loss,
                    &mut local,
                )?
            }
            GradientMode::Implicit(options) => self.implicit(options, forward, data, loss, &mut local)?,
        };
        if !output.loss.is_finite() {
            return Err(Error::NonFiniteGradient {
                what: "loss".into(),
                param: "(the loss itself)".into(),
                row: 0,
                col: 0,
                value: output.loss.to_f64_lossless(),
            });
        }
        local.check_finite()?;
        for (total, part) in grads.tensors_mut().iter_mut().zip(local.tensors()) {
            faer::zip!(total.as_mut(), part.as_ref()).for_each(|faer::unzip!(t, p)| *t += *p);
        }
        if output.forward_unconverged > 0 && !matches!(mode, GradientMode::Implicit(_)) {
            output.warnings.push(format!(
                "{} of {} forward samples did not converge",
                output.forward_unconverged,
                forward.samples.len()
            ));
        }
        Ok(output)
    }

    fn output(&self, forward: &ForwardResult<T>, loss: T, x: Mat<T>) -> GradientOutput<T> {
        GradientOutput {
            loss,
            x,
            forward_max_relative_residual: forward.max_relative_residual().to_f64_lossless(),
            forward_unconverged: forward
                .samples
                .iter()
                .filter(|s| s.status != Status::Converged)
                .count(),
            adjoint: None,
            stored_bytes: 0,
            warnings: Vec::new(),
        }
    }

    /// Evaluates the loss at the primal part of `z` and returns it with the
    /// state-shaped cotangent.
    fn loss_cotangent(&self, z: MatRef<'_, T>, loss: &mut LossFn<'_, T>) -> (T, Mat<T>, Mat<T>) {
        let splitting = self.splitting();
        let rows = splitting.primal_rows();
        let x = splitting.primal(z).to_owned();
        let mut cotangent = Mat::<T>::zeros(z.nrows(), z.ncols());
        let value = loss(x.as_ref(), cotangent.as_mut().subrows_mut(rows.start, rows.len()));
        (value, x, cotangent)
    }

    /// Backpropagates through `steps` iterations from `start`, which are run
    /// again and stored; `what` names the mode in memory errors.
    #[allow(clippy::too_many_arguments)]
    fn through_stored_steps(
        &self,
        what: &str,
        start: MatRef<'_, T>,
        steps: usize,
        memory_limit: Option<usize>,
        forward: &ForwardResult<T>,
        data: MatRef<'_, T>,
        loss: &mut LossFn<'_, T>,
        grads: &mut Gradients<T>,
    ) -> Result<GradientOutput<T>> {
        let what = format!("{what} through {steps} iterations");
        let mut store = StateStore::allocate(steps, start.nrows(), start.ncols(), memory_limit, &what)?;
        let final_state = self.run_and_store(start, data, &mut store)?;
        let (value, x, cotangent) = self.loss_cotangent(final_state.as_ref(), loss);
        self.backpropagate(&store, data, cotangent, grads);
        let mut output = self.output(forward, value, x);
        output.stored_bytes = store.bytes();
        Ok(output)
    }

    /// Runs `store.len()` steps from `start`, storing every input state, and
    /// returns the last output.
    fn run_and_store(
        &self,
        start: MatRef<'_, T>,
        data: MatRef<'_, T>,
        store: &mut StateStore<T>,
    ) -> Result<Mat<T>> {
        let splitting = self.splitting();
        let par = parallelism(self.options().threads);
        let mut buffer = MemBuffer::new(splitting.step_scratch(start.ncols(), par));
        let stack = MemStack::new(&mut buffer);
        let mut z = start.to_owned();
        let mut z_next = Mat::<T>::zeros(start.nrows(), start.ncols());
        for k in 0..store.len() {
            store.state_mut(k).copy_from(&z);
            splitting.step(z_next.as_mut(), z.as_ref(), data, par, stack);
            core::mem::swap(&mut z, &mut z_next);
        }
        Ok(z)
    }

    /// Propagates `cotangent` back through the stored steps, adding the
    /// parameter gradient of each.
    fn backpropagate(
        &self,
        store: &StateStore<T>,
        data: MatRef<'_, T>,
        cotangent: Mat<T>,
        grads: &mut Gradients<T>,
    ) {
        let splitting = self.splitting();
        let par = parallelism(self.options().threads);
        let mut buffer = MemBuffer::new(splitting.step_vjp_scratch(store.batch, par));
        let stack = MemStack::new(&mut buffer);
        let mut c = cotangent;
        let mut c_prev = Mat::<T>::zeros(c.nrows(), c.ncols());
        for k in (0..store.len()).rev() {
            splitting.step_vjp(
                Some(c_prev.as_mut()),
                store.state(k),
                data,
                c.as_ref(),
                Some(grads.tensors_mut()),
                par,
                stack,
            );
            core::mem::swap(&mut c, &mut c_prev);
        }
    }

    fn implicit(
        &self,
        options: &ImplicitOptions,
        forward: &ForwardResult<T>,
        data: MatRef<'_, T>,
        loss: &mut LossFn<'_, T>,
        grads: &mut Gradients<T>,
    ) -> Result<GradientOutput<T>> {
        let unconverged = forward
            .samples
            .iter()
            .filter(|s| s.status != Status::Converged)
            .count();
        let mut warnings = Vec::new();
        if unconverged > 0 {
            if !options.allow_unconverged_forward {
                return Err(Error::ForwardNotConverged {
                    unconverged,
                    samples: forward.samples.len(),
                    max_relative_residual: forward.max_relative_residual().to_f64_lossless(),
                });
            }
            warnings.push(format!(
                "implicit gradient at an unconverged forward pass: {unconverged} of {} samples did not converge",
                forward.samples.len()
            ));
        }
        let (value, x, g) = self.loss_cotangent(forward.state.as_ref(), loss);
        let system = AdjointSystem {
            splitting: self.splitting(),
            z: forward.state.as_ref(),
            data,
            par: parallelism(self.options().threads),
        };
        let (u, report) = match options.solver {
            AdjointSolver::FixedPoint => system.solve_fixed_point(g.as_ref(), options)?,
            AdjointSolver::BiCgStab => system.solve_bicgstab(g.as_ref(), options)?,
        };

        let par = system.par;
        let splitting = self.splitting();
        let mut buffer = MemBuffer::new(splitting.step_vjp_scratch(u.ncols(), par));
        splitting.step_vjp(
            None,
            forward.state.as_ref(),
            data,
            u.as_ref(),
            Some(grads.tensors_mut()),
            par,
            MemStack::new(&mut buffer),
        );
        let mut output = self.output(forward, value, x);
        output.adjoint = Some(report);
        output.warnings = warnings;
        Ok(output)
    }

    /// Estimates the spectral radius of `∂T/∂z` at the fixed point of each
    /// sample, by `iters` steps of power iteration on `(∂T/∂z)ᵀ` (the state
    /// part of `step_vjp`) from a Gaussian start with the given `seed`.
    ///
    /// The estimate of a sample is the geometric mean of the growth ratios
    /// `‖Jᵀv‖/‖v‖` over the second half of the iterations. It tends to the
    /// spectral radius as `iters` grows, also when the dominant eigenvalues
    /// form a complex pair, but slowly (with an error of order `1/iters`) when
    /// they are close in modulus. NaN or infinite states give NaN or
    /// infinite estimates, which `max` keeps.
    ///
    /// The spectral radius bounds the operator norm of `∂T/∂z` from below
    /// only, and JFB's descent guarantee (Fung et al., AAAI 2022) needs a
    /// bound on the norm. So an estimate of 1 or more shows that the
    /// guarantee fails, but an estimate below 1 does not prove that it holds.
    /// For a non-normal Jacobian the JFB direction can be an ascent direction.
    ///
    /// # Errors
    /// When `forward` is stale or `iters` is below 2.
    pub fn contraction_estimate(
        &self,
        forward: &ForwardResult<T>,
        data: MatRef<'_, T>,
        iters: usize,
        seed: u64,
    ) -> Result<ContractionEstimate> {
        self.check_data(data)?;
        self.check_forward_is_current(forward, data)?;
        if iters < 2 {
            return Err(Error::InvalidParameter {
                name: "contraction iterations".into(),
                value: iters as f64,
                requirement: "must be at least 2".into(),
            });
        }

        let splitting = self.splitting();
        let (state_dim, batch) = (forward.state.nrows(), forward.state.ncols());
        let par = parallelism(self.options().threads);
        let mut buffer = MemBuffer::new(splitting.step_vjp_scratch(batch, par));
        let stack = MemStack::new(&mut buffer);

        let mut v = gaussian_matrix::<T>(state_dim, batch, seed);
        let mut w = Mat::<T>::zeros(state_dim, batch);
        normalize_columns(v.as_mut());
        let averaged_from = iters / 2;
        let mut log_sum = vec![0.0f64; batch];
        for iteration in 0..iters {
            splitting.step_vjp(
                Some(w.as_mut()),
                forward.state.as_ref(),
                data,
                v.as_ref(),
                None,
                par,
                stack,
            );
            if iteration >= averaged_from {
                for (j, sum) in log_sum.iter_mut().enumerate() {
                    // v is a unit column, so the growth ratio is ‖Jᵀv‖.
                    *sum += col_norm2(w.as_ref(), j).to_f64_lossless().ln();
                }
            }
            core::mem::swap(&mut v, &mut w);
            normalize_columns(v.as_mut());
        }

        let counted = (iters - averaged_from) as f64;
        let per_sample: Vec<f64> = log_sum.iter().map(|sum| (sum / counted).exp()).collect();
        let max = per_sample.iter().fold(0.0, |acc: f64, &e| {
            if acc.is_nan() || e.is_nan() {
                f64::NAN
            } else {
                acc.max(e)
            }
        });
        let mean = per_sample.iter().sum::<f64>() / batch as f64;
        Ok(ContractionEstimate {
            max,
            mean,
            per_sample,
        })
    }
}

fn gaussian_matrix<T: Scalar>(nrows: usize, ncols: usize, seed: u64) -> Mat<T> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Mat::from_fn(nrows, ncols, |_, _| {
        let sample: f64 = StandardNormal.sample(&mut rng);
        T::lit(sample)
    })
}

fn normalize_columns<T: Scalar>(mut m: MatMut<'_, T>) {
    for j in 0..m.ncols() {
        let norm = col_norm2(m.rb(), j);
        if norm > T::zero() && norm.is_finite() {
            let inv = norm.recip();
            for i in 0..m.nrows() {
                m[(i, j)] *= inv;
            }
        }
    }
}

/// Iterates stored contiguously: `len` state batches of `state_dim x batch`.
struct StateStore<T> {
    values: Vec<T>,
    state_dim: usize,
    batch: usize,
}

impl<T: Scalar> StateStore<T> {
    /// Allocates room for `len` state batches, failing before allocating
    /// when the bytes exceed `limit`, and with an error instead of an abort
    /// when the allocation fails.
    fn allocate(
        len: usize,
        state_dim: usize,
        batch: usize,
        limit: Option<usize>,
        what: &str,
    ) -> Result<Self> {
        let entries = len.checked_mul(state_dim).and_then(|e| e.checked_mul(batch));
        let bytes = entries.and_then(|e| e.checked_mul(std::mem::size_of::<T>()));
        let fix = "use GradientMode::Jfb or Implicit, whose memory does not grow with the iteration count, \
                   or lower the iteration count or the batch size";
        let (Some(entries), Some(bytes)) = (entries, bytes) else {
            return Err(Error::MemoryLimit {
                what: what.to_string(),
                needed_bytes: usize::MAX,
                limit: "the address space".into(),
                fix: fix.into(),
            });
        };
        if let Some(limit) = limit
            && bytes > limit
        {
            return Err(Error::MemoryLimit {
                what: what.to_string(),
                needed_bytes: bytes,
                limit: format!("{limit} bytes"),
                fix: fix.into(),
            });
        }
        let mut values = Vec::new();
        values
            .try_reserve_exact(entries)
            .map_err(|_| Error::MemoryLimit {
                what: what.to_string(),
                needed_bytes: bytes,
                limit: "the memory available (the allocation failed)".into(),
                fix: fix.into(),
            })?;
        values.resize(entries, T::zero());
        Ok(Self {
            values,
            state_dim,
            batch,
        })
    }

    fn len(&self) -> usize {
        if self.state_dim == 0 || self.batch == 0 {
            0
        } else {
            self.values.len() / (self.state_dim * self.batch)
        }
    }

    fn bytes(&self) -> usize {
        self.values.len() * std::mem::size_of::<T>()
    }

    fn state(&self, k: usize) -> MatRef<'_, T> {
        let size = self.state_dim * self.batch;
        MatRef::from_column_major_slice(&self.values[k * size..(k + 1) * size], self.state_dim, self.batch)
    }

    fn state_mut(&mut self, k: usize) -> MatMut<'_, T> {
        let size = self.state_dim * self.batch;
        MatMut::from_column_major_slice_mut(
            &mut self.values[k * size..(k + 1) * size],
            self.state_dim,
            self.batch,
        )
    }
}

/// The adjoint operator `u ↦ u − (∂T/∂z)ᵀ u` at the fixed point `z`, applied
/// to a whole batch.
struct AdjointSystem<'a, Alg: Splitting> {
    splitting: &'a Alg,
    z: MatRef<'a, Alg::Real>,
    data: MatRef<'a, Alg::Real>,
    par: Par,
}

impl<Alg: Splitting> std::fmt::Debug for AdjointSystem<'_, Alg> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdjointSystem")
            .field("state_dim", &self.z.nrows())
            .field("batch", &self.z.ncols())
            .finish()
    }
}

/// Returns the tolerance of an adjoint solve: `rtol`, but not below 64
/// machine epsilons of `T`, which rounding keeps the residual above.
fn effective_rtol<T: Scalar>(rtol: f64) -> f64 {
    rtol.max(64.0 * T::epsilon().to_f64_lossless())
}

fn frobenius<T: Scalar>(m: MatRef<'_, T>) -> f64 {
    (0..m.ncols())
        .map(|j| col_norm2(m, j).to_f64_lossless().powi(2))
        .sum::<f64>()
        .sqrt()
}

impl<T: Scalar, Alg: Splitting<Real = T>> AdjointSystem<'_, Alg> {
    /// Writes `out = u − Jᵀ u`.
    fn apply_batch(&self, mut out: MatMut<'_, T>, u: MatRef<'_, T>, stack: &mut MemStack) {
        self.splitting
            .step_vjp(Some(out.rb_mut()), self.z, self.data, u, None, self.par, stack);
        faer::zip!(out, u).for_each(|faer::unzip!(o, u)| *o = *u - *o);
    }

    /// Returns `‖g − (u − Jᵀu)‖ / ‖g‖`.
    fn relative_residual(&self, g: MatRef<'_, T>, u: MatRef<'_, T>, stack: &mut MemStack) -> f64 {
        let mut applied = Mat::<T>::zeros(g.nrows(), g.ncols());
        self.apply_batch(applied.as_mut(), u, stack);
        let residual = g - &applied;
        let g_norm = frobenius(g);
        let r_norm = frobenius(residual.as_ref());
        if g_norm > 0.0 { r_norm / g_norm } else { r_norm }
    }

    fn failure(solver: AdjointSolver, iterations: usize, relative_residual: f64) -> Error {
        Error::AdjointSolveFailed {
            solver: solver.name().into(),
            iterations,
            relative_residual,
            fix: match solver {
                _ if !relative_residual.is_finite() => {
                    "the solve produced NaN or infinite values; check the loss gradient and the forward state"
                        .into()
                }
                AdjointSolver::FixedPoint => {
                    "the iteration converges only when T is contractive at the fixed point; \
                     try AdjointSolver::BiCgStab, more iterations, or JFB"
                        .into()
                }
                AdjointSolver::BiCgStab => {
                    "I − ∂T/∂z may be singular at this point (for example a non-unique fixed point); \
                     try more iterations, a looser tolerance, or JFB"
                        .into()
                }
            },
        }
    }

    fn solve_fixed_point(
        &self,
        g: MatRef<'_, T>,
        options: &ImplicitOptions,
    ) -> Result<(Mat<T>, AdjointReport)> {
        let batch = g.ncols();
        let mut buffer = MemBuffer::new(self.splitting.step_vjp_scratch(batch, self.par));
        let stack = MemStack::new(&mut buffer);
        let g_norm = frobenius(g).max(f64::MIN_POSITIVE);
        let rtol = effective_rtol::<T>(options.rtol);
        let mut u = g.to_owned();
        let mut next = Mat::<T>::zeros(g.nrows(), batch);
        let mut relative = f64::INFINITY;
        for iteration in 1..=options.max_iters.max(1) {
            // next = g + Jᵀ u; the residual of u is next − u.
            self.splitting.step_vjp(
                Some(next.as_mut()),
                self.z,
                self.data,
                u.as_ref(),
                None,
                self.par,
                stack,
            );
            faer::zip!(next.as_mut(), g).for_each(|faer::unzip!(n, g)| *n += *g);
            let step = &next - &u;
            relative = frobenius(step.as_ref()) / g_norm;
            core::mem::swap(&mut u, &mut next);
            if !relative.is_finite() {
                return Err(Self::failure(AdjointSolver::FixedPoint, iteration, relative));
            }
            if relative <= rtol {
                // The step test also passes when the iteration stagnates, so
                // the true residual must meet the tolerance too (with a margin
                // of 10 for rounding).
                let relative_residual = self.relative_residual(g, u.as_ref(), stack);
                if relative_residual.is_nan() || relative_residual > 10.0 * rtol {
                    return Err(Self::failure(
                        AdjointSolver::FixedPoint,
                        iteration,
                        relative_residual,
                    ));
                }
                return Ok((
                    u,
                    AdjointReport {
                        iterations: iteration,
                        relative_residual,
                    },
                ));
            }
        }
        Err(Self::failure(
            AdjointSolver::FixedPoint,
            options.max_iters,
            relative,
        ))
    }

    fn solve_bicgstab(&self, g: MatRef<'_, T>, options: &ImplicitOptions) -> Result<(Mat<T>, AdjointReport)> {
        let rtol = effective_rtol::<T>(options.rtol);
        let (state_dim, batch) = (g.nrows(), g.ncols());
        let dim = state_dim * batch;

        // The batch is one vector of length state_dim · batch, because the
        // Jacobian differs between samples and a block solver would mix them.
        let mut rhs = vec![T::zero(); dim];
        MatMut::from_column_major_slice_mut(&mut rhs, state_dim, batch).copy_from(g);
        let mut solution = vec![T::zero(); dim];

        let operator = VectorizedAdjoint {
            system: self,
            state_dim,
            batch,
        };
        let precond = IdentityPrecond { dim };
        // NOTE: faer 0.24's bicgstab leaves its residual uninitialized with
        // InitialGuessStatus::Zero, so the zero start is passed as
        // MaybeNonZero, which computes the residual b − A·0 explicitly.
        let params = BicgParams {
            initial_guess: InitialGuessStatus::MaybeNonZero,
            abs_tolerance: T::zero(),
            rel_tolerance: T::lit(rtol),
            max_iters: options.max_iters,
            ..BicgParams::default()
        };
        let mut buffer = MemBuffer::new(bicgstab_scratch(precond, precond, &operator, 1, self.par));
        let result = bicgstab(
            MatMut::from_column_major_slice_mut(&mut solution, dim, 1),
            precond,
            precond,
            &operator,
            MatRef::from_column_major_slice(&rhs, dim, 1),
            params,
            |_| {},
            self.par,
            MemStack::new(&mut buffer),
        );

        let u = MatRef::from_column_major_slice(&solution, state_dim, batch).to_owned();
        let mut check = MemBuffer::new(self.splitting.step_vjp_scratch(batch, self.par));
        let relative_residual = self.relative_residual(g, u.as_ref(), MemStack::new(&mut check));
        let iterations = match result {
            Ok(info) => info.iter_count,
            Err(_) => {
                return Err(Self::failure(
                    AdjointSolver::BiCgStab,
                    options.max_iters,
                    relative_residual,
                ));
            }
        };

        // BiCGSTAB tests a recursively updated residual, so the true residual
        // must meet the tolerance too (with a margin of 10 for rounding).
        if !relative_residual.is_finite() || relative_residual > 10.0 * rtol {
            return Err(Self::failure(
                AdjointSolver::BiCgStab,
                iterations,
                relative_residual,
            ));
        }
        Ok((
            u,
            AdjointReport {
                iterations,
                relative_residual,
            },
        ))
    }
}

/// [`AdjointSystem`] on vectors of length `state_dim · batch`, for faer's
/// matrix-free solvers.
struct VectorizedAdjoint<'s, 'a, Alg: Splitting> {
    system: &'s AdjointSystem<'a, Alg>,
    state_dim: usize,
    batch: usize,
}

impl<Alg: Splitting> std::fmt::Debug for VectorizedAdjoint<'_, '_, Alg> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorizedAdjoint")
            .field("state_dim", &self.state_dim)
            .field("batch", &self.batch)
            .finish()
    }
}

impl<T: Scalar, Alg: Splitting<Real = T>> LinOp<T> for VectorizedAdjoint<'_, '_, Alg> {
    fn apply_scratch(&self, _rhs_ncols: usize, par: Par) -> StackReq {
        StackReq::all_of(&[
            temp_mat_scratch::<T>(self.state_dim, self.batch),
            temp_mat_scratch::<T>(self.state_dim, self.batch),
            self.system.splitting.step_vjp_scratch(self.batch, par),
        ])
    }

    fn nrows(&self) -> usize {
        self.state_dim * self.batch
    }

    fn ncols(&self) -> usize {
        self.state_dim * self.batch
    }

    fn apply(&self, mut out: MatMut<'_, T>, rhs: MatRef<'_, T>, _par: Par, stack: &mut MemStack) {
        let (n, b) = (self.state_dim, self.batch);
        let (mut input, stack) = temp_mat_zeroed::<T, _, _>(n, b, stack);
        let mut input = input.as_mat_mut();
        let (mut output, stack) = temp_mat_zeroed::<T, _, _>(n, b, stack);
        let mut output = output.as_mat_mut();
        for k in 0..rhs.ncols() {
            for j in 0..b {
                for i in 0..n {
                    input[(i, j)] = rhs[(j * n + i, k)];
                }
            }
            self.system.apply_batch(output.rb_mut(), input.rb(), stack);
            for j in 0..b {
                for i in 0..n {
                    out[(j * n + i, k)] = output[(i, j)];
                }
            }
        }
    }

    fn conj_apply(&self, out: MatMut<'_, T>, rhs: MatRef<'_, T>, par: Par, stack: &mut MemStack) {
        // The operator is real, so its entrywise conjugate is itself.
        self.apply(out, rhs, par, stack);
    }
}
