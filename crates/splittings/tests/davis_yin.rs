//! Davis–Yin and Douglas–Rachford splitting: vector-Jacobian products
//! against finite differences, convergence to exact solutions, the returned
//! iterate, and input validation.
//!
//! The curved smooth term and the box and shifted-square proxes below are
//! small test-only implementations; the other terms come from `optlayer-ops`.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::solvers::Solve;
use faer::prelude::ReborrowMut;
use faer::{Mat, MatMut, MatRef, Par};
use optlayer_core::{
    Error, ForwardOptions, OptLayer, ParamInfo, Parameterized, Prox, Result, Scalar, Smooth, Splitting,
    Status, set_param,
};
use optlayer_ops::{Dense, L1Norm, LearnableDense, LeastSquares, Quadratic, Zero};
use optlayer_splittings::{DavisYin, DavisYinSteps, DouglasRachford, GammaRule};
use optlayer_testing::fd::{FdOptions, GradientCheck, check_step_vjp_params, check_step_vjp_state};
use optlayer_testing::random::gaussian;
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Test-only terms
// ---------------------------------------------------------------------------

/// Returns `½‖A x − d‖²` with a fixed `A`.
fn least_squares<T: Scalar>(a: Mat<T>) -> Box<dyn Smooth<T>> {
    Box::new(LeastSquares::new(Dense::new(a).unwrap()).unwrap())
}

/// Returns `½‖A x − d‖²` with `A` the learnable parameter `name`.
fn learnable_least_squares(name: &str, a: Mat<f64>) -> Box<dyn Smooth<f64>> {
    Box::new(LeastSquares::new(LearnableDense::new(name, a).unwrap()).unwrap())
}

/// `f(x; d) = w Σ_i log(1 + exp(x_i − d_i))`, with the learnable weight `w`:
/// a smooth term whose Hessian `w σ(x − d)(1 − σ(x − d))` depends on `x`.
struct Softplus<T: Scalar> {
    n: usize,
    weight: Mat<T>,
}

fn sigmoid<T: Scalar>(t: T) -> T {
    T::one() / (T::one() + (-t).exp())
}

impl<T: Scalar> Parameterized<T> for Softplus<T> {
    fn param_count(&self) -> usize {
        1
    }

    fn param_info(&self, _index: usize) -> ParamInfo {
        ParamInfo {
            name: "softplus weight".into(),
            nrows: 1,
            ncols: 1,
        }
    }

    fn param(&self, _index: usize) -> MatRef<'_, T> {
        self.weight.as_ref()
    }

    fn param_mut(&mut self, _index: usize) -> MatMut<'_, T> {
        self.weight.as_mut()
    }
}

impl<T: Scalar> Smooth<T> for Softplus<T> {
    fn dim(&self) -> usize {
        self.n
    }

    fn data_rows_needed(&self) -> usize {
        self.n
    }

    fn value(&self, x: MatRef<'_, T>, data: MatRef<'_, T>, col: usize) -> T {
        let sum = (0..self.n).fold(T::zero(), |acc, i| {
            acc + (T::one() + (x[(i, col)] - data[(i, col)]).exp()).ln()
        });
        self.weight[(0, 0)] * sum
    }

    fn gradient(
        &self,
        mut out: MatMut<'_, T>,
        x: MatRef<'_, T>,
        data: MatRef<'_, T>,
        _: Par,
        _: &mut MemStack,
    ) {
        let w = self.weight[(0, 0)];
        faer::zip!(out.rb_mut(), x, data.subrows(0, self.n))
            .for_each(|faer::unzip!(o, x, d)| *o = w * sigmoid(*x - *d));
    }

    fn hessian_vjp(
        &self,
        mut out: MatMut<'_, T>,
        x: MatRef<'_, T>,
        data: MatRef<'_, T>,
        v: MatRef<'_, T>,
        _: Par,
        _: &mut MemStack,
    ) {
        let w = self.weight[(0, 0)];
        faer::zip!(out.rb_mut(), x, data.subrows(0, self.n), v).for_each(|faer::unzip!(o, x, d, v)| {
            let s = sigmoid(*x - *d);
            *o = w * s * (T::one() - s) * *v;
        });
    }

    fn accumulate_grad(
        &self,
        grads: &mut [Mat<T>],
        x: MatRef<'_, T>,
        data: MatRef<'_, T>,
        c: MatRef<'_, T>,
        _: Par,
        _: &mut MemStack,
    ) {
        let mut sum = T::zero();
        for j in 0..x.ncols() {
            for i in 0..self.n {
                sum += c[(i, j)] * sigmoid(x[(i, j)] - data[(i, j)]);
            }
        }
        grads[0][(0, 0)] += sum;
    }

    fn lipschitz_estimate(&self) -> T {
        self.weight[(0, 0)] / T::lit(4.0)
    }
}

/// The indicator of the box `[lower, upper]ⁿ`; its prox clips each entry.
/// Derivative convention: 1 strictly inside the box, 0 on the boundary and outside.
struct BoxClip<T> {
    lower: T,
    upper: T,
}

impl<T: Scalar> Parameterized<T> for BoxClip<T> {}

impl<T: Scalar> Prox<T> for BoxClip<T> {
    fn value(&self, x: MatRef<'_, T>, _data: MatRef<'_, T>, col: usize) -> Option<T> {
        let tol = T::epsilon().sqrt() * (T::one() + self.lower.abs().max(self.upper.abs()));
        let inside =
            (0..x.nrows()).all(|i| x[(i, col)] >= self.lower - tol && x[(i, col)] <= self.upper + tol);
        Some(if inside { T::zero() } else { T::infinity() })
    }

    fn prox(&self, out: MatMut<'_, T>, v: MatRef<'_, T>, _gamma: T, _data: MatRef<'_, T>) {
        faer::zip!(out, v).for_each(|faer::unzip!(o, v)| *o = v.max(self.lower).min(self.upper));
    }

    fn prox_vjp(&self, v_bar: MatMut<'_, T>, v: MatRef<'_, T>, _: T, _: MatRef<'_, T>, c: MatRef<'_, T>) {
        faer::zip!(v_bar, v, c).for_each(|faer::unzip!(o, v, c)| {
            *o = if *v > self.lower && *v < self.upper {
                *c
            } else {
                T::zero()
            }
        });
    }
}

/// `h(x) = ½‖x − a‖²` with the learnable center `a` (`n x 1`), named `name`:
/// `prox_{γh}(v) = (v + γ a) / (1 + γ)`.
struct ShiftedSquare<T: Scalar> {
    center: Mat<T>,
    name: String,
}

impl<T: Scalar> ShiftedSquare<T> {
    fn new(name: &str, center: &[f64]) -> Self {
        Self {
            center: Mat::from_fn(center.len(), 1, |i, _| T::lit(center[i])),
            name: name.into(),
        }
    }
}

impl<T: Scalar> Parameterized<T> for ShiftedSquare<T> {
    fn param_count(&self) -> usize {
        1
    }

    fn param_info(&self, _index: usize) -> ParamInfo {
        ParamInfo {
            name: self.name.clone(),
            nrows: self.center.nrows(),
            ncols: 1,
        }
    }

    fn param(&self, _index: usize) -> MatRef<'_, T> {
        self.center.as_ref()
    }

    fn param_mut(&mut self, _index: usize) -> MatMut<'_, T> {
        self.center.as_mut()
    }
}

impl<T: Scalar> Prox<T> for ShiftedSquare<T> {
    fn dim(&self) -> Option<usize> {
        Some(self.center.nrows())
    }

    fn prox(&self, mut out: MatMut<'_, T>, v: MatRef<'_, T>, gamma: T, _data: MatRef<'_, T>) {
        let scale = (T::one() + gamma).recip();
        for j in 0..v.ncols() {
            for i in 0..v.nrows() {
                out[(i, j)] = scale * (v[(i, j)] + gamma * self.center[(i, 0)]);
            }
        }
    }

    fn prox_vjp(
        &self,
        v_bar: MatMut<'_, T>,
        _v: MatRef<'_, T>,
        gamma: T,
        _: MatRef<'_, T>,
        c: MatRef<'_, T>,
    ) {
        let scale = (T::one() + gamma).recip();
        faer::zip!(v_bar, c).for_each(|faer::unzip!(o, c)| *o = scale * *c);
    }

    fn accumulate_grad(
        &self,
        grads: &mut [Mat<T>],
        v: MatRef<'_, T>,
        gamma: T,
        _: MatRef<'_, T>,
        c: MatRef<'_, T>,
    ) {
        let scale = gamma / (T::one() + gamma);
        for j in 0..v.ncols() {
            for i in 0..v.nrows() {
                grads[0][(i, 0)] += scale * c[(i, j)];
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reference solver
// ---------------------------------------------------------------------------

/// Returns the exact minimizer of `½‖A x − d‖² + μ‖x‖₁` over the box
/// `[lower, upper]ⁿ` (with `lower < 0 < upper` and `A` of full column rank),
/// by enumerating which bound, sign or zero each coordinate takes and
/// keeping the candidate that satisfies the optimality conditions.
fn box_lasso_exact(a: MatRef<'_, f64>, d: MatRef<'_, f64>, mu: f64, lower: f64, upper: f64) -> Mat<f64> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Lower,
        Upper,
        Zero,
        Positive,
        Negative,
    }
    const STATES: [State; 5] = [
        State::Lower,
        State::Upper,
        State::Zero,
        State::Positive,
        State::Negative,
    ];
    let n = a.ncols();
    assert!(lower < 0.0, "the enumeration needs lower < 0");
    assert!(upper > 0.0, "the enumeration needs upper > 0");
    let tol = 1e-9 * (1.0 + d.norm_l2() * a.norm_l2());
    let objective = |x: &Mat<f64>| {
        let r = a * x - d;
        0.5 * r.squared_norm_l2() + mu * (0..n).map(|i| x[(i, 0)].abs()).sum::<f64>()
    };

    let mut best: Option<(f64, Mat<f64>)> = None;
    for code in 0..5usize.pow(n as u32) {
        let states: Vec<State> = (0..n).map(|i| STATES[code / 5usize.pow(i as u32) % 5]).collect();
        let free: Vec<usize> = (0..n)
            .filter(|&i| matches!(states[i], State::Positive | State::Negative))
            .collect();
        let mut x = Mat::<f64>::zeros(n, 1);
        for i in 0..n {
            x[(i, 0)] = match states[i] {
                State::Lower => lower,
                State::Upper => upper,
                _ => 0.0,
            };
        }
        if !free.is_empty() {
            // Normal equations on the free coordinates: A_Fᵀ(A x − d) + μ s_F = 0.
            let k = free.len();
            let a_free = Mat::from_fn(a.nrows(), k, |r, c| a[(r, free[c])]);
            let rest = d - a * &x;
            let mut rhs = a_free.transpose() * &rest;
            for (c, &i) in free.iter().enumerate() {
                let sign = if states[i] == State::Positive { 1.0 } else { -1.0 };
                rhs[(c, 0)] -= mu * sign;
            }
            let gram = a_free.transpose() * &a_free;
            let solution = gram.partial_piv_lu().solve(&rhs);
            for (c, &i) in free.iter().enumerate() {
                x[(i, 0)] = solution[(c, 0)];
            }
        }
        let gradient = a.transpose() * (a * &x - d);
        let optimal = (0..n).all(|i| {
            let (xi, ri) = (x[(i, 0)], gradient[(i, 0)]);
            match states[i] {
                State::Positive => xi >= 0.0 && xi <= upper,
                State::Negative => xi <= 0.0 && xi >= lower,
                State::Zero => ri.abs() <= mu + tol,
                // At the lower bound the subgradient of μ|x| is −μ and the normal cone is (−∞, 0].
                State::Lower => ri - mu >= -tol,
                State::Upper => ri + mu <= tol,
            }
        });
        if optimal {
            let value = objective(&x);
            if best.as_ref().is_none_or(|(v, _)| value < *v) {
                best = Some((value, x));
            }
        }
    }
    best.expect("no candidate satisfied the optimality conditions").1
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn to_t<T: Scalar>(m: MatRef<'_, f64>) -> Mat<T> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| T::lit(m[(i, j)]))
}

fn max_abs_diff(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> f64 {
    let mut max = 0.0f64;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            max = max.max((a[(i, j)] - b[(i, j)]).abs());
        }
    }
    max
}

/// Builds the box-constrained lasso `½‖A x − d‖² + ι_[lower, upper](x) + μ‖x‖₁`,
/// with the box as `g` and the ℓ1 norm as `h`.
fn box_lasso<T: Scalar>(
    a: MatRef<'_, f64>,
    mu: f64,
    lower: f64,
    upper: f64,
    steps: DavisYinSteps,
) -> DavisYin<T> {
    DavisYin::new(
        a.ncols(),
        a.nrows(),
        least_squares(to_t::<T>(a)),
        Box::new(BoxClip {
            lower: T::lit(lower),
            upper: T::lit(upper),
        }),
        Box::new(L1Norm::new(T::lit(mu)).unwrap()),
        steps,
    )
    .unwrap()
}

fn assert_fd_passes(check: &GradientCheck, what: &str) {
    assert!(check.rel_error < 1e-7, "{what}: {check:?}");
    assert!(
        check.fd_norm > 0.0,
        "{what}: finite differences are all zero: {check:?}"
    );
    assert!(
        check.skipped_nonsmooth * 4 <= check.checked,
        "{what}: too many coordinates at kinks: {check:?}"
    );
}

// ---------------------------------------------------------------------------
// Vector-Jacobian products
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(optlayer_testing::proptest_config(24))]

    /// Least squares with a learnable `A`, the box as `g` and a learnable ℓ1
    /// weight as `h`: every parameter kind of the three terms.
    #[test]
    fn davis_yin_step_vjp_matches_finite_differences(
        n in 3usize..6, extra_rows in 0usize..3, batch in 1usize..4, seed in 0u64..10_000,
    ) {
        // λ ≠ 1, because with λ = 1 a coordinate where the box clips and the
        // ℓ1 prox passes has the derivative 1 − λ = 0 in z.
        let m = n + extra_rows;
        let steps = DavisYinSteps { gamma: GammaRule::default(), lambda: 1.2 };
        let mut s = DavisYin::new(
            n,
            m,
            learnable_least_squares("a", gaussian(m, n, seed)),
            Box::new(BoxClip { lower: -1.0, upper: 1.2 }),
            Box::new(L1Norm::learnable("mu", 0.3).unwrap()),
            steps,
        )
        .unwrap();
        let z = gaussian(2 * n, batch, seed + 1);
        let data = gaussian(m, batch, seed + 2);
        let cotangent = gaussian(2 * n, batch, seed + 3);
        let opts = FdOptions::default();

        let state = check_step_vjp_state(&s, z.as_ref(), data.as_ref(), cotangent.as_ref(), &opts);
        assert_fd_passes(&state, "state cotangent");
        let params = check_step_vjp_params(&mut s, z.as_ref(), data.as_ref(), cotangent.as_ref(), &opts);
        assert_fd_passes(&params, "parameter gradient");
    }
}

/// A smooth term whose Hessian depends on `x` checks that the Hessian is
/// taken at `x_h`; learnable terms as both `g` and `h`.
#[test]
fn davis_yin_step_vjp_with_curved_smooth_term() {
    let n = 4;
    let batch = 3;
    let mut s = DavisYin::new(
        n,
        n,
        Box::new(Softplus {
            n,
            weight: Mat::from_fn(1, 1, |_, _| 1.5),
        }),
        Box::new(L1Norm::learnable("mu", 0.2).unwrap()),
        Box::new(ShiftedSquare::new("center", &[0.3, -0.8, 1.1, 0.0])),
        DavisYinSteps {
            gamma: GammaRule::Fixed { gamma: 0.9 },
            lambda: 1.3,
        },
    )
    .unwrap();
    let z = gaussian(2 * n, batch, 11);
    let data = gaussian(n, batch, 12);
    let cotangent = gaussian(2 * n, batch, 13);
    let opts = FdOptions::default();

    let state = check_step_vjp_state(&s, z.as_ref(), data.as_ref(), cotangent.as_ref(), &opts);
    assert_fd_passes(&state, "state cotangent");
    assert_eq!(state.skipped_nonsmooth, 0, "{state:?}");
    let params = check_step_vjp_params(&mut s, z.as_ref(), data.as_ref(), cotangent.as_ref(), &opts);
    assert_fd_passes(&params, "parameter gradient");
    assert_eq!(params.checked, 1 + 1 + n);
}

#[test]
fn douglas_rachford_step_vjp_matches_finite_differences() {
    let n = 5;
    let batch = 2;
    let mut s = DouglasRachford::new(
        n,
        0,
        Box::new(L1Norm::learnable("mu", 0.4).unwrap()),
        Box::new(ShiftedSquare::new("center", &[1.0, -2.0, 0.5, 0.1, -0.3])),
        0.7,
        1.6,
    )
    .unwrap();
    let z = gaussian(2 * n, batch, 21);
    let data = Mat::<f64>::zeros(0, batch);
    let cotangent = gaussian(2 * n, batch, 22);
    let opts = FdOptions::default();

    let state = check_step_vjp_state(&s, z.as_ref(), data.as_ref(), cotangent.as_ref(), &opts);
    assert_fd_passes(&state, "state cotangent");
    let params = check_step_vjp_params(&mut s, z.as_ref(), data.as_ref(), cotangent.as_ref(), &opts);
    assert_fd_passes(&params, "parameter gradient");
    assert_eq!(params.checked, 1 + n);
}

/// The step reads only the governing rows, so the `x` rows of `z_bar` are
/// zero, and the state and parameter parts agree with one joint call.
#[test]
fn step_vjp_parts_agree_with_joint_call() {
    let (n, m, batch) = (4, 6, 3);
    let s = DavisYin::new(
        n,
        m,
        learnable_least_squares("a", gaussian(m, n, 31)),
        Box::new(BoxClip {
            lower: -1.0,
            upper: 1.0,
        }),
        Box::new(L1Norm::learnable("mu", 0.1).unwrap()),
        DavisYinSteps::default(),
    )
    .unwrap();
    let z = gaussian(2 * n, batch, 32);
    let data = gaussian(m, batch, 33);
    let cotangent = gaussian(2 * n, batch, 34);
    let mut buffer = MemBuffer::new(s.step_vjp_scratch(batch, Par::Seq));
    let stack = MemStack::new(&mut buffer);
    let zeros = || vec![Mat::<f64>::zeros(m, n), Mat::<f64>::zeros(1, 1)];

    let mut z_bar_joint = Mat::from_fn(2 * n, batch, |_, _| f64::NAN);
    let mut grads_joint = zeros();
    s.step_vjp(
        Some(z_bar_joint.as_mut()),
        z.as_ref(),
        data.as_ref(),
        cotangent.as_ref(),
        Some(&mut grads_joint),
        Par::Seq,
        stack,
    );
    let mut z_bar = Mat::zeros(2 * n, batch);
    s.step_vjp(
        Some(z_bar.as_mut()),
        z.as_ref(),
        data.as_ref(),
        cotangent.as_ref(),
        None,
        Par::Seq,
        stack,
    );
    let mut grads = zeros();
    s.step_vjp(
        None,
        z.as_ref(),
        data.as_ref(),
        cotangent.as_ref(),
        Some(&mut grads),
        Par::Seq,
        stack,
    );

    assert_eq!(z_bar, z_bar_joint);
    assert_eq!(grads[0], grads_joint[0]);
    assert_eq!(grads[1], grads_joint[1]);
    assert!(grads[0].norm_l2() > 0.0);
    assert!(grads[1].norm_l2() > 0.0);
    assert_eq!(z_bar.subrows(0, n).norm_l2(), 0.0);
    assert!(z_bar.subrows(n, n).norm_l2() > 0.0);
}

// ---------------------------------------------------------------------------
// Returned iterate and known solutions
// ---------------------------------------------------------------------------

/// `½‖x − a‖² + indicator of [0, 1]²` with `a = [2, −1]` and `γ = λ = 1`.
/// With the box as `h`, the governing fixed point is `z = a`, and the
/// splitting must return the minimizer `[1, 0]` instead.
#[test]
fn douglas_rachford_returns_minimizer_not_governing_point() {
    let a = [2.0, -1.0];
    let box_unit = || BoxClip {
        lower: 0.0,
        upper: 1.0,
    };
    let data = Mat::<f64>::zeros(0, 1);
    let options = ForwardOptions::new(10_000, 1e-15);

    // g = ½‖x − a‖², h = box: z* = (1 − γ) x* + γ a = a.
    let s = DouglasRachford::new(
        2,
        0,
        Box::new(ShiftedSquare::new("a", &a)),
        Box::new(box_unit()),
        1.0,
        1.0,
    )
    .unwrap();
    let layer = OptLayer::new(s, options.clone()).unwrap();
    let result = layer.forward(data.as_ref()).unwrap();
    assert_eq!(result.samples[0].status, Status::Converged);
    let x = result.x.col(0);
    assert!((x[0] - 1.0).abs() < 1e-12, "x = {x:?}");
    assert!(x[1].abs() < 1e-12, "x = {x:?}");
    let z = result.state.col(0).subrows(2, 2);
    assert!((z[0] - 2.0).abs() < 1e-12, "z = {z:?}");
    assert!((z[1] + 1.0).abs() < 1e-12, "z = {z:?}");
    assert!((z[0] - x[0]).abs() > 0.5);
    assert!((z[1] - x[1]).abs() > 0.5);

    // g = box, h = ½‖x − a‖²: z* = (1 + γ) x* − γ a = [0, 1]. Every returned
    // iterate is a projection onto the box, so the box contains it exactly.
    let s = DouglasRachford::new(
        2,
        0,
        Box::new(box_unit()),
        Box::new(ShiftedSquare::new("a", &a)),
        1.0,
        1.0,
    )
    .unwrap();
    let layer = OptLayer::new(s, options).unwrap();
    let result = layer.forward(data.as_ref()).unwrap();
    assert_eq!(result.samples[0].status, Status::Converged);
    let x = result.x.col(0);
    assert_eq!(x[0], 1.0);
    assert_eq!(x[1], 0.0);
    let z = result.state.col(0).subrows(2, 2);
    assert!(z[0].abs() < 1e-12, "z = {z:?}");
    assert!((z[1] - 1.0).abs() < 1e-12, "z = {z:?}");
}

/// The primal rows after each step are `prox_{γg}` outputs, so with the box
/// as `g` they stay inside the box from the first step on, even where the
/// governing sequence leaves it.
#[test]
fn davis_yin_iterates_stay_in_box() {
    let (n, m) = (3, 5);
    let a = gaussian(m, n, 41);
    let d = gaussian(m, 2, 42) * 5.0;
    let s = box_lasso::<f64>(a.as_ref(), 0.1, -0.2, 0.3, DavisYinSteps::default());
    let mut z = Mat::<f64>::zeros(2 * n, 2);
    let mut next = Mat::<f64>::zeros(2 * n, 2);
    let mut buffer = MemBuffer::new(s.step_scratch(2, Par::Seq));
    let mut governing_outside = false;
    for _ in 0..200 {
        s.step(
            next.as_mut(),
            z.as_ref(),
            d.as_ref(),
            Par::Seq,
            MemStack::new(&mut buffer),
        );
        std::mem::swap(&mut z, &mut next);
        for j in 0..2 {
            for i in 0..n {
                assert!((-0.2..=0.3).contains(&z[(i, j)]), "x = {:?}", z.col(j));
                governing_outside |= !(-0.2..=0.3).contains(&z[(n + i, j)]);
            }
        }
    }
    assert!(
        governing_outside,
        "the test problem should drive z outside the box"
    );
}

// ---------------------------------------------------------------------------
// Convergence and optimality
// ---------------------------------------------------------------------------

/// A random box-constrained lasso; `d` is scaled so that some bounds are active.
struct BoxLassoProblem {
    a: Mat<f64>,
    d: Mat<f64>,
    mu: f64,
    lower: f64,
    upper: f64,
}

fn box_lasso_problem(n: usize, m: usize, batch: usize, mu: f64, seed: u64) -> BoxLassoProblem {
    BoxLassoProblem {
        a: gaussian(m, n, seed),
        d: gaussian(m, batch, seed + 1) * 2.0,
        mu,
        lower: -0.4,
        upper: 0.6,
    }
}

fn exact_columns(p: &BoxLassoProblem) -> Mat<f64> {
    let mut x = Mat::zeros(p.a.ncols(), p.d.ncols());
    for j in 0..p.d.ncols() {
        let col = box_lasso_exact(p.a.as_ref(), p.d.subcols(j, 1), p.mu, p.lower, p.upper);
        x.col_mut(j).copy_from(col.col(0));
    }
    x
}

proptest! {
    #![proptest_config(optlayer_testing::proptest_config(32))]

    /// Davis–Yin through the layer on random box-constrained lasso problems,
    /// against the enumerated exact solution, with random valid steps.
    #[test]
    fn davis_yin_converges_to_exact_box_lasso(
        n in 2usize..5, extra_rows in 1usize..4, batch in 1usize..3, mu in 0.0f64..1.0,
        safety in 0.5f64..1.5, lambda_fraction in 0.3f64..0.9, seed in 0u64..100_000,
    ) {
        let p = box_lasso_problem(n, n + extra_rows, batch, mu, seed);
        let lambda = lambda_fraction * (2.0 - safety / 2.0);
        let steps = DavisYinSteps { gamma: GammaRule::FromLipschitz { safety }, lambda };
        let s = box_lasso::<f64>(p.a.as_ref(), p.mu, p.lower, p.upper, steps);
        let layer = OptLayer::new(s, ForwardOptions::new(400_000, 1e-13)).unwrap();
        let result = layer.forward(p.d.as_ref()).unwrap();
        for report in &result.samples {
            prop_assert_eq!(report.status, Status::Converged, "{:?}", report);
        }
        let exact = exact_columns(&p);
        let error = max_abs_diff(result.x.as_ref(), exact.as_ref());
        prop_assert!(error < 1e-7, "max |x − x_exact| = {error:e}");
    }

    /// Douglas–Rachford on `½‖x − a‖² + indicator of a box`, whose solution
    /// is the clipped center, with random valid steps and either term as `g`.
    #[test]
    fn douglas_rachford_converges_to_clipped_center(
        center in proptest::collection::vec(-3.0f64..3.0, 1..6),
        gamma in 0.05f64..5.0, lambda in 0.2f64..1.9, box_as_g in any::<bool>(),
    ) {
        let n = center.len();
        let square = Box::new(ShiftedSquare::new("center", &center));
        let clip = Box::new(BoxClip { lower: -1.0, upper: 0.5 });
        let s = if box_as_g {
            DouglasRachford::new(n, 0, clip, square, gamma, lambda)
        } else {
            DouglasRachford::new(n, 0, square, clip, gamma, lambda)
        }
        .unwrap();
        let layer = OptLayer::new(s, ForwardOptions::new(200_000, 1e-14)).unwrap();
        let result = layer.forward(Mat::<f64>::zeros(0, 1).as_ref()).unwrap();
        prop_assert_eq!(result.samples[0].status, Status::Converged, "{:?}", result.samples[0]);
        for (i, value) in center.iter().enumerate() {
            let expected = value.clamp(-1.0, 0.5);
            prop_assert!((result.x[(i, 0)] - expected).abs() < 1e-9, "x = {:?}", result.x);
        }
    }
}

/// A fixed problem with all three terms active: the solution has entries at
/// both bounds, at zero and free, and Davis–Yin matches the enumerated
/// solution in `f64` and `f32`.
#[test]
fn davis_yin_three_terms_match_exact_solution() {
    let p = box_lasso_problem(4, 7, 3, 0.5, 7);
    let exact = exact_columns(&p);
    let mut kinds = [0usize; 3];
    for j in 0..exact.ncols() {
        for i in 0..exact.nrows() {
            let value = exact[(i, j)];
            let index = if value == p.lower || value == p.upper {
                0
            } else if value == 0.0 {
                1
            } else {
                2
            };
            kinds[index] += 1;
        }
    }
    assert!(
        kinds.iter().all(|&k| k > 0),
        "bound, zero and free entries: {kinds:?}"
    );

    let s = box_lasso::<f64>(p.a.as_ref(), p.mu, p.lower, p.upper, DavisYinSteps::default());
    let layer = OptLayer::new(s, ForwardOptions::new(100_000, 1e-14)).unwrap();
    let result = layer.forward(p.d.as_ref()).unwrap();
    assert_eq!(result.converged_count(), 3, "{:?}", result.samples);
    let error = max_abs_diff(result.x.as_ref(), exact.as_ref());
    assert!(error < 1e-8, "f64: max |x − x_exact| = {error:e}");

    let s = box_lasso::<f32>(p.a.as_ref(), p.mu, p.lower, p.upper, DavisYinSteps::default());
    let layer = OptLayer::new(s, ForwardOptions::new(100_000, 1e-6)).unwrap();
    let result = layer.forward(to_t::<f32>(p.d.as_ref()).as_ref()).unwrap();
    assert_eq!(result.converged_count(), 3, "{:?}", result.samples);
    let x = Mat::<f64>::from_fn(4, 3, |i, j| f64::from(result.x[(i, j)]));
    let error = max_abs_diff(x.as_ref(), exact.as_ref());
    assert!(error < 1e-4, "f32: max |x − x_exact| = {error:e}");
}

/// Without the ℓ1 and box terms (`Zero` proxes) Davis–Yin is gradient
/// descent on least squares and returns the normal-equation solution.
#[test]
fn davis_yin_with_zero_proxes_solves_least_squares() {
    let (n, m) = (3, 6);
    let a = gaussian(m, n, 51);
    let d = gaussian(m, 2, 52);
    let s = DavisYin::new(
        n,
        m,
        least_squares(a.clone()),
        Box::new(Zero),
        Box::new(Zero),
        DavisYinSteps::default(),
    )
    .unwrap();
    let layer = OptLayer::new(s, ForwardOptions::new(100_000, 1e-14)).unwrap();
    let result = layer.forward(d.as_ref()).unwrap();
    assert_eq!(result.converged_count(), 2);
    let exact = (a.transpose() * &a).partial_piv_lu().solve(a.transpose() * &d);
    let error = max_abs_diff(result.x.as_ref(), exact.as_ref());
    assert!(error < 1e-10, "max |x − x_ls| = {error:e}");
}

/// A diagonal quadratic with a box and an ℓ1 term separates by coordinate,
/// so the solution is the clipped soft-thresholded minimizer
/// `clip(soft(−q_i, μ) / Q_ii, lower, upper)`.
#[test]
fn davis_yin_separable_quadratic_closed_form() {
    let n = 6;
    let diagonal = [0.5, 1.0, 2.0, 3.0, 0.8, 1.5];
    let linear = [1.2, -0.1, 3.0, -4.0, 0.3, -0.9];
    let (mu, lower, upper) = (0.4, -0.7, 0.9);
    let q = Mat::from_fn(n, n, |i, j| if i == j { diagonal[i] } else { 0.0 });
    let s = DavisYin::<f64>::new(
        n,
        0,
        Box::new(Quadratic::new(q, Mat::from_fn(n, 1, |i, _| linear[i])).unwrap()),
        Box::new(BoxClip { lower, upper }),
        Box::new(L1Norm::new(mu).unwrap()),
        DavisYinSteps::default(),
    )
    .unwrap();
    assert!((s.lipschitz() - 3.0).abs() < 1e-12);
    let layer = OptLayer::new(s, ForwardOptions::new(100_000, 1e-15)).unwrap();
    let result = layer.forward(Mat::<f64>::zeros(0, 1).as_ref()).unwrap();
    assert_eq!(
        result.samples[0].status,
        Status::Converged,
        "{:?}",
        result.samples[0]
    );
    for i in 0..n {
        let minus_q = -linear[i];
        let shrunk = minus_q.signum() * (minus_q.abs() - mu).max(0.0);
        let expected = (shrunk / diagonal[i]).clamp(lower, upper);
        let error = (result.x[(i, 0)] - expected).abs();
        assert!(
            error < 1e-10,
            "entry {i}: {} against {expected}",
            result.x[(i, 0)]
        );
    }
}

// ---------------------------------------------------------------------------
// Step sizes and input validation
// ---------------------------------------------------------------------------

fn lasso_with(a: Mat<f64>, steps: DavisYinSteps) -> Result<DavisYin<f64>> {
    let n = a.ncols();
    let m = a.nrows();
    DavisYin::new(
        n,
        m,
        learnable_least_squares("a", a),
        Box::new(Zero),
        Box::new(L1Norm::new(0.1).unwrap()),
        steps,
    )
}

/// `A = diag(2, 1)`, so `L = 4` exactly.
fn diag_2_1() -> Mat<f64> {
    Mat::from_fn(2, 2, |i, j| {
        if i != j {
            0.0
        } else if i == 0 {
            2.0
        } else {
            1.0
        }
    })
}

#[test]
fn default_steps_use_inverse_lipschitz() {
    // L̂ comes from power iteration, accurate to about 1e-9 relative.
    let s = lasso_with(diag_2_1(), DavisYinSteps::default()).unwrap();
    assert!((s.lipschitz() - 4.0).abs() < 1e-7, "L = {}", s.lipschitz());
    assert_eq!(s.gamma(), 1.0 / s.lipschitz());
    assert!((s.gamma() - 0.25).abs() < 1e-8);
    assert_eq!(s.lambda(), 1.0);
    let sizes = s.step_sizes();
    assert_eq!(sizes[0], ("gamma".to_string(), s.gamma()));
    assert_eq!(sizes[1], ("lambda".to_string(), 1.0));
    assert_eq!(s.state_dim(), 4);
    assert_eq!(s.governing_rows(), 2..4);
}

#[test]
fn gamma_at_bound_is_rejected() {
    // γ L = 0.51 · 4 = 2.04.
    let steps = DavisYinSteps {
        gamma: GammaRule::Fixed { gamma: 0.51 },
        lambda: 0.5,
    };
    match lasso_with(diag_2_1(), steps) {
        Err(Error::StepCondition {
            condition,
            value,
            bound,
            ..
        }) => {
            assert_eq!(condition, "gamma * L < 2");
            assert!((value - 2.04).abs() < 1e-7, "gamma L = {value}");
            assert_eq!(bound, 2.0);
        }
        other => panic!("expected a step-condition error, got {other:?}"),
    }
    let steps = DavisYinSteps {
        gamma: GammaRule::Fixed { gamma: 0.49 },
        lambda: 0.5,
    };
    assert!(lasso_with(diag_2_1(), steps).is_ok());
}

#[test]
fn lambda_at_bound_is_rejected() {
    // γ L = 0.25 · 4 = 1, so λ < 2 − 1/2 = 1.5.
    let steps = |lambda| DavisYinSteps {
        gamma: GammaRule::Fixed { gamma: 0.25 },
        lambda,
    };
    match lasso_with(diag_2_1(), steps(1.51)) {
        Err(Error::StepCondition {
            condition,
            value,
            bound,
            ..
        }) => {
            assert_eq!(condition, "lambda < 2 - gamma * L / 2");
            assert_eq!(value, 1.51);
            assert!((bound - 1.5).abs() < 1e-8, "bound {bound}");
        }
        other => panic!("expected a step-condition error, got {other:?}"),
    }
    assert!(lasso_with(diag_2_1(), steps(1.49)).is_ok());
}

#[test]
fn invalid_step_values_are_rejected() {
    let cases = [
        ("gamma", GammaRule::Fixed { gamma: 0.0 }, 1.0),
        ("gamma", GammaRule::Fixed { gamma: -0.1 }, 1.0),
        ("gamma", GammaRule::Fixed { gamma: f64::NAN }, 1.0),
        ("gamma", GammaRule::Fixed { gamma: f64::INFINITY }, 1.0),
        ("lambda", GammaRule::default(), 0.0),
        ("lambda", GammaRule::default(), -1.0),
        ("lambda", GammaRule::default(), f64::NAN),
        (
            "gamma safety factor (gamma * L)",
            GammaRule::FromLipschitz { safety: 0.0 },
            1.0,
        ),
        (
            "gamma safety factor (gamma * L)",
            GammaRule::FromLipschitz { safety: 2.0 },
            0.5,
        ),
        (
            "gamma safety factor (gamma * L)",
            GammaRule::FromLipschitz { safety: f64::NAN },
            1.0,
        ),
    ];
    for (expected, gamma, lambda) in cases {
        match lasso_with(diag_2_1(), DavisYinSteps { gamma, lambda }) {
            Err(Error::InvalidParameter { name, .. }) => assert_eq!(name, expected, "{gamma:?}, {lambda}"),
            other => panic!("{gamma:?}, lambda {lambda}: expected an invalid-parameter error, got {other:?}"),
        }
    }
}

#[test]
fn douglas_rachford_step_conditions() {
    let make = |gamma, lambda| {
        DouglasRachford::<f64>::new(
            2,
            0,
            Box::new(Zero),
            Box::new(L1Norm::new(1.0).unwrap()),
            gamma,
            lambda,
        )
    };
    match make(1.0, 2.0) {
        Err(Error::StepCondition { condition, bound, .. }) => {
            assert_eq!(condition, "lambda < 2");
            assert_eq!(bound, 2.0);
        }
        other => panic!("expected a step-condition error, got {other:?}"),
    }
    for (gamma, lambda) in [
        (0.0, 1.0),
        (-1.0, 1.0),
        (f64::NAN, 1.0),
        (1.0, 0.0),
        (1.0, f64::NAN),
    ] {
        assert!(
            matches!(make(gamma, lambda), Err(Error::InvalidParameter { .. })),
            "gamma {gamma}, lambda {lambda}"
        );
    }
    let s = make(1e6, 1.99).unwrap();
    assert_eq!(s.gamma(), 1e6);
    assert_eq!(s.name(), "Douglas-Rachford splitting");
}

/// After a parameter update the default rule follows the new `L`, and a
/// fixed `γ` that breaks the condition is rejected and the update undone.
#[test]
fn parameter_update_refreshes_steps() {
    let mut s = lasso_with(diag_2_1(), DavisYinSteps::default()).unwrap();
    let doubled = diag_2_1() * 2.0;
    set_param(&mut s, "a", doubled.as_ref()).unwrap();
    assert!((s.lipschitz() - 16.0).abs() < 1e-6, "L = {}", s.lipschitz());
    assert_eq!(s.gamma(), 1.0 / s.lipschitz());

    let steps = DavisYinSteps {
        gamma: GammaRule::Fixed { gamma: 0.3 },
        lambda: 1.0,
    };
    let mut s = lasso_with(diag_2_1(), steps).unwrap();
    match set_param(&mut s, "a", doubled.as_ref()) {
        Err(Error::StepCondition { condition, value, .. }) => {
            assert_eq!(condition, "gamma * L < 2");
            assert!((value - 0.3 * 16.0).abs() < 1e-6, "gamma L = {value}");
        }
        other => panic!("expected a step-condition error, got {other:?}"),
    }
    assert_eq!(s.param(0), diag_2_1().as_ref());
    assert!((s.lipschitz() - 4.0).abs() < 1e-7, "L = {}", s.lipschitz());
    assert_eq!(s.gamma(), 0.3);
}

#[test]
fn parameters_are_listed_and_duplicates_rejected() {
    let s = DavisYin::new(
        2,
        2,
        learnable_least_squares("a", diag_2_1()),
        Box::new(L1Norm::learnable("mu", 0.1).unwrap()),
        Box::new(ShiftedSquare::new("center", &[0.0, 1.0])),
        DavisYinSteps::default(),
    )
    .unwrap();
    let names: Vec<String> = (0..s.param_count()).map(|i| s.param_info(i).name).collect();
    assert_eq!(names, ["a", "mu", "center"]);
    assert_eq!(s.param(2)[(1, 0)], 1.0);

    let duplicate = DavisYin::new(
        2,
        2,
        learnable_least_squares("mu", diag_2_1()),
        Box::new(Zero),
        Box::new(L1Norm::learnable("mu", 0.1).unwrap()),
        DavisYinSteps::default(),
    );
    match duplicate {
        Err(Error::DuplicateParameter { name }) => assert_eq!(name, "mu"),
        other => panic!("expected a duplicate-parameter error, got {other:?}"),
    }
    let duplicate = DouglasRachford::<f64>::new(
        2,
        0,
        Box::new(ShiftedSquare::new("c", &[0.0, 1.0])),
        Box::new(ShiftedSquare::new("c", &[1.0, 1.0])),
        1.0,
        1.0,
    );
    assert!(matches!(duplicate, Err(Error::DuplicateParameter { .. })));
}

#[test]
fn shape_mismatches_are_rejected() {
    // The smooth term lives on R², the primal dimension is 3.
    let result = DavisYin::new(
        3,
        2,
        least_squares(diag_2_1()),
        Box::new(Zero),
        Box::new(Zero),
        DavisYinSteps::default(),
    );
    assert!(matches!(result, Err(Error::ShapeMismatch { .. })), "{result:?}");

    // The least-squares term reads 2 data rows, the data has 1.
    let result = DavisYin::new(
        2,
        1,
        least_squares(diag_2_1()),
        Box::new(Zero),
        Box::new(Zero),
        DavisYinSteps::default(),
    );
    assert!(matches!(result, Err(Error::ShapeMismatch { .. })), "{result:?}");

    // A prox on R³ in a problem on R².
    let result = DouglasRachford::<f64>::new(
        2,
        0,
        Box::new(Zero),
        Box::new(ShiftedSquare::new("c", &[0.0, 1.0, 2.0])),
        1.0,
        1.0,
    );
    assert!(matches!(result, Err(Error::ShapeMismatch { .. })), "{result:?}");

    let result = DouglasRachford::<f64>::new(0, 0, Box::new(Zero), Box::new(Zero), 1.0, 1.0);
    assert!(matches!(result, Err(Error::Empty { .. })), "{result:?}");
}

#[test]
fn non_finite_lipschitz_estimate_is_rejected() {
    let smooth = Softplus {
        n: 2,
        weight: Mat::from_fn(1, 1, |_, _| f64::NAN),
    };
    let result = DavisYin::new(
        2,
        2,
        Box::new(smooth),
        Box::new(Zero),
        Box::new(Zero),
        DavisYinSteps::default(),
    );
    assert!(matches!(result, Err(Error::Numerical { .. })), "{result:?}");
}
