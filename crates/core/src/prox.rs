//! Proximal maps applied to batches.

use faer::{Mat, MatMut, MatRef};

use crate::{Parameterized, Scalar};

/// The proximal map of a closed convex function `g`, with its
/// vector-Jacobian product.
///
/// `prox_{γg}(v) = argmin_u g(u) + ‖u − v‖² / (2γ)`, applied to every column
/// of a batch. The `data` argument is the batch of problem data `d`, with one
/// column per sample aligned with the columns of `v`. Data-independent maps
/// ignore it. Data-dependent ones, such as the projection onto `{d}` of an
/// equality constraint `Ax = d`, read their sample's column.
///
/// # Example
/// ```
/// use faer::{Mat, MatMut, MatRef, mat};
/// use optlayer_core::{Parameterized, Prox};
///
/// /// The projection onto the nonnegative orthant.
/// struct Nonnegative;
///
/// impl Parameterized<f64> for Nonnegative {}
///
/// impl Prox<f64> for Nonnegative {
///     fn prox(&self, mut out: MatMut<'_, f64>, v: MatRef<'_, f64>, _gamma: f64, _data: MatRef<'_, f64>) {
///         for j in 0..v.ncols() {
///             for i in 0..v.nrows() {
///                 out[(i, j)] = v[(i, j)].max(0.0);
///             }
///         }
///     }
///     fn prox_vjp(&self, mut v_bar: MatMut<'_, f64>, v: MatRef<'_, f64>, _gamma: f64,
///                 _data: MatRef<'_, f64>, cotangent: MatRef<'_, f64>) {
///         for j in 0..v.ncols() {
///             for i in 0..v.nrows() {
///                 v_bar[(i, j)] = if v[(i, j)] > 0.0 { cotangent[(i, j)] } else { 0.0 };
///             }
///         }
///     }
/// }
///
/// let v = mat![[-1.0], [2.0]];
/// let mut out = Mat::zeros(2, 1);
/// Nonnegative.prox(out.as_mut(), v.as_ref(), 1.0, Mat::<f64>::zeros(0, 1).as_ref());
/// assert_eq!(out, mat![[0.0], [2.0]]);
/// ```
pub trait Prox<T: Scalar>: Parameterized<T> + Send + Sync {
    /// Returns the dimension the map is defined on, or `None` when it applies
    /// to vectors of any length.
    fn dim(&self) -> Option<usize> {
        None
    }

    /// Returns the number of data rows the map reads; the data batch passed to
    /// it must have at least this many rows.
    fn data_rows_needed(&self) -> usize {
        0
    }

    /// Returns `g(x)` for column `col` of the batch, or `None` when the map
    /// does not provide its function's value.
    ///
    /// Indicator functions return zero for points within a relative
    /// tolerance of their set (the tolerance scales with `√ε` of the scalar
    /// type, so projections rounded to the working precision count as
    /// inside) and infinity otherwise. This method may allocate: it serves
    /// reports and tests, not the iteration loop.
    fn value(&self, x: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        let _ = (x, data, col);
        None
    }

    /// Returns whether `g` is separable, `g(x) = Σ_i g_i(x_i)`, so that its
    /// prox acts on each entry alone. Combinators that rely on it, such as
    /// adding a box constraint by clipping, check this.
    fn is_separable(&self) -> bool {
        false
    }

    /// Returns whether `g` is the indicator of a closed convex set, so that
    /// the prox is the projection onto the set for every `γ`.
    fn is_indicator(&self) -> bool {
        false
    }

    /// Returns the distance `‖v − P(v)‖₂` of column `col` of `v` from the
    /// set, for indicators, and `None` for other functions.
    ///
    /// The provided method projects the column; it allocates and serves
    /// reports, such as the constraint residual of a forward pass.
    fn infeasibility(&self, v: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        if !self.is_indicator() {
            return None;
        }
        let v_col = v.subcols(col, 1);
        let mut projected = Mat::zeros(v.nrows(), 1);
        self.prox(projected.as_mut(), v_col, T::one(), data.subcols(col, 1));
        Some(crate::columns::col_diff_norm2(v_col, projected.as_ref(), 0))
    }

    /// Returns `prox_{γg}` as one function applied to every entry, when it is
    /// one of the forms of [`Entrywise`], and `None` otherwise (the default).
    ///
    /// A splitting may then evaluate the prox inside its own pass over the
    /// entries instead of calling [`Prox::prox`], which saves passes over
    /// memory. The form must give the result of `prox` bit for bit, for the
    /// same `gamma`.
    fn entrywise(&self, gamma: T) -> Option<Entrywise<T>> {
        let _ = gamma;
        None
    }

    /// Writes `out = prox_{γg}(v)` column by column. `out` and `v` have the
    /// same shape; `gamma ≥ 0`, and `gamma = 0` gives the identity for
    /// functions that are finite everywhere.
    fn prox(&self, out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, data: MatRef<'_, T>);

    /// Writes `v_bar = J(v)ᵀ cotangent`, where `J(v)` is the Jacobian of
    /// `v ↦ prox_{γg}(v)`. Where the map is not differentiable, each
    /// implementation documents the element of the generalized Jacobian it uses.
    fn prox_vjp(
        &self,
        v_bar: MatMut<'_, T>,
        v: MatRef<'_, T>,
        gamma: T,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    );

    /// Adds `∂⟨cotangent, prox_{γg}(v)⟩/∂params` to `grads`, this map's own
    /// gradients in parameter order. Maps without parameters keep the no-op.
    fn accumulate_grad(
        &self,
        grads: &mut [Mat<T>],
        v: MatRef<'_, T>,
        gamma: T,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        let _ = (grads, v, gamma, data, cotangent);
    }
}

/// Forwards every method to the boxed map, its entry-wise form included, so
/// that a `Box<dyn Prox<T>>` is itself a proximal map.
impl<T: Scalar, P: Prox<T> + ?Sized> Prox<T> for Box<P> {
    fn dim(&self) -> Option<usize> {
        (**self).dim()
    }

    fn data_rows_needed(&self) -> usize {
        (**self).data_rows_needed()
    }

    fn value(&self, x: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        (**self).value(x, data, col)
    }

    fn is_separable(&self) -> bool {
        (**self).is_separable()
    }

    fn is_indicator(&self) -> bool {
        (**self).is_indicator()
    }

    fn infeasibility(&self, v: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        (**self).infeasibility(v, data, col)
    }

    fn entrywise(&self, gamma: T) -> Option<Entrywise<T>> {
        (**self).entrywise(gamma)
    }

    fn prox(&self, out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, data: MatRef<'_, T>) {
        (**self).prox(out, v, gamma, data);
    }

    fn prox_vjp(
        &self,
        v_bar: MatMut<'_, T>,
        v: MatRef<'_, T>,
        gamma: T,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        (**self).prox_vjp(v_bar, v, gamma, data, cotangent);
    }

    fn accumulate_grad(
        &self,
        grads: &mut [Mat<T>],
        v: MatRef<'_, T>,
        gamma: T,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        (**self).accumulate_grad(grads, v, gamma, data, cotangent);
    }
}

/// A prox that applies one function to each entry, returned by
/// [`Prox::entrywise`]. Entry `i` of a column maps to `u_i`:
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Entrywise<T> {
    /// `u_i = v_i`.
    Identity,
    /// `u_i = shrink(v_i, threshold)`, the soft threshold of [`shrink`].
    Shrink {
        /// The threshold `t ≥ 0`.
        threshold: T,
    },
    /// `u_i = clip(v_i, lower, upper)`, the projection of [`clip`].
    Clip {
        /// The lower bound.
        lower: T,
        /// The upper bound, at least `lower`.
        upper: T,
    },
    /// `u_i = d_{offset + i}`: rows of the sample's data column, as in the
    /// projection onto `{d}` of an equality constraint.
    DataRows {
        /// The first data row read.
        offset: usize,
    },
}

impl<T: Scalar> Entrywise<T> {
    /// Returns `u_i` for the entry `v_i` and the data entry `d_{offset + i}`
    /// (read by [`Entrywise::DataRows`] only).
    #[inline(always)]
    pub fn apply(self, v: T, data: T) -> T {
        match self {
            Entrywise::Identity => v,
            Entrywise::Shrink { threshold } => shrink(v, threshold),
            Entrywise::Clip { lower, upper } => clip(v, lower, upper),
            Entrywise::DataRows { .. } => data,
        }
    }
}

/// A loop over a batch that applies an entry-wise prox inside its own
/// arithmetic, run by [`Entrywise::run_pass`].
pub trait EntrywisePass<T: Scalar> {
    /// Runs the loop with `prox(v, d)`, the map of one entry `v` whose data
    /// entry `d` is the entry of `data` at the same position.
    fn run<P: Fn(T, T) -> T + Copy>(self, prox: P, data: MatRef<'_, T>);
}

impl<T: Scalar> Entrywise<T> {
    /// Runs `pass` with the map of this form as a closure of its own, so that
    /// the loop has no branch on the form per entry and vectorizes. The data
    /// handed to the loop are the `rows` rows that a
    /// [`DataRows`](Entrywise::DataRows) form reads, and `placeholder` (a
    /// matrix the loop reads anyway, of `rows` rows) for the other forms.
    ///
    /// Returns `false`, having run nothing, when `data` lacks the rows of a
    /// `DataRows` form: the prox itself handles that case.
    pub fn run_pass(
        self,
        pass: impl EntrywisePass<T>,
        data: MatRef<'_, T>,
        rows: usize,
        placeholder: MatRef<'_, T>,
    ) -> bool {
        if !self.runs_on(data, rows) {
            return false;
        }
        match self {
            Entrywise::Identity => pass.run(|v: T, _: T| v, placeholder),
            Entrywise::Shrink { threshold } => pass.run(move |v: T, _: T| shrink(v, threshold), placeholder),
            Entrywise::Clip { lower, upper } => {
                pass.run(move |v: T, _: T| clip(v, lower, upper), placeholder)
            }
            Entrywise::DataRows { offset } => pass.run(|_: T, d: T| d, data.subrows(offset, rows)),
        }
        true
    }

    /// Returns whether [`run_pass`](Self::run_pass) runs its loop for `data`
    /// and `rows`.
    pub fn runs_on(self, data: MatRef<'_, T>, rows: usize) -> bool {
        match self {
            Entrywise::DataRows { offset } => data_has_rows(data, offset, rows),
            _ => true,
        }
    }
}

/// Returns whether `data` has the rows `offset..offset + rows`, which a
/// [`Entrywise::DataRows`] form reads. An end past `usize::MAX` counts as
/// missing rows.
pub fn data_has_rows<T>(data: MatRef<'_, T>, offset: usize, rows: usize) -> bool {
    offset.checked_add(rows).is_some_and(|end| end <= data.nrows())
}

/// Returns `sign(v) · max(|v| − t, 0)`, the prox of `t |·|`.
#[inline(always)]
pub fn shrink<T: Scalar>(v: T, t: T) -> T {
    // Without branches, so that the loops vectorize and random signs cost no
    // mispredictions. For t ≥ 0 at most one part is nonzero, and a NaN part
    // gives zero, as in `if v > t { v − t } else if v < −t { v + t } else { 0 }`.
    let zero = T::zero();
    let above = v - t;
    let below = v + t;
    let above = if above > zero { above } else { zero };
    let below = if below < zero { below } else { zero };
    above + below
}

/// Returns `v` clipped to `[lower, upper]`, the projection onto the interval.
/// An entry on a bound counts as clipped, and NaN passes through unchanged.
#[inline(always)]
pub fn clip<T: Scalar>(v: T, lower: T, upper: T) -> T {
    if v <= lower {
        lower
    } else if v >= upper {
        upper
    } else {
        v
    }
}
