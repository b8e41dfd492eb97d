//! The trainable layer: a splitting iterated to its fixed point.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::prelude::ReborrowMut;
use faer::{Mat, MatMut, MatRef, Par};

use crate::anderson::{self, AndersonOptions, AndersonReport, MIN_STEP_COLUMNS};
use crate::columns::swap_cols;
use crate::validate::{check_finite, check_nonempty, check_nonnegative, check_rows, check_shape};
use crate::{
    Error, ParamInfo, Parameterized, Result, Scalar, Splitting, matrix_fingerprint, params_fingerprint,
};

/// Settings of a forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardOptions {
    /// Maximum number of steps per sample; at least 1.
    pub max_iters: usize,
    /// Relative tolerance on the fixed-point residual.
    pub rtol: f64,
    /// Absolute tolerance on the fixed-point residual.
    pub atol: f64,
    /// Number of steps between two checks of the stopping rule; at least 1.
    /// The residual is computed at steps `check_every`, `2 check_every`, …
    /// and at step `max_iters`, and only there can a sample stop. The
    /// residual does not always decrease, so a sample may meet the tolerance
    /// between two checks and miss it at the next ones: it can run more than
    /// `check_every − 1` extra steps (86 with `check_every = 8` for one
    /// reference sample at `rtol = 1e-4`). Each check reads the new and the
    /// previous state of every active sample. On the reference sparse
    /// inverse problem it costs about 3.5% of a step (docs/architecture.md).
    /// With `rtol = atol = 0` and a fixed depth, `check_every = max_iters`
    /// computes the residual once, at the end (a sample whose state turns
    /// NaN or infinite is then reported at the end too). Must be 1 with
    /// Anderson acceleration, which needs the residual of every step.
    pub check_every: usize,
    /// Number of threads. The batch is split into column blocks, one per
    /// thread. When the batch has fewer samples than threads, the threads
    /// left over go to the matrix products of large problems (see
    /// [`ThreadPlan`]). 1 runs on the calling thread.
    pub threads: usize,
    /// Anderson acceleration of the iteration. `None`, the default, runs
    /// the plain iteration `z⁺ = T(z)`.
    pub anderson: Option<AndersonOptions>,
    /// Maximum number of samples one thread iterates together. A thread's
    /// columns are split into blocks of nearly equal size no wider than this,
    /// and each block runs to its end before the next starts, so that its
    /// states stay in cache. `None`, the default, takes [`block_columns`] of
    /// the state dimension.
    pub block_columns: Option<usize>,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        Self {
            max_iters: 1000,
            rtol: 1e-6,
            atol: 0.0,
            check_every: 1,
            threads: 1,
            anderson: None,
            block_columns: None,
        }
    }
}

impl ForwardOptions {
    /// Creates options with the given iteration limit and relative tolerance.
    pub fn new(max_iters: usize, rtol: f64) -> Self {
        Self {
            max_iters,
            rtol,
            ..Self::default()
        }
    }

    /// Sets the absolute tolerance.
    pub fn with_atol(mut self, atol: f64) -> Self {
        self.atol = atol;
        self
    }

    /// Sets the number of steps between two checks of the stopping rule.
    pub fn with_check_every(mut self, steps: usize) -> Self {
        self.check_every = steps;
        self
    }

    /// Sets the number of threads.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Enables Anderson acceleration with the given settings.
    pub fn with_anderson(mut self, anderson: AndersonOptions) -> Self {
        self.anderson = Some(anderson);
        self
    }

    /// Sets the maximum number of samples one thread iterates together.
    pub fn with_block_columns(mut self, columns: usize) -> Self {
        self.block_columns = Some(columns);
        self
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the setting.
    pub fn validate(&self) -> Result<()> {
        if self.max_iters == 0 {
            return Err(Error::InvalidParameter {
                name: "max_iters".into(),
                value: 0.0,
                requirement: "must be at least 1".into(),
            });
        }
        if self.check_every == 0 {
            return Err(Error::InvalidParameter {
                name: "check_every".into(),
                value: 0.0,
                requirement: "must be at least 1 (1 checks the stopping rule after every step)".into(),
            });
        }
        if self.anderson.is_some() && self.check_every != 1 {
            return Err(Error::InvalidParameter {
                name: "check_every".into(),
                value: self.check_every as f64,
                requirement: "must be 1 with Anderson acceleration, which needs the residual of every step"
                    .into(),
            });
        }
        if self.threads == 0 {
            return Err(Error::InvalidParameter {
                name: "threads".into(),
                value: 0.0,
                requirement: "must be at least 1".into(),
            });
        }
        if self.block_columns == Some(0) {
            return Err(Error::InvalidParameter {
                name: "block_columns".into(),
                value: 0.0,
                requirement: "must be at least 1, or None to choose from the state size".into(),
            });
        }
        check_nonnegative("rtol", self.rtol)?;
        check_nonnegative("atol", self.atol)?;
        if let Some(anderson) = &self.anderson {
            anderson.validate()?;
        }
        Ok(())
    }
}

/// Smallest state dimension at which the threads of a forward pass that the
/// batch leaves over run the matrix products of each step in parallel.
/// Below it, a step of a few columns is too short to share. Three runs of
/// `cargo bench --bench throughput` on the machine of docs/benchmarks.md
/// timed a two-column linearized ADMM step in `f32` on one thread and on two.
/// With a state of 2,280 entries two threads took 1.19 to 1.33 times as long,
/// and with 3,040 they were 1.16 to 1.24 times faster (0.92 and 0.82 times
/// in two later runs).
pub const PARALLEL_STEP_MIN_STATE: usize = 3000;

/// Bytes of state that [`block_columns`] aims to keep in one block. The
/// machine of docs/benchmarks.md has 512 KiB of second-level cache per core.
/// There, 1,000 reference samples in `f64` ran fastest per iteration in
/// blocks of 128 to 256 columns, and 64 was up to 9% slower. 100 samples ran
/// faster in one block of 100 than in two of 50.
pub const BLOCK_STATE_BYTES: usize = 1 << 20;

/// Returns the default width of the column blocks a thread iterates one
/// after the other (see [`ForwardOptions::block_columns`]): as many states
/// of `state_dim` entries of `T` as fill [`BLOCK_STATE_BYTES`], between 32
/// and 256 columns.
pub fn block_columns<T>(state_dim: usize) -> usize {
    let bytes = state_dim.max(1) * core::mem::size_of::<T>().max(1);
    (BLOCK_STATE_BYTES / bytes).clamp(32, 256)
}

/// The split of a forward pass's threads, chosen from the thread count, the
/// batch size and the state dimension.
///
/// The batch is split into `blocks` column blocks of nearly equal size, one
/// per thread, because samples are independent and a block needs no
/// synchronization. When a batch of two or more samples has fewer samples
/// than threads, each block gets `threads / blocks` threads, and for a state
/// dimension of at least [`PARALLEL_STEP_MIN_STATE`] its steps run with
/// `step_par` set to that many threads.
///
/// Results do not depend on the plan, bit for bit. In a batch of two or more
/// samples every step runs on at least two columns. faer 0.24 then gives
/// the same rounding on one thread or several, which a test checks. A single
/// column rounds differently on several threads, so a batch of one sample
/// always steps on one thread.
///
/// Each thread then iterates its columns in narrower blocks, one after the
/// other, as [`ForwardOptions::block_columns`] sets.
///
/// NOTE: the blocks also change how many columns a product multiplies at
/// once. faer 0.24 multiplies an `m x k` matrix by `n` columns with a kernel
/// for small products when `m·k·n ≤ 4096` (`NANO_GEMM_THRESHOLD` in its
/// `linalg::matmul`) and with its blocked kernel above, and the two round
/// differently. For an operator with `m·k ≤ 2048` (37 x 53, 53 x 37, 300 x 2
/// and 2 x 300 among those tried, `crates/ops/tests/transposed_copy.rs`), a
/// block of two columns and a wider one can take different kernels. Results
/// with several threads, or with another block width, can then differ in
/// the last bits. Larger operators of two rows and two columns or more,
/// such as those of the reference sparse inverse problem, take the blocked
/// kernel at every width of two or more. faer has other paths for one row
/// and for one inner column. The tests that compare thread counts and block
/// widths found no difference.
///
/// NOTE: the blocked kernel above is faer's own x86-64 kernel, which faer
/// 0.24 calls on processors with AVX2 and FMA or with AVX-512, and the tests
/// ran on AVX2. Other processors get the `gemm` crate (0.19). Its source
/// shows a split of the inner dimension that can change with the width for
/// operators of at most 64 rows and more than 512 columns, so there the last
/// bits can depend on the width (read, not run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadPlan {
    /// Number of column blocks, each iterated on its own thread.
    pub blocks: usize,
    /// Parallelism of the steps within a block.
    pub step_par: Par,
}

impl ThreadPlan {
    /// Returns the plan for `threads` threads, `batch` samples and states of
    /// `state_dim` entries. `threads` and `batch` of 0 count as 1.
    pub fn new(threads: usize, batch: usize, state_dim: usize) -> Self {
        let threads = threads.max(1);
        let blocks = threads.min(batch.max(1));
        let spare = threads / blocks;
        let step_par = if batch > 1 && spare > 1 && state_dim >= PARALLEL_STEP_MIN_STATE {
            Par::rayon(spare)
        } else {
            Par::Seq
        };
        Self { blocks, step_par }
    }
}

/// The outcome of the iteration of one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The fixed-point residual met the tolerance.
    Converged,
    /// The iteration limit was reached first.
    IterationLimit,
    /// The state became NaN or infinite; the sample stopped at the first
    /// check of the stopping rule after that (see
    /// [`ForwardOptions::check_every`]).
    NonFinite,
}

impl Status {
    /// Returns a lowercase name for reports: "converged", "iteration_limit" or "non_finite".
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Converged => "converged",
            Status::IterationLimit => "iteration_limit",
            Status::NonFinite => "non_finite",
        }
    }
}

/// The outcome of a forward pass for one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleReport<T> {
    /// Steps applied, including evaluations at rejected Anderson candidates.
    pub iterations: usize,
    /// Fixed-point residual `‖T(z) − z‖` of the step that produced the
    /// returned state `T(z)`. For the plain iteration it is `‖z_k − z_{k−1}‖`
    /// of the last step.
    pub residual: T,
    /// The residual divided by `‖z_k‖` (zero when both are zero, infinite when
    /// only the state is zero).
    pub relative_residual: T,
    /// The outcome of the iteration.
    pub status: Status,
    /// The constraint residual of the final iterate, from
    /// [`Splitting::constraint_residual`]; `None` when the model has no
    /// constraints the scheme measures.
    pub constraint_residual: Option<T>,
    /// Accepted and rejected accelerated steps, or `None` when the pass ran
    /// without Anderson acceleration.
    pub anderson: Option<AndersonReport>,
}

/// The result of a forward pass on a batch.
#[derive(Clone, Debug)]
pub struct ForwardResult<T: Scalar> {
    /// The primal iterates, `primal_dim x batch`.
    pub x: Mat<T>,
    /// The final states, `state_dim x batch`; the starting point of a warm
    /// start and the point where Jacobian-free backpropagation differentiates.
    pub state: Mat<T>,
    /// One report per sample, in column order.
    pub samples: Vec<SampleReport<T>>,
    /// The step sizes used, by name.
    pub step_sizes: Vec<(String, f64)>,
    /// The forward settings used.
    pub options: ForwardOptions,
    /// Hashes of the parameters and the data batch of the pass.
    pub(crate) fingerprint: Fingerprint,
}

/// Hashes that tie a forward result to the parameters and data it was computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    pub(crate) layer: u64,
    pub(crate) params: u64,
    pub(crate) data: u64,
}

impl<T: Scalar> ForwardResult<T> {
    /// Returns the number of samples that converged.
    pub fn converged_count(&self) -> usize {
        self.samples
            .iter()
            .filter(|s| s.status == Status::Converged)
            .count()
    }

    /// Returns the number of samples whose state became non-finite.
    pub fn non_finite_count(&self) -> usize {
        self.samples
            .iter()
            .filter(|s| s.status == Status::NonFinite)
            .count()
    }

    /// Returns the accepted and rejected accelerated steps summed over the
    /// batch, or `None` when the pass ran without Anderson acceleration.
    pub fn anderson_totals(&self) -> Option<AndersonReport> {
        self.options.anderson?;
        let mut totals = AndersonReport::default();
        for report in self.samples.iter().filter_map(|s| s.anderson) {
            totals.accepted += report.accepted;
            totals.rejected += report.rejected;
        }
        Some(totals)
    }

    /// Returns the mean number of steps over the batch.
    pub fn mean_iterations(&self) -> f64 {
        let total: usize = self.samples.iter().map(|s| s.iterations).sum();
        total as f64 / self.samples.len().max(1) as f64
    }

    /// Returns the largest relative residual over the batch; NaN if any
    /// sample's residual is NaN.
    pub fn max_relative_residual(&self) -> T {
        self.samples.iter().fold(T::zero(), |acc, s| {
            if acc.is_nan() || s.relative_residual.is_nan() {
                T::nan()
            } else {
                acc.max(s.relative_residual)
            }
        })
    }
}

/// An optimization model as a layer: `N_Θ(d) = argmin_x f_Θ(x; d)`, evaluated
/// as the fixed point of the splitting `Alg`.
///
/// The forward pass iterates `z⁺ = T_Θ(z; d)` on each column of the batch
/// until `‖z⁺ − z‖ ≤ max(rtol·‖z⁺‖, atol)` or the iteration limit. It keeps
/// two state buffers and records nothing else, so its memory does not grow
/// with the iteration count. Samples that converge, or whose state becomes
/// non-finite, stop costing work: their columns leave the active block.
/// [`ForwardOptions::with_anderson`] adds Anderson acceleration with a fixed
/// history per sample, and the stopping rule stays the same.
///
/// Gradients come from [`FixedPointJfb`](crate::FixedPointJfb).
#[derive(Debug)]
pub struct OptLayer<Alg: Splitting> {
    splitting: Alg,
    options: ForwardOptions,
    /// A number unique to this layer in the process, recorded by forward
    /// results so that a backward pass rejects results of other layers.
    id: u64,
}

static NEXT_LAYER_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl<T: Scalar, Alg: Splitting<Real = T>> OptLayer<Alg> {
    /// Creates a layer from a splitting and default forward settings.
    ///
    /// # Errors
    /// When `options` is invalid.
    pub fn new(splitting: Alg, options: ForwardOptions) -> Result<Self> {
        options.validate()?;
        let id = NEXT_LAYER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Self {
            splitting,
            options,
            id,
        })
    }

    /// Returns the splitting.
    pub fn splitting(&self) -> &Alg {
        &self.splitting
    }

    /// Returns the splitting for changes; call
    /// [`Parameterized::after_param_update`] after changing parameters.
    pub fn splitting_mut(&mut self) -> &mut Alg {
        &mut self.splitting
    }

    /// Returns the default forward settings.
    pub fn options(&self) -> &ForwardOptions {
        &self.options
    }

    /// Replaces the default forward settings.
    ///
    /// # Errors
    /// When `options` is invalid; the old settings stay.
    pub fn set_options(&mut self, options: ForwardOptions) -> Result<()> {
        options.validate()?;
        self.options = options;
        Ok(())
    }

    /// Runs the forward pass from the splitting's initial state with the
    /// default settings.
    ///
    /// # Errors
    /// When `data` has the wrong number of rows, no columns, or a non-finite entry.
    pub fn forward(&self, data: MatRef<'_, T>) -> Result<ForwardResult<T>> {
        self.forward_with(data, &self.options)
    }

    /// Runs the forward pass from the splitting's initial state.
    ///
    /// # Errors
    /// When `data` or `options` is invalid.
    pub fn forward_with(&self, data: MatRef<'_, T>, options: &ForwardOptions) -> Result<ForwardResult<T>> {
        self.check_data(data)?;
        let mut state = Mat::zeros(self.splitting.state_dim(), data.ncols());
        self.splitting.init(state.as_mut(), data);
        self.run(state, data, options)
    }

    /// Runs the forward pass from `initial_state`, for instance the fixed
    /// point of an earlier pass on the same samples (a warm start).
    ///
    /// # Errors
    /// When `data`, `initial_state` or `options` is invalid.
    pub fn forward_from(
        &self,
        data: MatRef<'_, T>,
        initial_state: MatRef<'_, T>,
        options: &ForwardOptions,
    ) -> Result<ForwardResult<T>> {
        self.check_data(data)?;
        check_shape(
            "initial state",
            initial_state,
            self.splitting.state_dim(),
            data.ncols(),
        )?;
        check_finite("initial state", initial_state)?;
        self.run(initial_state.to_owned(), data, options)
    }

    /// Writes one step `z⁺ = T(z; data)` for a whole batch, allocating its own scratch.
    ///
    /// # Errors
    /// When the shapes of `z` and `data` disagree with the splitting.
    pub fn apply_step(&self, z: MatRef<'_, T>, data: MatRef<'_, T>, par: Par) -> Result<Mat<T>> {
        self.check_data(data)?;
        check_shape("state", z, self.splitting.state_dim(), data.ncols())?;
        let mut z_next = Mat::zeros(z.nrows(), z.ncols());
        let mut buffer = MemBuffer::new(self.splitting.step_scratch(z.ncols(), par));
        let stack = MemStack::new(&mut buffer);
        self.splitting.step(z_next.as_mut(), z, data, par, stack);
        Ok(z_next)
    }

    /// Checks that `forward` was computed by this layer, with its current
    /// step sizes and parameters, on `data`.
    ///
    /// # Errors
    /// [`Error::StaleForward`] naming what changed.
    pub fn check_forward_is_current(&self, forward: &ForwardResult<T>, data: MatRef<'_, T>) -> Result<()> {
        if forward.fingerprint.layer != self.id {
            return Err(Error::StaleForward {
                reason: "it was computed by another layer".into(),
            });
        }
        let current = self.splitting.step_sizes();
        if current != forward.step_sizes {
            return Err(Error::StaleForward {
                reason: format!(
                    "it used the step sizes {:?}, the layer now uses {current:?}",
                    forward.step_sizes
                ),
            });
        }
        if params_fingerprint(&self.splitting) != forward.fingerprint.params {
            return Err(Error::StaleForward {
                reason: "the parameters changed since it was computed".into(),
            });
        }
        if matrix_fingerprint(data) != forward.fingerprint.data {
            return Err(Error::StaleForward {
                reason: "it was computed on another data batch".into(),
            });
        }
        Ok(())
    }

    pub(crate) fn check_data(&self, data: MatRef<'_, T>) -> Result<()> {
        check_rows(
            "data batch",
            data,
            self.splitting.data_dim(),
            "the data dimension of the splitting",
        )?;
        check_nonempty("data batch", data)?;
        check_finite("data batch", data)
    }

    fn run(&self, state: Mat<T>, data: MatRef<'_, T>, options: &ForwardOptions) -> Result<ForwardResult<T>> {
        options.validate()?;
        let batch = data.ncols();
        let plan = ThreadPlan::new(options.threads, batch, self.splitting.state_dim());
        let chunks = plan.blocks;
        // A pass of one sample runs it alone whatever the thread count, so
        // only larger passes need the two-column minimum of `iterate_block`.
        let steps = BlockSteps {
            min_columns: if batch > 1 { MIN_STEP_COLUMNS } else { 1 },
            par: plan.step_par,
        };
        let mut final_state = Mat::zeros(state.nrows(), batch);
        let mut samples = Vec::with_capacity(batch);

        let width = options
            .block_columns
            .unwrap_or_else(|| block_columns::<T>(self.splitting.state_dim()));
        if chunks <= 1 {
            samples = iterate_chunk(
                &self.splitting,
                state.as_ref(),
                data,
                options,
                steps,
                width,
                final_state.as_mut(),
            );
        } else {
            let bounds: Vec<(usize, usize)> = even_split(batch, chunks).collect();
            let splitting = &self.splitting;
            let results: Vec<(Mat<T>, Vec<SampleReport<T>>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = bounds
                    .iter()
                    .map(|&(start, len)| {
                        let z0 = state.as_ref().subcols(start, len);
                        let d = data.subcols(start, len);
                        scope.spawn(move || {
                            let mut out = Mat::zeros(z0.nrows(), z0.ncols());
                            let reports =
                                iterate_chunk(splitting, z0, d, options, steps, width, out.as_mut());
                            (out, reports)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                    .collect()
            });
            for (&(start, len), (block_state, reports)) in bounds.iter().zip(results) {
                final_state
                    .as_mut()
                    .subcols_mut(start, len)
                    .copy_from(&block_state);
                samples.extend(reports);
            }
        }

        for (col, report) in samples.iter_mut().enumerate() {
            report.constraint_residual = self
                .splitting
                .constraint_residual(final_state.as_ref(), data, col);
        }
        let x = self.splitting.primal(final_state.as_ref()).to_owned();
        let fingerprint = Fingerprint {
            layer: self.id,
            params: params_fingerprint(&self.splitting),
            data: matrix_fingerprint(data),
        };
        Ok(ForwardResult {
            x,
            state: final_state,
            samples,
            step_sizes: self.splitting.step_sizes(),
            options: options.clone(),
            fingerprint,
        })
    }
}

/// Returns the `(start, len)` of `parts` contiguous ranges of nearly equal
/// length that cover `0..total` in order. `parts` must be at least 1.
fn even_split(total: usize, parts: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..parts).map(move |part| {
        let start = part * total / parts;
        (start, (part + 1) * total / parts - start)
    })
}

/// Iterates the columns of one thread in blocks of nearly equal size, at
/// most `width` wide, one block after the other, and writes the final states
/// into `out`. Returns one report per column.
fn iterate_chunk<T: Scalar, Alg: Splitting<Real = T>>(
    splitting: &Alg,
    initial_state: MatRef<'_, T>,
    data: MatRef<'_, T>,
    options: &ForwardOptions,
    steps: BlockSteps,
    width: usize,
    mut out: MatMut<'_, T>,
) -> Vec<SampleReport<T>> {
    let columns = initial_state.ncols();
    let blocks = columns.div_ceil(width.max(1)).max(1);
    let mut reports = Vec::with_capacity(columns);
    for (start, len) in even_split(columns, blocks) {
        reports.extend(iterate_any(
            splitting,
            initial_state.subcols(start, len),
            data.subcols(start, len),
            options,
            steps,
            out.rb_mut().subcols_mut(start, len),
        ));
    }
    reports
}

/// Iterates one block of columns with the plain or the accelerated loop, as
/// `options` selects, with the step settings `steps`.
fn iterate_any<T: Scalar, Alg: Splitting<Real = T>>(
    splitting: &Alg,
    initial_state: MatRef<'_, T>,
    data: MatRef<'_, T>,
    options: &ForwardOptions,
    steps: BlockSteps,
    out: MatMut<'_, T>,
) -> Vec<SampleReport<T>> {
    match &options.anderson {
        None => iterate_block(splitting, initial_state, data, options, steps, out),
        Some(settings) => {
            anderson::iterate_block(splitting, initial_state, data, options, settings, steps.par, out)
        }
    }
}

/// Iterates one block of columns to convergence and writes the final states
/// into `out` (`state_dim x b`). Returns one report per column.
///
/// Active samples occupy the leading columns of the working buffers. When a
/// sample stops, its final state is copied to `out` and its column is swapped
/// with the last active one, so later steps run on a smaller block.
///
/// Each step runs on at least `steps.min_columns` columns: when fewer samples are
/// active, copies of the first one fill the rest. faer 0.24 multiplies a
/// transposed matrix by a single column with a dot-product kernel whose
/// rounding differs from the one it uses for two or more columns. With
/// a minimum of 2, the result of a sample therefore does not depend on the
/// thread count, which decides how the batch is split into blocks. The copy
/// doubles the cost of a step while one sample of the block is left.
fn iterate_block<T: Scalar, Alg: Splitting<Real = T>>(
    splitting: &Alg,
    initial_state: MatRef<'_, T>,
    data: MatRef<'_, T>,
    options: &ForwardOptions,
    steps: BlockSteps,
    mut out: MatMut<'_, T>,
) -> Vec<SampleReport<T>> {
    let batch = initial_state.ncols();
    let par = steps.par;
    let (mut z, mut z_next, mut data_work) = padded_buffers(initial_state, data, steps.min_columns);
    let width = z.ncols();
    let mut order: Vec<usize> = (0..batch).collect();
    let mut reports = vec![
        SampleReport {
            iterations: 0,
            residual: T::nan(),
            relative_residual: T::nan(),
            status: Status::IterationLimit,
            constraint_residual: None,
            anderson: None,
        };
        batch
    ];
    let mut buffer = MemBuffer::new(splitting.step_scratch(width, par));
    let stack = MemStack::new(&mut buffer);
    let rtol = T::lit(options.rtol);
    let atol = T::lit(options.atol);
    let mut active = batch;

    for iteration in 1..=options.max_iters {
        if active == 0 {
            break;
        }
        step_padded(
            splitting,
            &mut z_next,
            &mut z,
            &mut data_work,
            active,
            steps,
            stack,
        );
        core::mem::swap(&mut z, &mut z_next);
        if iteration % options.check_every != 0 && iteration != options.max_iters {
            continue;
        }

        // After the swap, z is the new iterate and z_next the previous one.
        let mut j = 0;
        while j < active {
            let (residual, scale) = splitting.fixed_point_residual(z.as_ref(), z_next.as_ref(), j);
            let report = &mut reports[order[j]];
            report.iterations = iteration;
            report.residual = residual;
            report.relative_residual = relative(residual, scale);
            let stopped = if !(residual.is_finite() && scale.is_finite()) {
                Some(Status::NonFinite)
            } else if residual <= (rtol * scale).max(atol) {
                Some(Status::Converged)
            } else {
                None
            };
            match stopped {
                Some(status) => {
                    report.status = status;
                    out.rb_mut().col_mut(order[j]).copy_from(z.col(j));
                    // The swapped-in column is checked next at index j, so
                    // its previous iterate in z_next moves with it.
                    let last = active - 1;
                    swap_cols(z.as_mut(), j, last);
                    swap_cols(z_next.as_mut(), j, last);
                    swap_cols(data_work.as_mut(), j, last);
                    order.swap(j, last);
                    active -= 1;
                }
                None => j += 1,
            }
        }
    }

    for (j, &original) in order.iter().enumerate().take(active) {
        out.rb_mut().col_mut(original).copy_from(z.col(j));
    }
    reports
}

/// Step settings of a block of columns: the fewest columns a step runs on
/// and the parallelism of the step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockSteps {
    pub(crate) min_columns: usize,
    pub(crate) par: Par,
}

/// Returns the working buffers of a block, `z`, `z_next` and the data, with
/// at least `min_columns` columns: the leading columns of `z` and the data
/// are copies of `initial_state` and `data`, and the rest are zero until
/// [`step_padded`] fills them.
pub(crate) fn padded_buffers<T: Scalar>(
    initial_state: MatRef<'_, T>,
    data: MatRef<'_, T>,
    min_columns: usize,
) -> (Mat<T>, Mat<T>, Mat<T>) {
    let (dim, batch) = (initial_state.nrows(), initial_state.ncols());
    let width = batch.max(min_columns);
    let mut z = Mat::<T>::zeros(dim, width);
    z.as_mut().subcols_mut(0, batch).copy_from(initial_state);
    let z_next = Mat::<T>::zeros(dim, width);
    let mut data_work = Mat::<T>::zeros(data.nrows(), width);
    data_work.as_mut().subcols_mut(0, batch).copy_from(data);
    (z, z_next, data_work)
}

/// Steps the first `max(active, steps.min_columns)` columns of `z` into `z_next`.
/// Columns `active..` of `z` and `data` first receive copies of column 0, so
/// that a lone active sample is stepped on the same kernels as in a larger
/// block (see [`iterate_block`]). The step runs with `steps.par`, which is
/// `Par::Seq` unless the [`ThreadPlan`] gives the block spare threads.
pub(crate) fn step_padded<T: Scalar, Alg: Splitting<Real = T>>(
    splitting: &Alg,
    z_next: &mut Mat<T>,
    z: &mut Mat<T>,
    data: &mut Mat<T>,
    active: usize,
    steps: BlockSteps,
    stack: &mut MemStack,
) {
    let step_columns = active.max(steps.min_columns);
    for copy in active..step_columns {
        let (source, mut target) = z.two_cols_mut(0, copy);
        target.copy_from(source);
        let (source, mut target) = data.two_cols_mut(0, copy);
        target.copy_from(source);
    }
    splitting.step(
        z_next.as_mut().subcols_mut(0, step_columns),
        z.as_ref().subcols(0, step_columns),
        data.as_ref().subcols(0, step_columns),
        steps.par,
        stack,
    );
}

pub(crate) fn relative<T: Scalar>(residual: T, scale: T) -> T {
    if scale > T::zero() {
        residual / scale
    } else if residual == T::zero() {
        T::zero()
    } else {
        T::infinity()
    }
}

impl<T: Scalar, Alg: Splitting<Real = T>> Parameterized<T> for OptLayer<Alg> {
    fn param_count(&self) -> usize {
        self.splitting.param_count()
    }

    fn param_info(&self, index: usize) -> ParamInfo {
        self.splitting.param_info(index)
    }

    fn param(&self, index: usize) -> MatRef<'_, T> {
        self.splitting.param(index)
    }

    fn param_mut(&mut self, index: usize) -> MatMut<'_, T> {
        self.splitting.param_mut(index)
    }

    fn after_param_update(&mut self) -> Result<()> {
        self.splitting.after_param_update()
    }

    fn warm_start_state(&self) -> Vec<Mat<T>> {
        self.splitting.warm_start_state()
    }

    fn set_warm_start_state(&mut self, state: &[Mat<T>]) -> Result<()> {
        self.splitting.set_warm_start_state(state)
    }
}
