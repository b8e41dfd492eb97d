//! Exact solvers for small problems, independent of any splitting.

use faer::linalg::solvers::{DenseSolveCore, Solve};
use faer::{Mat, MatRef};

/// Solves `min ‖Θ x‖₁ s.t. A x = d` exactly for a square invertible `Θ` and
/// a full-row-rank `A` (`m x n`, `m ≤ n`), by enumerating vertices.
///
/// With `y = Θ x` the problem is the linear program `min ‖y‖₁ s.t. B y = d`,
/// `B = A Θ⁻¹`. An optimal vertex of that program is a basic solution: a set
/// `S` of `m` columns with `B_S` invertible, `y_S = B_S⁻¹ d` and `y = 0`
/// elsewhere. The function tries all `C(n, m)` sets, so it is only for small
/// `n` (it returns `None` beyond 200,000 sets), and returns `(x, ‖Θx‖₁)`.
///
/// Returns `None` when no set gives a solution satisfying `‖B y − d‖ ≤ 1e-9 ‖d‖`.
pub fn analysis_l1_exact(
    theta: MatRef<'_, f64>,
    a: MatRef<'_, f64>,
    d: MatRef<'_, f64>,
) -> Option<(Mat<f64>, f64)> {
    let n = theta.nrows();
    let m = a.nrows();
    assert_eq!(theta.ncols(), n, "theta must be square");
    assert_eq!(a.ncols(), n, "A must have as many columns as theta");
    assert_eq!(d.shape(), (m, 1), "d must be one column of A's row count");
    if binomial(n, m) > 200_000 {
        return None;
    }
    let theta_inv = theta.partial_piv_lu().inverse();
    let b = a * &theta_inv;
    let d_norm = d.norm_l2().max(1e-300);

    let mut best: Option<(Mat<f64>, f64)> = None;
    let mut subset: Vec<usize> = (0..m).collect();
    loop {
        let b_s = Mat::from_fn(m, m, |i, k| b[(i, subset[k])]);
        let y_s = b_s.full_piv_lu().solve(d);
        let residual = &b_s * &y_s - d;
        if y_s.norm_max().is_finite() && residual.norm_l2() <= 1e-9 * d_norm {
            let value: f64 = (0..m).map(|k| y_s[(k, 0)].abs()).sum();
            if best.as_ref().is_none_or(|(_, v)| value < *v) {
                let mut y = Mat::<f64>::zeros(n, 1);
                for (k, &col) in subset.iter().enumerate() {
                    y[(col, 0)] = y_s[(k, 0)];
                }
                best = Some((&theta_inv * &y, value));
            }
        }
        if !next_subset(&mut subset, n) {
            break;
        }
    }
    best
}

/// Returns the objective values `‖y‖₁` of all basic solutions of
/// `min ‖Θx‖₁ s.t. Ax = d` (see [`analysis_l1_exact`]), sorted ascending,
/// with duplicates (within 1e-12 relative) removed.
///
/// The relative gap between the two smallest values measures how close the
/// problem is to having several optimal vertices. First-order methods such as
/// linearized ADMM can need millions of steps when it is small.
pub fn analysis_l1_vertex_values(
    theta: MatRef<'_, f64>,
    a: MatRef<'_, f64>,
    d: MatRef<'_, f64>,
) -> Option<Vec<f64>> {
    let n = theta.nrows();
    let m = a.nrows();
    if binomial(n, m) > 200_000 {
        return None;
    }
    let theta_inv = theta.partial_piv_lu().inverse();
    let b = a * &theta_inv;
    let d_norm = d.norm_l2().max(1e-300);
    let mut values = Vec::new();
    let mut subset: Vec<usize> = (0..m).collect();
    loop {
        let b_s = Mat::from_fn(m, m, |i, k| b[(i, subset[k])]);
        let y_s = b_s.full_piv_lu().solve(d);
        let residual = &b_s * &y_s - d;
        if y_s.norm_max().is_finite() && residual.norm_l2() <= 1e-9 * d_norm {
            values.push((0..m).map(|k| y_s[(k, 0)].abs()).sum::<f64>());
        }
        if !next_subset(&mut subset, n) {
            break;
        }
    }
    values.sort_by(f64::total_cmp);
    values.dedup_by(|a, b| (*a - *b).abs() <= 1e-12 * b.abs().max(1e-300));
    Some(values)
}

/// Returns the minimum-norm solution `x = Aᵀ (A Aᵀ)⁻¹ d` of `A x = d`.
pub fn min_norm_solution(a: MatRef<'_, f64>, d: MatRef<'_, f64>) -> Mat<f64> {
    let gram = a * a.transpose();
    let w = gram.full_piv_lu().solve(d);
    a.transpose() * &w
}

/// Advances `subset` (sorted, distinct, below `n`) to the next combination in
/// lexicographic order; returns false after the last one.
fn next_subset(subset: &mut [usize], n: usize) -> bool {
    let m = subset.len();
    let mut i = m;
    while i > 0 {
        i -= 1;
        if subset[i] < n - m + i {
            subset[i] += 1;
            for k in i + 1..m {
                subset[k] = subset[k - 1] + 1;
            }
            return true;
        }
    }
    false
}

fn binomial(n: usize, k: usize) -> u128 {
    let k = k.min(n - k.min(n));
    (0..k).fold(1u128, |acc, i| acc * (n - i) as u128 / (i + 1) as u128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::mat;

    #[test]
    fn subsets_enumerate_all_combinations() {
        let mut subset = vec![0, 1];
        let mut count = 1;
        while next_subset(&mut subset, 5) {
            count += 1;
        }
        assert_eq!(count, 10);
        assert_eq!(binomial(5, 2), 10);
    }

    #[test]
    fn known_basis_pursuit_solution() {
        // min |x1| + |x2| s.t. x1 + 2 x2 = 2 is solved by x = (0, 1).
        let theta = Mat::<f64>::identity(2, 2);
        let a = mat![[1.0, 2.0]];
        let d = mat![[2.0]];
        let (x, value) = analysis_l1_exact(theta.as_ref(), a.as_ref(), d.as_ref()).unwrap();
        assert!((x[(0, 0)] - 0.0).abs() < 1e-12);
        assert!((x[(1, 0)] - 1.0).abs() < 1e-12);
        assert!((value - 1.0).abs() < 1e-12);
    }

    #[test]
    fn zero_column_problem() {
        // A = [[1, 0], [2, 0]], d = [1, 2]: min ‖x‖₁ s.t. Ax = d is x = (1, 0).
        let a = mat![[1.0, 0.0], [2.0, 0.0]];
        let d = mat![[1.0], [2.0]];
        let theta = Mat::<f64>::identity(2, 2);
        // A has rank 1, so reduce to its first row, which carries the same constraint.
        let (x, _) =
            analysis_l1_exact(theta.as_ref(), a.as_ref().subrows(0, 1), d.as_ref().subrows(0, 1)).unwrap();
        assert!((x[(0, 0)] - 1.0).abs() < 1e-12);
        assert!(x[(1, 0)].abs() < 1e-12);
    }
}
