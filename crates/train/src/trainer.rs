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

/// The state of one batch, passed to the per-batch callback of
/// [`Trainer::run_epoch_with`] and [`Trainer::fit_with`].
#[derive(Clone, Debug, PartialEq)]
pub struct BatchProgress {
    /// The epoch in progress, starting at 1.
    pub epoch: usize,
    /// The batch just finished, starting at 1.
    pub batch: usize,
    /// Batches in the epoch.
    pub batches: usize,
    /// Samples of the epoch processed so far, this batch included.
    pub samples_done: usize,
    /// Samples in the epoch.
    pub samples: usize,
    /// Mean squared error per entry of this batch, measured before its update.
    pub batch_loss: f64,
    /// Mean squared error per entry over the epoch's samples so far.
    pub mean_loss: f64,
}

/// The result of [`Trainer::run_epoch_with`].
#[derive(Clone, Debug, PartialEq)]
pub enum EpochOutcome {
    /// The epoch ran to its end, test evaluation included.
    Completed(EpochReport),
    /// The per-batch callback stopped the epoch before its last batch. The
    /// trainer keeps the partial epoch, so the next call continues it.
    Interrupted {
        /// The epoch in progress, starting at 1.
        epoch: usize,
        /// Batches of that epoch done.
        batches_done: usize,
    },
}

/// The result of [`Trainer::fit_with`].
#[derive(Clone, Debug, PartialEq)]
pub struct FitOutcome {
    /// Reports of the epochs completed by this call.
    pub reports: Vec<EpochReport>,
    /// Whether a callback stopped training before the configured number of
    /// epochs was completed.
    pub interrupted: bool,
}

/// An epoch in progress: its shuffled sample order, the batches done and the
/// accumulators of its report.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct EpochProgress {
    /// The epoch, starting at 1.
    pub(crate) epoch: usize,
    /// The shuffled sample indices; batch `k` is `order[k * batch_size..]`.
    pub(crate) order: Vec<usize>,
    pub(crate) batches_done: usize,
    pub(crate) samples_done: usize,
    /// Sum over the batches done of the batch loss times the batch length.
    pub(crate) loss_sum: f64,
    pub(crate) iteration_sum: usize,
    pub(crate) converged: usize,
    /// The largest contraction estimate of each batch done, when estimated.
    pub(crate) contraction: Vec<f64>,
    pub(crate) fallbacks: usize,
    pub(crate) fallback_failures: usize,
    /// Wall time spent on the epoch by earlier calls, in seconds.
    pub(crate) seconds: f64,
}

impl EpochProgress {
    fn new(epoch: usize, order: Vec<usize>) -> Self {
        Self {
            epoch,
            order,
            batches_done: 0,
            samples_done: 0,
            loss_sum: 0.0,
            iteration_sum: 0,
            converged: 0,
            contraction: Vec::new(),
            fallbacks: 0,
            fallback_failures: 0,
            seconds: 0.0,
        }
    }
}

/// The statistics of one training batch, added to the epoch's accumulators
/// only after the batch's update succeeded.
struct BatchStats {
    len: usize,
    loss: f64,
    iterations: usize,
    converged: usize,
    contraction: Option<f64>,
    fallback: bool,
    fallback_failed: bool,
}

/// Trains a layer with the mean squared error loss and an [`Adam`]
/// optimizer on shuffled mini-batches, with gradients of the configured
/// [`GradientMode`] (Jacobian-free backpropagation by default).
///
/// The trainer owns the shuffling generator, the epoch counter and a partly
/// done epoch, so calling [`run_epoch`](Self::run_epoch) repeatedly continues
/// one run. [`checkpoint`](Self::checkpoint) captures all of it together with
/// the layer's parameters, and [`resume`](Self::resume) continues the run
/// from a checkpoint.
pub struct Trainer<T: Scalar> {
    pub(crate) config: TrainConfig,
    pub(crate) optimizer: Adam<T>,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) epoch: usize,
    pub(crate) progress: Option<EpochProgress>,
    /// The training set length of the last epoch run, if any.
    pub(crate) train_len: Option<usize>,
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
            progress: None,
            train_len: None,
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

    /// Returns the epoch in progress (starting at 1) and its batches done,
    /// when an epoch was started but not completed.
    pub fn in_progress(&self) -> Option<(usize, usize)> {
        self.progress
            .as_ref()
            .map(|progress| (progress.epoch, progress.batches_done))
    }

    /// Runs one epoch over `train`, then evaluates on `test` if given. When
    /// an epoch is in progress, it continues that epoch from its next batch.
    ///
    /// # Errors
    /// As [`run_epoch_with`](Self::run_epoch_with).
    pub fn run_epoch<Alg: Splitting<Real = T>>(
        &mut self,
        layer: &mut OptLayer<Alg>,
        train: &Dataset<T>,
        test: Option<&Dataset<T>>,
    ) -> Result<EpochReport> {
        let (outcome, _) = self.run_epoch_inner(layer, train, test, &mut |_| ControlFlow::Continue(()))?;
        match outcome {
            EpochOutcome::Completed(report) => Ok(report),
            EpochOutcome::Interrupted { .. } => {
                unreachable!("an epoch whose batch callback never breaks runs to its end")
            }
        }
    }

    /// Runs one epoch like [`run_epoch`](Self::run_epoch), calling `on_batch`
    /// after every batch.
    ///
    /// When `on_batch` returns `ControlFlow::Break` and batches remain, the
    /// trainer stops there and keeps the partial epoch: the shuffled order,
    /// the batches done and the report's accumulators.
    /// [`checkpoint`](Self::checkpoint) then captures it, and the next
    /// `run_epoch` or `run_epoch_with` call continues the epoch from the next
    /// batch. A `Break` after the last batch does not interrupt: the epoch
    /// completes, test evaluation included.
    ///
    /// # Errors
    /// When the datasets do not fit the layer, `train` has another length
    /// than the epoch in progress, or a forward pass, gradient or update
    /// fails (for example on a non-finite gradient). The batches done before
    /// the error stay applied and the epoch stays in progress, so the next
    /// call retries the failed batch.
    pub fn run_epoch_with<Alg: Splitting<Real = T>>(
        &mut self,
        layer: &mut OptLayer<Alg>,
        train: &Dataset<T>,
        test: Option<&Dataset<T>>,
        mut on_batch: impl FnMut(&BatchProgress) -> ControlFlow<()>,
    ) -> Result<EpochOutcome> {
        Ok(self.run_epoch_inner(layer, train, test, &mut on_batch)?.0)
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
        on_epoch: impl FnMut(&EpochReport) -> ControlFlow<()>,
    ) -> Result<Vec<EpochReport>> {
        let outcome = self.fit_with(layer, train, test, |_| ControlFlow::Continue(()), on_epoch)?;
        Ok(outcome.reports)
    }

    /// Runs the remaining epochs of the configured count, calling `on_batch`
    /// after every batch and `on_epoch` after every epoch.
    ///
    /// A `Break` from either callback stops training. From `on_batch` before
    /// the epoch's last batch, it leaves the partial epoch in the trainer (see
    /// [`run_epoch_with`](Self::run_epoch_with)). From `on_batch` after the
    /// last batch, or from `on_epoch`, it stops training once the epoch is
    /// complete and `on_epoch` has seen its report.
    ///
    /// # Errors
    /// As [`run_epoch_with`](Self::run_epoch_with).
    pub fn fit_with<Alg: Splitting<Real = T>>(
        &mut self,
        layer: &mut OptLayer<Alg>,
        train: &Dataset<T>,
        test: Option<&Dataset<T>>,
        mut on_batch: impl FnMut(&BatchProgress) -> ControlFlow<()>,
        mut on_epoch: impl FnMut(&EpochReport) -> ControlFlow<()>,
    ) -> Result<FitOutcome> {
        let mut reports = Vec::new();
        while self.epoch < self.config.epochs {
            let (outcome, batch_break) = self.run_epoch_inner(layer, train, test, &mut on_batch)?;
            let report = match outcome {
                EpochOutcome::Completed(report) => report,
                EpochOutcome::Interrupted { .. } => {
                    return Ok(FitOutcome {
                        reports,
                        interrupted: true,
                    });
                }
            };
            let epoch_break = on_epoch(&report).is_break();
            reports.push(report);
            if batch_break || epoch_break {
                return Ok(FitOutcome {
                    reports,
                    interrupted: self.epoch < self.config.epochs,
                });
            }
        }
        Ok(FitOutcome {
            reports,
            interrupted: false,
        })
    }

    /// Runs or continues one epoch and returns its outcome with whether
    /// `on_batch` asked to stop after the last batch.
    fn run_epoch_inner<Alg: Splitting<Real = T>>(
        &mut self,
        layer: &mut OptLayer<Alg>,
        train: &Dataset<T>,
        test: Option<&Dataset<T>>,
        on_batch: &mut dyn FnMut(&BatchProgress) -> ControlFlow<()>,
    ) -> Result<(EpochOutcome, bool)> {
        self.check_epoch_inputs(layer, train, test)?;
        let started = Instant::now();
        let mut progress = match self.progress.take() {
            Some(progress) => progress,
            None => {
                let mut order: Vec<usize> = (0..train.len()).collect();
                order.shuffle(&mut self.rng);
                EpochProgress::new(self.epoch + 1, order)
            }
        };
        self.train_len = Some(train.len());

        let batch_size = self.config.batch_size.min(train.len());
        let batches = train.len().div_ceil(batch_size);
        let mut stop_after_epoch = false;
        let splitting = layer.splitting();
        let mut data = Mat::<T>::zeros(splitting.data_dim(), batch_size);
        let mut targets = Mat::<T>::zeros(splitting.primal_dim(), batch_size);
        let mut grads = Gradients::zeros_for(layer);
        while progress.batches_done < batches {
            let start = progress.batches_done * batch_size;
            let indices = &progress.order[start..(start + batch_size).min(train.len())];
            train.gather(indices, data.as_mut(), targets.as_mut());
            let len = indices.len();
            let batch = self.train_batch(
                layer,
                data.as_ref().subcols(0, len),
                targets.as_ref().subcols(0, len),
                &mut grads,
                progress.batches_done,
            );
            let stats = match batch {
                Ok(stats) => stats,
                Err(error) => {
                    progress.seconds += started.elapsed().as_secs_f64();
                    self.progress = Some(progress);
                    return Err(error);
                }
            };
            progress.batches_done += 1;
            progress.samples_done += stats.len;
            progress.loss_sum += stats.loss * stats.len as f64;
            // The counters may come from a checkpoint file, so they saturate
            // instead of wrapping around on values no run reaches.
            progress.iteration_sum = progress.iteration_sum.saturating_add(stats.iterations);
            progress.converged = progress.converged.saturating_add(stats.converged);
            progress.contraction.extend(stats.contraction);
            progress.fallbacks = progress.fallbacks.saturating_add(usize::from(stats.fallback));
            progress.fallback_failures = progress
                .fallback_failures
                .saturating_add(usize::from(stats.fallback_failed));

            let info = BatchProgress {
                epoch: progress.epoch,
                batch: progress.batches_done,
                batches,
                samples_done: progress.samples_done,
                samples: train.len(),
                batch_loss: stats.loss,
                mean_loss: progress.loss_sum / progress.samples_done as f64,
            };
            if on_batch(&info).is_break() {
                if progress.batches_done < batches {
                    progress.seconds += started.elapsed().as_secs_f64();
                    let outcome = EpochOutcome::Interrupted {
                        epoch: progress.epoch,
                        batches_done: progress.batches_done,
                    };
                    self.progress = Some(progress);
                    return Ok((outcome, false));
                }
                stop_after_epoch = true;
            }
        }

        let test_mse = match test {
            Some(test) => match evaluate(layer, test, self.config.batch_size, &self.config.eval_forward) {
                Ok((error, _)) => Some(error),
                Err(error) => {
                    // Every batch is done, so the next call only evaluates.
                    progress.seconds += started.elapsed().as_secs_f64();
                    self.progress = Some(progress);
                    return Err(error);
                }
            },
            None => None,
        };
        self.epoch = progress.epoch;
        let samples = train.len() as f64;
        let contraction = &progress.contraction;
        let report = EpochReport {
            epoch: progress.epoch,
            train_mse: progress.loss_sum / samples,
            test_mse,
            seconds: progress.seconds + started.elapsed().as_secs_f64(),
            mean_iterations: progress.iteration_sum as f64 / samples,
            converged_fraction: progress.converged as f64 / samples,
            contraction_max: contraction.iter().copied().reduce(f64::max),
            contraction_mean: (!contraction.is_empty())
                .then(|| contraction.iter().sum::<f64>() / contraction.len() as f64),
            fallbacks: progress.fallbacks,
            fallback_failures: progress.fallback_failures,
        };
        Ok((EpochOutcome::Completed(report), stop_after_epoch))
    }

    /// Checks the datasets against the layer, the memory limits of the
    /// gradient modes, and the training set length of an epoch in progress.
    fn check_epoch_inputs<Alg: Splitting<Real = T>>(
        &self,
        layer: &OptLayer<Alg>,
        train: &Dataset<T>,
        test: Option<&Dataset<T>>,
    ) -> Result<()> {
        check_dataset(layer, train)?;
        let in_progress = self.progress.as_ref();
        if let Some(progress) = in_progress.filter(|progress| progress.order.len() != train.len()) {
            return Err(Error::InvalidValue {
                name: "training set length".into(),
                value: train.len().to_string(),
                requirement: format!(
                    "must be {}, the length of the training set of epoch {} in progress; \
                     pass the same training set to continue the epoch",
                    progress.order.len(),
                    progress.epoch
                ),
            });
        }
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
        Ok(())
    }

    /// Runs the forward pass, the gradient and the optimizer step on one
    /// batch. `batch_index` (from 0 within the epoch) seeds the contraction
    /// estimate.
    fn train_batch<Alg: Splitting<Real = T>>(
        &mut self,
        layer: &mut OptLayer<Alg>,
        data_batch: MatRef<'_, T>,
        target_batch: MatRef<'_, T>,
        grads: &mut Gradients<T>,
        batch_index: usize,
    ) -> Result<BatchStats> {
        let forward = layer.forward_with(data_batch, &self.config.forward)?;
        let mut stats = BatchStats {
            len: data_batch.ncols(),
            loss: 0.0,
            iterations: forward.samples.iter().map(|s| s.iterations).sum::<usize>(),
            converged: forward.converged_count(),
            contraction: None,
            fallback: false,
            fallback_failed: false,
        };

        let mut fallback = None;
        if let Some(check) = &self.config.contraction {
            let estimate =
                layer.contraction_estimate(&forward, data_batch, check.iters, batch_index as u64)?;
            stats.contraction = Some(estimate.max);
            // NaN counts as "not below 1".
            if estimate.max.is_nan() || estimate.max >= 1.0 {
                fallback = check.fallback.as_ref();
            }
        }

        grads.fill_zero();
        let mut loss = |x: MatRef<'_, T>, grad: MatMut<'_, T>| mse_loss(x, target_batch, grad);
        let mut attempt = None;
        if let Some(mode) = fallback {
            stats.fallback = true;
            match layer.gradient(mode, &forward, data_batch, &mut loss, grads) {
                Ok(output) => attempt = Some(output),
                // The fallback (typically implicit) can fail where the
                // contraction estimate is high; the configured mode then
                // gives the gradient, and the failure is counted.
                Err(Error::AdjointSolveFailed { .. } | Error::ForwardNotConverged { .. }) => {
                    stats.fallback_failed = true
                }
                Err(error) => return Err(error),
            }
        }
        let output = match attempt {
            Some(output) => output,
            None => layer.gradient(&self.config.gradient, &forward, data_batch, &mut loss, grads)?,
        };
        stats.loss = output.loss.to_f64_lossless();
        self.optimizer.step(layer, grads)?;
        Ok(stats)
    }
}
