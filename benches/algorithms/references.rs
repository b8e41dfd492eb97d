//! Reference solutions of the benchmark problems, computed without the
//! splittings under test where that is possible at the benchmark's sizes.

use faer::linalg::solvers::{DenseSolveCore, Solve};
use faer::{Mat, MatRef};
use optlayer::splittings::Acceleration;
use optlayer::{ForwardOptions, OptLayer};
use optlayer_testing::reference::equality_least_squares;

use crate::counting::Counter;
use crate::problems::{EqualityLeastSquares, LassoBox, SparseRecovery};

/// A reference solution, one column per sample, and how it was obtained.
pub struct Reference {
    pub x: Mat<f64>,
    pub source: String,
}

/// Tolerance and limit of the long FISTA run that serves as the lasso reference.
const LASSO_REFERENCE_RTOL: f64 = 1e-12;
const LASSO_REFERENCE_MAX_ITERS: usize = 1_000_000;

/// Returns a long FISTA run at `rtol = 1e-12` as the lasso reference.
///
/// Active-set enumeration, the exact solver of the conformance tests, tries
/// `5ⁿ` assignments and stops at `n = 9`, so it cannot serve `n = 100`. The
/// source line reports the run's largest residual and the largest norm of
/// the proximal-gradient mapping, which is zero exactly at the minimizer.
pub fn lasso_box(problem: &LassoBox) -> Reference {
    let counter = Counter::shared();
    let splitting = problem.proximal_gradient(Acceleration::Fista, &counter);
    let options = ForwardOptions::new(LASSO_REFERENCE_MAX_ITERS, LASSO_REFERENCE_RTOL);
    let layer = OptLayer::new(splitting, options).unwrap();
    let result = layer.forward(problem.data.as_ref()).unwrap();
    let optimality = problem.optimality(&result.x).into_iter().fold(0.0, f64::max);
    let entries = || {
        result
            .x
            .col_iter()
            .flat_map(|c| c.iter().copied().collect::<Vec<_>>())
    };
    let at_bound = entries()
        .filter(|&v| v == LassoBox::LOWER || v == LassoBox::UPPER)
        .count();
    let at_zero = entries().filter(|&v| v == 0.0).count();
    let source = format!(
        "FISTA at rtol {LASSO_REFERENCE_RTOL:e}, not exact: {}/{} samples converged within {} steps, \
         largest relative residual {:.1e}, largest norm of the proximal-gradient mapping {optimality:.1e}; \
         {at_zero} of its {} entries are zero and {at_bound} at a bound",
        result.converged_count(),
        result.samples.len(),
        result.samples.iter().map(|s| s.iterations).max().unwrap_or(0),
        result.max_relative_residual(),
        result.x.nrows() * result.x.ncols(),
    );
    Reference { x: result.x, source }
}

/// Returns the exact solution of the optimality system
/// `[AᵀA Cᵀ; C 0] [x; ν] = [Aᵀd; b]`.
pub fn equality_least_squares_exact(problem: &EqualityLeastSquares) -> Reference {
    let x = equality_least_squares(
        problem.a.as_ref(),
        problem.data.as_ref(),
        problem.c.as_ref(),
        problem.b_batch().as_ref(),
    );
    Reference {
        x,
        source: "exact: the optimality system solved by LU".into(),
    }
}

/// Returns the exact sparse recovery solution, snapped from approximate
/// solutions and certified optimal by linear-programming duality, or `None`
/// when no candidate gives a certified vertex for some sample.
///
/// With `y = Θx` and `B = AΘ⁻¹` the problem is `min ‖y‖₁ s.t. By = d`. The
/// `m` largest entries of `|Θx|` of a candidate give a support `S`, and
/// `y_S = B_S⁻¹ d`, zero elsewhere, is a basic solution. It is optimal when
/// the dual point `w = B_S⁻ᵀ sign(y_S)` satisfies `|b_iᵀ w| ≤ 1` off `S`,
/// because then `Bᵀw ∈ ∂‖y‖₁`, and it is the unique solution when the
/// inequality is strict. Vertex enumeration, the exact solver of the
/// conformance tests, would try C(250, 100) supports. The candidates are
/// tried in order, per sample.
pub fn sparse_recovery(
    problem: &SparseRecovery,
    candidates: &[(&str, MatRef<'_, f64>)],
) -> Option<Reference> {
    let theta_inverse = problem.theta.partial_piv_lu().inverse();
    let b = &problem.a * &theta_inverse;
    let (n, batch) = (problem.theta.nrows(), problem.data.ncols());
    let mut x = Mat::zeros(n, batch);
    let mut worst_margin = f64::INFINITY;
    let mut worst_feasibility = 0.0f64;
    let mut sources = vec![0usize; candidates.len()];
    for j in 0..batch {
        let d = problem.data.col(j);
        if d.norm_max() == 0.0 {
            // d = 0 makes x = 0 the unique solution, because Θ is invertible.
            continue;
        }
        let (index, vertex) = candidates
            .iter()
            .enumerate()
            .find_map(|(index, (_, candidate))| {
                let y = &problem.theta * candidate.col(j);
                certified_vertex(b.as_ref(), y.as_mat(), d.as_mat()).map(|vertex| (index, vertex))
            })?;
        sources[index] += 1;
        worst_margin = worst_margin.min(vertex.dual_margin);
        worst_feasibility = worst_feasibility.max(vertex.relative_feasibility);
        x.col_mut(j).copy_from((&theta_inverse * &vertex.y).col(0));
    }
    let snapped: Vec<String> = candidates
        .iter()
        .zip(&sources)
        .filter(|(_, count)| **count > 0)
        .map(|((name, _), count)| format!("{count} from {name}"))
        .collect();
    let source = format!(
        "exact: the vertex that the results approach ({}), certified optimal and unique by LP duality \
         (smallest margin 1 − max |b_iᵀw| off the support {worst_margin:.1e}, largest ‖By − d‖/‖d‖ \
         {worst_feasibility:.1e})",
        snapped.join(", ")
    );
    Some(Reference { x, source })
}

struct Vertex {
    y: Mat<f64>,
    dual_margin: f64,
    relative_feasibility: f64,
}

/// Snaps `y_approx` to the basic solution on its `m` largest entries and
/// returns it with the dual margin `1 − max_{i∉S} |b_iᵀ w|`, or `None` when
/// the margin is not positive or the solve gives non-finite values.
fn certified_vertex(b: MatRef<'_, f64>, y_approx: MatRef<'_, f64>, d: MatRef<'_, f64>) -> Option<Vertex> {
    let (m, n) = b.shape();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &k| y_approx[(k, 0)].abs().total_cmp(&y_approx[(i, 0)].abs()));
    let support = &order[..m];

    let b_s = Mat::from_fn(m, m, |i, k| b[(i, support[k])]);
    let lu = b_s.full_piv_lu();
    let y_s = lu.solve(d);
    if !y_s.norm_max().is_finite() {
        return None;
    }

    let signs = Mat::from_fn(m, 1, |k, _| y_s[(k, 0)].signum());
    let w = b_s.transpose().full_piv_lu().solve(&signs);
    let correlations = b.transpose() * &w;
    let off_support = order[m..]
        .iter()
        .map(|&i| correlations[(i, 0)].abs())
        .fold(0.0, f64::max);
    let dual_margin = 1.0 - off_support;
    if dual_margin <= 0.0 {
        return None;
    }

    let mut y = Mat::zeros(n, 1);
    for (k, &i) in support.iter().enumerate() {
        y[(i, 0)] = y_s[(k, 0)];
    }
    let relative_feasibility = (b * &y - d).norm_l2() / d.norm_l2().max(f64::MIN_POSITIVE);
    Some(Vertex {
        y,
        dual_margin,
        relative_feasibility,
    })
}
