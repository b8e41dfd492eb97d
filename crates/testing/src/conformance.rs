//! A conformance suite that any [`Splitting`] can run.
//!
//! Given one scheme built twice, in `f64` and in `f32`, and a [`Case`] (a
//! data batch, an independent reference solution and a first-order
//! optimality measure), [`run`] checks that:
//!
//! 1. every sample converges, with the fixed-point residual that every
//!    scheme shares (`‖z⁺ − z‖ ≤ rtol·‖z⁺‖`, see
//!    [`Splitting::fixed_point_residual`]), so iteration counts compare fairly;
//! 2. the limit agrees with the reference solution;
//! 3. the limit is optimal by the case's optimality measure;
//! 4. [`Splitting::step_vjp`] agrees with central finite differences, in the
//!    state and in every parameter, at a perturbed fixed point;
//! 5. the `f32` build passes 1 to 3 at single-precision tolerances, and its
//!    `step_vjp` agrees with the `f64` one at the same point.
//!
//! Each check is a row of the returned [`Report`] with the measured value and
//! its bound, so a failing scheme shows by how much it fails.
//!
//! # Example
//! ```
//! use faer::{Mat, MatRef, mat};
//! use optlayer_core::Scalar;
//! use optlayer_ops::{Dense, IndicatorPoint, L1Norm, LearnableDense};
//! use optlayer_splittings::{Block, LadmmSteps, LinearizedAdmm};
//! use optlayer_testing::conformance::{Case, Tolerances, run};
//!
//! // min ‖x‖₁ s.t. x₁ + 2x₂ = d, whose solution is x = (0, d/2).
//! fn build<T: Scalar>() -> LinearizedAdmm<T> {
//!     let a = Mat::from_fn(1, 2, |_, j| T::lit([1.0, 2.0][j]));
//!     let blocks = vec![
//!         Block::new(LearnableDense::new("theta", Mat::identity(2, 2)).unwrap(), L1Norm::new(T::one()).unwrap()),
//!         Block::new(Dense::new(a).unwrap(), IndicatorPoint::from_data(0, 1).unwrap()),
//!     ];
//!     let steps = LadmmSteps { alpha: 0.5, beta: 0.3, lambda: 1.0 };
//!     LinearizedAdmm::new(2, 1, blocks, steps).unwrap()
//! }
//!
//! let data = mat![[1.0, -3.0]];
//! let reference = mat![[0.0, 0.0], [0.5, -1.5]];
//! let optimality = |x: MatRef<'_, f64>, d: MatRef<'_, f64>| -> Vec<f64> {
//!     // Feasibility only; the reference check covers the objective.
//!     (0..x.ncols()).map(|j| (x[(0, j)] + 2.0 * x[(1, j)] - d[(0, j)]).abs()).collect()
//! };
//! let case = Case::new("one constraint", data.as_ref(), reference.as_ref(), &optimality);
//! let report = run(build::<f64>(), build::<f32>(), &case, &Tolerances::default()).unwrap();
//! assert!(report.passed(), "{report}");
//! ```

use std::fmt;

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::{Mat, MatRef, Par};
use optlayer_core::{Error, ForwardOptions, OptLayer, Result, Scalar, Splitting};

use crate::fd::{FdOptions, GradientCheck, check_step_vjp_params, check_step_vjp_state};
use crate::random::gaussian;

/// A first-order optimality measure: given primal iterates `x` and data `d`
/// (both with one column per sample), returns one nonnegative number per
/// column that is zero exactly at a minimizer.
pub type Optimality<'a> = dyn Fn(MatRef<'_, f64>, MatRef<'_, f64>) -> Vec<f64> + 'a;

/// A problem for the conformance suite.
pub struct Case<'a> {
    /// A short name for the report.
    pub name: String,
    /// The data batch, one column per sample.
    pub data: MatRef<'a, f64>,
    /// A solution computed independently of the scheme under test, one
    /// column per sample.
    pub reference: MatRef<'a, f64>,
    /// The optimality measure of the problem.
    pub optimality: &'a Optimality<'a>,
}

impl<'a> Case<'a> {
    /// Creates a case from its parts.
    pub fn new(
        name: impl Into<String>,
        data: MatRef<'a, f64>,
        reference: MatRef<'a, f64>,
        optimality: &'a Optimality<'a>,
    ) -> Self {
        Self {
            name: name.into(),
            data,
            reference,
            optimality,
        }
    }
}

/// Iteration settings and bounds of the conformance checks.
#[derive(Clone, Copy, Debug)]
pub struct Tolerances {
    /// Iteration limit of each forward pass.
    pub max_iters: usize,
    /// Relative fixed-point tolerance of the `f64` forward pass.
    pub rtol_f64: f64,
    /// Relative fixed-point tolerance of the `f32` forward pass.
    pub rtol_f32: f64,
    /// Bound on `‖x − x_ref‖∞ / max(1, ‖x_ref‖∞)` in `f64`.
    pub solution_f64: f64,
    /// The same bound in `f32`.
    pub solution_f32: f64,
    /// Bound on the optimality measure in `f64`.
    pub optimality_f64: f64,
    /// The same bound in `f32`.
    pub optimality_f32: f64,
    /// Bound on the relative error of `step_vjp` against finite differences.
    pub vjp: f64,
    /// Bound on the relative difference between the `f32` and `f64` vector-Jacobian products.
    pub vjp_f32: f64,
    /// Size of the perturbation of the fixed point where vector-Jacobian
    /// products are checked, relative to `1 + |z_i|`.
    pub perturbation: f64,
    /// Seed of the perturbation and the cotangent.
    pub seed: u64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            max_iters: 100_000,
            rtol_f64: 1e-11,
            rtol_f32: 1e-6,
            solution_f64: 1e-6,
            solution_f32: 1e-3,
            optimality_f64: 1e-6,
            optimality_f32: 1e-3,
            vjp: 1e-5,
            vjp_f32: 1e-3,
            perturbation: 0.05,
            seed: 7,
        }
    }
}

/// One check of a [`Report`].
#[derive(Clone, Debug)]
pub struct Check {
    /// The name of the check, e.g. "distance to reference".
    pub name: String,
    /// `"f64"` or `"f32"`.
    pub precision: &'static str,
    /// The measured value.
    pub value: f64,
    /// The bound it must not exceed.
    pub bound: f64,
    /// Whether `value ≤ bound`.
    pub passed: bool,
    /// Details for a reader, such as the worst coordinate.
    pub detail: String,
}

/// The outcome of [`run`]: one row per check, with the iteration counts.
#[derive(Clone, Debug)]
pub struct Report {
    /// The scheme's name.
    pub scheme: String,
    /// The case's name.
    pub case: String,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
    /// Mean iterations of the `f64` forward pass.
    pub mean_iterations_f64: f64,
    /// Mean iterations of the `f32` forward pass.
    pub mean_iterations_f32: f64,
}

impl Report {
    /// Returns whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// Returns the checks that failed.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }

    fn push(&mut self, name: &str, precision: &'static str, value: f64, bound: f64, detail: String) {
        self.checks.push(Check {
            name: name.to_string(),
            precision,
            value,
            bound,
            // NaN fails.
            passed: value <= bound,
            detail,
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} on {}: {} (mean iterations f64 {:.1}, f32 {:.1})",
            self.scheme,
            self.case,
            if self.passed() { "passed" } else { "FAILED" },
            self.mean_iterations_f64,
            self.mean_iterations_f32
        )?;
        for c in &self.checks {
            writeln!(
                f,
                "  {:<4} {:<34} {:>12.3e} <= {:<10.1e} {}  {}",
                c.precision,
                c.name,
                c.value,
                c.bound,
                if c.passed { "ok" } else { "FAIL" },
                c.detail
            )?;
        }
        Ok(())
    }
}

/// Runs the conformance checks on one scheme, built in `f64` and `f32`.
///
/// # Errors
/// - [`Error::ShapeMismatch`] when the reference does not have one row per
///   primal entry and one column per data column, or when the `f32` build
///   differs from the `f64` one in a dimension or a parameter shape;
/// - when the layer rejects the scheme or the data (shape mismatch,
///   non-finite data).
///
/// Failed checks are not errors: they are rows of the report.
pub fn run<S64, S32>(s64: S64, s32: S32, case: &Case<'_>, tol: &Tolerances) -> Result<Report>
where
    S64: Splitting<Real = f64>,
    S32: Splitting<Real = f32>,
{
    check_case_shape(&s64, case)?;
    check_same_build(&s64, &s32)?;
    let mut report = Report {
        scheme: s64.name().to_string(),
        case: case.name.clone(),
        checks: Vec::new(),
        mean_iterations_f64: 0.0,
        mean_iterations_f32: 0.0,
    };

    let mut layer64 = OptLayer::new(s64, ForwardOptions::new(tol.max_iters, tol.rtol_f64))?;
    let forward64 = layer64.forward(case.data)?;
    report.mean_iterations_f64 = forward64.mean_iterations();
    check_forward(
        &mut report,
        "f64",
        &forward64.samples,
        forward64.x.as_ref(),
        case,
        tol.solution_f64,
        tol.optimality_f64,
        tol.rtol_f64,
    );

    let data32 = cast::<f32>(case.data);
    let layer32 = OptLayer::new(s32, ForwardOptions::new(tol.max_iters, tol.rtol_f32))?;
    let forward32 = layer32.forward(data32.as_ref())?;
    report.mean_iterations_f32 = forward32.mean_iterations();
    let x32 = cast::<f64>(forward32.x.as_ref());
    check_forward(
        &mut report,
        "f32",
        &forward32.samples,
        x32.as_ref(),
        case,
        tol.solution_f32,
        tol.optimality_f32,
        tol.rtol_f32,
    );

    // Vector-Jacobian products at a perturbed fixed point: the fixed point of
    // a nonsmooth model often sits on kinks (exact zeros of an ℓ1 term), and
    // the perturbation moves the check to a generic point nearby.
    let state = &forward64.state;
    let noise = gaussian(state.nrows(), state.ncols(), tol.seed);
    let z = Mat::from_fn(state.nrows(), state.ncols(), |i, j| {
        let value = state[(i, j)];
        value + tol.perturbation * (1.0 + value.abs()) * noise[(i, j)]
    });
    let cotangent = gaussian(state.nrows(), state.ncols(), tol.seed + 1);
    let opts = FdOptions::default();
    let state_check = check_step_vjp_state(
        layer64.splitting(),
        z.as_ref(),
        case.data,
        cotangent.as_ref(),
        &opts,
    );
    push_fd(
        &mut report,
        "step_vjp state vs finite differences",
        &state_check,
        tol.vjp,
    );
    if layer64.splitting().param_count() > 0 {
        let param_check = check_step_vjp_params(
            layer64.splitting_mut(),
            z.as_ref(),
            case.data,
            cotangent.as_ref(),
            &opts,
        );
        push_fd(
            &mut report,
            "step_vjp params vs finite differences",
            &param_check,
            tol.vjp,
        );
    }

    let (z_bar64, grads64) = vjp(layer64.splitting(), z.as_ref(), case.data, cotangent.as_ref());
    let (z_bar32, grads32) = vjp(
        layer32.splitting(),
        cast::<f32>(z.as_ref()).as_ref(),
        data32.as_ref(),
        cast::<f32>(cotangent.as_ref()).as_ref(),
    );
    let mut worst = relative_difference(z_bar64.as_ref(), cast::<f64>(z_bar32.as_ref()).as_ref());
    for (g64, g32) in grads64.iter().zip(&grads32) {
        worst = worst.max(relative_difference(
            g64.as_ref(),
            cast::<f64>(g32.as_ref()).as_ref(),
        ));
    }
    report.push(
        "step_vjp f32 vs f64",
        "f32",
        worst,
        tol.vjp_f32,
        "largest relative difference over the state and parameter products".into(),
    );
    Ok(report)
}

/// Checks that the reference has one row per primal entry and one column
/// per sample of the data batch.
fn check_case_shape<S: Splitting>(s: &S, case: &Case<'_>) -> Result<()> {
    let (rows, cols) = case.reference.shape();
    if rows != s.primal_dim() || cols != case.data.ncols() {
        return Err(Error::ShapeMismatch {
            what: format!("reference solution of case '{}'", case.name),
            expected: format!(
                "{} rows (the primal dimension of {}) and {} columns (one per data column)",
                s.primal_dim(),
                s.name(),
                case.data.ncols()
            ),
            found: format!("{rows} x {cols}"),
        });
    }
    Ok(())
}

/// Checks that the `f32` build has the dimensions and parameter shapes of
/// the `f64` build, so their vector-Jacobian products compare entry by entry.
fn check_same_build<S64, S32>(s64: &S64, s32: &S32) -> Result<()>
where
    S64: Splitting<Real = f64>,
    S32: Splitting<Real = f32>,
{
    let expected = describe_shapes(s64);
    let found = describe_shapes(s32);
    if expected != found {
        return Err(Error::ShapeMismatch {
            what: format!("f32 build of {}", s32.name()),
            expected: format!("the shapes of the f64 build: {expected}"),
            found,
        });
    }
    Ok(())
}

/// Returns the dimensions and parameter shapes of a scheme as text.
fn describe_shapes<S: Splitting>(s: &S) -> String {
    let params: Vec<(usize, usize)> = (0..s.param_count())
        .map(|i| s.param_info(i))
        .map(|p| (p.nrows, p.ncols))
        .collect();
    format!(
        "primal dimension {}, data dimension {}, state dimension {}, parameter shapes {params:?}",
        s.primal_dim(),
        s.data_dim(),
        s.state_dim()
    )
}

#[allow(clippy::too_many_arguments)]
fn check_forward<T: Scalar>(
    report: &mut Report,
    precision: &'static str,
    samples: &[optlayer_core::SampleReport<T>],
    x: MatRef<'_, f64>,
    case: &Case<'_>,
    solution_bound: f64,
    optimality_bound: f64,
    rtol: f64,
) {
    let not_converged = samples
        .iter()
        .filter(|s| s.status != optlayer_core::Status::Converged)
        .count();
    let max_iters = samples.iter().map(|s| s.iterations).max().unwrap_or(0);
    report.push(
        "samples not converged",
        precision,
        not_converged as f64,
        0.0,
        format!("{} samples, at most {max_iters} iterations", samples.len()),
    );
    let worst_residual = samples
        .iter()
        .map(|s| s.relative_residual.to_f64_lossless())
        .fold(0.0, |acc: f64, r| if r.is_nan() { f64::NAN } else { acc.max(r) });
    report.push(
        "relative fixed-point residual",
        precision,
        worst_residual,
        rtol,
        "largest over the batch".into(),
    );

    let mut distance = 0.0f64;
    let mut worst_col = 0;
    for j in 0..x.ncols() {
        let mut diff = 0.0f64;
        let mut scale = 1.0f64;
        for i in 0..x.nrows() {
            diff = diff.max((x[(i, j)] - case.reference[(i, j)]).abs());
            scale = scale.max(case.reference[(i, j)].abs());
        }
        let relative = diff / scale;
        if relative > distance || relative.is_nan() {
            distance = relative;
            worst_col = j;
        }
    }
    report.push(
        "distance to reference",
        precision,
        distance,
        solution_bound,
        format!("‖x − x_ref‖∞ / max(1, ‖x_ref‖∞), worst sample {worst_col}"),
    );

    let optimality = (case.optimality)(x, case.data);
    let worst = optimality
        .iter()
        .fold(0.0f64, |acc, &r| if r.is_nan() { f64::NAN } else { acc.max(r) });
    report.push(
        "optimality residual",
        precision,
        worst,
        optimality_bound,
        "largest over the batch".into(),
    );
}

fn push_fd(report: &mut Report, name: &str, check: &GradientCheck, bound: f64) {
    // A check that compared nothing, or only zeros, proves nothing: it fails.
    let value = if check.checked == 0 || check.fd_norm == 0.0 {
        f64::INFINITY
    } else {
        check.rel_error
    };
    report.push(
        name,
        "f64",
        value,
        bound,
        format!(
            "{} coordinates compared, {} skipped at kinks; {}",
            check.checked, check.skipped_nonsmooth, check.worst
        ),
    );
}

fn vjp<S: Splitting>(
    s: &S,
    z: MatRef<'_, S::Real>,
    data: MatRef<'_, S::Real>,
    cotangent: MatRef<'_, S::Real>,
) -> (Mat<S::Real>, Vec<Mat<S::Real>>) {
    let mut z_bar = Mat::zeros(z.nrows(), z.ncols());
    let mut grads: Vec<Mat<S::Real>> = (0..s.param_count())
        .map(|i| s.param_info(i))
        .map(|p| Mat::zeros(p.nrows, p.ncols))
        .collect();
    let mut buffer = MemBuffer::new(s.step_vjp_scratch(z.ncols(), Par::Seq));
    s.step_vjp(
        Some(z_bar.as_mut()),
        z,
        data,
        cotangent,
        Some(&mut grads),
        Par::Seq,
        MemStack::new(&mut buffer),
    );
    (z_bar, grads)
}

fn relative_difference(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> f64 {
    let mut diff = 0.0f64;
    let mut scale = 0.0f64;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            diff = diff.hypot(a[(i, j)] - b[(i, j)]);
            scale = scale.max(a[(i, j)].abs()).max(b[(i, j)].abs());
        }
    }
    let norm = a.norm_l2().max(b.norm_l2());
    if norm == 0.0 { 0.0 } else { diff / norm.max(scale) }
}

/// Casts a matrix between scalar types.
pub fn cast<U: Scalar>(m: MatRef<'_, impl Scalar>) -> Mat<U> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| U::lit(m[(i, j)].to_f64_lossless()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::mat;
    use optlayer_ops::{Dense, IndicatorPoint, L1Norm};
    use optlayer_splittings::{Block, LadmmSteps, LinearizedAdmm};

    /// Returns min ‖x‖₁ s.t. x₁ + 2x₂ + … + n·x_n = d, with one data row.
    fn build_dim<T: Scalar>(n: usize) -> LinearizedAdmm<T> {
        let a = Mat::from_fn(1, n, |_, j| T::from_usize(j + 1).unwrap());
        let blocks = vec![
            Block::new(
                Dense::new(Mat::identity(n, n)).unwrap(),
                L1Norm::new(T::one()).unwrap(),
            ),
            Block::new(Dense::new(a).unwrap(), IndicatorPoint::from_data(0, 1).unwrap()),
        ];
        let steps = LadmmSteps {
            alpha: 0.5,
            beta: 0.3,
            lambda: 1.0,
        };
        LinearizedAdmm::new(n, 1, blocks, steps).unwrap()
    }

    /// Returns the problem with primal dimension 2, whose solution is x = (0, d/2).
    fn build<T: Scalar>() -> LinearizedAdmm<T> {
        build_dim(2)
    }

    fn feasibility(x: MatRef<'_, f64>, d: MatRef<'_, f64>) -> Vec<f64> {
        (0..x.ncols())
            .map(|j| (x[(0, j)] + 2.0 * x[(1, j)] - d[(0, j)]).abs())
            .collect()
    }

    fn run_with(data: MatRef<'_, f64>, reference: MatRef<'_, f64>) -> Result<Report> {
        let case = Case::new("shape check", data, reference, &feasibility);
        run(build::<f64>(), build::<f32>(), &case, &Tolerances::default())
    }

    #[test]
    fn reference_with_wrong_rows_rejected() {
        let data = mat![[1.0, -3.0]];
        let reference = mat![[0.5, -1.5]];
        let err = run_with(data.as_ref(), reference.as_ref()).unwrap_err();
        let Error::ShapeMismatch {
            what,
            expected,
            found,
        } = &err
        else {
            panic!("expected ShapeMismatch, got {err}");
        };
        assert!(what.contains("reference"), "{err}");
        assert!(expected.contains("2 rows"), "{err}");
        assert!(found.contains("1 x 2"), "{err}");
    }

    #[test]
    fn reference_with_wrong_columns_rejected() {
        let data = mat![[1.0, -3.0]];
        let reference = mat![[0.0], [0.5]];
        let err = run_with(data.as_ref(), reference.as_ref()).unwrap_err();
        let Error::ShapeMismatch {
            what,
            expected,
            found,
        } = &err
        else {
            panic!("expected ShapeMismatch, got {err}");
        };
        assert!(what.contains("reference"), "{err}");
        assert!(expected.contains("2 columns"), "{err}");
        assert!(found.contains("2 x 1"), "{err}");
    }

    #[test]
    fn data_with_wrong_rows_rejected() {
        let data = mat![[1.0, -3.0], [0.0, 0.0]];
        let reference = mat![[0.0, 0.0], [0.5, -1.5]];
        let err = run_with(data.as_ref(), reference.as_ref()).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    }

    #[test]
    fn f32_build_with_other_shape_rejected() {
        let data = mat![[1.0, -3.0]];
        let reference = mat![[0.0, 0.0], [0.5, -1.5]];
        let case = Case::new("shape check", data.as_ref(), reference.as_ref(), &feasibility);
        let err = run(build::<f64>(), build_dim::<f32>(3), &case, &Tolerances::default()).unwrap_err();
        let Error::ShapeMismatch { what, found, .. } = &err else {
            panic!("expected ShapeMismatch, got {err}");
        };
        assert!(what.contains("f32 build"), "{err}");
        assert!(found.contains("primal dimension 3"), "{err}");
    }

    #[test]
    fn matching_shapes_pass() {
        let data = mat![[1.0, -3.0]];
        let reference = mat![[0.0, 0.0], [0.5, -1.5]];
        let report = run_with(data.as_ref(), reference.as_ref()).unwrap();
        assert!(report.passed(), "{report}");
    }
}
