//! Linearized ADMM for `min_x Σ_i g_i(K_i x)`.

use faer::dyn_stack::{MemStack, StackReq};
use faer::linalg::{temp_mat_scratch, temp_mat_uninit, temp_mat_zeroed};
use faer::mat::AsMatMut;
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use optlayer_core::columns::{map2, map3, update_with_outputs, update2};
use optlayer_core::product::{dense_product, same_kernel_at_every_width};
use optlayer_core::prox::EntrywisePass;
use optlayer_core::validate::{check_computed_step, step_in};
use optlayer_core::warm_start::{
    check_warm_start_count, decode_estimate, decode_warm_start_vector, encode_estimate,
    encode_warm_start_vector, set_parts_warm_start_state,
};
use optlayer_core::{
    Entrywise, Error, Operator, ParamInfo, Parameterized, Prox, Result, Scalar, Splitting, power_iteration,
    power_iteration_from, split_grads,
};

use crate::StackedOperator;

/// One term `g(K x)` of a [`LinearizedAdmm`] model: a linear operator `K`
/// and the prox of `g`.
pub struct Block<T: Scalar> {
    operator: Box<dyn Operator<T>>,
    prox: Box<dyn Prox<T>>,
}

impl<T: Scalar> std::fmt::Debug for Block<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let params: Vec<String> = (0..self.param_count())
            .map(|i| {
                let op_count = self.operator.param_count();
                let info = if i < op_count {
                    self.operator.param_info(i)
                } else {
                    self.prox.param_info(i - op_count)
                };
                format!("{} ({} x {})", info.name, info.nrows, info.ncols)
            })
            .collect();
        f.debug_struct("Block")
            .field("operator_shape", &(self.operator.nrows(), self.operator.ncols()))
            .field("prox_dim", &self.prox.dim())
            .field("params", &params)
            .finish()
    }
}

impl<T: Scalar> Block<T> {
    /// Creates the term `g(K x)` with `K = operator` and `g` given by `prox`.
    pub fn new(operator: impl Operator<T> + 'static, prox: impl Prox<T> + 'static) -> Self {
        Self {
            operator: Box::new(operator),
            prox: Box::new(prox),
        }
    }

    /// Returns the operator `K`.
    pub fn operator(&self) -> &dyn Operator<T> {
        &*self.operator
    }

    /// Returns the prox of `g`.
    pub fn prox(&self) -> &dyn Prox<T> {
        &*self.prox
    }

    fn param_count(&self) -> usize {
        self.operator.param_count() + self.prox.param_count()
    }
}

/// The step sizes of linearized ADMM.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LadmmSteps {
    /// Dual step `α > 0`.
    pub alpha: f64,
    /// Primal step `β > 0`.
    pub beta: f64,
    /// Prox step `λ > 0`.
    pub lambda: f64,
}

/// The rule that keeps the steps of [`LinearizedAdmm`] within the
/// convergence condition `α β ‖K‖₂² < 1`, where `K = [K_1; K_2; …]`, while
/// the operators change during training.
///
/// `‖K‖₂` is estimated by power iteration at construction and after every
/// parameter update, warm-started from the previous estimate. The estimate
/// is a lower bound of the true norm, so the rules keep a margin below 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepRule {
    /// Use `β` as given and reject parameters for which
    /// `α β ‖K‖₂² ≥ safety`, with [`Error::StepCondition`].
    Fixed {
        /// The bound, in (0, 1].
        safety: f64,
    },
    /// Use `β` as given while `α β ‖K‖₂² ≤ safety`; otherwise lower it to
    /// `safety / (α ‖K‖₂²)`.
    ShrinkBeta {
        /// The bound, in (0, 1).
        safety: f64,
    },
}

impl Default for StepRule {
    fn default() -> Self {
        StepRule::ShrinkBeta { safety: 0.99 }
    }
}

/// Linearized ADMM for `min_x Σ_i g_i(K_i x)`.
///
/// The state of one sample is `z = (x, p_1, ν_1, p_2, ν_2, …)`, with an
/// auxiliary variable `p_i ≈ K_i x` and a dual variable `ν_i` per block. One
/// step is
///
/// ```text
/// p_i⁺ = prox_{λ g_i}(p_i + λ [ν_i + α (K_i x − p_i)])
/// ν_i⁺ = ν_i + α (K_i x − p_i⁺)
/// x⁺   = x − β Σ_i K_iᵀ (2 ν_i⁺ − ν_i)
/// ```
///
/// A fixed point satisfies `K_i x = p_i`, `ν_i ∈ ∂g_i(p_i)` and
/// `Σ_i K_iᵀ ν_i = 0`, the optimality conditions of the model; it does not
/// depend on the step sizes. Convergence needs roughly `α β ‖K‖₂² < 1`; the
/// [`StepRule`] enforces it (the default lowers `β` when needed, with a 0.99
/// margin).
///
/// With the blocks `(Θ, ‖·‖₁)` and `(A, indicator of {d})` this is the sparse
/// recovery model `min ‖Θx‖₁ s.t. Ax = d` (Heaton and Fung, "Explainable AI
/// via learning to optimize", Scientific Reports 13, 2023).
///
/// The state rows are laid out as `x` (`primal_dim` rows), then for each
/// block `p_i` and `ν_i` (`K_i.nrows()` rows each).
///
/// NOTE: the number of steps has a heavy tail on small ℓ1 problems. On
/// 10,000 random sparse recovery problems with `n < 9` and a well-conditioned
/// Θ (the example `convergence_profile`), the median was 782 steps to
/// `rtol = 1e-10`, the 99th percentile 12,191, and one problem, whose
/// solution is not unique, had not converged after 1.5 million. The example
/// `degenerate_l1` (4 x 4 Gaussian Θ, 3 x 4 Gaussian A) needs about 3 million
/// steps to reach a relative residual of 1e-7.
pub struct LinearizedAdmm<T: Scalar> {
    primal_dim: usize,
    data_dim: usize,
    blocks: Vec<Block<T>>,
    offsets: Vec<usize>,
    state_dim: usize,
    alpha: T,
    beta_requested: T,
    beta: T,
    lambda: T,
    rule: StepRule,
    norm_estimate: T,
    power_vector: Option<Mat<T>>,
    stacked: Option<StackedMatrix<T>>,
}

/// `K = [K_1; K_2; …]` copied into one matrix, with `Kᵀ` stored
/// column-major, when every operator is dense: one product then computes
/// every `K_i x`, and one every `K_iᵀ y_i` summed.
#[derive(Clone, Debug)]
struct StackedMatrix<T: Scalar> {
    matrix: Mat<T>,
    transposed: Mat<T>,
    /// False from the moment an operator's parameter may have been written
    /// until the next [`refresh`](Self::refresh). Steps then multiply by
    /// each operator.
    current: bool,
}

impl<T: Scalar> StackedMatrix<T> {
    /// Stacks the operators' matrices; `None` unless there are two blocks or
    /// more, every operator gives its matrix, and the stack has more than
    /// 2,048 entries. Smaller stacks would take faer's kernel for small
    /// products at some batch widths and its blocked kernel at others, so
    /// that a sample's last bits would depend on the thread count (see
    /// [`same_kernel_at_every_width`]).
    fn of(blocks: &[Block<T>], primal_dim: usize) -> Option<Self> {
        let rows = blocks.iter().map(|b| b.operator.nrows()).sum();
        let gives_its_matrix = |block: &Block<T>| {
            let op = &block.operator;
            op.dense()
                .is_some_and(|m| m.nrows() == op.nrows() && m.ncols() == primal_dim)
        };
        if blocks.len() < 2
            || !blocks.iter().all(gives_its_matrix)
            || !same_kernel_at_every_width(rows, primal_dim)
        {
            return None;
        }
        let mut stacked = Self {
            matrix: Mat::zeros(rows, primal_dim),
            transposed: Mat::zeros(primal_dim, rows),
            current: false,
        };
        stacked.refresh(blocks);
        Some(stacked)
    }

    /// Copies the operators' matrices again, without allocating.
    fn refresh(&mut self, blocks: &[Block<T>]) {
        let mut start = 0;
        for block in blocks {
            let rows = block.operator.nrows();
            let part = block
                .operator
                .dense()
                .filter(|m| m.nrows() == rows && m.ncols() == self.matrix.ncols());
            let Some(part) = part else {
                // An operator that stops giving its matrix, or gives one of
                // another shape, keeps the stack out of use.
                self.current = false;
                return;
            };
            self.matrix.as_mut().subrows_mut(start, rows).copy_from(part);
            self.transposed
                .as_mut()
                .subcols_mut(start, rows)
                .copy_from(part.transpose());
            start += rows;
        }
        self.current = true;
    }
}

/// Power-iteration settings for `‖K‖₂`: a cold start runs up to this many
/// steps, warm starts usually stop after a few.
const NORM_MAX_ITERS: usize = 2000;

impl<T: Scalar> std::fmt::Debug for LinearizedAdmm<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinearizedAdmm")
            .field("primal_dim", &self.primal_dim)
            .field("data_dim", &self.data_dim)
            .field("state_dim", &self.state_dim)
            .field("blocks", &self.blocks)
            .field("alpha", &self.alpha)
            .field("beta", &self.beta)
            .field("beta_requested", &self.beta_requested)
            .field("lambda", &self.lambda)
            .field("rule", &self.rule)
            .field("norm_estimate", &self.norm_estimate)
            .finish()
    }
}
const NORM_REL_TOL: f64 = 1e-9;

impl<T: Scalar> LinearizedAdmm<T> {
    /// Creates the splitting for `min_x Σ_i g_i(K_i x)` with `x ∈ R^primal_dim`
    /// and data batches of `data_dim` rows, using the default [`StepRule`].
    ///
    /// # Errors
    /// - `primal_dim` is zero, `blocks` is empty, or two parameters share a name;
    /// - an operator's input dimension is not `primal_dim`;
    /// - a prox is defined on another dimension than its operator's output,
    ///   or reads more data rows than `data_dim`;
    /// - a step size is not positive and finite, or no valid step exists.
    pub fn new(primal_dim: usize, data_dim: usize, blocks: Vec<Block<T>>, steps: LadmmSteps) -> Result<Self> {
        Self::with_rule(primal_dim, data_dim, blocks, steps, StepRule::default())
    }

    /// Creates the splitting with an explicit [`StepRule`].
    ///
    /// # Errors
    /// As [`new`](Self::new), and when the rule's safety is not in (0, 1]
    /// (fixed rule) or (0, 1) (shrinking rule).
    pub fn with_rule(
        primal_dim: usize,
        data_dim: usize,
        blocks: Vec<Block<T>>,
        steps: LadmmSteps,
        rule: StepRule,
    ) -> Result<Self> {
        validate_blocks(primal_dim, data_dim, &blocks)?;
        let alpha = step_in::<T>("alpha", steps.alpha)?;
        let beta = step_in::<T>("beta", steps.beta)?;
        let lambda = step_in::<T>("lambda", steps.lambda)?;
        // A fixed rule rejects steps at the safety bound, so 1 is valid there.
        // The shrinking rule sets α β ‖K‖² to the safety itself, so the
        // safety must stay strictly below the convergence bound 1.
        let (safety, upper_ok, requirement) = match rule {
            StepRule::Fixed { safety } => (safety, safety <= 1.0, "must be in (0, 1]"),
            StepRule::ShrinkBeta { safety } => (safety, safety < 1.0, "must be in (0, 1)"),
        };
        if !(safety > 0.0 && upper_ok) {
            return Err(Error::InvalidParameter {
                name: "step rule safety".into(),
                value: safety,
                requirement: requirement.into(),
            });
        }

        let mut offsets = Vec::with_capacity(blocks.len());
        let mut next = primal_dim;
        for block in &blocks {
            offsets.push(next);
            next += 2 * block.operator.nrows();
        }
        let mut splitting = Self {
            primal_dim,
            data_dim,
            blocks,
            offsets,
            state_dim: next,
            alpha,
            beta_requested: beta,
            beta,
            lambda,
            rule,
            norm_estimate: T::zero(),
            power_vector: None,
            stacked: None,
        };
        let lambda = splitting.lambda;
        if splitting
            .blocks
            .iter()
            .all(|b| b.prox.entrywise(lambda).is_some())
        {
            splitting.stacked = StackedMatrix::of(&splitting.blocks, primal_dim);
        }
        splitting.refresh_steps()?;
        Ok(splitting)
    }

    /// Drops the stacked copy of the operators' matrices (see the type's
    /// documentation), which takes twice the memory of the matrices. Steps
    /// then multiply by each operator apart.
    pub fn without_stacked_copy(mut self) -> Self {
        self.stacked = None;
        self
    }

    /// Returns whether steps multiply by the stacked copy of the operators'
    /// matrices: there are two blocks or more, the operators are all dense,
    /// every prox applies one function to each entry, the copy is kept, and
    /// no parameter was written since the last
    /// [`Parameterized::after_param_update`]. A prox that reads rows of the
    /// data also needs the data to have them, which only a step can check.
    pub fn uses_stacked_copy(&self) -> bool {
        let lambda = self.lambda;
        self.stacked.as_ref().is_some_and(|s| s.current)
            && self.blocks.iter().all(|b| b.prox.entrywise(lambda).is_some())
    }

    /// Returns the stacked matrix when a step can multiply by it: the copy
    /// is current, and every block's prox applies one function to each entry
    /// and runs inside the pass for `data`.
    fn stacked_for(&self, data: MatRef<'_, T>) -> Option<&StackedMatrix<T>> {
        let stacked = self.stacked.as_ref().filter(|s| s.current)?;
        let lambda = self.lambda;
        self.blocks
            .iter()
            .all(|b| {
                b.prox
                    .entrywise(lambda)
                    .is_some_and(|form| form.runs_on(data, b.operator.nrows()))
            })
            .then_some(stacked)
    }

    /// Returns the blocks.
    pub fn blocks(&self) -> &[Block<T>] {
        &self.blocks
    }

    /// Returns the last power-iteration estimate of `‖[K_1; K_2; …]‖₂`.
    pub fn norm_estimate(&self) -> T {
        self.norm_estimate
    }

    /// Returns `α β ‖K‖₂²` for the steps in use, with the estimated norm.
    pub fn step_condition(&self) -> T {
        self.alpha * self.beta * self.norm_estimate * self.norm_estimate
    }

    /// Returns the primal step `β` in use, which the [`StepRule`] may have
    /// lowered below the requested one.
    pub fn beta(&self) -> T {
        self.beta
    }

    /// Returns the rows of the state holding `p_i` (`aux`) and `ν_i` (`dual`) of block `i`.
    pub fn block_rows(&self, i: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let r = self.blocks[i].operator.nrows();
        let off = self.offsets[i];
        (off..off + r, off + r..off + 2 * r)
    }

    /// Re-estimates `‖K‖₂` and sets `β` by the step rule.
    fn refresh_steps(&mut self) -> Result<()> {
        let stacked = StackedOperator::new(
            self.blocks.iter().map(|b| &*b.operator).collect(),
            self.primal_dim,
        );
        let (norm, vector) = match self.power_vector.take() {
            Some(start) => power_iteration_from(&stacked, start, NORM_MAX_ITERS, NORM_REL_TOL),
            None => power_iteration(&stacked, NORM_MAX_ITERS, NORM_REL_TOL, 0),
        };
        if !norm.is_finite() {
            return Err(Error::Numerical {
                what: "estimate of ||K||_2 for linearized ADMM".into(),
                reason: format!(
                    "power iteration returned {norm}; check the operators for non-finite entries"
                ),
            });
        }
        self.power_vector = Some(vector);
        self.norm_estimate = norm;
        self.beta = self.beta_for_norm(norm)?;
        Ok(())
    }

    /// Returns `β` by the step rule for the estimate `norm ≈ ‖K‖₂`.
    fn beta_for_norm(&self, norm: T) -> Result<T> {
        let norm_sq = norm * norm;
        let requested = self.alpha * self.beta_requested * norm_sq;
        let mut beta = self.beta_requested;
        match self.rule {
            StepRule::Fixed { safety } => {
                if requested >= T::lit(safety) {
                    return Err(Error::StepCondition {
                        algorithm: "linearized ADMM".into(),
                        condition: "alpha * beta * ||K||_2^2 < safety".into(),
                        value: requested.to_f64_lossless(),
                        bound: safety,
                        fix: format!(
                            "choose beta below {:.6e} for alpha = {} and ||K||_2 ≈ {:.6}, or use StepRule::ShrinkBeta",
                            safety / (self.alpha * norm_sq).to_f64_lossless(),
                            self.alpha,
                            norm
                        ),
                    });
                }
            }
            StepRule::ShrinkBeta { safety } => {
                if requested > T::lit(safety) {
                    beta = T::lit(safety) / (self.alpha * norm_sq);
                }
            }
        }
        check_computed_step(
            "linearized ADMM",
            "beta",
            beta,
            &format!("alpha = {} and ||K||_2 ≈ {norm}", self.alpha),
        )?;
        if !requested.is_finite() {
            return Err(Error::Numerical {
                what: "step condition alpha * beta * ||K||_2^2 of linearized ADMM".into(),
                reason: format!(
                    "it overflows in {} with ||K||_2 ≈ {norm}; rescale the operators",
                    T::NAME
                ),
            });
        }
        Ok(beta)
    }

    /// Returns the offset of block `index`'s parameters and the block, for a
    /// model-wide parameter index.
    fn locate_param(&self, index: usize) -> (usize, usize) {
        let mut start = 0;
        for (b, block) in self.blocks.iter().enumerate() {
            let count = block.param_count();
            if index < start + count {
                return (b, index - start);
            }
            start += count;
        }
        panic!("parameter index {index} out of range: linearized ADMM has {start} parameters")
    }
}

fn validate_blocks<T: Scalar>(primal_dim: usize, data_dim: usize, blocks: &[Block<T>]) -> Result<()> {
    if primal_dim == 0 {
        return Err(Error::Empty {
            what: "primal dimension of linearized ADMM".into(),
            fix: "pass primal_dim >= 1".into(),
        });
    }
    if blocks.is_empty() {
        return Err(Error::Empty {
            what: "block list of linearized ADMM".into(),
            fix: "pass at least one (operator, prox) block".into(),
        });
    }
    let mut names: Vec<String> = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let op = &block.operator;
        if op.ncols() != primal_dim {
            return Err(Error::ShapeMismatch {
                what: format!("operator of block {i}"),
                expected: format!("{primal_dim} columns (the primal dimension)"),
                found: format!("{} columns", op.ncols()),
            });
        }
        if let Some(dim) = block.prox.dim()
            && dim != op.nrows()
        {
            return Err(Error::ShapeMismatch {
                what: format!("prox of block {i}"),
                expected: format!("dimension {} (the rows of the block's operator)", op.nrows()),
                found: format!("dimension {dim}"),
            });
        }
        if block.prox.data_rows_needed() > data_dim {
            return Err(Error::ShapeMismatch {
                what: format!("prox of block {i}"),
                expected: format!("at most {data_dim} data rows (the data dimension)"),
                found: format!("{} data rows read", block.prox.data_rows_needed()),
            });
        }
        let infos = (0..op.param_count())
            .map(|j| op.param_info(j))
            .chain((0..block.prox.param_count()).map(|j| block.prox.param_info(j)));
        for info in infos {
            if names.contains(&info.name) {
                return Err(Error::DuplicateParameter { name: info.name });
            }
            names.push(info.name);
        }
    }
    Ok(())
}

impl<T: Scalar> Parameterized<T> for LinearizedAdmm<T> {
    fn param_count(&self) -> usize {
        self.blocks.iter().map(Block::param_count).sum()
    }

    fn param_info(&self, index: usize) -> ParamInfo {
        let (b, local) = self.locate_param(index);
        let block = &self.blocks[b];
        let op_count = block.operator.param_count();
        if local < op_count {
            block.operator.param_info(local)
        } else {
            block.prox.param_info(local - op_count)
        }
    }

    fn param(&self, index: usize) -> MatRef<'_, T> {
        let (b, local) = self.locate_param(index);
        let block = &self.blocks[b];
        let op_count = block.operator.param_count();
        if local < op_count {
            block.operator.param(local)
        } else {
            block.prox.param(local - op_count)
        }
    }

    fn param_mut(&mut self, index: usize) -> MatMut<'_, T> {
        let (b, local) = self.locate_param(index);
        let block = &mut self.blocks[b];
        let op_count = block.operator.param_count();
        if local < op_count {
            if let Some(stacked) = &mut self.stacked {
                stacked.current = false;
            }
            block.operator.param_mut(local)
        } else {
            block.prox.param_mut(local - op_count)
        }
    }

    fn after_param_update(&mut self) -> Result<()> {
        // An operator may rewrite its matrix here (a normalization), and a
        // later block may fail, so the copy stays out of use until refreshed.
        if let Some(stacked) = &mut self.stacked {
            stacked.current = false;
        }
        for block in &mut self.blocks {
            block.operator.after_param_update()?;
            block.prox.after_param_update()?;
        }
        if let Some(stacked) = &mut self.stacked {
            stacked.refresh(&self.blocks);
        }
        self.refresh_steps()
    }

    /// Returns each block's operator and prox states, in block order, then
    /// the power-iteration vector for `‖K‖₂` and the estimate (`1 x 1`).
    fn warm_start_state(&self) -> Vec<Mat<T>> {
        let mut state: Vec<Mat<T>> = self.part_warm_start_states().into_iter().flatten().collect();
        state.push(encode_warm_start_vector(self.power_vector.as_ref()));
        state.push(encode_estimate(self.norm_estimate));
        state
    }

    /// Restores the state and sets `β` by the step rule for the restored
    /// estimate of `‖K‖₂`.
    fn set_warm_start_state(&mut self, state: &[Mat<T>]) -> Result<()> {
        let previous = self.part_warm_start_states();
        let parts_len: usize = previous.iter().map(Vec::len).sum();
        check_warm_start_count("linearized ADMM", state, parts_len + 2)?;
        let vector = decode_warm_start_vector(
            "power-iteration vector of linearized ADMM",
            &state[parts_len],
            self.primal_dim,
        )?;
        let norm = decode_estimate("estimate of ||K||_2 of linearized ADMM", &state[parts_len + 1])?;
        let beta = self.beta_for_norm(norm)?;
        if let Some(stacked) = &mut self.stacked {
            stacked.current = false;
        }
        let blocks = &mut self.blocks;
        set_parts_warm_start_state(
            "the blocks of linearized ADMM",
            &previous,
            &state[..parts_len],
            |part, value| {
                let block = &mut blocks[part / 2];
                if part % 2 == 0 {
                    block.operator.set_warm_start_state(value)
                } else {
                    block.prox.set_warm_start_state(value)
                }
            },
        )?;
        // Restoring a checkpoint writes the parameters through `param_mut` and
        // ends here, without `after_param_update`; the stacked copy is
        // refreshed as the operators refresh theirs.
        if let Some(stacked) = &mut self.stacked {
            stacked.refresh(&self.blocks);
        }
        self.power_vector = vector;
        self.norm_estimate = norm;
        self.beta = beta;
        Ok(())
    }
}

impl<T: Scalar> LinearizedAdmm<T> {
    /// Returns the states of the operator and the prox of every block, in
    /// that order.
    fn part_warm_start_states(&self) -> Vec<Vec<Mat<T>>> {
        self.blocks
            .iter()
            .flat_map(|block| [block.operator.warm_start_state(), block.prox.warm_start_state()])
            .collect()
    }
}

/// Scratch matrices per block in [`LinearizedAdmm::step`].
const STEP_TEMPS: usize = 1;
/// Scratch matrices per block in [`LinearizedAdmm::step_vjp`].
const VJP_TEMPS: usize = 8;

impl<T: Scalar> LinearizedAdmm<T> {
    fn scratch(&self, batch: usize, par: Par, temps: usize) -> StackReq {
        let per_block: Vec<StackReq> = self
            .blocks
            .iter()
            .map(|block| {
                let r = block.operator.nrows();
                let mut reqs = vec![temp_mat_scratch::<T>(r, batch); temps];
                reqs.push(block.operator.apply_scratch(batch, par));
                StackReq::all_of(&reqs)
            })
            .collect();
        StackReq::any_of(&per_block)
    }
}

impl<T: Scalar> Splitting for LinearizedAdmm<T> {
    type Real = T;

    fn name(&self) -> &str {
        "linearized ADMM"
    }

    fn primal_dim(&self) -> usize {
        self.primal_dim
    }

    fn data_dim(&self) -> usize {
        self.data_dim
    }

    fn state_dim(&self) -> usize {
        self.state_dim
    }

    /// Returns the root sum of squares of the distances of `K_i x` from the
    /// sets of the blocks whose `g_i` is an indicator (for the block
    /// `(A, indicator of {d})`, the residual `‖Ax − d‖`), or `None` when no
    /// block is an indicator.
    fn constraint_residual(&self, z: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        let x = z.subrows(0, self.primal_dim).subcols(col, 1);
        let distances = self.blocks.iter().filter(|b| b.prox.is_indicator()).map(|block| {
            let op = &*block.operator;
            let mut kx = Mat::zeros(op.nrows(), 1);
            let mut buffer = faer::dyn_stack::MemBuffer::new(op.apply_scratch(1, Par::Seq));
            op.apply(
                kx.as_mut(),
                Accum::Replace,
                T::one(),
                x,
                Par::Seq,
                MemStack::new(&mut buffer),
            );
            block.prox.infeasibility(kx.as_ref(), data.subcols(col, 1), 0)
        });
        crate::combine_distances(distances)
    }

    fn step_sizes(&self) -> Vec<(String, f64)> {
        vec![
            ("alpha".into(), self.alpha.to_f64_lossless()),
            ("beta".into(), self.beta.to_f64_lossless()),
            ("lambda".into(), self.lambda.to_f64_lossless()),
        ]
    }

    fn step_scratch(&self, batch: usize, par: Par) -> StackReq {
        let per_block = self.scratch(batch, par, STEP_TEMPS);
        match &self.stacked {
            Some(stacked) => per_block.or(temp_mat_scratch::<T>(stacked.matrix.nrows(), batch)),
            None => per_block,
        }
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
        let n = self.primal_dim;
        let (alpha, beta, lambda) = (self.alpha, self.beta, self.lambda);
        let one = T::one();
        let two = T::lit(2.0);
        let x = z.subrows(0, n);
        let (mut x_next, mut rest) = z_next.split_at_row_mut(n);
        x_next.copy_from(x);

        if let Some(stacked) = self.stacked_for(data) {
            // SAFETY: the product writes every entry of w before it is read.
            let (mut w, _) = unsafe { temp_mat_uninit::<T, _, _>(stacked.matrix.nrows(), batch, stack) };
            let mut w = w.as_mat_mut();
            // w = K x for every block; each block's pass then overwrites its
            // rows with 2ν⁺ − ν, and one product adds −β Kᵀ w to x⁺.
            dense_product(w.rb_mut(), Accum::Replace, one, stacked.matrix.as_ref(), x, par);
            let mut start = 0;
            for (block, &offset) in self.blocks.iter().zip(&self.offsets) {
                let r = block.operator.nrows();
                let (p_next, tail) = rest.split_at_row_mut(r);
                let (nu_next, tail) = tail.split_at_row_mut(r);
                rest = tail;
                let p = z.subrows(offset, r);
                let form = block.prox.entrywise(lambda);
                // `stacked_for` checked the form for these data; a prox whose
                // form changes between two calls breaks the step.
                debug_assert!(
                    form.is_some(),
                    "the prox of block at row {offset} lost its entry-wise form"
                );
                if let Some(form) = form {
                    let pass = BlockPass {
                        nu_next,
                        p_next,
                        w: w.rb_mut().subrows_mut(start, r),
                        p,
                        nu: z.subrows(offset + r, r),
                        alpha,
                        lambda,
                        kx_in_w: true,
                    };
                    let ran = form.run_pass(pass, data, r, p);
                    debug_assert!(ran, "the entry-wise pass of block at row {offset} did not run");
                }
                start += r;
            }
            // A single column multiplies by the transposed view, as the
            // dense operators do, since faer rounds it another way.
            let lhs = if batch >= 2 {
                stacked.transposed.as_ref()
            } else {
                stacked.matrix.as_ref().transpose()
            };
            dense_product(x_next, Accum::Add, -beta, lhs, w.rb(), par);
            return;
        }

        for (block, &offset) in self.blocks.iter().zip(&self.offsets) {
            let r = block.operator.nrows();
            let p = z.subrows(offset, r);
            let nu = z.subrows(offset + r, r);
            let (p_next, tail) = rest.split_at_row_mut(r);
            let (mut nu_next, tail) = tail.split_at_row_mut(r);
            rest = tail;

            // SAFETY: every entry of v is written below before it is read:
            // by the fused pass, or by `map3` and then `map2`.
            let (mut v, stack) = unsafe { temp_mat_uninit::<T, _, _>(r, batch, stack) };
            let mut v = v.as_mat_mut();

            // Kx is written into the rows of ν⁺, and ν⁺ is later computed over
            // it in place. The prox argument is v = p + λ(ν + α(Kx − p)).
            block
                .operator
                .apply(nu_next.rb_mut(), Accum::Replace, one, x, par, stack);
            let mut p_next = p_next;
            let fused = block.prox.entrywise(lambda).is_some_and(|form| {
                fused_update(
                    form,
                    nu_next.rb_mut(),
                    p_next.rb_mut(),
                    v.rb_mut(),
                    p,
                    nu,
                    data,
                    [alpha, lambda],
                )
            });
            if !fused {
                map3(v.rb_mut(), p, nu, nu_next.rb(), move |p, nu, kx| {
                    p + lambda * (nu + alpha * (kx - p))
                });

                // p⁺ = prox_{λg}(v), then ν⁺ = ν + α(Kx − p⁺).
                block.prox.prox(p_next.rb_mut(), v.rb(), lambda, data);
                update2(nu_next.rb_mut(), nu, p_next.rb(), move |kx, nu, pn| {
                    nu + alpha * (kx - pn)
                });

                // v is reused for 2ν⁺ − ν.
                map2(v.rb_mut(), nu_next.rb(), nu, move |nn, nu| two * nn - nu);
            }

            // x⁺ −= β Kᵀ(2ν⁺ − ν).
            block
                .operator
                .apply_adjoint(x_next.rb_mut(), Accum::Add, -beta, v.rb(), par, stack);
        }
    }

    fn step_vjp_scratch(&self, batch: usize, par: Par) -> StackReq {
        self.scratch(batch, par, VJP_TEMPS)
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
        let n = self.primal_dim;
        let (alpha, beta, lambda) = (self.alpha, self.beta, self.lambda);
        let one = T::one();
        let two = T::lit(2.0);
        let x = z.subrows(0, n);
        let x_next_bar = cotangent.subrows(0, n);

        // Split z_bar into the x rows and the rest; x̄ starts as x̄⁺ (x⁺ = x − …).
        let mut z_bar = z_bar;
        let (mut x_bar, mut rest_bar) = match z_bar.as_mut() {
            Some(zb) => {
                let (xb, rb) = zb.rb_mut().split_at_row_mut(n);
                (Some(xb), Some(rb))
            }
            None => (None, None),
        };
        if let Some(xb) = x_bar.as_mut() {
            xb.copy_from(x_next_bar);
        }

        let mut grads = grads;
        for (block, &offset) in self.blocks.iter().zip(&self.offsets) {
            let r = block.operator.nrows();
            let (mut op_grads, prox_grads) = match grads.take() {
                Some(all) => {
                    let (op, tail) = split_grads(all, block.operator.param_count());
                    let (prox, tail) = split_grads(tail, block.prox.param_count());
                    grads = Some(tail);
                    (Some(op), Some(prox))
                }
                None => (None, None),
            };

            let p = z.subrows(offset, r);
            let nu = z.subrows(offset + r, r);
            let p_next_bar = cotangent.subrows(offset, r);
            let nu_next_bar = cotangent.subrows(offset + r, r);

            let (mut kx, stack) = temp_mat_zeroed::<T, _, _>(r, batch, stack);
            let mut kx = kx.as_mat_mut();
            let (mut v, stack) = temp_mat_zeroed::<T, _, _>(r, batch, stack);
            let mut v = v.as_mat_mut();
            let (mut p_next, stack) = temp_mat_zeroed::<T, _, _>(r, batch, stack);
            let mut p_next = p_next.as_mat_mut();
            let (mut w, stack) = temp_mat_zeroed::<T, _, _>(r, batch, stack);
            let mut w = w.as_mat_mut();
            let (mut w_bar, stack) = temp_mat_zeroed::<T, _, _>(r, batch, stack);
            let mut w_bar = w_bar.as_mat_mut();
            let (mut nu_next_total, stack) = temp_mat_zeroed::<T, _, _>(r, batch, stack);
            let mut nu_next_total = nu_next_total.as_mat_mut();
            let (mut p_next_total, stack) = temp_mat_zeroed::<T, _, _>(r, batch, stack);
            let mut p_next_total = p_next_total.as_mat_mut();
            let (mut v_bar, stack) = temp_mat_zeroed::<T, _, _>(r, batch, stack);
            let mut v_bar = v_bar.as_mat_mut();

            // Recompute the forward quantities of this block.
            block
                .operator
                .apply(kx.rb_mut(), Accum::Replace, one, x, par, stack);
            faer::zip!(v.rb_mut(), p, nu, kx.rb())
                .for_each(|faer::unzip!(v, p, nu, kx)| *v = *p + lambda * (*nu + alpha * (*kx - *p)));
            block.prox.prox(p_next.rb_mut(), v.rb(), lambda, data);
            faer::zip!(w.rb_mut(), nu, kx.rb(), p_next.rb())
                .for_each(|faer::unzip!(w, nu, kx, pn)| *w = *nu + two * alpha * (*kx - *pn));

            // x⁺ = x − β Kᵀ w: the parameter term and w̄ = −β K x̄⁺.
            if let Some(g) = op_grads.as_deref_mut() {
                block
                    .operator
                    .accumulate_grad_adjoint(g, -beta, x_next_bar, w.rb(), par);
            }
            block
                .operator
                .apply(w_bar.rb_mut(), Accum::Replace, -beta, x_next_bar, par, stack);

            // w = 2ν⁺ − ν and ν⁺ = ν + α(Kx − p⁺): total cotangents on ν⁺ and p⁺.
            faer::zip!(nu_next_total.rb_mut(), nu_next_bar, w_bar.rb())
                .for_each(|faer::unzip!(t, c, wb)| *t = *c + two * *wb);
            faer::zip!(p_next_total.rb_mut(), p_next_bar, nu_next_total.rb())
                .for_each(|faer::unzip!(t, c, nt)| *t = *c - alpha * *nt);

            // p⁺ = prox(v).
            block
                .prox
                .prox_vjp(v_bar.rb_mut(), v.rb(), lambda, data, p_next_total.rb());
            if let Some(g) = prox_grads {
                block
                    .prox
                    .accumulate_grad(g, v.rb(), lambda, data, p_next_total.rb());
            }

            // v = (1 − λα) p + λ ν + λα Kx and ν⁺: the cotangent on Kx, stored in kx.
            faer::zip!(kx.rb_mut(), nu_next_total.rb(), v_bar.rb())
                .for_each(|faer::unzip!(a, nt, vb)| *a = alpha * *nt + lambda * alpha * *vb);
            if let Some(g) = op_grads {
                block.operator.accumulate_grad(g, one, kx.rb(), x, par);
            }

            if let (Some(xb), Some(rb)) = (x_bar.as_mut(), rest_bar.as_mut()) {
                block
                    .operator
                    .apply_adjoint(xb.rb_mut(), Accum::Add, one, kx.rb(), par, stack);
                let local = rb.rb_mut().subrows_mut(offset - n, 2 * r);
                let (mut p_bar, mut nu_bar) = local.split_at_row_mut(r);
                let keep = one - lambda * alpha;
                faer::zip!(p_bar.rb_mut(), v_bar.rb()).for_each(|faer::unzip!(pb, vb)| *pb = keep * *vb);
                faer::zip!(nu_bar.rb_mut(), nu_next_bar, w_bar.rb(), v_bar.rb())
                    .for_each(|faer::unzip!(nb, c, wb, vb)| *nb = *c + *wb + lambda * *vb);
            }
        }
    }
}

/// Runs the element-wise part of a block's step in one pass, for a prox
/// that applies one function to each entry. `Kx` is in the rows of
/// `nu_next` on entry. The pass writes `p⁺ = prox(p + λ(ν + α(Kx − p)))`,
/// then `ν⁺ = ν + α(Kx − p⁺)` over `Kx`, then `2ν⁺ − ν` into `w`. It does
/// the operations of the three separate passes in the same order, so the
/// results agree bit for bit. The exception is a NaN, whose sign or payload
/// may differ: where both operands of an operation are NaN, the operand
/// order the compiler picks decides which one propagates. Returns `false`,
/// having written nothing, for forms it does not know and for data without
/// the rows a form reads, including rows past `usize::MAX`.
#[allow(clippy::too_many_arguments)]
fn fused_update<T: Scalar>(
    form: Entrywise<T>,
    nu_next: MatMut<'_, T>,
    p_next: MatMut<'_, T>,
    w: MatMut<'_, T>,
    p: MatRef<'_, T>,
    nu: MatRef<'_, T>,
    data: MatRef<'_, T>,
    [alpha, lambda]: [T; 2],
) -> bool {
    let rows = p.nrows();
    let pass = BlockPass {
        nu_next,
        p_next,
        w,
        p,
        nu,
        alpha,
        lambda,
        kx_in_w: false,
    };
    form.run_pass(pass, data, rows, p)
}

/// The element-wise part of a block's step, run by [`Entrywise::run_pass`].
/// `K x` is read from the rows of `ν⁺` (`kx_in_w = false`, see
/// [`fused_update`]) or from the rows of `w` (a step with the stacked
/// matrix), and is overwritten by `ν⁺` or `2ν⁺ − ν` respectively. Both
/// orders do the same arithmetic.
struct BlockPass<'a, T> {
    nu_next: MatMut<'a, T>,
    p_next: MatMut<'a, T>,
    w: MatMut<'a, T>,
    p: MatRef<'a, T>,
    nu: MatRef<'a, T>,
    alpha: T,
    lambda: T,
    kx_in_w: bool,
}

impl<T: Scalar> EntrywisePass<T> for BlockPass<'_, T> {
    fn run<P: Fn(T, T) -> T + Copy>(self, prox: P, data: MatRef<'_, T>) {
        let (alpha, lambda, two) = (self.alpha, self.lambda, T::lit(2.0));
        let update = move |kx: T, p: T, nu: T, d: T| {
            let pn = prox(p + lambda * (nu + alpha * (kx - p)), d);
            let nn = nu + alpha * (kx - pn);
            (nn, pn, two * nn - nu)
        };
        if self.kx_in_w {
            update_with_outputs(
                self.w,
                self.nu_next,
                self.p_next,
                self.p,
                self.nu,
                data,
                move |kx, p, nu, d| {
                    let (nn, pn, w) = update(kx, p, nu, d);
                    (w, nn, pn)
                },
            );
        } else {
            update_with_outputs(self.nu_next, self.p_next, self.w, self.p, self.nu, data, update);
        }
    }
}
