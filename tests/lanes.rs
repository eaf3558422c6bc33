//! Lanes in the lab: two lanes sharing many connections, a burst of connects, the limit of a
//! lane's sockets, and a lane that serves keep-alive requests without allocating.
//!
//! Needs root, the lab and built binaries (see README); each test builds its own lab.

mod common;

use common::{TestLab, GATEWAY_IP};

/// A Python client in the client namespace: `conns` keep-alive connections (one thread each),
/// `requests` GET /healthz on each; prints the number of 200 responses.
fn keep_alive_client(conns: usize, requests: usize) -> String {
    format!(
        r#"
import socket, threading, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
ok = [0] * {conns}
def read_response(s, buf):
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("closed")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += s.recv(65536)
    return head, rest[length:]
def run(i):
    s = socket.create_connection(("{GATEWAY_IP}", 80), timeout=10)
    buf = b""
    for _ in range({requests}):
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        head, buf = read_response(s, buf)
        ok[i] += head.startswith(b"HTTP/1.1 200")
    s.close()
threads = [threading.Thread(target=run, args=(i,)) for i in range({conns})]
for t in threads: t.start()
for t in threads: t.join()
print(sum(ok))
"#
    )
}

fn lanes_of(event: &serde_json::Value) -> Vec<serde_json::Value> {
    event["lanes"].as_array().expect("lanes array").clone()
}

/// Many connections over two lanes: every request answered, both lanes carried traffic, and
/// every frame handed between the lanes came home.
#[test]
fn two_lanes_serve_many_connections_and_both_carry_traffic() {
    let mut lab = TestLab::with_queues("lanes2", 2);
    lab.edit_config(|t| t.replace("listen_port = 80\n", "listen_port = 80\nlanes = 2\n"));
    let ready = lab.start_gateway();
    assert_eq!(ready["lanes"], 2, "{ready}");
    let ok: usize = lab.python(&keep_alive_client(200, 20)).trim().parse().unwrap();
    assert_eq!(ok, 4000, "only {ok} of 4000 requests were answered 200");
    let stopped = lab.stop_gateway();
    let lanes = lanes_of(&stopped);
    assert_eq!(lanes.len(), 2, "{stopped}");
    let requests: Vec<u64> = lanes.iter().map(|l| l["requests"].as_u64().unwrap()).collect();
    assert_eq!(requests.iter().sum::<u64>(), 4000, "{stopped}");
    for (lane, served) in requests.iter().enumerate() {
        assert!(*served >= 400, "lane {lane} served {served} of 4000: {stopped}");
    }
    let accepted: u64 = lanes.iter().map(|l| l["accepted"].as_u64().unwrap()).sum();
    assert_eq!(accepted, 200, "{stopped}");
    // Frames that arrived on a lane not owning their flow crossed a ring and came back.
    let handed_out: u64 = lanes.iter().map(|l| l["handed_out"].as_u64().unwrap()).sum();
    let handed_in: u64 = lanes.iter().map(|l| l["handed_in"].as_u64().unwrap()).sum();
    assert_eq!(handed_out, handed_in, "{stopped}");
    assert_eq!(stopped["frames"]["Lent"], 0, "{stopped}");
    assert_eq!(stopped["frames"]["InStack"], 0, "{stopped}");
    assert_eq!(stopped["ledger_violations"], 0, "{stopped}");
    assert_eq!(stopped["responses"]["200"], 4000, "{stopped}");
}

/// Frames that arrive on a lane that does not own their flow reach the owner through the
/// hand-off rings: xgate's fault injection delivers every third owned segment to the other lane
/// (as a NIC steering a flow to the wrong queue would); every request is still answered, and
/// every handed frame comes home.
#[test]
fn misrouted_frames_reach_their_owner_over_the_rings() {
    let mut lab = TestLab::with_queues("handoff", 2);
    lab.edit_config(|t| {
        format!(
            "{}\n[fault]\nmisroute_every = 3\n",
            t.replace("listen_port = 80\n", "listen_port = 80\nlanes = 2\n")
        )
    });
    lab.start_gateway();
    let ok: usize = lab.python(&keep_alive_client(50, 40)).trim().parse().unwrap();
    assert_eq!(ok, 2000, "only {ok} of 2000 requests were answered 200");
    let stopped = lab.stop_gateway();
    let lanes = lanes_of(&stopped);
    for lane in &lanes {
        assert!(lane["handed_in"].as_u64().unwrap() > 100, "{stopped}");
        assert!(lane["handed_out"].as_u64().unwrap() > 100, "{stopped}");
    }
    assert_eq!(stopped["frames"]["Lent"], 0, "{stopped}");
    assert_eq!(stopped["ledger_violations"], 0, "{stopped}");
    assert_eq!(stopped["responses"]["200"], 2000, "{stopped}");
}

/// A lane count that leaves a queue without a lane is refused with the way out, not run with
/// half the connects lost.
#[test]
fn queues_without_a_lane_are_refused_with_a_clear_error() {
    let lab = TestLab::with_queues("uncovered", 2);
    lab.edit_config(|t| t.replace("listen_port = 80\n", "listen_port = 80\nlanes = 1\n"));
    let out = lab.run_gateway_to_completion();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("has 2 rx queues but the lanes cover only queues 0..0")
            && stderr.contains("ethtool -L xg-gw"),
        "{stderr}"
    );
    assert!(!lab.xdp_attached(), "a refused start left XDP attached");
}

/// A burst of 1,000 simultaneous connects: all complete, and each then gets its answer.
#[test]
fn a_burst_of_a_thousand_connects_all_complete() {
    let mut lab = TestLab::new("burst");
    lab.set_key("max_connections", 1024);
    lab.start_gateway();
    let code = format!(
        r#"
import socket, selectors, errno, resource, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
N = 1000
socks = []
for _ in range(N):
    s = socket.socket()
    s.setblocking(False)
    socks.append(s)
# All SYNs leave before any handshake is looked at.
for s in socks:
    s.connect_ex(("{GATEWAY_IP}", 80))
sel = selectors.DefaultSelector()
for s in socks:
    sel.register(s, selectors.EVENT_WRITE)
connected, refused, deadline = 0, 0, time.time() + 20
while connected + refused < N and time.time() < deadline:
    for key, _ in sel.select(timeout=1):
        s = key.fileobj
        sel.unregister(s)
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            connected += 1
        else:
            refused += 1
ok = 0
for s in socks:
    s.setblocking(True)
    s.settimeout(10)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        ok += s.recv(4096).startswith(b"HTTP/1.1 200")
    except OSError:
        pass
print(connected, refused, ok)
"#
    );
    let out = lab.python(&code);
    let numbers: Vec<usize> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!(
        numbers,
        vec![1000, 0, 1000],
        "connected, refused, answered: {out}"
    );
    let stopped = lab.stop_gateway();
    assert_eq!(stopped["connections_accepted"], 1000, "{stopped}");
    assert_eq!(stopped["lanes"][0]["refused"], 0, "{stopped}");
}

/// Configured to refuse (`http.reset_when_full`), a lane with 64 free sockets gives a burst of 100
/// 64 connections and 36 clear refusals (RST), and counts them. (By default the 36 SYNs are
/// dropped for their clients to send again: see the `crowd` tests.)
#[test]
fn with_reset_when_full_connects_beyond_the_free_sockets_are_refused_and_counted() {
    let mut lab = TestLab::new("limit");
    lab.set_key("max_connections", 64);
    lab.edit_config(|t| t.replace("[http]\n", "[http]\nreset_when_full = true\n"));
    lab.start_gateway();
    let code = format!(
        r#"
import socket
held, refused = [], 0
for _ in range(100):
    try:
        held.append(socket.create_connection(("{GATEWAY_IP}", 80), timeout=5))
    except ConnectionRefusedError:
        refused += 1
print(len(held), refused)
"#
    );
    let out = lab.python(&code);
    assert_eq!(out.trim(), "64 36", "held, refused: {out}");
    let stopped = lab.stop_gateway();
    assert!(
        stopped["lanes"][0]["refused"].as_u64().unwrap() >= 36,
        "{stopped}"
    );
}

/// After warm-up, serving keep-alive requests allocates nothing on the lane thread: 10,000
/// requests, and the lane's heap-allocation count does not move.
#[test]
fn serving_keep_alive_requests_allocates_nothing_after_warm_up() {
    let mut lab = TestLab::new("alloc");
    lab.start_gateway();
    let ok: usize = lab.python(&keep_alive_client(8, 250)).trim().parse().unwrap();
    assert_eq!(ok, 2000);
    let before = lab.stats();
    let ok: usize = lab.python(&keep_alive_client(8, 1250)).trim().parse().unwrap();
    assert_eq!(ok, 10_000);
    let after = lab.stats();
    let lane_before = &before["lanes"][0];
    let lane_after = &after["lanes"][0];
    assert_eq!(
        lane_after["requests"].as_u64().unwrap() - lane_before["requests"].as_u64().unwrap(),
        10_000,
        "{before} {after}"
    );
    assert_eq!(
        lane_after["heap_allocations"], lane_before["heap_allocations"],
        "the lane allocated while serving: {before} {after}"
    );
    lab.stop_gateway();
}
