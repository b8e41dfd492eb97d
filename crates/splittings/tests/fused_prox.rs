//! Linearized ADMM evaluates a prox with an entry-wise form
//! (`Prox::entrywise`) inside one pass with its own updates. These tests
//! compare that pass with the three separate passes around `Prox::prox`,
//! which the same model takes when its proxes hide their forms: the states
//! must agree bit for bit.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::{Mat, MatMut, MatRef, Par};
use optlayer_core::{Prox, Scalar, Splitting};
use optlayer_ops::{BoxSet, Dense, IndicatorPoint, L1Norm, LinfBall, Zero};
use optlayer_splittings::{Block, LadmmSteps, LinearizedAdmm};
use optlayer_testing::prox_checks::HiddenForm;
use optlayer_testing::random::gaussian;

const N: usize = 37;
const DATA_ROWS: usize = 14;
const LAMBDA: f64 = 0.8;

fn cast<T: Scalar>(m: &Mat<f64>) -> Mat<T> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| T::lit(m[(i, j)]))
}

/// A model with one block of every entry-wise form: an ℓ1 norm, the point
/// of data rows 2 to 12, a box, the zero function and an ℓ∞ ball. With
/// `opaque`, the same proxes hide their forms.
fn model<T: Scalar>(opaque: bool) -> LinearizedAdmm<T> {
    let operator = |rows: usize, seed: u64| {
        let scale = 1.0 / (N as f64).sqrt();
        Dense::new(cast::<T>(&(gaussian(rows, N, seed).as_ref() * scale))).unwrap()
    };
    fn block<T: Scalar>(op: Dense<T>, prox: impl Prox<T> + 'static, opaque: bool) -> Block<T> {
        if opaque {
            Block::new(op, HiddenForm(prox))
        } else {
            Block::new(op, prox)
        }
    }
    let blocks = vec![
        block(operator(N, 1), L1Norm::new(T::lit(0.7)).unwrap(), opaque),
        block(operator(11, 2), IndicatorPoint::from_data(2, 11).unwrap(), opaque),
        block(
            operator(9, 3),
            BoxSet::uniform(T::lit(-0.3), T::lit(0.4)).unwrap(),
            opaque,
        ),
        block(operator(5, 4), Zero, opaque),
        block(operator(6, 5), LinfBall::new(T::lit(0.2)).unwrap(), opaque),
    ];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 0.05,
        lambda: LAMBDA,
    };
    LinearizedAdmm::new(N, DATA_ROWS, blocks, steps).unwrap()
}

/// Runs 25 steps of both models from the same random state, with the state
/// and data stored column-major or row-major, and compares every state.
fn compare<T: Scalar>(row_major: bool) {
    let (fused, separate) = (model::<T>(false), model::<T>(true));
    for block in fused.blocks() {
        assert!(block.prox().entrywise(T::lit(LAMBDA)).is_some());
    }
    for block in separate.blocks() {
        assert!(block.prox().entrywise(T::lit(LAMBDA)).is_none());
    }
    let batch = 7;
    let dim = fused.state_dim();
    let store = |m: Mat<T>| if row_major { m.transpose().to_owned() } else { m };
    fn view<T>(m: &Mat<T>, row_major: bool) -> MatRef<'_, T> {
        if row_major { m.transpose() } else { m.as_ref() }
    }
    fn view_mut<T>(m: &mut Mat<T>, row_major: bool) -> MatMut<'_, T> {
        if row_major {
            m.as_mut().transpose_mut()
        } else {
            m.as_mut()
        }
    }
    let data = store(cast::<T>(&gaussian(DATA_ROWS, batch, 6)));
    let start = store(cast::<T>(&gaussian(dim, batch, 7)));
    let mut states = [start.clone(), start.clone(), start.clone(), start];
    let mut buffer = MemBuffer::new(fused.step_scratch(batch, Par::Seq));
    let stack = MemStack::new(&mut buffer);
    for iteration in 0..25 {
        let [z_fused, next_fused, z_separate, next_separate] = &mut states;
        let d = view(&data, row_major);
        fused.step(
            view_mut(next_fused, row_major),
            view(z_fused, row_major),
            d,
            Par::Seq,
            stack,
        );
        separate.step(
            view_mut(next_separate, row_major),
            view(z_separate, row_major),
            d,
            Par::Seq,
            stack,
        );
        let (a, b) = (view(next_fused, row_major), view(next_separate, row_major));
        for j in 0..batch {
            for i in 0..dim {
                assert_eq!(
                    a[(i, j)].to_f64_lossless().to_bits(),
                    b[(i, j)].to_f64_lossless().to_bits(),
                    "iteration {iteration}, entry ({i}, {j}), row-major {row_major}"
                );
            }
        }
        states.swap(0, 1);
        states.swap(2, 3);
    }
}

#[test]
fn fused_pass_matches_f64() {
    compare::<f64>(false);
}

#[test]
fn fused_pass_matches_f32() {
    compare::<f32>(false);
}

#[test]
fn fused_pass_on_row_major_states() {
    compare::<f64>(true);
    compare::<f32>(true);
}
