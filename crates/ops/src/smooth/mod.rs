mod least_squares;
mod quadratic;

pub use least_squares::LeastSquares;
pub use quadratic::Quadratic;

/// Central finite-difference checks of a [`Smooth`](optlayer_core::Smooth)
/// term's gradient and Hessian-vector product, shared by the tests of both terms.
#[cfg(test)]
mod checks {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::{Mat, MatRef, Par};
    use optlayer_core::Smooth;

    /// Returns `∇f(x; d)` with freshly allocated scratch.
    pub fn gradient<T: optlayer_core::Scalar>(
        f: &dyn Smooth<T>,
        x: MatRef<'_, T>,
        data: MatRef<'_, T>,
    ) -> Mat<T> {
        let mut out = Mat::zeros(x.nrows(), x.ncols());
        let mut buffer = MemBuffer::new(f.scratch(x.ncols(), Par::Seq));
        f.gradient(out.as_mut(), x, data, Par::Seq, MemStack::new(&mut buffer));
        out
    }

    /// Returns `∇²f(x; d) v` with freshly allocated scratch.
    pub fn hessian_vjp<T: optlayer_core::Scalar>(
        f: &dyn Smooth<T>,
        x: MatRef<'_, T>,
        data: MatRef<'_, T>,
        v: MatRef<'_, T>,
    ) -> Mat<T> {
        let mut out = Mat::zeros(x.nrows(), x.ncols());
        let mut buffer = MemBuffer::new(f.scratch(x.ncols(), Par::Seq));
        f.hessian_vjp(out.as_mut(), x, data, v, Par::Seq, MemStack::new(&mut buffer));
        out
    }

    /// Returns `‖∇f − fd‖ / ‖fd‖`, where `fd` contains the central differences of
    /// `value` in every entry of `x`, with step `eps`.
    pub fn gradient_error(f: &dyn Smooth<f64>, x: MatRef<'_, f64>, data: MatRef<'_, f64>, eps: f64) -> f64 {
        let analytic = gradient(f, x, data);
        let mut point = x.to_owned();
        let fd = Mat::from_fn(x.nrows(), x.ncols(), |i, j| {
            let original = point[(i, j)];
            point[(i, j)] = original + eps;
            let plus = f.value(point.as_ref(), data, j);
            point[(i, j)] = original - eps;
            let minus = f.value(point.as_ref(), data, j);
            point[(i, j)] = original;
            (plus - minus) / (2.0 * eps)
        });
        (&analytic - &fd).norm_l2() / fd.norm_l2()
    }

    /// Returns `‖∇²f v − fd‖ / ‖fd‖` with `fd = (∇f(x + εv) − ∇f(x − εv)) / (2ε)`.
    pub fn hessian_error(
        f: &dyn Smooth<f64>,
        x: MatRef<'_, f64>,
        data: MatRef<'_, f64>,
        v: MatRef<'_, f64>,
        eps: f64,
    ) -> f64 {
        let analytic = hessian_vjp(f, x, data, v);
        let shifted =
            |sign: f64| Mat::from_fn(x.nrows(), x.ncols(), |i, j| x[(i, j)] + sign * eps * v[(i, j)]);
        let plus = gradient(f, shifted(1.0).as_ref(), data);
        let minus = gradient(f, shifted(-1.0).as_ref(), data);
        let fd = Mat::from_fn(x.nrows(), x.ncols(), |i, j| {
            (plus[(i, j)] - minus[(i, j)]) / (2.0 * eps)
        });
        (&analytic - &fd).norm_l2() / fd.norm_l2()
    }
}
