//! End-to-end tests of the gateway in a real lab: real veth pairs in network namespaces,
//! the real XDP program, a real AF_XDP socket, and real clients (curl, ping, Python sockets).
//! Needs root. Each test builds its own uniquely named lab and removes it, also on failure.

mod common;

use common::{output, raw_exchange, status_line, TestLab, GATEWAY_HOST_IP, GATEWAY_IP, XGATE};

#[test]
fn routes_answer_with_the_right_status() {
    let mut lab = TestLab::new("rt");
    let ready = lab.start_gateway();
    // veth runs XDP natively but AF_XDP in copy mode only; xgate says which it got.
    assert_eq!(ready["xdp_mode"], "native", "{ready}");
    assert_eq!(ready["bind_mode"], "copy", "{ready}");
    let url = format!("http://{GATEWAY_IP}");

    let (ok, text) = lab.curl(&["-i", &format!("{url}/healthz")]);
    assert!(ok, "{text}");
    assert_eq!(status_line(&text), "HTTP/1.1 200 OK", "{text}");
    assert!(text.ends_with("ok\n"), "{text}");
    assert!(text.to_ascii_lowercase().contains("server: xgate"), "{text}");

    let (_, text) = lab.curl(&["-i", &format!("{url}/missing")]);
    assert!(status_line(&text).starts_with("HTTP/1.1 404"), "{text}");

    let (_, text) = lab.curl(&["-i", "-X", "DELETE", &format!("{url}/healthz")]);
    assert!(status_line(&text).starts_with("HTTP/1.1 405"), "{text}");
    assert!(text.to_ascii_lowercase().contains("allow: get, head"), "{text}");

    let (_, text) = lab.curl(&["-I", &format!("{url}/healthz")]);
    assert_eq!(status_line(&text), "HTTP/1.1 200 OK", "{text}");

    // Ctrl-C stops it as cleanly as SIGTERM: counters printed, XDP detached.
    let (status, stopped) = lab.stop_gateway_with(libc::SIGINT);
    assert!(status.success(), "{status}");
    let stopped = stopped.expect("stopped event after SIGINT");
    assert!(!lab.xdp_attached(), "XDP left attached after SIGINT");
    assert_eq!(stopped["responses"]["200"], 2, "{stopped}");
    assert_eq!(stopped["responses"]["404"], 1, "{stopped}");
    assert_eq!(stopped["responses"]["405"], 1, "{stopped}");
}

#[test]
fn hundred_requests_share_one_keep_alive_connection() {
    let mut lab = TestLab::new("ka");
    lab.start_gateway();
    let url = format!("http://{GATEWAY_IP}/healthz");
    let mut args = vec!["-w", "%{http_code} %{num_connects}\\n"];
    for _ in 0..100 {
        args.extend(["-o", "/dev/null", url.as_str()]);
    }
    let (ok, text) = lab.curl(&args);
    assert!(ok, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 100, "{text}");
    assert!(lines.iter().all(|l| l.starts_with("200 ")), "{text}");
    let connects: u32 = lines
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().parse::<u32>().unwrap())
        .sum();
    assert_eq!(
        connects, 1,
        "curl opened {connects} connections for 100 keep-alive requests"
    );
    let stopped = lab.stop_gateway();
    assert_eq!(stopped["responses"]["200"], 100, "{stopped}");
    assert_eq!(stopped["connections_accepted"], 1, "{stopped}");
}

#[test]
fn malformed_and_oversized_requests_are_refused_and_the_next_connection_works() {
    let mut lab = TestLab::new("bad");
    lab.start_gateway();

    let (text, closed) = raw_exchange(&lab, b"GARBAGE\x01\x02 / HTTP/1.1\r\n\r\n");
    assert!(status_line(&text).starts_with("HTTP/1.1 400"), "{text:?}");
    assert!(closed, "connection left open after 400");

    let (text, closed) = raw_exchange(
        &lab,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n folded: header\r\n\r\n",
    );
    assert!(
        status_line(&text).starts_with("HTTP/1.1 400"),
        "obs-fold: {text:?}"
    );
    assert!(closed);

    let mut big = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "a".repeat(60)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let (text, closed) = raw_exchange(&lab, &big);
    assert!(status_line(&text).starts_with("HTTP/1.1 431"), "{text:?}");
    assert!(closed);

    // Pipelined requests on one connection are answered in order.
    let (text, closed) = raw_exchange(
        &lab,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let first = text.find("HTTP/1.1 200").expect("first answer");
    let second = text.find("HTTP/1.1 404").expect("second answer");
    assert!(first < second && closed, "{text:?}");

    let (ok, text) = lab.curl(&["-i", &format!("http://{GATEWAY_IP}/healthz")]);
    assert!(
        ok && status_line(&text) == "HTTP/1.1 200 OK",
        "after bad input: {text}"
    );
    let stopped = lab.stop_gateway();
    assert_eq!(stopped["responses"]["400"], 2, "{stopped}");
    assert_eq!(stopped["responses"]["431"], 1, "{stopped}");
}

#[test]
fn the_userspace_stack_owns_the_address_and_the_kernel_keeps_the_rest() {
    let mut lab = TestLab::new("own");
    // Before xgate runs, nobody answers for the gateway address.
    let out = output(lab.exec("cli", "ping").args(["-c", "1", "-W", "1", GATEWAY_IP]));
    assert!(
        !out.status.success(),
        "the gateway address answered without xgate"
    );

    lab.start_gateway();
    assert!(lab.xdp_attached());

    // Traffic for the kernel's own address on the same interface still reaches the kernel, and
    // the kernel's counters see it: a ping, and a TCP connect to a closed port (the kernel
    // answers RST). This also shows the counters below are live.
    let ip_before = lab.kernel_counters("Ip");
    let tcp_before = lab.kernel_counters("Tcp");
    let (ok, text) = lab.ping(GATEWAY_HOST_IP, 2);
    assert!(ok, "ping to the host address failed: {text}");
    let (ok, _) = lab.curl(&[&format!("http://{GATEWAY_HOST_IP}:9/")]);
    assert!(!ok, "something listens on the host's port 9");
    let ip_mid = lab.kernel_counters("Ip");
    let tcp_mid = lab.kernel_counters("Tcp");
    assert!(
        ip_mid["Ip.InReceives"] >= ip_before["Ip.InReceives"] + 3,
        "{ip_mid:?}"
    );
    assert!(tcp_mid["Tcp.InSegs"] > tcp_before["Tcp.InSegs"], "{tcp_mid:?}");

    // Traffic for the gateway address never reaches the gateway namespace's kernel at all: not
    // its IP layer, not its TCP.
    let (ok, text) = lab.ping(GATEWAY_IP, 3);
    assert!(ok, "ping to xgate failed: {text}");
    for _ in 0..5 {
        assert_eq!(lab.healthz_status(), Ok("200".to_string()));
    }
    let ip_after = lab.kernel_counters("Ip");
    let tcp_after = lab.kernel_counters("Tcp");
    for key in ["Ip.InReceives", "Ip.InDelivers", "Ip.OutRequests"] {
        assert_eq!(ip_mid[key], ip_after[key], "kernel IP counter {key} moved");
    }
    for key in ["Tcp.PassiveOpens", "Tcp.InSegs", "Tcp.OutSegs", "Tcp.ActiveOpens"] {
        assert_eq!(tcp_mid[key], tcp_after[key], "kernel TCP counter {key} moved");
    }

    let stopped = lab.stop_gateway();
    let xdp = &stopped["xdp_packets"];
    assert!(xdp["redirect_ipv4"].as_u64().unwrap() >= 3 + 5 * 5, "{stopped}");
    assert!(xdp["redirect_arp"].as_u64().unwrap() >= 1, "{stopped}");
    assert!(xdp["pass_not_ours"].as_u64().unwrap() >= 2, "{stopped}");
    assert!(!lab.xdp_attached(), "XDP still attached after SIGTERM");
    // With xgate gone, the address is dead again: nothing in the kernel holds it.
    let out = output(lab.exec("cli", "ping").args(["-c", "1", "-W", "1", GATEWAY_IP]));
    assert!(
        !out.status.success(),
        "the gateway address answered after xgate stopped"
    );
}

/// Thousands of rx/tx cycles through the UMEM (a ping flood and many requests), then the frame
/// census at shutdown: every frame is back where it belongs, none lost or doubled.
#[test]
fn every_umem_frame_is_accounted_for_after_thousands_of_cycles() {
    let mut lab = TestLab::new("fr");
    // A small UMEM so every frame is reused many times.
    lab.set_key("frames", 256);
    lab.start_gateway();
    let out = output(
        lab.exec("cli", "ping")
            .args(["-f", "-c", "3000", "-W", "1", GATEWAY_IP]),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let url = format!("http://{GATEWAY_IP}/healthz");
    let mut args = vec!["-w", "%{http_code}\\n"];
    for _ in 0..300 {
        args.extend(["-o", "/dev/null", url.as_str()]);
    }
    let (ok, text) = lab.curl(&args);
    assert!(
        ok && text.lines().all(|l| l == "200") && text.lines().count() == 300,
        "{text}"
    );

    let stopped = lab.stop_gateway();
    assert_eq!(stopped["ledger_violations"], 0, "{stopped}");
    let frames = &stopped["frames"];
    let total: u64 = ["Fill", "InStack", "TxFree", "TxPending", "TxRing"]
        .iter()
        .map(|k| frames[*k].as_u64().unwrap())
        .sum();
    assert_eq!(total, 256, "{stopped}");
    assert_eq!(
        frames["Fill"], 128,
        "rx frames not all back on the fill ring: {stopped}"
    );
    assert_eq!(frames["TxFree"], 128, "tx frames not all completed: {stopped}");
    assert!(stopped["rx_frames"].as_u64().unwrap() >= 3000 + 300, "{stopped}");
    assert_eq!(stopped["tx_frames"], stopped["tx_completed"], "{stopped}");
    // The kernel found no descriptor of ours invalid (a bad address or length on any ring).
    assert_eq!(stopped["kernel_invalid_descs"], 0, "{stopped}");
    assert_eq!(stopped["tx_refused"], 0, "{stopped}");
}

#[test]
fn a_killed_gateway_leaves_nothing_attached_and_lab_down_cleans_up() {
    let mut lab = TestLab::new("kill");
    lab.start_gateway();
    assert!(lab.xdp_attached());
    let (status, stopped) = lab.stop_gateway_with(libc::SIGKILL);
    assert!(!status.success() && stopped.is_none());
    // The program hangs off a BPF link owned by the process: the kernel detached it.
    assert!(!lab.xdp_attached(), "XDP left attached after SIGKILL");
    let out = output(std::process::Command::new(XGATE).args(["lab", "down", "--name", &lab.name]));
    assert!(out.status.success());
    for host in ["cli", "gw", "be", "sw"] {
        assert!(
            !std::path::Path::new("/run/netns").join(lab.netns(host)).exists(),
            "{host} left behind"
        );
    }
    // Down is idempotent.
    let out = output(std::process::Command::new(XGATE).args(["lab", "down", "--name", &lab.name]));
    assert!(out.status.success());
}

/// Without free hugepages the UMEM falls back to normal pages and xgate says so once, with the
/// command that reserves them; with hugepages reserved (by the project's own script) the UMEM sits
/// on them. The host's reservation is put back afterwards.
#[test]
fn the_umem_lives_on_hugepages_when_reserved_and_says_once_when_not() {
    let mut lab = TestLab::with_hugepages_to_itself("huge");
    let original: u64 = std::fs::read_to_string("/proc/sys/vm/nr_hugepages")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    struct Restore(u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = std::fs::write("/proc/sys/vm/nr_hugepages", self.0.to_string());
        }
    }
    let _restore = Restore(original);
    // Keep only the pages in use elsewhere: none are free for this gateway.
    let in_use = original - common::available_hugepages().min(original);
    std::fs::write("/proc/sys/vm/nr_hugepages", in_use.to_string()).unwrap();
    let ready = lab.start_gateway();
    assert_eq!(ready["umem_backing"], "NormalPages", "{ready}");
    lab.stop_gateway();
    let stderr = lab.gateway_stderr();
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("hugepages")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    // The hint names a count that would give this gateway its 16 pages.
    let hint = format!("hugepages/setup.sh {}", in_use + 16);
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains(&hint),
        "{stderr}"
    );

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../hugepages/setup.sh");
    // The lab's UMEM: 16,384 frames x 2,048 B = 32 MiB = 16 pages.
    let out = output(
        std::process::Command::new("bash")
            .arg(script)
            .arg((in_use + 16).to_string()),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lab.edit_config(|t| t.replace("allow_normal_pages = true", "allow_normal_pages = false"));
    let available_before = common::available_hugepages();
    let ready = lab.start_gateway();
    assert_eq!(ready["umem_backing"], "HugePages2M", "{ready}");
    assert_eq!(
        common::available_hugepages(),
        available_before - 16,
        "the UMEM did not take 16 pages"
    );
    assert_eq!(lab.healthz_status(), Ok("200".to_string()));
    lab.stop_gateway();
}

/// A second gateway on the same interface is refused in one line, and the first keeps serving.
#[test]
fn a_second_gateway_on_the_same_interface_is_refused_and_the_first_keeps_serving() {
    let mut lab = TestLab::new("two");
    lab.start_gateway();
    let out = lab.run_gateway_to_completion();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second gateway started: {err}");
    assert!(
        err.starts_with("xgate: error: ") && err.contains("xg-gw"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(
        lab.healthz_status(),
        Ok("200".to_string()),
        "the first gateway stopped serving"
    );
    lab.stop_gateway();
    assert!(!lab.xdp_attached());
}

/// Malformed and hostile frames sent raw (AF_PACKET) at the gateway: truncated headers, bad
/// checksums, lying lengths, fragments. The stack drops what it cannot use, nothing crashes, no
/// UMEM frame is lost, and HTTP still works afterwards. (The lab's kernel path drops some of
/// these before they reach XDP, runts among them; the XDP program's handling of every truncation
/// is tested directly in `xdp/loader/tests`.)
#[test]
fn malformed_frames_are_counted_and_dropped_without_harm() {
    let mut lab = TestLab::new("mal");
    lab.start_gateway();
    let code = r#"
import socket, struct
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def ipv4(payload, proto=6, flags_frag=0, good=True, total=None, ihl=5):
    total = total if total is not None else 20 + len(payload)
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, flags_frag, 64, proto, 0,
                    socket.inet_aton("10.77.0.1"), socket.inet_aton("10.77.0.2"))
    c = csum(h) if good else 0x1234
    return h[:10] + struct.pack("!H", c) + h[12:] + payload
tcp_bad = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 0x50, 0x02, 65535, 0xdead, 0)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("xg-cli", 0))
src = bytes.fromhex(open("/sys/class/net/xg-cli/address").read().strip().replace(":", ""))
eth = bytes.fromhex("027700000002") + src
frames = [
    eth + b"\x08\x00" + b"\x45\x00\x00",                      # IPv4 shorter than its header
    eth + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04",          # ARP cut short
    eth + b"\x08\x00" + ipv4(tcp_bad),                        # TCP SYN, bad TCP checksum
    eth + b"\x08\x00" + ipv4(tcp_bad, good=False),            # bad IPv4 header checksum
    eth + b"\x08\x00" + ipv4(tcp_bad, total=1400),            # total length beyond the frame
    eth + b"\x08\x00" + ipv4(b"\x00" * 8, ihl=15),            # header length beyond the frame
    eth + b"\x08\x00" + ipv4(b"x" * 32, flags_frag=0x2000),   # first fragment of nothing
    eth + b"\x08\x00" + ipv4(b"\xff" * 30, proto=253),        # unknown protocol
]
import time
for _ in range(250):
    for f in frames:
        s.send(f)
    time.sleep(0.001)  # stay under the veth ring: the test is about content, not rate
print("sent", 250 * len(frames))
"#;
    let sent = lab.python(code);
    assert!(sent.contains("sent 2000"), "{sent}");
    assert_eq!(
        lab.healthz_status(),
        Ok("200".to_string()),
        "gateway stopped serving after malformed frames"
    );
    let stopped = lab.stop_gateway();
    let xdp = &stopped["xdp_packets"];
    // At least two of the six IPv4 kinds (250 each) reached the userspace stack.
    assert!(xdp["redirect_ipv4"].as_u64().unwrap() >= 500, "{stopped}");
    assert!(stopped["rx_frames"].as_u64().unwrap() >= 500, "{stopped}");
    assert_eq!(stopped["ledger_violations"], 0, "{stopped}");
    assert_eq!(stopped["frames"]["InStack"], 0, "{stopped}");
    assert_eq!(stopped["responses"]["200"], 1, "{stopped}");
}

/// Connections the gateway closes first leave its sockets in TIME-WAIT (10 s in smoltcp); a small
/// pool must still accept a steady stream of new connections, so a socket in TIME-WAIT goes back
/// to listening at once. The client reads each response to EOF before closing, so the
/// gateway's FIN always comes first.
#[test]
fn server_closed_connections_do_not_exhaust_a_small_socket_pool() {
    let mut lab = TestLab::new("tw");
    lab.set_key("max_connections", 16);
    lab.start_gateway();
    let code = format!(
        r#"
import socket
ok = 0
for i in range(200):
    s = socket.create_connection(("{GATEWAY_IP}", 80), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    ok += data.startswith(b"HTTP/1.1 200")
print(ok)
"#
    );
    let ok: usize = lab.python(&code).trim().parse().unwrap();
    assert_eq!(ok, 200, "only {ok} of 200 server-closed connections succeeded");
    let stopped = lab.stop_gateway();
    assert_eq!(stopped["connections_accepted"], 200, "{stopped}");
}

/// Clients that vanish without a FIN or RST give their sockets back after the TCP timeout:
/// keep-alive probes go unanswered and the connection is aborted. Without it, a pool this small
/// would stay full forever and refuse everyone after. The vanishing client lives in the backend
/// namespace, whose link is then deleted, so nothing it sent can ever arrive late.
#[test]
fn vanished_clients_give_their_sockets_back() {
    let mut lab = TestLab::new("gone");
    lab.set_key("max_connections", 2);
    lab.edit_config(|t| {
        t.replace("keepalive_ms = 10000", "keepalive_ms = 200")
            .replace("timeout_ms = 30000", "timeout_ms = 1000")
    });
    lab.start_gateway();
    // Two idle keep-alive connections fill the pool.
    let mut holder = lab
        .exec("be", "python3")
        .args([
            "-c",
            &format!(
                r#"
import socket, time
conns = [socket.create_connection(("{GATEWAY_IP}", 80), timeout=5) for _ in range(2)]
print("connected", flush=True)
time.sleep(30)
"#
            ),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "connected");
    let url = format!("http://{GATEWAY_IP}/healthz");
    let (ok, _) = lab.curl(&["--max-time", "1", "-o", "/dev/null", &url]);
    assert!(!ok, "a third connection was served by a pool of two");

    // The client vanishes: its link is deleted, its sockets never say goodbye.
    let out = output(lab.exec("be", "ip").args(["link", "del", "xg-be"]));
    assert!(out.status.success());
    let _ = holder.kill();
    let _ = holder.wait();

    let mut served = false;
    for _ in 0..25 {
        let (ok, text) = lab.curl(&["--max-time", "1", "-o", "/dev/null", "-w", "%{http_code}", &url]);
        if ok && text == "200" {
            served = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(served, "the pool never recovered from clients that vanished");
    lab.stop_gateway();
}
