//! Lab tests of the routes' rate limits with real clients: one client flooding a limited route
//! gets 2xx at the configured rate and 429 with `Retry-After` for the rest, while a second
//! client address, at the same time, is served in full; with one lane and with two (the
//! flooding client's connections spread over both lanes, which count in one shared table).

mod common;

use std::{sync::Mutex, time::Duration};

use common::{output, TestLab, BACKEND_IP, GATEWAY_IP};

/// The second address of the client namespace.
const SECOND_CLIENT_IP: &str = "10.77.0.5";
const RATE: f64 = 50.0;
const BURST: f64 = 10.0;

/// The floods run one at a time: two at once on a 2-core machine starve each other's lanes,
/// and a lane that gets no CPU for longer than the burst lasts (200 ms here) admits less than
/// the rate (GCRA counts requests when the lane sees them).
static ONE_FLOOD_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Both clients in one Python process: `flooders` keep-alive connections from 10.77.0.1 sending
/// `GET /hello` back to back for `seconds`, and one connection from the second address sending
/// one request every 100 ms meanwhile. Prints JSON: the flood's statuses, its first and last
/// send times, the Retry-After values seen, and the polite client's statuses.
fn clients(flooders: usize, seconds: f64) -> String {
    format!(
        r#"
import http.client, json, threading, time
lock = threading.Lock()
flood = {{"ok": 0, "limited": 0, "other": [], "retry_after": set(), "first": None, "last": 0.0}}
polite = {{"ok": 0, "other": []}}
start = time.monotonic()
end = start + {seconds}

def flooder():
    conn = http.client.HTTPConnection("{GATEWAY_IP}", 80, timeout=5, source_address=("10.77.0.1", 0))
    while True:
        sent = time.monotonic()
        if sent >= end:
            break
        conn.request("GET", "/hello")
        response = conn.getresponse()
        response.read()
        with lock:
            flood["first"] = sent if flood["first"] is None else min(flood["first"], sent)
            flood["last"] = max(flood["last"], sent)
            if 200 <= response.status < 300:
                flood["ok"] += 1
            elif response.status == 429:
                flood["limited"] += 1
                flood["retry_after"].add(response.getheader("Retry-After"))
            else:
                flood["other"].append(response.status)
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("{GATEWAY_IP}", 80, timeout=5, source_address=("10.77.0.1", 0))

def polite_client():
    conn = http.client.HTTPConnection("{GATEWAY_IP}", 80, timeout=5, source_address=("{SECOND_CLIENT_IP}", 0))
    n = 0
    while start + n * 0.1 < end:
        time.sleep(max(0.0, start + n * 0.1 - time.monotonic()))
        conn.request("GET", "/hello")
        response = conn.getresponse()
        response.read()
        if response.status == 200:
            polite["ok"] += 1
        else:
            polite["other"].append(response.status)
        n += 1

threads = [threading.Thread(target=flooder) for _ in range({flooders})]
threads.append(threading.Thread(target=polite_client))
for t in threads:
    t.start()
for t in threads:
    t.join()
flood["retry_after"] = sorted(flood["retry_after"], key=str)
flood["seconds"] = flood["last"] - flood["first"]
print(json.dumps({{"flood": flood, "polite": polite}}))
"#
    )
}

/// `xgate_rate_limited_total{route="limited"}` from `/metrics` (0 if absent).
fn scraped_rate_limited(lab: &TestLab) -> u64 {
    let out =
        output(
            lab.exec("gw", "curl")
                .args(["-sS", "--max-time", "5", "http://127.0.0.1:9180/metrics"]),
        );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("# TYPE xgate_rate_limited_total counter"), "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix("xgate_rate_limited_total{route=\"limited\"} "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// A flood against `rate = 50, burst = 10` for 4 s: admitted = burst + rate × seconds, ±10%,
/// the rest 429 with `Retry-After: 1`; the other address gets every answer 200; the 429s are
/// counted in `/metrics` and the lanes' counters. Then a reload with a tighter limit applies.
fn flood_is_held_to_the_rate(queues: u32) {
    let _alone = ONE_FLOOD_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = if queues > 1 {
        TestLab::with_queues("rl2", queues)
    } else {
        TestLab::new("rl1")
    };
    lab.edit_config(|t| {
        t.replace(
            "listen_port = 80\n",
            &format!("listen_port = 80\nlanes = {queues}\n"),
        )
    });
    let add = output(lab.exec("cli", "ip").args([
        "addr",
        "add",
        &format!("{SECOND_CLIENT_IP}/24"),
        "dev",
        "xg-cli",
    ]));
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    lab.start_backend(8080, "app");
    let base = std::fs::read_to_string(&lab.config_path).unwrap();
    let routes = |rate: f64, burst: f64| {
        format!(
            "\n[[upstream]]\nname = \"app\"\nmembers = [\"{BACKEND_IP}:8080\"]\n\n\
             [[route]]\nname = \"limited\"\npath_prefix = \"/hello\"\nupstream = \"app\"\n\n\
             [route.rate_limit]\nrate = {rate}\nburst = {burst}\n"
        )
    };
    std::fs::write(&lab.config_path, format!("{base}{}", routes(RATE, BURST))).unwrap();
    let ready = lab.start_gateway();
    assert_eq!(ready["lanes"], queues, "{ready}");

    // The clients yield the CPU to the gateway's lanes (the system under test) when both want it.
    let run = output(
        lab.exec("cli", "nice")
            .args(["-n", "10", "python3", "-c", &clients(8, 4.0)]),
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let out = String::from_utf8_lossy(&run.stdout);
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let flood = &result["flood"];
    let polite = &result["polite"];
    let admitted = flood["ok"].as_u64().unwrap();
    let limited = flood["limited"].as_u64().unwrap();
    let seconds = flood["seconds"].as_f64().unwrap();
    let rate = (admitted as f64 - BURST) / seconds;
    eprintln!(
        "{queues} lane(s): flood admitted {admitted} and refused {limited} in {seconds:.3} s: \
         {rate:.2}/s admitted beyond the burst (configured {RATE}/s); polite client {polite}"
    );
    assert_eq!(flood["other"], serde_json::json!([]), "{result}");
    assert!(limited > 10 * admitted, "the client did not flood: {result}");
    assert!(
        (RATE * 0.9..=RATE * 1.1).contains(&rate),
        "admitted {rate:.2}/s, configured {RATE}/s: {result}"
    );
    // At 50/s the wait is at most one interval: the header says the least, 1 s.
    assert_eq!(flood["retry_after"], serde_json::json!(["1"]), "{result}");
    assert_eq!(polite["other"], serde_json::json!([]), "{result}");
    assert_eq!(polite["ok"], 40, "{result}");

    assert_eq!(scraped_rate_limited(&lab), limited);

    // A reload applies a tighter limit: 2 at once, then 1/s (so 2 of 5 quick requests pass).
    std::fs::write(&lab.config_path, format!("{base}{}", routes(1.0, 2.0))).unwrap();
    lab.signal_gateway(libc::SIGHUP);
    let event = lab.wait_event("reload", Duration::from_secs(5));
    assert_eq!(event["ok"], true, "{event}");
    std::thread::sleep(Duration::from_millis(200));
    let codes = lab.python(&format!(
        r#"
import http.client
conn = http.client.HTTPConnection("{GATEWAY_IP}", 80, timeout=5, source_address=("{SECOND_CLIENT_IP}", 0))
codes = []
for _ in range(5):
    conn.request("GET", "/hello")
    response = conn.getresponse()
    response.read()
    codes.append(str(response.status))
print(" ".join(codes))
"#
    ));
    assert_eq!(codes.trim(), "200 200 429 429 429");

    let stopped = lab.stop_gateway();
    let lanes = stopped["lanes"].as_array().unwrap();
    let per_lane: Vec<u64> = lanes
        .iter()
        .map(|l| l["rate_limited"].as_u64().unwrap())
        .collect();
    eprintln!("429s per lane: {per_lane:?}");
    assert_eq!(per_lane.iter().sum::<u64>(), limited + 3, "{stopped}");
    assert_eq!(stopped["responses"]["429"], limited + 3, "{stopped}");
}

#[test]
fn one_lane_holds_a_flooding_client_to_its_rate_and_serves_the_other() {
    flood_is_held_to_the_rate(1);
}

#[test]
fn two_lanes_share_the_budget_of_a_client_whose_connections_spread_over_them() {
    flood_is_held_to_the_rate(2);
}
