//! HTTPS on the lanes, with real clients in the lab: curl, openssl s_client, h2load and Python's
//! ssl module complete requests over TLS 1.3 and 1.2; SNI picks the right one of three
//! certificates; sessions resume (TLS 1.2 ids and tickets, TLS 1.3 tickets); a proxied download
//! is byte-exact over TLS; and bad input (bytes that are no TLS, an unknown name with
//! `refuse_unknown_names`, a handshake that never comes) has its outcome and its counter.

mod common;

use std::{path::PathBuf, time::Duration};

use common::{output, TestLab, BACKEND_IP, GATEWAY_IP};

/// Three self-signed ECDSA P-256 certificates (`a.test`, `b.test`, `*.c.test`), their keys
/// readable by their owner only, in a directory removed on drop.
struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    fn make(tag: &str) -> Certificates {
        let dir = std::env::temp_dir().join(format!("xgate-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let certs = Certificates { dir };
        for name in ["a", "b", "c"] {
            certs.issue(name);
        }
        certs
    }

    /// A new key and certificate for `name.test`, as `name.pem` and `name.key` (a renewal when
    /// they exist: written beside them and renamed over them).
    fn issue(&self, name: &str) {
        use std::os::unix::fs::PermissionsExt;
        let key = self.dir.join(format!("{name}.key.new"));
        let pem = self.dir.join(format!("{name}.pem.new"));
        let out = output(
            std::process::Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&pem)
                .args(["-days", "30", "-subj", &format!("/CN={name}.test")])
                .args([
                    "-addext",
                    &format!("subjectAltName=DNS:{name}.test,DNS:*.{name}.test"),
                ]),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&key, self.dir.join(format!("{name}.key"))).unwrap();
        std::fs::rename(&pem, self.dir.join(format!("{name}.pem"))).unwrap();
    }

    fn pem(&self, name: &str) -> String {
        self.dir.join(format!("{name}.pem")).display().to_string()
    }

    /// The `[tls]` section: a.test, b.test (the default) and *.c.test.
    fn config(&self, extra: &str) -> String {
        let entry = |name: &str, names: &str, default: bool| {
            format!(
                "[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\nnames = [{names}]\ndefault = {default}\n\n",
                self.pem(name),
                self.dir.join(format!("{name}.key")).display()
            )
        };
        format!(
            "[tls]\nhandshake_timeout_ms = 1000\n{extra}\n{}{}{}",
            entry("a", "\"a.test\"", false),
            entry("b", "\"b.test\"", true),
            entry("c", "\"*.c.test\"", false)
        )
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// curl over HTTPS to `name` (resolved to the gateway), trusting `ca`: (status, verify result).
fn https_get(lab: &TestLab, name: &str, ca: &str, extra: &[&str]) -> (bool, String) {
    let resolve = format!("{name}:443:{GATEWAY_IP}");
    let url = format!("https://{name}/healthz");
    let mut args = vec![
        "--cacert",
        ca,
        "--resolve",
        &resolve,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{ssl_verify_result}",
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    lab.curl(&args)
}

/// The lane's TLS counters, summed over lanes, from a stats event.
fn tls_count(lab: &mut TestLab, key: &str) -> u64 {
    let stats = lab.stats();
    stats["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|lane| lane[key].as_u64().unwrap_or_else(|| panic!("no {key} in {lane}")))
        .sum()
}

#[test]
fn clients_complete_requests_over_tls_with_the_certificate_their_name_asks_for() {
    let certs = Certificates::make("sni");
    let mut lab = TestLab::new("tl");
    lab.append_config(&certs.config(""));
    lab.start_gateway();

    // SNI: each name gets its certificate (verified against it alone); an unknown name gets the
    // default (b), which does not verify for that name.
    for (name, ca) in [("a.test", "a"), ("b.test", "b"), ("x.c.test", "c")] {
        assert_eq!(
            https_get(&lab, name, &certs.pem(ca), &[]),
            (true, "200 0".to_string()),
            "{name}"
        );
    }
    let (ok, _) = https_get(&lab, "unknown.test", &certs.pem("b"), &[]);
    assert!(
        !ok,
        "the default certificate is b.test's: no match for unknown.test"
    );
    let subject = output(
        lab.exec("cli", "openssl")
            .args([
                "s_client",
                "-connect",
                &format!("{GATEWAY_IP}:443"),
                "-servername",
                "unknown.test",
            ])
            .stdin(std::process::Stdio::null()),
    );
    assert!(
        String::from_utf8_lossy(&subject.stdout).contains("CN = b.test"),
        "{}",
        String::from_utf8_lossy(&subject.stdout)
    );
    // h2load (HTTP/1.1 over TLS): 2,000 requests on 10 connections.
    let h2load = output(
        lab.exec("cli", "h2load")
            .args(["--h1", "-n", "2000", "-c", "10"])
            .arg(format!("https://{GATEWAY_IP}/healthz")),
    );
    let text = String::from_utf8_lossy(&h2load.stdout);
    assert!(
        text.contains("2000 succeeded, 0 failed, 0 errored, 0 timeout") && text.contains("2000 2xx"),
        "{text}"
    );
    // TLS 1.2 too.
    assert_eq!(
        https_get(&lab, "a.test", &certs.pem("a"), &["--tls-max", "1.2"]),
        (true, "200 0".to_string())
    );
    assert!(tls_count(&mut lab, "tls12_full") >= 1);
    assert!(tls_count(&mut lab, "tls13_full") >= 4);

    // Resumption: TLS 1.2 (openssl s_client -reconnect: one new session, five reused) and
    // TLS 1.3 tickets (Python's ssl module, the session of the first connection).
    let reconnect = output(
        lab.exec("cli", "openssl")
            .args([
                "s_client",
                "-tls1_2",
                "-reconnect",
                "-connect",
                &format!("{GATEWAY_IP}:443"),
            ])
            .args(["-servername", "a.test", "-CAfile", &certs.pem("a")])
            .stdin(std::process::Stdio::null()),
    );
    let text = String::from_utf8_lossy(&reconnect.stdout);
    assert_eq!(text.matches("\nReused, TLSv1.2").count(), 5, "{text}");
    let resumed = lab.python(&format!(
        r#"
import socket, ssl
ctx = ssl.create_default_context(cafile="{}")
session = None
for i in range(3):
    s = ctx.wrap_socket(socket.create_connection(("{GATEWAY_IP}", 443), timeout=5), server_hostname="a.test", session=session)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: a.test\r\n\r\n")
    head = s.recv(4096).split(b"\r\n")[0].decode()
    print(s.version(), s.session_reused, head)
    session = s.session
    s.close()
"#,
        certs.pem("a")
    ));
    assert_eq!(
        resumed.lines().collect::<Vec<_>>(),
        [
            "TLSv1.3 False HTTP/1.1 200 OK",
            "TLSv1.3 True HTTP/1.1 200 OK",
            "TLSv1.3 True HTTP/1.1 200 OK"
        ],
        "{resumed}"
    );
    assert!(tls_count(&mut lab, "tls12_resumed") >= 5);
    assert!(tls_count(&mut lab, "tls13_resumed") >= 2);
    // Plain HTTP beside it, on port 80.
    assert_eq!(lab.healthz_status(), Ok("200".to_string()));
    // Each certificate's time to expiry (30 days from now) in the metrics, and the doctor's
    // view of them.
    let samples = common::scrape(&lab);
    let expiry: Vec<f64> = samples
        .iter()
        .filter(|(key, _)| key.starts_with("xgate_tls_certificate_expiry_seconds{"))
        .map(|(_, value)| *value)
        .collect();
    assert_eq!(expiry.len(), 3, "{samples:?}");
    // Every completed handshake (2,000 from h2load's 10 connections, curl's, openssl's,
    // Python's) is in the TLS handshake histogram.
    let handshakes = common::metric(&samples, "xgate_tls_handshake_duration_seconds_count{}");
    let counted: u64 = ["tls13_full", "tls13_resumed", "tls12_full", "tls12_resumed"]
        .iter()
        .map(|key| tls_count(&mut lab, key))
        .sum();
    assert!(
        handshakes >= 20.0 && handshakes <= counted as f64,
        "{handshakes} of {counted}"
    );
    assert!(
        expiry
            .iter()
            .all(|&s| (29.0 * 86_400.0..=30.0 * 86_400.0).contains(&s)),
        "{expiry:?}"
    );
    let doctor = output(
        lab.exec("gw", common::XGATE)
            .args(["doctor", "--json", "--config"])
            .arg(&lab.config_path),
    );
    let findings: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let tls = findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "tls")
        .expect("a tls finding")
        .clone();
    assert_eq!(tls["level"], "pass", "{tls}");
    // 30 days less the seconds since the certificates were made: 29 or 30 whole days.
    let detail = tls["detail"].as_str().unwrap();
    assert!(
        detail == "3 certificate(s), the first to expire in 29 days"
            || detail == "3 certificate(s), the first to expire in 30 days",
        "{tls}"
    );
}

#[test]
fn bad_input_on_the_tls_port_has_its_outcome_and_its_counter() {
    let certs = Certificates::make("bad");
    let mut lab = TestLab::new("tb");
    lab.append_config(&certs.config("refuse_unknown_names = true"));
    lab.start_gateway();
    // Plaintext HTTP on the TLS port: not TLS, an alert, the connection closed.
    let (answer, closed) = common::raw_exchange_on(&lab, 443, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    // A TLS alert record (content type 21), then the close.
    assert!(closed && answer.starts_with('\u{15}'), "{answer:?}");
    assert_eq!(tls_count(&mut lab, "tls_failed_not_tls"), 1);
    // An unknown name, refused.
    let (ok, _) = https_get(&lab, "unknown.test", &certs.pem("b"), &[]);
    assert!(!ok);
    assert_eq!(tls_count(&mut lab, "tls_failed_unknown_name"), 1);
    // A ClientHello that never comes: reset after tls.handshake_timeout_ms (1 s).
    let stalled = lab.python(&format!(
        r#"
import socket, time
s = socket.create_connection(("{GATEWAY_IP}", 443), timeout=10)
start = time.monotonic()
try:
    print(repr(s.recv(10)), round(time.monotonic() - start))
except ConnectionResetError:
    print("reset", round(time.monotonic() - start))
"#
    ));
    let (outcome, seconds) = stalled.trim().split_once(' ').unwrap();
    assert!(outcome == "reset" || outcome == "b''", "{stalled}");
    let seconds: u64 = seconds.parse().unwrap();
    assert!((1..=3).contains(&seconds), "{stalled}");
    assert_eq!(tls_count(&mut lab, "tls_handshake_timeouts"), 1);
    // And the names it knows still work.
    assert_eq!(
        https_get(&lab, "a.test", &certs.pem("a"), &[]),
        (true, "200 0".to_string())
    );
    let stopped = lab.stop_gateway();
    assert_eq!(stopped["ledger_violations"], 0, "{stopped}");
}

#[test]
fn a_proxied_download_over_tls_is_byte_exact() {
    let certs = Certificates::make("px");
    let mut lab = TestLab::new("tp");
    let root = std::env::temp_dir().join(format!("xgate-tls-root-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let body: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(root.join("big.bin"), &body).unwrap();
    lab.start_nginx_backend(8080, &root);
    lab.append_config(&format!(
        "[[upstream]]\nname = \"files\"\nmembers = [\"{BACKEND_IP}:8080\"]\n\n[[route]]\nupstream = \"files\"\n\n{}",
        certs.config("")
    ));
    lab.start_gateway();
    let out = output(
        lab.exec("cli", "curl")
            .args(["-sS", "--max-time", "60", "--cacert", &certs.pem("a")])
            .args(["--resolve", &format!("a.test:443:{GATEWAY_IP}")])
            .args(["-o", "-", "https://a.test/big.bin"]),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), body.len());
    assert!(out.stdout == body, "the body differs");
    std::thread::sleep(Duration::from_millis(100));
    let stopped = lab.stop_gateway();
    assert_eq!(stopped["ledger_violations"], 0, "{stopped}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_renewed_certificate_is_taken_on_reload_under_load_without_a_failed_request() {
    let certs = Certificates::make("rl");
    let mut lab = TestLab::new("tr");
    lab.append_config(&certs.config(""));
    lab.start_gateway();
    let fingerprint = |lab: &TestLab| {
        let out = output(lab.exec("cli", "bash").arg("-c").arg(format!(
            "openssl s_client -connect {GATEWAY_IP}:443 -servername b.test </dev/null 2>/dev/null \
             | openssl x509 -noout -fingerprint -sha256"
        )));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let before = fingerprint(&lab);
    assert!(before.contains("Fingerprint"), "{before}");
    // ab keeps 10 connections busy (no SNI: the default certificate, b.test's) while b.test's
    // certificate and key are renewed and the gateway reloads.
    let ab = lab
        .exec("cli", "ab")
        .args(["-k", "-q", "-n", "40000", "-c", "10", "-s", "10"])
        .arg(format!("https://{GATEWAY_IP}/healthz"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    certs.issue("b");
    lab.signal_gateway(libc::SIGHUP);
    let reload = lab.wait_event("reload", Duration::from_secs(5));
    assert_eq!(reload["ok"], true, "{reload}");
    assert_eq!(reload["restart_needed_for_other_keys"], false, "{reload}");
    let out = ab.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("Complete requests:      40000"), "{report}");
    assert!(report.contains("Failed requests:        0"), "{report}");
    assert!(!report.contains("Non-2xx"), "{report}");
    // New connections get the renewed certificate.
    let after = fingerprint(&lab);
    assert!(
        after.contains("Fingerprint") && after != before,
        "{before} / {after}"
    );
}

#[test]
fn routes_redirect_plain_http_to_https_add_hsts_and_tell_the_upstream() {
    let certs = Certificates::make("rd");
    let mut lab = TestLab::new("th");
    lab.start_backend(8081, "a");
    lab.append_config(&format!(
        r#"[[upstream]]
name = "app"
members = ["{BACKEND_IP}:8081"]

[[route]]
path_prefix = "/headers"
upstream = "app"
hsts_max_age = 600

[[route]]
path_prefix = "/"
https_redirect = true
answer = {{ status = 200, body = "secure\n" }}

{}"#,
        certs.config("")
    ));
    lab.start_gateway();
    // Plain HTTP on a redirecting route: 301 to the same host and target on HTTPS.
    let (ok, head) = lab.curl(&[
        "-sS",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://{GATEWAY_IP}/page?x=1"),
        "-H",
        "Host: a.test",
    ]);
    assert!(ok, "{head}");
    assert!(head.starts_with("HTTP/1.1 301"), "{head}");
    assert!(head.contains("Location: https://a.test/page?x=1\r\n"), "{head}");
    // curl follows it over TLS.
    let resolve = format!("a.test:443:{GATEWAY_IP}");
    let resolve_http = format!("a.test:80:{GATEWAY_IP}");
    let (ok, body) = lab.curl(&[
        "-L",
        "--cacert",
        &certs.pem("a"),
        "--resolve",
        &resolve,
        "--resolve",
        &resolve_http,
        "http://a.test/page?x=1",
    ]);
    assert!(ok, "{body}");
    assert_eq!(body, "secure\n");
    // Over TLS, a proxied route: the upstream is told https, the client gets HSTS.
    let (ok, out) = lab.curl(&[
        "-D",
        "-",
        "--cacert",
        &certs.pem("a"),
        "--resolve",
        &resolve,
        "https://a.test/headers",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Strict-Transport-Security: max-age=600\r\n"),
        "{out}"
    );
    assert!(out.contains("X-Forwarded-Proto: https"), "{out}");
    // Plain HTTP to the proxied route: no HSTS, and http upstream.
    let (ok, out) = lab.curl(&["-D", "-", &format!("http://{GATEWAY_IP}/headers")]);
    assert!(ok, "{out}");
    assert!(!out.contains("Strict-Transport-Security"), "{out}");
    assert!(
        out.contains("X-Forwarded-Proto: http\r\n") || out.contains("X-Forwarded-Proto: http\n"),
        "{out}"
    );
}
