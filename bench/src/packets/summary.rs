//! What the runs add up to: the JSON report (field names stable, see the module doc of
//! `packets`), medians and ratios, and the table on stderr.

use std::{fmt::Write as _, time::Duration};

use serde::Serialize;
use xgate_userstack::xsk::BindMode;
use xgate_xdp::bench::GeneratorMode;

use super::{measure::RunOutcome, FrameSize, PacketArgs, ReceiverKind};

/// The whole report, printed as JSON with `--json` (field names documented in the module doc).
#[derive(Debug, Serialize)]
pub struct PacketReport {
    pub packet_path: Vec<CaseReport>,
    pub ratios: Vec<RatioReport>,
    pub setup: SetupReport,
}

/// Every run of one frame size × receiver.
#[derive(Debug, Serialize)]
pub struct CaseReport {
    pub frame_bytes: u16,
    pub sent_bytes: usize,
    pub label: String,
    pub receiver: &'static str,
    pub mode: String,
    pub runs_pps: Vec<f64>,
    pub median_pps: f64,
    pub min_pps: f64,
    pub max_pps: f64,
    pub generated_pps_median: f64,
    pub received_frames: u64,
    pub kernel_rx_dropped: u64,
    pub rx_ring_full: u64,
    pub fill_ring_empty: u64,
    pub steering_redirected: u64,
}

/// AF_XDP's median rate over XDP_DROP's, for one frame size.
#[derive(Debug, Serialize)]
pub struct RatioReport {
    pub frame_bytes: u16,
    pub af_xdp_over_drop: f64,
}

/// How the numbers were taken.
#[derive(Debug, Serialize)]
pub struct SetupReport {
    pub seconds: f64,
    pub warmup_seconds: f64,
    pub repeats: u32,
    pub generator_cpu: usize,
    pub receiver_cpu: usize,
    pub link: &'static str,
    pub zero_copy_available: bool,
    pub umem_backing: String,
    pub generator: &'static str,
    pub live_frames_batch: u32,
}

pub(super) fn summarize(
    args: &PacketArgs,
    warmup: Duration,
    cases: &[(FrameSize, ReceiverKind)],
    outcomes: &[Vec<RunOutcome>],
) -> PacketReport {
    let mut packet_path = Vec::new();
    let mut umem_backing = String::from("unused");
    let mut generator = GeneratorMode::LiveFrames.name();
    let mut zero_copy_available = false;
    for (&(size, kind), runs) in cases.iter().zip(outcomes) {
        let runs_pps: Vec<f64> = runs.iter().map(|run| run.received_pps.round()).collect();
        let generated: Vec<f64> = runs.iter().map(|run| run.generated_pps).collect();
        let sum = |field: fn(&RunOutcome) -> u64| runs.iter().map(field).sum::<u64>();
        if let Some(backing) = runs.iter().find_map(|run| run.umem_backing.clone()) {
            umem_backing = backing;
        }
        if let Some(run) = runs
            .iter()
            .find(|run| run.generator != GeneratorMode::LiveFrames.name())
        {
            generator = run.generator;
        }
        let mode = runs.first().map(|run| run.mode.clone()).unwrap_or_default();
        zero_copy_available |= mode == BindMode::ZeroCopy.name();
        packet_path.push(CaseReport {
            frame_bytes: size.requested,
            sent_bytes: size.sent,
            label: size.label(),
            receiver: kind.name(),
            mode,
            median_pps: median(&runs_pps),
            min_pps: runs_pps.iter().copied().fold(f64::INFINITY, f64::min),
            max_pps: runs_pps.iter().copied().fold(0.0, f64::max),
            runs_pps,
            generated_pps_median: median(&generated).round(),
            received_frames: sum(|run| run.received_frames),
            kernel_rx_dropped: sum(|run| run.kernel_rx_dropped),
            rx_ring_full: sum(|run| run.rx_ring_full),
            fill_ring_empty: sum(|run| run.fill_ring_empty),
            steering_redirected: sum(|run| run.steering_redirected),
        });
    }
    let mut ratios = Vec::new();
    let mut seen = Vec::new();
    for case in &packet_path {
        if seen.contains(&case.frame_bytes) {
            continue;
        }
        seen.push(case.frame_bytes);
        let median_of = |receiver: ReceiverKind| {
            packet_path
                .iter()
                .find(|c| c.frame_bytes == case.frame_bytes && c.receiver == receiver.name())
                .map(|c| c.median_pps)
        };
        if let (Some(drop), Some(af_xdp)) = (median_of(ReceiverKind::XdpDrop), median_of(ReceiverKind::AfXdp))
        {
            let ratio = if drop > 0.0 { af_xdp / drop } else { 0.0 };
            ratios.push(RatioReport {
                frame_bytes: case.frame_bytes,
                af_xdp_over_drop: (ratio * 1000.0).round() / 1000.0,
            });
        }
    }
    PacketReport {
        packet_path,
        ratios,
        setup: SetupReport {
            seconds: args.seconds,
            warmup_seconds: warmup.as_secs_f64(),
            repeats: args.repeats,
            generator_cpu: args.generator_cpu,
            receiver_cpu: args.receiver_cpu,
            link: "veth (xgp-tx -> xgp-rx), MTU 1500",
            zero_copy_available,
            umem_backing,
            generator,
            live_frames_batch: args.batch,
        },
    }
}

/// The median of `values` (mean of the middle two for an even count); 0 for none.
pub(super) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// `1234567.8` → `"1,234,568"`.
pub(super) fn group_thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

pub(super) fn render_table(report: &PacketReport) -> String {
    let setup = &report.setup;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\npacket path on {}: generator on CPU {} ({}), receiver on CPU {}, {} run(s) × {} s \
         after {} s warm-up",
        setup.link,
        setup.generator_cpu,
        if setup.generator == GeneratorMode::LiveFrames.name() {
            format!("{}, batch {}", setup.generator, setup.live_frames_batch)
        } else {
            setup.generator.to_string()
        },
        setup.receiver_cpu,
        setup.repeats,
        setup.seconds,
        setup.warmup_seconds
    );
    let _ = writeln!(
        out,
        "{:<13} {:<9} {:<28} {:>12} {:>27} {:>14} {:>11}",
        "frame", "receiver", "mode", "median pps", "min – max pps", "generated pps", "rx_dropped"
    );
    for case in &report.packet_path {
        let mode = match (case.receiver, case.mode.as_str()) {
            ("af_xdp", "copy") => "copy (veth: no zero-copy)".to_string(),
            (_, mode) => mode.to_string(),
        };
        let dropped = if case.receiver == "af_xdp" {
            group_thousands(case.kernel_rx_dropped as f64)
        } else {
            "-".to_string()
        };
        let _ = writeln!(
            out,
            "{:<13} {:<9} {:<28} {:>12} {:>27} {:>14} {:>11}",
            case.label,
            case.receiver,
            mode,
            group_thousands(case.median_pps),
            format!(
                "{} – {}",
                group_thousands(case.min_pps),
                group_thousands(case.max_pps)
            ),
            group_thousands(case.generated_pps_median),
            dropped
        );
    }
    for ratio in &report.ratios {
        let label = report
            .packet_path
            .iter()
            .find(|c| c.frame_bytes == ratio.frame_bytes)
            .map(|c| c.label.clone())
            .unwrap_or_default();
        let _ = writeln!(out, "AF_XDP / XDP_DROP at {label}: {:.2}", ratio.af_xdp_over_drop);
    }
    let _ = writeln!(out, "AF_XDP UMEM: {}", setup.umem_backing);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_grouping() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(group_thousands(1_234_567.4), "1,234,567");
        assert_eq!(group_thousands(999.0), "999");
    }
}
