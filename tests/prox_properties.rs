//! Properties every proximal map has, checked on every built-in map and
//! combinator with `optlayer_testing::prox_checks`: firm nonexpansiveness,
//! the subgradient inequality, Moreau's identity against an independent
//! prox of the conjugate, the identity at step zero, the
//! vector-Jacobian product against finite differences, and the entry-wise
//! form that splittings fuse into their own loops against the map.
//!
//! The maps form one table, [`table`]; a new map is one more entry there.

use std::ops::Range;

use faer::{Mat, MatMut, MatRef, mat};
use optlayer::ops::{
    AffineSet, BoxConstrained, BoxSet, Conjugate, ElasticNet, Huber, IndicatorPoint, L1Ball, L1Norm, L2Ball,
    L2Norm, LinfBall, LinfNorm, Nonnegative, Scaled, SeparableBlock, SeparableSum, Simplex, SquaredDistance,
    SquaredL2, Translated, Zero,
};
use optlayer::{Entrywise, Error, Prox};
use optlayer_testing::fd::FdOptions;
use optlayer_testing::prox_checks::{
    check_entrywise, check_firm_nonexpansiveness, check_moreau_identity, check_prox_optimality, check_vjp,
    check_zero_step,
};
use optlayer_testing::random::gaussian;
use proptest::prelude::*;

/// `prox_{step·g*}(w)` for a batch `w`: `(out, w, step, data)`.
type ConjugateProx = Box<dyn Fn(MatMut<'_, f64>, MatRef<'_, f64>, f64, MatRef<'_, f64>)>;

/// Builds a map on vectors of length `dim`.
type Build = fn(usize) -> Box<dyn Prox<f64>>;

/// One map under test, buildable on vectors of any length `dim ≥ 1`.
struct Entry {
    name: &'static str,
    /// Builds the map on vectors of length `dim`.
    build: Build,
    /// Data rows the map reads at dimension `dim`.
    data_rows: fn(usize) -> usize,
    /// The prox of the conjugate `g*` from a closed form written here,
    /// independent of the map's own code; `None` where no closed form exists.
    conjugate: Option<fn(usize) -> ConjugateProx>,
    /// Whether the map provides `Prox::value`.
    has_value: bool,
    /// Whether `g` is finite everywhere, so step zero gives the identity.
    finite_everywhere: bool,
    /// Whether the map computes a locally constant output by a formula
    /// that cancels, so rounding of order `ε|v|` can make the finite
    /// differences flag many coordinates as kinks: Moreau's formula
    /// `v − γ prox(v/γ)`, or the simplex threshold `v_i − τ` at a vertex.
    cancels: bool,
}

impl Entry {
    /// An entry with a value, a conjugate, and no cancellation.
    fn new(
        name: &'static str,
        build: Build,
        conjugate: Option<fn(usize) -> ConjugateProx>,
        finite_everywhere: bool,
    ) -> Self {
        Self {
            name,
            build,
            data_rows: |_| 0,
            conjugate,
            has_value: true,
            finite_everywhere,
            cancels: false,
        }
    }

    fn reading_data(mut self, data_rows: fn(usize) -> usize) -> Self {
        self.data_rows = data_rows;
        self
    }

    fn without_value(mut self) -> Self {
        self.has_value = false;
        self
    }

    fn cancelling(mut self) -> Self {
        self.cancels = true;
        self
    }
}

// Parameters of the maps, as functions of the dimension.

fn weights(dim: usize) -> Vec<f64> {
    (0..dim).map(|i| 0.4 * (i % 3) as f64).collect()
}

fn shift(dim: usize) -> Vec<f64> {
    (0..dim).map(|i| 1.5 * (0.9 * i as f64 + 0.3).sin()).collect()
}

fn point(dim: usize) -> Vec<f64> {
    (0..dim).map(|i| 0.8 * (i as f64).cos()).collect()
}

/// Splits `0..dim` into up to three nonempty contiguous ranges.
fn ranges(dim: usize) -> Vec<Range<usize>> {
    let first = dim.div_ceil(3);
    let second = first + (dim - first).div_ceil(2);
    [0..first, first..second, second..dim]
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect()
}

// Closed-form proxes of conjugates, written independently of the maps.

/// Applies `f(w_j, data_j, out_j)` to every column.
fn per_column(
    mut out: MatMut<'_, f64>,
    w: MatRef<'_, f64>,
    data: MatRef<'_, f64>,
    f: impl Fn(&[f64], MatRef<'_, f64>, &mut [f64]),
) {
    for j in 0..w.ncols() {
        let column: Vec<f64> = (0..w.nrows()).map(|i| w[(i, j)]).collect();
        let mut result = vec![0.0; w.nrows()];
        f(&column, data.subcols(j, 1), &mut result);
        for (i, value) in result.into_iter().enumerate() {
            out[(i, j)] = value;
        }
    }
}

/// The prox of `step · max_i y_i`: `x_i = min(w_i, t)` with
/// `Σ_i (w_i − t)₊ = step`, with `t` found by bisection.
fn prox_max(w: &[f64], step: f64, out: &mut [f64]) {
    let excess = |t: f64| w.iter().map(|&wi| (wi - t).max(0.0)).sum::<f64>() - step;
    let mut high = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut low = w.iter().copied().fold(f64::INFINITY, f64::min) - step;
    for _ in 0..2000 {
        let mid = 0.5 * (low + high);
        if mid <= low || mid >= high {
            break;
        }
        if excess(mid) > 0.0 {
            low = mid;
        } else {
            high = mid;
        }
    }
    let t = 0.5 * (low + high);
    for (o, &wi) in out.iter_mut().zip(w) {
        *o = wi.min(t);
    }
}

/// The projection onto the probability simplex by sorting: with `u` sorted
/// in decreasing order, `τ = (Σ_{i≤ρ} u_i − 1)/ρ` for the largest `ρ` with
/// `u_ρ > τ_ρ`.
fn project_simplex_sorted(w: &[f64], out: &mut [f64]) {
    let mut sorted = w.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut sum = 0.0;
    let mut tau = 0.0;
    for (k, &value) in sorted.iter().enumerate() {
        sum += value;
        let candidate = (sum - 1.0) / (k + 1) as f64;
        if value > candidate {
            tau = candidate;
        }
    }
    for (o, &wi) in out.iter_mut().zip(w) {
        *o = (wi - tau).max(0.0);
    }
}

fn clip(radius: Vec<f64>) -> ConjugateProx {
    Box::new(move |out, w, _step, data| {
        per_column(out, w, data, |w, _, out| {
            for i in 0..w.len() {
                out[i] = w[i].clamp(-radius[i], radius[i]);
            }
        })
    })
}

// Parameters of the penalties and sets. The closed forms of their
// conjugates read the same constants.

const L2_NORM_WEIGHT: f64 = 0.9;
const ELASTIC_L1_WEIGHT: f64 = 0.5;
const ELASTIC_L2_WEIGHT: f64 = 0.7;
const HUBER_DELTA: f64 = 0.6;
const HUBER_WEIGHT: f64 = 1.5;
const LINF_NORM_WEIGHT: f64 = 0.8;
const DISTANCE_WEIGHT: f64 = 1.3;
const L1_BALL_RADIUS: f64 = 1.8;
const BOX_LOWER: f64 = -0.8;
const BOX_UPPER: f64 = 1.2;
const L2_BALL_RADIUS: f64 = 1.3;
const LINF_BALL_RADIUS: f64 = 0.9;
const BOXED_L1_WEIGHT: f64 = 0.5;
const BOXED_SQUARED_WEIGHT: f64 = 0.7;

/// Returns per-entry box bounds cycling through a finite interval, an infinite
/// lower bound, an infinite upper bound, the whole line and one point.
fn box_bounds(dim: usize) -> (Vec<f64>, Vec<f64>) {
    let pattern = [
        (-1.0, 0.5),
        (f64::NEG_INFINITY, 0.7),
        (-0.3, f64::INFINITY),
        (f64::NEG_INFINITY, f64::INFINITY),
        (0.4, 0.4),
    ];
    (0..dim).map(|i| pattern[i % pattern.len()]).unzip()
}

/// Returns per-entry bounds of the box-constrained maps: intervals that contain
/// zero, lie right of it, or lie left of it with an infinite lower bound,
/// and one with an infinite upper bound.
fn constrained_bounds(dim: usize) -> (Vec<f64>, Vec<f64>) {
    let pattern = [
        (-1.0, 0.8),
        (0.3, 1.5),
        (f64::NEG_INFINITY, -0.2),
        (-0.6, f64::INFINITY),
    ];
    (0..dim).map(|i| pattern[i % pattern.len()]).unzip()
}

/// Returns the row count `p` of the constraint matrix on vectors of length
/// `dim`, so that `p ≤ dim` and the set is a single point only at `dim = 1`.
fn constraint_rows(dim: usize) -> usize {
    dim.div_ceil(2)
}

/// Returns a fixed Gaussian `p x dim` constraint matrix, of full row rank.
fn constraint_matrix(dim: usize) -> Mat<f64> {
    gaussian(constraint_rows(dim), dim, 41)
}

fn constraint_rhs(dim: usize) -> Vec<f64> {
    shift(constraint_rows(dim))
}

fn euclidean_norm(w: &[f64]) -> f64 {
    w.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Returns `w` soft-thresholded at `t`, the prox of `t|·|`.
fn soft_threshold(w: f64, t: f64) -> f64 {
    w.signum() * (w.abs() - t).max(0.0)
}

/// Writes the projection of `w` onto `{y : ‖y‖₂ ≤ radius}`, `w · min(1, radius/‖w‖₂)`.
fn project_l2_ball(w: &[f64], radius: f64, out: &mut [f64]) {
    let norm = euclidean_norm(w);
    let factor = if norm <= radius { 1.0 } else { radius / norm };
    for (o, &wi) in out.iter_mut().zip(w) {
        *o = factor * wi;
    }
}

/// Writes the block soft-thresholding of `w`, the prox of `t‖·‖₂`: `max(1 − t/‖w‖₂, 0) · w`.
fn shrink_l2(w: &[f64], t: f64, out: &mut [f64]) {
    let norm = euclidean_norm(w);
    let factor = if norm <= t { 0.0 } else { 1.0 - t / norm };
    for (o, &wi) in out.iter_mut().zip(w) {
        *o = factor * wi;
    }
}

/// Writes the projection of `w` onto `{y : ‖y‖₁ ≤ radius}` by sorting (Duchi,
/// Shalev-Shwartz, Singer and Chandra, ICML 2008): with `u = |w|` sorted in
/// decreasing order, `τ = (Σ_{i≤ρ} u_i − radius)/ρ` for the largest `ρ` with
/// `u_ρ > τ_ρ`, and `y_i = sign(w_i) · max(|w_i| − τ, 0)`.
fn project_l1_ball_sorted(w: &[f64], radius: f64, out: &mut [f64]) {
    if w.iter().map(|x| x.abs()).sum::<f64>() <= radius {
        out.copy_from_slice(w);
        return;
    }
    let mut sorted: Vec<f64> = w.iter().map(|x| x.abs()).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut sum = 0.0;
    let mut tau = sorted[0] - radius;
    for (k, &value) in sorted.iter().enumerate() {
        sum += value;
        let candidate = (sum - radius) / (k + 1) as f64;
        if value > candidate {
            tau = candidate;
        }
    }
    for (o, &wi) in out.iter_mut().zip(w) {
        *o = soft_threshold(wi, tau);
    }
}

/// Writes the prox of `t‖·‖∞` at `w`: zero when `‖w‖₁ ≤ t`, and otherwise
/// `y_i = sign(w_i) · min(|w_i|, τ)` with `Σ_i (|w_i| − τ)₊ = t`, where `τ`
/// is found by bisection.
fn prox_linf_bisection(w: &[f64], t: f64, out: &mut [f64]) {
    if w.iter().map(|x| x.abs()).sum::<f64>() <= t {
        out.fill(0.0);
        return;
    }
    let excess = |tau: f64| w.iter().map(|&wi| (wi.abs() - tau).max(0.0)).sum::<f64>() - t;
    // The excess is ‖w‖₁ − t > 0 at τ = 0 and −t < 0 at τ = max_i |w_i|.
    let mut low = 0.0;
    let mut high = w.iter().fold(0.0, |acc: f64, wi| acc.max(wi.abs()));
    for _ in 0..2000 {
        let mid = 0.5 * (low + high);
        if mid <= low || mid >= high {
            break;
        }
        if excess(mid) > 0.0 {
            low = mid;
        } else {
            high = mid;
        }
    }
    let tau = 0.5 * (low + high);
    for (o, &wi) in out.iter_mut().zip(w) {
        *o = wi.clamp(-tau, tau);
    }
}

/// Returns the prox of `s · σ` for the support function `σ(y) = max(l y, u y)` of the
/// interval `[l, u]`, the conjugate of its indicator: the shifted
/// soft-threshold `w − s u` where `w > s u`, `w − s l` where `w < s l`, and 0
/// between. An infinite bound makes `σ` infinite on its side of zero, so
/// that side never applies.
fn prox_interval_support(w: f64, s: f64, lower: f64, upper: f64) -> f64 {
    if upper.is_finite() && w > s * upper {
        w - s * upper
    } else if lower.is_finite() && w < s * lower {
        w - s * lower
    } else {
        0.0
    }
}

/// Returns the prox of `s · φ` for a convex piecewise-linear `φ` of one variable with
/// `breakpoints` `b_1 < … < b_k` and `slopes` `m_0 ≤ … ≤ m_k`, slope `m_j`
/// right of `b_j`. An infinite end slope makes `φ` infinite beyond its
/// breakpoint.
///
/// The condition `w − y ∈ s ∂φ(y)` gives `y = b_j` when
/// `b_j + s m_{j−1} ≤ w ≤ b_j + s m_j`, and otherwise `y = w − s m_j` in the
/// piece of slope `m_j` that contains it.
fn prox_piecewise_linear(w: f64, s: f64, breakpoints: &[f64], slopes: &[f64]) -> f64 {
    assert_eq!(slopes.len(), breakpoints.len() + 1);
    for (j, &b) in breakpoints.iter().enumerate() {
        if b + s * slopes[j] <= w && w <= b + s * slopes[j + 1] {
            return b;
        }
    }
    for (j, &slope) in slopes.iter().enumerate() {
        let left = if j == 0 {
            f64::NEG_INFINITY
        } else {
            breakpoints[j - 1]
        };
        let right = breakpoints.get(j).copied().unwrap_or(f64::INFINITY);
        let y = w - s * slope;
        if left <= y && y <= right {
            return y;
        }
    }
    panic!("no piece contains the prox of w = {w}: breakpoints {breakpoints:?}, slopes {slopes:?}");
}

/// Returns the prox of `s · g*` for one entry of `g(x) = μ|x| + ι_{[l, u]}(x)`.
///
/// `g*(y) = max_{x ∈ [l, u]} xy − μ|x|` is piecewise linear in `y`, with the
/// maximizing `x` as its slope: `l`, then 0 when `l < 0 < u`, then `u`. Two
/// consecutive maximizers `a < b` never have opposite signs; their lines
/// meet at `y = μ` when `a ≥ 0` and at `y = −μ` when `b ≤ 0`.
fn prox_conjugate_boxed_l1(w: f64, s: f64, mu: f64, lower: f64, upper: f64) -> f64 {
    let mut slopes = vec![lower];
    if lower < 0.0 && 0.0 < upper {
        slopes.push(0.0);
    }
    if upper > lower {
        slopes.push(upper);
    }
    let breakpoints: Vec<f64> = slopes
        .windows(2)
        .map(|pair| if pair[0] >= 0.0 { mu } else { -mu })
        .collect();
    prox_piecewise_linear(w, s, &breakpoints, &slopes)
}

/// Returns the prox of `s · g*` for one entry of `g(x) = (c/2)x² + ι_{[l, u]}(x)`.
///
/// `g*` is differentiable with `(g*)'(y) = clip(y/c, l, u)`, so the prox `y`
/// of `w` solves `w − y = s · clip(y/c, l, u)`. With `t = w/(c + s)`, that is
/// `y = c t` when `l < t < u`, `y = w − s u` when `t ≥ u` and `y = w − s l`
/// when `t ≤ l`.
fn prox_conjugate_boxed_squared(w: f64, s: f64, c: f64, lower: f64, upper: f64) -> f64 {
    let t = w / (c + s);
    if t >= upper {
        w - s * upper
    } else if t <= lower {
        w - s * lower
    } else {
        c * t
    }
}

/// Returns the prox of `s · g*` for one entry of the elastic net
/// `g(x) = λ₁|x| + (λ₂/2)x²`, whose conjugate is `g*(y) = (|y| − λ₁)₊²/(2λ₂)`:
/// `w` where `|w| ≤ λ₁`, and otherwise the root of
/// `y − w + s(|y| − λ₁)/λ₂ = 0`, `sign(w)(λ₂|w| + sλ₁)/(λ₂ + s)`.
fn prox_conjugate_elastic_net(w: f64, s: f64) -> f64 {
    if w.abs() <= ELASTIC_L1_WEIGHT {
        w
    } else {
        w.signum() * (ELASTIC_L2_WEIGHT * w.abs() + s * ELASTIC_L1_WEIGHT) / (ELASTIC_L2_WEIGHT + s)
    }
}

/// Returns the prox of `s · g*` for one entry of the Huber function
/// `g(x) = c · hub_δ(x)`, whose conjugate is `g*(y) = δy²/(2c) + ι_{|y| ≤ c}`:
/// `clip(c w/(c + sδ), −c, c)`.
fn prox_conjugate_huber(w: f64, s: f64) -> f64 {
    (HUBER_WEIGHT * w / (HUBER_WEIGHT + s * HUBER_DELTA)).clamp(-HUBER_WEIGHT, HUBER_WEIGHT)
}

/// Builds the prox of `s · g*` for the indicator `g` of `{x : Cx = b}` with the
/// constraint matrix of `dim`, and `b` fixed (`constraint_rhs`) or read from
/// rows `0..p` of each data column.
///
/// For `y = Cᵀλ` every `x` of the set gives `⟨x, y⟩ = ⟨b, λ⟩`, so
/// `g*(y) = ⟨x₀, y⟩ + ι_{range(Cᵀ)}(y)` with `x₀ = C⁺b` the least-norm point
/// of the set, and the prox is the projection `P(w − s x₀)` onto
/// `range(Cᵀ)`, with `P = C⁺C` from faer's singular value decomposition.
fn affine_conjugate(dim: usize, fixed_rhs: bool) -> ConjugateProx {
    let c = constraint_matrix(dim);
    let p = c.nrows();
    let pinv = c.svd().unwrap().pseudoinverse();
    let range_projector = &pinv * &c;
    let rhs = constraint_rhs(dim);
    let b = Mat::from_fn(p, 1, |k, _| rhs[k]);
    let fixed_least_norm = &pinv * &b;
    Box::new(move |mut out, w, s, data| {
        let least_norm = if fixed_rhs {
            Mat::from_fn(dim, w.ncols(), |i, _| fixed_least_norm[(i, 0)])
        } else {
            pinv.as_ref() * data.subrows(0, p)
        };
        let shifted = Mat::from_fn(dim, w.ncols(), |i, j| w[(i, j)] - s * least_norm[(i, j)]);
        out.copy_from(range_projector.as_ref() * shifted.as_ref());
    })
}

/// Returns every map under test: the basic maps and combinators, the
/// penalties and the projections onto sets.
fn table() -> Vec<Entry> {
    let mut entries = basic_and_combinator_entries();
    entries.extend(penalty_entries());
    entries.extend(set_entries());
    entries
}

fn basic_and_combinator_entries() -> Vec<Entry> {
    vec![
        Entry::new(
            "l1 scalar",
            |_| Box::new(L1Norm::new(0.7).unwrap()),
            Some(|dim| clip(vec![0.7; dim])),
            true,
        ),
        Entry::new(
            "l1 per entry",
            |dim| Box::new(L1Norm::with_weights(weights(dim)).unwrap()),
            Some(|dim| clip(weights(dim))),
            true,
        ),
        Entry::new(
            "l1 learnable",
            |_| Box::new(L1Norm::learnable("lambda", 0.5).unwrap()),
            Some(|dim| clip(vec![0.5; dim])),
            true,
        ),
        // ((w/2)‖·‖²)* = (1/(2w))‖·‖², whose prox at step s is w u/(w + s).
        Entry::new(
            "squared l2",
            |_| Box::new(SquaredL2::new(0.8).unwrap()),
            Some(|_| {
                Box::new(|out, w, s, _| {
                    faer::zip!(out, w).for_each(|faer::unzip!(o, w)| *o = 0.8 * *w / (0.8 + s))
                })
            }),
            true,
        ),
        // The conjugate of the simplex indicator is max_i y_i.
        Entry::new(
            "simplex",
            |_| Box::new(Simplex),
            Some(|_| Box::new(|out, w, s, data| per_column(out, w, data, |w, _, out| prox_max(w, s, out)))),
            false,
        )
        .cancelling(),
        // The conjugate of zero is the indicator of {0}.
        Entry::new(
            "zero",
            |_| Box::new(Zero),
            Some(|_| Box::new(|mut out, _, _, _| out.fill(0.0))),
            true,
        ),
        // The conjugate of the indicator of {c} is ⟨c, ·⟩, whose prox is u − s c.
        Entry::new(
            "point fixed",
            |dim| Box::new(IndicatorPoint::fixed(point(dim)).unwrap()),
            Some(|dim| {
                let c = point(dim);
                Box::new(move |out, w, s, data| {
                    per_column(out, w, data, |w, _, out| {
                        for i in 0..w.len() {
                            out[i] = w[i] - s * c[i];
                        }
                    })
                })
            }),
            false,
        ),
        Entry::new(
            "point from data",
            |dim| Box::new(IndicatorPoint::from_data(1, dim).unwrap()),
            Some(|_| {
                Box::new(|out, w, s, data| {
                    per_column(out, w, data, |w, d, out| {
                        for i in 0..w.len() {
                            out[i] = w[i] - s * d[(1 + i, 0)];
                        }
                    })
                })
            }),
            false,
        )
        .reading_data(|dim| dim + 1),
        // (a f)* = a f*(·/a): for f = λ‖·‖₁ the ball of radius aλ.
        Entry::new(
            "scaled l1",
            |_| Box::new(Scaled::new(L1Norm::learnable("lambda", 0.5).unwrap(), 1.5).unwrap()),
            Some(|dim| clip(vec![0.75; dim])),
            true,
        ),
        Entry::new(
            "scaled squared l2",
            |_| Box::new(Scaled::new(SquaredL2::new(0.8).unwrap(), 2.0).unwrap()),
            Some(|_| {
                Box::new(|out, w, s, _| {
                    faer::zip!(out, w).for_each(|faer::unzip!(o, w)| *o = 1.6 * *w / (1.6 + s))
                })
            }),
            true,
        ),
        // A scaled indicator is the same indicator.
        Entry::new(
            "scaled simplex",
            |_| Box::new(Scaled::new(Simplex, 2.0).unwrap()),
            Some(|_| Box::new(|out, w, s, data| per_column(out, w, data, |w, _, out| prox_max(w, s, out)))),
            false,
        )
        .cancelling(),
        // f(· − b)* = f* + ⟨b, ·⟩, whose prox is prox_{s f*}(u − s b).
        Entry::new(
            "translated l1",
            |dim| Box::new(Translated::new(L1Norm::new(0.6).unwrap(), shift(dim)).unwrap()),
            Some(|dim| {
                let b = shift(dim);
                Box::new(move |out, w, s, data| {
                    per_column(out, w, data, |w, _, out| {
                        for i in 0..w.len() {
                            out[i] = (w[i] - s * b[i]).clamp(-0.6, 0.6);
                        }
                    })
                })
            }),
            true,
        ),
        Entry::new(
            "translated simplex",
            |dim| Box::new(Translated::new(Simplex, shift(dim)).unwrap()),
            Some(|dim| {
                let b = shift(dim);
                Box::new(move |out, w, s, data| {
                    per_column(out, w, data, |w, _, out| {
                        let moved: Vec<f64> = w.iter().zip(&b).map(|(wi, bi)| wi - s * bi).collect();
                        prox_max(&moved, s, out);
                    })
                })
            }),
            false,
        )
        .cancelling(),
        // ½‖x − d‖² has the conjugate ½‖y‖² + ⟨d, y⟩, with prox (u − s d)/(1 + s).
        Entry::new(
            "translated by data",
            |dim| Box::new(Translated::by_data(SquaredL2::new(1.0).unwrap(), 1, dim).unwrap()),
            Some(|_| {
                Box::new(|out, w, s, data| {
                    per_column(out, w, data, |w, d, out| {
                        for i in 0..w.len() {
                            out[i] = (w[i] - s * d[(1 + i, 0)]) / (1.0 + s);
                        }
                    })
                })
            }),
            true,
        )
        .reading_data(|dim| dim + 1),
        // The conjugate of a separable sum is the sum of the conjugates.
        Entry::new(
            "separable l1, squared l2, zero",
            |dim| {
                let parts: [Build; 3] = [
                    |_| Box::new(L1Norm::new(0.5).unwrap()),
                    |_| Box::new(SquaredL2::new(0.8).unwrap()),
                    |_| Box::new(Zero),
                ];
                let blocks = ranges(dim)
                    .into_iter()
                    .zip(parts)
                    .map(|(rows, part)| SeparableBlock::from_boxed(rows.clone(), part(rows.len())))
                    .collect();
                Box::new(SeparableSum::new(dim, blocks).unwrap())
            },
            Some(|dim| {
                Box::new(move |mut out, w, s, _| {
                    for (k, rows) in ranges(dim).into_iter().enumerate() {
                        for j in 0..w.ncols() {
                            for i in rows.clone() {
                                out[(i, j)] = match k {
                                    0 => w[(i, j)].clamp(-0.5, 0.5),
                                    1 => 0.8 * w[(i, j)] / (0.8 + s),
                                    _ => 0.0,
                                };
                            }
                        }
                    }
                })
            }),
            true,
        ),
        Entry::new(
            "separable simplex, point from data, l1",
            |dim| {
                let mut blocks = Vec::new();
                for (k, rows) in ranges(dim).into_iter().enumerate() {
                    let part: Box<dyn Prox<f64>> = match k {
                        0 => Box::new(Simplex),
                        1 => Box::new(IndicatorPoint::from_data(rows.start, rows.len()).unwrap()),
                        _ => Box::new(L1Norm::learnable("lambda", 0.3).unwrap()),
                    };
                    blocks.push(SeparableBlock::from_boxed(rows, part));
                }
                Box::new(SeparableSum::new(dim, blocks).unwrap())
            },
            Some(|dim| {
                Box::new(move |mut out, w, s, data| {
                    for (k, rows) in ranges(dim).into_iter().enumerate() {
                        for j in 0..w.ncols() {
                            let block: Vec<f64> = rows.clone().map(|i| w[(i, j)]).collect();
                            let mut result = vec![0.0; rows.len()];
                            match k {
                                0 => prox_max(&block, s, &mut result),
                                1 => {
                                    for (r, i) in rows.clone().enumerate() {
                                        result[r] = block[r] - s * data[(i, j)];
                                    }
                                }
                                _ => {
                                    for r in 0..rows.len() {
                                        result[r] = block[r].clamp(-0.3, 0.3);
                                    }
                                }
                            }
                            for (r, i) in rows.clone().enumerate() {
                                out[(i, j)] = result[r];
                            }
                        }
                    }
                })
            }),
            false,
        )
        .reading_data(|dim| dim)
        .cancelling(),
        // (λ‖·‖₁)* is the indicator of the ℓ∞ ball, whose conjugate is λ‖·‖₁
        // again: soft-thresholding at s λ.
        Entry::new(
            "conjugate l1",
            |_| Box::new(Conjugate::new(L1Norm::learnable("lambda", 0.7).unwrap())),
            Some(|_| {
                Box::new(|out, w, s, _| {
                    faer::zip!(out, w)
                        .for_each(|faer::unzip!(o, w)| *o = w.signum() * (w.abs() - 0.7 * s).max(0.0))
                })
            }),
            false,
        )
        .without_value()
        .cancelling(),
        Entry::new(
            "conjugate squared l2",
            |_| Box::new(Conjugate::new(SquaredL2::new(0.8).unwrap())),
            Some(|_| {
                Box::new(|out, w, s, _| {
                    faer::zip!(out, w).for_each(|faer::unzip!(o, w)| *o = *w / (1.0 + 0.8 * s))
                })
            }),
            true,
        )
        .without_value(),
        // The conjugate of the simplex indicator is max_i y_i; its own
        // conjugate is the simplex indicator again.
        Entry::new(
            "conjugate simplex",
            |_| Box::new(Conjugate::new(Simplex)),
            Some(|_| {
                Box::new(|out, w, _, data| {
                    per_column(out, w, data, |w, _, out| project_simplex_sorted(w, out))
                })
            }),
            true,
        )
        .without_value()
        .cancelling(),
        // The conjugate of the indicator of {c} is ⟨c, ·⟩; its conjugate is
        // the indicator again, whose prox is c.
        Entry::new(
            "conjugate point",
            |dim| Box::new(Conjugate::new(IndicatorPoint::fixed(point(dim)).unwrap())),
            Some(|dim| {
                let c = point(dim);
                Box::new(move |out, w, _, data| {
                    per_column(out, w, data, |_, _, out| out.copy_from_slice(&c));
                })
            }),
            true,
        )
        .without_value(),
    ]
}

/// Returns the penalties: norms, smooth terms and squared distances.
fn penalty_entries() -> Vec<Entry> {
    vec![
        // (λ‖·‖₂)* is the indicator of the ℓ2 ball of radius λ.
        Entry::new(
            "l2 norm",
            |_| Box::new(L2Norm::new(L2_NORM_WEIGHT).unwrap()),
            Some(|_| {
                Box::new(|out, w, _, data| {
                    per_column(out, w, data, |w, _, out| project_l2_ball(w, L2_NORM_WEIGHT, out))
                })
            }),
            true,
        ),
        Entry::new(
            "elastic net",
            |_| Box::new(ElasticNet::new(ELASTIC_L1_WEIGHT, ELASTIC_L2_WEIGHT).unwrap()),
            Some(|_| {
                Box::new(|out, w, s, _| {
                    faer::zip!(out, w).for_each(|faer::unzip!(o, w)| *o = prox_conjugate_elastic_net(*w, s))
                })
            }),
            true,
        ),
        Entry::new(
            "huber weighted",
            |_| Box::new(Huber::weighted(HUBER_DELTA, HUBER_WEIGHT).unwrap()),
            Some(|_| {
                Box::new(|out, w, s, _| {
                    faer::zip!(out, w).for_each(|faer::unzip!(o, w)| *o = prox_conjugate_huber(*w, s))
                })
            }),
            true,
        ),
        // (λ‖·‖∞)* is the indicator of the ℓ1 ball of radius λ.
        Entry::new(
            "linf norm",
            |_| Box::new(LinfNorm::new(LINF_NORM_WEIGHT).unwrap()),
            Some(|_| {
                Box::new(|out, w, _, data| {
                    per_column(out, w, data, |w, _, out| {
                        project_l1_ball_sorted(w, LINF_NORM_WEIGHT, out)
                    })
                })
            }),
            true,
        ),
        // ½ Σ_i c_i x_i² has the conjugate Σ_i y_i²/(2c_i), the indicator of
        // y_i = 0 where c_i = 0, with prox c_i u_i/(c_i + s).
        Entry::new(
            "squared l2 per entry",
            |dim| Box::new(SquaredL2::with_weights(weights(dim)).unwrap()),
            Some(|dim| {
                let c = weights(dim);
                Box::new(move |out, w, s, data| {
                    per_column(out, w, data, |w, _, out| {
                        for i in 0..w.len() {
                            out[i] = c[i] * w[i] / (c[i] + s);
                        }
                    })
                })
            }),
            true,
        ),
        // ((c/2)‖x − d‖²)* = ‖y‖²/(2c) + ⟨d, y⟩, with prox c(u − s d)/(c + s).
        Entry::new(
            "squared distance fixed",
            |dim| Box::new(SquaredDistance::fixed(DISTANCE_WEIGHT, point(dim)).unwrap()),
            Some(|dim| {
                let d = point(dim);
                Box::new(move |out, w, s, data| {
                    per_column(out, w, data, |w, _, out| {
                        for i in 0..w.len() {
                            out[i] = DISTANCE_WEIGHT * (w[i] - s * d[i]) / (DISTANCE_WEIGHT + s);
                        }
                    })
                })
            }),
            true,
        ),
        Entry::new(
            "squared distance from data",
            |dim| Box::new(SquaredDistance::from_data(DISTANCE_WEIGHT, 1, dim).unwrap()),
            Some(|_| {
                Box::new(|out, w, s, data| {
                    per_column(out, w, data, |w, d, out| {
                        for i in 0..w.len() {
                            out[i] = DISTANCE_WEIGHT * (w[i] - s * d[(1 + i, 0)]) / (DISTANCE_WEIGHT + s);
                        }
                    })
                })
            }),
            true,
        )
        .reading_data(|dim| dim + 1),
    ]
}

/// Returns the indicators of sets, and separable functions restricted to a box.
fn set_entries() -> Vec<Entry> {
    vec![
        // (ι_{‖·‖₁ ≤ r})* = r‖·‖∞.
        Entry::new(
            "l1 ball",
            |_| Box::new(L1Ball::new(L1_BALL_RADIUS).unwrap()),
            Some(|_| {
                Box::new(|out, w, s, data| {
                    per_column(out, w, data, |w, _, out| {
                        prox_linf_bisection(w, s * L1_BALL_RADIUS, out)
                    })
                })
            }),
            false,
        ),
        // The conjugate of a box indicator is its support function.
        Entry::new(
            "box uniform",
            |_| Box::new(BoxSet::uniform(BOX_LOWER, BOX_UPPER).unwrap()),
            Some(|_| {
                Box::new(|out, w, s, _| {
                    faer::zip!(out, w).for_each(|faer::unzip!(o, w)| {
                        *o = prox_interval_support(*w, s, BOX_LOWER, BOX_UPPER)
                    })
                })
            }),
            false,
        ),
        Entry::new(
            "box per entry with infinite bounds",
            |dim| {
                let (lower, upper) = box_bounds(dim);
                Box::new(BoxSet::new(lower, upper).unwrap())
            },
            Some(|dim| {
                let (lower, upper) = box_bounds(dim);
                Box::new(move |out, w, s, data| {
                    per_column(out, w, data, |w, _, out| {
                        for i in 0..w.len() {
                            out[i] = prox_interval_support(w[i], s, lower[i], upper[i]);
                        }
                    })
                })
            }),
            false,
        ),
        // The conjugate of the support function is the box indicator again.
        Entry::new(
            "conjugate box per entry",
            |dim| {
                let (lower, upper) = box_bounds(dim);
                Box::new(Conjugate::new(BoxSet::new(lower, upper).unwrap()))
            },
            Some(|dim| {
                let (lower, upper) = box_bounds(dim);
                Box::new(move |out, w, _, data| {
                    per_column(out, w, data, |w, _, out| {
                        for i in 0..w.len() {
                            out[i] = w[i].clamp(lower[i], upper[i]);
                        }
                    })
                })
            }),
            false,
        )
        .without_value()
        .cancelling(),
        // The conjugate of the nonnegative orthant's indicator is the
        // indicator of the nonpositive orthant.
        Entry::new(
            "nonnegative",
            |_| Box::new(Nonnegative),
            Some(|_| {
                Box::new(|out, w, _, _| faer::zip!(out, w).for_each(|faer::unzip!(o, w)| *o = w.min(0.0)))
            }),
            false,
        ),
        // (ι_{‖x − c‖₂ ≤ r})*(y) = ⟨c, y⟩ + r‖y‖₂, whose prox is block
        // soft-thresholding of u − s c at s r. In one dimension the
        // projection of an outside point is the constant c ± r, computed as
        // c + (r/|v − c|)(v − c), which cancels.
        Entry::new(
            "l2 ball",
            |_| Box::new(L2Ball::new(L2_BALL_RADIUS).unwrap()),
            Some(|_| {
                Box::new(|out, w, s, data| {
                    per_column(out, w, data, |w, _, out| shrink_l2(w, s * L2_BALL_RADIUS, out))
                })
            }),
            false,
        )
        .cancelling(),
        Entry::new(
            "l2 ball with center",
            |dim| Box::new(L2Ball::with_center(point(dim), L2_BALL_RADIUS).unwrap()),
            Some(|dim| {
                let c = point(dim);
                Box::new(move |out, w, s, data| {
                    per_column(out, w, data, |w, _, out| {
                        let moved: Vec<f64> = w.iter().zip(&c).map(|(wi, ci)| wi - s * ci).collect();
                        shrink_l2(&moved, s * L2_BALL_RADIUS, out);
                    })
                })
            }),
            false,
        )
        .cancelling(),
        // (ι_{‖·‖∞ ≤ r})* = r‖·‖₁: soft-thresholding at s r.
        Entry::new(
            "linf ball",
            |_| Box::new(LinfBall::new(LINF_BALL_RADIUS).unwrap()),
            Some(|_| {
                Box::new(|out, w, s, _| {
                    faer::zip!(out, w)
                        .for_each(|faer::unzip!(o, w)| *o = soft_threshold(*w, s * LINF_BALL_RADIUS))
                })
            }),
            false,
        ),
        // For dim = 1 the set is one point, whose projection v − u(cv − b)
        // cancels to a constant.
        Entry::new(
            "affine set fixed",
            |dim| {
                let c = constraint_matrix(dim);
                Box::new(AffineSet::new(c.as_ref(), constraint_rhs(dim)).unwrap())
            },
            Some(|dim| affine_conjugate(dim, true)),
            false,
        )
        .cancelling(),
        Entry::new(
            "affine set from data",
            |dim| Box::new(AffineSet::from_data(constraint_matrix(dim).as_ref()).unwrap()),
            Some(|dim| affine_conjugate(dim, false)),
            false,
        )
        .reading_data(constraint_rows)
        .cancelling(),
        Entry::new(
            "boxed l1",
            |dim| {
                let (lower, upper) = constrained_bounds(dim);
                Box::new(BoxConstrained::new(L1Norm::new(BOXED_L1_WEIGHT).unwrap(), lower, upper).unwrap())
            },
            Some(|dim| {
                let (lower, upper) = constrained_bounds(dim);
                Box::new(move |out, w, s, data| {
                    per_column(out, w, data, |w, _, out| {
                        for i in 0..w.len() {
                            out[i] = prox_conjugate_boxed_l1(w[i], s, BOXED_L1_WEIGHT, lower[i], upper[i]);
                        }
                    })
                })
            }),
            false,
        ),
        Entry::new(
            "boxed squared l2",
            |dim| {
                let (lower, upper) = constrained_bounds(dim);
                let inner = SquaredL2::new(BOXED_SQUARED_WEIGHT).unwrap();
                Box::new(BoxConstrained::new(inner, lower, upper).unwrap())
            },
            Some(|dim| {
                let (lower, upper) = constrained_bounds(dim);
                Box::new(move |out, w, s, data| {
                    per_column(out, w, data, |w, _, out| {
                        for i in 0..w.len() {
                            out[i] = prox_conjugate_boxed_squared(
                                w[i],
                                s,
                                BOXED_SQUARED_WEIGHT,
                                lower[i],
                                upper[i],
                            );
                        }
                    })
                })
            }),
            false,
        ),
    ]
}

/// A random batch with entries of standard deviation 2, so thresholds and
/// clips near 1 are crossed on both sides.
fn batch(dim: usize, cols: usize, seed: u64) -> Mat<f64> {
    gaussian(dim, cols, seed).as_ref() * 2.0
}

fn data_for(entry: &Entry, dim: usize, cols: usize, seed: u64) -> Mat<f64> {
    gaussian((entry.data_rows)(dim), cols, seed)
}

proptest! {
    #![proptest_config(optlayer_testing::proptest_config(128))]

    #[test]
    fn every_map_is_firmly_nonexpansive(
        dim in 1usize..8, cols in 1usize..4, gamma in 0.05f64..3.0, seed in 0u64..100_000,
    ) {
        for entry in table() {
            let g = (entry.build)(dim);
            let data = data_for(&entry, dim, cols, seed + 2);
            let (u, v) = (batch(dim, cols, seed), batch(dim, cols, seed + 1));
            let check = check_firm_nonexpansiveness(&*g, u.as_ref(), v.as_ref(), gamma, data.as_ref()).unwrap();
            prop_assert_eq!(check.pairs, cols, "{}", entry.name);
            prop_assert!(check.passes(1e-10), "{}: {check:?}", entry.name);
        }
    }

    #[test]
    fn every_prox_satisfies_subgradient_inequality(
        dim in 1usize..8, cols in 1usize..4, gamma in 0.05f64..3.0, seed in 0u64..100_000,
    ) {
        for entry in table() {
            let g = (entry.build)(dim);
            let data = data_for(&entry, dim, cols, seed + 2);
            let v = batch(dim, cols, seed);
            let seeds = [batch(dim, cols, seed + 3), batch(dim, cols, seed + 4), batch(dim, cols, seed + 5)];
            let seed_refs: Vec<MatRef<'_, f64>> = seeds.iter().map(|s| s.as_ref()).collect();
            let result = check_prox_optimality(&*g, v.as_ref(), gamma, data.as_ref(), &seed_refs);
            if !entry.has_value {
                prop_assert!(result.is_err(), "{} provides a value: add it to the table", entry.name);
                continue;
            }
            let check = result.unwrap();
            prop_assert_eq!(check.checked + check.skipped_infinite, 3 * cols, "{}", entry.name);
            prop_assert_eq!(check.skipped_infinite, 0, "{}: a prox output lies outside the domain", entry.name);
            prop_assert!(check.passes(1e-9), "{}: {check:?}", entry.name);
        }
    }

    #[test]
    fn moreau_identity_holds_with_independent_conjugate(
        dim in 1usize..8, cols in 1usize..4, gamma in 0.05f64..3.0, seed in 0u64..100_000,
    ) {
        for entry in table() {
            let Some(conjugate) = entry.conjugate else { continue };
            let g = (entry.build)(dim);
            let data = data_for(&entry, dim, cols, seed + 2);
            let v = batch(dim, cols, seed);
            let check = check_moreau_identity(&*g, conjugate(dim), v.as_ref(), gamma, data.as_ref()).unwrap();
            prop_assert_eq!(check.columns, cols);
            prop_assert!(check.passes(1e-12), "{}: {check:?}", entry.name);
        }
    }

    #[test]
    fn zero_step_is_identity_or_finite(dim in 1usize..8, cols in 1usize..4, seed in 0u64..100_000) {
        for entry in table() {
            let g = (entry.build)(dim);
            let data = data_for(&entry, dim, cols, seed + 2);
            let v = batch(dim, cols, seed);
            let check = check_zero_step(&*g, v.as_ref(), data.as_ref()).unwrap();
            // Indicators project at step zero as well; their output must be finite.
            prop_assert!(check.max_residual.is_finite(), "{}: {check:?}", entry.name);
            if entry.finite_everywhere {
                prop_assert!(check.passes(1e-15), "{}: {check:?}", entry.name);
            }
        }
    }

    #[test]
    fn every_vjp_matches_finite_differences(
        dim in 1usize..8, cols in 1usize..4, gamma in 0.05f64..3.0, seed in 0u64..100_000,
    ) {
        for entry in table() {
            let g = (entry.build)(dim);
            let data = data_for(&entry, dim, cols, seed + 2);
            let v = batch(dim, cols, seed);
            let c = gaussian(dim, cols, seed + 6);
            let check = check_vjp(&*g, v.as_ref(), gamma, data.as_ref(), c.as_ref(), &FdOptions::default()).unwrap();
            // Where every compared derivative is zero, rounding noise of
            // order 1e-10 in the differences makes the relative error 1, so
            // an absolute error that small passes too.
            prop_assert!(check.rel_error < 1e-7 || check.max_abs_error < 1e-8, "{}: {check:?}", entry.name);
            prop_assert_eq!(check.checked + check.skipped_nonsmooth, dim * cols, "{}", entry.name);
            if !entry.cancels {
                prop_assert!(check.skipped_nonsmooth <= 1, "{}: {check:?}", entry.name);
            }
        }
    }

    #[test]
    fn every_entrywise_form_matches_the_map(
        dim in 1usize..8, cols in 1usize..4, gamma in 0.05f64..3.0, seed in 0u64..100_000,
    ) {
        for entry in table() {
            let g = (entry.build)(dim);
            let data = data_for(&entry, dim, cols, seed + 2);
            let mut v = batch(dim, cols, seed);
            // Ties of the soft threshold and of the box and ball bounds of
            // the table (±γ·w for weights near 1, ±1, 0, ±0.5) and a
            // negative zero, written over the first entries.
            let ties = [gamma, -gamma, 0.5 * gamma, 1.0, -1.0, 0.0, -0.0, 0.5, -0.5];
            for (k, tie) in ties.into_iter().enumerate().take(dim * cols) {
                v[(k % dim, k / dim)] = tie;
            }
            let check = check_entrywise(&*g, v.as_ref(), gamma, data.as_ref()).unwrap();
            prop_assert!(check.passes(), "{}: {check:?}", entry.name);
            if check.form.is_some() {
                prop_assert_eq!(check.entries, dim * cols, "{}", entry.name);
            }
        }
    }
}

/// The maps that give an entry-wise form give it, so that the property
/// test above compares something and linearized ADMM fuses them.
#[test]
fn entrywise_forms_of_the_elementary_maps() {
    let forms: Vec<(&str, Option<Entrywise<f64>>)> = table()
        .iter()
        .map(|entry| (entry.name, (entry.build)(4).entrywise(0.5)))
        .filter(|(_, form)| form.is_some())
        .collect();
    let expected = [
        ("l1 scalar", "Shrink"),
        ("l1 learnable", "Shrink"),
        ("zero", "Identity"),
        ("point from data", "DataRows { offset: 1 }"),
        ("scaled l1", "Shrink"),
        ("box uniform", "Clip"),
        ("linf ball", "Clip"),
    ];
    let names: Vec<&str> = forms.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, expected.map(|(name, _)| name), "{forms:?}");
    for ((name, form), (_, kind)) in forms.iter().zip(expected) {
        assert!(format!("{form:?}").contains(kind), "{name}: {form:?}");
    }
}

#[test]
fn conjugate_of_simplex_is_prox_of_max() {
    // Conjugate(Simplex) is max_i y_i; compare with the bisection prox.
    let g = Conjugate::new(Simplex);
    let v = batch(6, 5, 3);
    for gamma in [0.1, 1.0, 4.0] {
        let mut out = Mat::zeros(6, 5);
        g.prox(out.as_mut(), v.as_ref(), gamma, Mat::zeros(0, 5).as_ref());
        let mut expected = Mat::zeros(6, 5);
        per_column(
            expected.as_mut(),
            v.as_ref(),
            Mat::zeros(0, 5).as_ref(),
            |w, _, out| prox_max(w, gamma, out),
        );
        assert!((&out - &expected).norm_max() < 1e-12, "γ = {gamma}");
    }
}

#[test]
fn conjugate_of_one_point_box() {
    // lower = upper = [2, 2] is the one-point set {(2, 2)}. Its conjugate is
    // ⟨(2, 2), y⟩, whose prox at step 0.5 subtracts (1, 1): [1, −1] ↦ [0, −2].
    let point_box = BoxSet::new(vec![2.0, 2.0], vec![2.0, 2.0]).unwrap();
    let no_data = Mat::<f64>::zeros(0, 1);
    let mut projected = Mat::zeros(2, 1);
    point_box.prox(
        projected.as_mut(),
        mat![[-5.0], [7.0]].as_ref(),
        1.0,
        no_data.as_ref(),
    );
    assert_eq!(projected, mat![[2.0], [2.0]]);

    let g = Conjugate::new(point_box);
    let mut out = Mat::zeros(2, 1);
    g.prox(out.as_mut(), mat![[1.0], [-1.0]].as_ref(), 0.5, no_data.as_ref());
    assert_eq!(out, mat![[0.0], [-2.0]]);
    assert_eq!(prox_interval_support(1.0, 0.5, 2.0, 2.0), 0.0);
    assert_eq!(prox_interval_support(-1.0, 0.5, 2.0, 2.0), -2.0);
}

#[test]
fn box_lower_above_upper_rejected() {
    let err = BoxSet::new(vec![0.0, 3.0], vec![1.0, 2.0]).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
    assert!(err.to_string().contains("lower bound [1]"), "{err}");
    let err = BoxSet::uniform(1.0, 0.5).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
}

/// Returns the minimizer of a convex `f` on `[low, high]` by golden-section
/// search. Comparing values of `f` near its minimum locates the minimizer to
/// about `√ε` relative, not to `ε`.
fn minimize_convex(f: impl Fn(f64) -> f64, mut low: f64, mut high: f64) -> f64 {
    let ratio = 0.5 * (5f64.sqrt() - 1.0);
    while high - low > 1e-13 * (1.0 + low.abs().max(high.abs())) {
        let left = high - ratio * (high - low);
        let right = low + ratio * (high - low);
        if f(left) <= f(right) {
            high = right;
        } else {
            low = left;
        }
    }
    0.5 * (low + high)
}

#[test]
fn scalar_conjugate_proxes_minimize() {
    // Each closed form minimizes s·φ(y) + (y − w)²/2 with φ the conjugate
    // written out directly, over an interval that contains its domain.
    let inputs = [-3.1, -1.2, -0.7, -0.45, -0.1, 0.0, 0.2, 0.55, 0.9, 1.4, 2.6];
    for s in [0.3, 1.0, 2.5] {
        for &w in &inputs {
            let check = |name: &str, expected: f64, phi: &dyn Fn(f64) -> f64, low: f64, high: f64| {
                let found = minimize_convex(|y| s * phi(y) + 0.5 * (y - w) * (y - w), low, high);
                assert!(
                    (found - expected).abs() < 1e-6,
                    "{name}, w = {w}, s = {s}: closed form {expected}, minimizer {found}"
                );
            };
            let elastic = |y: f64| (y.abs() - ELASTIC_L1_WEIGHT).max(0.0).powi(2) / (2.0 * ELASTIC_L2_WEIGHT);
            check(
                "elastic net",
                prox_conjugate_elastic_net(w, s),
                &elastic,
                -10.0,
                10.0,
            );
            let huber = |y: f64| HUBER_DELTA * y * y / (2.0 * HUBER_WEIGHT);
            check(
                "huber",
                prox_conjugate_huber(w, s),
                &huber,
                -HUBER_WEIGHT,
                HUBER_WEIGHT,
            );
            for (lower, upper) in [(-1.0, 0.5), (0.3, 1.5), (-1.2, -0.2), (0.4, 0.4)] {
                let support = |y: f64| (lower * y).max(upper * y);
                check(
                    "interval support",
                    prox_interval_support(w, s, lower, upper),
                    &support,
                    -10.0,
                    10.0,
                );
                let mu = BOXED_L1_WEIGHT;
                let boxed_l1 = |y: f64| {
                    let mut best = (lower * y - mu * lower.abs()).max(upper * y - mu * upper.abs());
                    if lower < 0.0 && 0.0 < upper {
                        best = best.max(0.0);
                    }
                    best
                };
                check(
                    "boxed l1",
                    prox_conjugate_boxed_l1(w, s, mu, lower, upper),
                    &boxed_l1,
                    -10.0,
                    10.0,
                );
                let c = BOXED_SQUARED_WEIGHT;
                let boxed_squared = |y: f64| {
                    let x = (y / c).clamp(lower, upper);
                    x * y - 0.5 * c * x * x
                };
                check(
                    "boxed squared l2",
                    prox_conjugate_boxed_squared(w, s, c, lower, upper),
                    &boxed_squared,
                    -10.0,
                    10.0,
                );
            }
        }
    }
}

#[test]
fn infinite_bound_conjugate_proxes() {
    let inf = f64::INFINITY;
    // σ of [−0.3, ∞) is −0.3y on y ≤ 0 and infinite beyond: w − s l below
    // s l = −0.3 s, else 0.
    assert_eq!(prox_interval_support(-1.0, 1.0, -0.3, inf), -0.7);
    assert_eq!(prox_interval_support(5.0, 1.0, -0.3, inf), 0.0);
    assert_eq!(prox_interval_support(-5.0, 1.0, -inf, inf), 0.0);
    // μ|x| on (−∞, −0.2]: g*(y) = −0.2(y + μ) for y ≥ −μ and infinite below.
    assert!((prox_conjugate_boxed_l1(-3.0, 1.0, 0.5, -inf, -0.2) + 0.5).abs() < 1e-15);
    assert!((prox_conjugate_boxed_l1(1.0, 1.0, 0.5, -inf, -0.2) - 1.2).abs() < 1e-15);
    // μ|x| on [−0.6, ∞): slope −0.6 below −μ, 0 on [−μ, μ], infinite above μ.
    assert_eq!(prox_conjugate_boxed_l1(4.0, 1.0, 0.5, -0.6, inf), 0.5);
    assert_eq!(prox_conjugate_boxed_l1(0.2, 1.0, 0.5, -0.6, inf), 0.2);
    assert!((prox_conjugate_boxed_l1(-2.0, 1.0, 0.5, -0.6, inf) + 1.4).abs() < 1e-15);
    // (c/2)x² on (−∞, −0.2]: t = w/(c + s); above −0.2 the slope is −0.2.
    assert!((prox_conjugate_boxed_squared(1.0, 1.0, 0.7, -inf, -0.2) - 1.2).abs() < 1e-15);
    assert!((prox_conjugate_boxed_squared(-3.4, 1.0, 0.7, -inf, -0.2) + 1.4).abs() < 1e-15);
}

#[test]
fn independent_references_are_correct() {
    // prox of s·max at w = [3, 1, 0], s = 1: t = 2, so [2, 1, 0].
    let mut out = [0.0; 3];
    prox_max(&[3.0, 1.0, 0.0], 1.0, &mut out);
    assert!(
        (out[0] - 2.0).abs() < 1e-14 && out[1] == 1.0 && out[2] == 0.0,
        "{out:?}"
    );
    // s = 3: Σ (w_i − t)₊ = 3 at t = 0.5, so [0.5, 0.5, 0].
    prox_max(&[3.0, 1.0, 0.0], 3.0, &mut out);
    assert!(
        (out[0] - 0.5).abs() < 1e-14 && (out[1] - 0.5).abs() < 1e-14 && out[2] == 0.0,
        "{out:?}"
    );
    project_simplex_sorted(&[1.5, 2.0, 0.3], &mut out);
    assert!(
        (out[0] - 0.25).abs() < 1e-15 && (out[1] - 0.75).abs() < 1e-15 && out[2] == 0.0,
        "{out:?}"
    );
    assert_eq!(
        ranges(7).into_iter().map(|r| r.len()).collect::<Vec<_>>(),
        vec![3, 2, 2]
    );
    assert_eq!(ranges(1), vec![0..1]);

    // Projection onto the ℓ1 ball of radius 1: τ = (2 + 1.5 − 1)/2 = 1.25.
    project_l1_ball_sorted(&[2.0, -1.5, 0.5], 1.0, &mut out);
    assert!(
        (out[0] - 0.75).abs() < 1e-15 && (out[1] + 0.25).abs() < 1e-15 && out[2] == 0.0,
        "{out:?}"
    );
    // Prox of ‖·‖∞ at [3, −2.5, 0.5]: τ = 2.25 gives Σ (|w_i| − τ)₊ = 1.
    prox_linf_bisection(&[3.0, -2.5, 0.5], 1.0, &mut out);
    assert!(
        (out[0] - 2.25).abs() < 1e-14 && (out[1] + 2.25).abs() < 1e-14 && out[2] == 0.5,
        "{out:?}"
    );
    prox_linf_bisection(&[0.5, -0.3, 0.1], 1.0, &mut out);
    assert_eq!(out, [0.0; 3]);
    // The two are Moreau complements: w = P_{‖·‖₁ ≤ t}(w) + prox_{t‖·‖∞}(w).
    let w = [1.7, -0.4, 2.9, -2.2];
    let (mut projected, mut shrunk) = ([0.0; 4], [0.0; 4]);
    project_l1_ball_sorted(&w, 2.5, &mut projected);
    prox_linf_bisection(&w, 2.5, &mut shrunk);
    for i in 0..4 {
        assert!(
            (projected[i] + shrunk[i] - w[i]).abs() < 1e-14,
            "{projected:?} {shrunk:?}"
        );
    }
    // The ℓ2 ball and block soft-thresholding at [3, 4] with radius 1.
    let mut pair = [0.0; 2];
    project_l2_ball(&[3.0, 4.0], 1.0, &mut pair);
    assert!(
        (pair[0] - 0.6).abs() < 1e-15 && (pair[1] - 0.8).abs() < 1e-15,
        "{pair:?}"
    );
    shrink_l2(&[3.0, 4.0], 1.0, &mut pair);
    assert!(
        (pair[0] - 2.4).abs() < 1e-15 && (pair[1] - 3.2).abs() < 1e-15,
        "{pair:?}"
    );
    // |·| as a piecewise-linear function, and the indicator of [−1, 1].
    assert_eq!(prox_piecewise_linear(3.0, 0.5, &[0.0], &[-1.0, 1.0]), 2.5);
    assert_eq!(prox_piecewise_linear(0.2, 0.5, &[0.0], &[-1.0, 1.0]), 0.0);
    let inf = f64::INFINITY;
    assert_eq!(
        prox_piecewise_linear(3.0, 0.5, &[-1.0, 1.0], &[-inf, 0.0, inf]),
        1.0
    );
    assert_eq!(
        prox_piecewise_linear(0.3, 0.5, &[-1.0, 1.0], &[-inf, 0.0, inf]),
        0.3
    );
    // Every constraint matrix of the table has full row rank and is well
    // conditioned.
    for dim in 1..8 {
        let singular_values = constraint_matrix(dim).singular_values().unwrap();
        let condition = singular_values[0] / singular_values[constraint_rows(dim) - 1];
        assert!(condition < 100.0, "dim {dim}: condition number {condition}");
    }
}
