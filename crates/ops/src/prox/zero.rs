use faer::{MatMut, MatRef};
use optlayer_core::{Parameterized, Prox, Scalar};

/// The zero function, whose prox is the identity; for blocks that carry a
/// variable without regularizing it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Zero;

impl<T: Scalar> Parameterized<T> for Zero {}

impl<T: Scalar> Prox<T> for Zero {
    fn value(&self, _x: MatRef<'_, T>, _data: MatRef<'_, T>, _col: usize) -> Option<T> {
        Some(T::zero())
    }

    fn prox(&self, out: MatMut<'_, T>, v: MatRef<'_, T>, _gamma: T, _data: MatRef<'_, T>) {
        faer::zip!(out, v).for_each(|faer::unzip!(o, v)| *o = *v);
    }

    fn prox_vjp(
        &self,
        v_bar: MatMut<'_, T>,
        _v: MatRef<'_, T>,
        _gamma: T,
        _data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        faer::zip!(v_bar, cotangent).for_each(|faer::unzip!(o, c)| *o = *c);
    }
}
