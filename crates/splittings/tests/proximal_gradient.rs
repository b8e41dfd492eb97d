//! Proximal gradient and FISTA: vector-Jacobian products against finite
//! differences, convergence to exact lasso solutions, known solutions, step
//! sizes and input validation.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::solvers::Solve;
use faer::{Mat, MatRef, Par, Side, mat};
use optlayer_core::{Error, ForwardOptions, OptLayer, Parameterized, Scalar, Splitting, Status, set_param};
use optlayer_ops::{Dense, L1Norm, LearnableDense, LeastSquares, Quadratic, Simplex, Zero};
use optlayer_splittings::{Acceleration, ProximalGradient};
use optlayer_testing::fd::{FdOptions, check_step_vjp_params, check_step_vjp_state};
use optlayer_testing::random::gaussian;
use proptest::prelude::*;

const VARIANTS: [Acceleration; 2] = [Acceleration::None, Acceleration::Fista];

/// Builds the lasso `½‖Ax − d‖² + λ‖x‖₁` with a fixed `A` and the default step.
fn lasso<T: Scalar>(a: Mat<T>, lambda: T, acceleration: Acceleration) -> ProximalGradient<T> {
    let m = a.nrows();
    let smooth = LeastSquares::new(Dense::new(a).unwrap()).unwrap();
    ProximalGradient::new(smooth, L1Norm::new(lambda).unwrap(), m, acceleration).unwrap()
}

fn lasso_objective(a: MatRef<'_, f64>, d: MatRef<'_, f64>, lambda: f64, x: MatRef<'_, f64>) -> f64 {
    let residual = a * x - d;
    let l1: f64 = (0..x.nrows()).map(|i| x[(i, 0)].abs()).sum();
    0.5 * residual.squared_norm_l2() + lambda * l1
}

/// Returns the largest violation of the lasso optimality conditions at `x`
/// (one column): `g = Aᵀ(Ax − d)` must equal `−λ sign(x_i)` where `x_i ≠ 0`
/// and satisfy `|g_i| ≤ λ` where `x_i = 0`.
fn kkt_violation(a: MatRef<'_, f64>, d: MatRef<'_, f64>, lambda: f64, x: MatRef<'_, f64>) -> f64 {
    let g = a.transpose() * (a * x - d);
    (0..x.nrows())
        .map(|i| {
            let (xi, gi) = (x[(i, 0)], g[(i, 0)]);
            if xi != 0.0 {
                (gi + lambda * xi.signum()).abs()
            } else {
                (gi.abs() - lambda).max(0.0)
            }
        })
        .fold(0.0, f64::max)
}

/// Solves the lasso for one column `d` exactly by enumerating every sign
/// pattern `s ∈ {−1, 0, 1}ⁿ`: on the support `S` of `s`, the solution solves
/// `A_SᵀA_S x_S = A_Sᵀd − λ s_S`, has the signs `s_S` and satisfies
/// `|A_iᵀ(Ax − d)| ≤ λ` off `S`. Returns the candidate with the lowest
/// objective. Independent of any splitting; for `n ≤ 8` only.
fn lasso_exact(a: MatRef<'_, f64>, d: MatRef<'_, f64>, lambda: f64) -> Mat<f64> {
    let (m, n) = a.shape();
    assert!(n <= 8, "3^n sign patterns: keep n small");
    let mut best: Option<(f64, Mat<f64>)> = None;
    for code in 0..3usize.pow(n as u32) {
        let signs: Vec<f64> = (0..n)
            .map(|i| [0.0, 1.0, -1.0][(code / 3usize.pow(i as u32)) % 3])
            .collect();
        let support: Vec<usize> = (0..n).filter(|&i| signs[i] != 0.0).collect();
        let mut x = Mat::<f64>::zeros(n, 1);
        if !support.is_empty() {
            let k = support.len();
            let a_s = Mat::from_fn(m, k, |i, j| a[(i, support[j])]);
            let gram = a_s.transpose() * &a_s;
            let rhs = a_s.transpose() * d - Mat::from_fn(k, 1, |j, _| lambda * signs[support[j]]);
            let Ok(llt) = gram.llt(Side::Lower) else {
                continue;
            };
            let solution = llt.solve(&rhs);
            if (0..k).any(|j| solution[(j, 0)] * signs[support[j]] <= 0.0) {
                continue;
            }
            for (j, &i) in support.iter().enumerate() {
                x[(i, 0)] = solution[(j, 0)];
            }
        }
        let g = a.transpose() * (a * &x - d);
        let off_support_ok = (0..n)
            .filter(|i| signs[*i] == 0.0)
            .all(|i| g[(i, 0)].abs() <= lambda * (1.0 + 1e-9));
        if !off_support_ok {
            continue;
        }
        let value = lasso_objective(a, d, lambda, x.as_ref());
        if best.as_ref().is_none_or(|(v, _)| value < *v) {
            best = Some((value, x));
        }
    }
    best.expect("the lasso always has a solution").1
}

/// Returns a random state for `s`: Gaussian entries, and for FISTA a counter
/// `t ∈ [1, 4)`, the range it passes through in its first five steps.
fn random_state(s: &ProximalGradient<f64>, batch: usize, seed: u64) -> Mat<f64> {
    let mut z = gaussian(s.state_dim(), batch, seed);
    if let Some(row) = s.counter_row() {
        for col in 0..batch {
            z[(row, col)] = 1.0 + 3.0 * (z[(row, col)].abs() / (1.0 + z[(row, col)].abs()));
        }
    }
    z
}

proptest! {
    #![proptest_config(optlayer_testing::proptest_config(32))]

    #[test]
    fn step_vjp_matches_finite_differences(
        n in 2usize..7, m in 2usize..7, batch in 1usize..4, seed in 0u64..10_000, fista in any::<bool>(),
    ) {
        let acceleration = if fista { Acceleration::Fista } else { Acceleration::None };
        let smooth = LeastSquares::new(LearnableDense::new("a", gaussian(m, n, seed)).unwrap()).unwrap();
        let prox = L1Norm::learnable("lambda", 0.3).unwrap();
        let mut s = ProximalGradient::new(smooth, prox, m, acceleration).unwrap();
        let z = random_state(&s, batch, seed + 1);
        let data = gaussian(m, batch, seed + 2);
        let cotangent = gaussian(s.state_dim(), batch, seed + 3);
        let opts = FdOptions::default();

        let state = check_step_vjp_state(&s, z.as_ref(), data.as_ref(), cotangent.as_ref(), &opts);
        prop_assert!(state.rel_error < 1e-7, "state cotangent: {state:?}");
        prop_assert!(state.fd_norm > 0.0);
        prop_assert!(state.skipped_nonsmooth <= 1, "too many kinks: {state:?}");

        let params = check_step_vjp_params(&mut s, z.as_ref(), data.as_ref(), cotangent.as_ref(), &opts);
        prop_assert!(params.rel_error < 1e-7, "parameter gradient: {params:?}");
        prop_assert!(params.fd_norm > 0.0);
        prop_assert!(params.skipped_nonsmooth <= 1, "too many kinks: {params:?}");
    }
}

#[test]
fn fista_counter_derivative_matches_finite_differences() {
    // Away from a fixed point (x ≠ x_prev) with a cotangent on every row, the
    // counter row of z̄ has both terms: c_t ∂t⁺/∂t and (∂β/∂t)⟨ȳ, x − x_prev⟩.
    let (m, n, batch) = (4, 3, 2);
    let s = lasso(gaussian(m, n, 20), 0.2, Acceleration::Fista);
    let z = random_state(&s, batch, 21);
    let data = gaussian(m, batch, 22);
    let row = s.counter_row().unwrap();
    for cotangent_on_counter in [0.0, 1.5] {
        let mut cotangent = gaussian(s.state_dim(), batch, 23);
        cotangent.row_mut(row).fill(cotangent_on_counter);
        let check = check_step_vjp_state(
            &s,
            z.as_ref(),
            data.as_ref(),
            cotangent.as_ref(),
            &FdOptions::default(),
        );
        assert!(check.rel_error < 1e-7, "{check:?}");
        assert_eq!(check.skipped_nonsmooth, 0, "{check:?}");
    }
}

#[test]
fn step_vjp_on_quadratic_over_simplex() {
    // A second pair of terms: a quadratic with a linear term, and the
    // projection onto the probability simplex.
    let n = 5;
    let b = gaussian(n + 2, n, 30);
    let q = b.transpose() * &b;
    let smooth = Quadratic::new(q, gaussian(n, 1, 31)).unwrap();
    for acceleration in VARIANTS {
        let s = ProximalGradient::new(smooth.clone(), Simplex, 0, acceleration).unwrap();
        let z = random_state(&s, 3, 32);
        let cotangent = gaussian(s.state_dim(), 3, 33);
        let data = Mat::<f64>::zeros(0, 3);
        let check = check_step_vjp_state(
            &s,
            z.as_ref(),
            data.as_ref(),
            cotangent.as_ref(),
            &FdOptions::default(),
        );
        assert!(check.rel_error < 1e-7, "{acceleration:?}: {check:?}");
        assert!(check.fd_norm > 0.0);
        assert_eq!(check.skipped_nonsmooth, 0, "{acceleration:?}: {check:?}");
    }
}

#[test]
fn step_vjp_parts_agree_with_joint_call() {
    let (m, n, batch) = (5, 4, 3);
    for acceleration in VARIANTS {
        let smooth = LeastSquares::new(LearnableDense::new("a", gaussian(m, n, 40)).unwrap()).unwrap();
        let s = ProximalGradient::new(smooth, L1Norm::learnable("lambda", 0.1).unwrap(), m, acceleration)
            .unwrap();
        let z = random_state(&s, batch, 41);
        let data = gaussian(m, batch, 42);
        let cotangent = gaussian(s.state_dim(), batch, 43);
        let mut buffer = MemBuffer::new(s.step_vjp_scratch(batch, Par::Seq));
        let stack = MemStack::new(&mut buffer);
        let zeros = || vec![Mat::<f64>::zeros(m, n), Mat::<f64>::zeros(1, 1)];
        let (z, data, cotangent) = (z.as_ref(), data.as_ref(), cotangent.as_ref());

        let mut z_bar_joint = Mat::zeros(s.state_dim(), batch);
        let mut grads_joint = zeros();
        s.step_vjp(
            Some(z_bar_joint.as_mut()),
            z,
            data,
            cotangent,
            Some(&mut grads_joint),
            Par::Seq,
            stack,
        );
        let mut z_bar = Mat::zeros(s.state_dim(), batch);
        s.step_vjp(Some(z_bar.as_mut()), z, data, cotangent, None, Par::Seq, stack);
        let mut grads = zeros();
        s.step_vjp(None, z, data, cotangent, Some(&mut grads), Par::Seq, stack);

        assert_eq!(z_bar, z_bar_joint);
        assert_eq!(grads[0], grads_joint[0]);
        assert_eq!(grads[1], grads_joint[1]);
        assert!(grads[0].norm_l2() > 0.0);
        assert!(grads[1].norm_l2() > 0.0);
    }
}

proptest! {
    #![proptest_config(optlayer_testing::proptest_config(64))]

    /// Convergence on random lasso problems through the layer's forward
    /// pass, and optimality against the exact solution by sign enumeration
    /// and against the optimality conditions.
    #[test]
    fn lasso_converges_to_exact_solution(
        n in 2usize..7, extra in 2usize..6, lambda_frac in 0.05f64..0.9, batch in 1usize..4,
        seed in 0u64..100_000, fista in any::<bool>(),
    ) {
        let acceleration = if fista { Acceleration::Fista } else { Acceleration::None };
        let m = n + extra;
        let a = gaussian(m, n, seed);
        let data = gaussian(m, batch, seed + 1);
        let correlation = a.transpose() * data.col(0).as_mat();
        let lambda = lambda_frac * correlation.norm_max();
        let layer = OptLayer::new(lasso(a.clone(), lambda, acceleration), ForwardOptions::new(1_000_000, 1e-12)).unwrap();
        let result = layer.forward(data.as_ref()).unwrap();

        for (col, report) in result.samples.iter().enumerate() {
            prop_assert_eq!(report.status, Status::Converged, "sample {}: {:?}", col, report);
            let x = result.x.col(col).as_mat();
            let d = data.col(col).as_mat();
            let exact = lasso_exact(a.as_ref(), d, lambda);
            let distance = (x - &exact).norm_l2();
            prop_assert!(distance <= 1e-6 * exact.norm_l2().max(1.0), "sample {col}: ‖x − x_exact‖ = {distance:e}");
            let violation = kkt_violation(a.as_ref(), d, lambda, x);
            prop_assert!(violation <= 1e-6 * lambda.max(1.0), "sample {col}: optimality violated by {violation:e}");
        }
    }
}

/// Solves `½‖Ax − d‖² + 0.1‖x‖₁` with `A = [[1, 0], [2, 0]]`, `d = [1, 2]`.
/// `AᵀA = diag(5, 0)` and `Aᵀd = [5, 0]`, so `x₁ = (5 − 0.1)/5 = 0.98`, and
/// `x₂`, on which `f` does not depend, is 0.
fn singular_known_answer<T: Scalar>(acceleration: Acceleration, rtol: f64) -> Mat<T> {
    let a = Mat::from_fn(2, 2, |i, j| T::lit([[1.0, 0.0], [2.0, 0.0]][i][j]));
    let d = Mat::from_fn(2, 1, |i, _| T::lit([1.0, 2.0][i]));
    let s = lasso(a, T::lit(0.1), acceleration);
    let layer = OptLayer::new(s, ForwardOptions::new(10_000, rtol)).unwrap();
    let result = layer.forward(d.as_ref()).unwrap();
    assert_eq!(
        result.samples[0].status,
        Status::Converged,
        "{:?}",
        result.samples[0]
    );
    result.x
}

#[test]
fn singular_lasso_known_answer() {
    for acceleration in VARIANTS {
        let x = singular_known_answer::<f64>(acceleration, 1e-13);
        assert!((x[(0, 0)] - 0.98).abs() < 1e-11, "{acceleration:?}: {x:?}");
        assert_eq!(x[(1, 0)], 0.0, "{acceleration:?}: {x:?}");

        let x = singular_known_answer::<f32>(acceleration, 1e-6);
        assert!(x[(0, 0)].is_finite(), "{acceleration:?}: {x:?}");
        assert!(x[(1, 0)].is_finite(), "{acceleration:?}: {x:?}");
        assert!((x[(0, 0)] - 0.98).abs() < 1e-5, "{acceleration:?}: {x:?}");
        assert_eq!(x[(1, 0)], 0.0, "{acceleration:?}: {x:?}");
    }
}

#[test]
fn quadratic_known_minimizer() {
    // With g = 0 the minimizer of ½xᵀQx + qᵀx is −Q⁻¹q.
    let n = 6;
    let b = gaussian(n + 3, n, 50);
    let q = b.transpose() * &b;
    let linear = gaussian(n, 1, 51);
    let expected = -q.partial_piv_lu().solve(&linear);
    for acceleration in VARIANTS {
        let smooth = Quadratic::new(q.clone(), linear.clone()).unwrap();
        let s = ProximalGradient::new(smooth, Zero, 0, acceleration).unwrap();
        let layer = OptLayer::new(s, ForwardOptions::new(1_000_000, 1e-13)).unwrap();
        let result = layer.forward(Mat::<f64>::zeros(0, 1).as_ref()).unwrap();
        assert_eq!(result.samples[0].status, Status::Converged);
        let error = (&result.x - &expected).norm_l2() / expected.norm_l2();
        assert!(error < 1e-8, "{acceleration:?}: relative error {error:e}");
    }
}

#[test]
fn zero_operator_gives_unit_step_and_zero_solution() {
    // f = ½‖d‖² is constant, so L = 0 and the solution of the lasso is x = 0.
    for acceleration in VARIANTS {
        let s = lasso(Mat::<f64>::zeros(3, 2), 0.5, acceleration);
        assert_eq!(s.lipschitz_estimate(), 0.0);
        assert_eq!(s.gamma(), 1.0);
        let layer = OptLayer::new(s, ForwardOptions::new(100, 1e-12)).unwrap();
        let result = layer.forward(gaussian(3, 2, 60).as_ref()).unwrap();
        assert_eq!(result.x, Mat::<f64>::zeros(2, 2));
        assert_eq!(result.converged_count(), 2);
    }
}

/// Returns `G diag(s)` with `s_j = 10^(−2j/(n−1))`: a Gaussian matrix with
/// columns scaled from 1 to 0.01, so that `AᵀA` is ill-conditioned.
fn ill_conditioned(m: usize, n: usize, seed: u64) -> Mat<f64> {
    let g = gaussian(m, n, seed);
    Mat::from_fn(m, n, |i, j| {
        g[(i, j)] * 10f64.powf(-2.0 * j as f64 / (n - 1) as f64)
    })
}

#[test]
fn fista_needs_fewer_iterations_when_ill_conditioned() {
    let (m, n) = (40, 20);
    let a = ill_conditioned(m, n, 70);
    let singular_values = a.as_ref().singular_values().unwrap();
    let condition = (singular_values[0] / singular_values[n - 1]).powi(2);
    assert!(condition > 1e4, "condition number of AᵀA: {condition:e}");
    let data = gaussian(m, 1, 71);
    let correlation = a.transpose() * &data;
    let lambda = 1e-3 * correlation.norm_max();
    let options = ForwardOptions::new(2_000_000, 1e-10);
    let mut iterations = Vec::new();
    let mut solutions = Vec::new();
    for acceleration in VARIANTS {
        let layer = OptLayer::new(lasso(a.clone(), lambda, acceleration), options.clone()).unwrap();
        let result = layer.forward(data.as_ref()).unwrap();
        assert_eq!(result.samples[0].status, Status::Converged, "{acceleration:?}");
        iterations.push(result.samples[0].iterations);
        solutions.push(result.x);
    }
    let (plain, fista) = (iterations[0], iterations[1]);
    assert!(
        fista < plain,
        "FISTA took {fista} iterations, the plain iteration {plain}"
    );
    let gap = (&solutions[0] - &solutions[1]).norm_l2() / solutions[0].norm_l2();
    assert!(gap < 1e-4, "solutions differ by {gap:e}");
    println!(
        "iterations to rtol 1e-10: plain {plain}, FISTA {fista}; condition number of AᵀA {condition:.3e}"
    );
}

#[test]
fn fixed_point_residual_leaves_out_counter() {
    let s = lasso(gaussian(3, 2, 80), 0.1, Acceleration::Fista);
    let z = random_state(&s, 1, 81);
    let mut z_next = z.clone();
    z_next[(s.counter_row().unwrap(), 0)] += 10.0;
    let (residual, scale) = s.fixed_point_residual(z_next.as_ref(), z.as_ref(), 0);
    assert_eq!(residual, 0.0);
    let expected_scale = z.subrows(0, 4).norm_l2();
    assert!((scale - expected_scale).abs() < 1e-14 * expected_scale);

    z_next[(1, 0)] += 3.0;
    z_next[(3, 0)] -= 4.0;
    let (residual, _) = s.fixed_point_residual(z_next.as_ref(), z.as_ref(), 0);
    assert!((residual - 5.0).abs() < 1e-14);
}

#[test]
fn fista_init_sets_counter_to_one() {
    let s = lasso(gaussian(3, 2, 90), 0.1, Acceleration::Fista);
    let mut z = gaussian(5, 2, 91);
    s.init(z.as_mut(), Mat::<f64>::zeros(3, 2).as_ref());
    assert_eq!(
        z,
        mat![[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]
    );
}

#[test]
fn default_step_uses_margin_below_inverse_lipschitz() {
    // ‖A‖₂² = 5 for A = [[1, 0], [2, 0]].
    for acceleration in VARIANTS {
        let s = lasso::<f64>(mat![[1.0, 0.0], [2.0, 0.0]], 0.1, acceleration);
        assert!((s.lipschitz_estimate() - 5.0).abs() < 1e-9);
        assert!((s.gamma() - 1.0 / (1.05 * 5.0)).abs() < 1e-12);
        assert_eq!(s.step_sizes(), vec![("gamma".to_string(), s.gamma())]);
    }
}

#[test]
fn step_breaking_condition_rejected() {
    let a = || mat![[1.0, 0.0], [2.0, 0.0]];
    // L = 5: the plain iteration needs γ < 0.4, FISTA γ ≤ 0.2.
    let plain = lasso(a(), 0.1, Acceleration::None);
    let error = plain.with_step(0.41).unwrap_err();
    assert!(
        matches!(error, Error::StepCondition { bound, .. } if bound == 2.0),
        "{error}"
    );
    assert!(error.to_string().contains("gamma * L < 2"), "{error}");
    let plain = lasso(a(), 0.1, Acceleration::None).with_step(0.39).unwrap();
    assert_eq!(plain.gamma(), 0.39);

    let fista = lasso(a(), 0.1, Acceleration::Fista);
    let error = fista.with_step(0.39).unwrap_err();
    assert!(
        matches!(error, Error::StepCondition { bound, .. } if bound == 1.0),
        "{error}"
    );
    assert!(error.to_string().contains("gamma * L <= 1"), "{error}");
    let fista = lasso(a(), 0.1, Acceleration::Fista).with_step(0.19).unwrap();
    assert_eq!(fista.gamma(), 0.19);

    for gamma in [0.0, -0.1, f64::NAN, f64::INFINITY] {
        let error = lasso(a(), 0.1, Acceleration::None).with_step(gamma).unwrap_err();
        assert!(
            matches!(error, Error::InvalidParameter { .. }),
            "gamma = {gamma}: {error}"
        );
    }
}

#[test]
fn parameter_update_refreshes_step() {
    let a = gaussian(4, 3, 100);
    let sigma = a.as_ref().singular_values().unwrap()[0];
    let smooth = LeastSquares::new(LearnableDense::new("a", a.clone()).unwrap()).unwrap();
    let mut s = ProximalGradient::new(smooth, L1Norm::new(0.1).unwrap(), 4, Acceleration::Fista).unwrap();
    assert!((s.gamma() * 1.05 * sigma * sigma - 1.0).abs() < 1e-8);

    // Doubling A quadruples L and divides the default step by 4.
    let doubled = Mat::from_fn(4, 3, |i, j| 2.0 * a[(i, j)]);
    set_param(&mut s, "a", doubled.as_ref()).unwrap();
    assert!((s.gamma() * 1.05 * 4.0 * sigma * sigma - 1.0).abs() < 1e-8);
}

#[test]
fn parameter_update_breaking_given_step_rejected() {
    let a = gaussian(4, 3, 110);
    let sigma = a.as_ref().singular_values().unwrap()[0];
    let smooth = LeastSquares::new(LearnableDense::new("a", a.clone()).unwrap()).unwrap();
    let gamma = 0.9 / (sigma * sigma);
    let mut s = ProximalGradient::new(smooth, L1Norm::new(0.1).unwrap(), 4, Acceleration::Fista)
        .unwrap()
        .with_step(gamma)
        .unwrap();
    let doubled = Mat::from_fn(4, 3, |i, j| 2.0 * a[(i, j)]);
    let error = set_param(&mut s, "a", doubled.as_ref()).unwrap_err();
    assert!(matches!(error, Error::StepCondition { .. }), "{error}");
    // set_param restores the previous value, so the model stays usable.
    assert_eq!(s.param(0).to_owned(), a);
    assert_eq!(s.gamma(), gamma);
}

#[test]
fn parameters_listed_smooth_then_prox() {
    let smooth = LeastSquares::new(LearnableDense::new("a", gaussian(3, 2, 120)).unwrap()).unwrap();
    let s = ProximalGradient::new(
        smooth,
        L1Norm::learnable("lambda", 0.1).unwrap(),
        3,
        Acceleration::None,
    )
    .unwrap();
    assert_eq!(s.param_count(), 2);
    assert_eq!(s.param_info(0).name, "a");
    assert_eq!(s.param_info(1).name, "lambda");
    assert_eq!(s.param(1)[(0, 0)], 0.1);
}

#[test]
fn invalid_composition_rejected() {
    let smooth = || LeastSquares::new(LearnableDense::new("w", gaussian(3, 2, 130)).unwrap()).unwrap();

    let duplicate = ProximalGradient::new(
        smooth(),
        L1Norm::learnable("w", 0.1).unwrap(),
        3,
        Acceleration::None,
    );
    assert!(matches!(duplicate, Err(Error::DuplicateParameter { ref name }) if name == "w"));

    let wrong_dim = ProximalGradient::new(
        smooth(),
        L1Norm::with_weights(vec![0.1; 3]).unwrap(),
        3,
        Acceleration::Fista,
    );
    assert!(matches!(wrong_dim, Err(Error::ShapeMismatch { .. })));

    let short_data = ProximalGradient::new(smooth(), Zero, 2, Acceleration::None).unwrap_err();
    assert!(matches!(short_data, Error::ShapeMismatch { .. }));
    assert!(short_data.to_string().contains("smooth term"), "{short_data}");
}

#[test]
fn f32_step_matches_f64() {
    let (m, n, batch) = (5, 4, 3);
    let a = gaussian(m, n, 140);
    let data = gaussian(m, batch, 141);
    let to_f32 = |x: &Mat<f64>| Mat::from_fn(x.nrows(), x.ncols(), |i, j| x[(i, j)] as f32);
    for acceleration in VARIANTS {
        let s64 = lasso(a.clone(), 0.2, acceleration);
        let s32 = lasso(to_f32(&a), 0.2_f32, acceleration);
        let z = random_state(&s64, batch, 142);
        let mut next64 = Mat::zeros(s64.state_dim(), batch);
        let mut next32 = Mat::zeros(s32.state_dim(), batch);
        let mut buffer = MemBuffer::new(s64.step_scratch(batch, Par::Seq));
        s64.step(
            next64.as_mut(),
            z.as_ref(),
            data.as_ref(),
            Par::Seq,
            MemStack::new(&mut buffer),
        );
        s32.step(
            next32.as_mut(),
            to_f32(&z).as_ref(),
            to_f32(&data).as_ref(),
            Par::Seq,
            MemStack::new(&mut buffer),
        );
        let diff = Mat::from_fn(next64.nrows(), batch, |i, j| {
            f64::from(next32[(i, j)]) - next64[(i, j)]
        });
        assert!(diff.norm_l2() < 1e-5 * next64.norm_l2(), "{acceleration:?}");
    }
}

#[test]
fn jfb_gradient_through_layer_is_finite() {
    use optlayer_core::{FixedPointJfb, Gradients, mse_loss};
    let (m, n, batch) = (6, 4, 3);
    for acceleration in VARIANTS {
        let smooth = LeastSquares::new(LearnableDense::new("a", gaussian(m, n, 150)).unwrap()).unwrap();
        let s = ProximalGradient::new(smooth, L1Norm::learnable("lambda", 0.1).unwrap(), m, acceleration)
            .unwrap();
        let layer = OptLayer::new(s, ForwardOptions::new(100_000, 1e-12)).unwrap();
        let data = gaussian(m, batch, 151);
        let target = gaussian(n, batch, 152);
        let forward = layer.forward(data.as_ref()).unwrap();
        assert_eq!(forward.converged_count(), batch, "{acceleration:?}");
        let mut grads = Gradients::zeros_for(&layer);
        let output = layer
            .jfb_gradient(
                &forward,
                data.as_ref(),
                &mut |x, g| mse_loss(x, target.as_ref(), g),
                &mut grads,
            )
            .unwrap();
        assert!(output.loss.is_finite());
        grads.check_finite().unwrap();
        assert!(grads.tensors()[0].norm_l2() > 0.0, "{acceleration:?}");
        assert!(grads.tensors()[1].norm_l2() > 0.0, "{acceleration:?}");
    }
}
