//! Test harness for xgate's lab tests: a lab with a unique name per test, the gateway running in
//! it, and commands in its namespaces. Everything is removed on drop, also when a test fails.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc::{channel, Receiver},
    },
    time::{Duration, Instant},
};

pub const GATEWAY_IP: &str = "10.77.0.2";
pub const GATEWAY_HOST_IP: &str = "10.77.0.3";
pub const BACKEND_IP: &str = "10.77.0.4";
pub const XGATE: &str = env!("CARGO_BIN_EXE_xgate");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Fails the test with a clear message unless running as root (the lab needs it).
pub fn require_root() {
    assert!(
        xgate_gateway::sys::is_root(),
        "xgate's lab tests create network namespaces and attach XDP: run them as root"
    );
}

/// A unique lab name for this test process and call.
pub fn unique_name(tag: &str) -> String {
    format!(
        "xgt{}-{}{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::SeqCst),
        tag
    )
}

pub fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// A lab with (optionally) xgate running in its gateway namespace.
pub struct TestLab {
    /// Held while the lab lives: shared for ordinary labs, exclusive for those that depend on
    /// the host's hugepage reservation (see [`hugepage_lock`]).
    _hugepage_lock: std::fs::File,
    pub name: String,
    pub config_path: PathBuf,
    gateway: Option<Child>,
    /// Servers started in the backend namespace (killed and reaped on drop).
    backends: Vec<Child>,
    stdout: Option<Receiver<String>>,
    stderr_path: PathBuf,
}

impl TestLab {
    /// Creates the lab `unique_name(tag)` and writes its gateway config.
    pub fn new(tag: &str) -> TestLab {
        Self::with_lock(tag, hugepage_lock(libc::LOCK_SH))
    }

    /// A lab that has the host's hugepages to itself: no other lab's gateway runs meanwhile
    /// (gateways take free hugepages for their UMEM).
    pub fn with_hugepages_to_itself(tag: &str) -> TestLab {
        Self::with_lock(tag, hugepage_lock(libc::LOCK_EX))
    }

    /// A lab whose veths have `queues` rx/tx queues each (for more than one lane).
    pub fn with_queues(tag: &str, queues: u32) -> TestLab {
        Self::build(tag, hugepage_lock(libc::LOCK_SH), queues)
    }

    fn with_lock(tag: &str, lock: std::fs::File) -> TestLab {
        Self::build(tag, lock, 1)
    }

    fn build(tag: &str, lock: std::fs::File, queues: u32) -> TestLab {
        require_root();
        let name = unique_name(tag);
        let config_path = std::env::temp_dir().join(format!("{name}.toml"));
        let stderr_path = std::env::temp_dir().join(format!("{name}.stderr"));
        // The lab crate, linked directly: the namespaces, and the gateway config they are made for.
        let up = xgate_lab::Lab::new(&name).and_then(|mut lab| {
            lab.queues = queues;
            lab.up()
        });
        std::fs::write(&config_path, xgate_lab::gateway_config().to_toml()).unwrap();
        let lab = TestLab {
            _hugepage_lock: lock,
            name,
            config_path,
            gateway: None,
            backends: Vec::new(),
            stdout: None,
            stderr_path,
        };
        if let Err(error) = up {
            panic!("lab up failed: {error}");
        }
        lab
    }

    pub fn netns(&self, host: &str) -> String {
        format!("{}-{host}", self.name)
    }

    /// A command run in the namespace `host` (`cli`, `gw`, `be`).
    pub fn exec(&self, host: &str, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns(host), program]);
        cmd
    }

    /// Sets `key = value` in the gateway config, on the line of the lab's config that sets `key`
    /// (at its default): `set_key("max_connections", 64)`.
    pub fn set_key(&self, key: &str, value: impl std::fmt::Display) {
        let prefix = format!("{key} = ");
        self.edit_config(|text| {
            assert!(
                text.lines().any(|line| line.starts_with(&prefix)),
                "the lab's config sets no `{key}`"
            );
            text.lines()
                .map(|line| {
                    if line.starts_with(&prefix) {
                        format!("{prefix}{value}")
                    } else {
                        line.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        });
    }

    /// Rewrites the gateway config with `edit` applied to its text.
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        std::fs::write(&self.config_path, edit(text)).unwrap();
    }

    /// Starts xgate in the gateway namespace and waits for its `ready` event.
    pub fn start_gateway(&mut self) -> serde_json::Value {
        let stderr = std::fs::File::create(&self.stderr_path).unwrap();
        let mut child = self
            .exec("gw", XGATE)
            .arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn xgate");
        let stdout = child.stdout.take().unwrap();
        self.gateway = Some(child);
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("xgate did not get ready; stderr: {}", self.gateway_stderr()));
        self.stdout = Some(rx);
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(ready["event"], "ready", "{line}");
        ready
    }

    /// The process id of this lab's running gateway (another test's gateway may run beside it:
    /// never look it up by name).
    pub fn gateway_pid(&self) -> u32 {
        self.gateway.as_ref().expect("gateway running").id()
    }

    /// Asks the running xgate for its per-lane counters (SIGUSR1) and returns its `stats` event.
    pub fn stats(&mut self) -> serde_json::Value {
        let pid = self.gateway.as_ref().expect("gateway running").id();
        let _ = xgate_gateway::sys::send_signal(pid as i32, libc::SIGUSR1);
        let rx = self.stdout.as_ref().expect("gateway running");
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(5))
                .expect("xgate printed no stats event within 5 s of SIGUSR1");
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            if value["event"] == "stats" {
                return value;
            }
        }
    }

    pub fn gateway_stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends `signal` to xgate, waits for it to exit, and returns its `stopped` event.
    pub fn stop_gateway_with(
        &mut self,
        signal: i32,
    ) -> (std::process::ExitStatus, Option<serde_json::Value>) {
        let mut child = self.gateway.take().expect("gateway running");
        let _ = xgate_gateway::sys::send_signal(child.id() as i32, signal);
        // SIGTERM drains first (connections with a request in progress finish).
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "xgate did not exit within 15 s of signal {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stopped = None;
        if let Some(rx) = self.stdout.take() {
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
                let value: serde_json::Value = serde_json::from_str(&line).unwrap();
                if value["event"] == "stopped" {
                    stopped = Some(value);
                }
            }
        }
        (status, stopped)
    }

    /// Stops xgate with SIGTERM, checks it exited cleanly, and returns its `stopped` event.
    pub fn stop_gateway(&mut self) -> serde_json::Value {
        let (status, stopped) = self.stop_gateway_with(libc::SIGTERM);
        assert!(
            status.success(),
            "xgate exited with {status}; stderr: {}",
            self.gateway_stderr()
        );
        stopped.expect("xgate printed no stopped event")
    }

    /// Runs `xgate run` in the foreground in the gateway namespace and returns how it ended
    /// (for starts that are expected to fail).
    pub fn run_gateway_to_completion(&self) -> Output {
        output(
            self.exec("gw", XGATE)
                .arg("run")
                .arg("--config")
                .arg(&self.config_path),
        )
    }

    /// Pings `target` from the client namespace `count` times (0.2 s apart, 2 s deadline each);
    /// returns whether every echo was answered, and ping's output.
    pub fn ping(&self, target: &str, count: u32) -> (bool, String) {
        let out =
            output(
                self.exec("cli", "ping")
                    .args(["-c", &count.to_string(), "-i", "0.2", "-W", "2", target]),
            );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// The HTTP status of one `GET /healthz` from the client (curl), or why there was none.
    pub fn healthz_status(&self) -> Result<String, String> {
        let url = format!("http://{GATEWAY_IP}/healthz");
        match self.curl(&["-o", "/dev/null", "-w", "%{http_code}", &url]) {
            (true, code) => Ok(code),
            (false, text) => Err(text),
        }
    }

    /// curl from the client namespace; returns (exit status ok, stdout).
    pub fn curl(&self, args: &[&str]) -> (bool, String) {
        let out = output(
            self.exec("cli", "curl")
                .args(["-sS", "--max-time", "10"])
                .args(args),
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Runs a Python snippet in the client namespace; returns its stdout (asserting success).
    pub fn python(&self, code: &str) -> String {
        let out = output(self.exec("cli", "python3").args(["-c", code]));
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Counters of the gateway namespace's kernel for `protocol` (`Ip`, `Tcp`, …), from
    /// /proc/net/snmp, keyed `Protocol.Name`.
    pub fn kernel_counters(&self, protocol: &str) -> std::collections::HashMap<String, i64> {
        let out = output(self.exec("gw", "cat").arg("/proc/net/snmp"));
        let text = String::from_utf8_lossy(&out.stdout);
        let prefix = format!("{protocol}:");
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
        assert_eq!(rows.len(), 2, "unexpected /proc/net/snmp: {text}");
        rows[0]
            .split_whitespace()
            .zip(rows[1].split_whitespace())
            .skip(1)
            .map(|(k, v)| (format!("{protocol}.{k}"), v.parse().unwrap()))
            .collect()
    }

    /// Appends `text` to the gateway config.
    pub fn append_config(&self, text: &str) {
        self.edit_config(|mut config| {
            config.push('\n');
            config.push_str(text);
            config
        });
    }

    /// Starts the project's fault backend (`tests/backend.py`) in the backend namespace on
    /// `10.77.0.4:port`, answering `/hello` with `hello from <name>`; waits until it listens.
    /// Returns its index for [`TestLab::kill_backend`]; killed when the lab goes down.
    pub fn start_backend(&mut self, port: u16, name: &str) -> usize {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/backend.py");
        let mut child = self
            .exec("be", "python3")
            .args([script, BACKEND_IP, &port.to_string(), name])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the test backend");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "test backend did not start");
        self.keep_backend(child)
    }

    /// Keeps `child` (a server in the backend namespace) until the lab goes down; returns its
    /// index for [`TestLab::kill_backend`].
    pub fn keep_backend(&mut self, child: Child) -> usize {
        self.backends.push(child);
        self.backends.len() - 1
    }

    /// Kills backend `index` and waits for it to exit.
    pub fn kill_backend(&mut self, index: usize) {
        let child = &mut self.backends[index];
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts nginx in the backend namespace on `10.77.0.4:port`, serving `root` (HTTP/1.1,
    /// keep-alive). Stopped when the lab goes down.
    pub fn start_nginx_backend(&self, port: u16, root: &std::path::Path) {
        let dir = std::env::temp_dir().join(format!("{}-nginx", self.name));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon on; worker_processes 1; worker_rlimit_nofile 20000; pid {dir}/nginx.pid; error_log {dir}/error.log;\n\
                 events {{ worker_connections 16384; }}\n\
                 http {{ access_log off; keepalive_requests 100000; client_body_temp_path {dir}/body;\n\
                 server {{ listen {BACKEND_IP}:{port}; root {root}; location = /empty {{ return 204; }} }} }}\n",
                dir = dir.display(),
                root = root.display(),
            ),
        )
        .unwrap();
        let out = output(self.exec("be", "nginx").args(["-c"]).arg(&conf));
        assert!(
            out.status.success(),
            "nginx did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sends `signal` to the running xgate.
    pub fn signal_gateway(&self, signal: i32) {
        let pid = self.gateway.as_ref().expect("gateway running").id();
        let _ = xgate_gateway::sys::send_signal(pid as i32, signal);
    }

    /// The next event named `name` xgate prints within `timeout` (other lines are skipped).
    pub fn wait_event(&self, name: &str, timeout: Duration) -> serde_json::Value {
        let rx = self.stdout.as_ref().expect("gateway running");
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no `{name}` event within {timeout:?}; stderr: {}",
                    self.gateway_stderr()
                )
            });
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            if value["event"] == name {
                return value;
            }
        }
    }

    /// Lines xgate printed so far that are events named `name` (waits `settle` for more).
    pub fn drain_events(&self, name: &str, settle: Duration) -> Vec<serde_json::Value> {
        let rx = self.stdout.as_ref().expect("gateway running");
        let mut found = Vec::new();
        while let Ok(line) = rx.recv_timeout(settle) {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            if value["event"] == name {
                found.push(value);
            }
        }
        found
    }

    /// Whether an XDP program is attached to the gateway interface.
    pub fn xdp_attached(&self) -> bool {
        let out = output(self.exec("gw", "ip").args(["link", "show", "xg-gw"]));
        String::from_utf8_lossy(&out.stdout).contains("xdp")
    }
}

/// The first line of a raw HTTP response.
pub fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("").trim_end()
}

/// Sends `request` raw over a fresh connection from the client namespace (Python, the bytes on
/// its stdin) and returns everything the gateway sent until it closed the connection (or 3 s of
/// silence), and whether it closed (a reset counts as closed).
pub fn raw_exchange(lab: &TestLab, request: &[u8]) -> (String, bool) {
    raw_exchange_on(lab, 80, request)
}

/// [`raw_exchange`] with the gateway's `port` (443: bytes the TLS listener gets raw).
pub fn raw_exchange_on(lab: &TestLab, port: u16, request: &[u8]) -> (String, bool) {
    use std::io::Write;
    let code = format!(
        r#"
import socket, sys
request = sys.stdin.buffer.read()
s = socket.create_connection(("{GATEWAY_IP}", {port}), timeout=5)
s.sendall(request)
s.settimeout(3)
data = b""
closed = False
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            closed = True
            break
        data += chunk
except socket.timeout:
    pass
except ConnectionResetError:
    closed = True
sys.stdout.write(("CLOSED\n" if closed else "OPEN\n") + data.decode("latin-1"))
"#
    );
    let mut child = lab
        .exec("cli", "python3")
        .args(["-c", &code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python");
    child.stdin.take().unwrap().write_all(request).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python failed");
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let (flag, rest) = out.split_once('\n').unwrap();
    (rest.to_string(), flag == "CLOSED")
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Some(mut child) = self.gateway.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for child in &mut self.backends {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Ok(lab) = xgate_lab::Lab::new(&self.name) {
            let _ = lab.down();
        }
        let _ = std::fs::remove_file(&self.config_path);
        let _ = std::fs::remove_file(&self.stderr_path);
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("{}-nginx", self.name)));
    }
}

/// A lock on /run/xgate-hugepages-test.lock (the hugepages crate's tests take it too): tests
/// that need the host's hugepages to themselves hold it exclusively (`LOCK_EX`), every other lab
/// holds it shared (`LOCK_SH`).
#[allow(unsafe_code)]
pub fn hugepage_lock(mode: i32) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/xgate-hugepages-test.lock")
        .expect("open lock file");
    // SAFETY: flock on a file descriptor we own; blocks until the lock is ours.
    unsafe { libc::flock(file.as_raw_fd(), mode) };
    file
}

/// 2 MiB hugepages free for a new mapping now: free minus those reserved by mappings that have
/// not faulted them in yet.
pub fn available_hugepages() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let field = |name: &str| -> u64 {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap()
    };
    field("HugePages_Free:").saturating_sub(field("HugePages_Rsvd:"))
}

/// Surplus hugepages the kernel may hand out beyond the reservation.
pub fn overcommit_hugepages() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/nr_overcommit_hugepages")
        .map(|t| t.trim().parse().unwrap_or(0))
        .unwrap_or(0)
}

/// A world-readable copy of the xgate binary, for runs as an unprivileged user (the checkout may
/// sit where that user cannot reach). Removed on drop.
pub struct PublicCopy(pub PathBuf);

impl PublicCopy {
    pub fn of_xgate() -> PublicCopy {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(unique_name("bin"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("xgate");
        std::fs::copy(XGATE, &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        PublicCopy(path)
    }
}

impl Drop for PublicCopy {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Debian's Python, which has the Prometheus client library (bootstrap installs it).
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Scrapes `/metrics` in the gateway namespace and parses it with `prometheus_client`'s text
/// parser; returns every sample as `name{label=value,...}` (labels sorted) → value.
pub fn scrape(lab: &TestLab) -> std::collections::HashMap<String, f64> {
    let code = r#"
import json, urllib.request
from prometheus_client.parser import text_string_to_metric_families
body = urllib.request.urlopen("http://127.0.0.1:9180/metrics", timeout=5).read().decode()
out = {}
for family in text_string_to_metric_families(body):
    for s in family.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        out["%s{%s}" % (s.name, labels)] = s.value
print(json.dumps(out))
"#;
    let out = output(lab.exec("gw", SYSTEM_PYTHON).args(["-c", code]));
    assert!(
        out.status.success(),
        "scraping /metrics failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the scrape prints JSON")
}

pub fn metric(samples: &std::collections::HashMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key}; have: {:?}", samples.keys().collect::<Vec<_>>()))
}
