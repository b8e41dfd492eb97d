mod dense;
mod difference;
mod identity;
mod learnable;

pub use dense::Dense;
pub use difference::ForwardDifference;
pub use identity::Identity;
pub use learnable::{LearnableDense, Normalization};

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use optlayer_core::Scalar;

/// The widest batch whose adjoint product runs on the transposed copy of a
/// dense matrix.
///
/// With faer 0.24, `Mᵀ Y` with `Mᵀ` stored column-major takes about half the
/// time of the same product on the transposed view of `M` for 2 to 4
/// columns, and 5% to 10% less at 32 columns. From about 64 columns on, the
/// two take the same time; docs/benchmarks.md has the figures. Both give the
/// same result bit for bit for 2 columns or more. A single column takes
/// another kernel, whose rounding differs, so it always uses the view.
pub const TRANSPOSED_COPY_MAX_COLUMNS: usize = 48;

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

/// Computes `out = alpha * Mᵀ y` or `out += alpha * Mᵀ y`, on the transposed
/// copy when there is a current one and `y` has 2 to
/// [`TRANSPOSED_COPY_MAX_COLUMNS`] columns, and on the transposed view of `m`
/// otherwise.
fn dense_apply_adjoint<T: Scalar>(
    out: MatMut<'_, T>,
    accum: Accum,
    alpha: T,
    m: MatRef<'_, T>,
    copy: Option<&TransposedCopy<T>>,
    y: MatRef<'_, T>,
    par: Par,
) {
    let lhs = match copy {
        Some(copy) if copy.current && (2..=TRANSPOSED_COPY_MAX_COLUMNS).contains(&y.ncols()) => {
            copy.matrix.as_ref()
        }
        _ => m.transpose(),
    };
    matmul(out, accum, lhs, y, alpha, par);
}

/// `Mᵀ` stored column-major beside a dense matrix `M`, for the adjoint
/// products of narrow batches.
#[derive(Clone, Debug)]
struct TransposedCopy<T: Scalar> {
    matrix: Mat<T>,
    /// False from the moment `M` may have been written until the next
    /// [`refresh`](Self::refresh); the products then use the view of `M`.
    current: bool,
}

impl<T: Scalar> TransposedCopy<T> {
    fn of(m: MatRef<'_, T>) -> Self {
        Self {
            matrix: m.transpose().to_owned(),
            current: true,
        }
    }

    /// Copies `m` transposed into the existing storage, without allocating.
    fn refresh(&mut self, m: MatRef<'_, T>) {
        self.matrix.as_mut().copy_from(m.transpose());
        self.current = true;
    }
}
