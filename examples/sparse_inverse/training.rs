//! Training with checkpoints: the epoch loop with its progress bar, Ctrl-C,
//! the checkpoint folder and its settings and epoch files, and resuming.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use optlayer::splittings::LinearizedAdmm;
use optlayer::train::{Adam, Checkpoint, Dataset, EpochOutcome, Trainer, atomic};
use optlayer::{Error, OptLayer, Scalar};

use crate::cli::{SETTINGS_FILE, Settings};
use crate::progress::Progress;
use crate::report::EpochEntry;

/// The file in the checkpoint folder with the epochs trained so far.
pub const EPOCHS_FILE: &str = "epochs.json";

/// Everything about training that the report needs.
pub struct Training {
    pub epochs: Vec<EpochEntry>,
    pub resumed_at: Option<usize>,
}

/// Trains Θ with a checkpoint after every epoch, or continues the run saved
/// in `resume`. Returns `None` when Ctrl-C stopped training, after saving.
#[allow(clippy::too_many_arguments)]
pub fn train_model<T: Scalar>(
    layer: &mut OptLayer<LinearizedAdmm<T>>,
    train: &Dataset<T>,
    test: &Dataset<T>,
    settings: &Settings,
    resume: Option<&Path>,
    checkpoint_dir: &Path,
    progress: &Progress,
    interrupted: &AtomicBool,
) -> Result<Option<Training>, Error> {
    let config = settings.train_config();
    let (mut trainer, mut epochs, resumed_at) = match resume {
        Some(dir) => {
            let checkpoint = Checkpoint::<T>::load(dir)?;
            let done = checkpoint.epoch();
            let position = match checkpoint.in_progress() {
                Some((epoch, batches)) => format!(", in epoch {epoch} after {batches} batches"),
                None => String::new(),
            };
            let epochs_path = dir.join(EPOCHS_FILE);
            let mut epochs = read_epochs(&epochs_path, done)?;
            if epochs.len() < done {
                return Err(Error::InvalidFile {
                    path: epochs_path,
                    reason: format!(
                        "lists {} epochs, but the checkpoint has {done}; the folder mixes two runs",
                        epochs.len()
                    ),
                });
            }
            epochs.truncate(done);
            let trainer = Trainer::resume(checkpoint, config, layer, train.len())?;
            log::info!(
                "resuming the run in {} after epoch {done}{position}",
                dir.display()
            );
            (trainer, epochs, Some(done))
        }
        None => {
            prepare_checkpoint_dir(checkpoint_dir, settings)?;
            let optimizer = Adam::new(settings.adam_config(), &*layer)?;
            (Trainer::new(config, optimizer)?, Vec::new(), None)
        }
    };
    let batches = train.len().div_ceil(settings.batch_size.min(train.len()));
    let done = trainer.in_progress().map_or(0, |(_, batches)| batches);
    let total = settings.epochs.saturating_sub(trainer.epoch()) * batches;
    let bar = progress.bar(total.saturating_sub(done) as u64, "training");
    while trainer.epoch() < settings.epochs {
        let outcome = trainer.run_epoch_with(layer, train, Some(test), |p| {
            bar.set_message(format!(
                "epoch {}/{} batch {}/{} loss {:.3e}",
                p.epoch, settings.epochs, p.batch, p.batches, p.mean_loss
            ));
            bar.inc(1);
            if interrupted.load(Ordering::SeqCst) {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })?;
        match outcome {
            EpochOutcome::Completed(report) => {
                // The epoch list is written first: a kill between the two writes
                // leaves one epoch more in the list than in the checkpoint, which
                // a resumed run drops.
                epochs.push(EpochEntry::from(&report));
                write_epochs(&checkpoint_dir.join(EPOCHS_FILE), &epochs)?;
                trainer.checkpoint(layer).save(checkpoint_dir)?;
                log::debug!(
                    "saved the checkpoint of epoch {} in {}",
                    trainer.epoch(),
                    checkpoint_dir.display()
                );
                let contraction = match report.contraction_max {
                    Some(max) => format!(
                        "  spectral radius ≈ {max:.3} (largest estimate; {} fallbacks, {} failed)",
                        report.fallbacks, report.fallback_failures
                    ),
                    None => String::new(),
                };
                bar.suspend(|| {
                    log::info!(
                        "epoch {:>3}  train MSE {:.4e}  test MSE {:.4e}  iterations {:>6.1}  {:.1} s{contraction}",
                        report.epoch,
                        report.train_mse,
                        report.test_mse.unwrap_or(f64::NAN),
                        report.mean_iterations,
                        report.seconds
                    )
                });
                if interrupted.load(Ordering::SeqCst) && trainer.epoch() < settings.epochs {
                    bar.abandon();
                    log::warn!(
                        "interrupted after epoch {}; the checkpoint is saved: continue with --resume {}",
                        report.epoch,
                        checkpoint_dir.display()
                    );
                    return Ok(None);
                }
            }
            EpochOutcome::Interrupted { epoch, batches_done } => {
                trainer.checkpoint(layer).save(checkpoint_dir)?;
                bar.abandon();
                log::warn!(
                    "interrupted in epoch {epoch} after {batches_done} batches; the checkpoint is saved: \
                     continue with --resume {}",
                    checkpoint_dir.display()
                );
                return Ok(None);
            }
        }
    }
    bar.finish_and_clear();
    Ok(Some(Training { epochs, resumed_at }))
}

/// Rejects a new training run into a folder whose checkpoint belongs to a
/// run that has not finished, so that starting over never deletes it.
pub fn check_unfinished_run(dir: &Path) -> Result<(), Error> {
    let saved: Option<Settings> = std::fs::read_to_string(dir.join(SETTINGS_FILE))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let Some(saved) = saved else {
        // Without readable settings the checkpoint cannot be resumed.
        return Ok(());
    };
    if !Checkpoint::<f64>::exists(dir) {
        return Ok(());
    }
    let done = read_epochs(&dir.join(EPOCHS_FILE), 0).map_or(0, |epochs| epochs.len());
    if done < saved.epochs {
        return Err(Error::InvalidValue {
            name: "output folder".into(),
            value: dir.display().to_string(),
            requirement: format!(
                "holds the checkpoint of an unfinished run ({done} of {} epochs); continue it with \
                 --resume {}, or choose another --out, or delete the checkpoint folder to start over",
                saved.epochs,
                dir.display()
            ),
        });
    }
    Ok(())
}

/// Empties the checkpoint folder of a new run and writes its settings.
pub fn prepare_checkpoint_dir(dir: &Path, settings: &Settings) -> Result<(), Error> {
    if dir.join(SETTINGS_FILE).exists() || Checkpoint::<f64>::exists(dir) {
        log::warn!("replacing the checkpoint of an earlier run in {}", dir.display());
        std::fs::remove_dir_all(dir).map_err(|source| Error::Io {
            action: "failed to remove the earlier checkpoint folder".into(),
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        action: "failed to create the checkpoint folder".into(),
        path: dir.to_path_buf(),
        source,
    })?;
    write_json(&dir.join(SETTINGS_FILE), settings)?;
    // A run stopped in its first epoch has a checkpoint but no completed epoch,
    // and its resume reads this empty list.
    write_epochs(&dir.join(EPOCHS_FILE), &[])
}

pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), Error> {
    let json = serde_json::to_string_pretty(value).map_err(|e| Error::Io {
        action: "failed to serialize".into(),
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    atomic::write_atomic(path, json.as_bytes())
}

pub fn write_epochs(path: &Path, epochs: &[EpochEntry]) -> Result<(), Error> {
    write_json(path, &epochs)
}

/// Reads the epochs completed so far. A missing file is an empty list when the
/// checkpoint has no completed epoch.
pub fn read_epochs(path: &Path, done: usize) -> Result<Vec<EpochEntry>, Error> {
    if done == 0 && !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        action: "failed to read the epochs of the run to resume".into(),
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::InvalidFile {
        path: path.to_path_buf(),
        reason: format!("{e}; expected the list of epochs that a run writes beside its checkpoint"),
    })
}
