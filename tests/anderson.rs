//! Anderson acceleration of the forward pass: finite termination on an
//! affine contraction, fewer iterations on splitting problems with the same
//! solution, the safeguard on a map where extrapolation overshoots, threads,
//! warm starts, precision and option checks.

mod common;

use common::{cast, recovery_batch, sparse_model};
use faer::dyn_stack::{MemStack, StackReq};
use faer::linalg::solvers::Solve;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use optlayer::ops::{
    BoxConstrained, BoxSet, Identity, L1Norm, LearnableDense, LeastSquares, SquaredDistance,
};
use optlayer::splittings::{
    Acceleration, Block, CondatVu, DavisYin, DavisYinSteps, DouglasRachford, LadmmSteps, LinearizedAdmm,
    PrimalDualSteps, ProximalGradient,
};
use optlayer::{
    AndersonOptions, Error, ForwardOptions, ForwardResult, OptLayer, Parameterized, Scalar, Splitting, Status,
};
use optlayer_testing::random::gaussian;
use optlayer_testing::reference::lasso_box_exact;

// ---------------------------------------------------------------------------
// Test maps.

/// The affine map `T(z; d) = W z + d`, whose fixed point is `(I − W)⁻¹ d`
/// when the spectral radius of `W` is below 1.
#[derive(Debug)]
struct Affine<T: Scalar> {
    w: Mat<T>,
}

impl<T: Scalar> Parameterized<T> for Affine<T> {}

impl<T: Scalar> Splitting for Affine<T> {
    type Real = T;

    fn name(&self) -> &str {
        "affine map"
    }

    fn primal_dim(&self) -> usize {
        self.w.nrows()
    }

    fn data_dim(&self) -> usize {
        self.w.nrows()
    }

    fn state_dim(&self) -> usize {
        self.w.nrows()
    }

    fn step_sizes(&self) -> Vec<(String, f64)> {
        Vec::new()
    }

    fn step_scratch(&self, _: usize, _: Par) -> StackReq {
        StackReq::EMPTY
    }

    fn step(
        &self,
        mut z_next: MatMut<'_, T>,
        z: MatRef<'_, T>,
        data: MatRef<'_, T>,
        par: Par,
        _: &mut MemStack,
    ) {
        z_next.copy_from(data);
        faer::linalg::matmul::matmul(z_next, Accum::Add, self.w.as_ref(), z, T::one(), par);
    }

    fn step_vjp_scratch(&self, _: usize, _: Par) -> StackReq {
        StackReq::EMPTY
    }

    fn step_vjp(
        &self,
        z_bar: Option<MatMut<'_, T>>,
        _: MatRef<'_, T>,
        _: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
        _: Option<&mut [Mat<T>]>,
        par: Par,
        _: &mut MemStack,
    ) {
        if let Some(z_bar) = z_bar {
            faer::linalg::matmul::matmul(
                z_bar,
                Accum::Replace,
                self.w.transpose(),
                cotangent,
                T::one(),
                par,
            );
        }
    }
}

/// The map `T(z; d) = z − tanh(z − d)` on one state row, with fixed point
/// `z = d`. Its derivative `tanh²(z − d)` lies in `[0, 1)`, so it is
/// nonexpansive and the plain iteration converges from anywhere, by steps
/// of nearly 1 far from `d`. There the residual is flat to within rounding,
/// so a secant-type extrapolation divides by a residual difference near
/// 1e-16 and jumps by about 1e16.
struct Tanh;

impl Parameterized<f64> for Tanh {}

impl Splitting for Tanh {
    type Real = f64;

    fn name(&self) -> &str {
        "tanh step"
    }

    fn primal_dim(&self) -> usize {
        1
    }

    fn data_dim(&self) -> usize {
        1
    }

    fn state_dim(&self) -> usize {
        1
    }

    fn step_sizes(&self) -> Vec<(String, f64)> {
        Vec::new()
    }

    fn step_scratch(&self, _: usize, _: Par) -> StackReq {
        StackReq::EMPTY
    }

    fn step(
        &self,
        mut z_next: MatMut<'_, f64>,
        z: MatRef<'_, f64>,
        data: MatRef<'_, f64>,
        _: Par,
        _: &mut MemStack,
    ) {
        for j in 0..z.ncols() {
            z_next[(0, j)] = z[(0, j)] - (z[(0, j)] - data[(0, j)]).tanh();
        }
    }

    fn step_vjp_scratch(&self, _: usize, _: Par) -> StackReq {
        StackReq::EMPTY
    }

    fn step_vjp(
        &self,
        z_bar: Option<MatMut<'_, f64>>,
        z: MatRef<'_, f64>,
        data: MatRef<'_, f64>,
        cotangent: MatRef<'_, f64>,
        _: Option<&mut [Mat<f64>]>,
        _: Par,
        _: &mut MemStack,
    ) {
        if let Some(mut z_bar) = z_bar {
            for j in 0..z.ncols() {
                let t = (z[(0, j)] - data[(0, j)]).tanh();
                z_bar[(0, j)] = t * t * cotangent[(0, j)];
            }
        }
    }
}

fn iterations<T: Scalar>(result: &ForwardResult<T>) -> Vec<usize> {
    result.samples.iter().map(|s| s.iterations).collect()
}

fn total_iterations<T: Scalar>(result: &ForwardResult<T>) -> usize {
    result.samples.iter().map(|s| s.iterations).sum()
}

fn assert_all_converged<T: Scalar>(result: &ForwardResult<T>, what: &str) {
    for (j, sample) in result.samples.iter().enumerate() {
        assert_eq!(sample.status, Status::Converged, "{what}, sample {j}: {sample:?}");
    }
}

// ---------------------------------------------------------------------------
// Affine contraction.

/// Returns `norm · Q` for a random orthogonal `Q`: every eigenvalue has
/// modulus `norm`, and they are distinct.
fn scaled_orthogonal(n: usize, norm: f64, seed: u64) -> Mat<f64> {
    let q = gaussian(n, n, seed).qr().compute_Q();
    Mat::from_fn(n, n, |i, j| norm * q[(i, j)])
}

#[test]
fn affine_contraction_terminates_after_dim_steps() {
    // With memory ≥ dim, Anderson mixing on an affine map is GMRES on
    // (I − W) z = d: the candidate built from dim + 1 evaluations is the
    // exact fixed point, and one more evaluation confirms it. Every
    // candidate is accepted because ‖W‖₂ = 0.99 < 1 makes its residual
    // W·(minimal residual) smaller than the last one. The plain iteration
    // contracts by 0.99 per step.
    let dim = 6;
    let w = scaled_orthogonal(dim, 0.99, 21);
    let data = gaussian(dim, 3, 22);
    let exact = (Mat::<f64>::identity(dim, dim) - &w)
        .partial_piv_lu()
        .solve(&data);
    let layer = OptLayer::new(Affine { w }, ForwardOptions::new(5_000, 1e-12)).unwrap();

    let plain = layer.forward(data.as_ref()).unwrap();
    let options =
        ForwardOptions::new(5_000, 1e-12).with_anderson(AndersonOptions::new(dim).with_regularization(0.0));
    let accelerated = layer.forward_with(data.as_ref(), &options).unwrap();
    println!(
        "affine map, dim {dim}: plain {:?}, Anderson {:?} iterations",
        iterations(&plain),
        iterations(&accelerated)
    );

    assert_all_converged(&plain, "plain");
    assert_all_converged(&accelerated, "Anderson");
    for (j, sample) in accelerated.samples.iter().enumerate() {
        assert!(
            (dim..=dim + 2).contains(&sample.iterations),
            "sample {j}: {} iterations",
            sample.iterations
        );
        let counts = sample.anderson.expect("the pass was accelerated");
        assert_eq!(counts.rejected, 0, "sample {j}");
        // The first two evaluations are at plain points: z₀ and T(z₀).
        assert_eq!(counts.accepted, sample.iterations - 2, "sample {j}");
        assert!(
            plain.samples[j].iterations > 100 * sample.iterations,
            "sample {j}"
        );
    }
    let error = (&accelerated.x - &exact).norm_max();
    assert!(error < 1e-10 * exact.norm_max(), "error {error:e}");
}

// ---------------------------------------------------------------------------
// Splitting problems.

/// Returns `(A, d)` for a lasso whose columns have norms from 1 down to
/// 0.03, so that the plain proximal gradient iteration is slow.
fn ill_conditioned_lasso(m: usize, n: usize, batch: usize) -> (Mat<f64>, Mat<f64>) {
    let g = gaussian(m, n, 31);
    let a = Mat::from_fn(m, n, |i, j| {
        let decay = 0.03f64.powf(j as f64 / (n - 1) as f64);
        g[(i, j)] * decay / (m as f64).sqrt()
    });
    let data = gaussian(m, batch, 32);
    (a, data)
}

/// Returns `‖x − soft(x − Aᵀ(Ax − d)/L, μ/L)‖` per column, the norm of the
/// proximal gradient mapping with step `1/L`, zero exactly at the minimizer.
fn lasso_optimality(a: &Mat<f64>, mu: f64, x: &Mat<f64>, data: &Mat<f64>) -> Vec<f64> {
    let lipschitz = a.as_ref().singular_values().unwrap()[0].powi(2);
    let gradient = a.transpose() * (a * x - data);
    (0..x.ncols())
        .map(|j| {
            let mut sum = 0.0f64;
            for i in 0..x.nrows() {
                let v = x[(i, j)] - gradient[(i, j)] / lipschitz;
                let soft = v.signum() * (v.abs() - mu / lipschitz).max(0.0);
                sum += (x[(i, j)] - soft).powi(2);
            }
            sum.sqrt()
        })
        .collect()
}

#[test]
fn lasso_proximal_gradient_needs_fewer_iterations() {
    let (m, n, batch, mu) = (40, 30, 4, 0.02);
    let (a, data) = ill_conditioned_lasso(m, n, batch);
    let splitting = ProximalGradient::new(
        LeastSquares::new(LearnableDense::new("a", a.clone()).unwrap()).unwrap(),
        L1Norm::new(mu).unwrap(),
        m,
        Acceleration::None,
    )
    .unwrap();
    let options = ForwardOptions::new(200_000, 1e-10);
    let layer = OptLayer::new(splitting, options.clone()).unwrap();
    let plain = layer.forward(data.as_ref()).unwrap();
    let accelerated = layer
        .forward_with(data.as_ref(), &options.with_anderson(AndersonOptions::default()))
        .unwrap();
    let counts = accelerated.anderson_totals().unwrap();
    println!(
        "lasso, proximal gradient: plain {:?}, Anderson {:?} iterations ({} accepted, {} rejected)",
        iterations(&plain),
        iterations(&accelerated),
        counts.accepted,
        counts.rejected
    );

    assert_all_converged(&plain, "plain");
    assert_all_converged(&accelerated, "Anderson");
    assert!(
        5 * total_iterations(&accelerated) < total_iterations(&plain),
        "Anderson should need at most a fifth of the plain iterations"
    );
    let zeros = accelerated
        .x
        .col_iter()
        .flat_map(|c| c.iter().copied())
        .filter(|&v| v == 0.0)
        .count();
    assert!(zeros > 0, "μ should make some entries exactly zero");
    let difference = (&accelerated.x - &plain.x).norm_max();
    assert!(
        difference < 1e-6 * plain.x.norm_max(),
        "difference {difference:e}"
    );
    for (j, value) in lasso_optimality(&a, mu, &accelerated.x, &data)
        .into_iter()
        .enumerate()
    {
        assert!(value < 1e-7, "sample {j}: optimality {value:e}");
    }
}

#[test]
fn sparse_recovery_ladmm_needs_fewer_iterations() {
    let (n, m, k, batch) = (24, 12, 3, 5);
    let (theta, a, data) = recovery_batch(n, m, k, batch, 41);
    let options = ForwardOptions::new(50_000, 1e-8);
    let layer = OptLayer::new(sparse_model::<f64>(&theta, &a, true), options.clone()).unwrap();
    let plain = layer.forward(data.as_ref()).unwrap();
    let accelerated = layer
        .forward_with(data.as_ref(), &options.with_anderson(AndersonOptions::default()))
        .unwrap();
    let counts = accelerated.anderson_totals().unwrap();
    println!(
        "sparse recovery, linearized ADMM: plain {:?}, Anderson {:?} iterations ({} accepted, {} rejected)",
        iterations(&plain),
        iterations(&accelerated),
        counts.accepted,
        counts.rejected
    );

    assert_all_converged(&plain, "plain");
    assert_all_converged(&accelerated, "Anderson");
    assert!(
        2 * total_iterations(&accelerated) < total_iterations(&plain),
        "Anderson should need less than half the plain iterations"
    );
    assert!(counts.accepted > 0);
    let difference = (&accelerated.x - &plain.x).norm_max();
    assert!(
        difference < 1e-5 * plain.x.norm_max(),
        "difference {difference:e}"
    );
    let constraint = (&a * &accelerated.x - &data).norm_max();
    assert!(constraint < 1e-5 * data.norm_max(), "‖Ax − d‖∞ = {constraint:e}");
}

// ---------------------------------------------------------------------------
// Every built-in splitting on a lasso with a box.

const MU: f64 = 0.3;
const LOWER: f64 = -0.4;
const UPPER: f64 = 0.6;

/// `min ½‖Ax − d‖² + μ‖x‖₁ s.t. l ≤ x ≤ u`, with each built-in scheme.
struct LassoBox {
    a: Mat<f64>,
    data: Mat<f64>,
}

impl LassoBox {
    fn new(a: Mat<f64>) -> Self {
        let data = gaussian(a.nrows(), 3, 52);
        Self { a, data }
    }

    fn reference(&self) -> Mat<f64> {
        let n = self.a.ncols();
        let mut reference = Mat::zeros(n, self.data.ncols());
        for j in 0..self.data.ncols() {
            let x = lasso_box_exact(
                self.a.as_ref(),
                self.data.col(j).as_mat(),
                MU,
                &vec![LOWER; n],
                &vec![UPPER; n],
            )
            .expect("the exact solver finds the solution");
            reference.col_mut(j).copy_from(x.col(0));
        }
        reference
    }

    fn least_squares<T: Scalar>(&self) -> LeastSquares<T> {
        LeastSquares::new(LearnableDense::new("a", cast::<T>(&self.a)).unwrap()).unwrap()
    }

    fn l1<T: Scalar>(&self) -> L1Norm<T> {
        L1Norm::new(T::lit(MU)).unwrap()
    }

    fn box_set<T: Scalar>(&self) -> BoxSet<T> {
        BoxSet::uniform(T::lit(LOWER), T::lit(UPPER)).unwrap()
    }

    fn proximal_gradient<T: Scalar>(&self, acceleration: Acceleration) -> ProximalGradient<T> {
        let n = self.a.ncols();
        let g = BoxConstrained::new(self.l1::<T>(), vec![T::lit(LOWER); n], vec![T::lit(UPPER); n]).unwrap();
        ProximalGradient::new(self.least_squares::<T>(), g, self.a.nrows(), acceleration).unwrap()
    }

    fn davis_yin<T: Scalar>(&self) -> DavisYin<T> {
        DavisYin::new(
            self.a.ncols(),
            self.a.nrows(),
            Box::new(self.least_squares::<T>()),
            Box::new(self.box_set::<T>()),
            Box::new(self.l1::<T>()),
            DavisYinSteps::default(),
        )
        .unwrap()
    }

    fn condat_vu<T: Scalar>(&self) -> CondatVu<T> {
        CondatVu::with_smooth(
            self.a.nrows(),
            Box::new(self.least_squares::<T>()),
            Box::new(Identity::new(self.a.ncols())),
            Box::new(self.box_set::<T>()),
            Box::new(self.l1::<T>()),
            PrimalDualSteps::default(),
        )
        .unwrap()
    }

    fn linearized_admm<T: Scalar>(&self) -> LinearizedAdmm<T> {
        let (m, n) = (self.a.nrows(), self.a.ncols());
        let blocks = vec![
            Block::new(
                LearnableDense::new("a", cast::<T>(&self.a)).unwrap(),
                SquaredDistance::from_data(T::one(), 0, m).unwrap(),
            ),
            Block::new(Identity::new(n), self.l1::<T>()),
            Block::new(Identity::new(n), self.box_set::<T>()),
        ];
        let steps = LadmmSteps {
            alpha: 0.5,
            beta: 0.5,
            lambda: 1.0,
        };
        LinearizedAdmm::new(n, m, blocks, steps).unwrap()
    }

    /// Douglas–Rachford for `A = I`: `g` is the ℓ1 term restricted to the
    /// box and `h = ½‖x − d‖²`.
    fn douglas_rachford<T: Scalar>(&self) -> DouglasRachford<T> {
        let n = self.a.ncols();
        assert_eq!(self.a, Mat::<f64>::identity(n, n));
        let g = BoxConstrained::new(self.l1::<T>(), vec![T::lit(LOWER); n], vec![T::lit(UPPER); n]).unwrap();
        DouglasRachford::new(
            n,
            n,
            Box::new(g),
            Box::new(SquaredDistance::from_data(T::one(), 0, n).unwrap()),
            1.0,
            1.0,
        )
        .unwrap()
    }
}

/// Runs `splitting` plainly and with Anderson acceleration, checks that the
/// accelerated pass converges to `reference` within `tolerance` (max
/// norm), and returns the name with the total iterations of both passes. When
/// `x_from_box_prox` is set, the scheme's last operation on `x` is a prox
/// that enforces the box, so the returned `x` must lie in it exactly.
fn compare<T: Scalar, S: Splitting<Real = T>>(
    name: &'static str,
    splitting: S,
    data: &Mat<f64>,
    reference: &Mat<f64>,
    (rtol, tolerance): (f64, f64),
    x_from_box_prox: bool,
) -> (&'static str, usize, usize) {
    let data = cast::<T>(data);
    let options = ForwardOptions::new(100_000, rtol);
    let layer = OptLayer::new(splitting, options.clone()).unwrap();
    let plain = layer.forward(data.as_ref()).unwrap();
    let accelerated = layer
        .forward_with(data.as_ref(), &options.with_anderson(AndersonOptions::default()))
        .unwrap();
    let counts = accelerated.anderson_totals().unwrap();
    println!(
        "{name} ({}): plain {:?}, Anderson {:?} iterations ({} accepted, {} rejected)",
        T::NAME,
        iterations(&plain),
        iterations(&accelerated),
        counts.accepted,
        counts.rejected
    );
    assert_all_converged(&plain, name);
    assert_all_converged(&accelerated, name);
    for j in 0..reference.ncols() {
        for i in 0..reference.nrows() {
            let value = accelerated.x[(i, j)].to_f64_lossless();
            assert!(
                (value - reference[(i, j)]).abs() < tolerance,
                "{name} ({}): x[{i}, {j}] = {value}, expected {}",
                T::NAME,
                reference[(i, j)]
            );
            if x_from_box_prox {
                // The bounds as the scheme stores them, rounded to T.
                let lower = T::lit(LOWER).to_f64_lossless();
                let upper = T::lit(UPPER).to_f64_lossless();
                assert!(
                    (lower..=upper).contains(&value),
                    "{name}: x[{i}, {j}] = {value} outside the box"
                );
            }
        }
    }
    (name, total_iterations(&plain), total_iterations(&accelerated))
}

#[test]
fn every_splitting_converges_to_reference() {
    const F64: (f64, f64) = (1e-10, 1e-7);
    const F32: (f64, f64) = (1e-5, 1e-3);
    let p = LassoBox::new(gaussian(8, 5, 51));
    let reference = p.reference();
    let d = &p.data;
    let plain = Acceleration::None;
    let fista = Acceleration::Fista;

    let runs = [
        compare::<f64, _>(
            "proximal gradient",
            p.proximal_gradient(plain),
            d,
            &reference,
            F64,
            true,
        ),
        compare::<f64, _>("FISTA", p.proximal_gradient(fista), d, &reference, F64, true),
        compare::<f64, _>("Davis-Yin", p.davis_yin(), d, &reference, F64, false),
        compare::<f64, _>("Condat-Vu", p.condat_vu(), d, &reference, F64, false),
        compare::<f64, _>("linearized ADMM", p.linearized_admm(), d, &reference, F64, false),
        compare::<f32, _>(
            "proximal gradient",
            p.proximal_gradient(plain),
            d,
            &reference,
            F32,
            true,
        ),
        compare::<f32, _>("FISTA", p.proximal_gradient(fista), d, &reference, F32, true),
        compare::<f32, _>("Davis-Yin", p.davis_yin(), d, &reference, F32, false),
        compare::<f32, _>("Condat-Vu", p.condat_vu(), d, &reference, F32, false),
        compare::<f32, _>("linearized ADMM", p.linearized_admm(), d, &reference, F32, false),
    ];

    let q = LassoBox::new(Mat::identity(5, 5));
    let q_reference = q.reference();
    let q_data = &q.data;
    let douglas_rachford = [
        compare::<f64, _>(
            "Douglas-Rachford",
            q.douglas_rachford(),
            q_data,
            &q_reference,
            F64,
            false,
        ),
        compare::<f32, _>(
            "Douglas-Rachford",
            q.douglas_rachford(),
            q_data,
            &q_reference,
            F32,
            false,
        ),
    ];

    // FISTA changes its map with the momentum counter, so extrapolating
    // from its history does not pay; it only has to converge. Every other
    // scheme must need fewer iterations.
    for (name, plain_total, accelerated_total) in runs.iter().chain(&douglas_rachford) {
        if *name != "FISTA" {
            assert!(
                accelerated_total < plain_total,
                "{name}: plain {plain_total}, Anderson {accelerated_total}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Safeguard.

#[test]
fn safeguard_recovers_from_overshooting_steps() {
    // Fixed points far from the start z = 0, where the residual is flat.
    // Without the safeguard the extrapolation jumps to |z| ≈ 1e13 or more,
    // where the residual 1 passes the relative test 1 ≤ rtol·|z|: the pass
    // reports convergence at a point far from the fixed point. With it,
    // the jumps are rejected and the iteration reaches z = d.
    let data = faer::mat![[30.0, -50.0, 80.0]];
    let options = ForwardOptions::new(500, 1e-12);
    let layer = OptLayer::new(Tanh, options.clone()).unwrap();
    let plain = layer.forward(data.as_ref()).unwrap();
    let safeguarded = layer
        .forward_with(
            data.as_ref(),
            &options.clone().with_anderson(AndersonOptions::new(3)),
        )
        .unwrap();
    let unsafeguarded = layer
        .forward_with(
            data.as_ref(),
            &options.with_anderson(AndersonOptions::new(3).with_safeguard(f64::INFINITY)),
        )
        .unwrap();
    let counts = safeguarded.anderson_totals().unwrap();
    println!(
        "tanh map: plain {:?}, safeguarded {:?} ({} accepted, {} rejected), \
         without safeguard {:?} ending at {:?}",
        iterations(&plain),
        iterations(&safeguarded),
        counts.accepted,
        counts.rejected,
        iterations(&unsafeguarded),
        unsafeguarded.x.row(0).iter().collect::<Vec<_>>()
    );

    assert_all_converged(&plain, "plain");
    assert_all_converged(&safeguarded, "safeguarded");
    for j in 0..3 {
        let sample_counts = safeguarded.samples[j].anderson.unwrap();
        assert!(sample_counts.rejected >= 1, "sample {j}: {sample_counts:?}");
        let error = (safeguarded.x[(0, j)] - data[(0, j)]).abs();
        assert!(error < 1e-9, "sample {j}: safeguarded error {error:e}");
        let unsafeguarded_error = (unsafeguarded.x[(0, j)] - data[(0, j)]).abs();
        assert!(
            unsafeguarded_error > 1e6,
            "sample {j}: without the safeguard the pass should end far away, error {unsafeguarded_error:e}"
        );
        assert_eq!(unsafeguarded.samples[j].anderson.unwrap().rejected, 0);
    }
}

#[test]
fn tight_safeguard_still_converges() {
    // A factor of 0.1 rejects most candidates. Every rejection falls back to
    // the plain step, so the pass converges as the plain iteration does.
    let (theta, a, data) = recovery_batch(16, 8, 2, 3, 61);
    let options = ForwardOptions::new(50_000, 1e-8);
    let layer = OptLayer::new(sparse_model::<f64>(&theta, &a, true), options.clone()).unwrap();
    let plain = layer.forward(data.as_ref()).unwrap();
    let tight = layer
        .forward_with(
            data.as_ref(),
            &options.with_anderson(AndersonOptions::default().with_safeguard(0.1)),
        )
        .unwrap();
    let counts = tight.anderson_totals().unwrap();
    println!(
        "safeguard 0.1: plain {:?}, Anderson {:?} ({} accepted, {} rejected)",
        iterations(&plain),
        iterations(&tight),
        counts.accepted,
        counts.rejected
    );
    assert_all_converged(&tight, "safeguard 0.1");
    assert!(counts.rejected > 0);
    let difference = (&tight.x - &plain.x).norm_max();
    assert!(
        difference < 1e-5 * plain.x.norm_max(),
        "difference {difference:e}"
    );
}

#[test]
fn stopped_state_is_a_plain_step() {
    // At every iteration limit, including stops right after a rejected
    // candidate, the returned x of proximal gradient with a box lies in the
    // box. rtol = atol = 0 stops a sample early only at an exact fixed point.
    let p = LassoBox::new(gaussian(8, 5, 51));
    let layer = OptLayer::new(
        p.proximal_gradient::<f64>(Acceleration::None),
        ForwardOptions::default(),
    )
    .unwrap();
    for max_iters in 1..40 {
        let options = ForwardOptions::new(max_iters, 0.0).with_anderson(AndersonOptions::new(4));
        let result = layer.forward_with(p.data.as_ref(), &options).unwrap();
        for (j, sample) in result.samples.iter().enumerate() {
            for i in 0..5 {
                let value = result.x[(i, j)];
                assert!(
                    (LOWER..=UPPER).contains(&value),
                    "max_iters {max_iters}: x = {value}"
                );
            }
            assert!(sample.residual.is_finite());
        }
    }
}

// ---------------------------------------------------------------------------
// Threads, warm starts, precision and options.

#[test]
fn threads_give_identical_results() {
    let (theta, a, data) = recovery_batch(20, 10, 3, 7, 71);
    let options = ForwardOptions::new(20_000, 1e-8).with_anderson(AndersonOptions::default());
    let layer = OptLayer::new(sparse_model::<f64>(&theta, &a, true), options.clone()).unwrap();
    let one = layer
        .forward_with(data.as_ref(), &options.clone().with_threads(1))
        .unwrap();
    let two = layer
        .forward_with(data.as_ref(), &options.clone().with_threads(2))
        .unwrap();
    // One sample per thread: every block steps a single sample with its copy.
    let seven = layer
        .forward_with(data.as_ref(), &options.with_threads(7))
        .unwrap();
    assert_all_converged(&one, "one thread");
    for other in [&two, &seven] {
        assert_eq!(one.samples, other.samples);
        assert_eq!(one.state, other.state);
    }
}

#[test]
fn batch_matches_single_sample_runs() {
    let (theta, a, data) = recovery_batch(12, 6, 2, 5, 81);
    let options = ForwardOptions::new(20_000, 1e-8).with_anderson(AndersonOptions::default());
    let layer = OptLayer::new(sparse_model::<f64>(&theta, &a, true), options).unwrap();
    let batch = layer.forward(data.as_ref()).unwrap();
    let stops: Vec<usize> = iterations(&batch);
    assert!(
        stops.iter().any(|&k| k != stops[0]),
        "samples should stop at different iterations: {stops:?}"
    );
    for j in 0..data.ncols() {
        let single = layer.forward(data.as_ref().subcols(j, 1)).unwrap();
        assert_eq!(single.samples[0], batch.samples[j], "sample {j}");
        assert_eq!(single.state.col(0), batch.state.col(j), "sample {j}");
    }
}

#[test]
fn warm_start_from_accelerated_fixed_point() {
    let (theta, a, data) = recovery_batch(16, 8, 3, 4, 91);
    let options = ForwardOptions::new(20_000, 1e-9).with_anderson(AndersonOptions::default());
    let layer = OptLayer::new(sparse_model::<f64>(&theta, &a, true), options.clone()).unwrap();
    let cold = layer.forward(data.as_ref()).unwrap();
    assert_all_converged(&cold, "cold start");
    let warm = layer
        .forward_from(data.as_ref(), cold.state.as_ref(), &options)
        .unwrap();
    assert_all_converged(&warm, "warm start");
    assert!(
        warm.mean_iterations() <= 2.0,
        "warm start took {} iterations",
        warm.mean_iterations()
    );
    assert!(cold.mean_iterations() > 20.0);
}

#[test]
fn f32_and_f64_agree() {
    let (theta, a, data) = recovery_batch(16, 8, 2, 4, 101);
    let options = ForwardOptions::new(20_000, 1e-5).with_anderson(AndersonOptions::default());
    let layer64 = OptLayer::new(sparse_model::<f64>(&theta, &a, true), options.clone()).unwrap();
    let layer32 = OptLayer::new(sparse_model::<f32>(&theta, &a, true), options).unwrap();
    let result64 = layer64.forward(data.as_ref()).unwrap();
    let result32 = layer32.forward(cast::<f32>(&data).as_ref()).unwrap();
    assert_all_converged(&result64, "f64");
    assert_all_converged(&result32, "f32");
    let difference = (0..result64.x.nrows())
        .flat_map(|i| (0..data.ncols()).map(move |j| (i, j)))
        .map(|(i, j)| (result64.x[(i, j)] - f64::from(result32.x[(i, j)])).abs())
        .fold(0.0, f64::max);
    assert!(difference < 1e-2 * result64.x.norm_max(), "{difference:e}");
}

#[test]
fn invalid_options_rejected() {
    let w = scaled_orthogonal(3, 0.5, 111);
    let data = gaussian(3, 2, 112);
    let cases = [
        ("anderson memory", AndersonOptions::new(0)),
        ("anderson memory", AndersonOptions::new(33)),
        (
            "anderson regularization",
            AndersonOptions::default().with_regularization(-1.0),
        ),
        (
            "anderson regularization",
            AndersonOptions::default().with_regularization(f64::NAN),
        ),
        (
            "anderson safeguard",
            AndersonOptions::default().with_safeguard(0.0),
        ),
        (
            "anderson safeguard",
            AndersonOptions::default().with_safeguard(f64::NAN),
        ),
    ];
    for (name, anderson) in cases {
        let options = ForwardOptions::default().with_anderson(anderson);
        match OptLayer::new(Affine { w: w.clone() }, options.clone()) {
            Err(Error::InvalidParameter { name: found, .. }) => assert_eq!(found, name),
            other => panic!("{anderson:?}: {other:?}"),
        }
        let mut layer = OptLayer::new(Affine { w: w.clone() }, ForwardOptions::default()).unwrap();
        match layer.forward_with(data.as_ref(), &options) {
            Err(Error::InvalidParameter { name: found, .. }) => assert_eq!(found, name),
            other => panic!("{anderson:?}: {other:?}"),
        }
        assert!(layer.set_options(options).is_err(), "{anderson:?}");
        assert_eq!(layer.options().anderson, None);
    }
}
