//! Gradient modes (JFB, truncated, unrolled, implicit) on problems with
//! known gradients, against finite differences, and their failure reports.

mod common;

use common::{cast, recovery_batch, sparse_model, unit_column_matrix};
use faer::dyn_stack::{MemStack, StackReq};
use faer::{Mat, MatMut, MatRef, Par, mat};
use optlayer::ops::{Dense, IndicatorPoint, L1Norm, LearnableDense, Simplex, SquaredL2};
use optlayer::splittings::{Block, LadmmSteps, LinearizedAdmm};
use optlayer::{
    AdjointSolver, Error, ForwardOptions, GradientMode, Gradients, ImplicitOptions, OptLayer, ParamInfo,
    Parameterized, Prox, Scalar, Splitting, mse, mse_loss,
};
use optlayer_testing::random::gaussian;

/// The affine map `z⁺ = W z + p` with `p` learnable; its fixed point is
/// `(I − W)⁻¹ p`. The data batch has no rows.
struct Affine<T: Scalar> {
    w: Mat<T>,
    p: Mat<T>,
}

impl<T: Scalar> Parameterized<T> for Affine<T> {
    fn param_count(&self) -> usize {
        1
    }
    fn param_info(&self, _: usize) -> ParamInfo {
        ParamInfo {
            name: "p".into(),
            nrows: self.p.nrows(),
            ncols: 1,
        }
    }
    fn param(&self, _: usize) -> MatRef<'_, T> {
        self.p.as_ref()
    }
    fn param_mut(&mut self, _: usize) -> MatMut<'_, T> {
        self.p.as_mut()
    }
}

impl<T: Scalar> Splitting for Affine<T> {
    type Real = T;
    fn name(&self) -> &str {
        "affine map"
    }
    fn primal_dim(&self) -> usize {
        self.w.nrows()
    }
    fn data_dim(&self) -> usize {
        0
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
    fn step(&self, mut z_next: MatMut<'_, T>, z: MatRef<'_, T>, _: MatRef<'_, T>, _: Par, _: &mut MemStack) {
        for j in 0..z.ncols() {
            for i in 0..z.nrows() {
                let mut value = self.p[(i, 0)];
                for k in 0..z.nrows() {
                    value += self.w[(i, k)] * z[(k, j)];
                }
                z_next[(i, j)] = value;
            }
        }
    }
    fn step_vjp_scratch(&self, _: usize, _: Par) -> StackReq {
        StackReq::EMPTY
    }
    fn step_vjp(
        &self,
        z_bar: Option<MatMut<'_, T>>,
        _: MatRef<'_, T>,
        _: MatRef<'_, T>,
        c: MatRef<'_, T>,
        grads: Option<&mut [Mat<T>]>,
        _: Par,
        _: &mut MemStack,
    ) {
        if let Some(mut z_bar) = z_bar {
            for j in 0..c.ncols() {
                for i in 0..c.nrows() {
                    let mut value = T::zero();
                    for k in 0..c.nrows() {
                        value += self.w[(k, i)] * c[(k, j)];
                    }
                    z_bar[(i, j)] = value;
                }
            }
        }
        if let Some(grads) = grads {
            for j in 0..c.ncols() {
                for i in 0..c.nrows() {
                    grads[0][(i, 0)] += c[(i, j)];
                }
            }
        }
    }
}

/// Loss = sum of all outputs.
fn sum_loss<T: Scalar>(x: MatRef<'_, T>, mut grad: MatMut<'_, T>) -> T {
    let mut total = T::zero();
    for j in 0..x.ncols() {
        for i in 0..x.nrows() {
            total += x[(i, j)];
            grad[(i, j)] = T::one();
        }
    }
    total
}

fn implicit(solver: AdjointSolver) -> GradientMode {
    GradientMode::Implicit(ImplicitOptions {
        solver,
        max_iters: 500,
        rtol: 1e-12,
        allow_unconverged_forward: false,
    })
}

fn affine_layer(w: Mat<f64>) -> OptLayer<Affine<f64>> {
    OptLayer::new(
        Affine {
            w,
            p: mat![[1.0], [1.0]],
        },
        ForwardOptions::new(10_000, 1e-14),
    )
    .unwrap()
}

fn gradient_of<Alg: Splitting<Real = f64>>(
    layer: &OptLayer<Alg>,
    mode: &GradientMode,
    data: MatRef<'_, f64>,
    loss: &mut dyn FnMut(MatRef<'_, f64>, MatMut<'_, f64>) -> f64,
) -> optlayer::Result<(Gradients<f64>, optlayer::GradientOutput<f64>)> {
    let forward = layer.forward(data)?;
    let mut grads = Gradients::zeros_for(layer);
    let output = layer.gradient(mode, &forward, data, loss, &mut grads)?;
    Ok((grads, output))
}

#[test]
fn affine_fixed_point_known_gradient() {
    let layer = affine_layer(mat![[0.5, 0.4], [-0.4, 0.5]]);
    let no_data = Mat::<f64>::zeros(0, 1);
    let forward = layer.forward(no_data.as_ref()).unwrap();
    assert!((forward.x[(0, 0)] - 2.195122).abs() < 1e-6, "{:?}", forward.x);
    assert!((forward.x[(1, 0)] - 0.243902).abs() < 1e-6, "{:?}", forward.x);

    // d(z₁ + z₂)/dp = (I − W)⁻ᵀ 1 = [0.1, 0.9] / 0.41.
    let exact = [0.1 / 0.41, 0.9 / 0.41];
    for mode in [
        implicit(AdjointSolver::FixedPoint),
        implicit(AdjointSolver::BiCgStab),
        GradientMode::Truncated {
            steps: 200,
            memory_limit_bytes: None,
        },
        GradientMode::Unrolled {
            steps: Some(200),
            memory_limit_bytes: None,
        },
    ] {
        let (grads, output) = gradient_of(&layer, &mode, no_data.as_ref(), &mut sum_loss).unwrap();
        let g = grads.get("p").unwrap();
        assert!((g[(0, 0)] - exact[0]).abs() < 1e-9, "{}: {:?}", mode.label(), g);
        assert!((g[(1, 0)] - exact[1]).abs() < 1e-9, "{}: {:?}", mode.label(), g);
        assert!((g[(0, 0)] - 0.243902).abs() < 1e-6);
        assert!((g[(1, 0)] - 2.195122).abs() < 1e-6);
        assert!(output.warnings.is_empty(), "{:?}", output.warnings);
    }

    // JFB keeps only the first term of the Neumann series: (∂T/∂p)ᵀ 1 = [1, 1].
    let (grads, _) = gradient_of(&layer, &GradientMode::Jfb, no_data.as_ref(), &mut sum_loss).unwrap();
    assert_eq!(grads.get("p").unwrap().to_owned(), mat![[1.0], [1.0]]);

    // Truncation to k steps keeps k terms: 1 + Wᵀ1 for k = 2.
    let (grads, _) = gradient_of(
        &layer,
        &GradientMode::Truncated {
            steps: 2,
            memory_limit_bytes: None,
        },
        no_data.as_ref(),
        &mut sum_loss,
    )
    .unwrap();
    let g = grads.get("p").unwrap();
    assert!((g[(0, 0)] - (1.0 + 0.5 - 0.4)).abs() < 1e-15, "{g:?}");
    assert!((g[(1, 0)] - (1.0 + 0.4 + 0.5)).abs() < 1e-15, "{g:?}");
}

#[test]
fn affine_contraction_estimate() {
    // W = 0.64 · rotation, so ‖Wᵀ v‖ = 0.64 ‖v‖ for every v.
    let layer = affine_layer(mat![[0.5, 0.4], [-0.4, 0.5]]);
    let no_data = Mat::<f64>::zeros(0, 3);
    let forward = layer.forward(no_data.as_ref()).unwrap();
    let estimate = layer
        .contraction_estimate(&forward, no_data.as_ref(), 20, 1)
        .unwrap();
    let radius = (0.5f64 * 0.5 + 0.4 * 0.4).sqrt();
    assert_eq!(estimate.per_sample.len(), 3);
    assert!((estimate.max - radius).abs() < 1e-12, "{estimate:?}");
    assert!((estimate.mean - radius).abs() < 1e-12, "{estimate:?}");
}

#[test]
fn singular_adjoint_system_is_an_error() {
    // W = diag(1, 0.5): I − W is singular, z₁ grows without bound, and
    // (I − Wᵀ) u = [1, 1] has no solution.
    let layer = OptLayer::new(
        Affine {
            w: mat![[1.0, 0.0], [0.0, 0.5]],
            p: mat![[1.0], [1.0]],
        },
        ForwardOptions::new(50, 1e-12),
    )
    .unwrap();
    let no_data = Mat::<f64>::zeros(0, 1);
    let error = gradient_of(
        &layer,
        &implicit(AdjointSolver::FixedPoint),
        no_data.as_ref(),
        &mut sum_loss,
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            Error::ForwardNotConverged {
                unconverged: 1,
                samples: 1,
                ..
            }
        ),
        "{error}"
    );

    for solver in [AdjointSolver::FixedPoint, AdjointSolver::BiCgStab] {
        let mode = GradientMode::Implicit(ImplicitOptions {
            solver,
            max_iters: 200,
            rtol: 1e-10,
            allow_unconverged_forward: true,
        });
        let forward = layer.forward(no_data.as_ref()).unwrap();
        let mut grads = Gradients::zeros_for(&layer);
        let error = layer
            .gradient(&mode, &forward, no_data.as_ref(), &mut sum_loss, &mut grads)
            .unwrap_err();
        match &error {
            Error::AdjointSolveFailed {
                relative_residual,
                iterations,
                ..
            } => {
                assert!(*relative_residual > 1e-3 || relative_residual.is_nan(), "{error}");
                assert!(*iterations > 0, "{error}");
            }
            other => panic!("{solver:?}: expected AdjointSolveFailed, got {other}"),
        }
        // A failed solve leaves the gradient untouched instead of zero or NaN.
        assert_eq!(grads.get("p").unwrap().to_owned(), Mat::<f64>::zeros(2, 1));
    }
}

/// `z⁺ = prox_{λ‖·‖₁}(d)` with the learnable, shared `λ`: a layer whose
/// fixed point is reached in one step, so every mode gives the same gradient.
struct SoftThresholdLayer {
    prox: L1Norm<f64>,
    dim: usize,
}

impl Parameterized<f64> for SoftThresholdLayer {
    fn param_count(&self) -> usize {
        self.prox.param_count()
    }
    fn param_info(&self, index: usize) -> ParamInfo {
        self.prox.param_info(index)
    }
    fn param(&self, index: usize) -> MatRef<'_, f64> {
        self.prox.param(index)
    }
    fn param_mut(&mut self, index: usize) -> MatMut<'_, f64> {
        self.prox.param_mut(index)
    }
}

impl Splitting for SoftThresholdLayer {
    type Real = f64;
    fn name(&self) -> &str {
        "soft-threshold layer"
    }
    fn primal_dim(&self) -> usize {
        self.dim
    }
    fn data_dim(&self) -> usize {
        self.dim
    }
    fn state_dim(&self) -> usize {
        self.dim
    }
    fn step_sizes(&self) -> Vec<(String, f64)> {
        Vec::new()
    }
    fn step_scratch(&self, _: usize, _: Par) -> StackReq {
        StackReq::EMPTY
    }
    fn step(
        &self,
        z_next: MatMut<'_, f64>,
        _: MatRef<'_, f64>,
        data: MatRef<'_, f64>,
        _: Par,
        _: &mut MemStack,
    ) {
        self.prox.prox(z_next, data, 1.0, data);
    }
    fn step_vjp_scratch(&self, _: usize, _: Par) -> StackReq {
        StackReq::EMPTY
    }
    fn step_vjp(
        &self,
        z_bar: Option<MatMut<'_, f64>>,
        _: MatRef<'_, f64>,
        data: MatRef<'_, f64>,
        c: MatRef<'_, f64>,
        grads: Option<&mut [Mat<f64>]>,
        _: Par,
        _: &mut MemStack,
    ) {
        if let Some(mut z_bar) = z_bar {
            z_bar.fill(0.0);
        }
        if let Some(grads) = grads {
            self.prox.accumulate_grad(grads, data, 1.0, data, c);
        }
    }
}

#[test]
fn shared_threshold_gradient_is_summed_over_batch() {
    let layer = OptLayer::new(
        SoftThresholdLayer {
            prox: L1Norm::learnable("lambda", 0.5).unwrap(),
            dim: 2,
        },
        ForwardOptions::new(10, 0.0),
    )
    .unwrap();
    let data = Mat::from_fn(2, 3, |i, j| [[1.0, -2.0], [0.2, 0.7], [-0.1, 3.0]][j][i]);
    for mode in [
        GradientMode::Jfb,
        GradientMode::Truncated {
            steps: 3,
            memory_limit_bytes: None,
        },
        GradientMode::Unrolled {
            steps: Some(4),
            memory_limit_bytes: None,
        },
        GradientMode::Implicit(ImplicitOptions {
            allow_unconverged_forward: true,
            ..ImplicitOptions::default()
        }),
    ] {
        let (grads, output) = gradient_of(&layer, &mode, data.as_ref(), &mut sum_loss).unwrap();
        let expected = Mat::from_fn(2, 3, |i, j| [[0.5, -1.5], [0.0, 0.2], [0.0, 2.5]][j][i]);
        assert!(
            (&output.x - &expected).norm_max() < 1e-15,
            "{}: {:?}",
            mode.label(),
            output.x
        );
        let g = grads.get("lambda").unwrap();
        assert_eq!(g.shape(), (1, 1));
        assert!((g[(0, 0)] + 2.0).abs() < 1e-15, "{}: {g:?}", mode.label());
    }

    // A batch of one keeps its batch axis: x is 2 x 1 and the gradient 1 x 1.
    let one = data.as_ref().subcols(1, 1).to_owned();
    let (grads, output) = gradient_of(&layer, &GradientMode::Jfb, one.as_ref(), &mut sum_loss).unwrap();
    assert_eq!(output.x.shape(), (2, 1));
    assert_eq!(grads.get("lambda").unwrap().shape(), (1, 1));
    assert!((grads.get("lambda").unwrap()[(0, 0)] + 1.0).abs() < 1e-15);
}

/// `z⁺ = P_simplex(c)` with the learnable `c`.
struct SimplexLayer {
    c: Mat<f64>,
}

impl Parameterized<f64> for SimplexLayer {
    fn param_count(&self) -> usize {
        1
    }
    fn param_info(&self, _: usize) -> ParamInfo {
        ParamInfo {
            name: "c".into(),
            nrows: self.c.nrows(),
            ncols: 1,
        }
    }
    fn param(&self, _: usize) -> MatRef<'_, f64> {
        self.c.as_ref()
    }
    fn param_mut(&mut self, _: usize) -> MatMut<'_, f64> {
        self.c.as_mut()
    }
}

impl Splitting for SimplexLayer {
    type Real = f64;
    fn name(&self) -> &str {
        "simplex projection"
    }
    fn primal_dim(&self) -> usize {
        self.c.nrows()
    }
    fn data_dim(&self) -> usize {
        0
    }
    fn state_dim(&self) -> usize {
        self.c.nrows()
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
        _: MatRef<'_, f64>,
        data: MatRef<'_, f64>,
        _: Par,
        _: &mut MemStack,
    ) {
        for j in 0..z_next.ncols() {
            Simplex.prox(
                z_next.rb_mut().subcols_mut(j, 1),
                self.c.as_ref(),
                1.0,
                data.subcols(j, 1),
            );
        }
    }
    fn step_vjp_scratch(&self, _: usize, _: Par) -> StackReq {
        StackReq::EMPTY
    }
    fn step_vjp(
        &self,
        z_bar: Option<MatMut<'_, f64>>,
        _: MatRef<'_, f64>,
        data: MatRef<'_, f64>,
        c: MatRef<'_, f64>,
        grads: Option<&mut [Mat<f64>]>,
        _: Par,
        _: &mut MemStack,
    ) {
        if let Some(mut z_bar) = z_bar {
            z_bar.fill(0.0);
        }
        if let Some(grads) = grads {
            let mut v_bar = Mat::zeros(self.c.nrows(), 1);
            for j in 0..c.ncols() {
                Simplex.prox_vjp(
                    v_bar.as_mut(),
                    self.c.as_ref(),
                    1.0,
                    data.subcols(j, 1),
                    c.subcols(j, 1),
                );
                for i in 0..self.c.nrows() {
                    grads[0][(i, 0)] += v_bar[(i, 0)];
                }
            }
        }
    }
}

use faer::prelude::ReborrowMut;

#[test]
fn simplex_projection_derivative() {
    let layer = OptLayer::new(
        SimplexLayer {
            c: mat![[0.6], [0.58]],
        },
        ForwardOptions::new(10, 1e-12),
    )
    .unwrap();
    let no_data = Mat::<f64>::zeros(0, 1);
    // Loss x₁: the gradient with respect to c is the first row of ∂x/∂c.
    let mut first_entry = |x: MatRef<'_, f64>, mut g: MatMut<'_, f64>| {
        g[(0, 0)] = 1.0;
        g[(1, 0)] = 0.0;
        x[(0, 0)]
    };
    for mode in [
        GradientMode::Jfb,
        implicit(AdjointSolver::FixedPoint),
        implicit(AdjointSolver::BiCgStab),
    ] {
        let (grads, output) = gradient_of(&layer, &mode, no_data.as_ref(), &mut first_entry).unwrap();
        assert!((output.x[(0, 0)] - 0.51).abs() < 1e-12, "{:?}", output.x);
        assert!((output.x[(1, 0)] - 0.49).abs() < 1e-12, "{:?}", output.x);
        let g = grads.get("c").unwrap();
        assert!((g[(0, 0)] - 0.5).abs() < 1e-12, "{}: {g:?}", mode.label());
        assert!(
            (g[(1, 0)] + 0.5).abs() < 1e-12,
            "{}: ∂x₁/∂c₂ = {}",
            mode.label(),
            g[(1, 0)]
        );
    }
}

/// Returns `mse(x(Θ), target)` after the layer's forward pass with `options`.
fn forward_loss<Alg: Splitting<Real = f64>>(
    layer: &OptLayer<Alg>,
    data: MatRef<'_, f64>,
    target: MatRef<'_, f64>,
    options: &ForwardOptions,
) -> f64 {
    mse(layer.forward_with(data, options).unwrap().x.as_ref(), target)
}

/// Returns the relative error of `analytic` against central differences of
/// `forward_loss` in every entry of Θ, skipping entries at kinks, and the
/// number of entries skipped.
fn fd_relative_error<Alg: Splitting<Real = f64>>(
    layer: &mut OptLayer<Alg>,
    analytic: MatRef<'_, f64>,
    data: MatRef<'_, f64>,
    target: MatRef<'_, f64>,
    options: &ForwardOptions,
    eps: f64,
) -> (f64, usize) {
    let center = forward_loss(layer, data, target, options);
    let (mut diff_sq, mut norm_sq, mut kinks) = (0.0, 0.0, 0);
    for j in 0..analytic.ncols() {
        for i in 0..analytic.nrows() {
            let original = layer.param(0)[(i, j)];
            layer.param_mut(0)[(i, j)] = original + eps;
            let plus = forward_loss(layer, data, target, options);
            layer.param_mut(0)[(i, j)] = original - eps;
            let minus = forward_loss(layer, data, target, options);
            layer.param_mut(0)[(i, j)] = original;
            let (forward_diff, backward_diff) = ((plus - center) / eps, (center - minus) / eps);
            if (forward_diff - backward_diff).abs()
                > 1e-3 * forward_diff.abs().max(backward_diff.abs()).max(1e-8)
            {
                kinks += 1;
                continue;
            }
            let fd = (plus - minus) / (2.0 * eps);
            diff_sq += (fd - analytic[(i, j)]).powi(2);
            norm_sq += fd * fd;
        }
    }
    ((diff_sq / norm_sq).sqrt(), kinks)
}

#[test]
fn unrolled_matches_finite_differences_of_k_step_map() {
    for seed in 0..4 {
        let (n, m, steps) = (6, 3, 30);
        let a = unit_column_matrix(m, n, seed);
        let data = &a * gaussian(n, 2, seed + 1);
        let target = gaussian(n, 2, seed + 2);
        // rtol = 0: every sample runs exactly `steps` iterations, the K-step map.
        let options = ForwardOptions::new(steps, 0.0);
        let mut layer = OptLayer::new(
            sparse_model::<f64>(&gaussian(n, n, seed + 3), &a, true),
            options.clone(),
        )
        .unwrap();
        let mode = GradientMode::Unrolled {
            steps: Some(steps),
            memory_limit_bytes: None,
        };
        let (grads, output) = gradient_of(&layer, &mode, data.as_ref(), &mut |x, g| {
            mse_loss(x, target.as_ref(), g)
        })
        .unwrap();
        let expected_bytes = steps * layer.splitting().state_dim() * 2 * std::mem::size_of::<f64>();
        assert_eq!(output.stored_bytes, expected_bytes);
        let analytic = grads.get("theta").unwrap().to_owned();
        let (rel, kinks) = fd_relative_error(
            &mut layer,
            analytic.as_ref(),
            data.as_ref(),
            target.as_ref(),
            &options,
            1e-6,
        );
        assert!(kinks * 2 <= n * n, "seed {seed}: {kinks} kinks");
        assert!(rel < 1e-6, "seed {seed}: relative error {rel:e}");
    }
}

/// `min ½‖Θx‖² s.t. Ax = d`: smooth and strongly convex for invertible Θ, so
/// its solution is a differentiable function of Θ.
fn smooth_model(theta: &Mat<f64>, a: &Mat<f64>) -> LinearizedAdmm<f64> {
    let (m, n) = (a.nrows(), a.ncols());
    let a_norm = a.as_ref().singular_values().unwrap()[0];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 1.0 / (1.0 + a_norm),
        lambda: 1.0,
    };
    let blocks = vec![
        Block::new(
            LearnableDense::new("theta", theta.clone()).unwrap(),
            SquaredL2::new(1.0).unwrap(),
        ),
        Block::new(
            Dense::new(a.clone()).unwrap(),
            IndicatorPoint::from_data(0, m).unwrap(),
        ),
    ];
    LinearizedAdmm::new(n, m, blocks, steps).unwrap()
}

#[test]
fn implicit_matches_finite_differences_of_converged_map() {
    for seed in 0..3 {
        let (n, m) = (6, 3);
        let a = unit_column_matrix(m, n, seed + 10);
        let theta = common::well_conditioned(n, seed + 11);
        let data = &a * gaussian(n, 2, seed + 12);
        let target = gaussian(n, 2, seed + 13);
        let options = ForwardOptions::new(200_000, 1e-14);
        let mut layer = OptLayer::new(smooth_model(&theta, &a), options.clone()).unwrap();
        let forward = layer.forward(data.as_ref()).unwrap();
        assert_eq!(forward.converged_count(), 2);

        for solver in [AdjointSolver::FixedPoint, AdjointSolver::BiCgStab] {
            let mode = GradientMode::Implicit(ImplicitOptions {
                solver,
                max_iters: 100_000,
                rtol: 1e-12,
                allow_unconverged_forward: false,
            });
            let mut grads = Gradients::zeros_for(&layer);
            let output = layer
                .gradient(
                    &mode,
                    &forward,
                    data.as_ref(),
                    &mut |x, g| mse_loss(x, target.as_ref(), g),
                    &mut grads,
                )
                .unwrap();
            let report = output.adjoint.unwrap();
            assert!(report.relative_residual < 1e-10, "{solver:?}: {report:?}");
            let analytic = grads.get("theta").unwrap().to_owned();
            let (rel, kinks) = fd_relative_error(
                &mut layer,
                analytic.as_ref(),
                data.as_ref(),
                target.as_ref(),
                &options,
                1e-5,
            );
            assert_eq!(kinks, 0);
            assert!(rel < 1e-4, "seed {seed}, {solver:?}: relative error {rel:e}");
        }
    }
}

#[test]
fn unrolled_memory_limit_fails_early() {
    let (theta, a, data) = recovery_batch(8, 4, 1, 3, 1);
    let layer = OptLayer::new(
        sparse_model::<f64>(&theta, &a, true),
        ForwardOptions::new(100, 1e-8),
    )
    .unwrap();
    let mode = GradientMode::Unrolled {
        steps: Some(1_000_000),
        memory_limit_bytes: Some(1 << 20),
    };
    let target = Mat::<f64>::zeros(8, 3);
    let error = gradient_of(&layer, &mode, data.as_ref(), &mut |x, g| {
        mse_loss(x, target.as_ref(), g)
    })
    .map(|_| ())
    .unwrap_err();
    let needed = 1_000_000 * layer.splitting().state_dim() * 3 * 8;
    match &error {
        Error::MemoryLimit { needed_bytes, .. } => assert_eq!(*needed_bytes, needed),
        other => panic!("expected MemoryLimit, got {other}"),
    }
    let message = error.to_string();
    assert!(message.contains("1000000 iterations"), "{message}");
    assert!(message.contains("1048576 bytes"), "{message}");
}

#[test]
fn all_modes_run_in_f32_and_f64() {
    let (theta, a, data) = recovery_batch(10, 5, 2, 4, 3);
    let target = gaussian(10, 4, 4);
    let modes = [
        GradientMode::Jfb,
        GradientMode::Truncated {
            steps: 5,
            memory_limit_bytes: None,
        },
        GradientMode::Unrolled {
            steps: Some(300),
            memory_limit_bytes: None,
        },
        GradientMode::Implicit(ImplicitOptions {
            solver: AdjointSolver::BiCgStab,
            max_iters: 2_000,
            rtol: 1e-4,
            allow_unconverged_forward: true,
        }),
    ];
    let options = ForwardOptions::new(300, 1e-6);
    let layer64 = OptLayer::new(sparse_model::<f64>(&theta, &a, true), options.clone()).unwrap();
    let layer32 = OptLayer::new(sparse_model::<f32>(&theta, &a, true), options).unwrap();
    let (data32, target32) = (cast::<f32>(&data), cast::<f32>(&target));
    for mode in &modes {
        let forward64 = layer64.forward(data.as_ref()).unwrap();
        let mut g64 = Gradients::zeros_for(&layer64);
        let result64 = layer64.gradient(
            mode,
            &forward64,
            data.as_ref(),
            &mut |x, g| mse_loss(x, target.as_ref(), g),
            &mut g64,
        );
        let forward32 = layer32.forward(data32.as_ref()).unwrap();
        let mut g32 = Gradients::zeros_for(&layer32);
        let result32 = layer32.gradient(
            mode,
            &forward32,
            data32.as_ref(),
            &mut |x, g| mse_loss(x, target32.as_ref(), g),
            &mut g32,
        );
        match (result64, result32) {
            (Ok(out64), Ok(out32)) => {
                let a64 = &g64.tensors()[0];
                let a32 = Mat::from_fn(10, 10, |i, j| f64::from(g32.tensors()[0][(i, j)]));
                let rel = (a64 - &a32).norm_l2() / a64.norm_l2();
                assert!(rel < 5e-2, "{}: f32 and f64 differ by {rel:e}", mode.label());
                assert!((out64.loss - f64::from(out32.loss)).abs() < 1e-3 * out64.loss.max(1.0));
            }
            // The adjoint solve may fail in both precisions at a non-smooth
            // point; it must then fail with a typed error, never a NaN gradient.
            (Err(Error::AdjointSolveFailed { .. }), Err(Error::AdjointSolveFailed { .. })) => {}
            (a, b) => panic!(
                "{}: f64 {:?}, f32 {:?}",
                mode.label(),
                a.map(|_| ()),
                b.map(|_| ())
            ),
        }
    }
}

#[test]
fn zero_steps_rejected() {
    let layer = affine_layer(mat![[0.5, 0.0], [0.0, 0.5]]);
    let no_data = Mat::<f64>::zeros(0, 1);
    for mode in [
        GradientMode::Truncated {
            steps: 0,
            memory_limit_bytes: None,
        },
        GradientMode::Unrolled {
            steps: Some(0),
            memory_limit_bytes: None,
        },
    ] {
        let error = gradient_of(&layer, &mode, no_data.as_ref(), &mut sum_loss)
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(error, Error::InvalidParameter { .. }),
            "{}: {error}",
            mode.label()
        );
    }
}

#[test]
fn gradient_mode_labels_round_trip() {
    for text in ["jfb", "truncated:7", "unrolled", "implicit", "implicit:bicgstab"] {
        assert_eq!(GradientMode::parse(text).unwrap().label(), text);
    }
    for bad in ["", "truncated:0", "truncated:x", "unroll", "implicit:gmres"] {
        assert!(GradientMode::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn audit_reports_every_mode() {
    let (n, m, steps) = (6, 3, 40);
    let a = unit_column_matrix(m, n, 21);
    let data = &a * gaussian(n, 2, 22);
    let target = gaussian(n, 2, 23);
    let mut layer = OptLayer::new(
        sparse_model::<f64>(&gaussian(n, n, 24), &a, true),
        ForwardOptions::new(steps, 0.0),
    )
    .unwrap();
    let before = layer.param(0).to_owned();
    let options = optlayer::AuditOptions {
        modes: vec![
            GradientMode::Jfb,
            GradientMode::Truncated {
                steps: 3,
                memory_limit_bytes: None,
            },
            GradientMode::Unrolled {
                steps: None,
                memory_limit_bytes: None,
            },
            implicit(AdjointSolver::FixedPoint),
        ],
        ..optlayer::AuditOptions::default()
    };
    let audit = layer
        .audit_gradients(
            data.as_ref(),
            &mut |x, g| mse_loss(x, target.as_ref(), g),
            &options,
        )
        .unwrap();
    assert_eq!(
        layer.param(0).to_owned(),
        before,
        "the audit must restore the parameters"
    );
    assert!(audit.reference.contains("36 entries"), "{}", audit.reference);
    assert_eq!(audit.rows.len(), 4);

    let unrolled = &audit.rows[2];
    assert_eq!(unrolled.mode, "unrolled");
    assert!(unrolled.relative_error < 1e-5, "{}", audit.table());
    assert!((unrolled.cosine - 1.0).abs() < 1e-8, "{}", audit.table());
    assert!(unrolled.descent, "{}", audit.table());
    // The forward pass stops at 40 iterations, unconverged: implicit mode refuses.
    assert!(
        audit.rows[3]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("did not converge")),
        "{}",
        audit.table()
    );
    let table = audit.table();
    for label in ["jfb", "truncated:3", "unrolled", "implicit"] {
        assert!(table.contains(label), "{table}");
    }
}

#[test]
fn audit_with_random_directions() {
    // With full_max_entries below the parameter count the audit projects on
    // random directions; unrolled still agrees with the differences.
    let (n, m, steps) = (6, 3, 30);
    let a = unit_column_matrix(m, n, 31);
    let data = &a * gaussian(n, 2, 32);
    let target = gaussian(n, 2, 33);

    let mut layer = OptLayer::new(
        sparse_model::<f64>(&gaussian(n, n, 34), &a, true),
        ForwardOptions::new(steps, 0.0),
    )
    .unwrap();
    let options = optlayer::AuditOptions {
        modes: vec![GradientMode::Unrolled {
            steps: None,
            memory_limit_bytes: None,
        }],
        full_max_entries: 10,
        probes: 6,
        ..optlayer::AuditOptions::default()
    };

    let audit = layer
        .audit_gradients(
            data.as_ref(),
            &mut |x, g| mse_loss(x, target.as_ref(), g),
            &options,
        )
        .unwrap();
    assert!(
        audit.reference.contains("6 random directions"),
        "{}",
        audit.reference
    );
    assert!(audit.rows[0].relative_error < 1e-5, "{}", audit.table());
    assert!(audit.rows[0].descent);
}

#[test]
fn non_finite_forward_or_loss_is_an_error() {
    // W = 1e200 I overflows in a few steps.
    let layer = OptLayer::new(
        Affine {
            w: mat![[1e200, 0.0], [0.0, 1e200]],
            p: mat![[1.0], [1.0]],
        },
        ForwardOptions::new(50, 1e-12),
    )
    .unwrap();
    let no_data = Mat::<f64>::zeros(0, 2);
    let forward = layer.forward(no_data.as_ref()).unwrap();
    assert_eq!(forward.non_finite_count(), 2);
    for mode in [
        GradientMode::Jfb,
        GradientMode::Truncated {
            steps: 2,
            memory_limit_bytes: None,
        },
        implicit(AdjointSolver::FixedPoint),
    ] {
        let mut grads = Gradients::zeros_for(&layer);
        let error = layer
            .gradient(&mode, &forward, no_data.as_ref(), &mut sum_loss, &mut grads)
            .unwrap_err();
        assert!(
            matches!(error, Error::NonFiniteForward { samples: 2, batch: 2 }),
            "{}: {error}",
            mode.label()
        );
        assert_eq!(grads.get("p").unwrap().to_owned(), Mat::<f64>::zeros(2, 1));
    }
    assert!(forward.max_relative_residual().is_nan() || forward.max_relative_residual().is_infinite());

    // A NaN in the loss gradient is caught before the caller's gradients change.
    let layer = affine_layer(mat![[0.5, 0.0], [0.0, 0.5]]);
    let forward = layer.forward(no_data.as_ref()).unwrap();
    let mut nan_loss = |x: MatRef<'_, f64>, mut g: MatMut<'_, f64>| {
        g.fill(f64::NAN);
        x[(0, 0)]
    };
    for mode in [
        GradientMode::Jfb,
        GradientMode::Unrolled {
            steps: Some(3),
            memory_limit_bytes: None,
        },
    ] {
        let mut grads = Gradients::zeros_for(&layer);
        grads.tensors_mut()[0][(0, 0)] = 7.0;
        let error = layer
            .gradient(&mode, &forward, no_data.as_ref(), &mut nan_loss, &mut grads)
            .unwrap_err();
        assert!(
            matches!(error, Error::NonFiniteGradient { .. }),
            "{}: {error}",
            mode.label()
        );
        assert_eq!(grads.get("p").unwrap()[(0, 0)], 7.0);
    }
}

#[test]
fn forward_of_another_layer_rejected() {
    let first = affine_layer(mat![[0.5, 0.0], [0.0, 0.5]]);
    let second = affine_layer(mat![[0.5, 0.1], [0.0, 0.5]]);
    let no_data = Mat::<f64>::zeros(0, 1);
    let forward = first.forward(no_data.as_ref()).unwrap();
    let mut grads = Gradients::zeros_for(&second);
    let error = second
        .gradient(
            &GradientMode::Jfb,
            &forward,
            no_data.as_ref(),
            &mut sum_loss,
            &mut grads,
        )
        .unwrap_err();
    assert!(error.to_string().contains("another layer"), "{error}");
}

#[test]
fn invalid_implicit_options_rejected() {
    let layer = affine_layer(mat![[0.5, 0.4], [-0.4, 0.5]]);
    let no_data = Mat::<f64>::zeros(0, 1);
    for (rtol, max_iters) in [
        (f64::INFINITY, 100),
        (f64::NAN, 100),
        (-1.0, 100),
        (0.0, 100),
        (1e-8, 0),
    ] {
        for solver in [AdjointSolver::FixedPoint, AdjointSolver::BiCgStab] {
            let mode = GradientMode::Implicit(ImplicitOptions {
                solver,
                max_iters,
                rtol,
                allow_unconverged_forward: false,
            });
            let error = gradient_of(&layer, &mode, no_data.as_ref(), &mut sum_loss)
                .map(|_| ())
                .unwrap_err();
            assert!(
                matches!(error, Error::InvalidParameter { .. }),
                "rtol {rtol}, max_iters {max_iters}: {error}"
            );
        }
    }
}

#[test]
fn truncated_memory_limit_fails_early() {
    let layer = affine_layer(mat![[0.5, 0.0], [0.0, 0.5]]);
    let no_data = Mat::<f64>::zeros(0, 4);
    let mode = GradientMode::Truncated {
        steps: 1_000,
        memory_limit_bytes: Some(1_000),
    };
    let error = gradient_of(&layer, &mode, no_data.as_ref(), &mut sum_loss)
        .map(|_| ())
        .unwrap_err();
    match error {
        Error::MemoryLimit { needed_bytes, .. } => assert_eq!(needed_bytes, 1_000 * 2 * 4 * 8),
        other => panic!("expected MemoryLimit, got {other}"),
    }
}

#[test]
fn contraction_estimate_for_non_normal_complex_pair() {
    // Eigenvalues 0.3 ± 0.5i and 0.45; spectral radius √(0.09 + 0.25) ≈ 0.5831,
    // with a non-normal 2 x 2 block, so single growth ratios oscillate.
    let layer = affine_layer_3(mat![[0.3, 2.0, 0.0], [-0.125, 0.3, 0.0], [0.0, 0.0, 0.45]]);
    let no_data = Mat::<f64>::zeros(0, 2);
    let forward = layer.forward(no_data.as_ref()).unwrap();
    let radius = (0.3f64 * 0.3 + 0.5 * 0.5).sqrt();
    let estimate = layer
        .contraction_estimate(&forward, no_data.as_ref(), 4_000, 5)
        .unwrap();
    for value in &estimate.per_sample {
        assert!((value - radius).abs() < 0.01 * radius, "{estimate:?}");
    }
    let error = layer
        .contraction_estimate(&forward, no_data.as_ref(), 1, 5)
        .unwrap_err();
    assert!(matches!(error, Error::InvalidParameter { .. }), "{error}");
}

fn affine_layer_3(w: Mat<f64>) -> OptLayer<Affine<f64>> {
    OptLayer::new(
        Affine {
            w,
            p: mat![[1.0], [1.0], [1.0]],
        },
        ForwardOptions::new(10_000, 1e-14),
    )
    .unwrap()
}

#[test]
fn gradients_of_another_model_with_other_names_rejected() {
    let layer = affine_layer(mat![[0.5, 0.0], [0.0, 0.5]]);
    let other = OptLayer::new(
        SimplexLayer {
            c: mat![[0.6], [0.58]],
        },
        ForwardOptions::new(10, 1e-12),
    )
    .unwrap();
    let no_data = Mat::<f64>::zeros(0, 1);
    let forward = layer.forward(no_data.as_ref()).unwrap();
    let mut grads = Gradients::zeros_for(&other);
    let error = layer
        .gradient(
            &GradientMode::Jfb,
            &forward,
            no_data.as_ref(),
            &mut sum_loss,
            &mut grads,
        )
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("'p'"), "{message}");
    assert!(message.contains("'c'"), "{message}");
}
