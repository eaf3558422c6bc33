//! The request phases as `/metrics` and `/top` show them, from lane metrics recorded by hand.

use super::{prometheus::phase_families, routes_json, ControlView};
use crate::metrics::{phases::Phase, Exposition, LaneMetrics};

/// Two lanes: a proxied route `app` (slot 0) with every phase, a direct route `status`
/// (slot 1) with head read and write only.
fn lanes() -> (Vec<LaneMetrics>, ControlView) {
    let lanes = vec![LaneMetrics::default(), LaneMetrics::default()];
    for lane in &lanes {
        lane.record(Some(0), 0, Some(201_000_000));
        lane.record_phase(Some(0), Phase::HeadRead, 40_000);
        lane.record_phase(Some(0), Phase::UpstreamWait, 500_000);
        lane.record_phase(Some(0), Phase::UpstreamFirstByte, 200_000_000);
        lane.record_phase(Some(0), Phase::ResponseWrite, 0);
        lane.record(Some(1), 0, Some(50_000));
        lane.record_phase(Some(1), Phase::HeadRead, 30_000);
        lane.record_phase(Some(1), Phase::ResponseWrite, 0);
    }
    let view = ControlView {
        route_names: vec!["app".into(), "status".into()],
        ..ControlView::default()
    };
    (lanes, view)
}

#[test]
fn metrics_show_each_phase_a_route_recorded_and_no_other() {
    let (lanes, view) = lanes();
    let mut e = Exposition::new();
    phase_families(&mut e, &lanes, &view);
    let text = e.finish();
    let name = "xgate_http_request_phase_seconds";
    assert!(text.contains(&format!("# TYPE {name} histogram\n")), "{text}");
    for phase in [
        "head_read",
        "upstream_wait",
        "upstream_first_byte",
        "response_write",
    ] {
        let count = format!("{name}_count{{route=\"app\",phase=\"{phase}\"}} 2\n");
        assert!(text.contains(&count), "{count} in {text}");
    }
    assert!(text.contains(&format!(
        "{name}_sum{{route=\"app\",phase=\"upstream_first_byte\"}} 0.4\n"
    )));
    // 200 ms is in [131.072, 262.144) ms: nothing at or below 0.131072 s, all at 0.262144 s.
    assert!(text.contains(&format!(
        "{name}_bucket{{route=\"app\",phase=\"upstream_first_byte\",le=\"0.131072\"}} 0\n"
    )));
    assert!(text.contains(&format!(
        "{name}_bucket{{route=\"app\",phase=\"upstream_first_byte\",le=\"0.262144\"}} 2\n"
    )));
    assert!(text.contains(&format!(
        "{name}_count{{route=\"status\",phase=\"head_read\"}} 2\n"
    )));
    assert!(text.contains(&format!(
        "{name}_count{{route=\"status\",phase=\"response_write\"}} 2\n"
    )));
    assert!(!text.contains("route=\"status\",phase=\"upstream"), "{text}");
    assert!(!text.contains("(none)"), "{text}");
}

#[test]
fn top_has_per_route_percentiles_of_each_phase_it_recorded() {
    let (lanes, view) = lanes();
    lanes[0].record(None, 7, None);
    let routes = routes_json(&lanes, &view);
    let routes = routes.as_array().unwrap();
    assert_eq!(routes.len(), 3, "{routes:?}");
    let app = &routes[0];
    assert_eq!(app["route"], "app");
    assert_eq!(app["requests"], 2);
    assert_eq!(app["latency"]["count"], 2);
    assert_eq!(app["latency"]["p99_us"], 262_144);
    let first_byte = &app["phases"]["upstream_first_byte"];
    assert_eq!(first_byte["count"], 2);
    assert_eq!(first_byte["sum_us"], 400_000);
    assert_eq!(first_byte["p50_us"], 262_144);
    assert_eq!(first_byte["p99_us"], 262_144);
    assert_eq!(first_byte["buckets"].as_array().unwrap().len(), 32);
    assert_eq!(app["phases"]["head_read"]["p50_us"], 64);
    assert_eq!(
        app["phases"]["upstream_wait"]["p99_us"], 512,
        "500 µs is in [256, 512) µs"
    );
    assert_eq!(app["phases"]["response_write"]["p50_us"], 2);
    let status = &routes[1];
    assert_eq!(status["route"], "status");
    let phases = status["phases"].as_object().unwrap();
    assert_eq!(
        phases.keys().collect::<Vec<_>>(),
        ["head_read", "response_write"],
        "a direct route has no upstream phases"
    );
    // A refusal before routing: requests, no latency known, no phases.
    assert_eq!(routes[2]["route"], "(none)");
    assert_eq!(routes[2]["requests"], 1);
    assert_eq!(routes[2]["latency"]["p50_us"], serde_json::Value::Null);
    assert!(routes[2]["phases"].as_object().unwrap().is_empty());
}
