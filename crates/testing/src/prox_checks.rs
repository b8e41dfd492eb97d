//! Property checks of proximal maps, for the maps of this workspace and for
//! users' own.
//!
//! A proximal map `P = prox_{γg}` of a closed convex function `g` has
//! properties that hold whatever `g` is. Each function here measures one of
//! them on batches the caller supplies, one sample per column:
//!
//! - [`check_firm_nonexpansiveness`]:
//!   `‖Pu − Pv‖² ≤ ⟨Pu − Pv, u − v⟩`;
//! - [`check_prox_optimality`]: `x = P(v)` satisfies the subgradient
//!   inequality `g(y) ≥ g(x) + ⟨(v − x)/γ, y − x⟩` for points `y` of the
//!   domain of `g`, with `g` from [`Prox::value`];
//! - [`check_moreau_identity`]: `v = prox_{γg}(v) + γ prox_{g*/γ}(v/γ)`,
//!   given an independent prox of the conjugate `g*`;
//! - [`check_zero_step`]: step zero gives the identity, for functions that
//!   are finite everywhere;
//! - [`check_vjp`]: the vector-Jacobian product against central finite
//!   differences, skipping coordinates within the difference step of a kink;
//! - [`check_entrywise`]: the form of [`Prox::entrywise`], which splittings
//!   evaluate in their own loops, gives the output of `prox` bit for bit.
//!   [`HiddenForm`] wraps a map without its form, so that a splitting's
//!   fused path can be compared with the path that calls `prox`.
//!
//! The checks return measured numbers and never panic on a failed property;
//! each result has a `passes` method that takes the tolerance. Inputs that
//! do not fit the map (shapes, data rows, a step that is not positive)
//! return an [`Error`].
//!
//! # Example
//! ```
//! use faer::{Mat, MatMut, MatRef};
//! use optlayer_ops::L1Norm;
//! use optlayer_testing::prox_checks::{check_firm_nonexpansiveness, check_moreau_identity};
//! use optlayer_testing::random::gaussian;
//!
//! let g = L1Norm::new(0.5)?;
//! let (u, v, no_data) = (gaussian(4, 3, 1), gaussian(4, 3, 2), Mat::<f64>::zeros(0, 3));
//! let firm = check_firm_nonexpansiveness(&g, u.as_ref(), v.as_ref(), 0.8, no_data.as_ref())?;
//! assert!(firm.passes(1e-12), "{firm:?}");
//!
//! // The conjugate of 0.5‖·‖₁ is the indicator of [−0.5, 0.5]ⁿ: its prox clips.
//! let clip = |mut out: MatMut<'_, f64>, w: MatRef<'_, f64>, _step: f64, _data: MatRef<'_, f64>| {
//!     faer::zip!(out.as_mut(), w).for_each(|faer::unzip!(o, w)| *o = w.clamp(-0.5, 0.5));
//! };
//! let moreau = check_moreau_identity(&g, clip, v.as_ref(), 0.8, no_data.as_ref())?;
//! assert!(moreau.passes(1e-12), "{moreau:?}");
//! # Ok::<(), optlayer_core::Error>(())
//! ```

use faer::{Mat, MatMut, MatRef};
use optlayer_core::validate::{check_positive, check_rows, check_shape};
use optlayer_core::{Entrywise, Error, ParamInfo, Parameterized, Prox, Result, Scalar, columns};

use crate::fd::{FdOptions, GradientCheck, check_prox_vjp};

/// The outcome of [`check_firm_nonexpansiveness`].
#[derive(Clone, Debug, Default)]
pub struct FirmNonexpansiveness {
    /// Pairs of columns compared; pairs with `u = v` are left out.
    pub pairs: usize,
    /// `max ‖Pu − Pv‖² − ⟨Pu − Pv, u − v⟩` over the pairs, at most 0 for a
    /// firmly nonexpansive map up to rounding (`-∞` when no pair was compared).
    pub max_excess: f64,
    /// The excess divided by `‖u − v‖²` of its pair, the largest over the
    /// pairs; a number of order `ε` or below for a firmly nonexpansive map.
    pub max_relative_excess: f64,
    /// The column with the largest relative excess.
    pub worst_column: Option<usize>,
}

impl FirmNonexpansiveness {
    /// Returns whether every pair satisfies the inequality within
    /// `rel_tol · ‖u − v‖²`, and no output was NaN.
    pub fn passes(&self, rel_tol: f64) -> bool {
        self.max_relative_excess <= rel_tol
    }
}

/// The outcome of [`check_prox_optimality`].
#[derive(Clone, Debug, Default)]
pub struct ProxOptimality {
    /// Pairs `(x, y)` compared.
    pub checked: usize,
    /// Pairs skipped because `g(y) = +∞`, where the inequality is trivially true.
    pub skipped_infinite: usize,
    /// Columns whose `g(x)` is not finite (the prox left the domain) and
    /// pairs whose `g(y)` is NaN or `−∞`; each is a failure.
    pub invalid: usize,
    /// `max g(x) + ⟨s, y − x⟩ − g(y)` with `s = (v − x)/γ`, at most 0 up to
    /// rounding for the exact prox (`-∞` when no pair was compared).
    pub max_violation: f64,
    /// The violation divided by `1 + |g(x)| + |g(y)| + |⟨s, y − x⟩|`, the
    /// largest over the pairs.
    pub max_relative_violation: f64,
    /// Description of the pair with the largest relative violation, or of
    /// the first invalid value.
    pub worst: String,
}

impl ProxOptimality {
    /// Returns whether no value was invalid and every pair satisfies the
    /// inequality within the relative tolerance `rel_tol`.
    pub fn passes(&self, rel_tol: f64) -> bool {
        self.invalid == 0 && self.max_relative_violation <= rel_tol
    }
}

/// The outcome of [`check_moreau_identity`] and [`check_zero_step`].
#[derive(Clone, Debug, Default)]
pub struct Residual {
    /// Columns compared.
    pub columns: usize,
    /// The largest Euclidean norm of a column's residual; infinity when a
    /// residual is NaN.
    pub max_residual: f64,
    /// The residual divided by `1 + ‖v‖` of its column, the largest over
    /// the columns.
    pub max_relative_residual: f64,
    /// The column with the largest relative residual.
    pub worst_column: Option<usize>,
}

impl Residual {
    /// Returns whether every column's relative residual is at most `rel_tol`.
    pub fn passes(&self, rel_tol: f64) -> bool {
        self.max_relative_residual <= rel_tol
    }

    fn record(&mut self, column: usize, residual: f64, scale: f64) {
        let residual = if residual.is_nan() {
            f64::INFINITY
        } else {
            residual
        };
        let relative = residual / (1.0 + scale);
        self.columns += 1;
        self.max_residual = self.max_residual.max(residual);
        if self.worst_column.is_none() || relative > self.max_relative_residual {
            self.max_relative_residual = relative;
            self.worst_column = Some(column);
        }
    }
}

/// Checks that `v` fits `prox`: its row count is the map's dimension, the
/// data batch has one column per sample and the rows the map reads.
fn check_batch<P: Prox<f64> + ?Sized>(prox: &P, v: MatRef<'_, f64>, data: MatRef<'_, f64>) -> Result<()> {
    if let Some(dim) = prox.dim() {
        check_rows("input batch", v, dim, "the dimension of the prox")?;
    }
    if data.ncols() != v.ncols() {
        return Err(Error::ShapeMismatch {
            what: "data batch".into(),
            expected: format!("{} columns (one per sample of the input)", v.ncols()),
            found: format!("{} columns", data.ncols()),
        });
    }
    if data.nrows() < prox.data_rows_needed() {
        return Err(Error::ShapeMismatch {
            what: "data batch".into(),
            expected: format!(
                "at least {} rows (the rows the prox reads)",
                prox.data_rows_needed()
            ),
            found: format!("{} rows", data.nrows()),
        });
    }
    Ok(())
}

/// Returns `prox_{γg}(v)` in a new matrix.
fn apply<P: Prox<f64> + ?Sized>(prox: &P, v: MatRef<'_, f64>, gamma: f64, data: MatRef<'_, f64>) -> Mat<f64> {
    let mut out = Mat::zeros(v.nrows(), v.ncols());
    prox.prox(out.as_mut(), v, gamma, data);
    out
}

/// Returns `⟨a_j − b_j, c_j − d_j⟩` for column `j`.
fn column_inner(
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    c: MatRef<'_, f64>,
    d: MatRef<'_, f64>,
    j: usize,
) -> f64 {
    (0..a.nrows())
        .map(|i| (a[(i, j)] - b[(i, j)]) * (c[(i, j)] - d[(i, j)]))
        .sum()
}

/// Measures firm nonexpansiveness, `‖Pu − Pv‖² ≤ ⟨Pu − Pv, u − v⟩`, of
/// `P = prox_{γg}` on the pairs of columns `(u_j, v_j)`.
///
/// Both columns of a pair are samples with the same data column `j`. Every
/// proximal map of a closed convex function is firmly nonexpansive
/// (Moreau, 1965), so the excess `‖Pu − Pv‖² − ⟨Pu − Pv, u − v⟩` is at most
/// zero up to rounding. A NaN output counts as an infinite excess.
///
/// # Errors
/// When `u` and `v` differ in shape, or do not fit the map or the data batch.
pub fn check_firm_nonexpansiveness<P: Prox<f64> + ?Sized>(
    prox: &P,
    u: MatRef<'_, f64>,
    v: MatRef<'_, f64>,
    gamma: f64,
    data: MatRef<'_, f64>,
) -> Result<FirmNonexpansiveness> {
    check_shape("second input batch", v, u.nrows(), u.ncols())?;
    check_batch(prox, u, data)?;
    let pu = apply(prox, u, gamma, data);
    let pv = apply(prox, v, gamma, data);
    let mut result = FirmNonexpansiveness {
        max_excess: f64::NEG_INFINITY,
        max_relative_excess: f64::NEG_INFINITY,
        ..FirmNonexpansiveness::default()
    };
    for j in 0..u.ncols() {
        let gap = columns::col_diff_norm2(u, v, j);
        if gap == 0.0 {
            continue;
        }
        let out_gap = columns::col_diff_norm2(pu.as_ref(), pv.as_ref(), j);
        let inner = column_inner(pu.as_ref(), pv.as_ref(), u, v, j);
        let mut excess = out_gap * out_gap - inner;
        if excess.is_nan() {
            excess = f64::INFINITY;
        }
        let relative = excess / (gap * gap);
        result.pairs += 1;
        result.max_excess = result.max_excess.max(excess);
        if relative > result.max_relative_excess || result.worst_column.is_none() {
            result.max_relative_excess = relative;
            result.worst_column = Some(j);
        }
    }
    Ok(result)
}

/// Measures the optimality of `x = prox_{γg}(v)` through the subgradient
/// inequality `g(y) ≥ g(x) + ⟨(v − x)/γ, y − x⟩`, with `g` from
/// [`Prox::value`].
///
/// `x` minimizes `g(u) + ‖u − v‖²/(2γ)` exactly when `(v − x)/γ ∈ ∂g(x)`,
/// that is, when the inequality holds for every `y`. The points `y` are
/// `prox_{γg}(w)` for each batch `w` in `domain_seeds` (each of `v`'s
/// shape), because a prox's output lies in the domain of `g`, which an
/// arbitrary point may miss for an indicator. Column `j` of every batch is
/// one sample, with data column `j`.
///
/// # Errors
/// - [`Error::InvalidParameter`] when `gamma` is not positive and finite;
/// - [`Error::ShapeMismatch`] when a batch does not fit the map or `v`;
/// - [`Error::InvalidValue`] when the map returns `None` from
///   [`Prox::value`], so the check cannot run.
pub fn check_prox_optimality<P: Prox<f64> + ?Sized>(
    prox: &P,
    v: MatRef<'_, f64>,
    gamma: f64,
    data: MatRef<'_, f64>,
    domain_seeds: &[MatRef<'_, f64>],
) -> Result<ProxOptimality> {
    check_positive("step gamma of the optimality check", gamma)?;
    check_batch(prox, v, data)?;
    for (k, seed) in domain_seeds.iter().enumerate() {
        check_shape(&format!("domain seed batch {k}"), *seed, v.nrows(), v.ncols())?;
    }
    let x = apply(prox, v, gamma, data);
    let ys: Vec<Mat<f64>> = domain_seeds
        .iter()
        .map(|seed| apply(prox, *seed, gamma, data))
        .collect();
    let mut result = ProxOptimality {
        max_violation: f64::NEG_INFINITY,
        max_relative_violation: f64::NEG_INFINITY,
        ..ProxOptimality::default()
    };
    let mut worst_found = false;
    for j in 0..v.ncols() {
        let gx = value_of(prox, x.as_ref(), data, j)?;
        if !gx.is_finite() {
            result.invalid += 1;
            result.worst = format!("column {j}: g(prox(v)) = {gx}, so the prox left the domain of g");
            continue;
        }
        for (k, y) in ys.iter().enumerate() {
            let gy = value_of(prox, y.as_ref(), data, j)?;
            if gy == f64::INFINITY {
                result.skipped_infinite += 1;
                continue;
            }
            if gy.is_nan() || gy == f64::NEG_INFINITY {
                result.invalid += 1;
                result.worst = format!("column {j}, seed {k}: g(y) = {gy}");
                continue;
            }
            // ⟨(v − x)/γ, y − x⟩
            let slope = column_inner(v, x.as_ref(), y.as_ref(), x.as_ref(), j) / gamma;
            let violation = gx + slope - gy;
            let relative = violation / (1.0 + gx.abs() + gy.abs() + slope.abs());
            result.checked += 1;
            result.max_violation = result.max_violation.max(violation);
            if !worst_found || relative > result.max_relative_violation {
                worst_found = true;
                result.max_relative_violation = relative;
                if result.invalid == 0 {
                    result.worst = format!(
                        "column {j}, seed {k}: g(x) = {gx:e}, g(y) = {gy:e}, ⟨(v − x)/γ, y − x⟩ = {slope:e}"
                    );
                }
            }
        }
    }
    Ok(result)
}

fn value_of<P: Prox<f64> + ?Sized>(
    prox: &P,
    x: MatRef<'_, f64>,
    data: MatRef<'_, f64>,
    col: usize,
) -> Result<f64> {
    prox.value(x, data, col).ok_or_else(|| Error::InvalidValue {
        name: "Prox::value".into(),
        value: "None".into(),
        requirement: "the optimality check needs g(x); implement Prox::value for this map".into(),
    })
}

/// Measures Moreau's identity `v = prox_{γg}(v) + γ prox_{g*/γ}(v/γ)`, where
/// `g*` is the conjugate of `g` (J.-J. Moreau, "Proximité et dualité dans un
/// espace hilbertien", Bulletin de la Société Mathématique de France 93, 1965).
///
/// `conjugate_prox(out, w, step, data)` must write `prox_{step·g*}(w)`, with
/// the same conventions as [`Prox::prox`]. It should be independent of
/// `prox`, such as a closed form of the conjugate's prox; deriving it from
/// `prox` by the identity itself makes the check pass trivially. The
/// residual of column `j` is `‖v_j − prox_{γg}(v)_j − γ q_j‖` with
/// `q = prox_{g*/γ}(v/γ)`.
///
/// # Errors
/// When `gamma` is not positive and finite, or `v` does not fit the map or
/// the data batch.
pub fn check_moreau_identity<P, C>(
    prox: &P,
    mut conjugate_prox: C,
    v: MatRef<'_, f64>,
    gamma: f64,
    data: MatRef<'_, f64>,
) -> Result<Residual>
where
    P: Prox<f64> + ?Sized,
    C: FnMut(MatMut<'_, f64>, MatRef<'_, f64>, f64, MatRef<'_, f64>),
{
    check_positive("step gamma of the Moreau identity", gamma)?;
    check_batch(prox, v, data)?;
    let p = apply(prox, v, gamma, data);
    let scaled = Mat::from_fn(v.nrows(), v.ncols(), |i, j| v[(i, j)] / gamma);
    let mut q = Mat::zeros(v.nrows(), v.ncols());
    conjugate_prox(q.as_mut(), scaled.as_ref(), gamma.recip(), data);
    let residual = Mat::from_fn(v.nrows(), v.ncols(), |i, j| {
        v[(i, j)] - p[(i, j)] - gamma * q[(i, j)]
    });
    let mut result = Residual::default();
    for j in 0..v.ncols() {
        result.record(
            j,
            columns::col_norm2(residual.as_ref(), j),
            columns::col_norm2(v, j),
        );
    }
    Ok(result)
}

/// Measures `‖prox_0(v) − v‖` per column: step zero gives the identity for
/// functions that are finite everywhere. Indicators of sets other than the
/// whole space project at every step instead, so this check does not apply
/// to them.
///
/// # Errors
/// When `v` does not fit the map or the data batch.
pub fn check_zero_step<P: Prox<f64> + ?Sized>(
    prox: &P,
    v: MatRef<'_, f64>,
    data: MatRef<'_, f64>,
) -> Result<Residual> {
    check_batch(prox, v, data)?;
    let out = apply(prox, v, 0.0, data);
    let mut result = Residual::default();
    for j in 0..v.ncols() {
        result.record(
            j,
            columns::col_diff_norm2(out.as_ref(), v, j),
            columns::col_norm2(v, j),
        );
    }
    Ok(result)
}

/// Compares [`Prox::prox_vjp`] with central finite differences of
/// `⟨c, prox_{γg}(v)⟩` in every entry of `v`, as
/// [`fd::check_prox_vjp`](crate::fd::check_prox_vjp) does.
///
/// Coordinates within the difference step of a kink, where the one-sided
/// differences disagree, are counted in
/// [`GradientCheck::skipped_nonsmooth`] and not compared. A map computed by
/// a formula that cancels, such as Moreau's, may also flag coordinates
/// where rounding of order `ε|v|` makes a constant output vary.
///
/// # Errors
/// When `v` and `cotangent` differ in shape, or `v` does not fit the map or
/// the data batch.
pub fn check_vjp<P: Prox<f64> + ?Sized>(
    prox: &P,
    v: MatRef<'_, f64>,
    gamma: f64,
    data: MatRef<'_, f64>,
    cotangent: MatRef<'_, f64>,
    opts: &FdOptions,
) -> Result<GradientCheck> {
    check_shape("cotangent", cotangent, v.nrows(), v.ncols())?;
    check_batch(prox, v, data)?;
    Ok(check_prox_vjp(prox, v, gamma, data, cotangent, opts))
}

/// The outcome of [`check_entrywise`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EntrywiseMatch {
    /// The form the map returned, or `None` when it has none and nothing
    /// was compared.
    pub form: Option<Entrywise<f64>>,
    /// Entries compared.
    pub entries: usize,
    /// Entries where the form and `prox` differ in any bit (two NaNs count
    /// as equal), or where the form reads a data row the batch lacks.
    pub mismatches: usize,
    /// The first mismatch as `(row, column, prox output, form output)`.
    pub first_mismatch: Option<(usize, usize, f64, f64)>,
}

impl EntrywiseMatch {
    /// Returns whether every entry matched.
    pub fn passes(&self) -> bool {
        self.mismatches == 0
    }
}

/// Compares the form returned by [`Prox::entrywise`] for `gamma` with
/// [`Prox::prox`] on every entry of `v`, bit for bit. A splitting that
/// fuses the form into its own pass relies on the two agreeing exactly.
///
/// # Errors
/// When `gamma` is negative or not finite, or `v` does not fit the map or
/// the data batch.
pub fn check_entrywise<P: Prox<f64> + ?Sized>(
    prox: &P,
    v: MatRef<'_, f64>,
    gamma: f64,
    data: MatRef<'_, f64>,
) -> Result<EntrywiseMatch> {
    optlayer_core::validate::check_nonnegative("gamma", gamma)?;
    check_batch(prox, v, data)?;
    let mut result = EntrywiseMatch {
        form: prox.entrywise(gamma),
        ..EntrywiseMatch::default()
    };
    let Some(form) = result.form else {
        return Ok(result);
    };
    let out = apply(prox, v, gamma, data);
    for j in 0..v.ncols() {
        for i in 0..v.nrows() {
            // A row past `usize::MAX` is as absent as one past the batch.
            let datum = match form {
                Entrywise::DataRows { offset } => offset
                    .checked_add(i)
                    .filter(|&row| row < data.nrows())
                    .map(|row| data[(row, j)]),
                _ => Some(0.0),
            };
            let expected = out[(i, j)];
            let got = datum.map_or(f64::NAN, |d| form.apply(v[(i, j)], d));
            result.entries += 1;
            let same = got.to_bits() == expected.to_bits() || (got.is_nan() && expected.is_nan());
            if datum.is_none() || !same {
                result.mismatches += 1;
                result.first_mismatch.get_or_insert((i, j, expected, got));
            }
        }
    }
    Ok(result)
}

/// A proximal map that forwards every method to the map it wraps, its
/// parameters included, except [`Prox::entrywise`], which it leaves at
/// `None`. A splitting given it calls [`Prox::prox`] instead of fusing the
/// form, so tests can compare the two paths of one model.
#[derive(Clone, Debug)]
pub struct HiddenForm<P>(pub P);

impl<T: Scalar, P: Prox<T>> Parameterized<T> for HiddenForm<P> {
    fn param_count(&self) -> usize {
        self.0.param_count()
    }

    fn param_info(&self, index: usize) -> ParamInfo {
        self.0.param_info(index)
    }

    fn param(&self, index: usize) -> MatRef<'_, T> {
        self.0.param(index)
    }

    fn param_mut(&mut self, index: usize) -> MatMut<'_, T> {
        self.0.param_mut(index)
    }

    fn after_param_update(&mut self) -> Result<()> {
        self.0.after_param_update()
    }
}

impl<T: Scalar, P: Prox<T>> Prox<T> for HiddenForm<P> {
    fn dim(&self) -> Option<usize> {
        self.0.dim()
    }

    fn data_rows_needed(&self) -> usize {
        self.0.data_rows_needed()
    }

    fn value(&self, x: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        self.0.value(x, data, col)
    }

    fn is_separable(&self) -> bool {
        self.0.is_separable()
    }

    fn is_indicator(&self) -> bool {
        self.0.is_indicator()
    }

    fn infeasibility(&self, v: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> Option<T> {
        self.0.infeasibility(v, data, col)
    }

    fn prox(&self, out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, data: MatRef<'_, T>) {
        self.0.prox(out, v, gamma, data);
    }

    fn prox_vjp(
        &self,
        v_bar: MatMut<'_, T>,
        v: MatRef<'_, T>,
        gamma: T,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        self.0.prox_vjp(v_bar, v, gamma, data, cotangent);
    }

    fn accumulate_grad(
        &self,
        grads: &mut [Mat<T>],
        v: MatRef<'_, T>,
        gamma: T,
        data: MatRef<'_, T>,
        cotangent: MatRef<'_, T>,
    ) {
        self.0.accumulate_grad(grads, v, gamma, data, cotangent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::gaussian;
    use optlayer_core::Parameterized;

    /// A map that is not a prox: `v ↦ −v` is nonexpansive but not firmly so.
    struct Negation;

    impl Parameterized<f64> for Negation {}

    impl Prox<f64> for Negation {
        fn value(&self, _x: MatRef<'_, f64>, _data: MatRef<'_, f64>, _col: usize) -> Option<f64> {
            Some(0.0)
        }

        fn prox(&self, out: MatMut<'_, f64>, v: MatRef<'_, f64>, _gamma: f64, _data: MatRef<'_, f64>) {
            faer::zip!(out, v).for_each(|faer::unzip!(o, v)| *o = -*v);
        }

        fn prox_vjp(
            &self,
            v_bar: MatMut<'_, f64>,
            _v: MatRef<'_, f64>,
            _gamma: f64,
            _data: MatRef<'_, f64>,
            cotangent: MatRef<'_, f64>,
        ) {
            // Wrong on purpose: the Jacobian is −I.
            faer::zip!(v_bar, cotangent).for_each(|faer::unzip!(o, c)| *o = *c);
        }
    }

    /// The prox of `(1/2)‖x‖²`, `v / (1 + γ)`.
    struct HalfSquared;

    impl Parameterized<f64> for HalfSquared {}

    impl Prox<f64> for HalfSquared {
        fn value(&self, x: MatRef<'_, f64>, _data: MatRef<'_, f64>, col: usize) -> Option<f64> {
            let norm = columns::col_norm2(x, col);
            Some(0.5 * norm * norm)
        }

        fn prox(&self, out: MatMut<'_, f64>, v: MatRef<'_, f64>, gamma: f64, _data: MatRef<'_, f64>) {
            faer::zip!(out, v).for_each(|faer::unzip!(o, v)| *o = *v / (1.0 + gamma));
        }

        fn prox_vjp(
            &self,
            v_bar: MatMut<'_, f64>,
            _v: MatRef<'_, f64>,
            gamma: f64,
            _data: MatRef<'_, f64>,
            cotangent: MatRef<'_, f64>,
        ) {
            faer::zip!(v_bar, cotangent).for_each(|faer::unzip!(o, c)| *o = *c / (1.0 + gamma));
        }
    }

    fn no_data(cols: usize) -> Mat<f64> {
        Mat::zeros(0, cols)
    }

    #[test]
    fn negation_fails_firm_nonexpansiveness() {
        let (u, v) = (gaussian(3, 4, 1), gaussian(3, 4, 2));
        let check =
            check_firm_nonexpansiveness(&Negation, u.as_ref(), v.as_ref(), 1.0, no_data(4).as_ref()).unwrap();
        // ‖Pu − Pv‖² − ⟨Pu − Pv, u − v⟩ = 2‖u − v‖², so the relative excess is 2.
        assert_eq!(check.pairs, 4);
        assert!((check.max_relative_excess - 2.0).abs() < 1e-12, "{check:?}");
        assert!(!check.passes(1e-6));
    }

    #[test]
    fn half_squared_passes_every_check() {
        let (u, v) = (gaussian(3, 4, 1), gaussian(3, 4, 2));
        let data = no_data(4);
        let firm =
            check_firm_nonexpansiveness(&HalfSquared, u.as_ref(), v.as_ref(), 0.7, data.as_ref()).unwrap();
        assert!(firm.passes(1e-14), "{firm:?}");
        // The excess is −γ/(1 + γ)² ‖u − v‖², relative −0.7/2.89.
        assert!((firm.max_relative_excess + 0.7 / 2.89).abs() < 1e-12, "{firm:?}");

        let seeds = [gaussian(3, 4, 3), gaussian(3, 4, 4)];
        let seed_refs: Vec<_> = seeds.iter().map(|s| s.as_ref()).collect();
        let optimality =
            check_prox_optimality(&HalfSquared, v.as_ref(), 0.7, data.as_ref(), &seed_refs).unwrap();
        assert_eq!(optimality.checked, 8);
        assert!(optimality.passes(1e-14), "{optimality:?}");
        // g strongly convex: the inequality is strict, by ½‖y − x‖².
        assert!(optimality.max_violation < 0.0, "{optimality:?}");

        // (½‖·‖²)* = ½‖·‖², whose prox at step s is w/(1 + s).
        let conjugate = |out: MatMut<'_, f64>, w: MatRef<'_, f64>, step: f64, _data: MatRef<'_, f64>| {
            faer::zip!(out, w).for_each(|faer::unzip!(o, w)| *o = *w / (1.0 + step));
        };
        let moreau = check_moreau_identity(&HalfSquared, conjugate, v.as_ref(), 0.7, data.as_ref()).unwrap();
        assert_eq!(moreau.columns, 4);
        assert!(moreau.passes(1e-15), "{moreau:?}");

        let zero = check_zero_step(&HalfSquared, v.as_ref(), data.as_ref()).unwrap();
        assert_eq!(zero.max_residual, 0.0);

        let c = gaussian(3, 4, 5);
        let vjp = check_vjp(
            &HalfSquared,
            v.as_ref(),
            0.7,
            data.as_ref(),
            c.as_ref(),
            &FdOptions::default(),
        )
        .unwrap();
        assert!(vjp.rel_error < 1e-8, "{vjp:?}");
        assert_eq!(vjp.checked, 12);
    }

    #[test]
    fn wrong_conjugate_and_wrong_vjp_are_detected() {
        let v = gaussian(3, 2, 1);
        let data = no_data(2);
        // The identity is the prox of the zero function, not of ½‖·‖²'s conjugate.
        let wrong = |mut out: MatMut<'_, f64>, w: MatRef<'_, f64>, _step: f64, _data: MatRef<'_, f64>| {
            out.copy_from(w);
        };
        let moreau = check_moreau_identity(&HalfSquared, wrong, v.as_ref(), 0.7, data.as_ref()).unwrap();
        assert!(!moreau.passes(1e-3), "{moreau:?}");

        let c = gaussian(3, 2, 2);
        let vjp = check_vjp(
            &Negation,
            v.as_ref(),
            1.0,
            data.as_ref(),
            c.as_ref(),
            &FdOptions::default(),
        )
        .unwrap();
        // The product returns c where the Jacobian gives −c: ‖c + c‖ / ‖c‖ = 2.
        assert!((vjp.rel_error - 2.0).abs() < 1e-6, "{vjp:?}");
    }

    #[test]
    fn optimality_detects_wrong_minimizer() {
        // Negation claims g = 0, whose prox is the identity: x = −v violates
        // 0 ≥ 0 + ⟨2v/γ, y + v⟩ for y = −w with ⟨v, v − w⟩ > 0.
        let v = gaussian(3, 4, 1);
        let seeds = [gaussian(3, 4, 2)];
        let check = check_prox_optimality(
            &Negation,
            v.as_ref(),
            1.0,
            no_data(4).as_ref(),
            &[seeds[0].as_ref()],
        )
        .unwrap();
        assert!(check.max_violation > 0.0, "{check:?}");
        assert!(!check.passes(1e-6));
    }

    #[test]
    fn bad_inputs_rejected() {
        let v = gaussian(3, 2, 1);
        let data = no_data(2);
        assert!(matches!(
            check_prox_optimality(&HalfSquared, v.as_ref(), 0.0, data.as_ref(), &[]),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            check_firm_nonexpansiveness(
                &HalfSquared,
                v.as_ref(),
                gaussian(2, 2, 1).as_ref(),
                1.0,
                data.as_ref()
            ),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            check_zero_step(&HalfSquared, v.as_ref(), no_data(3).as_ref()),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    /// The soft threshold at `γ`, claiming a form chosen by the test.
    struct ClaimedShrink(Option<Entrywise<f64>>);

    impl Parameterized<f64> for ClaimedShrink {}

    impl Prox<f64> for ClaimedShrink {
        fn entrywise(&self, _gamma: f64) -> Option<Entrywise<f64>> {
            self.0
        }

        fn prox(&self, out: MatMut<'_, f64>, v: MatRef<'_, f64>, gamma: f64, _data: MatRef<'_, f64>) {
            faer::zip!(out, v).for_each(|faer::unzip!(o, v)| *o = optlayer_core::prox::shrink(*v, gamma));
        }

        fn prox_vjp(
            &self,
            _v_bar: MatMut<'_, f64>,
            _v: MatRef<'_, f64>,
            _gamma: f64,
            _data: MatRef<'_, f64>,
            _cotangent: MatRef<'_, f64>,
        ) {
        }
    }

    #[test]
    fn entrywise_check_finds_a_wrong_form() {
        let v = gaussian(6, 4, 11);
        let data = gaussian(8, 4, 12);
        let right = ClaimedShrink(Some(Entrywise::Shrink { threshold: 0.5 }));
        let check = check_entrywise(&right, v.as_ref(), 0.5, data.as_ref()).unwrap();
        assert!(check.passes(), "{check:?}");
        assert_eq!(check.entries, 24);
        // The sign of a zero counts: −0 from `signum · max` differs from +0.
        let signed = |v: f64| v.signum() * (v.abs() - 0.5).max(0.0);
        assert!((0..24).any(|k| {
            let x = v[(k % 6, k / 6)];
            signed(x).to_bits() != optlayer_core::prox::shrink(x, 0.5).to_bits()
        }));

        for wrong in [
            Entrywise::Shrink { threshold: 0.4 },
            Entrywise::Identity,
            Entrywise::Clip {
                lower: -0.5,
                upper: 0.5,
            },
            Entrywise::DataRows { offset: 0 },
            // Reads rows 3 to 8 of data with 8 rows.
            Entrywise::DataRows { offset: 3 },
        ] {
            let check = check_entrywise(&ClaimedShrink(Some(wrong)), v.as_ref(), 0.5, data.as_ref()).unwrap();
            assert!(!check.passes(), "{wrong:?}: {check:?}");
            assert!(check.first_mismatch.is_some());
        }

        let none = check_entrywise(&ClaimedShrink(None), v.as_ref(), 0.5, data.as_ref()).unwrap();
        assert_eq!((none.form, none.entries, none.passes()), (None, 0, true));
        assert!(matches!(
            check_entrywise(&right, v.as_ref(), -1.0, data.as_ref()),
            Err(Error::InvalidParameter { .. })
        ));
    }

    #[test]
    fn entrywise_check_rows_past_usize_max() {
        // At γ = 0 the soft threshold gives back v, so a form reading v's
        // own values would match. Row i of the data is row i + k of v, so
        // that a row index `offset + i` wrapped around to i − k reads them.
        let v = gaussian(4, 3, 1);
        for offset in [4, 1 << 40, usize::MAX - 2, usize::MAX] {
            let k = offset.wrapping_neg();
            let data = Mat::from_fn(4, 3, |i, j| if i + k < 4 { v[(i + k, j)] } else { 0.0 });
            let prox = ClaimedShrink(Some(Entrywise::DataRows { offset }));
            let check = check_entrywise(&prox, v.as_ref(), 0.0, data.as_ref()).unwrap();
            assert_eq!(check.entries, 12, "offset {offset}");
            assert_eq!(check.mismatches, 12, "offset {offset}");
        }
    }
}
