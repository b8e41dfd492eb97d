//! Helpers shared by the projections onto closed convex sets.

use optlayer_core::Scalar;

/// Returns the tolerance `√ε · (1 + scale)` within which a point counts as
/// a member of a set whose defining quantities have magnitude `scale`.
///
/// A projection rounded to the working precision lands within a few `ε` of
/// its set, so `√ε` accepts it with a wide margin while still rejecting
/// points that are clearly outside.
pub(crate) fn membership_tolerance<T: Scalar>(scale: T) -> T {
    T::epsilon().sqrt() * (T::one() + scale)
}

/// Returns the value of an indicator function: zero inside, infinity outside.
pub(crate) fn indicator_value<T: Scalar>(inside: bool) -> T {
    if inside { T::zero() } else { T::infinity() }
}

pub(crate) use optlayer_core::prox::clip;

/// Returns whether `lower < v < upper`, where the derivative of [`clip`] is 1.
#[inline(always)]
pub(crate) fn inside_open_interval<T: Scalar>(v: T, lower: T, upper: T) -> bool {
    lower < v && v < upper
}
