//! Proximal maps built from other proximal maps: scaling, translation,
//! separable sums and conjugation.
//!
//! Each combinator owns its inner maps as `Box<dyn Prox<T>>`, forwards
//! `dim`, `data_rows_needed` and the parameters of its inner maps, and
//! composes their vector-Jacobian products and parameter gradients by the
//! chain rule. The prox rules are those of N. Parikh and S. Boyd, "Proximal
//! Algorithms", Foundations and Trends in Optimization 1(3), 2014, chapter 2.

mod conjugate;
mod scaled;
mod scratch;
mod separable;
mod translated;

pub use conjugate::Conjugate;
pub use scaled::Scaled;
pub use separable::{SeparableBlock, SeparableSum};
pub use translated::Translated;

use faer::MatRef;
use optlayer_core::{Prox, Scalar, param_names};

/// Returns columns `start..start + cols` of the data batch when it has one
/// column per sample, and the batch unchanged otherwise.
///
/// Callers that pass no data (a batch with another column count) get it
/// back as passed, so maps that do not read data work with any data batch.
fn data_cols<T>(data: MatRef<'_, T>, batch: usize, start: usize, cols: usize) -> MatRef<'_, T> {
    if data.ncols() == batch {
        data.subcols(start, cols)
    } else {
        data
    }
}

/// Returns a short description of an inner map for `Debug` output.
fn describe<T: Scalar>(prox: &dyn Prox<T>) -> String {
    let dim = match prox.dim() {
        Some(dim) => dim.to_string(),
        None => "any".to_string(),
    };
    format!("prox on dimension {dim} with parameters {:?}", param_names(prox))
}
