use faer::dyn_stack::MemStack;
use faer::prelude::ReborrowMut;
use faer::{Accum, MatMut, MatRef, Par};
use optlayer_core::{Error, Operator, Parameterized, Result, Scalar};

/// The forward-difference operator `D` on `R^n`, an `n x n` matrix with
///
/// ```text
/// (D x)_i = x_{i+1} − x_i   for i < n − 1,
/// (D x)_{n−1} = 0,
/// ```
///
/// the one-dimensional form of the discrete gradient of A. Chambolle, "An
/// Algorithm for Total Variation Minimization and Applications", Journal of
/// Mathematical Imaging and Vision 20, 2004, which sets the difference at
/// the last index to zero. Then `‖D x‖₁` is the total variation of `x`. The
/// adjoint is `(Dᵀ y)_j = y_{j−1} − y_j`, where `y_{−1} = 0` and the term
/// `y_j` is dropped for `j = n − 1`; `−Dᵀ` is the discrete divergence.
///
/// Both products run in `O(n)` per column and need no scratch memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardDifference {
    dim: usize,
}

impl ForwardDifference {
    /// Creates the forward difference on vectors of length `dim`; `dim = 1`
    /// gives the zero operator.
    ///
    /// # Errors
    /// When `dim` is zero.
    pub fn new(dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(Error::Empty {
                what: "dimension of the forward difference".into(),
                fix: "pass a dimension of at least 1".into(),
            });
        }
        Ok(Self { dim })
    }

    /// Returns the spectral norm `‖D‖₂ = 2 cos(π / (2n))`, exactly.
    ///
    /// `DᵀD` is the Laplacian of the path graph on `n` nodes, whose largest
    /// eigenvalue is `2 + 2 cos(π/n) = 4 cos²(π/(2n))`.
    pub fn spectral_norm<T: Scalar>(&self) -> T {
        if self.dim == 1 {
            return T::zero();
        }
        let angle = std::f64::consts::PI / (2.0 * self.dim as f64);
        T::lit(2.0 * angle.cos())
    }
}

/// Writes `out = alpha · value` or adds it, for one entry.
#[inline(always)]
fn store<T: Scalar>(out: &mut T, accum: Accum, alpha: T, value: T) {
    match accum {
        Accum::Replace => *out = alpha * value,
        Accum::Add => *out += alpha * value,
    }
}

impl<T: Scalar> Parameterized<T> for ForwardDifference {}

impl<T: Scalar> Operator<T> for ForwardDifference {
    fn nrows(&self) -> usize {
        self.dim
    }

    fn ncols(&self) -> usize {
        self.dim
    }

    fn apply(
        &self,
        mut out: MatMut<'_, T>,
        accum: Accum,
        alpha: T,
        x: MatRef<'_, T>,
        _par: Par,
        _stack: &mut MemStack,
    ) {
        let n = self.dim;
        let inner = n - 1;
        faer::zip!(
            out.rb_mut().subrows_mut(0, inner),
            x.subrows(1, inner),
            x.subrows(0, inner)
        )
        .for_each(|faer::unzip!(o, next, here)| store(o, accum, alpha, *next - *here));
        if accum == Accum::Replace {
            out.subrows_mut(inner, 1).fill(T::zero());
        }
    }

    fn apply_adjoint(
        &self,
        mut out: MatMut<'_, T>,
        accum: Accum,
        alpha: T,
        y: MatRef<'_, T>,
        _par: Par,
        _stack: &mut MemStack,
    ) {
        let n = self.dim;
        if n == 1 {
            if accum == Accum::Replace {
                out.fill(T::zero());
            }
            return;
        }
        // Row 0 has −y_0, rows 1..n−1 have y_{j−1} − y_j, row n − 1 has y_{n−2}.
        faer::zip!(out.rb_mut().subrows_mut(0, 1), y.subrows(0, 1))
            .for_each(|faer::unzip!(o, first)| store(o, accum, alpha, -*first));
        faer::zip!(
            out.rb_mut().subrows_mut(1, n - 2),
            y.subrows(0, n - 2),
            y.subrows(1, n - 2)
        )
        .for_each(|faer::unzip!(o, previous, here)| store(o, accum, alpha, *previous - *here));
        faer::zip!(out.subrows_mut(n - 1, 1), y.subrows(n - 2, 1))
            .for_each(|faer::unzip!(o, last)| store(o, accum, alpha, *last));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::dyn_stack::MemBuffer;
    use faer::{Mat, mat};

    fn apply(op: &ForwardDifference, x: &Mat<f64>, adjoint: bool, accum: Accum, out: &mut Mat<f64>) {
        let mut buffer = MemBuffer::new(Operator::<f64>::apply_scratch(op, x.ncols(), Par::Seq));
        let stack = MemStack::new(&mut buffer);
        if adjoint {
            op.apply_adjoint(out.as_mut(), accum, 2.0, x.as_ref(), Par::Seq, stack);
        } else {
            op.apply(out.as_mut(), accum, 2.0, x.as_ref(), Par::Seq, stack);
        }
    }

    fn dot(a: &Mat<f64>, b: &Mat<f64>) -> f64 {
        (0..a.nrows()).map(|i| a[(i, 0)] * b[(i, 0)]).sum()
    }

    #[test]
    fn dot_test_known_number() {
        // Dx = [1, 2, 3, 0] and Dᵀy = [−1, 2, −3, 2]: both products are 5.
        let op = ForwardDifference::new(4).unwrap();
        let x = mat![[1.0], [2.0], [4.0], [7.0]];
        let y = mat![[1.0], [-1.0], [2.0], [5.0]];
        let mut dx = Mat::zeros(4, 1);
        let mut dty = Mat::zeros(4, 1);
        let mut stack_buffer = MemBuffer::new(faer::dyn_stack::StackReq::EMPTY);
        let stack = MemStack::new(&mut stack_buffer);
        op.apply(dx.as_mut(), Accum::Replace, 1.0, x.as_ref(), Par::Seq, stack);
        op.apply_adjoint(dty.as_mut(), Accum::Replace, 1.0, y.as_ref(), Par::Seq, stack);
        assert_eq!(dx, mat![[1.0], [2.0], [3.0], [0.0]]);
        assert_eq!(dty, mat![[-1.0], [2.0], [-3.0], [2.0]]);
        assert_eq!(dot(&dx, &y), 5.0);
        assert_eq!(dot(&x, &dty), 5.0);
    }

    #[test]
    fn alpha_and_accumulation() {
        // out starts at 1: Add gives 1 + 2·(Dx), Replace gives 2·(Dx).
        let op = ForwardDifference::new(3).unwrap();
        let x = mat![[1.0, 0.0], [3.0, -1.0], [2.0, 5.0]];
        let mut out = Mat::from_fn(3, 2, |_, _| 1.0);
        apply(&op, &x, false, Accum::Add, &mut out);
        assert_eq!(out, mat![[5.0, -1.0], [-1.0, 13.0], [1.0, 1.0]]);
        apply(&op, &x, false, Accum::Replace, &mut out);
        assert_eq!(out, mat![[4.0, -2.0], [-2.0, 12.0], [0.0, 0.0]]);

        // Dᵀ y for y = x: [−1, 1 − 3, 3] and [0, 0 + 1, −1], doubled.
        let mut out = Mat::from_fn(3, 2, |_, _| 1.0);
        apply(&op, &x, true, Accum::Add, &mut out);
        assert_eq!(out, mat![[-1.0, 1.0], [-3.0, 3.0], [7.0, -1.0]]);
        apply(&op, &x, true, Accum::Replace, &mut out);
        assert_eq!(out, mat![[-2.0, 0.0], [-4.0, 2.0], [6.0, -2.0]]);
    }

    #[test]
    fn dimension_one_is_zero_operator() {
        let op = ForwardDifference::new(1).unwrap();
        let x = mat![[3.0, -2.0]];
        let mut out = Mat::from_fn(1, 2, |_, _| 7.0);
        apply(&op, &x, false, Accum::Replace, &mut out);
        assert_eq!(out, mat![[0.0, 0.0]]);
        let mut out = Mat::from_fn(1, 2, |_, _| 7.0);
        apply(&op, &x, true, Accum::Add, &mut out);
        assert_eq!(out, mat![[7.0, 7.0]]);
        apply(&op, &x, true, Accum::Replace, &mut out);
        assert_eq!(out, mat![[0.0, 0.0]]);
        assert_eq!(op.spectral_norm::<f64>(), 0.0);
    }

    #[test]
    fn dimension_two_adjoint() {
        // D = [[−1, 1], [0, 0]], Dᵀ y = [−y₀, y₀].
        let op = ForwardDifference::new(2).unwrap();
        let y = mat![[3.0], [100.0]];
        let mut out = Mat::zeros(2, 1);
        apply(&op, &y, true, Accum::Replace, &mut out);
        assert_eq!(out, mat![[-6.0], [6.0]]);
    }

    #[test]
    fn spectral_norm_matches_power_iteration() {
        for n in [2, 3, 10, 40] {
            let op = ForwardDifference::new(n).unwrap();
            let exact: f64 = op.spectral_norm();
            let estimate: f64 = op.norm_estimate(20_000, 1e-13, 1);
            assert!(estimate <= exact * (1.0 + 1e-12), "n = {n}: {estimate} > {exact}");
            assert!(
                (exact - estimate) / exact < 1e-4,
                "n = {n}: {estimate} vs {exact}"
            );
        }
        assert!((ForwardDifference::new(2).unwrap().spectral_norm::<f64>() - 2f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn zero_dimension_rejected() {
        assert!(matches!(ForwardDifference::new(0), Err(Error::Empty { .. })));
    }
}
