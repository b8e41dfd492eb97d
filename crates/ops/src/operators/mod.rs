mod dense;
mod difference;
mod identity;
mod learnable;

pub use dense::Dense;
pub use difference::ForwardDifference;
pub use identity::Identity;
pub use learnable::{LearnableDense, Normalization};

use faer::{Mat, MatRef};
use optlayer_core::Scalar;

/// Returns the left operand of `Mᵀ Y` for a `Y` of `columns` columns: the
/// transposed copy when there is a current one and `columns` is two or more,
/// and the transposed view of `m` otherwise.
///
/// With faer 0.24, `Mᵀ Y` with `Mᵀ` stored column-major takes about half the
/// time of the same product on the transposed view of `M` for 2 to 4
/// columns, and 5% to 10% less at 32 columns. From about 64 columns on, the
/// two take the same time; docs/benchmarks.md has the figures. The copy is
/// used at every width of two columns or more, so that a column's result
/// does not depend on how many columns are multiplied with it. A single
/// column takes another kernel, whose rounding differs, so it always uses
/// the view.
///
/// The two give the same result bit for bit for most shapes, but not all.
/// For some matrices with one or two rows or columns the last bit differs.
fn adjoint_operand<'a, T: Scalar>(
    m: MatRef<'a, T>,
    copy: Option<&'a TransposedCopy<T>>,
    columns: usize,
) -> MatRef<'a, T> {
    match copy {
        Some(copy) if copy.current && columns >= 2 => copy.matrix.as_ref(),
        _ => m.transpose(),
    }
}

/// `Mᵀ` stored column-major beside a dense matrix `M`, for adjoint products
/// of two columns or more.
#[derive(Clone, Debug)]
struct TransposedCopy<T: Scalar> {
    matrix: Mat<T>,
    /// False from the moment `M` may have been written until the next
    /// [`refresh`](Self::refresh). Products then use the view of `M`.
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
