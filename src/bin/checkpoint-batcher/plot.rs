//! The `tune` chart: throughput against p99 acknowledgement latency, one line per batch size
//! through its flush intervals, the p99 budget as a vertical line and the recommendation
//! circled. SVG only (plotters' SVG backend, whose text needs no font files).

use std::path::Path;

use plotters::prelude::*;

use crate::error::CliError;
use crate::tune::Point;

/// Writes the chart of `points` to `path`.
///
/// # Errors
///
/// A failed run when the file cannot be written.
pub(crate) fn chart(
    path: &Path,
    title: &str,
    points: &[Point],
    budget_ms: f64,
    recommended: Option<usize>,
) -> Result<(), CliError> {
    draw(path, title, points, budget_ms, recommended)
        .map_err(|e| CliError::failed(format!("could not write the chart {}: {e}", path.display())))
}

/// The drawing itself; plotters' errors are boxed for [`chart`] to word.
fn draw(
    path: &Path,
    title: &str,
    points: &[Point],
    budget_ms: f64,
    recommended: Option<usize>,
) -> Result<(), Box<dyn std::error::Error>> {
    let x_max = points.iter().map(|p| p.p99_ms).fold(budget_ms, f64::max) * 1.15;
    let y_max = points.iter().map(|p| p.steps_per_s).fold(1.0, f64::max) * 1.15;

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("p99 acknowledgement latency (ms)")
        .y_desc("throughput (steps/s)")
        .label_style(("sans-serif", 14))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(BLACK.mix(0.03))
        .draw()?;

    let budget_style = BLACK.mix(0.6).stroke_width(2);
    chart
        .draw_series(DashedLineSeries::new(
            [(budget_ms, 0.0), (budget_ms, y_max)],
            8,
            6,
            budget_style,
        ))?
        .label(format!("p99 budget {budget_ms} ms"))
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], budget_style));

    let mut sizes: Vec<usize> = points.iter().map(|p| p.batch_size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for (series, size) in sizes.iter().enumerate() {
        let color = Palette99::pick(series).to_rgba();
        let mut line: Vec<&Point> = points.iter().filter(|p| p.batch_size == *size).collect();
        line.sort_by_key(|p| p.flush_ms);
        chart
            .draw_series(LineSeries::new(
                line.iter().map(|p| (p.p99_ms, p.steps_per_s)),
                color.stroke_width(2),
            ))?
            .label(format!("max_batch_updates {size}"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(line.iter().map(|p| {
            EmptyElement::at((p.p99_ms, p.steps_per_s))
                + Circle::new((0, 0), 4, color.filled())
                + Text::new(
                    format!("{} ms", p.flush_ms),
                    (6, -14),
                    ("sans-serif", 12).into_font().color(&BLACK.mix(0.7)),
                )
        }))?;
    }

    if let Some(best) = recommended.and_then(|index| points.get(index)) {
        chart.draw_series(std::iter::once(
            EmptyElement::at((best.p99_ms, best.steps_per_s))
                + Circle::new((0, 0), 10, BLACK.stroke_width(2))
                + Text::new("recommended", (12, 4), ("sans-serif", 14).into_font()),
        ))?;
    }

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}
