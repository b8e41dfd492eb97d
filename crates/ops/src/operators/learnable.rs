use faer::dyn_stack::MemStack;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use optlayer_core::validate::{check_finite, check_nonempty};
use optlayer_core::warm_start::{check_warm_start_count, decode_warm_start_vector, encode_warm_start_vector};
use optlayer_core::{
    Error, Operator, ParamInfo, Parameterized, Result, Scalar, power_iteration, power_iteration_from,
};

use super::{TransposedCopy, adjoint_operand};
use optlayer_core::product::dense_product;

/// The rescaling of a [`LearnableDense`] matrix after every parameter update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Normalization {
    /// No rescaling.
    None,
    /// Divide by the spectral norm, estimated by power iteration warm-started
    /// from the previous estimate's singular vector.
    ///
    /// Models whose minimizer does not change when Θ is scaled (such as
    /// `min ‖Θx‖₁ s.t. Ax = d`) lose nothing by it, and the bound `‖Θ‖₂ = 1`
    /// keeps the step sizes of a splitting valid while Θ is trained.
    UnitSpectralNorm {
        /// Maximum power iterations per update.
        max_iters: usize,
        /// Relative change of the estimate at which power iteration stops.
        rel_tol: f64,
    },
}

impl Normalization {
    /// Unit spectral norm with 300 power iterations at most and a relative
    /// tolerance of 1e-9.
    pub fn unit_spectral_norm() -> Self {
        Normalization::UnitSpectralNorm {
            max_iters: 300,
            rel_tol: 1e-9,
        }
    }
}

/// A dense matrix Θ that is a learnable parameter.
///
/// Its gradients are `∂⟨G, Θ X⟩/∂Θ = G Xᵀ` and `∂⟨H, Θᵀ Y⟩/∂Θ = Y Hᵀ`, each
/// summed over the batch by one matrix product.
///
/// Like [`Dense`](super::Dense), it keeps a transposed copy of Θ for adjoint
/// products, unless built
/// [`without_transposed_copy`](Self::without_transposed_copy). Writing Θ
/// through [`param_mut`](Parameterized::param_mut) marks the copy out of
/// date, so products use the transposed view of Θ until
/// [`after_param_update`](Parameterized::after_param_update) or
/// [`set_warm_start_state`](Parameterized::set_warm_start_state) copies Θ
/// again. For most shapes the view gives the same bits. For some matrices
/// with one or two rows or columns, the last bit of some results differs.
#[derive(Clone, Debug)]
pub struct LearnableDense<T: Scalar> {
    name: String,
    matrix: Mat<T>,
    transposed: Option<TransposedCopy<T>>,
    normalization: Normalization,
    /// Right singular vector estimate from the last normalization, the warm
    /// start of the next one.
    power_vector: Option<Mat<T>>,
}

impl<T: Scalar> LearnableDense<T> {
    /// Creates the parameter `name` with initial value `matrix` and no normalization.
    ///
    /// # Errors
    /// When the matrix is empty or has a non-finite entry.
    pub fn new(name: impl Into<String>, matrix: Mat<T>) -> Result<Self> {
        check_nonempty("learnable matrix", matrix.as_ref())?;
        check_nonempty("learnable matrix (transposed)", matrix.as_ref().transpose())?;
        check_finite("learnable matrix", matrix.as_ref())?;
        let transposed = Some(TransposedCopy::of(matrix.as_ref()));
        Ok(Self {
            name: name.into(),
            matrix,
            transposed,
            normalization: Normalization::None,
            power_vector: None,
        })
    }

    /// Sets the normalization and applies it to the current value.
    ///
    /// # Errors
    /// When the matrix is zero, so it cannot be normalized.
    pub fn with_normalization(mut self, normalization: Normalization) -> Result<Self> {
        self.normalization = normalization;
        self.normalize()?;
        self.refresh_transposed();
        Ok(self)
    }

    /// Drops the transposed copy, which takes as much memory as Θ. Adjoint
    /// products then run on the transposed view, which takes more time for
    /// narrow batches.
    pub fn without_transposed_copy(mut self) -> Self {
        self.transposed = None;
        self
    }

    /// Returns the parameter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the matrix.
    pub fn matrix(&self) -> MatRef<'_, T> {
        self.matrix.as_ref()
    }

    /// Returns the normalization.
    pub fn normalization(&self) -> Normalization {
        self.normalization
    }

    fn refresh_transposed(&mut self) {
        if let Some(copy) = self.transposed.as_mut() {
            copy.refresh(self.matrix.as_ref());
        }
    }

    fn normalize(&mut self) -> Result<()> {
        let Normalization::UnitSpectralNorm { max_iters, rel_tol } = self.normalization else {
            return Ok(());
        };
        let (norm, vector) = match self.power_vector.take() {
            Some(start) => power_iteration_from(&*self, start, max_iters, rel_tol),
            None => power_iteration(&*self, max_iters, rel_tol, 0),
        };
        if !(norm.is_finite() && norm > T::zero()) {
            return Err(Error::Numerical {
                what: format!("spectral normalization of '{}'", self.name),
                reason: format!("the norm estimate is {norm}; the matrix must be nonzero and finite"),
            });
        }
        // A matrix already at unit norm, within the accuracy of the estimate,
        // is left as it is, so normalizing twice changes nothing.
        let accuracy = T::lit(100.0 * rel_tol).max(T::lit(16.0) * T::epsilon());
        if (norm - T::one()).abs() > accuracy {
            let inv = norm.recip();
            faer::zip!(self.matrix.as_mut()).for_each(|faer::unzip!(v)| *v *= inv);
        }
        self.power_vector = Some(vector);
        Ok(())
    }
}

impl<T: Scalar> Parameterized<T> for LearnableDense<T> {
    fn param_count(&self) -> usize {
        1
    }

    fn param_info(&self, index: usize) -> ParamInfo {
        assert_eq!(
            index, 0,
            "LearnableDense has one parameter, index {index} is out of range"
        );
        ParamInfo {
            name: self.name.clone(),
            nrows: self.matrix.nrows(),
            ncols: self.matrix.ncols(),
        }
    }

    fn param(&self, index: usize) -> MatRef<'_, T> {
        assert_eq!(
            index, 0,
            "LearnableDense has one parameter, index {index} is out of range"
        );
        self.matrix.as_ref()
    }

    fn param_mut(&mut self, index: usize) -> MatMut<'_, T> {
        assert_eq!(
            index, 0,
            "LearnableDense has one parameter, index {index} is out of range"
        );
        if let Some(copy) = self.transposed.as_mut() {
            copy.current = false;
        }
        self.matrix.as_mut()
    }

    fn after_param_update(&mut self) -> Result<()> {
        if let Some((row, col, value)) = optlayer_core::columns::first_non_finite(self.matrix.as_ref()) {
            return Err(Error::NonFiniteGradient {
                what: "parameter".into(),
                param: self.name.clone(),
                row,
                col,
                value: value.to_f64_lossless(),
            });
        }
        self.normalize()?;
        self.refresh_transposed();
        Ok(())
    }

    /// Returns the singular vector that warm-starts the next normalization
    /// as one matrix, or an empty list without normalization.
    fn warm_start_state(&self) -> Vec<Mat<T>> {
        match self.normalization {
            Normalization::None => Vec::new(),
            Normalization::UnitSpectralNorm { .. } => {
                vec![encode_warm_start_vector(self.power_vector.as_ref())]
            }
        }
    }

    fn set_warm_start_state(&mut self, state: &[Mat<T>]) -> Result<()> {
        let what = format!("parameter '{}'", self.name);
        let expected = self.warm_start_state().len();
        check_warm_start_count(&what, state, expected)?;
        if let [vector] = state {
            let what = format!("power-iteration vector of parameter '{}'", self.name);
            self.power_vector = decode_warm_start_vector(&what, vector, self.matrix.ncols())?;
        }
        // Restoring a checkpoint writes Θ through `param_mut` and ends here,
        // without `after_param_update`. Copying Θ now makes the restored
        // model multiply as the uninterrupted run did.
        self.refresh_transposed();
        Ok(())
    }
}

impl<T: Scalar> Operator<T> for LearnableDense<T> {
    fn nrows(&self) -> usize {
        self.matrix.nrows()
    }

    fn ncols(&self) -> usize {
        self.matrix.ncols()
    }

    fn apply(
        &self,
        out: MatMut<'_, T>,
        accum: Accum,
        alpha: T,
        x: MatRef<'_, T>,
        par: Par,
        _stack: &mut MemStack,
    ) {
        dense_product(out, accum, alpha, self.matrix.as_ref(), x, par);
    }

    fn dense(&self) -> Option<MatRef<'_, T>> {
        Some(self.matrix.as_ref())
    }

    fn apply_adjoint(
        &self,
        out: MatMut<'_, T>,
        accum: Accum,
        alpha: T,
        y: MatRef<'_, T>,
        par: Par,
        _stack: &mut MemStack,
    ) {
        let lhs = adjoint_operand(self.matrix.as_ref(), self.transposed.as_ref(), y.ncols());
        dense_product(out, accum, alpha, lhs, y, par);
    }

    fn accumulate_grad(&self, grads: &mut [Mat<T>], alpha: T, g: MatRef<'_, T>, x: MatRef<'_, T>, par: Par) {
        matmul(grads[0].as_mut(), Accum::Add, g, x.transpose(), alpha, par);
    }

    fn accumulate_grad_adjoint(
        &self,
        grads: &mut [Mat<T>],
        alpha: T,
        h: MatRef<'_, T>,
        y: MatRef<'_, T>,
        par: Par,
    ) {
        matmul(grads[0].as_mut(), Accum::Add, y, h.transpose(), alpha, par);
    }
}
