use faer::dyn_stack::{MemStack, StackReq};
use faer::{Accum, MatMut, MatRef, Par};
use optlayer_core::{Operator, Parameterized, Scalar};

/// The vertical stack `[K_1; K_2; …]` of operators with one input dimension,
/// as a borrowed view; used to estimate `‖[K_1; K_2; …]‖₂`.
pub struct StackedOperator<'a, T: Scalar> {
    parts: Vec<&'a dyn Operator<T>>,
    ncols: usize,
}

impl<'a, T: Scalar> StackedOperator<'a, T> {
    /// Stacks `parts`, which must share one input dimension `ncols`.
    ///
    /// # Panics
    /// If a part's input dimension differs from `ncols`.
    pub fn new(parts: Vec<&'a dyn Operator<T>>, ncols: usize) -> Self {
        for part in &parts {
            assert_eq!(
                part.ncols(),
                ncols,
                "stacked operators must share one input dimension"
            );
        }
        Self { parts, ncols }
    }
}

impl<T: Scalar> Parameterized<T> for StackedOperator<'_, T> {}

impl<T: Scalar> Operator<T> for StackedOperator<'_, T> {
    fn nrows(&self) -> usize {
        self.parts.iter().map(|p| p.nrows()).sum()
    }

    fn ncols(&self) -> usize {
        self.ncols
    }

    fn apply_scratch(&self, batch: usize, par: Par) -> StackReq {
        StackReq::any_of(
            &self
                .parts
                .iter()
                .map(|p| p.apply_scratch(batch, par))
                .collect::<Vec<_>>(),
        )
    }

    fn apply(
        &self,
        out: MatMut<'_, T>,
        accum: Accum,
        alpha: T,
        x: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        let mut rest = out;
        for part in &self.parts {
            let (head, tail) = rest.split_at_row_mut(part.nrows());
            part.apply(head, accum, alpha, x, par, stack);
            rest = tail;
        }
    }

    fn apply_adjoint(
        &self,
        mut out: MatMut<'_, T>,
        accum: Accum,
        alpha: T,
        y: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        let mut offset = 0;
        for (i, part) in self.parts.iter().enumerate() {
            let rows = part.nrows();
            let part_accum = if i == 0 { accum } else { Accum::Add };
            part.apply_adjoint(
                out.as_mut(),
                part_accum,
                alpha,
                y.subrows(offset, rows),
                par,
                stack,
            );
            offset += rows;
        }
    }
}
