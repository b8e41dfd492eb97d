//! The measurements of one splitting on one problem.

use std::time::Instant;

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::{Mat, MatRef, Par};
use optlayer::splittings::ProximalGradient;
use optlayer::{AndersonOptions, ForwardOptions, ForwardResult, OptLayer, Splitting};

use crate::counting::Counter;

/// Settings shared by every measurement of a problem.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The relative tolerance of the stopping rule `‖z⁺ − z‖ ≤ rtol ‖z⁺‖`.
    pub rtol: f64,
    /// The iteration limit per sample.
    pub max_iters: usize,
    /// Timed forward passes per scheme; the table reports their median.
    pub repeats: usize,
}

/// The inputs every splitting of one problem is measured on.
pub struct Case<'a> {
    /// The data batch, one sample per column.
    pub data: MatRef<'a, f64>,
    /// The data batch with noise added, whose fixed point starts the warm
    /// start on `data`.
    pub perturbed: MatRef<'a, f64>,
}

/// The measurements of one splitting on one problem.
#[derive(Clone, Debug)]
pub struct Measurement {
    pub scheme: String,
    /// Steps per sample of the cold forward pass.
    pub iterations: Vec<usize>,
    /// Samples of the cold forward pass that met the tolerance.
    pub converged: usize,
    /// Median wall time of the cold forward pass on the whole batch, set by
    /// [`Measurements::finish`].
    pub seconds: f64,
    /// Products with a problem matrix per step of one sample.
    pub products_per_step: f64,
    /// Prox evaluations per step of one sample.
    pub proxes_per_step: f64,
    /// Relative fixed-point residual after each step, for sample 0.
    pub history: Vec<f64>,
    /// The result `x` of the cold forward pass.
    pub x: Mat<f64>,
    /// `max_j ‖x_j − x_ref,j‖ / ‖x_ref,j‖` over the batch, when a reference exists.
    pub distance: Option<f64>,
    /// The warm start from the fixed point of the perturbed batch.
    pub warm: WarmStart,
    /// For FISTA, the warm start with the momentum counter reset to `t = 1`.
    pub restarted_warm: Option<WarmStart>,
    /// The cold forward pass with Anderson acceleration (default options).
    pub anderson: WarmStart,
}

/// The outcome of a forward pass started from another batch's fixed point.
#[derive(Clone, Debug)]
pub struct WarmStart {
    /// Steps per sample.
    pub iterations: Vec<usize>,
    /// Samples that met the tolerance.
    pub converged: usize,
}

impl WarmStart {
    fn from_result(result: &ForwardResult<f64>) -> Self {
        Self {
            iterations: iterations(result),
            converged: result.converged_count(),
        }
    }
}

/// A forward pass of one scheme on the data batch that returns its wall
/// time in seconds.
pub type Timer<'a> = Box<dyn Fn() -> f64 + 'a>;

/// The measurements of several schemes on one problem, with the timers
/// whose runs [`finish`](Self::finish) interleaves.
#[derive(Default)]
pub struct Measurements<'a> {
    rows: Vec<Measurement>,
    timers: Vec<Timer<'a>>,
}

impl<'a> Measurements<'a> {
    /// Adds the measurement of one scheme and its timer.
    pub fn add(&mut self, (row, timer): (Measurement, Timer<'a>)) {
        self.rows.push(row);
        self.timers.push(timer);
    }

    /// Times `repeats` rounds, each running every scheme's forward pass
    /// once, and sets each scheme's time to its median over the rounds.
    ///
    /// Interleaving the schemes spreads a burst of load from other
    /// processes over all of them, instead of slowing down the runs of one.
    pub fn finish(mut self, repeats: usize) -> Vec<Measurement> {
        let mut times = vec![Vec::with_capacity(repeats); self.timers.len()];
        for _ in 0..repeats.max(1) {
            for (timer, samples) in self.timers.iter().zip(times.iter_mut()) {
                samples.push(timer());
            }
        }
        for (row, samples) in self.rows.iter_mut().zip(times.iter_mut()) {
            row.seconds = median(samples);
        }
        self.rows
    }
}

/// Measures `splitting`, whose counted terms report to `counter`, on `case`,
/// and returns the measurement with a timer of its forward pass, which
/// [`Measurements::finish`] runs.
pub fn measure<'a, S: Splitting<Real = f64> + 'a>(
    scheme: &str,
    splitting: S,
    counter: &Counter,
    case: &Case<'a>,
    settings: &Settings,
) -> (Measurement, Timer<'a>) {
    eprintln!("  measuring {scheme}");
    let options = ForwardOptions::new(settings.max_iters, settings.rtol);
    let layer = OptLayer::new(splitting, options.clone()).expect("the settings are valid");

    let first_sample = case.data.subcols(0, 1);
    counter.reset();
    let history = residual_history(layer.splitting(), first_sample, settings);
    let counts = counter.read();
    let steps = history.len().max(1) as f64;

    let cold = layer
        .forward(case.data)
        .expect("the data batch fits the splitting");
    if cold.samples[0].iterations != history.len() {
        // Batch products round differently from single-column ones, so the
        // two runs of sample 0 can stop a few steps apart.
        eprintln!(
            "  note: {scheme}: sample 0 took {} steps in the batch and {} alone",
            cold.samples[0].iterations,
            history.len()
        );
    }

    let perturbed = layer
        .forward(case.perturbed)
        .expect("the perturbed batch fits the splitting");
    let warm = layer
        .forward_from(case.data, perturbed.state.as_ref(), &options)
        .expect("the fixed point of the perturbed batch is a valid state");

    let accelerated = layer
        .forward_with(
            case.data,
            &options.clone().with_anderson(AndersonOptions::default()),
        )
        .expect("the data batch fits the splitting");

    let row = Measurement {
        scheme: scheme.to_string(),
        iterations: iterations(&cold),
        converged: cold.converged_count(),
        seconds: f64::NAN,
        products_per_step: counts.products as f64 / steps,
        proxes_per_step: counts.proxes as f64 / steps,
        history,
        x: cold.x,
        distance: None,
        warm: WarmStart::from_result(&warm),
        restarted_warm: None,
        anderson: WarmStart::from_result(&accelerated),
    };
    let data = case.data;
    let timer = Box::new(move || {
        let start = Instant::now();
        let result = layer.forward(data).expect("the data batch fits the splitting");
        let seconds = start.elapsed().as_secs_f64();
        drop(result);
        seconds
    });
    (row, timer)
}

/// Returns the FISTA warm start from the fixed point of the perturbed batch
/// with the momentum counter `t` of every sample reset to 1.
///
/// FISTA's state carries `t`, which grows with every step, so a state taken
/// from a converged run starts with momentum `(t − 1)/t⁺` close to 1. With
/// `t = 1` the first step has no momentum, as after a restart.
pub fn fista_restarted_warm_start(
    splitting: ProximalGradient<f64>,
    case: &Case<'_>,
    settings: &Settings,
) -> WarmStart {
    let options = ForwardOptions::new(settings.max_iters, settings.rtol);
    let counter_row = splitting
        .counter_row()
        .expect("the splitting is accelerated, so its state has a counter row");
    let layer = OptLayer::new(splitting, options.clone()).expect("the settings are valid");
    let perturbed = layer
        .forward(case.perturbed)
        .expect("the perturbed batch fits the splitting");
    let mut state = perturbed.state;
    for j in 0..state.ncols() {
        state[(counter_row, j)] = 1.0;
    }
    let warm = layer
        .forward_from(case.data, state.as_ref(), &options)
        .expect("the reset state is finite");
    WarmStart::from_result(&warm)
}

/// Iterates one sample from the splitting's initial state with the layer's
/// stopping rule and returns the relative residual `‖z⁺ − z‖/‖z⁺‖` of every
/// step, as measured by [`Splitting::fixed_point_residual`].
pub fn residual_history<S: Splitting<Real = f64>>(
    splitting: &S,
    sample: MatRef<'_, f64>,
    settings: &Settings,
) -> Vec<f64> {
    let mut z = Mat::zeros(splitting.state_dim(), 1);
    let mut z_next = Mat::zeros(splitting.state_dim(), 1);
    splitting.init(z.as_mut(), sample);
    let mut buffer = MemBuffer::new(splitting.step_scratch(1, Par::Seq));
    let stack = MemStack::new(&mut buffer);
    let mut history = Vec::new();
    for _ in 0..settings.max_iters {
        splitting.step(z_next.as_mut(), z.as_ref(), sample, Par::Seq, stack);
        let (residual, scale) = splitting.fixed_point_residual(z_next.as_ref(), z.as_ref(), 0);
        let relative = if scale > 0.0 {
            residual / scale
        } else if residual == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        history.push(relative);
        std::mem::swap(&mut z, &mut z_next);
        if !(residual.is_finite() && scale.is_finite()) || residual <= settings.rtol * scale {
            break;
        }
    }
    history
}

fn iterations(result: &ForwardResult<f64>) -> Vec<usize> {
    result.samples.iter().map(|s| s.iterations).collect()
}

/// Returns `max_j ‖x_j − r_j‖ / ‖r_j‖`.
pub fn relative_distance(x: MatRef<'_, f64>, reference: MatRef<'_, f64>) -> f64 {
    (0..x.ncols())
        .map(|j| {
            let difference = x.col(j) - reference.col(j);
            difference.norm_l2() / reference.col(j).norm_l2().max(f64::MIN_POSITIVE)
        })
        .fold(0.0, f64::max)
}

/// Returns the median, sorting `values`.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}
