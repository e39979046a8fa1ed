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

/// A horizontal bar chart: one labelled bar per (label, value).
pub(crate) fn bars(
    path: &Path,
    caption: &str,
    unit: &str,
    bars: &[(String, f64)],
) -> anyhow::Result<()> {
    let n = bars.len().max(1);
    let root = SVGBackend::new(path, (1000, 80 + 28 * n as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = bars
        .iter()
        .map(|b| b.1)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(260)
        .build_cartesian_2d(0f64..x_max, 0f64..n as f64)?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .x_desc(unit)
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|y| {
            let i = (n as f64 - y - 0.5).round();
            if (n as f64 - y - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .disable_y_mesh()
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        let top = n as f64 - i as f64;
        Rectangle::new(
            [(0.0, top - 0.8), (v.max(0.0), top - 0.2)],
            BLUE.mix(0.6).filled(),
        )
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        let top = n as f64 - i as f64;
        Text::new(
            format!("{v:.3}"),
            (v.max(0.0), top - 0.6),
            ("sans-serif", 13),
        )
    }))?;
    root.present()?;
    Ok(())
}
