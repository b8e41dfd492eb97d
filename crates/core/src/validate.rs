//! Input checks shared by every crate of optlayer. Each returns a typed
//! [`Error`] that names the value at fault.

use faer::MatRef;

use crate::{Error, Result, Scalar};

/// Checks that `value` has `nrows` rows and `ncols` columns.
pub fn check_shape<T>(what: &str, value: MatRef<'_, T>, nrows: usize, ncols: usize) -> Result<()> {
    if value.nrows() != nrows || value.ncols() != ncols {
        return Err(Error::ShapeMismatch {
            what: what.to_string(),
            expected: format!("{nrows} x {ncols}"),
            found: format!("{} x {}", value.nrows(), value.ncols()),
        });
    }
    Ok(())
}

/// Checks that `value` has `nrows` rows; `reason` names the source of the count in the message.
pub fn check_rows<T>(what: &str, value: MatRef<'_, T>, nrows: usize, reason: &str) -> Result<()> {
    if value.nrows() != nrows {
        return Err(Error::ShapeMismatch {
            what: what.to_string(),
            expected: format!("{nrows} rows ({reason})"),
            found: format!("{} rows", value.nrows()),
        });
    }
    Ok(())
}

/// Checks that `value` has at least one column.
pub fn check_nonempty<T>(what: &str, value: MatRef<'_, T>) -> Result<()> {
    if value.ncols() == 0 {
        return Err(Error::Empty {
            what: what.to_string(),
            fix: "pass at least one sample (one column)".to_string(),
        });
    }
    Ok(())
}

/// Checks that every entry of `value` is finite and names the first that is not.
pub fn check_finite<T: Scalar>(what: &str, value: MatRef<'_, T>) -> Result<()> {
    for col in 0..value.ncols() {
        for row in 0..value.nrows() {
            let entry = value[(row, col)];
            if !entry.is_finite() {
                return Err(Error::NonFiniteInput {
                    what: what.to_string(),
                    row,
                    col,
                    value: entry.to_f64_lossless(),
                });
            }
        }
    }
    Ok(())
}

/// Checks that a step size or weight is finite and strictly positive.
pub fn check_positive<T: Scalar>(name: &str, value: T) -> Result<()> {
    if !(value.is_finite() && value > T::zero()) {
        return Err(Error::InvalidParameter {
            name: name.to_string(),
            value: value.to_f64_lossless(),
            requirement: "must be finite and greater than zero".to_string(),
        });
    }
    Ok(())
}

/// Checks that a weight or tolerance is finite and not negative.
pub fn check_nonnegative<T: Scalar>(name: &str, value: T) -> Result<()> {
    if !(value.is_finite() && value >= T::zero()) {
        return Err(Error::InvalidParameter {
            name: name.to_string(),
            value: value.to_f64_lossless(),
            requirement: "must be finite and not negative".to_string(),
        });
    }
    Ok(())
}

/// Converts a step size given as `f64` to the scalar type `T` and checks
/// that it is finite and strictly positive both before and after the
/// conversion: `1e-50` is a valid `f64` step but rounds to zero in `f32`.
pub fn step_in<T: Scalar>(name: &str, value: f64) -> Result<T> {
    check_positive(name, value)?;
    let converted = T::lit(value);
    if !(converted.is_finite() && converted > T::zero()) {
        return Err(Error::InvalidParameter {
            name: name.to_string(),
            value,
            requirement: format!(
                "must be finite and greater than zero in {}, where it becomes {converted}; \
                 choose a value between {:e} and {:e}",
                T::NAME,
                T::min_positive_value().to_f64_lossless(),
                T::max_value().to_f64_lossless()
            ),
        });
    }
    Ok(converted)
}

/// Checks that a step size computed by a splitting's default rule is finite
/// and strictly positive. Norm estimates near the limits of the scalar type
/// make the rule overflow or underflow. `source` names the estimates the
/// step came from, for the message.
pub fn check_computed_step<T: Scalar>(algorithm: &str, name: &str, value: T, source: &str) -> Result<()> {
    if value.is_finite() && value > T::zero() {
        return Ok(());
    }
    Err(Error::Numerical {
        what: format!("step {name} of {algorithm}"),
        reason: format!(
            "the default rule gave {value} in {} from {source}; rescale the operators or the smooth term \
             so that their norms are far from the overflow and underflow limits of {}, or pass the step explicitly",
            T::NAME,
            T::NAME
        ),
    })
}
