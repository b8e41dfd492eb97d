//! A new splitting scheme as a trait impl: the Krasnosel'skii–Mann averaged
//! iteration `z⁺ = (1 − θ) z + θ T(z)` of any other scheme `T`.
//!
//! The example implements the scheme, runs the conformance suite on it, and
//! trains the analysis operator of a sparse recovery model through it with
//! Jacobian-free backpropagation. Run with
//! `cargo run --release --example krasnoselskii_mann`.

use std::ops::ControlFlow;

use faer::dyn_stack::{MemStack, StackReq};
use faer::linalg::{temp_mat_scratch, temp_mat_zeroed};
use faer::mat::AsMatMut;
use faer::{Mat, MatMut, MatRef, Par};
use optlayer::problems::sparse_inverse::{SparseInverseConfig, SparseInverseProblem, build_model};
use optlayer::splittings::LinearizedAdmm;
use optlayer::train::{Adam, AdamConfig, TrainConfig, Trainer, evaluate};
use optlayer::{Error, ForwardOptions, OptLayer, ParamInfo, Parameterized, Result, Scalar, Splitting};
use optlayer_testing::conformance::{self, Case, Tolerances};
use optlayer_testing::reference::analysis_l1_exact;

/// The averaged iteration `z⁺ = (1 − θ) z + θ T(z)` of a splitting `T`, for
/// `θ ∈ (0, 1]`. It has the fixed points of `T`; when `T` is nonexpansive,
/// averaging makes the iteration converge (Krasnosel'skii 1955, Mann 1953).
pub struct Averaged<T: Scalar, S: Splitting<Real = T>> {
    inner: S,
    theta: T,
    name: String,
}

impl<T: Scalar, S: Splitting<Real = T>> Averaged<T, S> {
    /// Wraps `inner` with the averaging weight `theta`.
    ///
    /// # Errors
    /// When `theta` is not in (0, 1].
    pub fn new(inner: S, theta: f64) -> Result<Self> {
        if !(theta > 0.0 && theta <= 1.0) {
            return Err(Error::InvalidParameter {
                name: "averaging weight theta".into(),
                value: theta,
                requirement: "must be in (0, 1]".into(),
            });
        }
        let name = format!("averaged {}", inner.name());
        Ok(Self {
            inner,
            theta: T::lit(theta),
            name,
        })
    }
}

// The parameters are those of the inner scheme. The scalar type is a
// parameter of its own, `T` with `S: Splitting<Real = T>`, because the
// arithmetic bounds of `Scalar` do not carry over to the associated type
// `T` in generic code.
impl<T: Scalar, S: Splitting<Real = T>> Parameterized<T> for Averaged<T, S> {
    fn param_count(&self) -> usize {
        self.inner.param_count()
    }
    fn param_info(&self, index: usize) -> ParamInfo {
        self.inner.param_info(index)
    }
    fn param(&self, index: usize) -> MatRef<'_, T> {
        self.inner.param(index)
    }
    fn param_mut(&mut self, index: usize) -> MatMut<'_, T> {
        self.inner.param_mut(index)
    }
    fn after_param_update(&mut self) -> Result<()> {
        self.inner.after_param_update()
    }
}

impl<T: Scalar, S: Splitting<Real = T>> Splitting for Averaged<T, S> {
    type Real = T;

    fn name(&self) -> &str {
        &self.name
    }
    fn primal_dim(&self) -> usize {
        self.inner.primal_dim()
    }
    fn data_dim(&self) -> usize {
        self.inner.data_dim()
    }
    fn state_dim(&self) -> usize {
        self.inner.state_dim()
    }
    fn primal_rows(&self) -> std::ops::Range<usize> {
        self.inner.primal_rows()
    }
    fn step_sizes(&self) -> Vec<(String, f64)> {
        let mut steps = self.inner.step_sizes();
        steps.push(("theta".into(), self.theta.to_f64_lossless()));
        steps
    }
    fn init(&self, z: MatMut<'_, T>, data: MatRef<'_, T>) {
        self.inner.init(z, data);
    }

    fn step_scratch(&self, batch: usize, par: Par) -> StackReq {
        self.inner.step_scratch(batch, par)
    }

    fn step(
        &self,
        mut z_next: MatMut<'_, T>,
        z: MatRef<'_, T>,
        data: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        // z_next = T(z), then z_next = (1 − θ) z + θ z_next in place.
        self.inner.step(z_next.as_mut(), z, data, par, stack);
        let (theta, keep) = (self.theta, T::one() - self.theta);
        faer::zip!(z_next, z).for_each(|faer::unzip!(next, z)| *next = keep * *z + theta * *next);
    }

    fn step_vjp_scratch(&self, batch: usize, par: Par) -> StackReq {
        StackReq::all_of(&[
            temp_mat_scratch::<T>(self.state_dim(), batch),
            self.inner.step_vjp_scratch(batch, par),
        ])
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
        // With c the cotangent: z̄ = (1 − θ) c + (∂T/∂z)ᵀ(θ c), and the
        // parameter gradient is (∂T/∂Θ)ᵀ(θ c).
        let (mut scaled, stack) = temp_mat_zeroed::<T, _, _>(z.nrows(), z.ncols(), stack);
        let mut scaled = scaled.as_mat_mut();
        let (theta, keep) = (self.theta, T::one() - self.theta);
        faer::zip!(scaled.as_mut(), cotangent).for_each(|faer::unzip!(s, c)| *s = theta * *c);
        match z_bar {
            Some(mut z_bar) => {
                self.inner
                    .step_vjp(Some(z_bar.as_mut()), z, data, scaled.as_ref(), grads, par, stack);
                faer::zip!(z_bar, cotangent).for_each(|faer::unzip!(b, c)| *b += keep * *c);
            }
            None => self
                .inner
                .step_vjp(None, z, data, scaled.as_ref(), grads, par, stack),
        }
    }
}

fn main() -> Result<()> {
    // A small sparse recovery problem: recover x* from d = A x* by
    // min ‖Θx‖₁ s.t. Ax = d, with Θ learned.
    let config = SparseInverseConfig {
        n: 8,
        m: 5,
        r: 3,
        train_samples: 600,
        test_samples: 100,
        seed: 3,
        ..SparseInverseConfig::default()
    };
    let problem = SparseInverseProblem::generate(&config)?;
    let steps = problem.reference_steps()?;
    let build = |theta: &Mat<f64>| -> Result<Averaged<f64, LinearizedAdmm<f64>>> {
        Averaged::new(build_model::<f64>(theta, &problem.a, steps)?, 0.8)
    };

    // 1. The conformance suite, on test samples with an exact reference.
    let samples = 4;
    let data = problem.test.data().subcols(0, samples).to_owned();
    let mut reference = Mat::zeros(config.n, samples);
    for j in 0..samples {
        let (x, _) = analysis_l1_exact(problem.theta0.as_ref(), problem.a.as_ref(), data.col(j).as_mat())
            .ok_or_else(|| Error::Numerical {
                what: "exact reference solution".into(),
                reason: "no basic solution found".into(),
            })?;
        reference.col_mut(j).copy_from(x.col(0));
    }
    let a = problem.a.clone();
    let feasibility = move |x: MatRef<'_, f64>, d: MatRef<'_, f64>| -> Vec<f64> {
        let residual = &a * x - d;
        (0..x.ncols()).map(|j| residual.col(j).norm_l2()).collect()
    };
    let case = Case::new(
        "sparse recovery, initial Θ",
        data.as_ref(),
        reference.as_ref(),
        &feasibility,
    );
    let model32 = Averaged::new(build_model::<f32>(&problem.theta0, &problem.a, steps)?, 0.8)?;
    let tolerances = Tolerances {
        solution_f64: 1e-5,
        ..Tolerances::default()
    };
    let report = conformance::run(build(&problem.theta0)?, model32, &case, &tolerances)?;
    println!("{report}");

    // 2. Training through the new scheme, with no more code.
    let forward = ForwardOptions::new(2_000, 1e-6);
    let mut layer = OptLayer::new(build(&problem.theta0)?, forward.clone())?;
    let (before, _) = evaluate(&layer, &problem.test, 100, &forward)?;
    let optimizer = Adam::new(
        AdamConfig {
            learning_rate: 1e-2,
            ..AdamConfig::default()
        },
        &layer,
    )?;
    let train = TrainConfig {
        epochs: 8,
        batch_size: 50,
        seed: 1,
        forward: forward.clone(),
        eval_forward: forward.clone(),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(train, optimizer)?;
    trainer.fit(&mut layer, &problem.train, Some(&problem.test), |epoch| {
        println!("epoch {:>2}: train MSE {:.4e}", epoch.epoch, epoch.train_mse);
        ControlFlow::Continue(())
    })?;
    let (after, _) = evaluate(&layer, &problem.test, 100, &forward)?;
    println!("test MSE: initial Θ {before:.4e}, trained Θ {after:.4e}");
    if !report.passed() {
        return Err(Error::Numerical {
            what: "conformance suite".into(),
            reason: format!("{} checks failed", report.failures().len()),
        });
    }
    Ok(())
}
