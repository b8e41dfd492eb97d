//! The Condat–Vũ splitting: vector-Jacobian products against finite
//! differences, convergence to independently computed solutions, step-size
//! rules and input validation.

use faer::linalg::solvers::Solve;
use faer::{Mat, MatRef};
use optlayer_core::{
    AdjointSolver, AuditOptions, Error, ForwardOptions, GradientMode, ImplicitOptions, Operator, OptLayer,
    Parameterized, Prox, Scalar, Smooth, Splitting, Status, mse_loss, set_param,
};
use optlayer_ops::{Dense, Identity, IndicatorPoint, L1Norm, LearnableDense, LeastSquares, Quadratic, Zero};
use optlayer_splittings::{Block, CondatVu, LadmmSteps, LinearizedAdmm, PrimalDualSteps};
use optlayer_testing::fd::{FdOptions, check_step_vjp_params, check_step_vjp_state};
use optlayer_testing::random::gaussian;
use optlayer_testing::reference::{analysis_l1_exact, analysis_l1_vertex_values};
use proptest::prelude::*;

fn boxed_op<O: Operator<f64> + 'static>(op: O) -> Box<dyn Operator<f64>> {
    Box::new(op)
}

fn boxed_prox<P: Prox<f64> + 'static>(prox: P) -> Box<dyn Prox<f64>> {
    Box::new(prox)
}

fn boxed_smooth<F: Smooth<f64> + 'static>(f: F) -> Box<dyn Smooth<f64>> {
    Box::new(f)
}

/// Returns `½‖B x − c‖²` with `B` the learnable parameter "b", reading `c`
/// from the first `B.nrows()` data rows.
fn learnable_least_squares(b: Mat<f64>) -> Box<dyn Smooth<f64>> {
    boxed_smooth(LeastSquares::new(LearnableDense::new("b", b).unwrap()).unwrap())
}

/// Builds the model of the derivative checks: `½‖Bx − c‖² + λ_g‖x‖₁ + λ_h‖Kx‖₁`
/// with learnable `K`, `B`, `λ_g` and `λ_h`. Without the smooth term it is
/// `λ_g‖x‖₁ + ι_{d}(Kx)`, with `d` read from the data rows after `c`.
fn derivative_model(n: usize, m: usize, p: usize, with_smooth: bool, seed: u64) -> CondatVu<f64> {
    let k = boxed_op(LearnableDense::new("k", gaussian(m, n, seed)).unwrap());
    let g = boxed_prox(L1Norm::learnable("lambda_g", 0.3).unwrap());
    if with_smooth {
        let f = learnable_least_squares(gaussian(p, n, seed + 1));
        let h = boxed_prox(L1Norm::learnable("lambda_h", 0.5).unwrap());
        CondatVu::with_smooth(p + m, f, k, g, h, PrimalDualSteps::default()).unwrap()
    } else {
        let h = boxed_prox(IndicatorPoint::from_data(p, m).unwrap());
        CondatVu::new(p + m, k, g, h, PrimalDualSteps::default()).unwrap()
    }
}

proptest! {
    #![proptest_config(optlayer_testing::proptest_config(48))]

    #[test]
    fn step_vjp_matches_finite_differences(
        n in 2usize..7, m in 1usize..6, p in 1usize..6, batch in 1usize..4,
        with_smooth in any::<bool>(), seed in 0u64..10_000,
    ) {
        let mut s = derivative_model(n, m, p, with_smooth, seed);
        let z = gaussian(s.state_dim(), batch, seed + 2);
        let data = gaussian(p + m, batch, seed + 3);
        let cotangent = gaussian(s.state_dim(), batch, seed + 4);
        let opts = FdOptions::default();

        let state = check_step_vjp_state(&s, z.as_ref(), data.as_ref(), cotangent.as_ref(), &opts);
        prop_assert!(state.rel_error < 1e-7, "state cotangent: {state:?}");
        prop_assert!(state.fd_norm > 0.0);
        prop_assert!(state.checked >= 4 * state.skipped_nonsmooth, "too many kinks: {state:?}");

        let params = check_step_vjp_params(&mut s, z.as_ref(), data.as_ref(), cotangent.as_ref(), &opts);
        prop_assert!(params.rel_error < 1e-7, "parameter gradient: {params:?}");
        prop_assert!(params.fd_norm > 0.0);
        prop_assert!(params.checked >= 4 * params.skipped_nonsmooth, "too many kinks: {params:?}");
    }
}

#[test]
fn param_order_is_k_f_g_h() {
    let s = derivative_model(3, 2, 4, true, 1);
    let names: Vec<String> = (0..s.param_count()).map(|i| s.param_info(i).name).collect();
    assert_eq!(names, ["k", "b", "lambda_g", "lambda_h"]);
    assert_eq!(s.param_info(0).nrows, 2);
    assert_eq!(s.param_info(1).nrows, 4);
    assert_eq!(s.primal_rows(), 0..3);
    assert_eq!(s.dual_rows(), 3..5);
    assert_eq!(s.state_dim(), 5);
    assert_eq!(s.name(), "Condat-Vu");
    let cp = derivative_model(3, 2, 4, false, 1);
    assert_eq!(cp.name(), "Chambolle-Pock");
    assert_eq!(cp.param_count(), 2);
}

#[test]
fn step_vjp_parts_agree_with_joint_call() {
    use faer::Par;
    use faer::dyn_stack::{MemBuffer, MemStack};
    let (n, m, p, batch) = (5, 3, 4, 3);
    let s = derivative_model(n, m, p, true, 7);
    let z = gaussian(s.state_dim(), batch, 3);
    let data = gaussian(p + m, batch, 4);
    let cotangent = gaussian(s.state_dim(), batch, 5);
    let mut buffer = MemBuffer::new(s.step_vjp_scratch(batch, Par::Seq));
    let stack = MemStack::new(&mut buffer);
    let zeros = || -> Vec<Mat<f64>> {
        (0..s.param_count())
            .map(|i| s.param_info(i))
            .map(|info| Mat::zeros(info.nrows, info.ncols))
            .collect()
    };
    let call =
        |z_bar: Option<faer::MatMut<'_, f64>>, grads: Option<&mut [Mat<f64>]>, stack: &mut MemStack| {
            s.step_vjp(
                z_bar,
                z.as_ref(),
                data.as_ref(),
                cotangent.as_ref(),
                grads,
                Par::Seq,
                stack,
            )
        };

    let (mut z_bar_joint, mut grads_joint) = (Mat::zeros(s.state_dim(), batch), zeros());
    call(Some(z_bar_joint.as_mut()), Some(&mut grads_joint), stack);
    let mut z_bar = Mat::zeros(s.state_dim(), batch);
    call(Some(z_bar.as_mut()), None, stack);
    let mut grads = zeros();
    call(None, Some(&mut grads), stack);

    assert_eq!(z_bar, z_bar_joint);
    for (part, joint) in grads.iter().zip(&grads_joint) {
        assert_eq!(part, joint);
        assert!(part.norm_l2() > 0.0);
    }
}

/// Builds the basis pursuit problem `min ‖x‖₁ s.t. Ax = d` as Chambolle–Pock
/// with `g = ‖·‖₁`, `K = A` and `h = ι_{d}`.
fn basis_pursuit<T: Scalar>(a: Mat<T>, steps: PrimalDualSteps) -> optlayer_core::Result<CondatVu<T>> {
    let m = a.nrows();
    CondatVu::new(
        m,
        Box::new(Dense::new(a)?),
        Box::new(L1Norm::new(T::one())?),
        Box::new(IndicatorPoint::from_data(0, m)?),
        steps,
    )
}

fn zero_column_known_answer<T: Scalar>(rtol: f64, tolerance: f64) {
    // A = [[1, 0], [2, 0]], d = [1, 2]: every feasible point is (1, t), and
    // the ℓ1 norm is smallest at t = 0.
    let lit = |v: f64| T::lit(v);
    let a = Mat::from_fn(2, 2, |i, j| [[lit(1.0), lit(0.0)], [lit(2.0), lit(0.0)]][i][j]);
    let d = Mat::from_fn(2, 1, |i, _| [lit(1.0), lit(2.0)][i]);
    let s = basis_pursuit(a, PrimalDualSteps::default()).unwrap();
    let layer = OptLayer::new(s, ForwardOptions::new(100_000, rtol)).unwrap();
    let result = layer.forward(d.as_ref()).unwrap();
    let report = result.samples[0];
    assert_ne!(report.status, Status::NonFinite, "{report:?}");
    for i in 0..result.state.nrows() {
        assert!(result.state[(i, 0)].is_finite(), "state {:?}", result.state);
    }
    let x = result.x.as_ref();
    let expected = [1.0, 0.0];
    for (i, &value) in expected.iter().enumerate() {
        let error = (x[(i, 0)].to_f64_lossless() - value).abs();
        assert!(
            error <= tolerance,
            "x = {x:?}, expected {expected:?} ({})",
            T::NAME
        );
    }
}

#[test]
fn zero_column_known_answer_f64() {
    zero_column_known_answer::<f64>(1e-13, 1e-10);
}

#[test]
fn zero_column_known_answer_f32() {
    zero_column_known_answer::<f32>(1e-6, 1e-5);
}

/// Returns a random basis pursuit problem `(A, d)`: `A` (`m x n`) Gaussian
/// with unit columns, and `d = A x*` with `x*` `k`-sparse.
fn sparse_problem(n: usize, m: usize, k: usize, seed: u64) -> (Mat<f64>, Mat<f64>) {
    use rand::seq::index::sample;
    let mut a = gaussian(m, n, seed);
    for j in 0..n {
        let norm = a.col(j).norm_l2();
        for i in 0..m {
            a[(i, j)] /= norm;
        }
    }
    let values = gaussian(k, 1, seed + 1);
    let mut rng = optlayer_testing::random::rng(seed + 2);
    let mut x_star = Mat::<f64>::zeros(n, 1);
    for (i, index) in sample(&mut rng, n, k).into_iter().enumerate() {
        x_star[(index, 0)] = values[(i, 0)];
    }
    let d = &a * &x_star;
    (a, d)
}

/// Builds linearized ADMM on `min ‖x‖₁ s.t. Ax = d`, with blocks `(I, ‖·‖₁)` and `(A, ι_{d})`.
fn ladmm_basis_pursuit(a: &Mat<f64>) -> LinearizedAdmm<f64> {
    let (m, n) = a.shape();
    let a_norm = a.as_ref().singular_values().unwrap()[0];
    let blocks = vec![
        Block::new(Identity::new(n), L1Norm::new(1.0).unwrap()),
        Block::new(
            Dense::new(a.clone()).unwrap(),
            IndicatorPoint::from_data(0, m).unwrap(),
        ),
    ];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 1.0 / (1.0 + a_norm),
        lambda: 1.0,
    };
    LinearizedAdmm::new(n, m, blocks, steps).unwrap()
}

fn distance(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> f64 {
    (a - b).norm_l2()
}

fn scaled(m: &Mat<f64>, factor: f64) -> Mat<f64> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| factor * m[(i, j)])
}

/// Returns column `j` of rows `start..start + len` of `m`, as an `len x 1` matrix.
fn column_block(m: &Mat<f64>, start: usize, len: usize, j: usize) -> Mat<f64> {
    Mat::from_fn(len, 1, |i, _| m[(start + i, j)])
}

proptest! {
    #![proptest_config(optlayer_testing::proptest_config(128))]

    /// Convergence on random basis pursuit problems with a unique solution,
    /// against the exact vertex enumeration of the linear program and
    /// against linearized ADMM.
    #[test]
    fn basis_pursuit_matches_exact_and_ladmm(
        n in 4usize..9, m_frac in 0.4f64..0.9, seed in 0u64..100_000,
    ) {
        let m = ((n as f64 * m_frac) as usize).clamp(2, n - 1);
        let k = ((m - 1) / 2).max(1);
        let (a, d) = sparse_problem(n, m, k, seed);
        let identity = Mat::<f64>::identity(n, n);

        // Skip problems with two nearly optimal vertices, whose solution is
        // nearly non-unique and needs millions of steps.
        let vertices = analysis_l1_vertex_values(identity.as_ref(), a.as_ref(), d.as_ref()).unwrap();
        prop_assume!(vertices.len() < 2 || vertices[1] - vertices[0] > 1e-3 * vertices[0]);
        let (x_exact, _) = analysis_l1_exact(identity.as_ref(), a.as_ref(), d.as_ref()).unwrap();
        let scale = x_exact.norm_l2().max(1.0);

        let options = ForwardOptions::new(2_000_000, 1e-12);
        let layer = OptLayer::new(basis_pursuit(a.clone(), PrimalDualSteps::default()).unwrap(), options.clone()).unwrap();
        let result = layer.forward(d.as_ref()).unwrap();
        prop_assert_eq!(result.samples[0].status, Status::Converged, "{:?}", result.samples[0]);
        let x = result.x.as_ref();
        let fidelity = distance((&a * x).as_ref(), d.as_ref()) / d.norm_l2();
        prop_assert!(fidelity <= 1e-8, "‖Ax − d‖/‖d‖ = {fidelity:e}");
        let error = distance(x, x_exact.as_ref());
        prop_assert!(error <= 1e-6 * scale, "‖x − x_exact‖ = {error:e}");

        let ladmm = OptLayer::new(ladmm_basis_pursuit(&a), options).unwrap();
        let reference = ladmm.forward(d.as_ref()).unwrap();
        prop_assert_eq!(reference.samples[0].status, Status::Converged);
        let gap = distance(x, reference.x.as_ref());
        prop_assert!(gap <= 1e-6 * scale, "‖x_cv − x_ladmm‖ = {gap:e}");
    }
}

/// Solves `min ½‖Bx − c‖² s.t. Ax = d` from its optimality system
/// `[BᵀB Aᵀ; A 0] [x; ν] = [Bᵀc; d]`.
fn constrained_least_squares(b: &Mat<f64>, c: &Mat<f64>, a: &Mat<f64>, d: &Mat<f64>) -> Mat<f64> {
    let (m, n) = a.shape();
    let gram = b.transpose() * b;
    let bc = b.transpose() * c;
    let kkt = Mat::from_fn(n + m, n + m, |i, j| match (i < n, j < n) {
        (true, true) => gram[(i, j)],
        (true, false) => a[(j - n, i)],
        (false, true) => a[(i - n, j)],
        (false, false) => 0.0,
    });
    let rhs = Mat::from_fn(n + m, 1, |i, _| if i < n { bc[(i, 0)] } else { d[(i - n, 0)] });
    let solution = kkt.full_piv_lu().solve(&rhs);
    solution.subrows(0, n).to_owned()
}

proptest! {
    #![proptest_config(optlayer_testing::proptest_config(96))]

    /// Convergence with a smooth term, `min ½‖Bx − c‖² s.t. Ax = d`, against
    /// the solution of the optimality system, for a batch of data columns.
    #[test]
    fn constrained_least_squares_matches_kkt_solution(
        n in 2usize..8, m_frac in 0.2f64..0.9, batch in 1usize..4, seed in 0u64..100_000,
    ) {
        let m = ((n as f64 * m_frac) as usize).clamp(1, n - 1);
        let p = n + 2;
        let b = gaussian(p, n, seed);
        let a = gaussian(m, n, seed + 1);
        let data = gaussian(p + m, batch, seed + 2);
        let s = CondatVu::with_smooth(
            p + m,
            boxed_smooth(LeastSquares::new(Dense::new(b.clone()).unwrap()).unwrap()),
            boxed_op(Dense::new(a.clone()).unwrap()),
            boxed_prox(Zero),
            boxed_prox(IndicatorPoint::from_data(p, m).unwrap()),
            PrimalDualSteps::default(),
        ).unwrap();
        prop_assert!(s.lipschitz_estimate() > 0.0);
        let layer = OptLayer::new(s, ForwardOptions::new(1_000_000, 1e-13)).unwrap();
        let result = layer.forward(data.as_ref()).unwrap();
        for j in 0..batch {
            prop_assert_eq!(result.samples[j].status, Status::Converged, "{:?}", result.samples[j]);
            let c = column_block(&data, 0, p, j);
            let d = column_block(&data, p, m, j);
            let expected = constrained_least_squares(&b, &c, &a, &d);
            let x = column_block(&result.x, 0, n, j);
            let error = distance(x.as_ref(), expected.as_ref());
            prop_assert!(error <= 1e-7 * expected.norm_l2().max(1.0), "sample {j}: ‖x − x*‖ = {error:e}");
        }
    }

    /// Convergence with all four terms, `min ½‖Bx − c‖² + μ‖x‖₁ + λ‖Θx‖₁`,
    /// checked by the optimality conditions: with the dual variable `y` of
    /// the fixed point, `r = −(Bᵀ(Bx − c) + Θᵀy)` must lie in `μ ∂‖x‖₁` and
    /// `y` in `λ ∂‖·‖₁(Θx)`.
    #[test]
    fn generalized_lasso_satisfies_optimality_conditions(
        n in 2usize..8, p in 2usize..8, seed in 0u64..100_000,
    ) {
        let (mu, lambda) = (0.2, 0.3);
        let b = gaussian(p, n, seed);
        let theta = gaussian(n, n, seed + 1);
        let c = scaled(&gaussian(p, 1, seed + 2), 3.0);
        let s = CondatVu::with_smooth(
            p,
            boxed_smooth(LeastSquares::new(Dense::new(b.clone()).unwrap()).unwrap()),
            boxed_op(Dense::new(theta.clone()).unwrap()),
            boxed_prox(L1Norm::new(mu).unwrap()),
            boxed_prox(L1Norm::new(lambda).unwrap()),
            PrimalDualSteps::default(),
        ).unwrap();
        let dual_rows = s.dual_rows();
        let layer = OptLayer::new(s, ForwardOptions::new(2_000_000, 1e-13)).unwrap();
        let result = layer.forward(c.as_ref()).unwrap();
        prop_assert_eq!(result.samples[0].status, Status::Converged, "{:?}", result.samples[0]);

        let x = result.x.as_ref();
        let y = result.state.subrows(dual_rows.start, dual_rows.len());
        let r = scaled(&(b.transpose() * (&b * x - &c) + theta.transpose() * y), -1.0);
        let theta_x = &theta * x;
        let tol = 1e-7;
        for i in 0..n {
            if x[(i, 0)].abs() > tol {
                let gap = (r[(i, 0)] - mu * x[(i, 0)].signum()).abs();
                prop_assert!(gap <= tol, "x[{i}] = {:e}: r = {:e}", x[(i, 0)], r[(i, 0)]);
            } else {
                prop_assert!(r[(i, 0)].abs() <= mu + tol, "x[{i}] ≈ 0: r = {:e}", r[(i, 0)]);
            }
            prop_assert!(y[(i, 0)].abs() <= lambda * (1.0 + 1e-12), "y[{i}] = {:e}", y[(i, 0)]);
            if theta_x[(i, 0)].abs() > tol {
                let gap = (y[(i, 0)] - lambda * theta_x[(i, 0)].signum()).abs();
                prop_assert!(gap <= tol, "(Θx)[{i}] = {:e}: y = {:e}", theta_x[(i, 0)], y[(i, 0)]);
            }
        }
    }
}

#[test]
fn balanced_steps_follow_the_estimates() {
    // ‖diag(3, 4)‖₂ = 4 and L = ‖diag(2, 6)‖₂ = 6, so σ = 1/4 and
    // τ = 0.99 / (σ·16 + 3) = 0.99/7.
    let k = Mat::from_fn(2, 2, |i, j| if i == j { [3.0, 4.0][i] } else { 0.0 });
    let q = Mat::from_fn(2, 2, |i, j| if i == j { [2.0, 6.0][i] } else { 0.0 });
    let s = CondatVu::with_smooth(
        0,
        boxed_smooth(Quadratic::new(q, Mat::zeros(2, 1)).unwrap()),
        boxed_op(Dense::new(k.clone()).unwrap()),
        boxed_prox(Zero),
        boxed_prox(L1Norm::new(1.0).unwrap()),
        PrimalDualSteps::default(),
    )
    .unwrap();
    assert!((s.norm_estimate() - 4.0).abs() < 1e-8, "{}", s.norm_estimate());
    assert!((s.lipschitz_estimate() - 6.0).abs() < 1e-12);
    assert!((s.sigma() - 0.25).abs() < 1e-9);
    assert!((s.tau() - 0.99 / 7.0).abs() < 1e-9);
    assert!((s.step_condition() - 0.99).abs() < 1e-12);
    let recorded = s.step_sizes();
    assert_eq!(recorded[0].0, "tau");
    assert_eq!(recorded[1].0, "sigma");
    assert_eq!(recorded[1].1, s.sigma());

    // Without the smooth term the condition is τσ‖K‖² = 0.99, with σ = 1/4.
    let cp = CondatVu::new(
        0,
        boxed_op(Dense::new(k).unwrap()),
        boxed_prox(Zero),
        boxed_prox(L1Norm::new(1.0).unwrap()),
        PrimalDualSteps::default(),
    )
    .unwrap();
    assert!((cp.tau() - 0.99 / 4.0).abs() < 1e-9);
    assert!((cp.step_condition() - 0.99).abs() < 1e-12);
}

#[test]
fn zero_operator_gives_finite_steps() {
    let s = CondatVu::new(
        0,
        boxed_op(Dense::new(Mat::<f64>::zeros(2, 3)).unwrap()),
        boxed_prox(L1Norm::new(1.0).unwrap()),
        boxed_prox(L1Norm::new(1.0).unwrap()),
        PrimalDualSteps::default(),
    )
    .unwrap();
    assert_eq!(s.norm_estimate(), 0.0);
    assert_eq!((s.tau(), s.sigma()), (1.0, 1.0));
    // min ‖x‖₁ is solved by x = 0 from any start.
    let layer = OptLayer::new(s, ForwardOptions::new(100, 1e-12)).unwrap();
    let start = gaussian(5, 1, 3);
    let result = layer
        .forward_from(Mat::<f64>::zeros(0, 1).as_ref(), start.as_ref(), layer.options())
        .unwrap();
    assert_eq!(result.samples[0].status, Status::Converged);
    assert_eq!(result.x.norm_l2(), 0.0);
}

#[test]
fn fixed_steps_breaking_the_condition_are_rejected() {
    // ‖A‖₂² = 5 for A = [[1, 0], [2, 0]], so τσ‖A‖² = 0.25·1·5 ≥ 0.99.
    let a = Mat::from_fn(2, 2, |i, j| [[1.0, 0.0], [2.0, 0.0]][i][j]);
    let err = basis_pursuit(a.clone(), PrimalDualSteps::fixed(0.25, 1.0)).unwrap_err();
    match &err {
        Error::StepCondition { value, bound, .. } => {
            assert!((value - 1.25).abs() < 1e-8, "{err}");
            assert_eq!(*bound, 0.99);
        }
        other => panic!("expected StepCondition, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("tau * (sigma * ||K||_2^2 + L/2) < safety"),
        "{message}"
    );
    assert!(message.contains("choose tau below 1.98"), "{message}");
    assert!(message.contains("Chambolle-Pock"), "{message}");

    let accepted: CondatVu<f64> = basis_pursuit(a, PrimalDualSteps::fixed(0.19, 1.0)).unwrap();
    assert!((accepted.step_condition() - 0.95).abs() < 1e-8);
    assert_eq!(accepted.tau(), 0.19);
}

#[test]
fn fixed_steps_count_the_smooth_term() {
    // ‖I‖ = 1 and L = 4: τσ = 0.5 alone is valid, but τ(σ + L/2) = 0.5 + 1 is not.
    let build = |tau: f64| {
        CondatVu::with_smooth(
            0,
            boxed_smooth(Quadratic::new(scaled(&Mat::<f64>::identity(2, 2), 4.0), Mat::zeros(2, 1)).unwrap()),
            boxed_op(Identity::new(2)),
            boxed_prox(Zero),
            boxed_prox(L1Norm::new(1.0).unwrap()),
            PrimalDualSteps::fixed(tau, 1.0),
        )
    };
    match build(0.5) {
        Err(Error::StepCondition { value, .. }) => assert!((value - 1.5).abs() < 1e-8),
        other => panic!("expected StepCondition, got {other:?}"),
    }
    let accepted = build(0.3).unwrap();
    assert!((accepted.step_condition() - 0.9).abs() < 1e-8);
}

#[test]
fn invalid_steps_are_rejected() {
    let a = || Mat::from_fn(2, 2, |i, j| [[1.0, 0.0], [2.0, 0.0]][i][j]);
    let cases = [
        (PrimalDualSteps::fixed(f64::NAN, 1.0), "tau"),
        (PrimalDualSteps::fixed(0.0, 1.0), "tau"),
        (PrimalDualSteps::fixed(-0.1, 1.0), "tau"),
        (PrimalDualSteps::fixed(0.1, 0.0), "sigma"),
        (PrimalDualSteps::fixed(0.1, f64::INFINITY), "sigma"),
        (PrimalDualSteps::Balanced { safety: 0.0 }, "step safety"),
        (PrimalDualSteps::Balanced { safety: 1.5 }, "step safety"),
        (PrimalDualSteps::Balanced { safety: f64::NAN }, "step safety"),
    ];
    for (steps, expected_name) in cases {
        match basis_pursuit(a(), steps) {
            Err(Error::InvalidParameter { name, .. }) => assert_eq!(name, expected_name, "{steps:?}"),
            other => panic!("{steps:?}: expected InvalidParameter, got {other:?}"),
        }
    }
}

#[test]
fn mismatched_terms_are_rejected() {
    let op = || boxed_op(Dense::new(gaussian(2, 3, 1)).unwrap());
    let steps = PrimalDualSteps::default();

    // g on 2 entries, but x has 3.
    let g = boxed_prox(L1Norm::with_weights(vec![1.0, 1.0]).unwrap());
    let err = CondatVu::new(2, op(), g, boxed_prox(Zero), steps).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { what, .. } if what == "prox of g"),
        "{err}"
    );

    // h on 3 entries, but Kx has 2.
    let h = boxed_prox(L1Norm::with_weights(vec![1.0; 3]).unwrap());
    let err = CondatVu::new(2, op(), boxed_prox(Zero), h, steps).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { what, .. } if what == "prox of h"),
        "{err}"
    );

    // h reads data rows 1..3, but the data has 2 rows.
    let h = boxed_prox(IndicatorPoint::from_data(1, 2).unwrap());
    let err = CondatVu::new(2, op(), boxed_prox(Zero), h, steps).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { what, .. } if what == "prox of h"),
        "{err}"
    );

    // K has no columns, so x would be empty.
    let err = CondatVu::new(
        0,
        boxed_op(Identity::new(0)),
        boxed_prox(Zero),
        boxed_prox(Zero),
        steps,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Empty { .. }), "{err}");

    // f on 4 entries.
    let f = boxed_smooth(LeastSquares::new(Dense::new(gaussian(2, 4, 2)).unwrap()).unwrap());
    let err = CondatVu::with_smooth(2, f, op(), boxed_prox(Zero), boxed_prox(Zero), steps).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { what, .. } if what == "smooth term f"),
        "{err}"
    );

    // f reads 3 data rows.
    let f = boxed_smooth(LeastSquares::new(Dense::new(gaussian(3, 3, 2)).unwrap()).unwrap());
    let err = CondatVu::with_smooth(2, f, op(), boxed_prox(Zero), boxed_prox(Zero), steps).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { what, .. } if what == "smooth term f"),
        "{err}"
    );
}

#[test]
fn duplicate_parameter_names_are_rejected() {
    let steps = PrimalDualSteps::default();
    let k = || boxed_op(LearnableDense::new("theta", gaussian(2, 3, 1)).unwrap());

    // g and h both call their weight "lambda".
    let err = CondatVu::new(
        0,
        k(),
        boxed_prox(L1Norm::learnable("lambda", 0.1).unwrap()),
        boxed_prox(L1Norm::learnable("lambda", 0.2).unwrap()),
        steps,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateParameter { name } if name == "lambda"),
        "{err}"
    );

    // K and the operator inside f are both "theta".
    let f =
        boxed_smooth(LeastSquares::new(LearnableDense::new("theta", gaussian(2, 3, 2)).unwrap()).unwrap());
    let err = CondatVu::with_smooth(2, f, k(), boxed_prox(Zero), boxed_prox(Zero), steps).unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateParameter { name } if name == "theta"),
        "{err}"
    );
}

#[test]
fn parameter_updates_refresh_the_steps() {
    let (m, n) = (3, 4);
    let k = gaussian(m, n, 5);
    let norm = k.as_ref().singular_values().unwrap()[0];
    let build = |steps| {
        CondatVu::new(
            m,
            boxed_op(LearnableDense::new("k", k.clone()).unwrap()),
            boxed_prox(L1Norm::new(1.0).unwrap()),
            boxed_prox(IndicatorPoint::from_data(0, m).unwrap()),
            steps,
        )
        .unwrap()
    };

    // Balanced steps follow a 10 times larger K.
    let mut s = build(PrimalDualSteps::default());
    assert!((s.norm_estimate() - norm).abs() < 1e-6 * norm);
    set_param(&mut s, "k", scaled(&k, 10.0).as_ref()).unwrap();
    assert!((s.norm_estimate() - 10.0 * norm).abs() < 1e-5 * norm);
    assert!((s.sigma() - 1.0 / (10.0 * norm)).abs() < 1e-6 / norm);
    assert!((s.step_condition() - 0.99).abs() < 1e-12);

    // Fixed steps valid for K become invalid for 10 K; the update is undone.
    let tau = 0.5 / (norm * norm);
    let mut s = build(PrimalDualSteps::fixed(tau, 1.0));
    let err = set_param(&mut s, "k", scaled(&k, 10.0).as_ref()).unwrap_err();
    assert!(matches!(err, Error::StepCondition { .. }), "{err}");
    assert_eq!(s.param(0).to_owned(), k);
    assert!((s.step_condition() - 0.5).abs() < 1e-6);
    assert_eq!(s.tau(), tau);
}

#[test]
fn unrolled_and_implicit_gradients_match_finite_differences() {
    // min ½‖Bx − c‖² s.t. Ax = d with learnable B and A: the fixed point is
    // a smooth function of both, so the unrolled gradient of a fixed number
    // of steps and the implicit gradient at convergence are exact.
    let (n, m, p, batch) = (4, 2, 5, 2);
    let build = || {
        CondatVu::with_smooth(
            p + m,
            learnable_least_squares(gaussian(p, n, 11)),
            boxed_op(LearnableDense::new("a", gaussian(m, n, 12)).unwrap()),
            boxed_prox(Zero),
            boxed_prox(IndicatorPoint::from_data(p, m).unwrap()),
            PrimalDualSteps::default(),
        )
        .unwrap()
    };
    let data = gaussian(p + m, batch, 13);
    let target = gaussian(n, batch, 14);

    let mut unrolled = OptLayer::new(build(), ForwardOptions::new(25, 0.0)).unwrap();
    let options = AuditOptions {
        modes: vec![GradientMode::Unrolled {
            steps: None,
            memory_limit_bytes: None,
        }],
        ..AuditOptions::default()
    };
    let audit = unrolled
        .audit_gradients(
            data.as_ref(),
            &mut |x, g| mse_loss(x, target.as_ref(), g),
            &options,
        )
        .unwrap();
    assert!(audit.rows[0].relative_error < 1e-6, "{}", audit.table());

    let mut implicit = OptLayer::new(build(), ForwardOptions::new(1_000_000, 1e-14)).unwrap();
    let options = AuditOptions {
        modes: vec![GradientMode::Implicit(ImplicitOptions {
            solver: AdjointSolver::BiCgStab,
            rtol: 1e-12,
            ..ImplicitOptions::default()
        })],
        ..AuditOptions::default()
    };
    let audit = implicit
        .audit_gradients(
            data.as_ref(),
            &mut |x, g| mse_loss(x, target.as_ref(), g),
            &options,
        )
        .unwrap();
    assert!(audit.rows[0].relative_error < 1e-5, "{}", audit.table());
}
