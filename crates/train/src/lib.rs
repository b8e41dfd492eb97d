//! Training for optlayer.
//!
//! - [`Dataset`]: pairs `(d, x*)` as matrices whose columns are samples,
//!   saved and loaded as numpy `.npy` files ([`npy`]) with one sample per row;
//! - [`Adam`]: the optimizer, with weight decay;
//! - [`Trainer`]: seeded mini-batch shuffling, Jacobian-free gradients of
//!   the mean squared error, and per-epoch train and test errors;
//! - [`predict`] and [`evaluate`]: batched inference;
//! - [`Checkpoint`]: the state of a run, saved atomically and resumed bit for bit;
//! - [`atomic`]: file writes that never leave a partial file behind;
//! - [`certificate`]: labels pass, warning or fail for each inference from
//!   properties such as sparsity and data fidelity. Thresholds are fixed or
//!   calibrated on training data and saved beside the model.

mod adam;
pub mod atomic;
pub mod certificate;
mod checkpoint;
mod dataset;
pub mod npy;
mod trainer;

pub use adam::{Adam, AdamConfig, AdamState};
pub use certificate::{Assessment, Calibration, Certificate, Label, Rule, Thresholds};
pub use checkpoint::Checkpoint;
pub use dataset::Dataset;
pub use trainer::{
    BatchProgress, ContractionCheck, EpochOutcome, EpochReport, FitOutcome, Prediction, TrainConfig, Trainer,
    evaluate, predict,
};
