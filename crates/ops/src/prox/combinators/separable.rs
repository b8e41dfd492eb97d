use std::ops::Range;

use faer::prelude::ReborrowMut;
use faer::{Mat, MatMut, MatRef};
use optlayer_core::{Error, ParamInfo, Parameterized, Prox, Result, Scalar, split_grads};

use super::describe;

/// One term `f_k(x_{R_k})` of a [`SeparableSum`]: a prox and the contiguous
/// rows `R_k` it acts on.
pub struct SeparableBlock<T: Scalar> {
    rows: Range<usize>,
    prox: Box<dyn Prox<T>>,
}

impl<T: Scalar> SeparableBlock<T> {
    /// Creates the term `f(x_rows)` with `f` given by `prox`.
    pub fn new(rows: Range<usize>, prox: impl Prox<T> + 'static) -> Self {
        Self::from_boxed(rows, Box::new(prox))
    }

    /// Creates the term from a boxed prox.
    pub fn from_boxed(rows: Range<usize>, prox: Box<dyn Prox<T>>) -> Self {
        Self { rows, prox }
    }

    /// Returns the rows the term acts on.
    pub fn rows(&self) -> Range<usize> {
        self.rows.clone()
    }

    /// Returns the prox of the term.
    pub fn prox(&self) -> &dyn Prox<T> {
        &*self.prox
    }
}

impl<T: Scalar> std::fmt::Debug for SeparableBlock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeparableBlock")
            .field("rows", &self.rows)
            .field("prox", &describe(&*self.prox))
            .finish()
    }
}

/// The separable sum `g(x) = Σ_k f_k(x_{R_k})` over disjoint contiguous row
/// ranges `R_k` that cover `0..n`, whose prox applies each term's prox to
/// its own rows: `prox_{γg}(v)_{R_k} = prox_{γ f_k}(v_{R_k})`.
///
/// The Jacobian is block diagonal, with each block's Jacobian and its
/// elements at kinks. Every term receives the whole data batch, so a
/// data-dependent term reads the data rows it names. Parameters are listed
/// block after block, in the order the blocks were given.
///
/// The sum is separable entry by entry when every block is, and the
/// indicator of the product of the blocks' sets when every block is an
/// indicator.
#[derive(Debug)]
pub struct SeparableSum<T: Scalar> {
    dim: usize,
    blocks: Vec<SeparableBlock<T>>,
}

impl<T: Scalar> SeparableSum<T> {
    /// Creates the sum on vectors of length `dim` from `blocks`, listed in
    /// the order of their rows.
    ///
    /// # Errors
    /// - [`Error::Empty`] when `blocks` is empty or a block has no rows;
    /// - [`Error::InvalidValue`] when the ranges leave a gap, overlap, are
    ///   not in ascending order, or do not end at `dim`;
    /// - [`Error::ShapeMismatch`] when a block's prox is defined on another
    ///   dimension than the length of its rows;
    /// - [`Error::DuplicateParameter`] when two blocks have parameters of one name.
    pub fn new(dim: usize, blocks: Vec<SeparableBlock<T>>) -> Result<Self> {
        if blocks.is_empty() {
            return Err(Error::Empty {
                what: "block list of the separable sum".into(),
                fix: "pass at least one block".into(),
            });
        }
        let mut next = 0;
        let mut names: Vec<String> = Vec::new();
        for (k, block) in blocks.iter().enumerate() {
            check_block_rows(k, &block.rows, next)?;
            let len = block.rows.len();
            if let Some(prox_dim) = block.prox.dim()
                && prox_dim != len
            {
                return Err(Error::ShapeMismatch {
                    what: format!("prox of separable block {k}"),
                    expected: format!("dimension {len} (the length of rows {:?})", block.rows),
                    found: format!("dimension {prox_dim}"),
                });
            }
            for index in 0..block.prox.param_count() {
                let name = block.prox.param_info(index).name;
                if names.contains(&name) {
                    return Err(Error::DuplicateParameter { name });
                }
                names.push(name);
            }
            next = block.rows.end;
        }
        if next != dim {
            return Err(Error::InvalidValue {
                name: "rows of the last separable block".into(),
                value: format!("{:?}", blocks[blocks.len() - 1].rows),
                requirement: format!(
                    "the blocks must cover rows 0..{dim} without gaps or overlaps, but they end at row {next}; \
                     extend the last block or add one"
                ),
            });
        }
        Ok(Self { dim, blocks })
    }

    /// Returns the blocks.
    pub fn blocks(&self) -> &[SeparableBlock<T>] {
        &self.blocks
    }

    /// Returns the block holding model-wide parameter `index` and the index
    /// within the block.
    fn locate_param(&self, index: usize) -> (usize, usize) {
        let mut start = 0;
        for (k, block) in self.blocks.iter().enumerate() {
            let count = block.prox.param_count();
            if index < start + count {
                return (k, index - start);
            }
            start += count;
        }
        panic!("parameter index {index} out of range: the separable sum has {start} parameters")
    }
}

/// Checks that block `k` is nonempty and starts at row `start`, where the
/// previous block ends.
fn check_block_rows(k: usize, rows: &Range<usize>, start: usize) -> Result<()> {
    if rows.is_empty() {
        return Err(Error::Empty {
            what: format!("rows {rows:?} of separable block {k}"),
            fix: "give every block at least one row, or remove it".into(),
        });
    }
    if rows.start == start {
        return Ok(());
    }
    let defect = if rows.start > start {
        format!("rows {start}..{} belong to no block", rows.start)
    } else {
        format!("rows {}..{start} belong to an earlier block as well", rows.start)
    };
    Err(Error::InvalidValue {
        name: format!("rows of separable block {k}"),
        value: format!("{rows:?}"),
        requirement: format!(
            "must start at row {start}, where the previous block ends, because {defect}; \
             list the blocks in row order without gaps or overlaps"
        ),
    })
}

impl<T: Scalar> Parameterized<T> for SeparableSum<T> {
    fn param_count(&self) -> usize {
        self.blocks.iter().map(|b| b.prox.param_count()).sum()
    }

    fn param_info(&self, index: usize) -> ParamInfo {
        let (k, local) = self.locate_param(index);
        self.blocks[k].prox.param_info(local)
    }

    fn param(&self, index: usize) -> MatRef<'_, T> {
        let (k, local) = self.locate_param(index);
        self.blocks[k].prox.param(local)
    }

    fn param_mut(&mut self, index: usize) -> MatMut<'_, T> {
        let (k, local) = self.locate_param(index);
        self.blocks[k].prox.param_mut(local)
    }

    fn after_param_update(&mut self) -> Result<()> {
        for block in &mut self.blocks {
            block.prox.after_param_update()?;
        }
        Ok(())
    }

    /// Returns the blocks' states, one block after another.
    fn warm_start_state(&self) -> Vec<Mat<T>> {
        self.blocks
            .iter()
            .flat_map(|b| b.prox.warm_start_state())
            .collect()
    }

    fn set_warm_start_state(&mut self, state: &[Mat<T>]) -> Result<()> {
        let previous: Vec<Vec<Mat<T>>> = self.blocks.iter().map(|b| b.prox.warm_start_state()).collect();
        let blocks = &mut self.blocks;
        optlayer_core::warm_start::set_parts_warm_start_state(
            "the separable sum",
            &previous,
            state,
            |k, part| blocks[k].prox.set_warm_start_state(part),
        )
    }
}

impl<T: Scalar> Prox<T> for SeparableSum<T> {
    fn dim(&self) -> Option<usize> {
        Some(self.dim)
    }

    fn is_separable(&self) -> bool {
        self.blocks.iter().all(|b| b.prox.is_separable())
    }

    fn is_indicator(&self) -> bool {
        self.blocks.iter().all(|b| b.prox.is_indicator())
    }

    fn data_rows_needed(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| b.prox.data_rows_needed())
            .max()
            .unwrap_or(0)
    }

    /// Returns `Σ_k f_k(x_{R_k})`, or `None` when a term has no value.
    fn value(&self, x: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        let mut sum = T::zero();
        for block in &self.blocks {
            let rows = x.subrows(block.rows.start, block.rows.len());
            sum += block.prox.value(rows, data, col)?;
        }
        Some(sum)
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, data: MatRef<'_, T>) {
        for block in &self.blocks {
            let (start, len) = (block.rows.start, block.rows.len());
            block.prox.prox(
                out.rb_mut().subrows_mut(start, len),
                v.subrows(start, len),
                gamma,
                data,
            );
        }
    }

    fn prox_vjp(
        &self,
        mut v_bar: MatMut<'_, T>,
        v: MatRef<'_, T>,
        gamma: T,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        for block in &self.blocks {
            let (start, len) = (block.rows.start, block.rows.len());
            block.prox.prox_vjp(
                v_bar.rb_mut().subrows_mut(start, len),
                v.subrows(start, len),
                gamma,
                data,
                cotangent.subrows(start, len),
            );
        }
    }

    fn accumulate_grad(
        &self,
        grads: &mut [Mat<T>],
        v: MatRef<'_, T>,
        gamma: T,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        let mut rest = grads;
        for block in &self.blocks {
            let (own, tail) = split_grads(rest, block.prox.param_count());
            let (start, len) = (block.rows.start, block.rows.len());
            block.prox.accumulate_grad(
                own,
                v.subrows(start, len),
                gamma,
                data,
                cotangent.subrows(start, len),
            );
            rest = tail;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IndicatorPoint, L1Norm, Simplex, SquaredL2, Zero};
    use faer::mat;

    fn example() -> SeparableSum<f64> {
        SeparableSum::new(
            6,
            vec![
                SeparableBlock::new(0..2, L1Norm::new(1.0).unwrap()),
                SeparableBlock::new(2..4, Simplex),
                SeparableBlock::new(4..5, SquaredL2::new(3.0).unwrap()),
                SeparableBlock::new(5..6, IndicatorPoint::from_data(1, 1).unwrap()),
            ],
        )
        .unwrap()
    }

    #[test]
    fn separable_sum_known_values() {
        // γ = 0.5: soft-threshold at 0.5, simplex projection, scaling by
        // 1/(1 + 1.5), and the data entry of row 1.
        let g = example();
        assert_eq!(g.data_rows_needed(), 2);
        let v = mat![[2.0], [-0.25], [1.5], [0.5], [5.0], [7.0]];
        let data = mat![[0.0], [-3.0]];
        let mut out = Mat::zeros(6, 1);
        g.prox(out.as_mut(), v.as_ref(), 0.5, data.as_ref());
        assert_eq!(out, mat![[1.5], [0.0], [1.0], [0.0], [2.0], [-3.0]]);
        // g(out) = 1.5 + 0 (on the simplex) + 1.5 · 4 + 0 (at the point).
        assert_eq!(g.value(out.as_ref(), data.as_ref(), 0), Some(7.5));
        let off_point = mat![[1.5], [0.0], [1.0], [0.0], [2.0], [0.0]];
        assert_eq!(g.value(off_point.as_ref(), data.as_ref(), 0), Some(f64::INFINITY));
    }

    #[test]
    fn separable_vjp_is_block_diagonal() {
        let g = example();
        let v = mat![[2.0], [-0.25], [0.6], [0.58], [5.0], [7.0]];
        let c = mat![[1.0], [1.0], [1.0], [0.0], [1.0], [1.0]];
        let mut v_bar = Mat::zeros(6, 1);
        g.prox_vjp(
            v_bar.as_mut(),
            v.as_ref(),
            0.5,
            mat![[0.0], [1.0]].as_ref(),
            c.as_ref(),
        );
        // l1: [1, 0]; simplex with both entries active: c − mean(c) = [0.5, −0.5];
        // scaling 0.4; point: 0.
        assert_eq!(v_bar, mat![[1.0], [0.0], [0.5], [-0.5], [0.4], [0.0]]);
    }

    #[test]
    fn parameters_listed_block_by_block() {
        let mut g = SeparableSum::new(
            3,
            vec![
                SeparableBlock::new(0..1, L1Norm::learnable("a", 0.5).unwrap()),
                SeparableBlock::new(1..2, Zero),
                SeparableBlock::new(2..3, L1Norm::learnable("b", 0.25).unwrap()),
            ],
        )
        .unwrap();
        assert_eq!(g.param_count(), 2);
        assert_eq!(g.param_info(1).name, "b");
        assert_eq!(g.param(1)[(0, 0)], 0.25);
        g.param_mut(1)[(0, 0)] = -1.0;
        g.after_param_update().unwrap();
        assert_eq!(g.param(1)[(0, 0)], 0.0);

        // ∂⟨c, prox⟩/∂a = −γ sign(v₀) c₀ and ∂/∂b = 0 (row 2 is below its threshold 0).
        let v = mat![[2.0], [1.0], [-3.0]];
        let c = mat![[2.0], [1.0], [1.0]];
        let mut grads = vec![Mat::zeros(1, 1), Mat::zeros(1, 1)];
        g.param_mut(1)[(0, 0)] = 4.0;
        g.accumulate_grad(&mut grads, v.as_ref(), 1.0, Mat::zeros(0, 1).as_ref(), c.as_ref());
        assert_eq!(grads[0][(0, 0)], -2.0);
        assert_eq!(grads[1][(0, 0)], 0.0);
    }

    #[test]
    fn gaps_overlaps_and_dims_rejected() {
        let l1 = || L1Norm::<f64>::new(1.0).unwrap();
        let gap = SeparableSum::new(
            4,
            vec![SeparableBlock::new(0..2, l1()), SeparableBlock::new(3..4, l1())],
        );
        let err = gap.unwrap_err();
        assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
        assert!(err.to_string().contains("rows 2..3 belong to no block"), "{err}");

        let overlap = SeparableSum::new(
            4,
            vec![SeparableBlock::new(0..3, l1()), SeparableBlock::new(2..4, l1())],
        );
        let err = overlap.unwrap_err();
        assert!(
            err.to_string().contains("rows 2..3 belong to an earlier block"),
            "{err}"
        );

        let short = SeparableSum::new(
            5,
            vec![SeparableBlock::new(0..2, l1()), SeparableBlock::new(2..4, l1())],
        );
        let err = short.unwrap_err();
        assert!(err.to_string().contains("cover rows 0..5"), "{err}");

        let late_start = SeparableSum::new(2, vec![SeparableBlock::new(1..2, l1())]);
        assert!(matches!(late_start, Err(Error::InvalidValue { .. })));

        let empty = SeparableSum::new(
            2,
            vec![SeparableBlock::new(0..0, l1()), SeparableBlock::new(0..2, l1())],
        );
        assert!(matches!(empty, Err(Error::Empty { .. })));
        assert!(matches!(
            SeparableSum::<f64>::new(0, vec![]),
            Err(Error::Empty { .. })
        ));

        let fixed_dim = L1Norm::with_weights(vec![1.0, 2.0, 3.0]).unwrap();
        let err = SeparableSum::new(
            4,
            vec![
                SeparableBlock::new(0..2, fixed_dim),
                SeparableBlock::new(2..4, l1()),
            ],
        )
        .unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");

        let duplicate = SeparableSum::new(
            2,
            vec![
                SeparableBlock::new(0..1, L1Norm::learnable("w", 1.0).unwrap()),
                SeparableBlock::new(1..2, L1Norm::learnable("w", 1.0).unwrap()),
            ],
        );
        assert!(matches!(duplicate, Err(Error::DuplicateParameter { .. })));
    }
}
