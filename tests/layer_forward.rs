//! The forward pass of OptLayer: stopping rule, per-sample reports, early
//! stopping of converged samples, threads and warm starts.

mod common;

use common::{cast, recovery_batch, sparse_model, unit_column_matrix};
use faer::Par;
use faer::{Mat, mat};
use optlayer::ops::{Dense, IndicatorPoint, L1Norm, LearnableDense};
use optlayer::splittings::{Block, LadmmSteps, LinearizedAdmm};
use optlayer::{Error, ForwardOptions, OptLayer, PARALLEL_STEP_MIN_STATE, Splitting, Status, ThreadPlan};
use optlayer_testing::random::gaussian;

fn l1_model(a: Mat<f64>, beta: f64) -> LinearizedAdmm<f64> {
    let (m, n) = (a.nrows(), a.ncols());
    let blocks = vec![
        Block::new(
            LearnableDense::new("theta", Mat::identity(n, n)).unwrap(),
            L1Norm::new(1.0).unwrap(),
        ),
        Block::new(Dense::new(a).unwrap(), IndicatorPoint::from_data(0, m).unwrap()),
    ];
    LinearizedAdmm::new(
        n,
        m,
        blocks,
        LadmmSteps {
            alpha: 0.5,
            beta,
            lambda: 1.0,
        },
    )
    .unwrap()
}

#[test]
fn zero_solution_converges_at_once() {
    // min ‖x‖₁ s.t. x₁ + x₂ = 0 from x = 0: the first update is exactly zero,
    // so the residual is 0 ≤ max(rtol·0, atol) with atol = 0.
    let layer = OptLayer::new(l1_model(mat![[1.0, 1.0]], 0.3), ForwardOptions::new(100, 1e-8)).unwrap();
    let result = layer.forward(mat![[0.0]].as_ref()).unwrap();
    assert_eq!(result.samples[0].status, Status::Converged);
    assert_eq!(result.samples[0].iterations, 1);
    assert_eq!(result.samples[0].residual, 0.0);
    assert_eq!(result.samples[0].relative_residual, 0.0);
    assert_eq!(result.samples[0].constraint_residual, Some(0.0));
}

#[test]
fn zero_column_gives_no_nan() {
    // A = [[1, 0], [2, 0]], d = [1, 2]: min ‖x‖₁ s.t. Ax = d is x = (1, 0).
    let layer = OptLayer::new(
        l1_model(mat![[1.0, 0.0], [2.0, 0.0]], 0.2),
        ForwardOptions::new(100_000, 1e-12),
    )
    .unwrap();
    let result = layer.forward(mat![[1.0], [2.0]].as_ref()).unwrap();
    assert_eq!(
        result.samples[0].status,
        Status::Converged,
        "{:?}",
        result.samples[0]
    );
    assert!((result.x[(0, 0)] - 1.0).abs() < 1e-8, "x = {:?}", result.x);
    assert!(result.x[(1, 0)].abs() < 1e-8, "x = {:?}", result.x);
}

#[test]
fn inconsistent_constraint_is_not_converged() {
    // A = [[1, 1], [2, 2]], d = [1, 3] has no solution: the dual grows without
    // bound, so the residual never falls and the sample must not be reported
    // as converged. The best attainable ‖Ax − d‖ is 1/√5 ≈ 0.447214.
    let a = mat![[1.0, 1.0], [2.0, 2.0]];
    let d = mat![[1.0], [3.0]];
    let layer = OptLayer::new(l1_model(a.clone(), 0.1), ForwardOptions::new(20_000, 1e-8)).unwrap();
    let result = layer.forward(d.as_ref()).unwrap();
    assert_eq!(
        result.samples[0].status,
        Status::IterationLimit,
        "{:?}",
        result.samples[0]
    );
    assert_eq!(result.samples[0].iterations, 20_000);
    let constraint_residual = (&a * &result.x - &d).norm_l2();
    assert!(
        (constraint_residual - 0.447214).abs() < 1e-3,
        "‖Ax − d‖ = {constraint_residual}"
    );
    // The report carries the same residual, measured by the splitting.
    let reported = result.samples[0]
        .constraint_residual
        .expect("the model has a constraint");
    assert!(
        (reported - constraint_residual).abs() < 1e-12,
        "reported {reported}"
    );
}

#[test]
fn early_stopping_matches_single_sample_runs() {
    // Columns of a batch stop at different iterations; each must equal the
    // result of running that sample alone.
    let (theta, a, data) = recovery_batch(12, 6, 2, 7, 1);
    let layer = OptLayer::new(
        sparse_model::<f64>(&theta, &a, true),
        ForwardOptions::new(20_000, 1e-7),
    )
    .unwrap();
    let batch = layer.forward(data.as_ref()).unwrap();
    let iterations: Vec<usize> = batch.samples.iter().map(|s| s.iterations).collect();
    assert!(
        iterations.iter().any(|&k| k != iterations[0]),
        "samples should stop at different iterations: {iterations:?}"
    );

    for j in 0..data.ncols() {
        let single = layer.forward(data.as_ref().subcols(j, 1)).unwrap();
        assert_eq!(
            single.samples[0].iterations, batch.samples[j].iterations,
            "sample {j}"
        );
        assert_eq!(single.samples[0].status, batch.samples[j].status, "sample {j}");
        let difference = (single.state.as_ref().col(0) - batch.state.as_ref().col(j)).norm_l2();
        assert!(
            difference <= 1e-12 * (1.0 + single.state.col(0).norm_l2()),
            "sample {j}: {difference:e}"
        );
    }
}

#[test]
fn threads_give_the_same_result() {
    let (m, n) = (10, 20);
    let a = unit_column_matrix(m, n, 4);
    let theta = gaussian(n, n, 5);
    let data = &a * gaussian(n, 9, 6);
    let layer = OptLayer::new(
        sparse_model::<f64>(&theta, &a, true),
        ForwardOptions::new(500, 1e-6),
    )
    .unwrap();
    let one = layer
        .forward_with(data.as_ref(), &ForwardOptions::new(500, 1e-6).with_threads(1))
        .unwrap();
    let two = layer
        .forward_with(data.as_ref(), &ForwardOptions::new(500, 1e-6).with_threads(2))
        .unwrap();
    let three = layer
        .forward_with(data.as_ref(), &ForwardOptions::new(500, 1e-6).with_threads(3))
        .unwrap();
    // Nine threads give each sample a block of its own.
    let nine = layer
        .forward_with(data.as_ref(), &ForwardOptions::new(500, 1e-6).with_threads(9))
        .unwrap();
    for other in [&two, &three, &nine] {
        assert_eq!(
            other.samples.iter().map(|s| s.iterations).collect::<Vec<_>>(),
            one.samples.iter().map(|s| s.iterations).collect::<Vec<_>>()
        );
        // Bit for bit: each sample's steps run on the same kernels whatever
        // block of the batch it is in.
        for j in 0..one.state.ncols() {
            for i in 0..one.state.nrows() {
                assert_eq!(
                    other.state[(i, j)].to_bits(),
                    one.state[(i, j)].to_bits(),
                    "state entry ({i}, {j})"
                );
            }
        }
    }
}

/// Large states run the steps of a block with the threads that the batch
/// leaves over, and the results stay those of one thread, bit for bit. A
/// batch of one sample steps on one thread.
#[test]
fn spare_threads_give_the_same_result() {
    let (m, n) = (640, 1600);
    let a = unit_column_matrix(m, n, 21);
    let theta = gaussian(n, n, 22);
    let data = &a * gaussian(n, 3, 23);
    let options = ForwardOptions::new(30, 0.0);
    let layer = OptLayer::new(sparse_model::<f64>(&theta, &a, true), options.clone()).unwrap();
    let state_dim = layer.splitting().state_dim();
    assert!(
        state_dim >= PARALLEL_STEP_MIN_STATE,
        "state dimension {state_dim}"
    );
    let cases = [
        (3, 8, 3, Par::rayon(2)),
        (3, 9, 3, Par::rayon(3)),
        (1, 2, 1, Par::Seq),
    ];
    for (batch, threads, blocks, step_par) in cases {
        assert_eq!(
            ThreadPlan::new(threads, batch, state_dim),
            ThreadPlan { blocks, step_par }
        );
        let data = data.as_ref().subcols(0, batch);
        let single = layer
            .forward_with(data, &options.clone().with_threads(1))
            .unwrap();
        let many = layer
            .forward_with(data, &options.clone().with_threads(threads))
            .unwrap();
        for j in 0..batch {
            for i in 0..state_dim {
                assert_eq!(
                    many.state[(i, j)].to_bits(),
                    single.state[(i, j)].to_bits(),
                    "batch {batch}, {threads} threads: state entry ({i}, {j})"
                );
            }
        }
    }
}

#[test]
fn thread_plan_follows_batch_and_state() {
    let plan = |blocks, step_par| ThreadPlan { blocks, step_par };
    let large = PARALLEL_STEP_MIN_STATE;
    assert_eq!(ThreadPlan::new(1, 100, large), plan(1, Par::Seq));
    assert_eq!(ThreadPlan::new(4, 100, large), plan(4, Par::Seq));
    assert_eq!(ThreadPlan::new(4, 2, large), plan(2, Par::rayon(2)));
    assert_eq!(ThreadPlan::new(4, 2, large - 1), plan(2, Par::Seq));
    assert_eq!(ThreadPlan::new(3, 2, large), plan(2, Par::Seq));
    assert_eq!(ThreadPlan::new(4, 1, large), plan(1, Par::Seq));
    assert_eq!(ThreadPlan::new(0, 0, large), plan(1, Par::Seq));
}

#[test]
fn warm_start_from_fixed_point_stops_quickly() {
    let (theta, a, data) = recovery_batch(16, 8, 3, 4, 7);
    let options = ForwardOptions::new(20_000, 1e-9);
    let layer = OptLayer::new(sparse_model::<f64>(&theta, &a, true), options.clone()).unwrap();
    let cold = layer.forward(data.as_ref()).unwrap();
    assert_eq!(cold.converged_count(), 4);
    let warm = layer
        .forward_from(data.as_ref(), cold.state.as_ref(), &options)
        .unwrap();
    assert_eq!(warm.converged_count(), 4);
    assert!(
        warm.mean_iterations() <= 2.0,
        "warm start took {} iterations",
        warm.mean_iterations()
    );
    assert!(cold.mean_iterations() > 50.0);
}

#[test]
fn f32_and_f64_agree() {
    let (m, n) = (10, 20);
    let a = unit_column_matrix(m, n, 10);
    let theta = gaussian(n, n, 11);
    let data = &a * gaussian(n, 5, 12);
    let options = ForwardOptions::new(2_000, 1e-5);
    let layer64 = OptLayer::new(sparse_model::<f64>(&theta, &a, true), options.clone()).unwrap();
    let layer32 = OptLayer::new(sparse_model::<f32>(&theta, &a, true), options).unwrap();
    let x64 = layer64.forward(data.as_ref()).unwrap().x;
    let x32 = layer32.forward(cast::<f32>(&data).as_ref()).unwrap().x;
    let difference = (0..n)
        .flat_map(|i| (0..5).map(move |j| (i, j)))
        .map(|(i, j)| (x64[(i, j)] - f64::from(x32[(i, j)])).abs())
        .fold(0.0, f64::max);
    assert!(difference < 1e-2 * x64.norm_max(), "{difference:e}");
}

/// The affine map z⁺ = d·z + 1 per sample (one state row, one data row),
/// for testing the loop: it converges to 1/(1 − d) for |d| < 1 and overflows
/// for a huge d.
struct AffineMap;

impl optlayer::Parameterized<f64> for AffineMap {}

impl optlayer::Splitting for AffineMap {
    type Real = f64;
    fn name(&self) -> &str {
        "affine map"
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
    fn step_scratch(&self, _: usize, _: faer::Par) -> faer::dyn_stack::StackReq {
        faer::dyn_stack::StackReq::EMPTY
    }
    fn step(
        &self,
        mut z_next: faer::MatMut<'_, f64>,
        z: faer::MatRef<'_, f64>,
        data: faer::MatRef<'_, f64>,
        _: faer::Par,
        _: &mut faer::dyn_stack::MemStack,
    ) {
        for j in 0..z.ncols() {
            z_next[(0, j)] = data[(0, j)] * z[(0, j)] + 1.0;
        }
    }
    fn step_vjp_scratch(&self, _: usize, _: faer::Par) -> faer::dyn_stack::StackReq {
        faer::dyn_stack::StackReq::EMPTY
    }
    fn step_vjp(
        &self,
        z_bar: Option<faer::MatMut<'_, f64>>,
        _: faer::MatRef<'_, f64>,
        data: faer::MatRef<'_, f64>,
        cotangent: faer::MatRef<'_, f64>,
        _: Option<&mut [Mat<f64>]>,
        _: faer::Par,
        _: &mut faer::dyn_stack::MemStack,
    ) {
        if let Some(mut z_bar) = z_bar {
            for j in 0..data.ncols() {
                z_bar[(0, j)] = data[(0, j)] * cotangent[(0, j)];
            }
        }
    }
}

#[test]
fn overflow_reports_non_finite_per_sample() {
    let layer = OptLayer::new(AffineMap, ForwardOptions::new(1_000, 1e-12)).unwrap();
    let result = layer.forward(mat![[0.5, 1e200, -0.5]].as_ref()).unwrap();
    assert_eq!(result.samples[0].status, Status::Converged);
    assert!((result.x[(0, 0)] - 2.0).abs() < 1e-10);
    assert_eq!(result.samples[1].status, Status::NonFinite);
    assert!(result.samples[1].iterations <= 3, "{:?}", result.samples[1]);
    assert_eq!(result.samples[2].status, Status::Converged);
    assert!((result.x[(0, 2)] - 2.0 / 3.0).abs() < 1e-10);
    assert_eq!(result.non_finite_count(), 1);
}

#[test]
fn iteration_limit_reported_with_residual() {
    // d = 0.999 converges slowly: 10 steps leave a residual of 0.999^9.
    let layer = OptLayer::new(AffineMap, ForwardOptions::new(10, 1e-12)).unwrap();
    let result = layer.forward(mat![[0.999]].as_ref()).unwrap();
    let report = result.samples[0];
    assert_eq!(report.status, Status::IterationLimit);
    assert_eq!(report.iterations, 10);
    assert!((report.residual - 0.999_f64.powi(9)).abs() < 1e-12, "{report:?}");
}

#[test]
fn swapped_column_reports_its_own_residual() {
    // Sample 0 starts at its fixed point 2 (d = 0.5) and stops at step 1;
    // sample 1 (d = 0.25) is then swapped into column 0 and checked there.
    // Its residual is |T(3) − 3| = |1.75 − 3| = 1.25, not the distance
    // 0.25 from sample 0's previous state.
    let layer = OptLayer::new(AffineMap, ForwardOptions::new(1, 1e-12)).unwrap();
    let result = layer
        .forward_from(
            mat![[0.5, 0.25]].as_ref(),
            mat![[2.0, 3.0]].as_ref(),
            layer.options(),
        )
        .unwrap();
    assert_eq!(result.samples[0].status, Status::Converged);
    assert_eq!(result.samples[1].status, Status::IterationLimit);
    assert_eq!(result.samples[1].residual, 1.25);
    assert_eq!(result.x[(0, 1)], 1.75);
}

#[test]
fn fixed_step_rule_rejects_unsafe_beta() {
    let n = 3;
    let a = mat![[1.0, 1.0, 1.0]];
    let blocks = vec![
        Block::new(
            LearnableDense::new("theta", Mat::identity(n, n)).unwrap(),
            L1Norm::new(1.0).unwrap(),
        ),
        Block::new(Dense::new(a).unwrap(), IndicatorPoint::from_data(0, 1).unwrap()),
    ];
    // ‖[I; A]‖₂² = 1 + 3 = 4, so α β ‖K‖² = 0.5 · 1 · 4 = 2.
    let rule = optlayer::splittings::StepRule::Fixed { safety: 0.99 };
    let result = LinearizedAdmm::with_rule(
        n,
        1,
        blocks,
        LadmmSteps {
            alpha: 0.5,
            beta: 1.0,
            lambda: 1.0,
        },
        rule,
    );
    match result {
        Err(error @ Error::StepCondition { .. }) => {
            let Error::StepCondition { value, bound, .. } = &error else {
                unreachable!()
            };
            assert!((value - 2.0).abs() < 1e-6, "{value}");
            assert_eq!(*bound, 0.99);
            let message = error.to_string();
            assert!(message.contains("beta below 4.95"), "{message}");
        }
        other => panic!("expected a step condition error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn shrink_step_rule_lowers_beta() {
    let n = 3;
    let a = mat![[1.0, 1.0, 1.0]];
    let blocks = vec![
        Block::new(
            LearnableDense::new("theta", Mat::identity(n, n)).unwrap(),
            L1Norm::new(1.0).unwrap(),
        ),
        Block::new(Dense::new(a).unwrap(), IndicatorPoint::from_data(0, 1).unwrap()),
    ];
    let s: LinearizedAdmm<f64> = LinearizedAdmm::new(
        n,
        1,
        blocks,
        LadmmSteps {
            alpha: 0.5,
            beta: 1.0,
            lambda: 1.0,
        },
    )
    .unwrap();
    assert!((s.norm_estimate() - 2.0).abs() < 1e-6);
    assert!(
        (s.beta() - 0.99 / (0.5 * 4.0)).abs() < 1e-6,
        "beta = {}",
        s.beta()
    );
    assert!((s.step_condition() - 0.99).abs() < 1e-6);
}

#[test]
fn inconsistent_constraint_primal_dual_reports_residual() {
    // The same inconsistent system for the primal-dual scheme: the dual
    // grows without bound, the sample is not converged, and the reported
    // residual ‖Ax − d‖ is the measured one, at least the best attainable.
    use optlayer::splittings::{CondatVu, PrimalDualSteps};
    let a = mat![[1.0, 1.0], [2.0, 2.0]];
    let d = mat![[1.0], [3.0]];
    let s: CondatVu<f64> = CondatVu::new(
        2,
        Box::new(Dense::new(a.clone()).unwrap()),
        Box::new(L1Norm::new(1.0).unwrap()),
        Box::new(IndicatorPoint::from_data(0, 2).unwrap()),
        PrimalDualSteps::default(),
    )
    .unwrap();
    let layer = OptLayer::new(s, ForwardOptions::new(20_000, 1e-8)).unwrap();
    let result = layer.forward(d.as_ref()).unwrap();
    assert_eq!(
        result.samples[0].status,
        Status::IterationLimit,
        "{:?}",
        result.samples[0]
    );
    let measured = (&a * &result.x - &d).norm_l2();
    let reported = result.samples[0]
        .constraint_residual
        .expect("the model has a constraint");
    assert!(
        (reported - measured).abs() < 1e-12,
        "reported {reported}, measured {measured}"
    );
    assert!(
        reported >= 0.447213 && reported.is_finite(),
        "reported {reported}"
    );
}

#[test]
fn sparse_checks_stop_at_multiples() {
    // With d = 0.5 the residual after k steps from 0 is 0.5^(k−1), so
    // rtol = 1e-6 (scale ≈ 2) stops at k = 20 when every step is checked.
    // With a check every 8 steps the sample stops at 24 with the state of
    // 24 steps, and one check at the limit of 10 reports step 10.
    let data = mat![[0.5, 0.25]];
    let every_step = OptLayer::new(AffineMap, ForwardOptions::new(1_000, 1e-6)).unwrap();
    let reference = every_step.forward(data.as_ref()).unwrap();
    assert_eq!(reference.samples[0].iterations, 20);

    let sparse_checks = ForwardOptions::new(1_000, 1e-6).with_check_every(8);
    let result = every_step.forward_with(data.as_ref(), &sparse_checks).unwrap();
    for (j, report) in result.samples.iter().enumerate() {
        let expected = reference.samples[j].iterations.div_ceil(8) * 8;
        assert_eq!(report.iterations, expected, "sample {j}");
        assert_eq!(report.status, Status::Converged, "sample {j}");
        let fixed_depth = ForwardOptions::new(expected, 0.0);
        let plain = every_step
            .forward_with(data.as_ref().subcols(j, 1), &fixed_depth)
            .unwrap();
        assert_eq!(result.x[(0, j)], plain.x[(0, 0)], "sample {j}");
        assert_eq!(report.residual, plain.samples[0].residual, "sample {j}");
    }

    let limit = ForwardOptions::new(10, 1e-12).with_check_every(8);
    let result = every_step.forward_with(mat![[0.999]].as_ref(), &limit).unwrap();
    let report = result.samples[0];
    assert_eq!(report.status, Status::IterationLimit);
    assert_eq!(report.iterations, 10);
    assert!((report.residual - 0.999_f64.powi(9)).abs() < 1e-12, "{report:?}");
}

#[test]
fn final_check_matches_every_step_checks() {
    // With rtol = atol = 0 no sample stops early, so checking only at the
    // last step must give the same bits as checking after every step, on one
    // thread or two. Θ and A have more than 2,048 entries each, so the
    // thread count does not change the rounding of the products.
    let (theta, a, data) = recovery_batch(60, 40, 4, 9, 11);
    let layer = OptLayer::new(
        sparse_model::<f32>(&theta, &a, true),
        ForwardOptions::new(150, 0.0),
    )
    .unwrap();
    let data = cast::<f32>(&data);
    let every_step = layer.forward(data.as_ref()).unwrap();
    for threads in [1, 2] {
        let options = ForwardOptions::new(150, 0.0)
            .with_check_every(150)
            .with_threads(threads);
        let once = layer.forward_with(data.as_ref(), &options).unwrap();
        assert_eq!(once.state, every_step.state, "{threads} threads");
        assert_eq!(once.samples, every_step.samples, "{threads} threads");
    }
}

#[test]
fn sparse_checks_report_non_finite_states() {
    let layer = OptLayer::new(AffineMap, ForwardOptions::new(1_000, 1e-12)).unwrap();
    let options = ForwardOptions::new(1_000, 1e-12).with_check_every(5);
    let result = layer.forward_with(mat![[0.5, 1e200]].as_ref(), &options).unwrap();
    assert_eq!(result.samples[0].status, Status::Converged);
    assert_eq!(result.samples[0].iterations % 5, 0, "{:?}", result.samples[0]);
    assert_eq!(result.samples[1].status, Status::NonFinite);
    assert_eq!(result.samples[1].iterations, 5, "{:?}", result.samples[1]);
}

#[test]
fn check_every_rejects_zero_and_anderson() {
    let layer = OptLayer::new(AffineMap, ForwardOptions::default()).unwrap();
    let data = mat![[0.5]];
    let zero = ForwardOptions::default().with_check_every(0);
    match layer.forward_with(data.as_ref(), &zero).unwrap_err() {
        Error::InvalidParameter { name, value, .. } => {
            assert_eq!(name, "check_every");
            assert_eq!(value, 0.0);
        }
        other => panic!("unexpected error {other:?}"),
    }
    let accelerated = ForwardOptions::default()
        .with_anderson(optlayer::AndersonOptions::default())
        .with_check_every(4);
    let error = layer.forward_with(data.as_ref(), &accelerated).unwrap_err();
    assert!(error.to_string().contains("check_every"), "{error}");
    assert!(error.to_string().contains("Anderson"), "{error}");
    assert!(
        layer
            .forward_with(data.as_ref(), &accelerated.with_check_every(1))
            .is_ok()
    );
}
