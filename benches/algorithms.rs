//! Every built-in splitting against the others on three shared problems:
//! lasso with a box (A 200 x 100), sparse recovery `min ‖Θx‖₁ s.t. Ax = d`
//! on the reference sparse inverse problem (n = 250, m = 100, the initial
//! Θ₀), and equality-constrained least squares (A 150 x 100, C 20 x 100),
//! each with a batch of 16 samples in f64.
//!
//! For each scheme that applies, it measures:
//! - the steps to the layer's stopping rule `‖z⁺ − z‖ ≤ 1e-6 ‖z⁺‖`
//!   (`OptLayer::forward`);
//! - the products with a problem matrix and the prox evaluations per step,
//!   counted by wrapping the operators and proxes;
//! - the median wall time of the forward pass on the batch;
//! - the distance to a reference solution;
//! - the steps of a warm start from the fixed point of the data with 1%
//!   noise added.
//!
//! It prints the table and writes it as Markdown to
//! target/bench/algorithms/table.md, with one SVG plot per problem of the
//! residual of every step of sample 0.
//!
//! Run with `cargo bench --bench algorithms`; the figures are recorded in
//! docs/benchmarks.md.

#[path = "algorithms/counting.rs"]
mod counting;
#[path = "algorithms/least_squares_prox.rs"]
mod least_squares_prox;
#[path = "algorithms/measure.rs"]
mod measure;
#[path = "algorithms/plot.rs"]
mod plot;
#[path = "algorithms/problems.rs"]
mod problems;
#[path = "algorithms/references.rs"]
mod references;
#[path = "algorithms/report.rs"]
mod report;

use std::path::{Path, PathBuf};

use faer::{Mat, MatRef};
use optlayer::splittings::Acceleration;
use optlayer_testing::random::gaussian;

use crate::counting::Counter;
use crate::measure::{
    Case, Measurement, Measurements, Settings, fista_restarted_warm_start, measure, relative_distance,
};
use crate::problems::{EqualityLeastSquares, LassoBox, SparseRecovery};
use crate::report::Section;

/// The relative tolerance of the layer's default stopping rule.
const RTOL: f64 = 1e-6;

/// The noise of the warm-start batch, relative to each sample's root mean
/// square entry.
const WARM_START_NOISE: f64 = 1e-2;

fn main() {
    let started = std::time::Instant::now();
    let load_before = load_average();
    let sections = vec![lasso_box(), sparse_recovery(), equality_least_squares()];
    let load_after = load_average();

    let mut table = report::markdown(&sections, RTOL);
    table.push_str(&format!(
        "\nOne-minute load average (/proc/loadavg) {load_before} before and {load_after} after the run; \
         the bench keeps one core busy, so a load well above 1 means that other processes competed for the cores.\n"
    ));
    println!("{table}");
    let out_dir = output_dir();
    std::fs::create_dir_all(&out_dir).expect("the output folder can be created");
    report::write(&out_dir.join("table.md"), &table);
    for section in &sections {
        let path = out_dir.join(format!("{}.svg", section.key));
        plot::residual_histories(&path, section, RTOL);
        eprintln!("wrote {}", path.display());
    }
    eprintln!("wrote {}", out_dir.join("table.md").display());
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
}

/// Returns the one-minute load average, or "unknown" where /proc/loadavg
/// cannot be read.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn output_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench")
        .join("algorithms")
}

/// Returns `data` with independent N(0, (0.01 · rms(d_j))²) noise added to
/// each column `d_j`.
fn perturb(data: &Mat<f64>, seed: u64) -> Mat<f64> {
    let noise = gaussian(data.nrows(), data.ncols(), seed);
    let rms: Vec<f64> = (0..data.ncols())
        .map(|j| data.col(j).norm_l2() / (data.nrows() as f64).sqrt())
        .collect();
    Mat::from_fn(data.nrows(), data.ncols(), |i, j| {
        data[(i, j)] + WARM_START_NOISE * rms[j] * noise[(i, j)]
    })
}

/// Sets the distance of every row's result to `reference`.
fn set_distances(rows: &mut [Measurement], reference: &Mat<f64>) {
    for row in rows {
        row.distance = Some(relative_distance(row.x.as_ref(), reference.as_ref()));
    }
}

/// Measures every scheme on the lasso with a box.
fn lasso_box() -> Section {
    let title = "lasso with a box";
    eprintln!("{title}");
    let problem = LassoBox::generate();
    least_squares_prox::self_check(&problem.a, &problem.data);
    let reference = references::lasso_box(&problem);
    eprintln!("  reference: {}", reference.source);

    let perturbed = perturb(&problem.data, 401);
    let case = Case {
        data: problem.data.as_ref(),
        perturbed: perturbed.as_ref(),
    };
    let settings = Settings {
        rtol: RTOL,
        max_iters: 100_000,
        repeats: 21,
    };

    let counter = Counter::shared();
    let mut measurements = Measurements::default();
    let s = problem.proximal_gradient(Acceleration::None, &counter);
    measurements.add(measure("proximal gradient", s, &counter, &case, &settings));
    let s = problem.proximal_gradient(Acceleration::Fista, &counter);
    let (mut fista, timer) = measure("FISTA", s, &counter, &case, &settings);
    let s = problem.proximal_gradient(Acceleration::Fista, &counter);
    fista.restarted_warm = Some(fista_restarted_warm_start(s, &case, &settings));
    measurements.add((fista, timer));
    let s = problem.davis_yin(&counter);
    measurements.add(measure("Davis-Yin", s, &counter, &case, &settings));
    let s = problem.douglas_rachford(&counter);
    measurements.add(measure("Douglas-Rachford", s, &counter, &case, &settings));
    let s = problem.condat_vu(&counter);
    measurements.add(measure("Condat-Vu", s, &counter, &case, &settings));
    let s = problem.linearized_admm(&counter);
    measurements.add(measure("linearized ADMM", s, &counter, &case, &settings));
    eprintln!("  timing {} rounds", settings.repeats);
    let mut rows = measurements.finish(settings.repeats);

    set_distances(&mut rows, &reference.x);

    Section {
        key: "lasso_box",
        title: title.into(),
        reference: reference.source,
        not_applicable: None,
        settings,
        rows,
    }
}

/// Measures the two schemes that apply to sparse recovery.
fn sparse_recovery() -> Section {
    let title = "sparse recovery";
    eprintln!("{title}");
    let problem = SparseRecovery::generate();
    let perturbed = perturb(&problem.data, 402);
    let case = Case {
        data: problem.data.as_ref(),
        perturbed: perturbed.as_ref(),
    };
    let settings = Settings {
        rtol: RTOL,
        max_iters: 50_000,
        repeats: 3,
    };

    let counter = Counter::shared();
    let mut measurements = Measurements::default();
    let s = problem.condat_vu(&counter);
    measurements.add(measure("Chambolle-Pock", s, &counter, &case, &settings));
    let s = problem.linearized_admm(&counter);
    measurements.add(measure("linearized ADMM", s, &counter, &case, &settings));
    eprintln!("  timing {} rounds", settings.repeats);
    let mut rows = measurements.finish(settings.repeats);

    let candidates: Vec<(&str, MatRef<'_, f64>)> =
        rows.iter().map(|r| (r.scheme.as_str(), r.x.as_ref())).collect();
    let reference = references::sparse_recovery(&problem, &candidates);
    let source = match &reference {
        Some(reference) => reference.source.clone(),
        None => "none: no result led to a certified vertex for every sample".into(),
    };
    eprintln!("  reference: {source}");
    if let Some(reference) = reference {
        set_distances(&mut rows, &reference.x);
    }

    Section {
        key: "sparse_recovery",
        title: title.into(),
        reference: source,
        not_applicable: Some(
            "proximal gradient, FISTA and Davis-Yin need a smooth term, which this model does not have, \
             and Douglas-Rachford needs the prox of x ↦ ‖Θx‖₁, which has no closed form for a dense Θ"
                .into(),
        ),
        settings,
        rows,
    }
}

/// Measures every scheme on equality-constrained least squares.
fn equality_least_squares() -> Section {
    let title = "equality-constrained least squares";
    eprintln!("{title}");
    let problem = EqualityLeastSquares::generate();
    least_squares_prox::self_check(&problem.a, &problem.data);
    let reference = references::equality_least_squares_exact(&problem);

    let perturbed = perturb(&problem.data, 403);
    let case = Case {
        data: problem.data.as_ref(),
        perturbed: perturbed.as_ref(),
    };
    let settings = Settings {
        rtol: RTOL,
        max_iters: 100_000,
        repeats: 21,
    };

    let counter = Counter::shared();
    let mut measurements = Measurements::default();
    let s = problem.proximal_gradient(Acceleration::None, &counter);
    measurements.add(measure("proximal gradient", s, &counter, &case, &settings));
    let s = problem.proximal_gradient(Acceleration::Fista, &counter);
    let (mut fista, timer) = measure("FISTA", s, &counter, &case, &settings);
    let s = problem.proximal_gradient(Acceleration::Fista, &counter);
    fista.restarted_warm = Some(fista_restarted_warm_start(s, &case, &settings));
    measurements.add((fista, timer));
    let s = problem.davis_yin(&counter);
    measurements.add(measure("Davis-Yin", s, &counter, &case, &settings));
    let s = problem.douglas_rachford(&counter);
    measurements.add(measure("Douglas-Rachford", s, &counter, &case, &settings));
    let s = problem.condat_vu(&counter);
    measurements.add(measure("Condat-Vu", s, &counter, &case, &settings));
    let s = problem.linearized_admm(&counter);
    measurements.add(measure("linearized ADMM", s, &counter, &case, &settings));
    eprintln!("  timing {} rounds", settings.repeats);
    let mut rows = measurements.finish(settings.repeats);

    set_distances(&mut rows, &reference.x);

    Section {
        key: "equality_least_squares",
        title: title.into(),
        reference: reference.source,
        not_applicable: None,
        settings,
        rows,
    }
}
