use faer::{MatMut, MatRef};
use optlayer_core::{Entrywise, Parameterized, Prox, Scalar};

/// The zero function, whose prox is the identity; for blocks that carry a
/// variable without regularizing it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Zero;

impl<T: Scalar> Parameterized<T> for Zero {}

impl<T: Scalar> Prox<T> for Zero {
    fn is_separable(&self) -> bool {
        true
    }

    fn value(&self, _x: MatRef<'_, T>, _data: MatRef<'_, T>, _col: usize) -> Option<T> {
        Some(T::zero())
    }

    fn entrywise(&self, _gamma: T) -> Option<Entrywise<T>> {
        Some(Entrywise::Identity)
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

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;

    #[test]
    fn value_is_zero() {
        let x = Mat::from_fn(2, 2, |i, j| (1 + i + 2 * j) as f64);
        assert_eq!(
            Zero.value(x.as_ref(), Mat::<f64>::zeros(0, 2).as_ref(), 1),
            Some(0.0)
        );
    }
}
