//! SVG plots of the relative residual against the step, one line per scheme.

use std::path::Path;

use plotters::prelude::*;

use crate::report::{Section, write};

/// Points drawn per line at most; longer histories keep every k-th step
/// and the last one.
const MAX_POINTS: usize = 2000;

/// The Okabe–Ito colors, distinguishable with the common color-vision deficiencies.
const COLORS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// Writes the residual history of sample 0 of every scheme of `section` to
/// `path`, with the relative residual on a log axis and a dashed line at `rtol`.
///
/// # Panics
/// If plotters fails to lay out the chart or the file cannot be written.
pub fn residual_histories(path: &Path, section: &Section, rtol: f64) {
    let mut svg = String::new();
    draw(&mut svg, section, rtol).unwrap_or_else(|e| panic!("drawing {} failed: {e}", path.display()));
    write(path, &svg);
}

fn draw(svg: &mut String, section: &Section, rtol: f64) -> Result<(), Box<dyn std::error::Error>> {
    let longest = section
        .rows
        .iter()
        .map(|r| r.history.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let positive = || {
        section
            .rows
            .iter()
            .flat_map(|r| r.history.iter().copied())
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    // The lower end stays a decade below rtol, so that the rtol line is visible.
    let smallest = positive().fold(rtol / 10.0, f64::min);
    let largest = positive().fold(1.0, f64::max);
    let y_range = 10f64.powf(smallest.log10().floor())..10f64.powf(largest.log10().ceil());

    let root = SVGBackend::with_string(svg, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!(
        "{}: relative residual ||z+ - z|| / ||z+|| of sample 0",
        section.title
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0usize..longest, y_range.log_scale())?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc("relative residual")
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()?;

    let limit = [(0, rtol), (longest, rtol)];
    let gray = RGBColor(90, 90, 90).stroke_width(2);
    chart
        .draw_series(DashedLineSeries::new(limit, 8, 6, gray))?
        .label(format!("rtol {rtol:.0e}"))
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], gray));

    for (row, color) in section.rows.iter().zip(COLORS.iter().cycle()) {
        let color = *color;
        let stride = row.history.len().div_ceil(MAX_POINTS).max(1);
        let last = row.history.len().saturating_sub(1);
        let points = row
            .history
            .iter()
            .enumerate()
            .filter(move |(k, _)| k % stride == 0 || *k == last)
            .filter(|(_, v)| v.is_finite() && **v > 0.0)
            .map(|(k, v)| (k + 1, *v));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(format!("{} ({} steps)", row.scheme, row.history.len()))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
