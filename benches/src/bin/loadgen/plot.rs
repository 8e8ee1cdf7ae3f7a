//! `--sweep`: throughput and p99 against concurrency, one line per pool, as SVG.

use std::path::Path;

use plotters::prelude::*;

use crate::runner::RunResult;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Writes the sweep plot of `results` (several concurrencies per target) to `path`.
pub(crate) fn write_svg(path: &Path, title: &str, results: &[RunResult]) -> Result<(), BoxError> {
    let mut targets: Vec<&str> = Vec::new();
    for r in results {
        if !targets.contains(&r.target.as_str()) {
            targets.push(&r.target);
        }
    }
    // Display only: concurrencies are small.
    #[allow(clippy::cast_precision_loss)]
    let conc = |r: &RunResult| r.concurrency as f64;
    let max_c = results.iter().map(conc).fold(1.0, f64::max);
    let max_ops = results.iter().map(|r| r.ops_per_sec).fold(1.0, f64::max);
    let (min_p99, max_p99) = results
        .iter()
        .map(|r| r.total.p99_us)
        .filter(|v| *v > 0.0)
        .fold((f64::MAX, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let min_p99 = if min_p99 == f64::MAX { 1.0 } else { min_p99 };

    let root = SVGBackend::new(path, (960, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let (upper, lower) = root.split_vertically(430);

    let mut ops = ChartBuilder::on(&upper)
        .caption("throughput (ops/s)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d((0.8..max_c * 1.25).log_scale(), 0.0..max_ops * 1.1)?;
    ops.configure_mesh()
        .x_desc("concurrency")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;

    let mut p99 = ChartBuilder::on(&lower)
        .caption("p99 latency, wait + query (µs, log)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (0.8..max_c * 1.25).log_scale(),
            (min_p99 * 0.8..max_p99 * 1.25).log_scale(),
        )?;
    p99.configure_mesh()
        .x_desc("concurrency")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;

    for (i, name) in targets.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut pts: Vec<&RunResult> = results.iter().filter(|r| r.target == *name).collect();
        pts.sort_by_key(|r| r.concurrency);
        let tp: Vec<(f64, f64)> = pts.iter().map(|r| (conc(r), r.ops_per_sec)).collect();
        let lat: Vec<(f64, f64)> = pts
            .iter()
            .filter(|r| r.total.p99_us > 0.0)
            .map(|r| (conc(r), r.total.p99_us))
            .collect();
        ops.draw_series(LineSeries::new(tp.clone(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        ops.draw_series(tp.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        p99.draw_series(LineSeries::new(lat.clone(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        p99.draw_series(lat.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    ops.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    p99.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
