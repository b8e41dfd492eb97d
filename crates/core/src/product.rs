//! Products of dense matrices with batches, shared by the dense operators
//! and by splittings that multiply several operators at once.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use crate::Scalar;

/// Minimum number of columns of a product that [`dense_product`] splits into chunks.
const CHUNK_FROM: usize = 13;
/// Maximum number of columns of a product that [`dense_product`] splits into chunks.
const CHUNK_UNTIL: usize = 64;
/// Widest chunk of a split product.
const CHUNK_WIDTH: usize = 12;
/// Narrowest chunk of a split product (see [`chunk_width`]).
const NARROWEST_CHUNK: usize = 4;
/// faer 0.24 computes products of `m·n·k` up to this size with another
/// kernel family, whose rounding differs.
const SMALL_PRODUCT: usize = 16 * 16 * 16;

/// Returns whether faer 0.24 multiplies an `rows x cols` matrix by two
/// columns or more with its blocked kernel at every width, so that a
/// column's result does not depend on how many columns are multiplied with
/// it: at least two rows and two columns and more than 2,048 entries.
/// Smaller matrices take a kernel for small products, which rounds
/// differently, up to `rows·cols·n = 4,096` for `n` columns.
pub fn same_kernel_at_every_width(rows: usize, cols: usize) -> bool {
    rows >= 2 && cols >= 2 && rows.saturating_mul(cols).saturating_mul(2) > SMALL_PRODUCT
}

/// Computes `out = alpha * M x` or `out += alpha * M x` with faer's kernel.
/// `out` must be `M.nrows() x x.ncols()` and `x` must have `M.ncols()` rows;
/// faer panics otherwise.
///
/// On one thread, with `M` stored column-major and `x` of 13 to 64 columns,
/// the product runs as several calls on chunks of at most 12 columns. For
/// more than 12 columns faer 0.24 copies `M` into a packed buffer first,
/// which a column-major `M` does not need. On chunks of 12 or fewer it
/// reads `M` in place. On an AMD EPYC (Zen 4) with AVX-512 this saves 7%
/// to 10% at 13 columns, 3% to 4% at 32 and 1% to 2% at 64 for the shapes
/// of the sparse inverse problem (`cargo bench --bench throughput`). At 100
/// columns chunks gain nothing, and at 1,000 they took 7% longer. Each entry
/// is the same sum in the same order either way, so the result is equal
/// bit for bit. Chunks are at least 4 columns wide, and chunking is skipped
/// where such a chunk would take another of faer's kernels (`m·4·k` of
/// 4,096 or less, or `M` with one row or column).
///
/// NOTE: the time was measured on Zen 4 only. On processors without AVX-512
/// faer takes its AVX2 kernel, whose packing rule is the same, but the gain
/// there is not measured.
pub fn dense_product<T: Scalar>(
    mut out: MatMut<'_, T>,
    accum: Accum,
    alpha: T,
    m: MatRef<'_, T>,
    x: MatRef<'_, T>,
    par: Par,
) {
    let columns = x.ncols();
    let split = matches!(par, Par::Seq)
        && m.row_stride() == 1
        && (CHUNK_FROM..=CHUNK_UNTIL).contains(&columns)
        && m.nrows() >= 2
        && m.ncols() >= 2
        && m.nrows()
            .saturating_mul(NARROWEST_CHUNK)
            .saturating_mul(m.ncols())
            > SMALL_PRODUCT;
    if !split {
        matmul(out, accum, m, x, alpha, par);
        return;
    }
    let mut start = 0;
    while start < columns {
        let width = chunk_width(columns - start);
        matmul(
            out.as_mut().subcols_mut(start, width),
            accum,
            m,
            x.subcols(start, width),
            alpha,
            Par::Seq,
        );
        start += width;
    }
}

/// Returns the width of the next chunk when `left` columns remain: 12, but
/// 8 when a chunk of 12 would leave fewer than [`NARROWEST_CHUNK`] columns,
/// and all of them when 12 or fewer remain. Chunks are then at least 4
/// columns wide.
fn chunk_width(left: usize) -> usize {
    if left <= CHUNK_WIDTH {
        left
    } else if left - CHUNK_WIDTH < NARROWEST_CHUNK {
        8
    } else {
        CHUNK_WIDTH
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random<T: Scalar>(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Mat<T> {
        Mat::from_fn(rows, cols, |_, _| T::lit(rng.random_range(-1.0..1.0)))
    }

    fn bits_equal<T: Scalar>(a: MatRef<'_, T>, b: MatRef<'_, T>) -> bool {
        (0..a.ncols()).all(|j| {
            (0..a.nrows())
                .all(|i| a[(i, j)].to_f64_lossless().to_bits() == b[(i, j)].to_f64_lossless().to_bits())
        })
    }

    #[test]
    fn chunks_cover_the_columns() {
        for columns in CHUNK_FROM..=CHUNK_UNTIL {
            let mut widths = Vec::new();
            let mut left = columns;
            while left > 0 {
                let width = chunk_width(left);
                widths.push(width);
                left -= width;
            }
            assert!(widths.len() >= 2, "{columns} columns: {widths:?}");
            assert!(
                widths
                    .iter()
                    .all(|&w| (NARROWEST_CHUNK..=CHUNK_WIDTH).contains(&w)),
                "{columns} columns: {widths:?}"
            );
        }
    }

    /// Checks that the chunked product equals one call of faer's product bit
    /// for bit, on shapes on both sides of every threshold of `dense_product`.
    fn chunked_equals_one_call<T: Scalar>() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let shapes = [
            (2, 2),
            (2, 600),
            (600, 2),
            (16, 16),
            (17, 16),
            (16, 17),
            (100, 250),
            (250, 250),
            (250, 100),
            (31, 700),
        ];
        for (rows, inner) in shapes {
            let m = random::<T>(&mut rng, rows, inner);
            for columns in [1, 2, 12, 13, 14, 15, 16, 17, 25, 28, 32, 47, 63, 64, 65, 100] {
                let x = random::<T>(&mut rng, inner, columns);
                let start = random::<T>(&mut rng, rows, columns);
                for accum in [Accum::Replace, Accum::Add] {
                    let alpha = T::lit(-0.75);
                    let mut expected = start.clone();
                    matmul(expected.as_mut(), accum, m.as_ref(), x.as_ref(), alpha, Par::Seq);
                    let mut found = start.clone();
                    dense_product(found.as_mut(), accum, alpha, m.as_ref(), x.as_ref(), Par::Seq);
                    assert!(
                        bits_equal(found.as_ref(), expected.as_ref()),
                        "{rows} x {inner} times {columns} columns, {accum:?}"
                    );
                    // A row-major left operand, which is never chunked.
                    let mt = m.transpose().to_owned();
                    let mut found = start.clone();
                    dense_product(found.as_mut(), accum, alpha, mt.transpose(), x.as_ref(), Par::Seq);
                    let mut expected = start.clone();
                    matmul(
                        expected.as_mut(),
                        accum,
                        mt.transpose(),
                        x.as_ref(),
                        alpha,
                        Par::Seq,
                    );
                    assert!(
                        bits_equal(found.as_ref(), expected.as_ref()),
                        "{rows} x {inner} (row-major) times {columns} columns, {accum:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn chunked_product_equals_one_call_f32() {
        chunked_equals_one_call::<f32>();
    }

    #[test]
    fn chunked_product_equals_one_call_f64() {
        chunked_equals_one_call::<f64>();
    }
}
