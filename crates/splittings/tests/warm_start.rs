//! Warm-start state of power-iteration norm estimates. A model that gets the
//! parameters and the warm-start state of a trained model repeats its next
//! update bit for bit. A state of the wrong count or shape is rejected
//! without a change.

use faer::Mat;
use optlayer_core::{Error, Parameterized, Scalar, Smooth};
use optlayer_ops::{
    Dense, IndicatorPoint, L1Norm, LearnableDense, LeastSquares, Normalization, SquaredL2, Zero,
};
use optlayer_splittings::{
    Acceleration, Block, CondatVu, LadmmSteps, LinearizedAdmm, PrimalDualSteps, ProximalGradient,
};
use optlayer_testing::random::gaussian;

fn cast<T: Scalar>(m: &Mat<f64>) -> Mat<T> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| T::lit(m[(i, j)]))
}

/// Returns a learnable matrix kept at unit spectral norm.
fn normalized<T: Scalar>(name: &str, nrows: usize, ncols: usize, seed: u64) -> LearnableDense<T> {
    LearnableDense::new(name, cast(&gaussian(nrows, ncols, seed)))
        .unwrap()
        .with_normalization(Normalization::unit_spectral_norm())
        .unwrap()
}

/// Applies update number `k`: adds a fixed perturbation to every parameter,
/// as an optimizer step would, then calls `after_param_update`.
fn update<T: Scalar, P: Parameterized<T>>(model: &mut P, k: usize) {
    for index in 0..model.param_count() {
        let mut param = model.param_mut(index);
        for j in 0..param.ncols() {
            for i in 0..param.nrows() {
                let step = ((3 * i + 5 * j + 7 * k) % 11) as f64 / 11.0 - 0.5;
                param[(i, j)] += T::lit(0.05 * step);
            }
        }
    }
    model.after_param_update().unwrap();
}

/// Copies the parameters of `from` into `to` without `after_param_update`.
fn copy_params<T: Scalar, P: Parameterized<T>>(from: &P, to: &mut P) {
    for index in 0..from.param_count() {
        to.param_mut(index).copy_from(from.param(index));
    }
}

fn params<T: Scalar, P: Parameterized<T>>(model: &P) -> Vec<Mat<T>> {
    (0..model.param_count())
        .map(|i| model.param(i).to_owned())
        .collect()
}

/// Trains `trained` for three updates, copies its parameters and warm-start
/// state into `restored`, applies a fourth update to both and asserts that
/// they agree bit for bit, in the parameters, the warm-start state and
/// `derived` (such as step sizes). `control` gets the parameters with an
/// `after_param_update` call but not the warm-start state, and must differ,
/// which shows that the state decides the result.
fn check_round_trip<T: Scalar, P: Parameterized<T>>(
    mut trained: P,
    mut restored: P,
    mut control: P,
    derived: impl Fn(&P) -> Vec<T>,
) {
    for k in 0..3 {
        update(&mut trained, k);
    }
    let state = trained.warm_start_state();
    assert!(!state.is_empty(), "the model has no warm-start state");
    assert!(
        state.iter().all(|m| m.nrows() > 0),
        "an estimate is still absent after three updates"
    );

    copy_params(&trained, &mut restored);
    restored.set_warm_start_state(&state).unwrap();
    assert_eq!(restored.warm_start_state(), state);
    assert_eq!(
        derived(&restored),
        derived(&trained),
        "derived values after the restore"
    );

    copy_params(&trained, &mut control);
    control.after_param_update().unwrap();

    for model in [&mut trained, &mut restored, &mut control] {
        update(model, 3);
    }
    assert_eq!(
        params(&restored),
        params(&trained),
        "parameters after the next update"
    );
    assert_eq!(
        restored.warm_start_state(),
        trained.warm_start_state(),
        "warm-start state after the next update"
    );
    assert_eq!(
        derived(&restored),
        derived(&trained),
        "derived values after the next update"
    );
    assert_ne!(
        control.warm_start_state(),
        trained.warm_start_state(),
        "a model without the restored state repeated the update too, so the check is vacuous"
    );
}

fn learnable_dense_round_trip<T: Scalar>() {
    let new = |seed| normalized::<T>("theta", 5, 4, seed);
    check_round_trip(new(1), new(2), new(3), |_| Vec::new());
}

#[test]
fn learnable_dense_round_trip_f64() {
    learnable_dense_round_trip::<f64>();
}

#[test]
fn learnable_dense_round_trip_f32() {
    learnable_dense_round_trip::<f32>();
}

fn least_squares_round_trip<T: Scalar>() {
    let new = |seed| {
        LeastSquares::new(LearnableDense::new("a", cast::<T>(&gaussian(6, 4, seed))).unwrap()).unwrap()
    };
    check_round_trip(new(1), new(2), new(3), |f: &LeastSquares<T>| {
        vec![f.lipschitz_estimate()]
    });
}

#[test]
fn least_squares_round_trip_f64() {
    least_squares_round_trip::<f64>();
}

#[test]
fn least_squares_round_trip_f32() {
    least_squares_round_trip::<f32>();
}

/// Builds `min ‖Θx‖₁ s.t. Ax = d` with Θ at unit spectral norm and a `β`
/// large enough that the default `StepRule::ShrinkBeta` lowers it.
fn sparse_inverse<T: Scalar>(seed: u64) -> LinearizedAdmm<T> {
    let (n, m) = (5, 3);
    let blocks = vec![
        Block::new(
            normalized::<T>("theta", 6, n, seed),
            L1Norm::new(T::one()).unwrap(),
        ),
        Block::new(
            Dense::new(cast(&gaussian(m, n, 100))).unwrap(),
            IndicatorPoint::from_data(0, m).unwrap(),
        ),
    ];
    let steps = LadmmSteps {
        alpha: 0.5,
        beta: 10.0,
        lambda: 1.0,
    };
    LinearizedAdmm::new(n, m, blocks, steps).unwrap()
}

fn linearized_admm_round_trip<T: Scalar>() {
    let derived = |s: &LinearizedAdmm<T>| vec![s.beta(), s.norm_estimate()];
    let trained = sparse_inverse::<T>(1);
    assert!(trained.beta() < T::lit(10.0), "the step rule did not lower beta");
    check_round_trip(trained, sparse_inverse(2), sparse_inverse(3), derived);
}

#[test]
fn linearized_admm_round_trip_f64() {
    linearized_admm_round_trip::<f64>();
}

#[test]
fn linearized_admm_round_trip_f32() {
    linearized_admm_round_trip::<f32>();
}

/// Builds `½‖Bx − c‖² + ‖x‖₁ + ¼‖Kx‖²` with `K` at unit spectral norm and
/// `B` learnable.
fn condat_vu<T: Scalar>(seed: u64) -> CondatVu<T> {
    let (n, m, p) = (4, 5, 3);
    let f =
        LeastSquares::new(LearnableDense::new("b", cast::<T>(&gaussian(p, n, seed + 10))).unwrap()).unwrap();
    CondatVu::with_smooth(
        p,
        Box::new(f),
        Box::new(normalized::<T>("k", m, n, seed)),
        Box::new(L1Norm::new(T::one()).unwrap()),
        Box::new(SquaredL2::new(T::lit(0.5)).unwrap()),
        PrimalDualSteps::default(),
    )
    .unwrap()
}

fn condat_vu_round_trip<T: Scalar>() {
    let derived = |s: &CondatVu<T>| vec![s.tau(), s.sigma(), s.norm_estimate(), s.lipschitz_estimate()];
    check_round_trip(condat_vu::<T>(1), condat_vu(2), condat_vu(3), derived);
}

#[test]
fn condat_vu_round_trip_f64() {
    condat_vu_round_trip::<f64>();
}

#[test]
fn condat_vu_round_trip_f32() {
    condat_vu_round_trip::<f32>();
}

/// Builds proximal gradient on `½‖Ax − d‖²` with `A` at unit spectral norm,
/// so that its step depends on the least-squares term's estimate.
fn proximal_gradient(seed: u64) -> ProximalGradient<f64> {
    let f = LeastSquares::new(normalized::<f64>("a", 6, 4, seed)).unwrap();
    ProximalGradient::new(f, Zero, 6, Acceleration::None).unwrap()
}

#[test]
fn proximal_gradient_forwards_state() {
    let derived = |s: &ProximalGradient<f64>| vec![s.gamma(), s.lipschitz_estimate()];
    let model = proximal_gradient(1);
    // The state of A (its vector), then of the least-squares term (vector
    // and estimate); the zero function has none.
    assert_eq!(model.warm_start_state().len(), 3);
    check_round_trip(model, proximal_gradient(2), proximal_gradient(3), derived);
}

/// Asserts that `set_warm_start_state(bad)` fails with a shape mismatch
/// whose message contains `expected`, and leaves the state unchanged.
fn assert_rejected<T: Scalar, P: Parameterized<T>>(model: &mut P, bad: &[Mat<T>], expected: &str) {
    let before = model.warm_start_state();
    let error = model.set_warm_start_state(bad).unwrap_err();
    assert!(matches!(error, Error::ShapeMismatch { .. }), "{error}");
    assert!(error.to_string().contains(expected), "{error}");
    assert_eq!(
        model.warm_start_state(),
        before,
        "a rejected state changed the model"
    );
}

#[test]
fn wrong_count_or_shape_is_rejected() {
    let mut theta = normalized::<f64>("theta", 5, 4, 1);
    assert_rejected(&mut theta, &[], "expected 1 matrices");
    assert_rejected(&mut theta, &[Mat::zeros(5, 1)], "expected 4 x 1, or 0 x 0");

    let mut plain = LearnableDense::new("plain", gaussian(2, 2, 1)).unwrap();
    assert!(plain.warm_start_state().is_empty());
    assert_rejected(&mut plain, &[Mat::zeros(0, 0)], "expected 0 matrices");

    let mut admm = sparse_inverse::<f64>(1);
    update(&mut admm, 0);
    let good = admm.warm_start_state();
    // Θ's vector, then LADMM's vector and estimate.
    assert_eq!(good.len(), 3);
    assert_rejected(&mut admm, &good[..2], "expected 3 matrices");
    let mut bad_estimate = good.clone();
    bad_estimate[2] = Mat::zeros(2, 1);
    assert_rejected(&mut admm, &bad_estimate, "expected 1 x 1");
    // LADMM's own entries are valid here, so Θ's block rejects its vector.
    let mut bad_theta = good.clone();
    bad_theta[0] = Mat::zeros(3, 1);
    assert_rejected(&mut admm, &bad_theta, "theta");

    let mut splitting = condat_vu::<f64>(1);
    let good = splitting.warm_start_state();
    // K's vector; B's none; the least-squares vector and estimate; the
    // splitting's vector and estimate.
    assert_eq!(good.len(), 5);
    let mut bad_smooth = good.clone();
    bad_smooth[1] = Mat::zeros(5, 1);
    assert_rejected(&mut splitting, &bad_smooth, "least-squares term");
}

#[test]
fn negative_estimate_is_rejected() {
    let mut admm = sparse_inverse::<f64>(1);
    let mut state = admm.warm_start_state();
    let before = state.clone();
    state[2][(0, 0)] = -1.0;
    let error = admm.set_warm_start_state(&state).unwrap_err();
    assert!(matches!(error, Error::InvalidParameter { .. }), "{error}");
    assert!(error.to_string().contains("||K||_2"), "{error}");
    assert_eq!(admm.warm_start_state(), before);
}

#[test]
fn absent_vector_round_trips() {
    // A state taken from a model whose estimates have not run encodes the
    // vector as 0 x 0; restoring it makes the next estimate start cold.
    let mut theta = normalized::<f64>("theta", 4, 3, 1);
    theta.set_warm_start_state(&[Mat::zeros(0, 0)]).unwrap();
    let state = theta.warm_start_state();
    assert_eq!((state[0].nrows(), state[0].ncols()), (0, 0));
    let mut cold = LearnableDense::new("theta", theta.matrix().to_owned()).unwrap();
    cold = cold
        .with_normalization(Normalization::unit_spectral_norm())
        .unwrap();
    theta.after_param_update().unwrap();
    assert_eq!(theta.warm_start_state(), cold.warm_start_state());
    assert_eq!(theta.matrix().to_owned(), cold.matrix().to_owned());
}

#[test]
fn rejected_step_restores_previous_state() {
    // With the fixed step γ = 0.5, a restored estimate L = 100 of the
    // least-squares term breaks γ L < 2, so the splitting rejects the state
    // after its terms took it, and must give them their previous state back.
    let mut model = proximal_gradient(1).with_step(0.5).unwrap();
    let before = model.warm_start_state();
    let (gamma, lipschitz) = (model.gamma(), model.lipschitz_estimate());
    let mut state = before.clone();
    state[2][(0, 0)] = 100.0;
    let error = model.set_warm_start_state(&state).unwrap_err();
    assert!(matches!(error, Error::StepCondition { .. }), "{error}");
    assert_eq!(model.warm_start_state(), before);
    assert_eq!(model.gamma(), gamma);
    assert_eq!(model.lipschitz_estimate(), lipschitz);
}
