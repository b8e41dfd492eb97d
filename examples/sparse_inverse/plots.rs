//! The figures of a run, each written as SVG and as PNG.
//!
//! plotters draws every figure as SVG; resvg renders the same SVG to PNG, with the
//! system's sans-serif font for the text. Both files are written atomically.

use std::path::{Path, PathBuf};

use optlayer::Error;
use optlayer::train::atomic;
use plotters::coord::Shift;
use plotters::prelude::*;
use resvg::{tiny_skia, usvg};

/// The Okabe–Ito colors, distinguishable with the common color-vision deficiencies.
const COLORS: [RGBColor; 4] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
];
const GRAY: RGBColor = RGBColor(90, 90, 90);

/// Families tried, in order, for the generic `sans-serif` of the PNG files.
const SANS_SERIF: [&str; 5] = [
    "DejaVu Sans",
    "Liberation Sans",
    "Noto Sans",
    "Arial",
    "Helvetica",
];

/// Pixels per SVG unit in the PNG files.
const PNG_SCALE: f32 = 1.5;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Renders SVG to PNG with the fonts of the system, loaded once.
pub struct Renderer {
    options: usvg::Options<'static>,
    /// The family used for `sans-serif`, or `None` when the system has none of
    /// [`SANS_SERIF`]; the PNG files then have no text.
    pub font: Option<String>,
}

impl Renderer {
    /// Loads the system fonts.
    pub fn new() -> Self {
        let mut options = usvg::Options::default();
        let fonts = options.fontdb_mut();
        fonts.load_system_fonts();
        let font = SANS_SERIF
            .iter()
            .find(|family| {
                fonts
                    .faces()
                    .any(|face| face.families.iter().any(|(name, _)| name == *family))
            })
            .map(|family| family.to_string());
        if let Some(family) = &font {
            fonts.set_sans_serif_family(family.clone());
            options.font_family = family.clone();
        }
        Self { options, font }
    }

    fn png(&self, svg: &str, path: &Path) -> Result<(), Error> {
        let failed = |reason: String| Error::Io {
            action: "failed to render the figure".into(),
            path: path.to_path_buf(),
            source: std::io::Error::other(reason),
        };
        let tree = usvg::Tree::from_str(svg, &self.options).map_err(|e| failed(e.to_string()))?;
        let size = tree.size();
        let width = (size.width() * PNG_SCALE).ceil() as u32;
        let height = (size.height() * PNG_SCALE).ceil() as u32;
        let mut pixmap = tiny_skia::Pixmap::new(width, height)
            .ok_or_else(|| failed(format!("cannot allocate a {width} x {height} image")))?;
        pixmap.fill(tiny_skia::Color::WHITE);
        resvg::render(
            &tree,
            tiny_skia::Transform::from_scale(PNG_SCALE, PNG_SCALE),
            &mut pixmap.as_mut(),
        );
        let bytes = pixmap.encode_png().map_err(|e| failed(e.to_string()))?;
        atomic::write_atomic(path, &bytes)
    }

    /// Draws a figure of `size` pixels and writes `NAME.svg` and `NAME.png` into
    /// `dir`; returns the two paths.
    fn figure(
        &self,
        dir: &Path,
        name: &str,
        size: (u32, u32),
        draw: impl FnOnce(&Area<'_>) -> DrawResult,
    ) -> Result<[PathBuf; 2], Error> {
        let svg_path = dir.join(format!("{name}.svg"));
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            let drawn = root
                .fill(&WHITE)
                .map_err(Into::into)
                .and_then(|()| draw(&root))
                .and_then(|()| root.present().map_err(Into::into));
            drawn.map_err(|e| Error::Io {
                action: "failed to draw the figure".into(),
                path: svg_path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        atomic::write_atomic(&svg_path, svg.as_bytes())?;
        let png_path = dir.join(format!("{name}.png"));
        self.png(&svg, &png_path)?;
        Ok([svg_path, png_path])
    }
}

/// One stem panel: a title and the values `Θx` of one signal.
pub struct StemPanel {
    pub title: String,
    pub values: Vec<f64>,
}

/// Writes `theta_x.svg` and `.png`: one stem panel per signal, stacked, with a
/// shared vertical range so the panels compare at a glance.
pub fn stems(renderer: &Renderer, dir: &Path, panels: &[StemPanel]) -> Result<[PathBuf; 2], Error> {
    let largest = panels
        .iter()
        .flat_map(|p| p.values.iter())
        .filter(|v| v.is_finite())
        .fold(0.0f64, |acc, v| acc.max(v.abs()));
    let limit = if largest > 0.0 { 1.08 * largest } else { 1.0 };
    let len = panels.iter().map(|p| p.values.len()).max().unwrap_or(1).max(1);
    let height = 220 * panels.len().max(1) as u32;
    renderer.figure(dir, "theta_x", (1000, height), |root| {
        let areas = root.split_evenly((panels.len().max(1), 1));
        for ((panel, area), color) in panels.iter().zip(&areas).zip(COLORS.iter().cycle()) {
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, ("sans-serif", 17))
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(56)
                .build_cartesian_2d(0f64..len as f64, -limit..limit)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .y_labels(5)
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.2}"))
                .draw()?;
            chart.draw_series(std::iter::once(PathElement::new(
                [(0.0, 0.0), (len as f64, 0.0)],
                GRAY.stroke_width(1),
            )))?;
            let color = *color;
            let finite = panel.values.iter().enumerate().filter(|(_, v)| v.is_finite());
            // A stem shorter than 1% of the half axis (about 1 pixel) is drawn as its
            // marker alone: the SVG backend rounds it to length zero, and the PNG
            // renderer cannot stroke a path of length zero.
            let stems = finite.clone().filter(|(_, v)| v.abs() > 1e-2 * limit);
            chart
                .draw_series(stems.map(|(i, v)| {
                    PathElement::new([(i as f64, 0.0), (i as f64, *v)], color.stroke_width(1))
                }))?;
            chart.draw_series(finite.map(|(i, v)| Circle::new((i as f64, *v), 2, color.filled())))?;
        }
        Ok(())
    })
}

/// Train and test error of one epoch.
pub struct EpochPoint {
    pub epoch: usize,
    pub train: f64,
    pub test: Option<f64>,
}

/// Writes `training_curves.svg` and `.png`: train and test MSE per epoch on a
/// log axis, with the least-squares test MSE as a dashed level.
pub fn training_curves(
    renderer: &Renderer,
    dir: &Path,
    epochs: &[EpochPoint],
    least_squares: f64,
) -> Result<[PathBuf; 2], Error> {
    let values = epochs
        .iter()
        .flat_map(|e| [Some(e.train), e.test])
        .flatten()
        .chain(std::iter::once(least_squares));
    let (low, high) = log_range(values);
    let last = epochs.iter().map(|e| e.epoch).max().unwrap_or(1).max(1);
    renderer.figure(dir, "training_curves", (900, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Mean squared error per entry", ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(0.5f64..last as f64 + 0.5, (low..high).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("MSE")
            .x_label_formatter(&epoch_label)
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()?;
        let level = [(0.5, least_squares), (last as f64 + 0.5, least_squares)];
        chart
            .draw_series(DashedLineSeries::new(level, 8, 6, GRAY.stroke_width(2)))?
            .label(format!("least squares (test) {least_squares:.3e}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GRAY.stroke_width(2)));
        let series: [(&str, Vec<(f64, f64)>); 2] = [
            (
                "train",
                epochs
                    .iter()
                    .filter(|e| e.train.is_finite() && e.train > 0.0)
                    .map(|e| (e.epoch as f64, e.train))
                    .collect(),
            ),
            (
                "test",
                epochs
                    .iter()
                    .filter_map(|e| e.test.map(|t| (e.epoch as f64, t)))
                    .filter(|(_, t)| t.is_finite() && *t > 0.0)
                    .collect(),
            ),
        ];
        for ((label, points), color) in series.into_iter().zip(COLORS) {
            let style = color.stroke_width(2);
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
            // A single epoch is a marker alone: a line of one point is an empty
            // path, which the PNG renderer skips with a warning.
            let line = if points.len() >= 2 { points } else { Vec::new() };
            chart
                .draw_series(LineSeries::new(line, style))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Labels the whole epochs of the epoch axis and leaves the ticks between them blank.
fn epoch_label(value: &f64) -> String {
    let rounded = value.round();
    if (value - rounded).abs() < 1e-6 {
        format!("{rounded:.0}")
    } else {
        String::new()
    }
}

/// A residual history: the value at each iteration, starting at iteration 1.
pub struct History {
    pub label: String,
    pub values: Vec<f64>,
}

/// Writes `convergence.svg` and `.png`: the normalized fixed-point residual
/// against the iteration, one line per history, with the stopping tolerance.
pub fn convergence(
    renderer: &Renderer,
    dir: &Path,
    histories: &[History],
    tol: f64,
    caption: &str,
) -> Result<[PathBuf; 2], Error> {
    let values = histories.iter().flat_map(|h| h.values.iter().copied());
    let (low, high) = log_range(values.chain((tol > 0.0).then_some(tol)));
    let longest = histories.iter().map(|h| h.values.len()).max().unwrap_or(1).max(1);
    renderer.figure(dir, "convergence", (900, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(1usize..longest, (low..high).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("iteration")
            .y_desc("||z+ - z|| / ||z+||")
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()?;
        if tol > 0.0 {
            let level = [(1, tol), (longest, tol)];
            chart
                .draw_series(DashedLineSeries::new(level, 8, 6, GRAY.stroke_width(2)))?
                .label(format!("stopping tolerance {tol:.0e}"))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GRAY.stroke_width(2)));
        }
        for (history, color) in histories.iter().zip(COLORS) {
            let style = color.stroke_width(2);
            let points = history
                .values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite() && **v > 0.0)
                .map(|(k, v)| (k + 1, *v));
            chart
                .draw_series(LineSeries::new(points, style))?
                .label(history.label.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Writes `NAME.svg` and `.png`: a histogram of `values` in `bins` equal bins,
/// with a vertical line at each named threshold.
#[allow(clippy::too_many_arguments)]
pub fn histogram(
    renderer: &Renderer,
    dir: &Path,
    name: &str,
    caption: &str,
    x_label: &str,
    values: &[f64],
    thresholds: &[(String, f64)],
    bins: usize,
) -> Result<[PathBuf; 2], Error> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let marks = thresholds.iter().map(|(_, t)| *t).filter(|t| t.is_finite());
    let low = finite
        .iter()
        .copied()
        .chain(marks.clone())
        .fold(f64::INFINITY, f64::min);
    let high = finite
        .iter()
        .copied()
        .chain(marks)
        .fold(f64::NEG_INFINITY, f64::max);
    let (low, high) = if low.is_finite() && high > low {
        let pad = 0.02 * (high - low);
        (low - pad, high + pad)
    } else if low.is_finite() {
        (low - 0.5, low + 0.5)
    } else {
        (0.0, 1.0)
    };
    let bins = bins.max(1);
    let width = (high - low) / bins as f64;
    let mut counts = vec![0usize; bins];
    for v in &finite {
        let bin = (((v - low) / width) as usize).min(bins - 1);
        counts[bin] += 1;
    }
    let tallest = counts.iter().copied().max().unwrap_or(0).max(1);
    renderer.figure(dir, name, (900, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(low..high, 0f64..1.1 * tallest as f64)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(x_label)
            .y_desc("samples")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        let fill = COLORS[0].mix(0.6).filled();
        chart.draw_series(counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, c)| {
            let left = low + i as f64 * width;
            Rectangle::new([(left, 0.0), (left + width, *c as f64)], fill)
        }))?;
        for ((label, t), color) in thresholds.iter().zip(COLORS.iter().skip(1)) {
            let style = color.stroke_width(2);
            chart
                .draw_series(DashedLineSeries::new(
                    [(*t, 0.0), (*t, 1.1 * tallest as f64)],
                    8,
                    6,
                    style,
                ))?
                .label(format!("{label}: {t:.4}"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Returns a range of whole decades around the positive finite `values`.
fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (low, high) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !low.is_finite() {
        return (1e-3, 1.0);
    }
    let low = 10f64.powf(low.log10().floor());
    let high = 10f64.powf(high.log10().ceil()).max(10.0 * low);
    (low, high)
}
