//! Linearized ADMM: vector-Jacobian products against finite differences,
//! convergence to the exact solution, and input validation.

use faer::linalg::solvers::Solve;
use faer::{Mat, MatRef};
use optlayer_core::{ForwardOptions, OptLayer, Splitting, Status};
use optlayer_ops::{Dense, IndicatorPoint, L1Norm, LearnableDense};
use optlayer_splittings::{Block, LadmmSteps, LinearizedAdmm};
use optlayer_testing::fd::{FdOptions, check_step_vjp_params, check_step_vjp_state};
use optlayer_testing::random::gaussian;
use optlayer_testing::reference::{analysis_l1_exact, analysis_l1_vertex_values, min_norm_solution};
use proptest::prelude::*;

/// Builds `min ‖Θx‖₁ s.t. Ax = d` with the reference step sizes
/// α = 0.5, λ = 1, β = 1/(1 + ‖A‖₂), scaled by `beta_scale`.
fn sparse_model(theta: Mat<f64>, a: Mat<f64>, beta_scale: f64) -> LinearizedAdmm<f64> {
    let n = a.ncols();
    let m = a.nrows();
    let a_norm = a.as_ref().singular_values().unwrap()[0];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: beta_scale / (1.0 + a_norm),
        lambda: 1.0,
    };
    let blocks = vec![
        Block::new(
            LearnableDense::new("theta", theta).unwrap(),
            L1Norm::new(1.0).unwrap(),
        ),
        Block::new(Dense::new(a).unwrap(), IndicatorPoint::from_data(0, m).unwrap()),
    ];
    LinearizedAdmm::new(n, m, blocks, steps).unwrap()
}

/// Returns `I + G/(2‖G‖₂)` for a Gaussian `G`: a random matrix with condition number at most 3.
fn well_conditioned(n: usize, seed: u64) -> Mat<f64> {
    let g = gaussian(n, n, seed);
    let scale = 0.5 / g.as_ref().singular_values().unwrap()[0];
    Mat::from_fn(n, n, |i, j| if i == j { 1.0 } else { 0.0 } + scale * g[(i, j)])
}

/// Scales every column of `a` to unit Euclidean norm, as in the reference problem.
fn unit_columns(mut a: Mat<f64>) -> Mat<f64> {
    for j in 0..a.ncols() {
        let norm = a.col(j).norm_l2();
        for i in 0..a.nrows() {
            a[(i, j)] /= norm;
        }
    }
    a
}

fn column_norm(m: MatRef<'_, f64>, j: usize) -> f64 {
    m.col(j).norm_l2()
}

fn l1_of_product(theta: MatRef<'_, f64>, x: MatRef<'_, f64>) -> f64 {
    let y = theta * x;
    (0..y.nrows()).map(|i| y[(i, 0)].abs()).sum()
}

proptest! {
    #![proptest_config(optlayer_testing::proptest_config(48))]

    #[test]
    fn step_vjp_matches_finite_differences(
        n in 3usize..8, m_frac in 0.3f64..0.8, batch in 1usize..4, seed in 0u64..10_000,
    ) {
        let m = ((n as f64 * m_frac) as usize).max(1);
        let theta = gaussian(n, n, seed);
        let a = gaussian(m, n, seed + 1);
        let mut s = sparse_model(theta, a, 1.0);
        let z = gaussian(s.state_dim(), batch, seed + 2);
        let data = gaussian(m, batch, seed + 3);
        let cotangent = gaussian(s.state_dim(), batch, seed + 4);
        let opts = FdOptions::default();

        let state = check_step_vjp_state(&s, z.as_ref(), data.as_ref(), cotangent.as_ref(), &opts);
        prop_assert!(state.rel_error < 1e-7, "state cotangent: {state:?}");
        prop_assert!(state.fd_norm > 0.0);
        prop_assert!(state.checked >= state.skipped_nonsmooth, "too many kinks: {state:?}");

        let params = check_step_vjp_params(&mut s, z.as_ref(), data.as_ref(), cotangent.as_ref(), &opts);
        prop_assert!(params.rel_error < 1e-7, "parameter gradient: {params:?}");
        prop_assert!(params.fd_norm > 0.0);
        prop_assert!(params.checked >= params.skipped_nonsmooth, "too many kinks: {params:?}");
    }
}

/// A random sparse recovery problem: `Θ` with condition number at most 3,
/// `A` (`m x n`) with unit columns, and `d = A x*` where `Θ x*` has `k` nonzeros.
struct RecoveryProblem {
    theta: Mat<f64>,
    a: Mat<f64>,
    d: Mat<f64>,
}

fn recovery_problem(n: usize, m: usize, k: usize, seed: u64) -> RecoveryProblem {
    use rand::seq::index::sample;
    let theta = well_conditioned(n, seed);
    let a = unit_columns(gaussian(m, n, seed + 1));
    let values = gaussian(k, 1, seed + 2);
    let mut rng = optlayer_testing::random::rng(seed + 3);
    let mut y = Mat::<f64>::zeros(n, 1);
    for (i, index) in sample(&mut rng, n, k).into_iter().enumerate() {
        y[(index, 0)] = values[(i, 0)];
    }
    let x_star = theta.partial_piv_lu().solve(&y);
    let d = &a * &x_star;
    RecoveryProblem { theta, a, d }
}

proptest! {
    #![proptest_config(optlayer_testing::proptest_config(128))]

    /// Convergence and optimality on random sparse recovery problems. The
    /// exact optimum comes from enumerating the vertices of the equivalent
    /// linear program, independently of any splitting.
    #[test]
    fn converges_to_exact_sparse_solution(
        n in 4usize..9, m_frac in 0.4f64..0.9, seed in 0u64..100_000,
    ) {
        let m = ((n as f64 * m_frac) as usize).clamp(2, n - 1);
        let k = ((m - 1) / 2).max(1);
        let problem = recovery_problem(n, m, k, seed);
        let (theta, a, d) = (&problem.theta, &problem.a, &problem.d);

        // Skip problems with two nearly optimal vertices: their solution is
        // nearly non-unique, and the first-order iteration can need millions
        // of steps there (see the example convergence_profile).
        let vertices = analysis_l1_vertex_values(theta.as_ref(), a.as_ref(), d.as_ref()).unwrap();
        prop_assume!(vertices.len() < 2 || vertices[1] - vertices[0] > 1e-3 * vertices[0]);

        let s = sparse_model(theta.clone(), a.clone(), 1.0);
        let layer = OptLayer::new(s, ForwardOptions::new(2_000_000, 1e-12)).unwrap();
        let result = layer.forward(d.as_ref()).unwrap();
        let report = result.samples[0];
        prop_assert_eq!(report.status, Status::Converged, "{:?}", report);
        prop_assert!(report.relative_residual <= 1e-12);

        let x = result.x.as_ref();
        let fidelity = column_norm((a * x - d).as_ref(), 0) / column_norm(d.as_ref(), 0);
        prop_assert!(fidelity <= 1e-6, "fidelity {fidelity:e}");

        let x_ls = min_norm_solution(a.as_ref(), d.as_ref());
        let value = l1_of_product(theta.as_ref(), x);
        let value_ls = l1_of_product(theta.as_ref(), x_ls.as_ref());
        prop_assert!(value <= value_ls * (1.0 + 1e-9), "‖Θx‖₁ = {value}, least squares {value_ls}");

        let (x_exact, exact) = analysis_l1_exact(theta.as_ref(), a.as_ref(), d.as_ref()).unwrap();
        prop_assert!((value - exact).abs() <= 1e-6 * exact.max(1.0), "‖Θx‖₁ = {value}, exact optimum {exact}");
        let distance = column_norm((x - &x_exact).as_ref(), 0);
        prop_assert!(distance <= 1e-5 * column_norm(x_exact.as_ref(), 0).max(1.0), "‖x − x_exact‖ = {distance:e}");
    }
}

#[test]
fn step_vjp_parts_agree_with_joint_call() {
    use faer::Par;
    use faer::dyn_stack::{MemBuffer, MemStack};
    let (n, m, batch) = (7, 4, 3);
    let s = sparse_model(gaussian(n, n, 1), gaussian(m, n, 2), 1.0);
    let z = gaussian(s.state_dim(), batch, 3);
    let data = gaussian(m, batch, 4);
    let cotangent = gaussian(s.state_dim(), batch, 5);
    let mut buffer = MemBuffer::new(s.step_vjp_scratch(batch, Par::Seq));
    let stack = MemStack::new(&mut buffer);
    let zeros = || vec![Mat::<f64>::zeros(n, n)];

    let (mut z_bar_joint, mut grads_joint) = (Mat::zeros(s.state_dim(), batch), zeros());
    s.step_vjp(
        Some(z_bar_joint.as_mut()),
        z.as_ref(),
        data.as_ref(),
        cotangent.as_ref(),
        Some(&mut grads_joint),
        Par::Seq,
        stack,
    );
    let mut z_bar = Mat::zeros(s.state_dim(), batch);
    s.step_vjp(
        Some(z_bar.as_mut()),
        z.as_ref(),
        data.as_ref(),
        cotangent.as_ref(),
        None,
        Par::Seq,
        stack,
    );
    let mut grads = zeros();
    s.step_vjp(
        None,
        z.as_ref(),
        data.as_ref(),
        cotangent.as_ref(),
        Some(&mut grads),
        Par::Seq,
        stack,
    );

    assert_eq!(z_bar, z_bar_joint);
    assert_eq!(grads[0], grads_joint[0]);
    assert!(grads[0].norm_l2() > 0.0);
}

#[test]
fn zero_primal_dimension_rejected() {
    let blocks = vec![Block::new(
        optlayer_ops::Identity::new(0),
        L1Norm::new(1.0).unwrap(),
    )];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.5,
        lambda: 1.0,
    };
    let error = LinearizedAdmm::<f64>::new(0, 0, blocks, steps)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(error, optlayer_core::Error::Empty { .. }), "{error}");
    assert!(error.to_string().contains("primal dimension"), "{error}");
}
