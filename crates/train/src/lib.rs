//! Training for optlayer.
//!
//! - [`Dataset`]: pairs `(d, x*)` as matrices whose columns are samples,
//!   saved and loaded as numpy `.npy` files ([`npy`]) with one sample per row;
//! - [`Adam`]: the optimizer, with weight decay;
//! - [`Trainer`]: seeded mini-batch shuffling, Jacobian-free gradients of
//!   the mean squared error, and per-epoch train and test errors;
//! - [`predict`] and [`evaluate`]: batched inference;
//! - [`atomic`]: file writes that never leave a partial file behind;
//! - [`certificate`]: labels pass, warning or fail for each inference from
//!   properties such as sparsity and data fidelity. Thresholds are fixed or
//!   calibrated on training data and saved beside the model.

mod adam;
pub mod atomic;
pub mod certificate;
mod dataset;
pub mod npy;
mod trainer;

pub use adam::{Adam, AdamConfig};
pub use certificate::{Assessment, Calibration, Certificate, Label, Rule, Thresholds};
pub use dataset::Dataset;
pub use trainer::{ContractionCheck, EpochReport, Prediction, TrainConfig, Trainer, evaluate, predict};
