//! Lab tests of xgate as a reverse proxy: real clients (curl, ab, Python) in the client
//! namespace, xgate in the gateway namespace, real backends (nginx, Python's http.server, and the
//! project's fault backend `tests/backend.py`) in the backend namespace. Both legs of every
//! request run on xgate's userspace stack.

mod common;

use std::time::{Duration, Instant};

use common::{raw_exchange, status_line, TestLab, BACKEND_IP, GATEWAY_IP};

/// A file of `size` pseudo-random bytes in the temp dir (removed by the caller).
fn random_file(name: &str, size: usize) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(name);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut bytes = Vec::with_capacity(size);
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size);
    std::fs::write(&path, &bytes).unwrap();
    path
}

fn sha256_of(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn proxies_to_nginx_and_python_backends_with_pooled_keep_alive_connections() {
    let mut lab = TestLab::new("px");
    let site = std::env::temp_dir().join(format!("{}-site", lab.name));
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "hello from nginx\n").unwrap();
    std::fs::create_dir_all(site.join("py")).unwrap();
    std::fs::write(site.join("py/index.html"), "hello from python\n").unwrap();
    let big = random_file(&format!("{}-big.bin", lab.name), 3_000_000);
    std::fs::copy(&big, site.join("big.bin")).unwrap();
    std::fs::copy(&big, site.join("py/big.bin")).unwrap();
    lab.start_nginx_backend(8080, &site);
    // Python's http.server, from the site directory.
    let python = lab
        .exec("be", "python3")
        .args(["-m", "http.server", "8000", "--bind", BACKEND_IP, "--directory"])
        .arg(&site)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    lab.keep_backend(python);
    lab.edit_config(|c| c.replace("[http]\n", "[http]\naccess_log = true\n"));
    lab.append_config(&format!(
        r#"
[[upstream]]
name = "nginx"
members = ["{BACKEND_IP}:8080"]

[[upstream]]
name = "python"
members = ["{BACKEND_IP}:8000"]

[[route]]
name = "health"
path_prefix = "/healthz"
methods = ["GET"]
answer = {{ status = 200, body = "ok\n" }}

[[route]]
name = "maintenance"
host = "maint.example"
answer = {{ status = 503, body = "back soon\n", headers = {{ "Retry-After" = "60" }} }}

[[route]]
name = "py"
path_prefix = "/py"
upstream = "python"
host_rewrite = "python.internal"

[[route]]
name = "site"
upstream = "nginx"
"#
    ));
    lab.start_gateway();
    // Wait for python to listen (nginx is ready when its start command returns).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab
        .curl(&[
            "-f",
            "-o",
            "/dev/null",
            &format!("http://{GATEWAY_IP}/py/index.html"),
        ])
        .0
    {
        assert!(
            Instant::now() < deadline,
            "python backend never answered through xgate"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let (ok, body) = lab.curl(&[&format!("http://{GATEWAY_IP}/index.html")]);
    assert!(ok && body == "hello from nginx\n", "{body}");
    let (ok, body) = lab.curl(&["-i", &format!("http://{GATEWAY_IP}/py/index.html")]);
    assert!(
        ok && body.contains("Server: SimpleHTTP") && body.ends_with("\r\n\r\nhello from python\n"),
        "{body}"
    );
    let (ok, body) = lab.curl(&[
        &format!("http://{GATEWAY_IP}/index.html"),
        "-H",
        "Host: maint.example",
        "-i",
    ]);
    assert!(ok && status_line(&body).contains("503"), "{body}");
    assert!(
        body.contains("Retry-After: 60") && body.ends_with("back soon\n"),
        "{body}"
    );

    // A path that would climb out of the route's prefix is refused before routing.
    let (ok, code) = lab.curl(&[
        "--path-as-is",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{GATEWAY_IP}/py/../index.html"),
    ]);
    assert!(ok && code == "400", "{code}");

    // A 3 MB file, byte for byte, from both backends.
    let copy = std::env::temp_dir().join(format!("{}-copy.bin", lab.name));
    for path in ["/big.bin", "/py/big.bin"] {
        let url = format!("http://{GATEWAY_IP}{path}");
        let (ok, code) = lab.curl(&["-o", copy.to_str().unwrap(), "-w", "%{http_code}", &url]);
        assert!(ok && code == "200", "{url}: {code}");
        assert_eq!(sha256_of(&copy), sha256_of(&big), "{url}");
    }

    // Keep-alive on the client side: two requests, one connection.
    let (ok, text) = lab.curl(&[
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{num_connects} ",
        &format!("http://{GATEWAY_IP}/index.html"),
        &format!("http://{GATEWAY_IP}/index.html"),
    ]);
    assert!(ok && text.trim() == "1 0", "{text}");

    // HEAD carries no body; 204 and 304 neither.
    let code = format!(
        r#"
import http.client
c = http.client.HTTPConnection("{GATEWAY_IP}", 80, timeout=5)
c.request("HEAD", "/big.bin")
r = c.getresponse(); body = r.read()
print(r.status, r.getheader("Content-Length"), len(body))
c.request("GET", "/empty")
r = c.getresponse(); body = r.read()
print(r.status, len(body))
c.request("GET", "/index.html")
r = c.getresponse(); r.read(); etag = r.getheader("ETag")
c.request("GET", "/index.html", headers={{"If-None-Match": etag}})
r = c.getresponse(); body = r.read()
print(r.status, len(body), r.getheader("Via"))
"#
    );
    let out = lab.python(&code);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "200 3000000 0", "{out}");
    assert_eq!(lines[1], "204 0", "{out}");
    assert_eq!(lines[2], "304 0 1.1 xgate", "{out}");

    // ab with keep-alive: no failures; upstream connections are pooled (far fewer than requests).
    let before = lab.stats();
    let out = common::output(lab.exec("cli", "ab").args([
        "-q",
        "-k",
        "-n",
        "4000",
        "-c",
        "20",
        &format!("http://{GATEWAY_IP}/index.html"),
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Complete requests:      4000"), "{text}");
    assert!(text.contains("Failed requests:        0"), "{text}");
    assert!(!text.contains("Non-2xx"), "{text}");
    // The access log has a line per request, with route and status.
    let lines = lab.drain_events("access", Duration::from_millis(500));
    assert!(lines.len() >= 4000, "{} access lines", lines.len());
    assert!(lines.iter().any(|l| l["route"] == "site"
        && l["status"] == 200
        && l["upstream"] == format!("{BACKEND_IP}:8080")));
    let after = lab.stats();
    // Proxying allocates nothing per request (the access log's buffer is reserved at start).
    assert_eq!(
        after["lanes"][0]["heap_allocations"], before["lanes"][0]["heap_allocations"],
        "the lane allocated while proxying"
    );
    let connects = |v: &serde_json::Value| v["lanes"][0]["upstream_connects"].as_u64().unwrap();
    let new_connects = connects(&after) - connects(&before);
    assert!(
        new_connects <= 40,
        "4000 requests from 20 clients opened {new_connects} upstream connections"
    );
    let stopped = lab.stop_gateway();
    assert_eq!(stopped["ledger_violations"], 0);
    let _ = std::fs::remove_dir_all(&site);
    let _ = std::fs::remove_file(&big);
    let _ = std::fs::remove_file(&copy);
}

#[test]
fn bodies_stream_both_ways_with_forwarding_headers() {
    let mut lab = TestLab::new("pb");
    lab.start_backend(8081, "a");
    lab.append_config(&format!(
        r#"
[[upstream]]
name = "app"
members = ["{BACKEND_IP}:8081"]

[[route]]
upstream = "app"
"#
    ));
    lab.start_gateway();
    let url = |path: &str| format!("http://{GATEWAY_IP}{path}");

    // A 10 MB upload with Content-Length (curl sends Expect: 100-continue for it).
    let upload = random_file(&format!("{}-up.bin", lab.name), 10 * 1024 * 1024);
    let expected = sha256_of(&upload);
    let data = format!("@{}", upload.display());
    let (ok, out) = lab.curl(&["--data-binary", &data, "-w", " %{http_code}", &url("/sha")]);
    assert!(ok, "{out}");
    assert_eq!(
        out.trim(),
        format!("{} {expected}\n 200", 10 * 1024 * 1024).trim(),
        "{out}"
    );
    // The same upload chunked.
    let (ok, out) = lab.curl(&[
        "--data-binary",
        &data,
        "-H",
        "Transfer-Encoding: chunked",
        "-w",
        " %{http_code}",
        &url("/sha"),
    ]);
    assert!(ok, "{out}");
    assert_eq!(
        out.trim(),
        format!("{} {expected}\n 200", 10 * 1024 * 1024).trim(),
        "{out}"
    );
    let _ = std::fs::remove_file(&upload);

    // A chunked response, and a 20 MB one.
    let (ok, out) = lab.curl(&[&url("/chunked/50")]);
    assert!(
        ok && out.lines().count() == 50 && out.ends_with("chunk 49\n"),
        "{out}"
    );
    let (ok, out) = lab.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        &url("/big/20000000"),
    ]);
    assert!(ok && out == "200 20000000", "{out}");

    // Forwarding headers: X-Forwarded-For appended, X-Forwarded-Proto, Via, Host kept,
    // hop-by-hop fields (and those Connection names) removed.
    let (ok, out) = lab.curl(&[
        "-H",
        "X-Forwarded-For: 192.0.2.7",
        "-H",
        "Connection: keep-alive, X-Secret",
        "-H",
        "X-Secret: 1",
        "-H",
        "Keep-Alive: timeout=5",
        "-H",
        "Host: shop.example",
        &url("/headers"),
    ]);
    assert!(ok, "{out}");
    let lower = out.to_ascii_lowercase();
    assert!(lower.contains("x-forwarded-for: 192.0.2.7, 10.77.0.1"), "{out}");
    assert!(lower.contains("x-forwarded-proto: http"), "{out}");
    assert!(lower.contains("via: 1.1 xgate"), "{out}");
    assert!(lower.contains("host: shop.example"), "{out}");
    assert!(
        !lower.contains("x-secret") && !lower.contains("keep-alive: timeout"),
        "{out}"
    );

    // Pipelining: three requests in one write, three answers in order.
    let (text, _) = raw_exchange(
        &lab,
        b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\nGET /status/404 HTTP/1.1\r\nHost: a\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let statuses: Vec<&str> = text.lines().filter(|l| l.starts_with("HTTP/1.1")).collect();
    assert_eq!(
        statuses,
        ["HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found", "HTTP/1.1 200 OK"],
        "{text}"
    );

    // A slow reader: 20 MB read at a crawl for a while, then fully; nothing lost, and the
    // gateway holds no more than its socket buffers meanwhile (the lane allocates nothing).
    let before = lab.stats();
    let code = format!(
        r#"
import socket, time
s = socket.socket()
# Set before connecting, so the advertised window never exceeds the buffer.
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.settimeout(10)
s.connect(("{GATEWAY_IP}", 80))
s.sendall(b"GET /big/20000000 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
got = 0
for _ in range(20):
    got += len(s.recv(1024)); time.sleep(0.05)
while True:
    chunk = s.recv(1 << 20)
    if not chunk: break
    got += len(chunk)
print(got)
"#
    );
    let got: usize = lab.python(&code).trim().parse().unwrap();
    assert!(got > 20_000_000 && got < 20_000_400, "{got}");
    let after = lab.stats();
    assert_eq!(
        after["lanes"][0]["heap_allocations"],
        before["lanes"][0]["heap_allocations"]
    );
    lab.stop_gateway();
}

#[test]
fn upstream_faults_map_to_clear_answers_and_connect_failures_are_retried() {
    let mut lab = TestLab::new("pf");
    lab.start_backend(8081, "a");
    lab.append_config(&format!(
        r#"
[timeouts]
upstream_connect_ms = 500
upstream_response_ms = 1000

[[upstream]]
name = "app"
members = ["{BACKEND_IP}:8081"]

[[upstream]]
name = "refused"
members = ["{BACKEND_IP}:9"]

[[upstream]]
name = "unreachable"
members = ["10.77.0.99:80"]

[[upstream]]
name = "half-dead"
members = ["{BACKEND_IP}:9", "{BACKEND_IP}:8081"]
passive = {{ max_failures = 0 }}

[[route]]
path_prefix = "/refused"
upstream = "refused"

[[route]]
path_prefix = "/unreachable"
upstream = "unreachable"

[[route]]
path_prefix = "/hello"
host = "retry.example"
upstream = "half-dead"

[[route]]
upstream = "app"
"#
    ));
    lab.start_gateway();
    let url = |path: &str| format!("http://{GATEWAY_IP}{path}");
    let code = |lab: &TestLab, path: &str, extra: &[&str]| {
        let mut args = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        args.extend_from_slice(extra);
        let target = url(path);
        args.push(&target);
        lab.curl(&args)
    };
    // A refused connect to a pool's only member is tried once more on it, then 502.
    let before = lab.stats();
    assert_eq!(code(&lab, "/refused", &[]), (true, "502".into()));
    let after = lab.stats();
    let moved =
        |key: &str| after["lanes"][0][key].as_u64().unwrap() - before["lanes"][0][key].as_u64().unwrap();
    assert_eq!(
        (moved("upstream_retries"), moved("upstream_connect_failures")),
        (1, 2),
        "{before} {after}"
    );
    let started = Instant::now();
    assert_eq!(code(&lab, "/unreachable", &[]), (true, "502".into()));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(code(&lab, "/slow/3000", &[]), (true, "504".into()));
    assert_eq!(code(&lab, "/slow/100", &[]), (true, "200".into()));
    // Reset or cut mid-response: the client sees a failure, never a complete response.
    for path in ["/reset", "/truncate"] {
        let (ok, text) = code(&lab, path, &[]);
        assert!(!ok, "{path} looked complete: {text}");
    }
    // A body delimited by the upstream closing: complete, and the client connection closes.
    let (ok, body) = lab.curl(&[&url("/until-close")]);
    assert!(ok && body.len() == 1700, "{}", body.len());
    // Idempotent requests whose connect is refused move to the other member: all 200.
    for _ in 0..6 {
        assert_eq!(
            code(&lab, "/hello", &["-H", "Host: retry.example"]),
            (true, "200".into())
        );
    }
    // A POST is not retried: round robin puts one of two on the dead member.
    let posts: Vec<String> = (0..2)
        .map(|_| {
            code(
                &lab,
                "/hello",
                &["-H", "Host: retry.example", "-X", "POST", "-d", "x"],
            )
            .1
        })
        .collect();
    assert!(posts.contains(&"502".to_string()), "{posts:?}");
    let stats = lab.stats();
    assert!(
        stats["lanes"][0]["upstream_retries"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    // The gateway still serves.
    assert_eq!(code(&lab, "/hello", &[]), (true, "200".into()));
    let stopped = lab.stop_gateway();
    assert_eq!(stopped["ledger_violations"], 0);
}

#[test]
fn health_checks_eject_and_restore_members_and_an_empty_pool_answers_503_at_once() {
    let mut lab = TestLab::new("ph");
    lab.start_backend(8081, "a");
    let b = lab.start_backend(8082, "b");
    lab.append_config(&format!(
        r#"
[[upstream]]
name = "app"
members = ["{BACKEND_IP}:8081", "{BACKEND_IP}:8082"]
health = {{ path = "/hello", interval_ms = 200, timeout_ms = 150, rise = 2, fall = 2 }}
passive = {{ max_failures = 0 }}

[[upstream]]
name = "nobody"
members = ["{BACKEND_IP}:9"]
health = {{ path = "/", interval_ms = 200, timeout_ms = 150, rise = 2, fall = 1 }}

[[route]]
path_prefix = "/nobody"
upstream = "nobody"

[[route]]
upstream = "app"
"#
    ));
    lab.start_gateway();
    let who = |lab: &TestLab| -> Vec<String> {
        (0..10)
            .map(|_| lab.curl(&[&format!("http://{GATEWAY_IP}/hello")]).1)
            .collect()
    };
    std::thread::sleep(Duration::from_millis(600));
    let both = who(&lab);
    assert!(
        both.iter().any(|b| b == "hello from a\n") && both.iter().any(|b| b == "hello from b\n"),
        "{both:?}"
    );
    // b dies: after two failed checks it gets no more requests.
    lab.kill_backend(b);
    std::thread::sleep(Duration::from_millis(1200));
    let only_a = who(&lab);
    assert!(only_a.iter().all(|b| b == "hello from a\n"), "{only_a:?}");
    // b comes back: after two good checks it serves again.
    lab.start_backend(8082, "b");
    std::thread::sleep(Duration::from_millis(1200));
    let again = who(&lab);
    assert!(again.iter().any(|b| b == "hello from b\n"), "{again:?}");
    // A pool whose only member is down: 503 at once.
    let started = Instant::now();
    let (ok, code) = lab.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{GATEWAY_IP}/nobody"),
    ]);
    assert!(ok && code == "503", "{code}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    lab.stop_gateway();
}

#[test]
fn passive_ejection_leaves_out_a_failing_member_until_it_recovers() {
    let mut lab = TestLab::new("pp");
    lab.start_backend(8081, "a");
    lab.start_backend(8082, "b");
    lab.append_config(&format!(
        r#"
[[upstream]]
name = "app"
members = ["{BACKEND_IP}:8081", "{BACKEND_IP}:8082"]
passive = {{ max_failures = 2, eject_ms = 1500 }}

[[route]]
upstream = "app"
"#
    ));
    lab.start_gateway();
    let get = |path: &str| {
        lab.curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{GATEWAY_IP}{path}"),
        ])
        .1
    };
    let body = |path: &str| lab.curl(&[&format!("http://{GATEWAY_IP}{path}")]).1;
    // Every /status/500 fails on whichever member gets it: after two in a row one member is
    // ejected; the other, the last one eligible, is never ejected (every request would be a 503
    // then) and keeps answering.
    let codes: Vec<String> = (0..6).map(|_| get("/status/500")).collect();
    assert!(codes.iter().all(|c| c == "500"), "{codes:?}");
    let left: Vec<String> = (0..4).map(|_| body("/hello")).collect();
    assert!(
        left.iter().all(|b| b == &left[0]) && left[0].starts_with("hello from "),
        "one member serves while the other is out: {left:?}"
    );
    // After the ejection time both serve again.
    std::thread::sleep(Duration::from_millis(1700));
    let both: std::collections::HashSet<String> = (0..4).map(|_| body("/hello")).collect();
    assert_eq!(both.len(), 2, "{both:?}");
    lab.stop_gateway();
}

#[test]
fn smuggling_patterns_and_limits_are_refused_and_slow_clients_timed_out() {
    let mut lab = TestLab::new("ps");
    lab.start_backend(8081, "a");
    lab.edit_config(|c| {
        c.replace(
            "[http]\n",
            "[http]\nmax_body = 100000\nmax_request_line = 1024\nmax_headers = 20\n",
        )
    });
    lab.append_config(&format!(
        r#"
[timeouts]
header_read_ms = 600
keepalive_idle_ms = 800

[[upstream]]
name = "app"
members = ["{BACKEND_IP}:8081"]

[[route]]
upstream = "app"
"#
    ));
    lab.start_gateway();
    let cases: &[(&str, &[u8], &str)] = &[
        ("CL with TE", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"),
        ("differing CLs", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", "400"),
        ("TE not chunked", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc", "400"),
        ("TE chunked twice", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", "400"),
        ("TE in HTTP/1.0", b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"),
        ("invalid chunk size", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", "400"),
        ("0x chunk size", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n", "400"),
        ("obs-fold", b"GET /hello HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", "400"),
        ("space before colon", b"GET /hello HTTP/1.1\r\nHost : a\r\n\r\n", "400"),
        ("bare LF", b"GET /hello HTTP/1.1\nHost: a\r\n\r\n", "400"),
        ("bare CR", b"GET /hello HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", "400"),
        ("long request line", &[b"GET /".as_slice(), &[b'a'; 2000], b" HTTP/1.1\r\nHost: a\r\n\r\n"].concat(), "414"),
        ("too many headers", &[b"GET /hello HTTP/1.1\r\nHost: a\r\n".as_slice(), &b"X-H: v\r\n".repeat(30), b"\r\n"].concat(), "431"),
        ("huge head", &[b"GET /hello HTTP/1.1\r\nHost: a\r\nX-Big: ".as_slice(), &[b'b'; 9000], b"\r\n\r\n"].concat(), "431"),
        ("body over max_body", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100001\r\n\r\nabc", "413"),
        ("chunked over max_body", &[b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n30000\r\n".as_slice(), &[b'x'; 0x30000], b"\r\n0\r\n\r\n"].concat(), "413"),
        ("unknown expectation", b"GET /hello HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", "417"),
    ];
    for (name, request, status) in cases {
        let (text, closed) = raw_exchange(&lab, request);
        assert!(
            status_line(&text).starts_with(&format!("HTTP/1.1 {status}")),
            "{name}: {}",
            status_line(&text)
        );
        assert!(closed, "{name}: connection left open after a refusal");
        assert_eq!(
            text.matches("HTTP/1.1").count(),
            1,
            "{name}: more than one response: {text}"
        );
    }
    // A well-formed chunked upload passes, trailers and extensions included.
    let (text, _) = raw_exchange(
        &lab,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    assert!(
        status_line(&text).contains("200") && text.contains("X-Body-Length: 5"),
        "{text}"
    );
    // A head that never ends: 408 after header_read_ms, then close.
    let started = Instant::now();
    let (text, closed) = raw_exchange(&lab, b"GET /hello HTTP/1.1\r\nHost: a\r\n");
    assert!(status_line(&text).contains("408") && closed, "{text}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    // An idle keep-alive connection is closed after keepalive_idle_ms.
    let code = format!(
        r#"
import socket, time
s = socket.create_connection(("{GATEWAY_IP}", 80), timeout=5)
s.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
time.sleep(0.3)
first = s.recv(65536)
t = time.time()
rest = s.recv(65536)
print(first.split(b"\r\n")[0].decode(), len(rest), round(time.time() - t, 1))
"#
    );
    let out = lab.python(&code);
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields[..4], ["HTTP/1.1", "200", "OK", "0"], "{out}");
    let waited: f64 = fields[4].parse().unwrap();
    assert!(waited < 2.0, "{out}");
    lab.stop_gateway();
}

#[test]
fn reload_under_load_loses_no_request_and_a_bad_config_is_refused() {
    let mut lab = TestLab::new("pr");
    lab.start_backend(8081, "a");
    let base = std::fs::read_to_string(&lab.config_path).unwrap();
    let routes = format!(
        r#"
[[upstream]]
name = "app"
members = ["{BACKEND_IP}:8081"]

[[route]]
upstream = "app"
"#
    );
    lab.append_config(&routes);
    lab.start_gateway();
    let ab = lab
        .exec("cli", "ab")
        .args([
            "-q",
            "-k",
            "-n",
            "6000",
            "-c",
            "10",
            &format!("http://{GATEWAY_IP}/hello"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // A new route in front, under load.
    std::fs::write(
        &lab.config_path,
        format!(
            "{base}\n[[route]]\npath_prefix = \"/new\"\nanswer = {{ status = 200, body = \"new route\\n\" }}\n{routes}"
        ),
    )
    .unwrap();
    lab.signal_gateway(libc::SIGHUP);
    let event = lab.wait_event("reload", Duration::from_secs(5));
    assert_eq!(event["ok"], true, "{event}");
    let out = ab.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Complete requests:      6000"), "{text}");
    assert!(
        text.contains("Failed requests:        0") && !text.contains("Non-2xx"),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(lab.curl(&[&format!("http://{GATEWAY_IP}/new")]).1, "new route\n");
    // A broken file is refused; the running routing stays.
    std::fs::write(
        &lab.config_path,
        format!("{base}\n[[route]]\nupstream = \"missing\"\n"),
    )
    .unwrap();
    lab.signal_gateway(libc::SIGHUP);
    let event = lab.wait_event("reload", Duration::from_secs(5));
    assert_eq!(event["ok"], false, "{event}");
    assert!(
        event["error"].as_str().unwrap().contains("route[0].upstream"),
        "{event}"
    );
    assert_eq!(lab.curl(&[&format!("http://{GATEWAY_IP}/new")]).1, "new route\n");
    assert_eq!(
        lab.curl(&[&format!("http://{GATEWAY_IP}/hello")]).1,
        "hello from a\n"
    );
    lab.stop_gateway();
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_and_detaches() {
    let mut lab = TestLab::new("pd");
    lab.start_backend(8081, "a");
    lab.append_config(&format!(
        r#"
[timeouts]
drain_ms = 5000

[[upstream]]
name = "app"
members = ["{BACKEND_IP}:8081"]

[[route]]
upstream = "app"
"#
    ));
    lab.start_gateway();
    // Three slow requests in flight when SIGTERM comes.
    let slow: Vec<_> = (0..3)
        .map(|_| {
            lab.exec("cli", "curl")
                .args([
                    "-sS",
                    "-m",
                    "10",
                    "-w",
                    " %{http_code}",
                    &format!("http://{GATEWAY_IP}/slow/1500"),
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    lab.signal_gateway(libc::SIGTERM);
    lab.wait_event("draining", Duration::from_secs(2));
    // New connections are refused while draining.
    std::thread::sleep(Duration::from_millis(200));
    let (ok, _) = lab.curl(&["-o", "/dev/null", &format!("http://{GATEWAY_IP}/hello")]);
    assert!(!ok, "a new connection was accepted while draining");
    for child in slow {
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "slow\n 200");
    }
    let drained = lab.wait_event("drained", Duration::from_secs(6));
    assert_eq!(drained["in_flight_left"], 0, "{drained}");
    let (status, stopped) = lab.stop_gateway_with(libc::SIGTERM);
    assert!(status.success());
    assert!(stopped.is_some());
    assert!(!lab.xdp_attached(), "XDP still attached after the drain");
}

#[test]
fn two_lanes_proxy_with_replies_landing_on_either_lane() {
    let mut lab = TestLab::with_queues("p2", 2);
    lab.start_backend(8081, "a");
    lab.edit_config(|c| c.replace("listen_port = 80\n", "listen_port = 80\nlanes = 2\n"));
    lab.append_config(&format!(
        r#"
[[upstream]]
name = "app"
members = ["{BACKEND_IP}:8081"]
max_idle = 4

[[route]]
upstream = "app"
"#
    ));
    lab.start_gateway();
    // Many short connections: both lanes take clients and open upstream connections, whose
    // replies the switch spreads over both queues by its own hash.
    let out = common::output(lab.exec("cli", "ab").args([
        "-q",
        "-n",
        "1500",
        "-c",
        "30",
        &format!("http://{GATEWAY_IP}/hello"),
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Complete requests:      1500"), "{text}");
    assert!(
        text.contains("Failed requests:        0") && !text.contains("Non-2xx"),
        "{text}"
    );
    let stats = lab.stats();
    for lane in 0..2 {
        let values = &stats["lanes"][lane];
        assert!(values["requests"].as_u64().unwrap() > 0, "{stats}");
        assert!(values["upstream_connects"].as_u64().unwrap() > 0, "{stats}");
    }
    let stopped = lab.stop_gateway();
    assert_eq!(stopped["ledger_violations"], 0);
    assert_eq!(stopped["frames"]["Lent"], 0, "{stopped}");
}

/// GETs `path` from the management listener in the gateway namespace (curl on its loopback).
fn management(lab: &TestLab, path: &str) -> String {
    let out = common::output(lab.exec("gw", "curl").args([
        "-sS",
        "--max-time",
        "5",
        &format!("http://127.0.0.1:9180{path}"),
    ]));
    assert!(
        out.status.success(),
        "{path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of sample `key` (`name{labels}` as written) in Prometheus text, if present.
fn sample(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn request_phases_time_a_slow_upstreams_first_byte_and_direct_routes_have_no_upstream_phases() {
    let mut lab = TestLab::new("pq");
    lab.start_backend(8081, "a");
    lab.append_config(&format!(
        r#"
[[upstream]]
name = "app"
members = ["{BACKEND_IP}:8081"]

[[route]]
name = "status"
path_prefix = "/healthz"
answer = {{ status = 200, body = "ok\n" }}

[[route]]
name = "slow"
upstream = "app"
"#
    ));
    lab.start_gateway();
    // The backend waits 200 ms before its response head; five requests, one connection each
    // (the first opens the upstream connection, the others find it idle).
    for _ in 0..5 {
        let (ok, code) = lab.curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{GATEWAY_IP}/slow/200"),
        ]);
        assert!(ok && code == "200", "{code}");
    }
    for _ in 0..10 {
        let (ok, code) = lab.curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{GATEWAY_IP}/healthz"),
        ]);
        assert!(ok && code == "200", "{code}");
    }

    let text = management(&lab, "/metrics");
    let family = "xgate_http_request_phase_seconds";
    // `_count` or `_sum` of a route's phase.
    let get = |route: &str, phase: &str, suffix: &str| {
        sample(
            &text,
            &format!("{family}_{suffix}{{route=\"{route}\",phase=\"{phase}\"}}"),
        )
    };
    let bucket = |route: &str, phase: &str, le: &str| {
        sample(
            &text,
            &format!("{family}_bucket{{route=\"{route}\",phase=\"{phase}\",le=\"{le}\"}}"),
        )
        .unwrap_or_else(|| panic!("no {route} {phase} bucket {le}: {text}"))
    };
    let count = |route: &str, phase: &str| get(route, phase, "count");
    for phase in [
        "head_read",
        "upstream_wait",
        "upstream_first_byte",
        "response_write",
    ] {
        assert_eq!(count("slow", phase), Some(5.0), "{phase}: {text}");
    }
    // Every first byte took at least 200 ms: none in the buckets up to 131 ms, a mean of 200+.
    assert_eq!(bucket("slow", "upstream_first_byte", "0.131072"), 0.0, "{text}");
    let first_byte_sum = get("slow", "upstream_first_byte", "sum").unwrap();
    assert!(first_byte_sum >= 5.0 * 0.2, "sum {first_byte_sum} s");
    assert!(first_byte_sum < 5.0 * 1.0, "sum {first_byte_sum} s");
    // The heads were read in far less (each well under 65 ms; under load the lane may wait).
    assert_eq!(bucket("slow", "head_read", "0.065536"), 5.0, "{text}");
    assert!(get("slow", "head_read", "sum").unwrap() < 0.1, "{text}");
    // The direct route: head read and response write, no upstream phase.
    assert_eq!(count("status", "head_read"), Some(10.0), "{text}");
    assert_eq!(count("status", "response_write"), Some(10.0), "{text}");
    assert_eq!(bucket("status", "head_read", "0.065536"), 10.0, "{text}");
    assert!(
        !text.contains("route=\"status\",phase=\"upstream"),
        "a direct route has no upstream phases: {text}"
    );

    // `/top`: per route p50/p99 of each phase it recorded.
    let top: serde_json::Value = serde_json::from_str(&management(&lab, "/top")).unwrap();
    let route = |name: &str| {
        top["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == name)
            .unwrap_or_else(|| panic!("no route {name}: {top}"))
            .clone()
    };
    let slow = route("slow");
    let first_byte = &slow["phases"]["upstream_first_byte"];
    assert!(first_byte["p50_us"].as_u64().unwrap() >= 200_000, "{slow}");
    assert!(
        slow["phases"]["head_read"]["p99_us"].as_u64().unwrap() <= 65_536,
        "{slow}"
    );
    let status = route("status");
    assert_eq!(status["requests"], 10, "{status}");
    let phases: Vec<&String> = status["phases"].as_object().unwrap().keys().collect();
    assert_eq!(phases, ["head_read", "response_write"], "{status}");

    // `xgate top` shows both routes.
    let out = common::output(
        lab.exec("gw", common::XGATE)
            .args(["top", "--iterations", "1", "--plain"]),
    );
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    let row = |name: &str| {
        screen
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name}: {screen}"))
            .split_whitespace()
            .count()
    };
    assert_eq!(row("slow"), 7, "{screen}");
    assert_eq!(row("status"), 7, "{screen}");
    let stopped = lab.stop_gateway();
    assert_eq!(stopped["ledger_violations"], 0);
}

/// A pool's `max_in_flight` holds requests back in a bounded queue: with one request in flight
/// at a time and room for two waiting, four requests at once to a backend that takes 1 s get
/// three 200s, one after the other, and one 503 at once (the queue was full); a request that
/// waits longer than `queue_timeout_ms` gets 503.
#[test]
fn a_pool_at_its_in_flight_limit_queues_requests_then_answers_503() {
    let mut lab = TestLab::new("queue");
    lab.start_backend(8081, "a");
    lab.append_config(&format!(
        r#"
[[upstream]]
name = "narrow"
members = ["{BACKEND_IP}:8081"]
max_in_flight = 1
max_queued = 2
queue_timeout_ms = 2500

[[route]]
upstream = "narrow"
"#
    ));
    lab.start_gateway();
    let script = format!(
        r#"
import threading, time, urllib.request, urllib.error
results = []
def fetch(path):
    start = time.time()
    try:
        with urllib.request.urlopen("http://{GATEWAY_IP}" + path, timeout=20) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as e:
        status = e.code
    results.append((status, time.time() - start))
def burst(paths):
    threads = []
    for path in paths:
        t = threading.Thread(target=fetch, args=(path,))
        t.start()
        threads.append(t)
        time.sleep(0.05)
    for t in threads:
        t.join()
burst(["/slow/1000"] * 4)
print(" ".join(f"{{s}}:{{d:.2f}}" for s, d in sorted(results)))
results.clear()
burst(["/slow/3000", "/slow/100"])
print(" ".join(f"{{s}}:{{d:.2f}}" for s, d in sorted(results)))
"#
    );
    let out = lab.python(&script);
    let mut lines = out.lines();
    let parse = |line: &str| -> Vec<(u16, f64)> {
        line.split_whitespace()
            .map(|pair| {
                let (status, seconds) = pair.split_once(':').unwrap();
                (status.parse().unwrap(), seconds.parse().unwrap())
            })
            .collect()
    };
    let first = parse(lines.next().unwrap());
    let statuses: Vec<u16> = first.iter().map(|&(s, _)| s).collect();
    assert_eq!(statuses, [200, 200, 200, 503], "{out}");
    let (_, unavailable_after) = first[3];
    assert!(unavailable_after < 0.5, "a full queue answers at once: {out}");
    let mut served: Vec<f64> = first[..3].iter().map(|&(_, d)| d).collect();
    served.sort_by(f64::total_cmp);
    assert!(
        served[2] >= 2.8,
        "one in flight at a time: the third waited for two: {out}"
    );
    // The second request waits behind a 3 s one longer than the queue's 2.5 s: 503.
    let second = parse(lines.next().unwrap());
    assert_eq!(
        second.iter().map(|&(s, _)| s).collect::<Vec<_>>(),
        [200, 503],
        "{out}"
    );
    let stats = lab.stats();
    let lane = &stats["lanes"][0];
    assert_eq!(lane["upstream_queue_full"], 1, "{stats}");
    assert_eq!(lane["upstream_queue_timeouts"], 1, "{stats}");
    assert_eq!(lane["upstream_queued"], 3, "{out} {stats}");
    lab.stop_gateway();
}
