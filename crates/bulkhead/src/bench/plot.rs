//! SVG plots of benchmark results (plotters).

use std::path::Path;

use plotters::prelude::*;

/// A named series of (seconds, ms) points, with the phase-B span to shade.
pub(crate) type Series<'a> = (&'a str, Vec<(f64, f64)>, (f64, f64));

/// One panel per series: latency (ms) over time (s), with phase B shaded.
pub(crate) fn latency_over_time(path: &Path, series: &[Series<'_>]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1000, 320 * series.len().max(1) as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((series.len().max(1), 1));
    let y_max = series
        .iter()
        .flat_map(|(_, pts, _)| pts.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    let x_max = series
        .iter()
        .flat_map(|(_, pts, span)| pts.iter().map(|p| p.0).chain([span.1]))
        .fold(1.0f64, f64::max);
    for (panel, (name, points, (b0, b1))) in panels.iter().zip(series) {
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("write-ack latency, mode `{name}` (shaded: compaction + heavy query)"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("ms")
            .draw()?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(*b0, 0.0), (*b1, y_max)],
            RGBColor(255, 200, 120).mix(0.35).filled(),
        )))?;
        chart.draw_series(
            points
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 2, BLUE.filled())),
        )?;
    }
    root.present()?;
    Ok(())
}
