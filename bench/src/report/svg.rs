//! The SVG plots of one run: requests/s against connections, and the latency CDF at the
//! reference connection count.

use std::path::Path;

use plotters::prelude::*;

use crate::results::{RunFigures, SuiteResults, OPEN_LOOP_CLIENT, TWO_LANES_SERVER};

use super::{thousands, Spread};

fn xgate_bench_series(results: &SuiteResults, server: &str) -> Vec<(usize, Spread)> {
    results
        .http
        .iter()
        .filter(|c| c.server == server && c.client == "xgate-bench")
        .filter_map(|c| {
            Some((
                c.connections,
                Spread::of(&c.runs.iter().map(|r| r.requests_per_second).collect::<Vec<_>>())?,
            ))
        })
        .collect()
}

const SERIES: [(&str, RGBColor); 3] = [
    ("xgate", RGBColor(0x1f, 0x77, 0xb4)),
    ("nginx", RGBColor(0xd6, 0x27, 0x28)),
    (TWO_LANES_SERVER, RGBColor(0x2c, 0xa0, 0x2c)),
];

pub(super) fn plot_rps(results: &SuiteResults, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = results
        .http
        .iter()
        .flat_map(|c| c.runs.iter().map(|r| r.requests_per_second))
        .fold(1.0, f64::max)
        * 1.1;
    let (low, high) = results
        .plan
        .connections
        .iter()
        .fold((f64::MAX, 1.0f64), |(lo, hi), &c| {
            (lo.min(c as f64), hi.max(c as f64))
        });
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "requests/s vs keep-alive connections (median, min–max)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d((low * 0.7..high * 1.4).log_scale(), 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("connections")
        .y_desc("requests/s")
        .y_label_formatter(&|v| thousands(*v))
        .x_label_formatter(&|v| thousands(*v))
        .draw()?;
    for (server, color) in SERIES {
        let series = xgate_bench_series(results, server);
        chart
            .draw_series(LineSeries::new(
                series.iter().map(|(c, s)| (*c as f64, s.median)),
                color.stroke_width(2),
            ))?
            .label(server)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(
            series
                .iter()
                .map(|(c, s)| Circle::new((*c as f64, s.median), 4, color.filled())),
        )?;
        chart.draw_series(series.iter().map(|(c, s)| {
            PathElement::new(
                vec![(*c as f64, s.min), (*c as f64, s.max)],
                color.stroke_width(1),
            )
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Maps a percentile to "nines" so the tail gets room: 0 → 0, 90 → 1, 99 → 2, 99.9 → 3.
pub(super) fn nines(percentile: f64) -> f64 {
    -(1.0 - (percentile / 100.0).min(0.99999)).log10()
}

pub(super) fn plot_cdf(results: &SuiteResults, path: &Path) -> anyhow::Result<bool> {
    let reference = if results.plan.connections.contains(&100) {
        100
    } else {
        results.plan.connections[0]
    };
    // The run whose p99 is the median of its case (closed loop, and open loop at equal load).
    let median_run = |server: &str, client: &str| -> Option<&RunFigures> {
        let case = results
            .http
            .iter()
            .find(|c| c.server == server && c.client == client && c.connections == reference)?;
        let mut runs: Vec<&RunFigures> = case.runs.iter().collect();
        runs.sort_by(|a, b| a.p99_us.total_cmp(&b.p99_us));
        runs.get(runs.len() / 2).copied()
    };
    let mut curves: Vec<(String, RGBColor, &RunFigures)> = Vec::new();
    for (server, color) in SERIES {
        if let Some(run) = median_run(server, "xgate-bench") {
            curves.push((format!("{server}, closed loop"), color, run));
        }
        if let Some(run) = median_run(server, OPEN_LOOP_CLIENT) {
            // The same hue, lighter: the open-loop run at equal offered load.
            let light = RGBColor(color.0 / 2 + 127, color.1 / 2 + 127, color.2 / 2 + 127);
            curves.push((format!("{server}, same offered load (open loop)"), light, run));
        }
    }
    curves.retain(|(_, _, run)| !run.cdf.is_empty());
    if curves.is_empty() {
        return Ok(false);
    }
    let top = curves
        .iter()
        .flat_map(|(_, _, run)| run.cdf.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.5;
    let bottom = curves
        .iter()
        .flat_map(|(_, _, run)| run.cdf.iter().map(|p| p.1))
        .fold(f64::MAX, f64::min)
        .clamp(1.0, top)
        * 0.7;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("latency by percentile, {reference} connections (run with the median p99)"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..nines(99.999), (bottom..top).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .x_labels(6)
        .x_label_formatter(&|t| format!("{}%", 100.0 * (1.0 - 10f64.powf(-*t))))
        .draw()?;
    for (label, color, run) in curves {
        chart
            .draw_series(LineSeries::new(
                run.cdf.iter().map(|(p, us)| (nines(*p), us.max(bottom))),
                color.stroke_width(2),
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(true)
}
