//! The Adam optimizer with weight decay.

use faer::Mat;
use optlayer_core::validate::{check_finite, check_nonnegative, check_positive};
use optlayer_core::{
    Error, Gradients, Parameterized, Result, Scalar, check_gradients, check_grads_shape, restore_params,
    snapshot_params,
};

/// Settings of [`Adam`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub learning_rate: f64,
    /// Decay rate of the first-moment estimate.
    pub beta1: f64,
    /// Decay rate of the second-moment estimate.
    pub beta2: f64,
    /// Added to the square root of the second moment.
    pub eps: f64,
    /// Weight decay coefficient.
    pub weight_decay: f64,
    /// With `false`, weight decay adds `weight_decay · Θ` to the gradient before
    /// the moment estimates (the `weight_decay` of PyTorch's `torch.optim.Adam`).
    /// With `true`, it is applied to Θ directly, as in AdamW.
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        }
    }
}

impl AdamConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the setting.
    pub fn validate(&self) -> Result<()> {
        check_positive("learning rate", self.learning_rate)?;
        check_positive("eps", self.eps)?;
        check_nonnegative("weight decay", self.weight_decay)?;
        for (name, value) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&value) {
                return Err(Error::InvalidParameter {
                    name: name.into(),
                    value,
                    requirement: "must be in [0, 1)".into(),
                });
            }
        }
        Ok(())
    }
}

/// The state of an [`Adam`] optimizer: everything its next steps depend on.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamState<T: Scalar> {
    /// The settings, including a learning rate changed by a schedule.
    pub config: AdamConfig,
    /// Steps taken, which set the bias corrections.
    pub steps: u64,
    /// First-moment estimates, one per parameter in the model's order.
    pub first_moment: Vec<Mat<T>>,
    /// Second-moment estimates, one per parameter in the model's order.
    pub second_moment: Vec<Mat<T>>,
}

/// Returns the position and value of the first negative entry of `m`.
fn first_negative<T: Scalar>(m: &Mat<T>) -> Option<(usize, usize, f64)> {
    for col in 0..m.ncols() {
        for row in 0..m.nrows() {
            if m[(row, col)] < T::zero() {
                return Some((row, col, m[(row, col)].to_f64_lossless()));
            }
        }
    }
    None
}

/// Adam (Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR
/// 2015) with bias correction and optional weight decay.
#[derive(Clone, Debug)]
pub struct Adam<T: Scalar> {
    config: AdamConfig,
    first_moment: Vec<Mat<T>>,
    second_moment: Vec<Mat<T>>,
    steps: u64,
}

impl<T: Scalar> Adam<T> {
    /// Creates the optimizer for the parameters of `model`.
    ///
    /// # Errors
    /// When `config` is invalid.
    pub fn new<P: Parameterized<T> + ?Sized>(config: AdamConfig, model: &P) -> Result<Self> {
        config.validate()?;
        let zeros = || -> Vec<Mat<T>> {
            (0..model.param_count())
                .map(|i| model.param_info(i))
                .map(|p| Mat::zeros(p.nrows, p.ncols))
                .collect()
        };
        Ok(Self {
            config,
            first_moment: zeros(),
            second_moment: zeros(),
            steps: 0,
        })
    }

    /// Returns the settings.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// Returns the number of steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Sets the learning rate, for schedules.
    ///
    /// # Errors
    /// When `learning_rate` is not positive and finite.
    pub fn set_learning_rate(&mut self, learning_rate: f64) -> Result<()> {
        check_positive("learning rate", learning_rate)?;
        self.config.learning_rate = learning_rate;
        Ok(())
    }

    /// Returns a copy of the optimizer's state, for checkpoints.
    pub fn state(&self) -> AdamState<T> {
        AdamState {
            config: self.config,
            steps: self.steps,
            first_moment: self.first_moment.clone(),
            second_moment: self.second_moment.clone(),
        }
    }

    /// Creates the optimizer from a state returned by [`state`](Self::state),
    /// so that its next step equals the next step of the optimizer it was
    /// taken from, bit for bit.
    ///
    /// # Errors
    /// - [`Error::InvalidParameter`] when the settings are invalid or a
    ///   second-moment entry is negative;
    /// - [`Error::ShapeMismatch`] when the moments are not one matrix per
    ///   parameter of `model` with the parameter's shape;
    /// - [`Error::NonFiniteInput`] when a moment has a NaN or infinite entry.
    pub fn from_state<P: Parameterized<T> + ?Sized>(state: AdamState<T>, model: &P) -> Result<Self> {
        state.config.validate()?;
        for (what, moments) in [("first", &state.first_moment), ("second", &state.second_moment)] {
            if let Err(error) = check_grads_shape(model, moments) {
                return Err(Error::ShapeMismatch {
                    what: format!("Adam {what} moments"),
                    expected: "one matrix per parameter of the model, of the parameter's shape".into(),
                    found: format!(
                        "moments that do not fit ({error}); restore the state with the model it was taken from"
                    ),
                });
            }
        }
        for (index, (m, v)) in state.first_moment.iter().zip(&state.second_moment).enumerate() {
            let name = model.param_info(index).name;
            check_finite(&format!("Adam first moment of '{name}'"), m.as_ref())?;
            check_finite(&format!("Adam second moment of '{name}'"), v.as_ref())?;
            if let Some((row, col, value)) = first_negative(v) {
                return Err(Error::InvalidParameter {
                    name: format!("Adam second moment of '{name}' at ({row}, {col})"),
                    value,
                    requirement: "must not be negative, because it averages squared gradients".into(),
                });
            }
        }
        Ok(Self {
            config: state.config,
            first_moment: state.first_moment,
            second_moment: state.second_moment,
            steps: state.steps,
        })
    }

    /// Updates the parameters of `model` with `grads` and calls
    /// [`Parameterized::after_param_update`].
    ///
    /// # Errors
    /// When the gradients or the optimizer's moments do not match the
    /// model's parameters, a gradient entry is not finite, or
    /// `after_param_update` rejects the new values (for example a parameter
    /// that overflowed). On error the parameters, the moments and the step
    /// count are left unchanged.
    pub fn step<P: Parameterized<T> + ?Sized>(&mut self, model: &mut P, grads: &Gradients<T>) -> Result<()> {
        check_gradients(model, grads)?;
        if check_grads_shape(model, &self.first_moment).is_err() {
            return Err(Error::ShapeMismatch {
                what: "Adam moments".into(),
                expected: "one matrix per parameter of the model, of the parameter's shape".into(),
                found: "moments of another model; create the optimizer with this model".into(),
            });
        }
        grads.check_finite()?;

        let params_before = snapshot_params(model);
        let moments_before = (self.first_moment.clone(), self.second_moment.clone(), self.steps);
        self.update(model, grads);
        if let Err(error) = model.after_param_update() {
            restore_params(model, &params_before)?;
            (self.first_moment, self.second_moment, self.steps) = moments_before;
            return Err(error);
        }
        Ok(())
    }

    /// Applies one Adam update to the parameters, without checks.
    fn update<P: Parameterized<T> + ?Sized>(&mut self, model: &mut P, grads: &Gradients<T>) {
        self.steps += 1;
        let c = &self.config;
        let lr = T::lit(c.learning_rate);
        let (beta1, beta2) = (T::lit(c.beta1), T::lit(c.beta2));
        let eps = T::lit(c.eps);
        let decay = T::lit(c.weight_decay);
        let correction1 = T::one() - beta1.powi(self.steps.min(i32::MAX as u64) as i32);
        let correction2 = T::one() - beta2.powi(self.steps.min(i32::MAX as u64) as i32);
        let step_size = lr / correction1;
        let correction2_sqrt = correction2.sqrt();

        let rule = EntryRule {
            lr,
            beta1,
            beta2,
            eps,
            decay,
            decoupled: c.decoupled_weight_decay,
            step_size,
            correction2_sqrt,
        };
        for (index, grad) in grads.tensors().iter().enumerate() {
            let mut param = model.param_mut(index);
            let m = &mut self.first_moment[index];
            let v = &mut self.second_moment[index];
            for col in 0..grad.ncols() {
                let columns = (
                    grad.col(col).try_as_col_major(),
                    param.as_mut().col_mut(col).try_as_col_major_mut(),
                    m.col_mut(col).try_as_col_major_mut(),
                    v.col_mut(col).try_as_col_major_mut(),
                );
                if let (Some(g), Some(p), Some(m), Some(v)) = columns {
                    // Contiguous columns: a loop over slices, which the
                    // compiler vectorizes.
                    let entries = g
                        .as_slice()
                        .iter()
                        .zip(p.as_slice_mut())
                        .zip(m.as_slice_mut())
                        .zip(v.as_slice_mut());
                    for (((&g, p), m), v) in entries {
                        (*p, *m, *v) = rule.apply(g, *p, *m, *v);
                    }
                } else {
                    for row in 0..grad.nrows() {
                        let (p, m_new, v_new) =
                            rule.apply(grad[(row, col)], param[(row, col)], m[(row, col)], v[(row, col)]);
                        param[(row, col)] = p;
                        m[(row, col)] = m_new;
                        v[(row, col)] = v_new;
                    }
                }
            }
        }
    }
}

/// The constants of one Adam update.
#[derive(Clone, Copy)]
struct EntryRule<T> {
    lr: T,
    beta1: T,
    beta2: T,
    eps: T,
    decay: T,
    decoupled: bool,
    step_size: T,
    correction2_sqrt: T,
}

impl<T: Scalar> EntryRule<T> {
    /// Returns the new parameter entry and moments from the gradient `g`,
    /// the parameter entry `theta` and the moments `m` and `v`.
    #[inline(always)]
    fn apply(&self, mut g: T, theta: T, m: T, v: T) -> (T, T, T) {
        let mut theta = theta;
        if self.decoupled {
            theta = theta - self.lr * self.decay * theta;
        } else {
            g += self.decay * theta;
        }
        let m_new = self.beta1 * m + (T::one() - self.beta1) * g;
        let v_new = self.beta2 * v + (T::one() - self.beta2) * g * g;
        let denom = v_new.sqrt() / self.correction2_sqrt + self.eps;
        (theta - self.step_size * m_new / denom, m_new, v_new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::{MatMut, MatRef};
    use optlayer_core::ParamInfo;

    struct Quadratic {
        w: Mat<f64>,
    }

    impl Parameterized<f64> for Quadratic {
        fn param_count(&self) -> usize {
            1
        }
        fn param_info(&self, _: usize) -> ParamInfo {
            ParamInfo {
                name: "w".into(),
                nrows: self.w.nrows(),
                ncols: self.w.ncols(),
            }
        }
        fn param(&self, _: usize) -> MatRef<'_, f64> {
            self.w.as_ref()
        }
        fn param_mut(&mut self, _: usize) -> MatMut<'_, f64> {
            self.w.as_mut()
        }
    }

    /// A parameter stored row-major, so that its columns are strided.
    struct Transposed {
        w: Mat<f64>,
    }

    impl Parameterized<f64> for Transposed {
        fn param_count(&self) -> usize {
            1
        }
        fn param_info(&self, _: usize) -> ParamInfo {
            ParamInfo {
                name: "w".into(),
                nrows: self.w.ncols(),
                ncols: self.w.nrows(),
            }
        }
        fn param(&self, _: usize) -> MatRef<'_, f64> {
            self.w.as_ref().transpose()
        }
        fn param_mut(&mut self, _: usize) -> MatMut<'_, f64> {
            self.w.as_mut().transpose_mut()
        }
    }

    /// Adam written out entry by entry, as PyTorch documents it.
    fn reference_steps(config: &AdamConfig, theta: f64, grads: &[f64]) -> f64 {
        let (mut theta, mut m, mut v) = (theta, 0.0, 0.0);
        for (t, &g) in grads.iter().enumerate() {
            let t = (t + 1) as i32;
            let mut g = g;
            if config.decoupled_weight_decay {
                theta -= config.learning_rate * config.weight_decay * theta;
            } else {
                g += config.weight_decay * theta;
            }
            m = config.beta1 * m + (1.0 - config.beta1) * g;
            v = config.beta2 * v + (1.0 - config.beta2) * g * g;
            let m_hat = m / (1.0 - config.beta1.powi(t));
            let v_hat = v / (1.0 - config.beta2.powi(t));
            theta -= config.learning_rate * m_hat / (v_hat.sqrt() + config.eps);
        }
        theta
    }

    #[test]
    fn contiguous_and_strided_parameters_follow_the_reference() {
        let (rows, cols, steps) = (5, 3, 4);
        let start = |i: usize, j: usize| 0.3 * i as f64 - 0.2 * j as f64 + 0.1;
        let grad = |t: usize, i: usize, j: usize| ((t * 7 + i * 3 + j * 5) % 11) as f64 - 5.0;
        for decoupled in [false, true] {
            let config = AdamConfig {
                learning_rate: 0.01,
                weight_decay: 0.1,
                decoupled_weight_decay: decoupled,
                ..AdamConfig::default()
            };
            let mut plain = Quadratic {
                w: Mat::from_fn(rows, cols, start),
            };
            let mut strided = Transposed {
                w: Mat::from_fn(cols, rows, |j, i| start(i, j)),
            };
            let mut adam_plain = Adam::new(config, &plain).unwrap();
            let mut adam_strided = Adam::new(config, &strided).unwrap();
            let mut grads = Gradients::zeros_for(&plain);
            for t in 0..steps {
                grads.tensors_mut()[0] = Mat::from_fn(rows, cols, |i, j| grad(t, i, j));
                adam_plain.step(&mut plain, &grads).unwrap();
                adam_strided.step(&mut strided, &grads).unwrap();
            }
            for i in 0..rows {
                for j in 0..cols {
                    let history: Vec<f64> = (0..steps).map(|t| grad(t, i, j)).collect();
                    let expected = reference_steps(&config, start(i, j), &history);
                    let found = plain.w[(i, j)];
                    assert!(
                        (found - expected).abs() <= 1e-14,
                        "({i}, {j}), decoupled {decoupled}: {found} against {expected}"
                    );
                    assert_eq!(
                        found.to_bits(),
                        strided.w[(j, i)].to_bits(),
                        "({i}, {j}), decoupled {decoupled}"
                    );
                }
            }
        }
    }

    #[test]
    fn first_step_moves_by_learning_rate() {
        // With bias correction the first Adam step is lr · sign(g) (up to eps).
        let mut model = Quadratic {
            w: Mat::from_fn(2, 1, |i, _| i as f64),
        };
        let config = AdamConfig {
            learning_rate: 0.1,
            ..AdamConfig::default()
        };
        let mut adam = Adam::new(config, &model).unwrap();
        let mut grads = Gradients::zeros_for(&model);
        grads.tensors_mut()[0][(0, 0)] = 3.0;
        grads.tensors_mut()[0][(1, 0)] = -0.5;
        adam.step(&mut model, &grads).unwrap();
        assert!((model.w[(0, 0)] - (0.0 - 0.1)).abs() < 1e-7);
        assert!((model.w[(1, 0)] - (1.0 + 0.1)).abs() < 1e-7);
    }

    #[test]
    fn minimizes_a_quadratic() {
        // f(w) = ½‖w − c‖², gradient w − c.
        let c = [2.0, -3.0];
        let mut model = Quadratic { w: Mat::zeros(2, 1) };
        let config = AdamConfig {
            learning_rate: 0.05,
            ..AdamConfig::default()
        };
        let mut adam = Adam::new(config, &model).unwrap();
        let mut grads = Gradients::zeros_for(&model);
        for _ in 0..2000 {
            for (i, target) in c.iter().enumerate() {
                grads.tensors_mut()[0][(i, 0)] = model.w[(i, 0)] - target;
            }
            adam.step(&mut model, &grads).unwrap();
        }
        assert!((model.w[(0, 0)] - c[0]).abs() < 1e-3);
        assert!((model.w[(1, 0)] - c[1]).abs() < 1e-3);
    }

    #[test]
    fn coupled_weight_decay_enters_the_gradient() {
        // A zero gradient with weight decay 1 acts as gradient w: the first step is −lr·sign(w).
        let mut model = Quadratic {
            w: Mat::from_fn(2, 1, |i, _| 1.0 + i as f64),
        };
        let config = AdamConfig {
            learning_rate: 0.1,
            weight_decay: 1.0,
            ..AdamConfig::default()
        };
        let mut adam = Adam::new(config, &model).unwrap();
        let grads = Gradients::zeros_for(&model);
        adam.step(&mut model, &grads).unwrap();
        assert!((model.w[(0, 0)] - 0.9).abs() < 1e-7);
        assert!((model.w[(1, 0)] - 1.9).abs() < 1e-7);
    }

    #[test]
    fn non_finite_gradient_rejected_without_update() {
        let mut model = Quadratic { w: Mat::zeros(2, 1) };
        let mut adam = Adam::new(AdamConfig::default(), &model).unwrap();
        let mut grads = Gradients::zeros_for(&model);
        grads.tensors_mut()[0][(1, 0)] = f64::NAN;
        let err = adam.step(&mut model, &grads).unwrap_err();
        assert!(
            matches!(err, Error::NonFiniteGradient { ref param, row: 1, .. } if param == "w"),
            "{err}"
        );
        assert_eq!(model.w[(1, 0)], 0.0);
        assert_eq!(adam.steps(), 0);
    }

    /// A model whose update hook rejects values above a limit.
    struct Bounded {
        w: Mat<f64>,
        limit: f64,
    }

    impl Parameterized<f64> for Bounded {
        fn param_count(&self) -> usize {
            1
        }
        fn param_info(&self, _: usize) -> ParamInfo {
            ParamInfo {
                name: "w".into(),
                nrows: 2,
                ncols: 1,
            }
        }
        fn param(&self, _: usize) -> MatRef<'_, f64> {
            self.w.as_ref()
        }
        fn param_mut(&mut self, _: usize) -> MatMut<'_, f64> {
            self.w.as_mut()
        }
        fn after_param_update(&mut self) -> optlayer_core::Result<()> {
            if self.w.norm_max() > self.limit {
                return Err(Error::InvalidParameter {
                    name: "w".into(),
                    value: self.w.norm_max(),
                    requirement: "too large".into(),
                });
            }
            Ok(())
        }
    }

    #[test]
    fn rejected_update_leaves_state_unchanged() {
        let mut model = Bounded {
            w: Mat::zeros(2, 1),
            limit: 0.15,
        };
        let config = AdamConfig {
            learning_rate: 0.1,
            ..AdamConfig::default()
        };
        let mut adam = Adam::new(config, &model).unwrap();
        let mut grads = Gradients::zeros_for(&model);
        grads.tensors_mut()[0][(0, 0)] = 1.0;
        adam.step(&mut model, &grads).unwrap();
        let after_first = model.w.clone();
        let moments = adam.first_moment.clone();
        // The second step would move w to -0.2, beyond the limit.
        assert!(adam.step(&mut model, &grads).is_err());
        assert_eq!(model.w, after_first);
        assert_eq!(adam.first_moment, moments);
        assert_eq!(adam.steps(), 1);
    }

    #[test]
    fn mismatched_shapes_rejected() {
        let mut model = Quadratic { w: Mat::zeros(2, 1) };
        let mut adam = Adam::new(AdamConfig::default(), &model).unwrap();
        let mut wrong = Gradients::zeros_for(&model);
        wrong.tensors_mut()[0] = Mat::zeros(3, 1);
        let error = adam.step(&mut model, &wrong).unwrap_err();
        assert!(error.to_string().contains("2 x 1"), "{error}");
        assert!(error.to_string().contains("3 x 1"), "{error}");

        let mut larger = Quadratic { w: Mat::zeros(3, 1) };
        let grads = Gradients::zeros_for(&larger);
        let error = adam.step(&mut larger, &grads).unwrap_err();
        assert!(error.to_string().contains("Adam moments"), "{error}");
        assert_eq!(larger.w, Mat::<f64>::zeros(3, 1));
    }

    #[test]
    fn state_round_trip_is_exact() {
        let mut model = Quadratic {
            w: Mat::from_fn(2, 1, |i, _| 0.3 - i as f64),
        };
        let config = AdamConfig {
            learning_rate: 0.07,
            weight_decay: 0.01,
            ..AdamConfig::default()
        };
        let mut adam = Adam::new(config, &model).unwrap();
        let mut grads = Gradients::zeros_for(&model);
        let set_grads = |grads: &mut Gradients<f64>, w: &Mat<f64>| {
            grads.tensors_mut()[0][(0, 0)] = w[(0, 0)] - 2.0;
            grads.tensors_mut()[0][(1, 0)] = 3.0 * w[(1, 0)] + 1.0 / 3.0;
        };
        for _ in 0..5 {
            set_grads(&mut grads, &model.w);
            adam.step(&mut model, &grads).unwrap();
        }
        let state = adam.state();
        assert_eq!(state.steps, 5);
        let mut restored = Adam::from_state(state.clone(), &model).unwrap();
        assert_eq!(restored.state(), state);

        let mut copy = Quadratic { w: model.w.clone() };
        for _ in 0..5 {
            set_grads(&mut grads, &model.w);
            adam.step(&mut model, &grads).unwrap();
            set_grads(&mut grads, &copy.w);
            restored.step(&mut copy, &grads).unwrap();
        }
        assert_eq!(copy.w[(0, 0)].to_bits(), model.w[(0, 0)].to_bits());
        assert_eq!(copy.w[(1, 0)].to_bits(), model.w[(1, 0)].to_bits());
        assert_eq!(restored.state(), adam.state());
    }

    #[test]
    fn invalid_state_rejected() {
        let model = Quadratic { w: Mat::zeros(2, 1) };
        let state = Adam::new(AdamConfig::default(), &model).unwrap().state();

        let mut wrong_shape = state.clone();
        wrong_shape.first_moment[0] = Mat::zeros(3, 1);
        let error = Adam::from_state(wrong_shape, &model).unwrap_err();
        assert!(matches!(error, Error::ShapeMismatch { .. }), "{error}");
        assert!(error.to_string().contains("first moments"), "{error}");

        let mut negative = state.clone();
        negative.second_moment[0][(1, 0)] = -1e-3;
        let error = Adam::from_state(negative, &model).unwrap_err();
        assert!(matches!(error, Error::InvalidParameter { .. }), "{error}");
        assert!(error.to_string().contains("(1, 0)"), "{error}");

        let mut not_finite = state.clone();
        not_finite.first_moment[0][(0, 0)] = f64::INFINITY;
        let error = Adam::from_state(not_finite, &model).unwrap_err();
        assert!(matches!(error, Error::NonFiniteInput { .. }), "{error}");

        let mut bad_config = state;
        bad_config.config.beta2 = 1.0;
        let error = Adam::from_state(bad_config, &model).unwrap_err();
        assert!(
            matches!(error, Error::InvalidParameter { ref name, .. } if name == "beta2"),
            "{error}"
        );
    }

    #[test]
    fn invalid_config_rejected() {
        let model = Quadratic { w: Mat::zeros(2, 1) };
        for config in [
            AdamConfig {
                learning_rate: 0.0,
                ..AdamConfig::default()
            },
            AdamConfig {
                learning_rate: f64::NAN,
                ..AdamConfig::default()
            },
            AdamConfig {
                beta1: 1.0,
                ..AdamConfig::default()
            },
            AdamConfig {
                weight_decay: -1.0,
                ..AdamConfig::default()
            },
        ] {
            assert!(matches!(
                Adam::<f64>::new(config, &model),
                Err(Error::InvalidParameter { .. })
            ));
        }
    }
}
