//! Training and evaluation loops.

use std::ops::ControlFlow;
use std::time::Instant;

use faer::{Mat, MatMut, MatRef};
use optlayer_core::{
    Error, ForwardOptions, GradientMode, Gradients, OptLayer, Result, SampleReport, Scalar, Splitting,
    Status, mse, mse_loss,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::{Adam, Dataset};

/// Settings of a training run.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Number of passes over the training set.
    pub epochs: usize,
    /// Samples per mini-batch; the last batch of an epoch may be smaller.
    pub batch_size: usize,
    /// Seed of the mini-batch shuffling.
    pub seed: u64,
    /// Forward settings while training.
    pub forward: ForwardOptions,
    /// Forward settings of the per-epoch test evaluation.
    pub eval_forward: ForwardOptions,
    /// The gradient mode; JFB by default.
    pub gradient: GradientMode,
    /// Whether to estimate the spectral radius of `∂T/∂z` at each training step, and
    /// what to do when it is not below 1.
    pub contraction: Option<ContractionCheck>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 100,
            seed: 0,
            forward: ForwardOptions::default(),
            eval_forward: ForwardOptions::default(),
            gradient: GradientMode::Jfb,
            contraction: None,
        }
    }
}

/// A contraction estimate at every training step (see
/// [`OptLayer::contraction_estimate`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ContractionCheck {
    /// Power iterations per estimate; each costs about one backward step.
    pub iters: usize,
    /// The gradient mode for batches whose largest estimate is 1 or more,
    /// where JFB's descent guarantee does not hold; `None` keeps the
    /// configured mode.
    pub fallback: Option<GradientMode>,
}

impl TrainConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the setting.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::InvalidParameter {
                name: "batch size".into(),
                value: 0.0,
                requirement: "must be at least 1".into(),
            });
        }
        self.forward.validate()?;
        self.eval_forward.validate()?;
        self.gradient.validate()?;
        if let Some(check) = &self.contraction {
            if check.iters < 2 {
                return Err(Error::InvalidParameter {
                    name: "contraction iterations".into(),
                    value: check.iters as f64,
                    requirement: "must be at least 2".into(),
                });
            }
            if let Some(fallback) = &check.fallback {
                fallback.validate()?;
            }
        }
        Ok(())
    }
}

/// Statistics of one training epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    /// Epoch number, starting at 1.
    pub epoch: usize,
    /// Mean squared error per entry over the epoch's batches, each measured
    /// before that batch's update. The gradient mode sets the point of the
    /// measurement: the JFB output `primal(T(z*))` by default (see
    /// [`GradientMode`](optlayer_core::GradientMode)).
    pub train_mse: f64,
    /// Mean squared error per entry on the test set after the epoch, when a
    /// test set was given.
    pub test_mse: Option<f64>,
    /// Wall time of the epoch including the test evaluation, in seconds.
    pub seconds: f64,
    /// Mean forward iterations per training sample.
    pub mean_iterations: f64,
    /// Share of training samples whose forward pass converged.
    pub converged_fraction: f64,
    /// Largest contraction estimate of the epoch, when estimated.
    pub contraction_max: Option<f64>,
    /// Mean over batches of the largest contraction estimate, when estimated.
    pub contraction_mean: Option<f64>,
    /// Batches whose contraction estimate triggered the fallback mode.
    pub fallbacks: usize,
    /// Fallbacks whose adjoint solve failed, so that the configured mode
    /// gave the gradient instead.
    pub fallback_failures: usize,
}

/// The forward outputs for a set of samples.
#[derive(Clone, Debug)]
pub struct Prediction<T: Scalar> {
    /// The primal outputs, `primal_dim x N`.
    pub x: Mat<T>,
    /// One report per sample.
    pub samples: Vec<SampleReport<T>>,
}

impl<T: Scalar> Prediction<T> {
    /// Returns the mean number of iterations.
    pub fn mean_iterations(&self) -> f64 {
        self.samples.iter().map(|s| s.iterations as f64).sum::<f64>() / self.samples.len().max(1) as f64
    }

    /// Returns the number of samples with the given status.
    pub fn count(&self, status: Status) -> usize {
        self.samples.iter().filter(|s| s.status == status).count()
    }
}

/// Runs the forward pass on all columns of `data` in batches of `batch_size`.
///
/// # Errors
/// When `batch_size` is zero, `options` is invalid, or the layer rejects the
/// data (wrong row count, no columns, a non-finite entry).
pub fn predict<T: Scalar, Alg: Splitting<Real = T>>(
    layer: &OptLayer<Alg>,
    data: MatRef<'_, T>,
    batch_size: usize,
    options: &ForwardOptions,
) -> Result<Prediction<T>> {
    if batch_size == 0 {
        return Err(Error::InvalidParameter {
            name: "batch size".into(),
            value: 0.0,
            requirement: "must be at least 1".into(),
        });
    }
    options.validate()?;
    optlayer_core::validate::check_rows(
        "data",
        data,
        layer.splitting().data_dim(),
        "the data dimension of the layer",
    )?;
    optlayer_core::validate::check_nonempty("data", data)?;
    let total = data.ncols();
    let mut x = Mat::zeros(layer.splitting().primal_dim(), total);
    let mut samples = Vec::with_capacity(total);
    let mut start = 0;
    while start < total {
        let len = batch_size.min(total - start);
        let result = layer.forward_with(data.subcols(start, len), options)?;
        x.as_mut().subcols_mut(start, len).copy_from(&result.x);
        samples.extend(result.samples);
        start += len;
    }
    Ok(Prediction { x, samples })
}

/// Returns the mean squared error per entry of the layer on `dataset`, with the predictions.
///
/// # Errors
/// As [`predict`], and when the targets do not have `primal_dim` rows.
pub fn evaluate<T: Scalar, Alg: Splitting<Real = T>>(
    layer: &OptLayer<Alg>,
    dataset: &Dataset<T>,
    batch_size: usize,
    options: &ForwardOptions,
) -> Result<(f64, Prediction<T>)> {
    check_dataset(layer, dataset)?;
    let prediction = predict(layer, dataset.data(), batch_size, options)?;
    let error = mse(prediction.x.as_ref(), dataset.targets()).to_f64_lossless();
    Ok((error, prediction))
}

/// Checks that a dataset's data and targets have the layer's dimensions.
fn check_dataset<T: Scalar, Alg: Splitting<Real = T>>(
    layer: &OptLayer<Alg>,
    dataset: &Dataset<T>,
) -> Result<()> {
    optlayer_core::validate::check_rows(
        "dataset data",
        dataset.data(),
        layer.splitting().data_dim(),
        "the data dimension of the layer",
    )?;
    optlayer_core::validate::check_rows(
        "dataset targets",
        dataset.targets(),
        layer.splitting().primal_dim(),
        "the primal dimension of the layer",
    )
}

/// Trains a layer with the mean squared error loss and an [`Adam`]
/// optimizer on shuffled mini-batches, with gradients of the configured
/// [`GradientMode`] (Jacobian-free backpropagation by default).
///
/// The trainer owns the shuffling generator and the epoch counter, so calling
/// [`run_epoch`](Self::run_epoch) repeatedly continues one run.
pub struct Trainer<T: Scalar> {
    config: TrainConfig,
    optimizer: Adam<T>,
    rng: ChaCha8Rng,
    epoch: usize,
}

impl<T: Scalar> Trainer<T> {
    /// Creates a trainer.
    ///
    /// # Errors
    /// When `config` is invalid.
    pub fn new(config: TrainConfig, optimizer: Adam<T>) -> Result<Self> {
        config.validate()?;
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Ok(Self {
            config,
            optimizer,
            rng,
            epoch: 0,
        })
    }

    /// Returns the settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Returns the optimizer.
    pub fn optimizer(&self) -> &Adam<T> {
        &self.optimizer
    }

    /// Returns the number of completed epochs.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Runs one epoch over `train`, then evaluates on `test` if given.
    ///
    /// # Errors
    /// When the datasets do not fit the layer, or a forward pass, gradient or
    /// update fails (for example on a non-finite gradient).
    pub fn run_epoch<Alg: Splitting<Real = T>>(
        &mut self,
        layer: &mut OptLayer<Alg>,
        train: &Dataset<T>,
        test: Option<&Dataset<T>>,
    ) -> Result<EpochReport> {
        check_dataset(layer, train)?;
        // Memory limits of the gradient modes are checked before any work.
        let largest_batch = self.config.batch_size.min(train.len());
        let modes = std::iter::once(&self.config.gradient).chain(
            self.config
                .contraction
                .as_ref()
                .and_then(|check| check.fallback.as_ref()),
        );
        for mode in modes {
            mode.check_memory(
                layer.splitting().state_dim(),
                largest_batch,
                self.config.forward.max_iters,
                std::mem::size_of::<T>(),
            )?;
        }
        if let Some(test) = test {
            check_dataset(layer, test)?;
        }
        let started = Instant::now();
        let splitting = layer.splitting();
        let batch_size = self.config.batch_size.min(train.len());
        let mut data = Mat::<T>::zeros(splitting.data_dim(), batch_size);
        let mut targets = Mat::<T>::zeros(splitting.primal_dim(), batch_size);
        let mut grads = Gradients::zeros_for(layer);

        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut self.rng);

        let mut loss_sum = 0.0;
        let mut iteration_sum = 0usize;
        let mut converged = 0usize;
        let mut contraction: Vec<f64> = Vec::new();
        let mut fallbacks = 0usize;
        let mut fallback_failures = 0usize;
        for (batch_index, indices) in order.chunks(batch_size).enumerate() {
            let len = indices.len();
            train.gather(indices, data.as_mut(), targets.as_mut());
            let data_batch = data.as_ref().subcols(0, len);
            let target_batch = targets.as_ref().subcols(0, len);

            let forward = layer.forward_with(data_batch, &self.config.forward)?;
            iteration_sum += forward.samples.iter().map(|s| s.iterations).sum::<usize>();
            converged += forward.converged_count();

            let mut fallback = None;
            if let Some(check) = &self.config.contraction {
                let estimate =
                    layer.contraction_estimate(&forward, data_batch, check.iters, batch_index as u64)?;
                contraction.push(estimate.max);
                // NaN counts as "not below 1".
                if estimate.max.is_nan() || estimate.max >= 1.0 {
                    fallback = check.fallback.as_ref();
                }
            }

            grads.fill_zero();
            let mut loss = |x: MatRef<'_, T>, grad: MatMut<'_, T>| mse_loss(x, target_batch, grad);
            let mut attempt = None;
            if let Some(mode) = fallback {
                fallbacks += 1;
                match layer.gradient(mode, &forward, data_batch, &mut loss, &mut grads) {
                    Ok(output) => attempt = Some(output),
                    // The fallback (typically implicit) can fail where the
                    // contraction estimate is high; the configured mode then
                    // gives the gradient, and the failure is counted.
                    Err(Error::AdjointSolveFailed { .. } | Error::ForwardNotConverged { .. }) => {
                        fallback_failures += 1
                    }
                    Err(error) => return Err(error),
                }
            }
            let output = match attempt {
                Some(output) => output,
                None => layer.gradient(&self.config.gradient, &forward, data_batch, &mut loss, &mut grads)?,
            };
            loss_sum += output.loss.to_f64_lossless() * len as f64;
            self.optimizer.step(layer, &grads)?;
        }

        let test_mse = match test {
            Some(test) => Some(evaluate(layer, test, self.config.batch_size, &self.config.eval_forward)?.0),
            None => None,
        };
        self.epoch += 1;
        Ok(EpochReport {
            epoch: self.epoch,
            train_mse: loss_sum / train.len() as f64,
            test_mse,
            seconds: started.elapsed().as_secs_f64(),
            mean_iterations: iteration_sum as f64 / train.len() as f64,
            converged_fraction: converged as f64 / train.len() as f64,
            contraction_max: contraction.iter().copied().reduce(f64::max),
            contraction_mean: (!contraction.is_empty())
                .then(|| contraction.iter().sum::<f64>() / contraction.len() as f64),
            fallbacks,
            fallback_failures,
        })
    }

    /// Runs the remaining epochs of the configured count, calling `on_epoch`
    /// after each; training stops early when it returns `ControlFlow::Break`.
    ///
    /// # Errors
    /// As [`run_epoch`](Self::run_epoch).
    pub fn fit<Alg: Splitting<Real = T>>(
        &mut self,
        layer: &mut OptLayer<Alg>,
        train: &Dataset<T>,
        test: Option<&Dataset<T>>,
        mut on_epoch: impl FnMut(&EpochReport) -> ControlFlow<()>,
    ) -> Result<Vec<EpochReport>> {
        let mut reports = Vec::new();
        while self.epoch < self.config.epochs {
            let report = self.run_epoch(layer, train, test)?;
            let flow = on_epoch(&report);
            reports.push(report);
            if flow.is_break() {
                break;
            }
        }
        Ok(reports)
    }
}
