//! `--sweep`: throughput and p99 against concurrency, one line per pool, as SVG.
//!
//! Each point is the median over the rounds, with an error bar from the lowest to the highest
//! round; the x axis has one labelled tick per concurrency that ran; a point where some round
//! starved tasks (fairness below [`STARVED`]) is ringed in red and labelled with its worst
//! fairness.

use std::path::Path;

use plotters::prelude::*;

use crate::report::{Summary, STARVED};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Writes the sweep plot of `results` (several concurrencies per target) to `path`.
pub(crate) fn write_svg(path: &Path, title: &str, results: &[Summary]) -> Result<(), BoxError> {
    let mut targets: Vec<&str> = Vec::new();
    let mut concs: Vec<usize> = Vec::new();
    for r in results {
        if !targets.contains(&r.target.as_str()) {
            targets.push(&r.target);
        }
        if !concs.contains(&r.concurrency) {
            concs.push(r.concurrency);
        }
    }
    concs.sort_unstable();
    // The x axis is the index of the concurrency, labelled with the concurrency itself, so that
    // every concurrency that ran has its tick and label.
    let n = i32::try_from(concs.len()).unwrap_or(i32::MAX);
    let index = |r: &Summary| {
        concs
            .iter()
            .position(|&c| c == r.concurrency)
            .and_then(|i| i32::try_from(i).ok())
            .unwrap_or(0)
    };
    let label = |x: &i32| {
        usize::try_from(*x)
            .ok()
            .and_then(|i| concs.get(i))
            .map_or(String::new(), ToString::to_string)
    };
    let max_ops = results
        .iter()
        .map(|r| r.ops_per_sec.max)
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let (min_p99, max_p99) = results
        .iter()
        .flat_map(|r| [r.p99_rounds.min, r.p99_rounds.max])
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::MAX, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let min_p99 = if min_p99 == f64::MAX { 1.0 } else { min_p99 };

    let root = SVGBackend::new(path, (960, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let (upper, lower) = root.split_vertically(430);
    let x_range = -1..n;

    let mut ops = ChartBuilder::on(&upper)
        .caption(
            "throughput (ops/s): median of rounds, bars min–max; red ring: tasks starved",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range.clone(), 0.0..max_ops * 1.1)?;
    ops.configure_mesh()
        .x_desc("concurrency")
        .x_labels(concs.len() + 2)
        .x_label_formatter(&label)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;

    let mut p99 = ChartBuilder::on(&lower)
        .caption(
            "p99 latency, wait + query (µs, log): median of rounds, bars min–max",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range, (min_p99 * 0.8..max_p99 * 1.25).log_scale())?;
    p99.configure_mesh()
        .x_desc("concurrency")
        .x_labels(concs.len() + 2)
        .x_label_formatter(&label)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;

    for (i, name) in targets.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut pts: Vec<&Summary> = results.iter().filter(|r| r.target == *name).collect();
        pts.sort_by_key(|r| r.concurrency);
        let tp: Vec<(i32, f64)> = pts
            .iter()
            .map(|r| (index(r), r.ops_per_sec.median))
            .collect();
        ops.draw_series(LineSeries::new(tp.clone(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        ops.draw_series(tp.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        ops.draw_series(pts.iter().map(|r| {
            ErrorBar::new_vertical(
                index(r),
                r.ops_per_sec.min,
                r.ops_per_sec.median,
                r.ops_per_sec.max,
                color.stroke_width(1),
                8,
            )
        }))?;
        let lat: Vec<&&Summary> = pts.iter().filter(|r| r.p99_rounds.median > 0.0).collect();
        p99.draw_series(LineSeries::new(
            lat.iter().map(|r| (index(r), r.p99_rounds.median)),
            color.stroke_width(2),
        ))?
        .label(*name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        p99.draw_series(
            lat.iter()
                .map(|r| Circle::new((index(r), r.p99_rounds.median), 3, color.filled())),
        )?;
        p99.draw_series(lat.iter().map(|r| {
            ErrorBar::new_vertical(
                index(r),
                r.p99_rounds.min.max(min_p99),
                r.p99_rounds.median,
                r.p99_rounds.max,
                color.stroke_width(1),
                8,
            )
        }))?;
        // Fairness markers: where some round left tasks starved.
        for r in pts.iter().filter(|r| r.fairness.min < STARVED) {
            let at = (index(r), r.ops_per_sec.median);
            ops.draw_series(std::iter::once(Circle::new(at, 9, RED.stroke_width(2))))?;
            ops.draw_series(std::iter::once(Text::new(
                format!("fair {:.2}", r.fairness.min),
                at,
                ("sans-serif", 12).into_font().color(&RED),
            )))?;
            if r.p99_rounds.median > 0.0 {
                let at = (index(r), r.p99_rounds.median);
                p99.draw_series(std::iter::once(Circle::new(at, 9, RED.stroke_width(2))))?;
            }
        }
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
