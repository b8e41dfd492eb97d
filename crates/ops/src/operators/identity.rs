use faer::dyn_stack::MemStack;
use faer::{Accum, MatMut, MatRef, Par};
use optlayer_core::{Operator, Parameterized, Scalar};

/// The identity map on `R^dim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    dim: usize,
}

impl Identity {
    /// Creates the identity on vectors of length `dim`.
    pub fn new(dim: usize) -> Self {
        Self { dim }
    }
}

impl<T: Scalar> Parameterized<T> for Identity {}

impl<T: Scalar> Operator<T> for Identity {
    fn nrows(&self) -> usize {
        self.dim
    }

    fn ncols(&self) -> usize {
        self.dim
    }

    fn apply(
        &self,
        out: MatMut<'_, T>,
        accum: Accum,
        alpha: T,
        x: MatRef<'_, T>,
        _par: Par,
        _stack: &mut MemStack,
    ) {
        match accum {
            Accum::Replace => faer::zip!(out, x).for_each(|faer::unzip!(o, x)| *o = alpha * *x),
            Accum::Add => faer::zip!(out, x).for_each(|faer::unzip!(o, x)| *o += alpha * *x),
        }
    }

    fn apply_adjoint(
        &self,
        out: MatMut<'_, T>,
        accum: Accum,
        alpha: T,
        y: MatRef<'_, T>,
        par: Par,
        stack: &mut MemStack,
    ) {
        self.apply(out, accum, alpha, y, par, stack);
    }
}
