//! Helpers for [`Parameterized::warm_start_state`] and
//! [`Parameterized::set_warm_start_state`].
//!
//! A power-iteration estimate is stored as two matrices: the vector that
//! warm-starts the next estimate (`dim x 1`, or `0 x 0` while no estimate
//! has run) and the estimate itself (`1 x 1`), such as `‖K‖₂` or `‖A‖₂²`.

use faer::Mat;

use crate::{Error, Result, Scalar};

/// Checks that `state` has `expected` matrices.
///
/// # Errors
/// [`Error::ShapeMismatch`] naming `what` and both counts.
pub fn check_warm_start_count<T>(what: &str, state: &[Mat<T>], expected: usize) -> Result<()> {
    if state.len() == expected {
        return Ok(());
    }
    Err(Error::ShapeMismatch {
        what: format!("warm-start state of {what}"),
        expected: format!("{expected} matrices (the count that warm_start_state returns for this model)"),
        found: format!("{} matrices", state.len()),
    })
}

/// Encodes an optional warm-start vector: the vector itself, or a `0 x 0`
/// matrix when it is absent.
pub fn encode_warm_start_vector<T: Scalar>(vector: Option<&Mat<T>>) -> Mat<T> {
    vector.map_or_else(|| Mat::zeros(0, 0), Clone::clone)
}

/// Decodes a warm-start vector written by [`encode_warm_start_vector`]: a
/// `0 x 0` matrix is absent, anything else must be a finite `dim x 1` vector.
///
/// # Errors
/// [`Error::ShapeMismatch`] for another shape and [`Error::NonFiniteInput`]
/// for a NaN or infinite entry, both naming `what`.
pub fn decode_warm_start_vector<T: Scalar>(what: &str, value: &Mat<T>, dim: usize) -> Result<Option<Mat<T>>> {
    if value.nrows() == 0 && value.ncols() == 0 {
        return Ok(None);
    }
    if value.nrows() != dim || value.ncols() != 1 {
        return Err(Error::ShapeMismatch {
            what: what.into(),
            expected: format!("{dim} x 1, or 0 x 0 when no estimate has run"),
            found: format!("{} x {}", value.nrows(), value.ncols()),
        });
    }
    crate::validate::check_finite(what, value.as_ref())?;
    Ok(Some(value.clone()))
}

/// Encodes an estimate, such as `‖K‖₂`, as a `1 x 1` matrix.
pub fn encode_estimate<T: Scalar>(estimate: T) -> Mat<T> {
    Mat::from_fn(1, 1, |_, _| estimate)
}

/// Decodes an estimate written by [`encode_estimate`].
///
/// # Errors
/// [`Error::ShapeMismatch`] unless `value` is `1 x 1`, and
/// [`Error::InvalidParameter`] unless its entry is finite and not negative.
pub fn decode_estimate<T: Scalar>(what: &str, value: &Mat<T>) -> Result<T> {
    crate::validate::check_shape(what, value.as_ref(), 1, 1)?;
    let estimate = value[(0, 0)];
    if !(estimate.is_finite() && estimate >= T::zero()) {
        return Err(Error::InvalidParameter {
            name: what.into(),
            value: estimate.to_f64_lossless(),
            requirement: "an estimate of a norm must be finite and not negative".into(),
        });
    }
    Ok(estimate)
}

/// Restores the warm-start states of the parts of a composite model.
///
/// `previous[i]` is the current state of part `i`, from its
/// [`Parameterized::warm_start_state`], and `state` is the concatenation of
/// the new states, in the same order. `set_part(i, slice)` calls part `i`'s
/// [`Parameterized::set_warm_start_state`]. When a part rejects its slice,
/// the parts already set get their `previous` state back, so a failed call
/// changes nothing.
///
/// # Errors
/// [`Error::ShapeMismatch`] naming `what` when `state` has another count
/// than `previous` in total, and the first error of a part.
pub fn set_parts_warm_start_state<T>(
    what: &str,
    previous: &[Vec<Mat<T>>],
    state: &[Mat<T>],
    mut set_part: impl FnMut(usize, &[Mat<T>]) -> Result<()>,
) -> Result<()> {
    let expected = previous.iter().map(Vec::len).sum();
    check_warm_start_count(what, state, expected)?;
    let mut start = 0;
    for (index, part_previous) in previous.iter().enumerate() {
        let end = start + part_previous.len();
        if let Err(error) = set_part(index, &state[start..end]) {
            for (done, done_previous) in previous[..index].iter().enumerate() {
                // Each part accepted this state before, so it accepts it again.
                let _ = set_part(done, done_previous);
            }
            return Err(error);
        }
        start = end;
    }
    Ok(())
}
