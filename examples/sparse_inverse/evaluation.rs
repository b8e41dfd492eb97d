//! Evaluation on the test set: least squares, the layer at the two
//! iteration counts, and the residual histories of the convergence figure.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::{Mat, MatRef, Par};
use optlayer::problems::MinNormLeastSquares;
use optlayer::problems::sparse_inverse::build_model;
use optlayer::splittings::{LadmmSteps, LinearizedAdmm};
use optlayer::train::{Dataset, Prediction};
use optlayer::{Error, ForwardOptions, OptLayer, Scalar, Splitting};

use crate::cli::Settings;
use crate::plots;
use crate::progress::Progress;
use crate::report::{DepthStats, LeastSquaresResult, ModelResult};
use crate::to_f64;

/// Test samples whose residual histories the convergence figure summarizes.
const HISTORY_SAMPLES: usize = 50;

/// Returns `‖A x − d‖ / ‖d‖` per column (`‖A x − d‖` where `d = 0`).
pub fn fidelities<T: Scalar>(a: MatRef<'_, T>, x: MatRef<'_, T>, d: MatRef<'_, T>) -> Vec<f64> {
    let residual = a * x - d;
    (0..d.ncols())
        .map(|j| {
            let r = residual.col(j).norm_l2().to_f64_lossless();
            let scale = d.col(j).norm_l2().to_f64_lossless();
            if scale > 0.0 { r / scale } else { r }
        })
        .collect()
}

/// Returns the mean over columns of `‖A x − d‖ / ‖d‖`.
pub fn mean_fidelity<T: Scalar>(a: MatRef<'_, T>, x: MatRef<'_, T>, d: MatRef<'_, T>) -> f64 {
    let values = fidelities(a, x, d);
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

pub fn evaluate_least_squares<T: Scalar>(
    a: &Mat<T>,
    test: &Dataset<T>,
) -> Result<(LeastSquaresResult, Mat<T>), Error> {
    let solver = MinNormLeastSquares::new(a.as_ref())?;
    let x = solver.solve(test.data())?;
    let result = LeastSquaresResult {
        mse: optlayer::mse(x.as_ref(), test.targets()).to_f64_lossless(),
        fidelity: mean_fidelity(a.as_ref(), x.as_ref(), test.data()),
    };
    Ok((result, x))
}

/// Runs the forward pass on all columns of `data`, a batch at a time, with a
/// progress bar over the samples.
pub fn predict<T: Scalar>(
    layer: &OptLayer<LinearizedAdmm<T>>,
    data: MatRef<'_, T>,
    settings: &Settings,
    options: &ForwardOptions,
    progress: &Progress,
    what: &str,
) -> Result<Prediction<T>, Error> {
    let total = data.ncols();
    let bar = progress.bar(total as u64, &format!("{what} @ {} it", options.max_iters));
    let mut x = Mat::zeros(layer.splitting().primal_dim(), total);
    let mut samples = Vec::with_capacity(total);
    let mut start = 0;
    while start < total {
        let len = settings.batch_size.min(total - start);
        let result = layer.forward_with(data.subcols(start, len), options)?;
        x.as_mut().subcols_mut(start, len).copy_from(&result.x);
        samples.extend(result.samples);
        start += len;
        bar.inc(len as u64);
    }
    bar.finish_and_clear();
    Ok(Prediction { x, samples })
}

/// Evaluates a model on the test set at the training and the test iteration
/// counts; returns the results and the prediction at the test count.
pub fn evaluate_depths<T: Scalar>(
    layer: &OptLayer<LinearizedAdmm<T>>,
    a: &Mat<T>,
    test: &Dataset<T>,
    settings: &Settings,
    progress: &Progress,
    what: &str,
) -> Result<(ModelResult, Prediction<T>), Error> {
    let at_train_depth = predict(
        layer,
        test.data(),
        settings,
        &settings.train_forward(),
        progress,
        what,
    )?;
    let at_test_depth = predict(
        layer,
        test.data(),
        settings,
        &settings.test_forward(),
        progress,
        what,
    )?;
    let result = ModelResult {
        mse_train_depth: optlayer::mse(at_train_depth.x.as_ref(), test.targets()).to_f64_lossless(),
        mse_test_depth: optlayer::mse(at_test_depth.x.as_ref(), test.targets()).to_f64_lossless(),
        fidelity: mean_fidelity(a.as_ref(), at_test_depth.x.as_ref(), test.data()),
        train_depth: DepthStats::new(settings.train_iters, &at_train_depth),
        test_depth: DepthStats::new(settings.test_iters, &at_test_depth),
    };
    Ok((result, at_test_depth))
}

/// Returns, for each of `iters` steps from the initial state, the median over
/// the columns of `data` of the relative fixed-point residual `‖z⁺ − z‖/‖z⁺‖`
/// that the layer's stopping test uses.
pub fn residual_history<T: Scalar>(
    splitting: &LinearizedAdmm<T>,
    data: MatRef<'_, T>,
    iters: usize,
) -> Vec<f64> {
    let (dim, batch) = (splitting.state_dim(), data.ncols());
    let par = Par::Seq;
    let mut z = Mat::<T>::zeros(dim, batch);
    splitting.init(z.as_mut(), data);
    let mut next = Mat::<T>::zeros(dim, batch);
    let mut buffer = MemBuffer::new(splitting.step_scratch(batch, par));
    let mut ratios = vec![0.0; batch];
    let mut history = Vec::with_capacity(iters);
    for _ in 0..iters {
        splitting.step(next.as_mut(), z.as_ref(), data, par, MemStack::new(&mut buffer));
        for (col, ratio) in ratios.iter_mut().enumerate() {
            let (residual, scale) = splitting.fixed_point_residual(next.as_ref(), z.as_ref(), col);
            let (residual, scale) = (residual.to_f64_lossless(), scale.to_f64_lossless());
            *ratio = if scale > 0.0 { residual / scale } else { residual };
        }
        ratios.sort_by(f64::total_cmp);
        let mid = batch / 2;
        history.push(if batch % 2 == 1 {
            ratios[mid]
        } else {
            0.5 * (ratios[mid - 1] + ratios[mid])
        });
        std::mem::swap(&mut z, &mut next);
    }
    history
}

/// Returns the median residual history of the first test samples for each
/// labeled Θ, for the convergence figure.
pub fn convergence_histories<T: Scalar>(
    thetas: [(&str, MatRef<'_, T>); 2],
    a: &Mat<f64>,
    steps: LadmmSteps,
    test: &Dataset<T>,
    settings: &Settings,
) -> Result<Vec<plots::History>, Error> {
    thetas
        .into_iter()
        .map(|(label, theta)| {
            let model: LinearizedAdmm<T> = build_model(&to_f64(theta), a, steps)?;
            let samples = HISTORY_SAMPLES.min(test.len());
            Ok(plots::History {
                label: format!("{label} (median of {samples} test samples)"),
                values: residual_history(&model, test.data().subcols(0, samples), settings.test_iters),
            })
        })
        .collect()
}
