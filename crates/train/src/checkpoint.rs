//! Checkpoints of a training run, and resuming a run from one.
//!
//! A checkpoint folder `DIR` contains a pointer file `DIR/checkpoint.txt`,
//! whose one line names a snapshot folder `DIR/snapshot-<epoch>-<batch>-<counter>`.
//! A snapshot contains
//!
//! - `state.txt`: the scalar state as `key value` lines in a fixed order,
//!   ending in `end`. The line `splitting <name>` after the dtype is absent
//!   in files written before the name was stored. The lines contain the
//!   format version, the dtype, the splitting's name and the epochs
//!   completed. Then come the seed, the batch size and the training set
//!   length, the ChaCha8 generator's seed, stream and word position, the Adam
//!   settings and step count, and the parameter names and shapes. The shapes of the
//!   warm-start state and the epoch in progress, with its sample order and
//!   accumulators, follow.
//! - `param-<i>.npy`, `adam-m-<i>.npy` and `adam-v-<i>.npy`: parameter `i`
//!   and its Adam first and second moments, in the order of `state.txt`.
//! - `warm-start-<i>.npy`: matrix `i` of the layer's warm-start state
//!   ([`Parameterized::warm_start_state`]), such as the vectors that
//!   warm-start power-iteration norm estimates.
//!
//! Floats in `state.txt` are written with Rust's `Display`, which prints the
//! shortest decimal that parses back to the same `f64`, so every value
//! round-trips exactly; integers are written in decimal.
//!
//! [`Checkpoint::save`] writes and syncs a complete new snapshot, then
//! replaces the pointer atomically ([`write_atomic`]), and only then removes
//! the older snapshots. A process killed at any instant therefore leaves
//! `DIR` loadable at the previous or at the new checkpoint, never a mix.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use faer::{Mat, MatRef};
use optlayer_core::{Error, OptLayer, Parameterized, Result, Scalar, Splitting, param_names};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::adam::{AdamConfig, AdamState};
use crate::atomic::write_atomic;
use crate::trainer::EpochProgress;
use crate::{Adam, TrainConfig, Trainer, npy};

/// Name of the pointer file inside a checkpoint folder.
const POINTER_FILE: &str = "checkpoint.txt";

/// Name of the state file inside a snapshot folder.
const STATE_FILE: &str = "state.txt";

/// Prefix of snapshot folder names.
const SNAPSHOT_PREFIX: &str = "snapshot-";

/// First line of a state file: the format and its version.
const FORMAT_LINE: &str = "optlayer-checkpoint 1";

/// Snapshot names tried by one save before it gives up.
const MAX_SNAPSHOT_ATTEMPTS: u64 = 1000;

/// The position of a ChaCha8 generator: its seed, stream and word position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RngState {
    pub(crate) seed: [u8; 32],
    pub(crate) stream: u64,
    pub(crate) word_pos: u128,
}

impl RngState {
    fn capture(rng: &ChaCha8Rng) -> Self {
        Self {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos(),
        }
    }

    fn restore(&self) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos);
        rng
    }
}

/// The complete state of a training run between two batches.
///
/// It contains the epochs completed, the epoch in progress if any, the
/// parameters by name, the Adam state, the position of the shuffling
/// generator, the seed, the batch size and the training set length.
///
/// [`Trainer::checkpoint`] takes one, [`save`](Self::save) and
/// [`load`](Self::load) store it, and [`Trainer::resume`] continues the run.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint<T: Scalar> {
    /// The [`Splitting::name`] of the layer, or `None` in files written
    /// before the name was stored.
    pub(crate) splitting: Option<String>,
    pub(crate) epoch: usize,
    pub(crate) seed: u64,
    pub(crate) batch_size: usize,
    pub(crate) train_len: Option<usize>,
    pub(crate) rng: RngState,
    /// Parameter names and values, in the order of the model they came from.
    pub(crate) params: Vec<(String, Mat<T>)>,
    /// The Adam state, its moments in the order of `params`.
    pub(crate) adam: AdamState<T>,
    /// The layer's [`Parameterized::warm_start_state`].
    pub(crate) warm_start: Vec<Mat<T>>,
    pub(crate) progress: Option<EpochProgress>,
}

impl<T: Scalar> Checkpoint<T> {
    /// Returns the [`Splitting::name`] of the layer the checkpoint was taken
    /// from, or `None` for a file saved before the name was stored.
    pub fn splitting(&self) -> Option<&str> {
        self.splitting.as_deref()
    }

    /// Returns the number of completed epochs.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Returns the epoch in progress (starting at 1) and its batches done,
    /// when the checkpoint was taken inside an epoch.
    pub fn in_progress(&self) -> Option<(usize, usize)> {
        self.progress
            .as_ref()
            .map(|progress| (progress.epoch, progress.batches_done))
    }

    /// Returns the value of the parameter called `name`.
    pub fn param(&self, name: &str) -> Option<MatRef<'_, T>> {
        self.params
            .iter()
            .find(|(param, _)| param == name)
            .map(|(_, value)| value.as_ref())
    }

    /// Returns the parameter names, in the order of the model they came from.
    pub fn param_names(&self) -> Vec<&str> {
        self.params.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// Returns the seed of the run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Returns the batch size of the run.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Returns the training set length, or `None` when no epoch had started.
    pub fn train_len(&self) -> Option<usize> {
        self.train_len
    }

    /// Returns the Adam state, its moments in the order of
    /// [`param_names`](Self::param_names).
    pub fn adam_state(&self) -> &AdamState<T> {
        &self.adam
    }

    /// Returns the layer's warm-start state
    /// ([`Parameterized::warm_start_state`]) at the time of the checkpoint.
    pub fn warm_start_state(&self) -> &[Mat<T>] {
        &self.warm_start
    }

    /// Returns whether `dir` contains a checkpoint pointer file, that is,
    /// whether [`save`](Self::save) has completed there at least once.
    pub fn exists(dir: &Path) -> bool {
        dir.join(POINTER_FILE).is_file()
    }

    /// Saves the checkpoint into the folder `dir`, creating it if needed.
    ///
    /// The save writes and syncs a new snapshot folder, then replaces the
    /// pointer file `dir/checkpoint.txt` atomically, then removes every other
    /// `snapshot-<epoch>-<batch>-<counter>` folder in `dir`. Other files and
    /// folders in `dir` stay. Two processes must not save into the same
    /// folder at once.
    ///
    /// # Errors
    /// [`Error::Io`] naming the path when a folder or file cannot be created,
    /// written or synced, and [`Error::InvalidValue`] when a parameter name
    /// contains a line break, which the state file cannot store. On error the
    /// pointer still names the previous snapshot.
    pub fn save(&self, dir: &Path) -> Result<()> {
        if let Some(name) = self.splitting.as_ref().filter(|name| name.contains(['\n', '\r'])) {
            return Err(Error::InvalidValue {
                name: "splitting name".into(),
                value: name.escape_debug().to_string(),
                requirement:
                    "must not contain a line break to be saved in a checkpoint; rename the splitting".into(),
            });
        }
        for (name, _) in &self.params {
            if name.contains(['\n', '\r']) {
                return Err(Error::InvalidValue {
                    name: "parameter name".into(),
                    value: name.escape_debug().to_string(),
                    requirement:
                        "must not contain a line break to be saved in a checkpoint; rename the parameter"
                            .into(),
                });
            }
        }
        fs::create_dir_all(dir)
            .map_err(|source| io_error("failed to create the checkpoint folder", dir, source))?;
        let (name, snapshot) = self.create_snapshot_dir(dir)?;
        if let Err(error) = self.write_snapshot(&snapshot) {
            let _ = fs::remove_dir_all(&snapshot);
            return Err(error);
        }
        write_atomic(&dir.join(POINTER_FILE), format!("{name}\n").as_bytes())?;
        remove_other_snapshots(dir, &name);
        Ok(())
    }

    /// Loads the checkpoint that the pointer file in `dir` names, checking
    /// every value.
    ///
    /// # Errors
    /// - [`Error::Io`] naming the path when `dir` or its pointer file is
    ///   missing (no checkpoint there), or a file cannot be read;
    /// - [`Error::InvalidValue`] when the checkpoint was saved with another
    ///   scalar type than `T`, naming both;
    /// - [`Error::InvalidFile`] naming the file, and for the state file the
    ///   line and the expected content, when a file is malformed, truncated
    ///   or inconsistent with the others;
    /// - [`Error::ShapeMismatch`] when an `.npy` file has another shape than
    ///   the state file lists.
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(io_error(
                "no checkpoint to load: the checkpoint folder is missing:",
                dir,
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
        let pointer = dir.join(POINTER_FILE);
        let text = fs::read_to_string(&pointer).map_err(|source| {
            io_error(
                "no checkpoint to load: failed to read the pointer file",
                &pointer,
                source,
            )
        })?;
        let name = text.trim_end_matches('\n');
        let valid_name = name.starts_with(SNAPSHOT_PREFIX)
            && !name.contains(['/', '\\', '\n', '\r'])
            && !name.contains("..");
        if !valid_name {
            return Err(Error::InvalidFile {
                path: pointer,
                reason: format!(
                    "line 1: expected the name of a snapshot folder ({SNAPSHOT_PREFIX}<epoch>-<batch>-<counter>), found '{}'",
                    name.escape_debug()
                ),
            });
        }
        let snapshot = dir.join(name);
        let state_path = snapshot.join(STATE_FILE);
        let state = fs::read_to_string(&state_path)
            .map_err(|source| io_error("failed to read the checkpoint state", &state_path, source))?;
        let parsed = parse_state::<T>(&state, &state_path)?;
        parsed.into_checkpoint(&snapshot)
    }

    /// Creates a new, empty snapshot folder and returns its name and path.
    fn create_snapshot_dir(&self, dir: &Path) -> Result<(String, PathBuf)> {
        let batches_done = self.progress.as_ref().map_or(0, |progress| progress.batches_done);
        let prefix = format!("{SNAPSHOT_PREFIX}{}-{batches_done}-", self.epoch);
        // Start above the largest counter in use, so a leftover folder of an
        // interrupted save is never reused.
        let mut counter = largest_snapshot_counter(dir).map_or(0, |largest| largest + 1);
        for _ in 0..MAX_SNAPSHOT_ATTEMPTS {
            let name = format!("{prefix}{counter}");
            let path = dir.join(&name);
            match fs::create_dir(&path) {
                Ok(()) => return Ok((name, path)),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => counter += 1,
                Err(source) => return Err(io_error("failed to create the snapshot folder", &path, source)),
            }
        }
        Err(io_error(
            "failed to create a snapshot folder: every name tried exists in",
            dir,
            io::Error::from(io::ErrorKind::AlreadyExists),
        ))
    }

    /// Writes the state file and the `.npy` files into `snapshot`, and syncs
    /// the folder.
    fn write_snapshot(&self, snapshot: &Path) -> Result<()> {
        for (index, (_, value)) in self.params.iter().enumerate() {
            npy::write_matrix(&snapshot.join(param_file(index)), value.as_ref())?;
            npy::write_matrix(
                &snapshot.join(first_moment_file(index)),
                self.adam.first_moment[index].as_ref(),
            )?;
            npy::write_matrix(
                &snapshot.join(second_moment_file(index)),
                self.adam.second_moment[index].as_ref(),
            )?;
        }
        for (index, value) in self.warm_start.iter().enumerate() {
            npy::write_matrix(&snapshot.join(warm_start_file(index)), value.as_ref())?;
        }
        write_atomic(&snapshot.join(STATE_FILE), self.format_state().as_bytes())?;
        sync_dir(snapshot)
    }

    /// Formats the state file.
    fn format_state(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        // Writing into a String cannot fail.
        let mut line = |text: String| {
            let _ = writeln!(out, "{text}");
        };
        line(FORMAT_LINE.into());
        line(format!("dtype {}", T::NPY_DESCR));
        if let Some(name) = &self.splitting {
            line(format!("splitting {name}"));
        }
        line(format!("epoch {}", self.epoch));
        line(format!("seed {}", self.seed));
        line(format!("batch_size {}", self.batch_size));
        line(match self.train_len {
            Some(len) => format!("train_len {len}"),
            None => "train_len none".into(),
        });
        let seed_hex: String = self.rng.seed.iter().map(|byte| format!("{byte:02x}")).collect();
        line(format!("rng_seed {seed_hex}"));
        line(format!("rng_stream {}", self.rng.stream));
        line(format!("rng_word_pos {}", self.rng.word_pos));
        let adam = &self.adam.config;
        line(format!("adam_learning_rate {}", adam.learning_rate));
        line(format!("adam_beta1 {}", adam.beta1));
        line(format!("adam_beta2 {}", adam.beta2));
        line(format!("adam_eps {}", adam.eps));
        line(format!("adam_weight_decay {}", adam.weight_decay));
        line(format!(
            "adam_decoupled_weight_decay {}",
            adam.decoupled_weight_decay
        ));
        line(format!("adam_steps {}", self.adam.steps));
        line(format!("params {}", self.params.len()));
        for (index, (name, value)) in self.params.iter().enumerate() {
            line(format!(
                "param {index} {} {} {name}",
                value.nrows(),
                value.ncols()
            ));
        }
        line(format!("warm_start {}", self.warm_start.len()));
        for (index, value) in self.warm_start.iter().enumerate() {
            line(format!(
                "warm_start_matrix {index} {} {}",
                value.nrows(),
                value.ncols()
            ));
        }
        match &self.progress {
            None => line("partial_epoch none".into()),
            Some(progress) => {
                line(format!("partial_epoch {}", progress.epoch));
                line(format!("batches_done {}", progress.batches_done));
                line(format!("samples_done {}", progress.samples_done));
                line(format!("loss_sum {}", progress.loss_sum));
                line(format!("iteration_sum {}", progress.iteration_sum));
                line(format!("converged {}", progress.converged));
                line(format!("fallbacks {}", progress.fallbacks));
                line(format!("fallback_failures {}", progress.fallback_failures));
                line(format!("seconds {}", progress.seconds));
                line(list_line("contraction", &progress.contraction));
                line(list_line("order", &progress.order));
            }
        }
        line("end".into());
        out
    }
}

impl<T: Scalar> Trainer<T> {
    /// Captures the run: the layer's parameters, the optimizer, the
    /// shuffling generator, the epochs completed and the epoch in progress.
    pub fn checkpoint<Alg: Splitting<Real = T>>(&self, layer: &OptLayer<Alg>) -> Checkpoint<T> {
        let params = (0..layer.param_count())
            .map(|index| (layer.param_info(index).name, layer.param(index).to_owned()))
            .collect();
        Checkpoint {
            splitting: Some(layer.splitting().name().to_owned()),
            epoch: self.epoch,
            seed: self.config.seed,
            batch_size: self.config.batch_size,
            train_len: self.train_len,
            rng: RngState::capture(&self.rng),
            params,
            adam: self.optimizer.state(),
            warm_start: layer.warm_start_state(),
            progress: self.progress.clone(),
        }
    }

    /// Restores the parameters of `checkpoint` into `layer` and returns a
    /// trainer that continues the run.
    ///
    /// `config` may change `epochs` (to extend a run), the forward settings,
    /// the gradient mode and the contraction check. A run resumed this way
    /// with an unchanged `config` ends with the same parameters, bit for bit,
    /// as the run that was not interrupted. This holds when the layer's state
    /// between updates consists of its parameters, the values
    /// [`after_param_update`](Parameterized::after_param_update) derives from
    /// them, and its [`warm_start_state`](Parameterized::warm_start_state).
    /// That state contains, for example, the power-iteration vectors of a
    /// `LearnableDense` with unit spectral norm and of the splittings' step
    /// rules.
    ///
    /// The layer first gets the saved warm-start state, then the saved
    /// parameters and an `after_param_update` call that checks them. That
    /// call re-estimates the norms, warm-started from the saved vectors.
    /// Then the saved parameters and warm-start state are written again, so
    /// the layer ends in the exact state the interrupted run had.
    ///
    /// # Errors
    /// - [`Error::InvalidValue`] naming both values when `config.seed`,
    ///   `config.batch_size` or `train_len` differs from the checkpoint's, or
    ///   when the checkpoint's splitting name ([`Splitting::name`]) or
    ///   parameter names differ from the layer's;
    /// - [`Error::ShapeMismatch`] when a parameter has another shape, or the
    ///   warm-start state another count or shape than the layer's;
    /// - errors of [`TrainConfig::validate`], [`Adam::from_state`], and the
    ///   layer's `after_param_update` and `set_warm_start_state`. On error
    ///   `layer` is left unchanged.
    pub fn resume<Alg: Splitting<Real = T>>(
        checkpoint: Checkpoint<T>,
        config: TrainConfig,
        layer: &mut OptLayer<Alg>,
        train_len: usize,
    ) -> Result<Self> {
        config.validate()?;
        if let Some(saved) = checkpoint
            .splitting
            .as_deref()
            .filter(|saved| *saved != layer.splitting().name())
        {
            return Err(Error::InvalidValue {
                name: "splitting of the layer".into(),
                value: layer.splitting().name().to_owned(),
                requirement: format!(
                    "must be the checkpoint's splitting '{saved}'; resume with the model the checkpoint was saved from"
                ),
            });
        }
        check_same("seed", config.seed, checkpoint.seed)?;
        check_same("batch size", config.batch_size, checkpoint.batch_size)?;
        if let Some(saved) = checkpoint.train_len {
            check_same("training set length", train_len, saved)?;
        }

        // Put the checkpoint's parameters and moments into the layer's order.
        let names = param_names(layer);
        let order = match_params(&checkpoint, layer, &names)?;
        let Checkpoint {
            epoch,
            rng,
            params,
            adam,
            warm_start,
            progress,
            ..
        } = checkpoint;
        let pick = |values: &[Mat<T>]| -> Vec<Mat<T>> { order.iter().map(|&i| values[i].clone()).collect() };
        let values: Vec<Mat<T>> = params.into_iter().map(|(_, value)| value).collect();
        let values = pick(&values);
        let state = AdamState {
            config: adam.config,
            steps: adam.steps,
            first_moment: pick(&adam.first_moment),
            second_moment: pick(&adam.second_moment),
        };
        let optimizer = Adam::from_state(state, layer)?;
        for (name, value) in names.iter().zip(&values) {
            optlayer_core::validate::check_finite(&format!("checkpoint parameter '{name}'"), value.as_ref())?;
        }

        let before = optlayer_core::snapshot_params(layer);
        let warm_start_before = layer.warm_start_state();
        // This checks the count and shapes, and changes nothing on error.
        layer.set_warm_start_state(&warm_start)?;
        for (index, value) in values.iter().enumerate() {
            layer.param_mut(index).copy_from(value);
        }
        if let Err(error) = layer.after_param_update() {
            optlayer_core::restore_params(layer, &before)?;
            layer.set_warm_start_state(&warm_start_before)?;
            return Err(error);
        }
        // `after_param_update` replaced the saved vectors and estimates by
        // new ones, and may have rescaled a normalized parameter within the
        // tolerance of its norm estimate. Neither is what the interrupted run
        // had, so the saved values are written back.
        for (index, value) in values.iter().enumerate() {
            layer.param_mut(index).copy_from(value);
        }
        layer.set_warm_start_state(&warm_start)?;
        Ok(Self {
            config,
            optimizer,
            rng: rng.restore(),
            epoch,
            progress,
            train_len: Some(train_len),
        })
    }
}

/// Returns, for each parameter of the layer in order, the index of the
/// checkpoint parameter with its name, after checking names and shapes.
fn match_params<T: Scalar, P: Parameterized<T> + ?Sized>(
    checkpoint: &Checkpoint<T>,
    layer: &P,
    names: &[String],
) -> Result<Vec<usize>> {
    let mismatch = || Error::InvalidValue {
        name: "checkpoint parameters".into(),
        value: checkpoint.param_names().join(", "),
        requirement: format!(
            "must be the layer's parameters {}; resume with the model the checkpoint was saved from",
            names.join(", ")
        ),
    };
    if checkpoint.params.len() != names.len() {
        return Err(mismatch());
    }
    let mut order = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let Some(position) = checkpoint.params.iter().position(|(saved, _)| saved == name) else {
            return Err(mismatch());
        };
        let value = &checkpoint.params[position].1;
        let info = layer.param_info(index);
        if (value.nrows(), value.ncols()) != (info.nrows, info.ncols) {
            return Err(Error::ShapeMismatch {
                what: format!("checkpoint parameter '{name}'"),
                expected: format!("{} x {} (the layer's parameter)", info.nrows, info.ncols),
                found: format!("{} x {}", value.nrows(), value.ncols()),
            });
        }
        order.push(position);
    }
    Ok(order)
}

/// Checks that a setting of the resumed run equals the checkpoint's.
fn check_same<V: PartialEq + std::fmt::Display>(name: &str, value: V, saved: V) -> Result<()> {
    if value == saved {
        return Ok(());
    }
    Err(Error::InvalidValue {
        name: name.into(),
        value: value.to_string(),
        requirement: format!(
            "must equal the checkpoint's {name} {saved} to continue its run; \
             pass {saved}, or start a new run instead of resuming"
        ),
    })
}

/// The contents of a state file, before the `.npy` files are read.
struct ParsedState {
    splitting: Option<String>,
    epoch: usize,
    seed: u64,
    batch_size: usize,
    train_len: Option<usize>,
    rng: RngState,
    adam_config: AdamConfig,
    adam_steps: u64,
    /// Name and shape of each parameter.
    params: Vec<(String, usize, usize)>,
    /// Shape of each warm-start matrix.
    warm_start: Vec<(usize, usize)>,
    progress: Option<EpochProgress>,
    path: PathBuf,
}

impl ParsedState {
    /// Reads the `.npy` files of the snapshot and builds the checkpoint.
    fn into_checkpoint<T: Scalar>(self, snapshot: &Path) -> Result<Checkpoint<T>> {
        let mut params = Vec::with_capacity(self.params.len());
        let mut first_moment = Vec::with_capacity(self.params.len());
        let mut second_moment = Vec::with_capacity(self.params.len());
        for (index, (name, nrows, ncols)) in self.params.into_iter().enumerate() {
            let value = read_checked::<T>(&snapshot.join(param_file(index)), nrows, ncols)?;
            let m = read_checked::<T>(&snapshot.join(first_moment_file(index)), nrows, ncols)?;
            let v = read_checked::<T>(&snapshot.join(second_moment_file(index)), nrows, ncols)?;
            params.push((name, value));
            first_moment.push(m);
            second_moment.push(v);
        }
        let adam = AdamState {
            config: self.adam_config,
            steps: self.adam_steps,
            first_moment,
            second_moment,
        };
        let warm_start = self
            .warm_start
            .iter()
            .enumerate()
            .map(|(index, &(nrows, ncols))| {
                read_checked::<T>(&snapshot.join(warm_start_file(index)), nrows, ncols)
            })
            .collect::<Result<Vec<_>>>()?;
        // Adam's own checks cover the settings and the moments' values.
        if let Err(error) = Adam::from_state(adam.clone(), &SavedParams(&params)) {
            return Err(Error::InvalidFile {
                path: self.path,
                reason: format!("the Adam state is invalid: {error}"),
            });
        }
        Ok(Checkpoint {
            splitting: self.splitting,
            epoch: self.epoch,
            seed: self.seed,
            batch_size: self.batch_size,
            train_len: self.train_len,
            rng: self.rng,
            params,
            adam,
            warm_start,
            progress: self.progress,
        })
    }
}

/// The parameters read from a snapshot, as a model for [`Adam::from_state`].
struct SavedParams<'a, T: Scalar>(&'a [(String, Mat<T>)]);

impl<T: Scalar> Parameterized<T> for SavedParams<'_, T> {
    fn param_count(&self) -> usize {
        self.0.len()
    }

    fn param_info(&self, index: usize) -> optlayer_core::ParamInfo {
        let (name, value) = &self.0[index];
        optlayer_core::ParamInfo {
            name: name.clone(),
            nrows: value.nrows(),
            ncols: value.ncols(),
        }
    }

    fn param(&self, index: usize) -> MatRef<'_, T> {
        self.0[index].1.as_ref()
    }
}

/// Reads a matrix from a snapshot and checks its dtype, shape and entries.
fn read_checked<T: Scalar>(path: &Path, nrows: usize, ncols: usize) -> Result<Mat<T>> {
    let (descr, size) = npy::read_dtype(path)?;
    if size != std::mem::size_of::<T>() {
        return Err(Error::InvalidFile {
            path: path.to_path_buf(),
            reason: format!(
                "its dtype is '{descr}', but the checkpoint is {} ('{}'); the snapshot mixes files of two runs",
                T::NAME,
                T::NPY_DESCR
            ),
        });
    }
    let value = npy::read_matrix_with_shape::<T>(path, nrows, ncols)?;
    if let Some((row, col, entry)) = optlayer_core::columns::first_non_finite(value.as_ref()) {
        return Err(Error::InvalidFile {
            path: path.to_path_buf(),
            reason: format!(
                "entry ({row}, {col}) is {}; a checkpoint contains only finite values",
                entry.to_f64_lossless()
            ),
        });
    }
    Ok(value)
}

/// Reads the lines of a state file in order, with errors that name the
/// file, the line and the expected content.
struct StateReader<'a> {
    path: &'a Path,
    lines: std::iter::Enumerate<std::str::Lines<'a>>,
    /// The number of the last line read, starting at 1.
    line: usize,
}

impl<'a> StateReader<'a> {
    fn new(text: &'a str, path: &'a Path) -> Self {
        Self {
            path,
            lines: text.lines().enumerate(),
            line: 0,
        }
    }

    fn error(&self, reason: String) -> Error {
        Error::InvalidFile {
            path: self.path.to_path_buf(),
            reason: format!("line {}: {reason}", self.line),
        }
    }

    /// Reads the next line, which must be `key value`, and returns the value.
    /// `expected` describes the value for the error message.
    fn field(&mut self, key: &str, expected: &str) -> Result<&'a str> {
        let Some((index, text)) = self.lines.next() else {
            self.line += 1;
            return Err(self.error(format!(
                "expected `{key} {expected}`, found the end of the file; the file is truncated"
            )));
        };
        self.line = index + 1;
        match text.strip_prefix(key).and_then(|rest| rest.strip_prefix(' ')) {
            Some(value) => Ok(value),
            None => Err(self.error(format!("expected `{key} {expected}`, found `{}`", quote(text)))),
        }
    }

    /// Reads the next line, which must be exactly `word`.
    fn word(&mut self, word: &str) -> Result<()> {
        let Some((index, text)) = self.lines.next() else {
            self.line += 1;
            return Err(self.error(format!(
                "expected `{word}`, found the end of the file; the file is truncated"
            )));
        };
        self.line = index + 1;
        self.ensure(text == word, || {
            format!("expected `{word}`, found `{}`", quote(text))
        })
    }

    /// Reads the next line as `key value` and parses the value.
    fn parse<V: FromStr>(&mut self, key: &str, expected: &str) -> Result<V> {
        let value = self.field(key, expected)?;
        value.parse().map_err(|_| {
            self.error(format!(
                "expected `{key} {expected}`, found `{key} {}`",
                quote(value)
            ))
        })
    }

    /// Reads the next line as `key none` or `key <value>`.
    fn parse_optional<V: FromStr>(&mut self, key: &str, expected: &str) -> Result<Option<V>> {
        let expected = format!("{expected} or none");
        let value = self.field(key, &expected)?;
        if value == "none" {
            return Ok(None);
        }
        value.parse().map(Some).map_err(|_| {
            self.error(format!(
                "expected `{key} {expected}`, found `{key} {}`",
                quote(value)
            ))
        })
    }

    /// Reads the next line as `key` followed by values separated by spaces.
    fn parse_list<V: FromStr>(&mut self, key: &str, expected: &str) -> Result<Vec<V>> {
        let list = format!("{expected}, separated by spaces");
        let text = match self.lines.clone().next() {
            Some((_, text)) if text == key => {
                self.lines.next();
                self.line += 1;
                return Ok(Vec::new());
            }
            _ => self.field(key, &list)?,
        };
        text.split(' ')
            .map(|item| {
                item.parse().map_err(|_| {
                    self.error(format!(
                        "expected `{key} {list}`, found the entry `{}`",
                        quote(item)
                    ))
                })
            })
            .collect()
    }

    /// Checks a condition between values already read, naming the last line.
    fn ensure(&self, condition: bool, reason: impl FnOnce() -> String) -> Result<()> {
        if condition {
            Ok(())
        } else {
            Err(self.error(reason()))
        }
    }
}

/// Parses a state file written by [`Checkpoint::format_state`] and checks
/// that its values fit together.
fn parse_state<T: Scalar>(text: &str, path: &Path) -> Result<ParsedState> {
    let mut reader = StateReader::new(text, path);
    let first = reader.field("optlayer-checkpoint", "1")?;
    reader.ensure(first == "1", || {
        format!(
            "expected `{FORMAT_LINE}`, found format version `{}`",
            quote(first)
        )
    })?;
    let dtype = reader.field("dtype", "'<f4' or '<f8'")?;
    if dtype != T::NPY_DESCR {
        let saved = match dtype {
            "<f4" => "f32",
            "<f8" => "f64",
            _ => {
                return Err(reader.error(format!(
                    "expected `dtype <f4` or `dtype <f8`, found `dtype {}`",
                    quote(dtype)
                )));
            }
        };
        return Err(Error::InvalidValue {
            name: "checkpoint scalar type".into(),
            value: format!("{saved} ('{dtype}', in {})", path.display()),
            requirement: format!(
                "must be {} ('{}'), the type it is loaded as; load it as Checkpoint::<{saved}> with a {saved} layer",
                T::NAME,
                T::NPY_DESCR
            ),
        });
    }
    // The splitting line is optional, because files written before it was
    // added lack it.
    let splitting = match reader.lines.clone().next() {
        Some((_, text)) if text.starts_with("splitting ") => {
            Some(reader.field("splitting", "<name>")?.to_owned())
        }
        _ => None,
    };
    let epoch: usize = reader.parse("epoch", "<epochs completed>")?;
    reader.ensure(epoch < usize::MAX, || {
        format!("{epoch} epochs completed leaves no number for the next epoch")
    })?;
    let seed: u64 = reader.parse("seed", "<unsigned 64-bit integer>")?;
    let batch_size: usize = reader.parse("batch_size", "<positive integer>")?;
    reader.ensure(batch_size > 0, || "the batch size must be at least 1".into())?;
    let train_len: Option<usize> = reader.parse_optional("train_len", "<positive integer>")?;
    reader.ensure(train_len != Some(0), || {
        "the training set length must be at least 1".into()
    })?;

    let rng = parse_rng(&mut reader, seed)?;
    let adam_config = AdamConfig {
        learning_rate: reader.parse("adam_learning_rate", "<float>")?,
        beta1: reader.parse("adam_beta1", "<float>")?,
        beta2: reader.parse("adam_beta2", "<float>")?,
        eps: reader.parse("adam_eps", "<float>")?,
        weight_decay: reader.parse("adam_weight_decay", "<float>")?,
        decoupled_weight_decay: reader.parse("adam_decoupled_weight_decay", "true or false")?,
    };
    let adam_steps: u64 = reader.parse("adam_steps", "<unsigned 64-bit integer>")?;

    let count: usize = reader.parse("params", "<number of parameters>")?;
    let mut params = Vec::new();
    for index in 0..count {
        let expected = "<index> <rows> <columns> <name>";
        let text = reader.field("param", expected)?;
        let parts: Vec<&str> = text.splitn(4, ' ').collect();
        let numbers: Option<Vec<usize>> = parts.iter().take(3).map(|part| part.parse().ok()).collect();
        let (Some(numbers), Some(name)) = (numbers.filter(|n| n.len() == 3), parts.get(3)) else {
            return Err(reader.error(format!(
                "expected `param {expected}`, found `param {}`",
                quote(text)
            )));
        };
        reader.ensure(numbers[0] == index, || {
            format!("expected parameter index {index}, found {}", numbers[0])
        })?;
        reader.ensure(params.iter().all(|(saved, _, _)| saved != name), || {
            format!("the parameter name '{name}' appears twice")
        })?;
        params.push(((*name).to_owned(), numbers[1], numbers[2]));
    }

    let warm_start = parse_warm_start(&mut reader)?;
    let progress = parse_progress(&mut reader, epoch, batch_size, train_len)?;
    reader.word("end")?;
    if let Some((index, extra)) = reader.lines.next() {
        reader.line = index + 1;
        return Err(reader.error(format!(
            "expected the end of the file after `end`, found `{}`",
            quote(extra)
        )));
    }
    Ok(ParsedState {
        splitting,
        epoch,
        seed,
        batch_size,
        train_len,
        rng,
        adam_config,
        adam_steps,
        params,
        warm_start,
        progress,
        path: path.to_path_buf(),
    })
}

/// Parses the count and shapes of the warm-start matrices.
fn parse_warm_start(reader: &mut StateReader<'_>) -> Result<Vec<(usize, usize)>> {
    let count: usize = reader.parse("warm_start", "<number of matrices>")?;
    let mut shapes = Vec::new();
    for index in 0..count {
        let expected = "<index> <rows> <columns>";
        let text = reader.field("warm_start_matrix", expected)?;
        let numbers: Option<Vec<usize>> = text.split(' ').map(|part| part.parse().ok()).collect();
        let Some([found, nrows, ncols]) = numbers.and_then(|n| <[usize; 3]>::try_from(n).ok()) else {
            return Err(reader.error(format!(
                "expected `warm_start_matrix {expected}`, found `warm_start_matrix {}`",
                quote(text)
            )));
        };
        reader.ensure(found == index, || {
            format!("expected warm-start matrix index {index}, found {found}")
        })?;
        shapes.push((nrows, ncols));
    }
    Ok(shapes)
}

/// Parses the generator lines and checks that the generator's seed is the
/// one the run's seed gives.
fn parse_rng(reader: &mut StateReader<'_>, seed: u64) -> Result<RngState> {
    let hex = reader.field("rng_seed", "<64 hexadecimal digits>")?;
    let bytes: Option<Vec<u8>> = (hex.len() == 64 && hex.is_ascii())
        .then(|| {
            (0..32)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                .collect()
        })
        .flatten();
    let Some(bytes) = bytes else {
        return Err(reader.error(format!(
            "expected `rng_seed <64 hexadecimal digits>`, found `rng_seed {}`",
            quote(hex)
        )));
    };
    let mut rng_seed = [0u8; 32];
    rng_seed.copy_from_slice(&bytes);
    let expected_seed = ChaCha8Rng::seed_from_u64(seed).get_seed();
    reader.ensure(rng_seed == expected_seed, || {
        format!(
            "the generator seed is not the one that the run's seed {seed} gives; the file was edited or mixed"
        )
    })?;
    Ok(RngState {
        seed: rng_seed,
        stream: reader.parse("rng_stream", "<unsigned 64-bit integer>")?,
        word_pos: reader.parse("rng_word_pos", "<unsigned integer>")?,
    })
}

/// Parses the epoch in progress, if any, and checks it against the run.
fn parse_progress(
    reader: &mut StateReader<'_>,
    epoch: usize,
    batch_size: usize,
    train_len: Option<usize>,
) -> Result<Option<EpochProgress>> {
    let Some(partial_epoch) = reader.parse_optional::<usize>("partial_epoch", "<epoch in progress>")? else {
        return Ok(None);
    };
    reader.ensure(Some(partial_epoch) == epoch.checked_add(1), || {
        format!(
            "the epoch in progress is {partial_epoch}, but after {epoch} completed epochs it must be {}",
            epoch.saturating_add(1)
        )
    })?;
    let Some(len) = train_len else {
        return Err(reader.error("an epoch is in progress, so `train_len` must be a number, not none".into()));
    };
    let batches = len.div_ceil(batch_size.min(len));
    let batches_done: usize = reader.parse("batches_done", "<integer>")?;
    reader.ensure(batches_done <= batches, || {
        format!("{batches_done} batches done, but the epoch has {batches}")
    })?;
    let samples_done: usize = reader.parse("samples_done", "<integer>")?;
    let expected_samples = batches_done.saturating_mul(batch_size).min(len);
    reader.ensure(samples_done == expected_samples, || {
        format!(
            "{samples_done} samples done, but {batches_done} batches of {batch_size} make {expected_samples}"
        )
    })?;
    let mut progress = EpochProgress {
        epoch: partial_epoch,
        order: Vec::new(),
        batches_done,
        samples_done,
        loss_sum: reader.parse("loss_sum", "<float>")?,
        iteration_sum: reader.parse("iteration_sum", "<integer>")?,
        converged: reader.parse("converged", "<integer>")?,
        fallbacks: reader.parse("fallbacks", "<integer>")?,
        fallback_failures: reader.parse("fallback_failures", "<integer>")?,
        seconds: reader.parse("seconds", "<float>")?,
        contraction: Vec::new(),
    };
    progress.contraction = reader.parse_list("contraction", "<float>")?;
    reader.ensure(progress.contraction.len() <= batches_done, || {
        format!(
            "{} contraction estimates, but only {batches_done} batches are done",
            progress.contraction.len()
        )
    })?;
    progress.order = reader.parse_list("order", "<sample index>")?;
    // The length check comes first, so a huge `train_len` in an edited file
    // allocates nothing.
    let is_permutation = progress.order.len() == len && {
        let mut seen = vec![false; len];
        progress
            .order
            .iter()
            .all(|&index| index < len && !std::mem::replace(&mut seen[index], true))
    };
    reader.ensure(is_permutation, || {
        format!("the sample order must list each index from 0 to {} once", len - 1)
    })?;
    Ok(Some(progress))
}

/// Quotes a line of a state file in an error message, shortened to 80 characters.
fn quote(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    if text.chars().count() <= MAX_CHARS {
        return text.escape_debug().to_string();
    }
    let head: String = text.chars().take(MAX_CHARS).collect();
    format!("{}...", head.escape_debug())
}

/// Formats `key` followed by `values` separated by spaces, or `key` alone
/// when there are no values.
fn list_line<V: std::fmt::Display>(key: &str, values: &[V]) -> String {
    let mut line = key.to_owned();
    for value in values {
        line.push(' ');
        line.push_str(&value.to_string());
    }
    line
}

fn param_file(index: usize) -> String {
    format!("param-{index}.npy")
}

fn first_moment_file(index: usize) -> String {
    format!("adam-m-{index}.npy")
}

fn second_moment_file(index: usize) -> String {
    format!("adam-v-{index}.npy")
}

fn warm_start_file(index: usize) -> String {
    format!("warm-start-{index}.npy")
}

/// Returns the largest counter among the snapshot folder names in `dir`.
fn largest_snapshot_counter(dir: &Path) -> Option<u64> {
    let entries = fs::read_dir(dir).ok()?;
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| snapshot_counter(entry.file_name().to_str()?))
        .max()
}

/// Returns the counter of a snapshot folder name
/// `snapshot-<epoch>-<batch>-<counter>`, or `None` for any other name.
fn snapshot_counter(name: &str) -> Option<u64> {
    let mut numbers = name.strip_prefix(SNAPSHOT_PREFIX)?.split('-');
    let mut counter = None;
    for _ in 0..3 {
        let number = numbers.next()?;
        if number.is_empty() || !number.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        counter = Some(number.parse::<u64>().ok()?);
    }
    if numbers.next().is_some() {
        return None;
    }
    counter
}

/// Removes every snapshot folder in `dir` except `keep`.
///
/// Only names of the form `snapshot-<epoch>-<batch>-<counter>` count as
/// snapshots, so a user's `snapshot-notes` folder in `dir` stays. This is
/// best effort: the new checkpoint is complete and named by the
/// pointer, so a folder that cannot be removed only takes space, and the next
/// save tries again.
fn remove_other_snapshots(dir: &Path, keep: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|entry| entry.ok()) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if snapshot_counter(name).is_some() && name != keep {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Syncs the folder `dir`, so that the files created in it survive a crash
/// before the pointer names it.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(|source| io_error("failed to sync the snapshot folder", dir, source))
}

/// Does nothing, because folders cannot be opened for syncing on this platform.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

fn io_error(action: &str, path: &Path, source: io::Error) -> Error {
    Error::Io {
        action: action.to_owned(),
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder under the system temporary folder for one test, removed when dropped.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(name: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("optlayer-checkpoint-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            Self(path)
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A checkpoint taken in batch 2 of epoch 3, with two parameters and a
    /// warm-start state of a vector, an absent vector and an estimate.
    fn sample<T: Scalar>() -> Checkpoint<T> {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let mut order: Vec<usize> = (0..10).collect();
        rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
        let theta = Mat::from_fn(3, 2, |i, j| T::lit(0.1 * i as f64 - 0.37 * j as f64 + 1.0 / 3.0));
        let bias = Mat::from_fn(3, 1, |i, _| T::lit(-(i as f64) / 7.0));
        let adam = AdamState {
            config: AdamConfig {
                learning_rate: 0.1 / 3.0,
                ..AdamConfig::default()
            },
            steps: 11,
            first_moment: vec![theta.clone() * faer::Scale(T::lit(0.5)), bias.clone()],
            second_moment: vec![
                Mat::from_fn(3, 2, |i, j| T::lit((i + j) as f64 / 9.0)),
                Mat::from_fn(3, 1, |i, _| T::lit(i as f64 * 1e-30)),
            ],
        };
        Checkpoint {
            splitting: Some("Condat-Vu".into()),
            epoch: 2,
            seed: 42,
            batch_size: 4,
            train_len: Some(10),
            rng: RngState::capture(&rng),
            params: vec![("theta".into(), theta), ("bias term".into(), bias)],
            adam,
            warm_start: vec![
                Mat::from_fn(2, 1, |i, _| T::lit(0.6 + 0.2 * i as f64 / 3.0)),
                Mat::zeros(0, 0),
                Mat::from_fn(1, 1, |_, _| T::lit(1.0 / 7.0)),
            ],
            progress: Some(EpochProgress {
                epoch: 3,
                order,
                batches_done: 2,
                samples_done: 8,
                loss_sum: 0.1 + 0.2,
                iteration_sum: 321,
                converged: 7,
                contraction: vec![0.9, f64::NAN],
                fallbacks: 1,
                fallback_failures: 0,
                seconds: 1.0 / 3.0,
            }),
        }
    }

    /// Returns the snapshot folder that the pointer names.
    fn snapshot(dir: &Path) -> PathBuf {
        let name = fs::read_to_string(dir.join(POINTER_FILE)).unwrap();
        dir.join(name.trim_end())
    }

    fn snapshot_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with(SNAPSHOT_PREFIX))
            .collect();
        names.sort();
        names
    }

    /// Asserts that two checkpoints are equal, comparing the NaN contraction
    /// estimate of `sample` by its bits.
    fn assert_same<T: Scalar>(found: &Checkpoint<T>, expected: &Checkpoint<T>) {
        let mut found = found.clone();
        let mut expected = expected.clone();
        let found_progress = found.progress.as_mut().unwrap();
        let expected_progress = expected.progress.as_mut().unwrap();
        let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&found_progress.contraction),
            bits(&expected_progress.contraction)
        );
        found_progress.contraction.clear();
        expected_progress.contraction.clear();
        assert_eq!(found, expected);
    }

    fn round_trip<T: Scalar>() {
        let dir = TestDir::new(&format!("round-trip-{}", T::NAME));
        let checkpoint = sample::<T>();
        assert!(!Checkpoint::<T>::exists(&dir.0));
        checkpoint.save(&dir.0).unwrap();
        assert!(Checkpoint::<T>::exists(&dir.0));
        let loaded = Checkpoint::<T>::load(&dir.0).unwrap();
        assert_same(&loaded, &checkpoint);
        assert_eq!(loaded.in_progress(), Some((3, 2)));
        assert_eq!(
            loaded.param("bias term").unwrap(),
            checkpoint.params[1].1.as_ref()
        );
        assert!(loaded.param("missing").is_none());
        assert_eq!(loaded.warm_start_state().len(), 3);
        assert_eq!(loaded.warm_start_state()[1].nrows(), 0);
        assert_eq!(loaded.warm_start_state()[1].ncols(), 0);
        assert_eq!(
            loaded.warm_start_state()[2][(0, 0)],
            checkpoint.warm_start[2][(0, 0)]
        );
        // The generator continues where the saved one stopped.
        let mut original = checkpoint.rng.restore();
        let mut restored = loaded.rng.restore();
        assert_eq!(
            rand::Rng::random::<u64>(&mut original),
            rand::Rng::random::<u64>(&mut restored)
        );
    }

    #[test]
    fn save_load_round_trip_f64() {
        round_trip::<f64>();
    }

    #[test]
    fn save_load_round_trip_f32() {
        round_trip::<f32>();
    }

    #[test]
    fn saving_twice_keeps_one_snapshot() {
        let dir = TestDir::new("twice");
        let mut checkpoint = sample::<f64>();
        checkpoint.save(&dir.0).unwrap();
        let first = snapshot_names(&dir.0);
        checkpoint.epoch = 3;
        checkpoint.progress = None;
        checkpoint.save(&dir.0).unwrap();
        let second = snapshot_names(&dir.0);
        assert_eq!(first.len(), 1);
        assert_eq!(second.len(), 1);
        assert_ne!(first, second);
        assert_eq!(Checkpoint::<f64>::load(&dir.0).unwrap(), checkpoint);
    }

    #[test]
    fn leftover_partial_snapshot_is_ignored() {
        let dir = TestDir::new("leftover");
        let checkpoint = sample::<f64>();
        checkpoint.save(&dir.0).unwrap();
        // A save killed before its pointer update leaves a partial folder.
        let leftover = dir.0.join("snapshot-9-0-57");
        fs::create_dir(&leftover).unwrap();
        fs::write(leftover.join(STATE_FILE), "optlayer-checkpoint 1\ndtype <f8\nepo").unwrap();
        assert_same(&Checkpoint::<f64>::load(&dir.0).unwrap(), &checkpoint);

        checkpoint.save(&dir.0).unwrap();
        let names = snapshot_names(&dir.0);
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(
            names[0].ends_with("-58"),
            "the counter must pass the leftover's: {names:?}"
        );
    }

    #[test]
    fn missing_folder_or_pointer_is_io_error() {
        let dir = TestDir::new("missing");
        let error = Checkpoint::<f64>::load(&dir.0).unwrap_err();
        assert!(matches!(error, Error::Io { .. }), "{error}");
        assert!(error.to_string().contains("no checkpoint"), "{error}");
        assert!(
            error.to_string().contains(&dir.0.display().to_string()),
            "{error}"
        );

        fs::create_dir_all(&dir.0).unwrap();
        let error = Checkpoint::<f64>::load(&dir.0).unwrap_err();
        assert!(matches!(error, Error::Io { .. }), "{error}");
        assert!(error.to_string().contains("no checkpoint"), "{error}");
        assert!(error.to_string().contains(POINTER_FILE), "{error}");
    }

    /// Saves `sample`, applies `edit` to its state file, and returns the load error.
    fn load_error_after(name: &str, edit: impl FnOnce(String) -> String) -> (Error, PathBuf) {
        let dir = TestDir::new(name);
        sample::<f64>().save(&dir.0).unwrap();
        let state = snapshot(&dir.0).join(STATE_FILE);
        let text = fs::read_to_string(&state).unwrap();
        fs::write(&state, edit(text)).unwrap();
        (Checkpoint::<f64>::load(&dir.0).unwrap_err(), state)
    }

    #[test]
    fn truncated_state_is_invalid_file() {
        for cut in [10, 200, 400] {
            let (error, state) = load_error_after(&format!("truncated-{cut}"), |text| text[..cut].to_owned());
            assert!(
                matches!(error, Error::InvalidFile { ref path, .. } if *path == state),
                "{error}"
            );
            assert!(error.to_string().contains("line "), "{error}");
        }
        let (error, _) = load_error_after("truncated-end", |text| text.replace("end\n", ""));
        assert!(error.to_string().contains("expected `end`"), "{error}");
        assert!(error.to_string().contains("end of the file"), "{error}");
    }

    #[test]
    fn malformed_field_names_line_and_expected() {
        let (error, _) = load_error_after("malformed-seed", |text| text.replace("seed 42", "seed forty-two"));
        assert!(matches!(error, Error::InvalidFile { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("line 5"), "{message}");
        assert!(message.contains("seed <unsigned 64-bit integer>"), "{message}");
        assert!(message.contains("forty-two"), "{message}");

        let (error, _) = load_error_after("malformed-order", |text| text.replace("order ", "order 99 "));
        assert!(error.to_string().contains("sample order"), "{error}");

        let (error, _) = load_error_after("malformed-rng", |text| text.replace("seed 42\n", "seed 43\n"));
        assert!(error.to_string().contains("generator seed"), "{error}");

        let (error, _) = load_error_after("malformed-moment", |text| {
            text.replace("adam_beta1 0.9", "adam_beta1 1.5")
        });
        assert!(error.to_string().contains("beta1"), "{error}");
    }

    #[test]
    fn malformed_warm_start_line_names_expected() {
        let (error, _) = load_error_after("malformed-warm-start", |text| {
            text.replace("warm_start_matrix 1 0 0", "warm_start_matrix 1 0")
        });
        assert!(matches!(error, Error::InvalidFile { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("warm_start_matrix <index> <rows> <columns>"),
            "{message}"
        );
        assert!(message.contains("`warm_start_matrix 1 0`"), "{message}");

        let (error, _) = load_error_after("missing-warm-start", |text| {
            text.replace("warm_start 3\n", "warm_start 2\n")
        });
        assert!(error.to_string().contains("expected `partial_epoch"), "{error}");
    }

    #[test]
    fn missing_warm_start_npy_is_io_error() {
        let dir = TestDir::new("missing-warm-start-npy");
        sample::<f64>().save(&dir.0).unwrap();
        let file = snapshot(&dir.0).join(warm_start_file(0));
        assert!(file.is_file(), "the save did not write {}", file.display());
        fs::remove_file(&file).unwrap();
        let error = Checkpoint::<f64>::load(&dir.0).unwrap_err();
        assert!(
            matches!(error, Error::Io { ref path, .. } if *path == file),
            "{error}"
        );
    }

    #[test]
    fn missing_npy_is_io_error() {
        let dir = TestDir::new("missing-npy");
        sample::<f64>().save(&dir.0).unwrap();
        let file = snapshot(&dir.0).join(second_moment_file(1));
        fs::remove_file(&file).unwrap();
        let error = Checkpoint::<f64>::load(&dir.0).unwrap_err();
        assert!(
            matches!(error, Error::Io { ref path, .. } if *path == file),
            "{error}"
        );
    }

    #[test]
    fn wrong_shape_npy_is_shape_mismatch() {
        let dir = TestDir::new("shape-npy");
        sample::<f64>().save(&dir.0).unwrap();
        let file = snapshot(&dir.0).join(param_file(0));
        npy::write_matrix(&file, Mat::<f64>::zeros(2, 3).as_ref()).unwrap();
        let error = Checkpoint::<f64>::load(&dir.0).unwrap_err();
        assert!(matches!(error, Error::ShapeMismatch { .. }), "{error}");
        assert!(error.to_string().contains("3 x 2"), "{error}");
        assert!(error.to_string().contains("2 x 3"), "{error}");
    }

    #[test]
    fn wrong_dtype_npy_is_invalid_file() {
        let dir = TestDir::new("dtype-npy");
        sample::<f64>().save(&dir.0).unwrap();
        let file = snapshot(&dir.0).join(first_moment_file(0));
        npy::write_matrix(&file, Mat::<f32>::zeros(3, 2).as_ref()).unwrap();
        let error = Checkpoint::<f64>::load(&dir.0).unwrap_err();
        assert!(
            matches!(error, Error::InvalidFile { ref path, .. } if *path == file),
            "{error}"
        );
        assert!(error.to_string().contains("<f4"), "{error}");
        assert!(error.to_string().contains("f64"), "{error}");
    }

    #[test]
    fn f32_checkpoint_loaded_as_f64_is_rejected() {
        let dir = TestDir::new("dtype-state");
        sample::<f32>().save(&dir.0).unwrap();
        let error = Checkpoint::<f64>::load(&dir.0).unwrap_err();
        assert!(matches!(error, Error::InvalidValue { .. }), "{error}");
        assert!(error.to_string().contains("f32"), "{error}");
        assert!(error.to_string().contains("must be f64"), "{error}");
    }

    #[test]
    fn state_without_splitting_line_loads() {
        let dir = TestDir::new("no-splitting");
        let checkpoint = sample::<f64>();
        checkpoint.save(&dir.0).unwrap();
        let state = snapshot(&dir.0).join(STATE_FILE);
        let text = fs::read_to_string(&state).unwrap();
        assert!(text.contains("\nsplitting Condat-Vu\n"), "{text}");
        fs::write(&state, text.replace("splitting Condat-Vu\n", "")).unwrap();
        let loaded = Checkpoint::<f64>::load(&dir.0).unwrap();
        assert_eq!(loaded.splitting(), None);
        assert_eq!(loaded.epoch(), checkpoint.epoch());
    }

    #[test]
    fn huge_train_len_is_invalid_file() {
        let (error, state) = load_error_after("huge-train-len", |text| {
            text.replace("train_len 10", &format!("train_len {}", usize::MAX))
        });
        assert!(
            matches!(error, Error::InvalidFile { ref path, .. } if *path == state),
            "{error}"
        );
        assert!(error.to_string().contains("sample order"), "{error}");
    }

    #[test]
    fn largest_epoch_is_invalid_file() {
        let (error, _) = load_error_after("largest-epoch", |text| {
            text.replace("epoch 2\n", &format!("epoch {}\n", usize::MAX))
        });
        assert!(matches!(error, Error::InvalidFile { .. }), "{error}");
        assert!(error.to_string().contains("line 4"), "{error}");
        assert!(error.to_string().contains("next epoch"), "{error}");
    }

    #[test]
    fn snapshot_counter_reads_only_snapshot_names() {
        assert_eq!(snapshot_counter("snapshot-3-2-17"), Some(17));
        assert_eq!(snapshot_counter("snapshot-0-0-0"), Some(0));
        for name in [
            "snapshot-photos",
            "snapshot-1-2",
            "snapshot-1-2-3-4",
            "snapshot-1-2-x",
            "snapshot-1--3",
            "snapshot-+1-2-3",
            "snapshot-1-2-3.bak",
            "checkpoint.txt",
        ] {
            assert_eq!(snapshot_counter(name), None, "{name}");
        }
    }

    #[test]
    fn save_keeps_other_files() {
        let dir = TestDir::new("other-files");
        fs::create_dir_all(dir.0.join("snapshot-notes")).unwrap();
        fs::write(dir.0.join("snapshot-notes").join("a.txt"), "kept").unwrap();
        fs::create_dir_all(dir.0.join("snapshot-1-2")).unwrap();
        fs::write(dir.0.join("run.log"), "kept").unwrap();
        let mut checkpoint = sample::<f64>();
        checkpoint.save(&dir.0).unwrap();
        checkpoint.epoch = 3;
        checkpoint.progress = None;
        checkpoint.save(&dir.0).unwrap();
        assert!(dir.0.join("snapshot-notes").join("a.txt").is_file());
        assert!(dir.0.join("snapshot-1-2").is_dir());
        assert!(dir.0.join("run.log").is_file());
        assert_eq!(snapshot_names(&dir.0).len(), 3);
        assert_eq!(Checkpoint::<f64>::load(&dir.0).unwrap(), checkpoint);
    }

    #[test]
    fn name_with_line_break_rejected_on_save() {
        let dir = TestDir::new("line-break");
        let mut checkpoint = sample::<f64>();
        checkpoint.params[0].0 = "two\nlines".into();
        let error = checkpoint.save(&dir.0).unwrap_err();
        assert!(matches!(error, Error::InvalidValue { .. }), "{error}");
        assert!(error.to_string().contains("two\\nlines"), "{error}");
        assert!(!Checkpoint::<f64>::exists(&dir.0));
    }
}
