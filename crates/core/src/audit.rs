//! A gradient audit: every gradient mode against central finite differences
//! of the forward map, on one batch.

use std::time::Instant;

use faer::{Mat, MatMut, MatRef};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use crate::{Error, GradientMode, Gradients, OptLayer, Parameterized, Result, Scalar, Splitting};

/// Settings of [`OptLayer::audit_gradients`].
#[derive(Clone, Debug, PartialEq)]
pub struct AuditOptions {
    /// The modes to audit.
    pub modes: Vec<GradientMode>,
    /// Finite-difference step, relative to the Euclidean norm of all
    /// parameters, or absolute when that norm is below 1. `None` uses the cube
    /// root of the machine epsilon of the scalar type, about 6e-6 in `f64`
    /// and 5e-3 in `f32`, which balances truncation and rounding error.
    pub eps: Option<f64>,
    /// Largest parameter count for which the reference is the full
    /// finite-difference gradient; above it, the gradients are compared on
    /// `probes` random directions.
    pub full_max_entries: usize,
    /// Number of random directions when the full gradient is too expensive.
    pub probes: usize,
    /// Seed of the random directions.
    pub seed: u64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            modes: vec![GradientMode::Jfb],
            eps: None,
            full_max_entries: 2_000,
            probes: 8,
            seed: 0,
        }
    }
}

/// One audited mode.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRow {
    /// The mode's label.
    pub mode: String,
    /// `‖g − g_fd‖ / ‖g_fd‖`, on the compared coordinates.
    pub relative_error: f64,
    /// Cosine of the angle between `g` and `g_fd`, on the compared coordinates.
    pub cosine: f64,
    /// The finite-difference derivative of the loss along `g/‖g‖`; positive
    /// means that a small step along `−g` lowers the loss.
    pub directional_derivative: f64,
    /// Whether `−g` is a descent direction (`directional_derivative` finite
    /// and positive).
    pub descent: bool,
    /// Wall time of the gradient, in seconds.
    pub seconds: f64,
    /// The error message when the mode failed on this batch.
    pub error: Option<String>,
}

/// The result of a gradient audit.
#[derive(Clone, Debug, PartialEq)]
pub struct GradientAudit {
    /// The loss at the forward output.
    pub loss: f64,
    /// The reference of the comparison, e.g. "full finite differences (36 entries)".
    pub reference: String,
    /// One row per mode, in the order requested.
    pub rows: Vec<AuditRow>,
}

impl GradientAudit {
    /// Returns the audit as a table of aligned text columns.
    pub fn table(&self) -> String {
        let mut lines = vec![
            format!(
                "gradient audit against {}; loss {:.6e}",
                self.reference, self.loss
            ),
            format!(
                "{:<20} {:>12} {:>10} {:>14} {:>8} {:>10}",
                "mode", "rel. error", "cosine", "d loss/d(g)", "descent", "seconds"
            ),
        ];
        for row in &self.rows {
            match &row.error {
                Some(error) => lines.push(format!("{:<20} failed: {error}", row.mode)),
                None => lines.push(format!(
                    "{:<20} {:>12.3e} {:>10.6} {:>14.4e} {:>8} {:>10.3}",
                    row.mode,
                    row.relative_error,
                    row.cosine,
                    row.directional_derivative,
                    if row.descent { "yes" } else { "no" },
                    row.seconds
                )),
            }
        }
        lines.join("\n")
    }
}

/// Returns all parameter entries of `model` as one vector, in parameter order.
fn flatten<T: Scalar, P: Parameterized<T> + ?Sized>(model: &P) -> Vec<f64> {
    let mut values = Vec::new();
    for index in 0..model.param_count() {
        let p = model.param(index);
        for col in 0..p.ncols() {
            for row in 0..p.nrows() {
                values.push(p[(row, col)].to_f64_lossless());
            }
        }
    }
    values
}

/// Writes `base + step · direction` into the parameters of `model`, without
/// calling `after_param_update`, so steps and normalizations stay fixed.
fn write_params<T: Scalar, P: Parameterized<T> + ?Sized>(
    model: &mut P,
    base: &[f64],
    direction: &[f64],
    step: f64,
) {
    let mut k = 0;
    for index in 0..model.param_count() {
        let mut p = model.param_mut(index);
        for col in 0..p.ncols() {
            for row in 0..p.nrows() {
                p[(row, col)] = T::lit(base[k] + step * direction[k]);
                k += 1;
            }
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

impl<T: Scalar, Alg: Splitting<Real = T>> OptLayer<Alg> {
    /// Computes the gradient of `loss` on `data` under every mode of
    /// `options` and compares each with central finite differences of the
    /// forward map (with the layer's forward settings).
    ///
    /// With at most `full_max_entries` parameter entries the reference is the
    /// full finite-difference gradient. Above that, every gradient is
    /// projected on `probes` random orthonormal directions and compared with
    /// the finite-difference derivatives along them. In both cases the loss
    /// is also differentiated along each mode's own gradient, whose sign
    /// shows whether the mode gives a descent direction.
    ///
    /// Parameters are perturbed without `after_param_update` and restored
    /// exactly, so the layer is unchanged afterwards.
    ///
    /// # Errors
    /// When the forward pass fails or `options` is invalid. A mode that
    /// fails on this batch is reported in its row instead.
    pub fn audit_gradients(
        &mut self,
        data: MatRef<'_, T>,
        loss: &mut dyn FnMut(MatRef<'_, T>, MatMut<'_, T>) -> T,
        options: &AuditOptions,
    ) -> Result<GradientAudit> {
        let eps = options
            .eps
            .unwrap_or_else(|| T::epsilon().to_f64_lossless().cbrt());
        if !(eps.is_finite() && eps > 0.0) {
            return Err(Error::InvalidParameter {
                name: "audit eps".into(),
                value: eps,
                requirement: "must be finite and greater than zero".into(),
            });
        }
        if options.probes == 0 && flatten(self).len() > options.full_max_entries {
            return Err(Error::InvalidParameter {
                name: "audit probes".into(),
                value: 0.0,
                requirement: "must be at least 1 when the full finite-difference gradient is not computed"
                    .into(),
            });
        }
        let base = flatten(self);
        let dim = base.len();
        let step = eps * norm(&base).max(1.0);
        let forward = self.forward(data)?;
        let primal_dim = self.splitting().primal_dim();
        let mut scratch = Mat::<T>::zeros(primal_dim, data.ncols());
        let value = loss(forward.x.as_ref(), scratch.as_mut()).to_f64_lossless();

        let mut probe = Probe {
            base: &base,
            data,
            step,
            scratch: &mut scratch,
        };

        // Reference directions: the coordinate axes or random orthonormal ones.
        let (directions, reference) = if dim <= options.full_max_entries {
            let axes = (0..dim)
                .map(|k| (0..dim).map(|i| if i == k { 1.0 } else { 0.0 }).collect())
                .collect();
            (axes, format!("full finite differences ({dim} entries)"))
        } else {
            let directions = random_orthonormal(dim, options.probes, options.seed);
            let count = directions.len();
            (
                directions,
                format!("finite differences along {count} random directions ({dim} entries)"),
            )
        };
        let mut reference_derivatives = Vec::with_capacity(directions.len());
        for direction in &directions {
            reference_derivatives.push(probe.derivative_along(self, direction, &mut *loss)?);
        }

        let mut rows = Vec::with_capacity(options.modes.len());
        for mode in &options.modes {
            let started = Instant::now();
            let mut grads = Gradients::zeros_for(self);
            let outcome = self.gradient(mode, &forward, data, &mut *loss, &mut grads);
            let seconds = started.elapsed().as_secs_f64();
            if let Err(error) = outcome {
                rows.push(AuditRow {
                    mode: mode.label(),
                    relative_error: f64::NAN,
                    cosine: f64::NAN,
                    directional_derivative: f64::NAN,
                    descent: false,
                    seconds,
                    error: Some(error.to_string()),
                });
                continue;
            }
            let g = flatten_grads(&grads);
            let projected: Vec<f64> = directions.iter().map(|d| dot(&g, d)).collect();
            let difference: Vec<f64> = projected
                .iter()
                .zip(&reference_derivatives)
                .map(|(a, b)| a - b)
                .collect();
            let reference_norm = norm(&reference_derivatives);
            let relative_error = if reference_norm > 0.0 {
                norm(&difference) / reference_norm
            } else {
                norm(&difference)
            };
            let cosine = dot(&projected, &reference_derivatives) / (norm(&projected) * reference_norm);
            let g_norm = norm(&g);
            let directional_derivative = if g_norm > 0.0 {
                let unit: Vec<f64> = g.iter().map(|v| v / g_norm).collect();
                probe.derivative_along(self, &unit, &mut *loss)?
            } else {
                0.0
            };
            rows.push(AuditRow {
                mode: mode.label(),
                relative_error,
                cosine,
                directional_derivative,
                descent: directional_derivative.is_finite() && directional_derivative > 0.0,
                seconds,
                error: None,
            });
        }
        Ok(GradientAudit {
            loss: value,
            reference,
            rows,
        })
    }
}

/// Central differences of the loss of the forward map around the base parameters.
struct Probe<'a, T> {
    base: &'a [f64],
    data: MatRef<'a, T>,
    step: f64,
    scratch: &'a mut Mat<T>,
}

impl<T: Scalar> Probe<'_, T> {
    /// Returns the loss of the forward map at `base + t · direction`, and
    /// restores the base parameters.
    fn loss_at<Alg: Splitting<Real = T>>(
        &mut self,
        layer: &mut OptLayer<Alg>,
        direction: &[f64],
        t: f64,
        loss: &mut dyn FnMut(MatRef<'_, T>, MatMut<'_, T>) -> T,
    ) -> Result<f64> {
        write_params(layer, self.base, direction, t);
        let result = layer.forward(self.data);
        write_params(layer, self.base, direction, 0.0);
        let x = result?.x;
        Ok(loss(x.as_ref(), self.scratch.as_mut()).to_f64_lossless())
    }

    /// Returns the central difference of the loss along `direction`.
    fn derivative_along<Alg: Splitting<Real = T>>(
        &mut self,
        layer: &mut OptLayer<Alg>,
        direction: &[f64],
        loss: &mut dyn FnMut(MatRef<'_, T>, MatMut<'_, T>) -> T,
    ) -> Result<f64> {
        let plus = self.loss_at(layer, direction, self.step, loss)?;
        let minus = self.loss_at(layer, direction, -self.step, loss)?;
        Ok((plus - minus) / (2.0 * self.step))
    }
}

fn flatten_grads<T: Scalar>(grads: &Gradients<T>) -> Vec<f64> {
    let mut values = Vec::new();
    for g in grads.tensors() {
        for col in 0..g.ncols() {
            for row in 0..g.nrows() {
                values.push(g[(row, col)].to_f64_lossless());
            }
        }
    }
    values
}

/// Returns `count` orthonormal Gaussian directions in `R^dim` (Gram–Schmidt).
fn random_orthonormal(dim: usize, count: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut directions: Vec<Vec<f64>> = Vec::with_capacity(count);
    while directions.len() < count.min(dim) {
        let mut v: Vec<f64> = (0..dim).map(|_| StandardNormal.sample(&mut rng)).collect();
        for d in &directions {
            let projection = dot(&v, d);
            for (vi, di) in v.iter_mut().zip(d) {
                *vi -= projection * di;
            }
        }
        let length = norm(&v);
        if length > 1e-8 {
            directions.push(v.iter().map(|x| x / length).collect());
        }
    }
    directions
}
