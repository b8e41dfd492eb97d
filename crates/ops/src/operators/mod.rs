mod dense;
mod difference;
mod identity;
mod learnable;

pub use dense::Dense;
pub use difference::ForwardDifference;
pub use identity::Identity;
pub use learnable::{LearnableDense, Normalization};

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use optlayer_core::Scalar;

/// Computes `out = alpha * M x` or `out += alpha * M x` with faer's kernel.
fn dense_apply<T: Scalar>(
    out: MatMut<'_, T>,
    accum: Accum,
    alpha: T,
    m: MatRef<'_, T>,
    x: MatRef<'_, T>,
    par: Par,
) {
    matmul(out, accum, m, x, alpha, par);
}
