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

/// Solves `min ½‖Ax − d‖² + μ‖x‖₁ s.t. l ≤ x ≤ u` exactly for a small `A`
/// with full column rank, by enumerating active sets.
///
/// Each coordinate is at its lower bound, at its upper bound, at zero, or
/// free with a fixed sign; for each of the `5ⁿ` assignments the free
/// coordinates solve the normal equations of the remaining least-squares
/// problem, and the assignment whose point meets every optimality condition
/// (signs, bounds and the subgradient inequalities, to `1e-9`) is the
/// solution. Full column rank makes the problem strictly convex, so exactly
/// one assignment passes up to ties between equivalent labels. Bounds may be
/// infinite. Returns `None` when `n > 9` or no assignment passes.
pub fn lasso_box_exact(
    a: MatRef<'_, f64>,
    d: MatRef<'_, f64>,
    mu: f64,
    lower: &[f64],
    upper: &[f64],
) -> Option<Mat<f64>> {
    let n = a.ncols();
    if n > 9 || lower.len() != n || upper.len() != n {
        return None;
    }
    let gram = a.transpose() * a;
    let atd = a.transpose() * d;
    let tol = 1e-9 * (1.0 + atd.norm_max() + mu);
    let mut labels = vec![0u8; n];
    loop {
        if let Some(x) = try_labels(&labels, gram.as_ref(), atd.as_ref(), mu, lower, upper, tol) {
            return Some(x);
        }
        // Next assignment in base 5.
        let mut i = 0;
        loop {
            if i == n {
                return None;
            }
            labels[i] += 1;
            if labels[i] < 5 {
                break;
            }
            labels[i] = 0;
            i += 1;
        }
    }
}

/// Labels of [`lasso_box_exact`]: 0 lower bound, 1 upper bound, 2 zero,
/// 3 free positive, 4 free negative.
fn try_labels(
    labels: &[u8],
    gram: MatRef<'_, f64>,
    atd: MatRef<'_, f64>,
    mu: f64,
    lower: &[f64],
    upper: &[f64],
    tol: f64,
) -> Option<Mat<f64>> {
    let n = labels.len();
    let mut x = Mat::<f64>::zeros(n, 1);
    let mut free = Vec::new();
    for i in 0..n {
        match labels[i] {
            0 if lower[i].is_finite() => x[(i, 0)] = lower[i],
            1 if upper[i].is_finite() => x[(i, 0)] = upper[i],
            2 if lower[i] <= 0.0 && upper[i] >= 0.0 => {}
            3 | 4 => free.push(i),
            _ => return None,
        }
    }
    if !free.is_empty() {
        // (AᵀA)_FF x_F = (Aᵀd)_F − (AᵀA)_FB x_B − μ σ_F.
        let k = free.len();
        let g_ff = Mat::from_fn(k, k, |r, c| gram[(free[r], free[c])]);
        let rhs = Mat::from_fn(k, 1, |r, _| {
            let i = free[r];
            let sign = if labels[i] == 3 { 1.0 } else { -1.0 };
            let fixed: f64 = (0..n)
                .filter(|j| !free.contains(j))
                .map(|j| gram[(i, j)] * x[(j, 0)])
                .sum();
            atd[(i, 0)] - fixed - mu * sign
        });
        let x_f = g_ff.full_piv_lu().solve(rhs.as_ref());
        for (r, &i) in free.iter().enumerate() {
            x[(i, 0)] = x_f[(r, 0)];
        }
    }
    // Gradient of the smooth part, g = AᵀA x − Aᵀd.
    let g = gram * &x - atd;
    for i in 0..n {
        let (xi, gi) = (x[(i, 0)], g[(i, 0)]);
        let ok = match labels[i] {
            // At a bound, the subgradient of μ|x| plus g must point into the box.
            // At a bound, some subgradient of μ|x| plus g must point into the
            // box; at x = 0 the subgradient ranges over [−μ, μ].
            0 => (if xi < 0.0 { gi - mu } else { gi + mu }) >= -tol,
            1 => (if xi > 0.0 { gi + mu } else { gi - mu }) <= tol,
            2 => gi.abs() <= mu + tol,
            3 => xi > 0.0 && xi >= lower[i] && xi <= upper[i] && (gi + mu).abs() <= tol,
            _ => xi < 0.0 && xi >= lower[i] && xi <= upper[i] && (gi - mu).abs() <= tol,
        };
        if !ok {
            return None;
        }
    }
    Some(x)
}

/// Solves `min ½‖Ax − d‖² s.t. Cx = b` from its optimality system
/// `[AᵀA Cᵀ; C 0] [x; ν] = [Aᵀd; b]`, by a fully pivoted LU factorization.
pub fn equality_least_squares(
    a: MatRef<'_, f64>,
    d: MatRef<'_, f64>,
    c: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
) -> Mat<f64> {
    let (n, p) = (a.ncols(), c.nrows());
    let gram = a.transpose() * a;
    let atd = a.transpose() * d;
    let kkt = Mat::from_fn(n + p, n + p, |i, j| match (i < n, j < n) {
        (true, true) => gram[(i, j)],
        (true, false) => c[(j - n, i)],
        (false, true) => c[(i - n, j)],
        (false, false) => 0.0,
    });
    let rhs = Mat::from_fn(
        n + p,
        d.ncols(),
        |i, j| if i < n { atd[(i, j)] } else { b[(i - n, j)] },
    );
    let solution = kkt.full_piv_lu().solve(rhs.as_ref());
    solution.subrows(0, n).to_owned()
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
    fn lasso_box_known_answers() {
        // A = I: the solution is clip(soft(d, μ), l, u) coordinate by coordinate.
        let a = Mat::<f64>::identity(4, 4);
        let d = mat![[3.0], [-0.5], [-4.0], [1.5]];
        let x = lasso_box_exact(
            a.as_ref(),
            d.as_ref(),
            1.0,
            &[-1.0, -1.0, -2.0, 1.0],
            &[1.0, 1.0, 2.0, 2.0],
        )
        .unwrap();
        for (i, expected) in [1.0, 0.0, -2.0, 1.0].into_iter().enumerate() {
            assert!((x[(i, 0)] - expected).abs() < 1e-12, "x = {x:?}");
        }
        // The zero column: ½‖Ax − d‖² + 0.1‖x‖₁ with A = [[1, 0], [2, 0]],
        // d = [1, 2] is solved by x = (0.98, 0), with unbounded box. The zero
        // column makes A rank deficient, yet the ℓ1 term pins x₂ at zero.
        let a = mat![[1.0, 0.0], [2.0, 0.0]];
        let d = mat![[1.0], [2.0]];
        let inf = f64::INFINITY;
        let x = lasso_box_exact(a.as_ref(), d.as_ref(), 0.1, &[-inf, -inf], &[inf, inf]).unwrap();
        assert!((x[(0, 0)] - 0.98).abs() < 1e-12, "x = {x:?}");
        assert_eq!(x[(1, 0)], 0.0, "x = {x:?}");
    }

    #[test]
    fn equality_least_squares_known_answer() {
        // min ½‖x − (1, 3)‖² s.t. x₁ + x₂ = 2: x = (0, 2).
        let a = Mat::<f64>::identity(2, 2);
        let x = equality_least_squares(
            a.as_ref(),
            mat![[1.0], [3.0]].as_ref(),
            mat![[1.0, 1.0]].as_ref(),
            mat![[2.0]].as_ref(),
        );
        assert!(x[(0, 0)].abs() < 1e-12, "x = {x:?}");
        assert!((x[(1, 0)] - 2.0).abs() < 1e-12, "x = {x:?}");
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
