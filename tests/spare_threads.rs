//! Forward passes whose batch has fewer samples than threads. The thread
//! plan then gives each sample a block of its own and runs the block's steps
//! with `Par::rayon`. States and per-sample reports must equal those of one
//! thread bit for bit.
//!
//! In the one-thread passes the samples stop at different iterations. A
//! stopped sample's column is swapped with the last active one, and the last
//! sample left is stepped on a block padded to two columns. A spare-thread
//! block holds a single sample, so each test compares that path with
//! single-sample blocks stepped in parallel.
//!
//! The cases cover linearized ADMM in `f64` and `f32`, Anderson
//! acceleration, proximal gradient, Condat–Vũ with a forward-difference
//! operator and Davis–Yin with a learnable operator. Each state has at
//! least `PARALLEL_STEP_MIN_STATE` entries.

mod common;

use common::{cast, unit_column_matrix};
use faer::{Mat, MatRef, Par};
use optlayer::ops::{
    Dense, ForwardDifference, IndicatorPoint, L1Norm, LearnableDense, LeastSquares, Nonnegative,
};
use optlayer::splittings::{
    Acceleration, Block, CondatVu, DavisYin, DavisYinSteps, LadmmSteps, LinearizedAdmm, PrimalDualSteps,
    ProximalGradient,
};
use optlayer::{
    AndersonOptions, ForwardOptions, ForwardResult, OptLayer, Scalar, Splitting, Status, ThreadPlan,
};
use optlayer_testing::random::gaussian;

/// The bits of a float widened to `u64`, so that results of both precisions
/// compare bit for bit.
trait BitPattern: Scalar {
    fn bit_pattern(self) -> u64;
}

impl BitPattern for f64 {
    fn bit_pattern(self) -> u64 {
        self.to_bits()
    }
}

impl BitPattern for f32 {
    fn bit_pattern(self) -> u64 {
        u64::from(self.to_bits())
    }
}

/// Plans checked for every problem, as `(batch, threads, threads per
/// block)`. Each gives every sample a block of its own, because a block
/// gets spare threads only when the batch has fewer samples than threads.
const SPARE_PLANS: [(usize, usize, usize); 3] = [(2, 4, 2), (3, 8, 2), (3, 9, 3)];

/// Runs the first `batch` samples of `data` on one thread and with each
/// plan of [`SPARE_PLANS`], after checking that the plan steps in parallel
/// at this state dimension. Asserts that the results agree bit for bit and
/// returns the one-thread result of the whole batch.
fn assert_spare_plans_match<S>(
    layer: &OptLayer<S>,
    data: MatRef<'_, S::Real>,
    options: &ForwardOptions,
) -> ForwardResult<S::Real>
where
    S: Splitting,
    S::Real: BitPattern,
{
    let state_dim = layer.splitting().state_dim();
    let one_thread = options.clone().with_threads(1);
    let full = layer.forward_with(data, &one_thread).unwrap();
    for (batch, threads, block_threads) in SPARE_PLANS {
        assert_eq!(
            ThreadPlan::new(threads, batch, state_dim),
            ThreadPlan {
                blocks: batch,
                step_par: Par::rayon(block_threads),
            },
            "plan of {batch} samples on {threads} threads with a state of {state_dim} entries"
        );
        let columns = data.subcols(0, batch);
        let reference = if batch == data.ncols() {
            full.clone()
        } else {
            layer.forward_with(columns, &one_thread).unwrap()
        };
        let spare = layer
            .forward_with(columns, &options.clone().with_threads(threads))
            .unwrap();
        assert_same_result(
            &reference,
            &spare,
            &format!("{batch} samples on {threads} threads"),
        );
    }
    full
}

/// Asserts that `actual` has the state bits and the reports of `expected`.
fn assert_same_result<T: BitPattern>(expected: &ForwardResult<T>, actual: &ForwardResult<T>, context: &str) {
    let (rows, cols) = (expected.state.nrows(), expected.state.ncols());
    assert_eq!(
        (actual.state.nrows(), actual.state.ncols()),
        (rows, cols),
        "{context}"
    );
    let mut mismatches = 0;
    let mut first_mismatch = None;
    let mut largest_difference = 0.0_f64;
    for j in 0..cols {
        for i in 0..rows {
            let (e, a) = (expected.state[(i, j)], actual.state[(i, j)]);
            if e.bit_pattern() != a.bit_pattern() {
                mismatches += 1;
                first_mismatch.get_or_insert((i, j, e, a));
                let difference = (e.to_f64_lossless() - a.to_f64_lossless()).abs();
                largest_difference = largest_difference.max(difference);
            }
        }
    }
    assert_eq!(
        mismatches, 0,
        "{context}: {mismatches} state entries differ, the first (row, column, expected, actual) \
         is {first_mismatch:?}, the largest difference {largest_difference:e}"
    );

    assert_eq!(actual.samples.len(), expected.samples.len(), "{context}");
    for (j, (e, a)) in expected.samples.iter().zip(&actual.samples).enumerate() {
        assert_eq!(a.iterations, e.iterations, "{context}: iterations of sample {j}");
        assert_eq!(a.status, e.status, "{context}: status of sample {j}");
        assert_eq!(
            a.residual.bit_pattern(),
            e.residual.bit_pattern(),
            "{context}: residual of sample {j}, {} expected {}",
            a.residual,
            e.residual
        );
        assert_eq!(
            a.relative_residual.bit_pattern(),
            e.relative_residual.bit_pattern(),
            "{context}: relative residual of sample {j}"
        );
        assert_eq!(
            a.constraint_residual.map(BitPattern::bit_pattern),
            e.constraint_residual.map(BitPattern::bit_pattern),
            "{context}: constraint residual of sample {j}"
        );
        assert_eq!(a.anderson, e.anderson, "{context}: Anderson steps of sample {j}");
    }
}

/// Asserts that the samples of a one-thread pass stop at different
/// iterations, that some but not all converge before `max_iters`, and that
/// sample 0 converges before any other sample stops. Sample 0 then leaves
/// the block first, so its column is swapped with the last active one and,
/// in a batch of two, sample 1 finishes alone on a padded block.
fn assert_early_stops<T: Scalar>(result: &ForwardResult<T>, max_iters: usize) {
    let iterations: Vec<usize> = result.samples.iter().map(|s| s.iterations).collect();
    let statuses: Vec<Status> = result.samples.iter().map(|s| s.status).collect();
    assert!(
        iterations.iter().any(|&k| k != iterations[0]),
        "samples should stop at different iterations: {iterations:?}"
    );
    let converged = result.converged_count();
    assert!(
        converged >= 1,
        "some samples should converge: {statuses:?} after {iterations:?}"
    );
    assert!(
        converged < result.samples.len(),
        "some samples should not converge: {statuses:?} after {iterations:?}"
    );
    assert!(
        result
            .samples
            .iter()
            .all(|s| s.status == Status::Converged || s.iterations == max_iters),
        "samples that did not converge should run to the limit {max_iters}: {statuses:?} after \
         {iterations:?}"
    );
    assert_eq!(statuses[0], Status::Converged, "{iterations:?}");
    assert!(
        iterations[1..].iter().all(|&k| k > iterations[0]),
        "sample 0 should stop first: {iterations:?}"
    );
}

/// Returns the batch `A y_j`, where `y_j` has Gaussian entries at the
/// indices that are multiples of `n / nonzeros[j]` and zeros elsewhere. The
/// samples differ in sparsity, so they take different numbers of iterations.
fn measurements(a: &Mat<f64>, nonzeros: &[usize], seed: u64) -> Mat<f64> {
    let n = a.ncols();
    let values = gaussian(n, nonzeros.len(), seed);
    let signals = Mat::from_fn(n, nonzeros.len(), |i, j| {
        if i % (n / nonzeros[j]) == 0 {
            values[(i, j)]
        } else {
            0.0
        }
    });
    a * signals
}

/// Builds `min ‖Θx‖₁ s.t. Ax = d` for linearized ADMM with a learnable
/// `Θ = I + G/(4√n)` (`G` Gaussian) and a dense `A` with unit columns. The
/// state has `3n + 2m` entries. Returns the splitting and `A`.
fn sparse_recovery<T: Scalar>(n: usize, m: usize) -> (LinearizedAdmm<T>, Mat<f64>) {
    let g = gaussian(n, n, 1);
    let scale = 0.25 / (n as f64).sqrt();
    let theta = Mat::from_fn(n, n, |i, j| {
        let identity = if i == j { 1.0 } else { 0.0 };
        identity + scale * g[(i, j)]
    });
    let a = unit_column_matrix(m, n, 2);
    let blocks = vec![
        Block::new(
            LearnableDense::new("theta", cast(&theta)).unwrap(),
            L1Norm::new(T::one()).unwrap(),
        ),
        Block::new(
            Dense::new(cast(&a)).unwrap(),
            IndicatorPoint::from_data(0, m).unwrap(),
        ),
    ];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 1.0,
        lambda: 1.0,
    };
    // The default step rule lowers β so that α β ‖[Θ; A]‖₂², with the norm
    // estimated, is at most 0.99.
    let splitting = LinearizedAdmm::new(n, m, blocks, steps).unwrap();
    (splitting, a)
}

/// Builds the lasso `min ½‖Ax − d‖² + 0.05‖x‖₁` for proximal gradient with a
/// dense `A` (`200 x 3000`, unit columns). The state is `x`, 3,000 entries.
/// Returns the splitting and `A`.
fn lasso<T: Scalar>() -> (ProximalGradient<T>, Mat<f64>) {
    let (n, m) = (3000, 200);
    let a = unit_column_matrix(m, n, 4);
    let smooth = LeastSquares::new(Dense::new(cast(&a)).unwrap()).unwrap();
    let splitting =
        ProximalGradient::new(smooth, L1Norm::new(T::lit(0.05)).unwrap(), m, Acceleration::None).unwrap();
    (splitting, a)
}

fn ladmm_early_stops<T: BitPattern>() {
    let (n, m) = (800, 320);
    let (splitting, a) = sparse_recovery::<T>(n, m);
    assert_eq!(splitting.state_dim(), 3040);
    let layer = OptLayer::new(splitting, ForwardOptions::default()).unwrap();
    let data = cast::<T>(&measurements(&a, &[40, 8, 200], 3));
    let max_iters = 224;
    let options = ForwardOptions::new(max_iters, 3e-3);
    let full = assert_spare_plans_match(&layer, data.as_ref(), &options);
    assert_early_stops(&full, max_iters);
}

#[test]
fn ladmm_early_stops_f64() {
    ladmm_early_stops::<f64>();
}

#[test]
fn ladmm_early_stops_f32() {
    ladmm_early_stops::<f32>();
}

#[test]
fn anderson_ladmm_early_stops() {
    let (n, m) = (800, 320);
    let (splitting, a) = sparse_recovery::<f64>(n, m);
    let layer = OptLayer::new(splitting, ForwardOptions::default()).unwrap();
    let data = measurements(&a, &[200, 8, 40], 3);
    let max_iters = 200;
    let options = ForwardOptions::new(max_iters, 3e-3).with_anderson(AndersonOptions::new(5));
    let full = assert_spare_plans_match(&layer, data.as_ref(), &options);
    assert_early_stops(&full, max_iters);
    // Both branches of the safeguard run. Accepted candidates become
    // iterates, and rejected ones restart the history.
    let totals = full.anderson_totals().unwrap();
    assert!(totals.accepted > 0, "{totals:?}");
    assert!(totals.rejected > 0, "{totals:?}");
}

#[test]
fn anderson_prox_grad_f32() {
    let (splitting, a) = lasso::<f32>();
    let layer = OptLayer::new(splitting, ForwardOptions::default()).unwrap();
    let data = cast::<f32>(&measurements(&a, &[100, 5, 30], 5));
    let max_iters = 50;
    let options = ForwardOptions::new(max_iters, 1e-2).with_anderson(AndersonOptions::new(5));
    let full = assert_spare_plans_match(&layer, data.as_ref(), &options);
    assert_early_stops(&full, max_iters);
    let totals = full.anderson_totals().unwrap();
    assert!(totals.accepted > 0, "{totals:?}");
    assert!(totals.rejected > 0, "{totals:?}");
}

#[test]
fn prox_grad_lasso_early_stops() {
    let (splitting, a) = lasso::<f64>();
    let layer = OptLayer::new(splitting, ForwardOptions::default()).unwrap();
    let data = measurements(&a, &[5, 30, 100], 5);
    let max_iters = 250;
    let options = ForwardOptions::new(max_iters, 1e-3);
    let full = assert_spare_plans_match(&layer, data.as_ref(), &options);
    assert_early_stops(&full, max_iters);
}

/// Condat–Vũ for `min ½‖Ax − d‖² + ι_{x ≥ 0}(x) + 0.1‖Dx‖₁` with the
/// matrix-free forward difference `D` as its operator.
#[test]
fn condat_vu_forward_difference() {
    let (n, m) = (1500, 300);
    let a = unit_column_matrix(m, n, 6);
    let smooth = LeastSquares::new(Dense::new(a.clone()).unwrap()).unwrap();
    let splitting = CondatVu::with_smooth(
        m,
        Box::new(smooth),
        Box::new(ForwardDifference::new(n).unwrap()),
        Box::new(Nonnegative),
        Box::new(L1Norm::new(0.1).unwrap()),
        PrimalDualSteps::default(),
    )
    .unwrap();
    assert_eq!(splitting.state_dim(), 3000);
    let layer = OptLayer::new(splitting, ForwardOptions::default()).unwrap();
    let data = measurements(&a, &[5, 100, 30], 7);
    let max_iters = 190;
    let options = ForwardOptions::new(max_iters, 1e-3);
    let full = assert_spare_plans_match(&layer, data.as_ref(), &options);
    assert_early_stops(&full, max_iters);
}

/// Davis–Yin for `min ½‖Ax − d‖² + ι_{x ≥ 0}(x) + 0.05‖x‖₁` with a learnable `A`.
#[test]
fn davis_yin_learnable_operator() {
    let (n, m) = (1500, 300);
    let a = unit_column_matrix(m, n, 8);
    let smooth = LeastSquares::new(LearnableDense::new("a", a.clone()).unwrap()).unwrap();
    let splitting = DavisYin::new(
        n,
        m,
        Box::new(smooth),
        Box::new(Nonnegative),
        Box::new(L1Norm::new(0.05).unwrap()),
        DavisYinSteps::default(),
    )
    .unwrap();
    assert_eq!(splitting.state_dim(), 3000);
    let layer = OptLayer::new(splitting, ForwardOptions::default()).unwrap();
    let data = measurements(&a, &[5, 30, 100], 9);
    let max_iters = 260;
    let options = ForwardOptions::new(max_iters, 1e-3);
    let full = assert_spare_plans_match(&layer, data.as_ref(), &options);
    assert_early_stops(&full, max_iters);
}
