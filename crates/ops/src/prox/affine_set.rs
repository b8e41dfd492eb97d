use faer::linalg::matmul::dot::inner_prod;
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Conj, Mat, MatMut, MatRef};
use optlayer_core::columns::col_norm2;
use optlayer_core::validate::{check_finite, check_nonempty};
use optlayer_core::{Error, Parameterized, Prox, Result, Scalar};

use super::projection::{indicator_value, membership_tolerance};

/// The indicator of the affine set `{x : C x = b}`, for a `p x n` matrix `C`
/// of full row rank, whose prox is the Euclidean projection, for every `γ`,
///
/// `P(v) = v − Cᵀ(CCᵀ)⁻¹(C v − b)`.
///
/// The right-hand side `b` is fixed ([`AffineSet::new`]) or read from rows
/// `0..p` of each sample's data column ([`AffineSet::from_data`]), for the
/// equality constraint `Cx = d` of an inverse problem.
///
/// The map is affine, so its Jacobian is the constant symmetric projector
/// `I − Cᵀ(CCᵀ)⁻¹C` onto the null space of `C`, and it has no kinks. The
/// vector-Jacobian product applies this projector to the cotangent.
///
/// # Computation
/// The construction factorizes `Cᵀ = QR` (thin Householder QR, `Q` is
/// `n x p` with orthonormal columns `q_k`) and keeps the directions
/// `u_k = q_k / R_kk`. The projection then corrects one constraint at a
/// time, for `k = 0, …, p − 1`:
///
/// `x ← x − u_k (c_kᵀ x − b_k)`, starting from `x = v`,
///
/// where `c_kᵀ` is row `k` of `C`. Step `k` makes `c_kᵀ x = b_k`, because
/// `c_kᵀ u_k = 1`, and leaves the earlier rows satisfied, because `u_k` is
/// orthogonal to `c_0, …, c_{k−1}`, which span the same space as
/// `q_0, …, q_{k−1}`. Every step moves along the range of `Cᵀ`, so the
/// result is the projection. The sweep needs no workspace: each step reads
/// one scalar per column, so `prox` and `prox_vjp` do not allocate. It costs
/// `4np` operations per column, as many as applying `C` and `Cᵀ`. It never
/// forms `CCᵀ`, whose condition number is `κ(C)²`, and its error stays
/// below `10 κ(C) ε ‖x‖∞`, which a test checks in `f32` up to `κ(C) = 1e4`.
#[derive(Clone, Debug)]
pub struct AffineSet<T: Scalar> {
    /// `Cᵀ` (`n x p`): column `k` is row `k` of `C`.
    c_transpose: Mat<T>,
    /// `n x p`: column `k` is `u_k = q_k / R_kk`.
    directions: Mat<T>,
    rhs: RightHandSide<T>,
}

#[derive(Clone, Debug, PartialEq)]
enum RightHandSide<T> {
    Fixed(Vec<T>),
    Data,
}

/// Checks `c` and returns `Cᵀ` and the directions `u_k` of the sweep.
fn factorize<T: Scalar>(c: MatRef<'_, T>) -> Result<(Mat<T>, Mat<T>)> {
    check_nonempty("constraint matrix C", c)?;
    check_nonempty("constraint matrix C (transposed)", c.transpose())?;
    check_finite("constraint matrix C", c)?;
    let (p, n) = c.shape();
    if p > n {
        return Err(Error::InvalidParameter {
            name: "row count of the constraint matrix C".into(),
            value: p as f64,
            requirement: format!(
                "must not exceed its column count {n}, because a {p} x {n} matrix cannot have full row \
                 rank; remove linearly dependent rows of C and the matching entries of b"
            ),
        });
    }

    let singular_values = c.singular_values().map_err(|e| Error::Numerical {
        what: "singular value decomposition of the constraint matrix C".into(),
        reason: format!("{e:?}; check C for badly scaled rows"),
    })?;
    let largest = singular_values[0];
    let smallest = singular_values[p - 1];
    // The numerical rank counts the singular values above max(p, n)·ε·σ_max,
    // the default threshold of numpy.linalg.matrix_rank; here max(p, n) = n.
    let threshold = T::from_usize(n).unwrap_or_else(T::one) * T::epsilon() * largest;
    let rank = singular_values.iter().filter(|&&s| s > threshold).count();
    if rank < p {
        return Err(Error::InvalidParameter {
            name: "rank of the constraint matrix C".into(),
            value: rank as f64,
            requirement: format!(
                "must equal its row count {p} (full row rank), but C is rank-deficient: its smallest \
                 singular value {:e} is at most max(p, n)·ε·σ_max = {:e}; remove linearly dependent \
                 rows of C and the matching entries of b",
                smallest.to_f64_lossless(),
                threshold.to_f64_lossless()
            ),
        });
    }

    let c_transpose = c.transpose().to_owned();
    let qr = c_transpose.qr();
    let q = qr.compute_thin_Q();
    let r = qr.thin_R();
    let directions = Mat::from_fn(n, p, |i, k| q[(i, k)] / r[(k, k)]);
    Ok((c_transpose, directions))
}

impl<T: Scalar> AffineSet<T> {
    /// Creates the set `{x : C x = b}` for `c` (`p x n`) and `b` (`p` entries).
    ///
    /// # Errors
    /// When `c` is empty or has a non-finite entry, or when it does not have
    /// full row rank `p`, which means numerically that a singular value is at
    /// most `max(p, n)·ε` times the largest. When `b` does not have `p`
    /// entries or has a non-finite entry. When the singular value
    /// decomposition of `c` fails.
    pub fn new(c: MatRef<'_, T>, b: Vec<T>) -> Result<Self> {
        let p = c.nrows();
        if b.len() != p {
            return Err(Error::ShapeMismatch {
                what: "right-hand side b of the affine set".into(),
                expected: format!("{p} entries, one per row of C"),
                found: format!("{} entries", b.len()),
            });
        }
        let column = Mat::from_fn(p, 1, |i, _| b[i]);
        check_finite("right-hand side b of the affine set", column.as_ref())?;
        let (c_transpose, directions) = factorize(c)?;
        Ok(Self {
            c_transpose,
            directions,
            rhs: RightHandSide::Fixed(b),
        })
    }

    /// Creates the set `{x : C x = d[0..p]}` for `c` (`p x n`), whose
    /// right-hand side is rows `0..p` of each sample's data column.
    ///
    /// # Errors
    /// When `c` is empty, has a non-finite entry, or does not have full row
    /// rank, as for [`AffineSet::new`].
    pub fn from_data(c: MatRef<'_, T>) -> Result<Self> {
        let (c_transpose, directions) = factorize(c)?;
        Ok(Self {
            c_transpose,
            directions,
            rhs: RightHandSide::Data,
        })
    }

    /// Returns the constraint matrix `C` (`p x n`).
    pub fn matrix(&self) -> MatRef<'_, T> {
        self.c_transpose.transpose()
    }

    /// Returns the fixed right-hand side `b`, or `None` when it is read from
    /// the data.
    pub fn rhs(&self) -> Option<&[T]> {
        match &self.rhs {
            RightHandSide::Fixed(b) => Some(b),
            RightHandSide::Data => None,
        }
    }

    /// Returns `b_k` for sample `col`.
    #[inline(always)]
    fn rhs_entry(&self, data: MatRef<'_, T>, k: usize, col: usize) -> T {
        match &self.rhs {
            RightHandSide::Fixed(b) => b[k],
            RightHandSide::Data => data[(k, col)],
        }
    }

    /// Runs the sweep `x ← x − u_k (c_kᵀ x − rhs(k, col))` on every column of `x`.
    fn sweep(&self, mut x: MatMut<'_, T>, rhs: impl Fn(usize, usize) -> T) {
        for col in 0..x.ncols() {
            let mut x_col = x.rb_mut().col_mut(col);
            for k in 0..self.c_transpose.ncols() {
                let row = self.c_transpose.col(k).transpose();
                let residual = inner_prod(row, Conj::No, x_col.rb(), Conj::No) - rhs(k, col);
                faer::zip!(x_col.rb_mut(), self.directions.col(k))
                    .for_each(|faer::unzip!(x, u)| *x -= residual * *u);
            }
        }
    }
}

impl<T: Scalar> Parameterized<T> for AffineSet<T> {}

impl<T: Scalar> Prox<T> for AffineSet<T> {
    fn is_indicator(&self) -> bool {
        true
    }

    fn dim(&self) -> Option<usize> {
        Some(self.c_transpose.nrows())
    }

    fn data_rows_needed(&self) -> usize {
        match self.rhs {
            RightHandSide::Fixed(_) => 0,
            RightHandSide::Data => self.c_transpose.ncols(),
        }
    }

    /// Returns zero when `x` is finite and every residual satisfies
    /// `|c_kᵀ x − b_k| ≤ √ε (1 + ‖c_k‖₂ ‖x‖₂ + |b_k|)`, and infinity otherwise.
    fn value(&self, x: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        let x_col = x.col(col);
        if !(0..x.nrows()).all(|row| x_col[row].is_finite()) {
            return Some(T::infinity());
        }
        let x_norm = col_norm2(x, col);
        let inside = (0..self.c_transpose.ncols()).all(|k| {
            let b = self.rhs_entry(data, k, col);
            let residual = inner_prod(self.c_transpose.col(k).transpose(), Conj::No, x_col, Conj::No) - b;
            let scale = col_norm2(self.c_transpose.as_ref(), k) * x_norm + b.abs();
            residual.abs() <= membership_tolerance(scale)
        });
        Some(indicator_value(inside))
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, _gamma: T, data: MatRef<'_, T>) {
        out.copy_from(v);
        self.sweep(out, |k, col| self.rhs_entry(data, k, col));
    }

    /// Writes `v_bar = (I − Cᵀ(CCᵀ)⁻¹C) cotangent` with the sweep of the
    /// projection and `b = 0`; the projector is symmetric, so this is also
    /// `J(v)ᵀ cotangent`.
    fn prox_vjp(
        &self,
        mut v_bar: MatMut<'_, T>,
        _v: MatRef<'_, T>,
        _gamma: T,
        _data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        v_bar.copy_from(cotangent);
        self.sweep(v_bar, |_, _| T::zero());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prox::projection_checks::{
        assert_f32_matches_f64, assert_projection_properties, assert_vjp_matches_fd, project, vjp,
    };
    use faer::mat;
    use optlayer_testing::random::gaussian;

    fn column(values: &[f64]) -> Mat<f64> {
        Mat::from_fn(values.len(), 1, |i, _| values[i])
    }

    fn assert_close(got: &Mat<f64>, expected: &Mat<f64>, tol: f64) {
        let error = (got - expected).norm_max();
        assert!(
            error <= tol,
            "error {error:e}: got {got:?}, expected {expected:?}"
        );
    }

    /// Returns the least-norm correction `v − C⁺(C v − B)` with the
    /// pseudoinverse `C⁺` from faer's singular value decomposition, where
    /// column `j` of `rhs` is the right-hand side of sample `j`.
    fn reference_projection(c: MatRef<'_, f64>, v: MatRef<'_, f64>, rhs: MatRef<'_, f64>) -> Mat<f64> {
        let pinv = c.svd().unwrap().pseudoinverse();
        v - &pinv * (c * v - rhs)
    }

    #[test]
    fn affine_set_known_values() {
        let no_data = Mat::<f64>::zeros(0, 1);
        let line = AffineSet::new(mat![[1.0, 1.0]].as_ref(), vec![1.0]).unwrap();
        let x = project(&line, column(&[0.0, 0.0]).as_ref(), 1.0, no_data.as_ref());
        assert_close(&x, &column(&[0.5, 0.5]), 1e-15);
        let x = project(&line, column(&[2.0, 0.0]).as_ref(), 1.0, no_data.as_ref());
        assert_close(&x, &column(&[1.5, -0.5]), 1e-15);
        let d = vjp(
            &line,
            column(&[2.0, 0.0]).as_ref(),
            1.0,
            no_data.as_ref(),
            column(&[1.0, 0.0]).as_ref(),
        );
        assert_close(&d, &column(&[0.5, -0.5]), 1e-15);

        let coordinates =
            AffineSet::new(mat![[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]].as_ref(), vec![1.0, 2.0]).unwrap();
        let x = project(
            &coordinates,
            column(&[5.0, 6.0, 7.0]).as_ref(),
            1.0,
            no_data.as_ref(),
        );
        assert_close(&x, &column(&[1.0, 2.0, 7.0]), 1e-15);

        // Rows that are not orthogonal: the least-norm point of
        // x₁ + x₂ = 1, x₂ + x₃ = 1 is Cᵀ(CCᵀ)⁻¹b = [1, 2, 1]/3.
        let chain = AffineSet::new(mat![[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]].as_ref(), vec![1.0, 1.0]).unwrap();
        let x = project(&chain, column(&[0.0, 0.0, 0.0]).as_ref(), 1.0, no_data.as_ref());
        assert_close(&x, &column(&[1.0 / 3.0, 2.0 / 3.0, 1.0 / 3.0]), 1e-15);
    }

    #[test]
    fn affine_set_square_matrix_gives_solution() {
        let c = mat![[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]];
        let set = AffineSet::new(c.as_ref(), vec![3.0, 5.0, 5.0]).unwrap();
        let v = gaussian(3, 4, 7);
        let no_data = Mat::<f64>::zeros(0, 4);
        let x = project(&set, v.as_ref(), 1.0, no_data.as_ref());
        // C [1, 1, 1] = [3, 5, 5], and the set is that single point.
        assert_close(&x, &Mat::from_fn(3, 4, |_, _| 1.0), 1e-14);
        let d = vjp(
            &set,
            v.as_ref(),
            1.0,
            no_data.as_ref(),
            gaussian(3, 4, 8).as_ref(),
        );
        assert_close(&d, &Mat::zeros(3, 4), 1e-14);
    }

    #[test]
    fn affine_set_huge_entries_stay_finite() {
        let no_data = Mat::<f64>::zeros(0, 1);
        let line = AffineSet::new(mat![[1.0, 1.0]].as_ref(), vec![0.0]).unwrap();
        let v = column(&[3e200, 1e200]);
        let x = project(&line, v.as_ref(), 1.0, no_data.as_ref());
        assert_close(&x, &column(&[1e200, -1e200]), 1e185);
        assert_eq!(line.value(x.as_ref(), no_data.as_ref(), 0), Some(0.0));
        assert_eq!(line.value(v.as_ref(), no_data.as_ref(), 0), Some(f64::INFINITY));
    }

    #[test]
    fn affine_set_value_tolerance() {
        let no_data = Mat::<f64>::zeros(0, 1);
        let line = AffineSet::new(mat![[1.0, 1.0]].as_ref(), vec![1.0]).unwrap();
        let value = |x: &[f64]| line.value(column(x).as_ref(), no_data.as_ref(), 0);
        assert_eq!(value(&[0.25, 0.75 + 1e-12]), Some(0.0));
        assert_eq!(value(&[0.25, 0.75 + 1e-6]), Some(f64::INFINITY));
        assert_eq!(value(&[f64::INFINITY, 0.0]), Some(f64::INFINITY));
    }

    #[test]
    fn affine_set_invalid_input_rejected() {
        let err =
            AffineSet::new(mat![[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]].as_ref(), vec![1.0, 2.0]).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
        assert!(err.to_string().contains("rank-deficient"), "{err}");
        assert!(
            err.to_string().contains("rank of the constraint matrix C = 1"),
            "{err}"
        );
        let err = AffineSet::<f64>::from_data(Mat::zeros(2, 3).as_ref()).unwrap_err();
        assert!(
            err.to_string().contains("rank of the constraint matrix C = 0"),
            "{err}"
        );

        let err = AffineSet::new(gaussian(3, 2, 1).as_ref(), vec![0.0; 3]).unwrap_err();
        assert!(
            err.to_string()
                .contains("row count of the constraint matrix C = 3"),
            "{err}"
        );
        let err = AffineSet::new(mat![[1.0, f64::NAN]].as_ref(), vec![0.0]).unwrap_err();
        assert!(
            matches!(err, Error::NonFiniteInput { row: 0, col: 1, .. }),
            "{err}"
        );
        assert!(matches!(
            AffineSet::<f64>::from_data(Mat::zeros(0, 3).as_ref()),
            Err(Error::Empty { .. })
        ));
        assert!(matches!(
            AffineSet::<f64>::from_data(Mat::zeros(2, 0).as_ref()),
            Err(Error::Empty { .. })
        ));

        let err = AffineSet::new(mat![[1.0, 1.0]].as_ref(), vec![1.0, 2.0]).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
        let err = AffineSet::new(mat![[1.0, 1.0]].as_ref(), vec![f64::INFINITY]).unwrap_err();
        assert!(matches!(err, Error::NonFiniteInput { .. }), "{err}");
    }

    #[test]
    fn affine_set_error_bounded_by_condition() {
        // C = U S Wᵀ with singular values from 1 down to 1/κ, in f32, against
        // the f64 pseudoinverse projection of the same (rounded) matrix.
        let (n, p, batch) = (8, 4, 5);
        for kappa in [1e1, 1e2, 1e3, 1e4] {
            let u = gaussian(p, p, 1).qr().compute_Q();
            let w = gaussian(n, p, 2).qr().compute_thin_Q();
            let s = Mat::from_fn(p, p, |i, j| {
                if i == j {
                    f64::powf(kappa, -(i as f64) / (p as f64 - 1.0))
                } else {
                    0.0
                }
            });
            let c64 = &u * &s * w.transpose();
            let c32 = c64.as_ref().map(|&x| x as f32);
            let c = c32.as_ref().map(|&x| f64::from(x));
            let b: Vec<f32> = (0..p).map(|k| k as f32 + 1.0).collect();
            let rhs = Mat::from_fn(p, batch, |k, _| f64::from(b[k]));
            let v32 = gaussian(n, batch, 3).as_ref().map(|&x| x as f32);
            let v = v32.as_ref().map(|&x| f64::from(x));

            let set = AffineSet::new(c32.as_ref(), b).unwrap();
            let x = project(&set, v32.as_ref(), 1.0, Mat::<f32>::zeros(0, batch).as_ref());
            let expected = reference_projection(c.as_ref(), v.as_ref(), rhs.as_ref());
            let error = (x.as_ref().map(|&x| f64::from(x)) - &expected).norm_max();
            let bound = 10.0 * kappa * f64::from(f32::EPSILON) * expected.norm_max();
            assert!(error <= bound, "kappa {kappa:e}: error {error:e} above {bound:e}");
        }
    }

    #[test]
    fn affine_set_from_data_reads_first_rows() {
        let c = gaussian(2, 5, 3);
        let set = AffineSet::from_data(c.as_ref()).unwrap();
        assert_eq!(Prox::<f64>::data_rows_needed(&set), 2);
        assert_eq!(Prox::<f64>::dim(&set), Some(5));
        let data = gaussian(4, 3, 4);
        let v = gaussian(5, 3, 5);
        let x = project(&set, v.as_ref(), 1.0, data.as_ref());
        let expected = reference_projection(c.as_ref(), v.as_ref(), data.subrows(0, 2));
        assert_close(&x, &expected, 1e-12);
    }

    #[test]
    fn affine_set_matches_pseudoinverse() {
        for seed in 0..20 {
            // p < n, so that the set is not one point, whose projection is
            // constant; affine_set_square_matrix_gives_solution covers p = n.
            let n = 2 + (seed as usize % 7);
            let p = 1 + (seed as usize * 5) % (n - 1);
            let batch = 3;
            let c = gaussian(p, n, seed);
            let v = gaussian(n, batch, seed + 1000);
            let data = gaussian(p + 1, batch, seed + 2000);
            let rhs = data.subrows(0, p);
            let fixed_b: Vec<f64> = (0..p).map(|k| data[(k, 0)]).collect();
            let fixed_rhs = Mat::from_fn(p, batch, |k, _| fixed_b[k]);
            let fixed = AffineSet::new(c.as_ref(), fixed_b.clone()).unwrap();
            let from_data = AffineSet::from_data(c.as_ref()).unwrap();

            for (set, rhs) in [(&fixed, fixed_rhs.as_ref()), (&from_data, rhs)] {
                let x = project(set, v.as_ref(), 1.0, data.as_ref());
                let residual = &c * &x - rhs;
                assert!(residual.norm_max() < 1e-10, "C x − b = {residual:?}");
                let expected = reference_projection(c.as_ref(), v.as_ref(), rhs);
                assert_close(&x, &expected, 1e-10);

                // Feasible points: projections of other random points, by the
                // reference formula.
                let feasible =
                    reference_projection(c.as_ref(), gaussian(n, batch, seed + 3000).as_ref(), rhs);
                assert_projection_properties(set, v.as_ref(), data.as_ref(), &[feasible]);
                assert_vjp_matches_fd(set, v.as_ref(), data.as_ref(), seed + 4000, false);

                // The vector-Jacobian product is the projector I − C⁺C.
                let cotangent = gaussian(n, batch, seed + 5000);
                let pinv = c.svd().unwrap().pseudoinverse();
                let projector = Mat::<f64>::identity(n, n) - &pinv * &c;
                let d = vjp(set, v.as_ref(), 1.0, data.as_ref(), cotangent.as_ref());
                assert_close(&d, &(&projector * &cotangent), 1e-10);
            }

            let c32 = Mat::from_fn(p, n, |i, j| c[(i, j)] as f32);
            let fixed32 = AffineSet::new(c32.as_ref(), fixed_b.iter().map(|&b| b as f32).collect()).unwrap();
            assert_f32_matches_f64(&fixed32, &fixed, v.as_ref(), data.as_ref(), seed + 6000);
            let from_data32 = AffineSet::from_data(c32.as_ref()).unwrap();
            assert_f32_matches_f64(&from_data32, &from_data, v.as_ref(), data.as_ref(), seed + 7000);
        }
    }
}
