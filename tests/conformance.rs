//! Every built-in splitting runs the conformance suite on shared problems,
//! and the schemes that solve the same problem agree with each other.
//!
//! The problems, each with a reference solution computed without any
//! splitting:
//! - lasso with a box, `min ½‖Ax − d‖² + μ‖x‖₁ s.t. l ≤ x ≤ u`, solved
//!   exactly by active-set enumeration;
//! - sparse recovery with a fixed analysis operator,
//!   `min ‖Θx‖₁ s.t. Ax = d`, solved exactly by vertex enumeration;
//! - equality-constrained least squares, `min ½‖Ax − d‖² s.t. Cx = b`,
//!   solved from its optimality system.

use faer::linalg::solvers::Solve;
use faer::{Mat, MatRef};
use optlayer::Scalar;
use optlayer::ops::{
    AffineSet, BoxConstrained, BoxSet, Dense, Identity, IndicatorPoint, L1Norm, LearnableDense, LeastSquares,
    SquaredDistance, Zero,
};
use optlayer::splittings::{
    Acceleration, Block, CondatVu, DavisYin, DavisYinSteps, DouglasRachford, LadmmSteps, LinearizedAdmm,
    PrimalDualSteps, ProximalGradient,
};
use optlayer_testing::conformance::{Case, Report, Tolerances, cast, run};
use optlayer_testing::random::gaussian;
use optlayer_testing::reference::{
    analysis_l1_exact, analysis_l1_vertex_values, equality_least_squares, lasso_box_exact,
};

// ---------------------------------------------------------------------------
// Lasso with a box.

const MU: f64 = 0.3;
const LOWER: f64 = -0.4;
const UPPER: f64 = 0.6;

struct LassoBox {
    a: Mat<f64>,
    data: Mat<f64>,
    reference: Mat<f64>,
}

impl LassoBox {
    fn new() -> Self {
        let (m, n, batch) = (8, 5, 3);
        let a = gaussian(m, n, 101);
        let data = gaussian(m, batch, 102);
        let mut reference = Mat::zeros(n, batch);
        for j in 0..batch {
            let x = lasso_box_exact(a.as_ref(), data.col(j).as_mat(), MU, &[LOWER; 5], &[UPPER; 5])
                .expect("the exact solver finds the solution");
            reference.col_mut(j).copy_from(x.col(0));
        }
        Self { a, data, reference }
    }

    /// Returns `‖x − clip(soft(x − Aᵀ(Ax − d), μ), l, u)‖`, the norm of the
    /// proximal-gradient mapping with step 1, which is zero exactly at the
    /// minimizer.
    fn optimality(&self, x: MatRef<'_, f64>, d: MatRef<'_, f64>) -> Vec<f64> {
        let gradient = self.a.transpose() * (&self.a * x - d);
        (0..x.ncols())
            .map(|j| {
                let mut sum = 0.0f64;
                for i in 0..x.nrows() {
                    let v = x[(i, j)] - gradient[(i, j)];
                    let soft = v.signum() * (v.abs() - MU).max(0.0);
                    let mapped = soft.clamp(LOWER, UPPER);
                    sum += (x[(i, j)] - mapped).powi(2);
                }
                sum.sqrt()
            })
            .collect()
    }

    fn least_squares<T: Scalar>(&self) -> LeastSquares<T> {
        LeastSquares::new(LearnableDense::new("a", cast::<T>(self.a.as_ref())).unwrap()).unwrap()
    }

    fn proximal_gradient<T: Scalar>(&self, acceleration: Acceleration) -> ProximalGradient<T> {
        let n = self.a.ncols();
        let g = BoxConstrained::new(
            L1Norm::learnable("mu", T::lit(MU)).unwrap(),
            vec![T::lit(LOWER); n],
            vec![T::lit(UPPER); n],
        )
        .unwrap();
        ProximalGradient::new(self.least_squares::<T>(), g, self.a.nrows(), acceleration).unwrap()
    }

    fn davis_yin<T: Scalar>(&self) -> DavisYin<T> {
        DavisYin::new(
            self.a.ncols(),
            self.a.nrows(),
            Box::new(self.least_squares::<T>()),
            Box::new(BoxSet::uniform(T::lit(LOWER), T::lit(UPPER)).unwrap()),
            Box::new(L1Norm::learnable("mu", T::lit(MU)).unwrap()),
            DavisYinSteps::default(),
        )
        .unwrap()
    }

    fn condat_vu<T: Scalar>(&self) -> CondatVu<T> {
        let n = self.a.ncols();
        CondatVu::with_smooth(
            self.a.nrows(),
            Box::new(self.least_squares::<T>()),
            Box::new(Identity::new(n)),
            Box::new(BoxSet::uniform(T::lit(LOWER), T::lit(UPPER)).unwrap()),
            Box::new(L1Norm::learnable("mu", T::lit(MU)).unwrap()),
            PrimalDualSteps::default(),
        )
        .unwrap()
    }

    fn linearized_admm<T: Scalar>(&self) -> LinearizedAdmm<T> {
        let (m, n) = (self.a.nrows(), self.a.ncols());
        let blocks = vec![
            Block::new(
                LearnableDense::new("a", cast::<T>(self.a.as_ref())).unwrap(),
                SquaredDistance::from_data(T::one(), 0, m).unwrap(),
            ),
            Block::new(Identity::new(n), L1Norm::learnable("mu", T::lit(MU)).unwrap()),
            Block::new(
                Identity::new(n),
                BoxSet::uniform(T::lit(LOWER), T::lit(UPPER)).unwrap(),
            ),
        ];
        let steps = LadmmSteps {
            alpha: 0.5,
            beta: 0.5,
            lambda: 1.0,
        };
        LinearizedAdmm::new(n, m, blocks, steps).unwrap()
    }
}

/// Runs the suite, prints the report and fails the test on any failed check.
fn check(report: Report) -> Report {
    println!("{report}");
    assert!(report.passed(), "{report}");
    report
}

fn x_of<S: optlayer::Splitting<Real = f64>>(s: S, data: MatRef<'_, f64>) -> Mat<f64> {
    let layer = optlayer::OptLayer::new(s, optlayer::ForwardOptions::new(200_000, 1e-12)).unwrap();
    layer.forward(data).unwrap().x
}

#[test]
fn proximal_gradient_conforms_on_lasso_box() {
    let p = LassoBox::new();
    let optimality = |x: MatRef<'_, f64>, d: MatRef<'_, f64>| p.optimality(x, d);
    let case = Case::new(
        "lasso with a box",
        p.data.as_ref(),
        p.reference.as_ref(),
        &optimality,
    );
    for acceleration in [Acceleration::None, Acceleration::Fista] {
        check(
            run(
                p.proximal_gradient::<f64>(acceleration),
                p.proximal_gradient::<f32>(acceleration),
                &case,
                &Tolerances::default(),
            )
            .unwrap(),
        );
    }
}

#[test]
fn davis_yin_conforms_on_lasso_box() {
    let p = LassoBox::new();
    let optimality = |x: MatRef<'_, f64>, d: MatRef<'_, f64>| p.optimality(x, d);
    let case = Case::new(
        "lasso with a box",
        p.data.as_ref(),
        p.reference.as_ref(),
        &optimality,
    );
    check(
        run(
            p.davis_yin::<f64>(),
            p.davis_yin::<f32>(),
            &case,
            &Tolerances::default(),
        )
        .unwrap(),
    );
}

#[test]
fn condat_vu_conforms_on_lasso_box() {
    let p = LassoBox::new();
    let optimality = |x: MatRef<'_, f64>, d: MatRef<'_, f64>| p.optimality(x, d);
    let case = Case::new(
        "lasso with a box",
        p.data.as_ref(),
        p.reference.as_ref(),
        &optimality,
    );
    check(
        run(
            p.condat_vu::<f64>(),
            p.condat_vu::<f32>(),
            &case,
            &Tolerances::default(),
        )
        .unwrap(),
    );
}

#[test]
fn linearized_admm_conforms_on_lasso_box() {
    let p = LassoBox::new();
    let optimality = |x: MatRef<'_, f64>, d: MatRef<'_, f64>| p.optimality(x, d);
    let case = Case::new(
        "lasso with a box",
        p.data.as_ref(),
        p.reference.as_ref(),
        &optimality,
    );
    check(
        run(
            p.linearized_admm::<f64>(),
            p.linearized_admm::<f32>(),
            &case,
            &Tolerances::default(),
        )
        .unwrap(),
    );
}

#[test]
fn five_schemes_agree_on_lasso_box() {
    // Proximal gradient, FISTA, Davis–Yin, linearized ADMM and the
    // primal-dual scheme solve the same problem from different splittings
    // of it, so their limits must agree with each other to 1e-6.
    let p = LassoBox::new();
    let data = p.data.as_ref();
    let solutions = [
        (
            "proximal gradient",
            x_of(p.proximal_gradient::<f64>(Acceleration::None), data),
        ),
        (
            "FISTA",
            x_of(p.proximal_gradient::<f64>(Acceleration::Fista), data),
        ),
        ("Davis-Yin", x_of(p.davis_yin::<f64>(), data)),
        ("linearized ADMM", x_of(p.linearized_admm::<f64>(), data)),
        ("Condat-Vu", x_of(p.condat_vu::<f64>(), data)),
    ];
    for (name_a, x_a) in &solutions {
        for (name_b, x_b) in &solutions {
            let gap = (x_a - x_b).norm_max();
            assert!(gap <= 1e-6, "{name_a} and {name_b} differ by {gap:e}");
        }
    }
    // The box and the ℓ1 term are both active at the solution, so the
    // problem tests every term.
    let x = &solutions[0].1;
    let at_bound = (0..x.ncols())
        .flat_map(|j| (0..x.nrows()).map(move |i| (i, j)))
        .filter(|&(i, j)| (x[(i, j)] - LOWER).abs() < 1e-9 || (x[(i, j)] - UPPER).abs() < 1e-9)
        .count();
    let at_zero = x
        .as_ref()
        .col_iter()
        .flat_map(|c| c.iter().copied().collect::<Vec<_>>())
        .filter(|v| *v == 0.0)
        .count();
    assert!(at_bound > 0, "no entry at a bound: {x:?}");
    assert!(at_zero > 0, "no entry at zero: {x:?}");
}

// ---------------------------------------------------------------------------
// Sparse recovery with a fixed analysis operator.

struct SparseRecovery {
    theta: Mat<f64>,
    a: Mat<f64>,
    data: Mat<f64>,
    reference: Mat<f64>,
    optimum: Vec<f64>,
}

impl SparseRecovery {
    fn new() -> Self {
        let (n, m) = (6, 3);
        let g = gaussian(n, n, 201);
        let scale = 0.5 / g.as_ref().singular_values().unwrap()[0];
        let theta = Mat::from_fn(n, n, |i, j| if i == j { 1.0 } else { 0.0 } + scale * g[(i, j)]);
        let a = gaussian(m, n, 202);
        // Keep data whose solution is unique by a clear margin: the first
        // two vertex values differ by more than 1%.
        let mut columns = Vec::new();
        let mut seed = 203;
        while columns.len() < 3 {
            let d = gaussian(m, 1, seed);
            seed += 1;
            let values = analysis_l1_vertex_values(theta.as_ref(), a.as_ref(), d.as_ref()).unwrap();
            if values.len() < 2 || values[1] - values[0] > 1e-2 * values[0] {
                columns.push(d);
            }
        }
        let data = Mat::from_fn(m, 3, |i, j| columns[j][(i, 0)]);
        let mut reference = Mat::zeros(n, 3);
        let mut optimum = Vec::new();
        for j in 0..3 {
            let (x, value) = analysis_l1_exact(theta.as_ref(), a.as_ref(), data.col(j).as_mat()).unwrap();
            reference.col_mut(j).copy_from(x.col(0));
            optimum.push(value);
        }
        Self {
            theta,
            a,
            data,
            reference,
            optimum,
        }
    }

    /// Returns `‖Ax − d‖ + max(‖Θx‖₁ − optimum, 0)/optimum` per sample: zero
    /// exactly for feasible points with the optimal objective.
    fn optimality(&self, x: MatRef<'_, f64>, d: MatRef<'_, f64>) -> Vec<f64> {
        let residual = &self.a * x - d;
        let theta_x = &self.theta * x;
        (0..x.ncols())
            .map(|j| {
                let value: f64 = theta_x.col(j).iter().map(|v| v.abs()).sum();
                residual.col(j).norm_l2() + (value - self.optimum[j]).max(0.0) / self.optimum[j]
            })
            .collect()
    }

    fn linearized_admm<T: Scalar>(&self) -> LinearizedAdmm<T> {
        let (m, n) = (self.a.nrows(), self.a.ncols());
        let blocks = vec![
            Block::new(
                LearnableDense::new("theta", cast::<T>(self.theta.as_ref())).unwrap(),
                L1Norm::new(T::one()).unwrap(),
            ),
            Block::new(
                Dense::new(cast::<T>(self.a.as_ref())).unwrap(),
                IndicatorPoint::from_data(0, m).unwrap(),
            ),
        ];
        let steps = LadmmSteps {
            alpha: 0.5,
            beta: 0.3,
            lambda: 1.0,
        };
        LinearizedAdmm::new(n, m, blocks, steps).unwrap()
    }

    fn condat_vu<T: Scalar>(&self) -> CondatVu<T> {
        CondatVu::new(
            self.a.nrows(),
            Box::new(LearnableDense::new("theta", cast::<T>(self.theta.as_ref())).unwrap()),
            Box::new(AffineSet::from_data(cast::<T>(self.a.as_ref()).as_ref()).unwrap()),
            Box::new(L1Norm::new(T::one()).unwrap()),
            PrimalDualSteps::default(),
        )
        .unwrap()
    }
}

#[test]
fn sparse_recovery_conformance() {
    let p = SparseRecovery::new();
    let optimality = |x: MatRef<'_, f64>, d: MatRef<'_, f64>| p.optimality(x, d);
    let case = Case::new(
        "sparse recovery",
        p.data.as_ref(),
        p.reference.as_ref(),
        &optimality,
    );
    let tolerances = Tolerances::default();
    let ladmm = check(
        run(
            p.linearized_admm::<f64>(),
            p.linearized_admm::<f32>(),
            &case,
            &tolerances,
        )
        .unwrap(),
    );
    let primal_dual = check(run(p.condat_vu::<f64>(), p.condat_vu::<f32>(), &case, &tolerances).unwrap());
    println!(
        "mean iterations (f64): linearized ADMM {:.0}, Condat-Vu {:.0}",
        ladmm.mean_iterations_f64, primal_dual.mean_iterations_f64
    );
}

// ---------------------------------------------------------------------------
// Equality-constrained least squares.

struct EqualityLeastSquares {
    a: Mat<f64>,
    c: Mat<f64>,
    b: Vec<f64>,
    data: Mat<f64>,
    reference: Mat<f64>,
}

impl EqualityLeastSquares {
    fn new(a: Mat<f64>) -> Self {
        let n = a.ncols();
        let c = gaussian(2, n, 302);
        let b = vec![0.5, -1.0];
        let data = gaussian(a.nrows(), 3, 303);
        let b_mat = Mat::from_fn(2, 3, |i, _| b[i]);
        let reference = equality_least_squares(a.as_ref(), data.as_ref(), c.as_ref(), b_mat.as_ref());
        Self {
            a,
            c,
            b,
            data,
            reference,
        }
    }

    /// Returns `‖Cx − b‖ + ‖P_null(C)(Aᵀ(Ax − d))‖`: feasibility plus the
    /// part of the gradient that the constraint cannot balance.
    fn optimality(&self, x: MatRef<'_, f64>, d: MatRef<'_, f64>) -> Vec<f64> {
        let gradient = self.a.transpose() * (&self.a * x - d);
        // Projection onto the null space of C: g − Cᵀ(CCᵀ)⁻¹Cg.
        let gram = &self.c * self.c.transpose();
        let coefficients = gram.full_piv_lu().solve(&self.c * &gradient);
        let tangential = &gradient - self.c.transpose() * coefficients;
        let feasibility = &self.c * x;
        (0..x.ncols())
            .map(|j| {
                let infeasible: f64 = (0..2).map(|i| (feasibility[(i, j)] - self.b[i]).powi(2)).sum();
                infeasible.sqrt() + tangential.col(j).norm_l2()
            })
            .collect()
    }

    fn affine<T: Scalar>(&self) -> AffineSet<T> {
        AffineSet::new(
            cast::<T>(self.c.as_ref()).as_ref(),
            self.b.iter().map(|&v| T::lit(v)).collect(),
        )
        .unwrap()
    }

    fn least_squares<T: Scalar>(&self) -> LeastSquares<T> {
        LeastSquares::new(Dense::new(cast::<T>(self.a.as_ref())).unwrap()).unwrap()
    }

    fn case<'a>(&'a self, optimality: &'a optlayer_testing::conformance::Optimality<'a>) -> Case<'a> {
        Case::new(
            "equality-constrained least squares",
            self.data.as_ref(),
            self.reference.as_ref(),
            optimality,
        )
    }
}

#[test]
fn schemes_conform_on_equality_least_squares() {
    let p = EqualityLeastSquares::new(gaussian(7, 4, 301));
    let optimality = |x: MatRef<'_, f64>, d: MatRef<'_, f64>| p.optimality(x, d);
    let case = p.case(&optimality);
    let tol = Tolerances::default();
    let m = p.a.nrows();

    let pg = |acc| ProximalGradient::new(p.least_squares::<f64>(), p.affine::<f64>(), m, acc).unwrap();
    let pg32 = |acc| ProximalGradient::new(p.least_squares::<f32>(), p.affine::<f32>(), m, acc).unwrap();
    check(run(pg(Acceleration::None), pg32(Acceleration::None), &case, &tol).unwrap());
    check(run(pg(Acceleration::Fista), pg32(Acceleration::Fista), &case, &tol).unwrap());

    fn davis_yin<T: Scalar>(p: &EqualityLeastSquares) -> DavisYin<T> {
        DavisYin::new(
            p.a.ncols(),
            p.a.nrows(),
            Box::new(p.least_squares::<T>()),
            Box::new(p.affine::<T>()),
            Box::new(Zero),
            DavisYinSteps::default(),
        )
        .unwrap()
    }
    check(run(davis_yin::<f64>(&p), davis_yin::<f32>(&p), &case, &tol).unwrap());

    fn condat_vu<T: Scalar>(p: &EqualityLeastSquares) -> CondatVu<T> {
        // The constraint as h(Cx) with h the indicator of {b}, and g = 0.
        CondatVu::with_smooth(
            p.a.nrows(),
            Box::new(p.least_squares::<T>()),
            Box::new(Dense::new(cast::<T>(p.c.as_ref())).unwrap()),
            Box::new(Zero),
            Box::new(IndicatorPoint::fixed(p.b.iter().map(|&v| T::lit(v)).collect()).unwrap()),
            PrimalDualSteps::default(),
        )
        .unwrap()
    }
    check(run(condat_vu::<f64>(&p), condat_vu::<f32>(&p), &case, &tol).unwrap());

    fn ladmm<T: Scalar>(p: &EqualityLeastSquares) -> LinearizedAdmm<T> {
        let blocks = vec![
            Block::new(
                Dense::new(cast::<T>(p.a.as_ref())).unwrap(),
                SquaredDistance::from_data(T::one(), 0, p.a.nrows()).unwrap(),
            ),
            Block::new(
                Dense::new(cast::<T>(p.c.as_ref())).unwrap(),
                IndicatorPoint::fixed(p.b.iter().map(|&v| T::lit(v)).collect()).unwrap(),
            ),
        ];
        let steps = LadmmSteps {
            alpha: 0.5,
            beta: 0.5,
            lambda: 1.0,
        };
        LinearizedAdmm::new(p.a.ncols(), p.a.nrows(), blocks, steps).unwrap()
    }
    check(run(ladmm::<f64>(&p), ladmm::<f32>(&p), &case, &tol).unwrap());
}

#[test]
fn douglas_rachford_conforms_on_projection() {
    // With A = I the problem is the projection of d onto {x : Cx = b}, and
    // Douglas–Rachford splits it into the affine set and ½‖x − d‖².
    let p = EqualityLeastSquares::new(Mat::identity(4, 4));
    let optimality = |x: MatRef<'_, f64>, d: MatRef<'_, f64>| p.optimality(x, d);
    let case = p.case(&optimality);
    fn douglas_rachford<T: Scalar>(p: &EqualityLeastSquares) -> DouglasRachford<T> {
        DouglasRachford::new(
            4,
            4,
            Box::new(p.affine::<T>()),
            Box::new(SquaredDistance::from_data(T::one(), 0, 4).unwrap()),
            1.0,
            1.0,
        )
        .unwrap()
    }
    check(
        run(
            douglas_rachford::<f64>(&p),
            douglas_rachford::<f32>(&p),
            &case,
            &Tolerances::default(),
        )
        .unwrap(),
    );
}
