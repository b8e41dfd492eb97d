use faer::{Mat, MatMut, MatRef};
use optlayer_core::validate::{check_finite, check_nonempty, check_nonnegative};
use optlayer_core::{Parameterized, Prox, Result, Scalar};

use super::PointSource;

/// The squared distance `g(x) = (w/2) ‖x − c‖²` from a point `c` that is
/// fixed or read from each sample's data, such as the data-fidelity term
/// `½‖Ax − d‖²` of an inverse problem written as the block `(A, g)` of a
/// splitting.
///
/// Its prox is `prox_{γg}(v) = (v + γw c)/(1 + γw)`, smooth in `v` with
/// derivative `1/(1 + γw)`; `γ = 0` gives the identity.
#[derive(Clone, Debug, PartialEq)]
pub struct SquaredDistance<T: Scalar> {
    weight: T,
    source: PointSource<T>,
}

impl<T: Scalar> SquaredDistance<T> {
    /// Creates `g(x) = (weight/2) ‖x − d‖²` with `d` the rows
    /// `offset..offset + len` of each sample's data.
    ///
    /// # Errors
    /// When `len` is zero, `offset + len` exceeds `usize::MAX`, or `weight`
    /// is negative or not finite.
    pub fn from_data(weight: T, offset: usize, len: usize) -> Result<Self> {
        check_nonnegative("squared distance weight", weight)?;
        Ok(Self {
            weight,
            source: PointSource::data_rows("the point", offset, len)?,
        })
    }

    /// Creates `g(x) = (weight/2) ‖x − point‖²`, the same for every sample.
    ///
    /// # Errors
    /// When `point` is empty or has a non-finite entry, or `weight` is
    /// negative or not finite.
    pub fn fixed(weight: T, point: Vec<T>) -> Result<Self> {
        check_nonnegative("squared distance weight", weight)?;
        let column = Mat::from_fn(point.len(), 1, |i, _| point[i]);
        check_nonempty("point (transposed)", column.as_ref().transpose())?;
        check_finite("point", column.as_ref())?;
        Ok(Self {
            weight,
            source: PointSource::Fixed(point),
        })
    }

    fn point(&self, data: MatRef<'_, T>, row: usize, col: usize) -> T {
        match &self.source {
            PointSource::Data { offset, .. } => data[(offset + row, col)],
            PointSource::Fixed(point) => point[row],
        }
    }
}

impl<T: Scalar> Parameterized<T> for SquaredDistance<T> {}

impl<T: Scalar> Prox<T> for SquaredDistance<T> {
    fn is_separable(&self) -> bool {
        true
    }

    fn dim(&self) -> Option<usize> {
        match &self.source {
            PointSource::Data { len, .. } => Some(*len),
            PointSource::Fixed(point) => Some(point.len()),
        }
    }

    fn data_rows_needed(&self) -> usize {
        match &self.source {
            PointSource::Data { offset, len } => offset + len,
            PointSource::Fixed(_) => 0,
        }
    }

    fn value(&self, x: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        let distance = optlayer_core::columns::norm2(
            (0..x.nrows()).map(|row| x[(row, col)] - self.point(data, row, col)),
        );
        Some(self.weight * distance * distance / T::lit(2.0))
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, data: MatRef<'_, T>) {
        let gw = gamma * self.weight;
        let scale = (T::one() + gw).recip();
        for col in 0..v.ncols() {
            for row in 0..v.nrows() {
                out[(row, col)] = (v[(row, col)] + gw * self.point(data, row, col)) * scale;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use faer::mat;
    use optlayer_testing::fd::{FdOptions, check_prox_vjp};
    use optlayer_testing::random::gaussian;

    #[test]
    fn prox_known_answer() {
        // (w/2)(x − d)² with w = 2, γ = 0.5 at v = 3, d = 1: (3 + 1·1)/2 = 2.
        let g = SquaredDistance::from_data(2.0, 1, 1).unwrap();
        let data = mat![[9.0], [1.0]];
        let mut out = Mat::zeros(1, 1);
        g.prox(out.as_mut(), mat![[3.0]].as_ref(), 0.5, data.as_ref());
        assert_eq!(out[(0, 0)], 2.0);
        assert_eq!(g.value(mat![[3.0]].as_ref(), data.as_ref(), 0), Some(4.0));
        // γ = 0 is the identity.
        g.prox(out.as_mut(), mat![[3.0]].as_ref(), 0.0, data.as_ref());
        assert_eq!(out[(0, 0)], 3.0);
    }

    #[test]
    fn fixed_point_and_optimality() {
        // The prox output x satisfies (v − x)/γ = w (x − c).
        let g = SquaredDistance::fixed(1.5, vec![1.0, -2.0, 0.5]).unwrap();
        let v = gaussian(3, 2, 1);
        let mut x = Mat::zeros(3, 2);
        let empty = Mat::<f64>::zeros(0, 2);
        g.prox(x.as_mut(), v.as_ref(), 0.7, empty.as_ref());
        for j in 0..2 {
            for (i, c) in [1.0, -2.0, 0.5].into_iter().enumerate() {
                let lhs = (v[(i, j)] - x[(i, j)]) / 0.7;
                assert!((lhs - 1.5 * (x[(i, j)] - c)).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let g = SquaredDistance::from_data(0.8, 0, 4).unwrap();
        let v = gaussian(4, 3, 2);
        let data = gaussian(4, 3, 3);
        let c = gaussian(4, 3, 4);
        let check = check_prox_vjp(
            &g,
            v.as_ref(),
            1.3,
            data.as_ref(),
            c.as_ref(),
            &FdOptions::default(),
        );
        assert!(check.passes(1e-7), "{check:?}");
        assert_eq!(check.checked, 12, "{check:?}");
    }

    #[test]
    fn rejects_bad_input() {
        assert!(SquaredDistance::<f64>::from_data(-1.0, 0, 2).is_err());
        assert!(SquaredDistance::<f64>::from_data(1.0, 0, 0).is_err());
        assert!(SquaredDistance::<f64>::fixed(1.0, vec![]).is_err());
        assert!(SquaredDistance::<f64>::fixed(f64::NAN, vec![1.0]).is_err());
        assert!(SquaredDistance::<f64>::fixed(1.0, vec![f64::INFINITY]).is_err());
    }
}
