//! The scalar trait every numerical type in optlayer is generic over.

use core::fmt::{Debug, Display};

/// A real floating-point scalar: `f32` or `f64`.
///
/// It joins faer's [`RealField`](faer::traits::RealField), which is neither
/// `Copy` nor [`num_traits::Float`], with those bounds, so generic code can use
/// faer's kernels and the usual float methods on one type.
pub trait Scalar:
    faer::traits::RealField
    + num_traits::Float
    + num_traits::FromPrimitive
    + Copy
    + Send
    + Sync
    + Debug
    + Display
    + Default
    + 'static
{
    /// The numpy dtype descriptor of this type in little-endian byte order.
    const NPY_DESCR: &'static str;

    /// The Rust name of the type, for messages and reports.
    const NAME: &'static str;

    /// Converts an `f64` literal or setting to this type, rounding to nearest.
    fn lit(value: f64) -> Self;

    /// Converts to `f64` exactly (for reports, messages and file output).
    fn to_f64_lossless(self) -> f64;
}

impl Scalar for f64 {
    const NPY_DESCR: &'static str = "<f8";
    const NAME: &'static str = "f64";

    #[inline(always)]
    fn lit(value: f64) -> Self {
        value
    }

    #[inline(always)]
    fn to_f64_lossless(self) -> f64 {
        self
    }
}

impl Scalar for f32 {
    const NPY_DESCR: &'static str = "<f4";
    const NAME: &'static str = "f32";

    #[inline(always)]
    fn lit(value: f64) -> Self {
        value as f32
    }

    #[inline(always)]
    fn to_f64_lossless(self) -> f64 {
        f64::from(self)
    }
}
