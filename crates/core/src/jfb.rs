//! Jacobian-free backpropagation (JFB).

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::{Mat, MatMut, MatRef, Par};

use crate::validate::check_shape;
use crate::{Error, ForwardResult, Gradients, OptLayer, Result, Scalar, Splitting, check_gradients};

/// A loss on a batch of primal outputs: given `x` (`primal_dim x batch`), it
/// writes `∂loss/∂x` into its second argument and returns the loss.
pub type LossFn<'a, T> = dyn FnMut(MatRef<'_, T>, MatMut<'_, T>) -> T + 'a;

/// The value of a JFB backward pass.
#[derive(Clone, Debug)]
pub struct JfbOutput<T: Scalar> {
    /// The loss at `x⁺`.
    pub loss: T,
    /// `x⁺`, the primal part of `T(z*)`, where the loss was evaluated.
    pub x: Mat<T>,
}

/// Gradients by Jacobian-free backpropagation.
///
/// At the fixed point `z*` of the forward pass, JFB evaluates the loss at
/// `x⁺ = primal(T_Θ(z*; d))` and treats `z*` as a constant:
///
/// `∇_Θ ≈ (∂T/∂Θ)ᵀ E (∂loss/∂x⁺)`, where `E` embeds the primal cotangent in the state.
///
/// This is one call to [`Splitting::step_vjp`], so memory and time do not
/// depend on how many iterations the forward pass took. It drops the factor
/// `(I − ∂T/∂z)⁻ᵀ` of the implicit-function gradient. It is a descent
/// direction when `T` is contractive enough (Fung et al., "JFB: Jacobian-Free
/// Backpropagation for Implicit Networks", AAAI 2022).
pub trait FixedPointJfb {
    /// The scalar type.
    type Real: Scalar;

    /// Evaluates `loss` at `x⁺ = primal(T(z*; d))` and adds the JFB gradient
    /// to `grads`.
    ///
    /// `forward` must come from this layer on `data` with its current
    /// parameters: the backward pass uses the step sizes recorded there.
    ///
    /// # Errors
    /// - [`Error::StaleForward`](crate::Error::StaleForward) when the forward
    ///   result comes from another layer or another data batch, or the step
    ///   sizes or parameters changed since it was computed;
    /// - a shape error when `forward`, `data` or `grads` do not match the layer;
    /// - [`Error::NonFiniteGradient`](crate::Error::NonFiniteGradient) when the
    ///   loss or the gradient is not finite.
    ///
    /// On error, `grads` is unchanged.
    fn jfb_gradient(
        &self,
        forward: &ForwardResult<Self::Real>,
        data: MatRef<'_, Self::Real>,
        loss: &mut LossFn<'_, Self::Real>,
        grads: &mut Gradients<Self::Real>,
    ) -> Result<JfbOutput<Self::Real>>;
}

impl<T: Scalar, Alg: Splitting<Real = T>> FixedPointJfb for OptLayer<Alg> {
    type Real = T;

    fn jfb_gradient(
        &self,
        forward: &ForwardResult<T>,
        data: MatRef<'_, T>,
        loss: &mut LossFn<'_, T>,
        grads: &mut Gradients<T>,
    ) -> Result<JfbOutput<T>> {
        let splitting = self.splitting();
        self.check_data(data)?;
        check_shape(
            "forward state",
            forward.state.as_ref(),
            splitting.state_dim(),
            data.ncols(),
        )?;
        self.check_forward_is_current(forward, data)?;
        check_gradients(splitting, grads)?;

        let batch = data.ncols();
        let par = if self.options().threads > 1 {
            Par::rayon(self.options().threads)
        } else {
            Par::Seq
        };
        let z_next = self.apply_step(forward.state.as_ref(), data, par)?;
        let rows = splitting.primal_rows();
        let x_next = splitting.primal(z_next.as_ref()).to_owned();

        let mut cotangent = Mat::<T>::zeros(splitting.state_dim(), batch);
        let loss_value = loss(
            x_next.as_ref(),
            cotangent.as_mut().subrows_mut(rows.start, rows.len()),
        );

        if !loss_value.is_finite() {
            return Err(Error::NonFiniteGradient {
                what: "loss".into(),
                param: "(the loss itself)".into(),
                row: 0,
                col: 0,
                value: loss_value.to_f64_lossless(),
            });
        }

        // Accumulate into a fresh buffer, so that a non-finite result leaves
        // the caller's gradients unchanged.
        let mut local = Gradients::zeros_for(splitting);
        let mut buffer = MemBuffer::new(splitting.step_vjp_scratch(batch, par));
        let stack = MemStack::new(&mut buffer);
        splitting.step_vjp(
            None,
            forward.state.as_ref(),
            data,
            cotangent.as_ref(),
            Some(local.tensors_mut()),
            par,
            stack,
        );
        local.check_finite()?;
        for (total, part) in grads.tensors_mut().iter_mut().zip(local.tensors()) {
            faer::zip!(total.as_mut(), part.as_ref()).for_each(|faer::unzip!(t, p)| *t += *p);
        }
        Ok(JfbOutput {
            loss: loss_value,
            x: x_next,
        })
    }
}

/// Returns the mean squared error `mean((x − target)²)` over all entries and
/// writes its gradient `2 (x − target) / len` into `grad`.
///
/// # Panics
/// If the three shapes differ; the callers in optlayer check them first.
pub fn mse_loss<T: Scalar>(x: MatRef<'_, T>, target: MatRef<'_, T>, mut grad: MatMut<'_, T>) -> T {
    assert_eq!(x.shape(), target.shape(), "mse_loss: x and target shapes differ");
    assert_eq!(x.shape(), grad.shape(), "mse_loss: x and gradient shapes differ");
    let count = T::from_usize(x.nrows() * x.ncols())
        .unwrap_or_else(T::one)
        .max(T::one());
    let scale = T::lit(2.0) / count;
    let mut sum = T::zero();
    for col in 0..x.ncols() {
        for row in 0..x.nrows() {
            let diff = x[(row, col)] - target[(row, col)];
            sum += diff * diff;
            grad[(row, col)] = scale * diff;
        }
    }
    sum / count
}

/// Returns the mean squared error `mean((x − target)²)` over all entries.
///
/// # Panics
/// If the shapes differ.
pub fn mse<T: Scalar>(x: MatRef<'_, T>, target: MatRef<'_, T>) -> T {
    assert_eq!(x.shape(), target.shape(), "mse: x and target shapes differ");
    let count = T::from_usize(x.nrows() * x.ncols())
        .unwrap_or_else(T::one)
        .max(T::one());
    let mut sum = T::zero();
    for col in 0..x.ncols() {
        for row in 0..x.nrows() {
            let diff = x[(row, col)] - target[(row, col)];
            sum += diff * diff;
        }
    }
    sum / count
}
