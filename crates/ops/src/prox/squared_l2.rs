use faer::{MatMut, MatRef};
use optlayer_core::validate::check_nonnegative;
use optlayer_core::{Parameterized, Prox, Result, Scalar, columns};

/// The squared Euclidean norm `g(x) = (w/2) ‖x‖²`, whose prox is the scaling
/// `prox_{γg}(v) = v / (1 + γw)`; smooth, so models built on it have
/// differentiable fixed points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SquaredL2<T> {
    weight: T,
}

impl<T: Scalar> SquaredL2<T> {
    /// Creates `g(x) = (weight/2) ‖x‖²`.
    ///
    /// # Errors
    /// When `weight` is negative or not finite.
    pub fn new(weight: T) -> Result<Self> {
        check_nonnegative("squared l2 weight", weight)?;
        Ok(Self { weight })
    }
}

impl<T: Scalar> Parameterized<T> for SquaredL2<T> {}

impl<T: Scalar> Prox<T> for SquaredL2<T> {
    /// Returns `(w/2) ‖x‖²`, with the norm computed with scaling.
    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> Option<T> {
        let norm = columns::col_norm2(x, col);
        Some(self.weight * T::lit(0.5) * norm * norm)
    }

    fn prox(&self, out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, _data: MatRef<'_, T>) {
        let scale = (T::one() + gamma * self.weight).recip();
        faer::zip!(out, v).for_each(|faer::unzip!(o, v)| *o = scale * *v);
    }

    fn prox_vjp(
        &self,
        v_bar: MatMut<'_, T>,
        _v: MatRef<'_, T>,
        gamma: T,
        _data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        let scale = (T::one() + gamma * self.weight).recip();
        faer::zip!(v_bar, cotangent).for_each(|faer::unzip!(o, c)| *o = scale * *c);
    }
}
