//! The servers under test: xgate (terminating, two lanes, proxy) and nginx (terminating, proxy,
//! the proxy section's backend), their configs, starting each fresh, checking it answers (and,
//! for a proxy, that the backend does), and stopping it.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::{
    process::check_interrupted,
    results::{
        RunFigures, UpstreamChurn, DIRECT_SERVER, NGINX_PROXY_SERVER, TWO_LANES_SERVER, XGATE_PROXY_SERVER,
    },
};

use super::{
    lab::{
        in_namespace, set_gateway_queues, BACKEND_NS, BACKEND_TARGET, CLIENT_CPU, CLIENT_NS, GATEWAY_NS,
        NGINX_TARGET, SERVER_CPU, XGATE_TARGET,
    },
    Suite,
};

/// Socket pool of xgate per run: the connection count plus this margin for reconnects.
const POOL_MARGIN: usize = 64;
/// Requests per client connection xgate answers before its upstream connects are counted (the
/// warm-up of [`Suite::measure_upstream_churn`]).
const WARM_REQUESTS_PER_CONNECTION: usize = 20;
/// Upstream sockets of xgate in proxy mode: the connection count plus this margin.
pub(super) const UPSTREAM_MARGIN: usize = 128;

/// A header only the backend adds: its presence shows that a proxy really passed the request on.
const BACKEND_HEADER: &str = "X-Served-By";

/// A child that is killed (and waited for) if it is still running when dropped.
pub(super) struct Guarded(pub(super) Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Asks xgate `pid` for its counters (SIGUSR1) and sums its lanes' requests and upstream
/// connects from the `stats` event it prints (`None` if none comes within 5 s).
fn xgate_totals(pid: u32, lines: &mpsc::Receiver<String>) -> Option<UpstreamChurn> {
    while lines.try_recv().is_ok() {}
    xgate_gateway::sys::send_signal(pid as i32, libc::SIGUSR1).ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.checked_duration_since(std::time::Instant::now())?;
        let line = lines.recv_timeout(left).ok()?;
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if event["event"] != "stats" {
            continue;
        }
        let total = |key: &str| -> u64 {
            event["lanes"].as_array().map_or(0, |lanes| {
                lanes.iter().filter_map(|lane| lane[key].as_u64()).sum()
            })
        };
        return Some(UpstreamChurn {
            requests: total("requests"),
            connects: total("upstream_connects"),
            connect_failures: total("upstream_connect_failures"),
        });
    }
}

/// Waits until `url` answers 200 from the client namespace, or fails after `limit`.
fn wait_for_http(url: &str, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let code = Command::new("ip")
            .args([
                "netns",
                "exec",
                CLIENT_NS,
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["--max-time", "1", url])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        if code == "200" {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{url} did not answer 200 within {limit:?}")
}

/// Fails unless the answer to `url` (from the client namespace) carries the backend's own
/// header: a proxy that answered by itself would measure nothing of the proxy path.
fn check_served_by_backend(url: &str) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args([
            "netns",
            "exec",
            CLIENT_NS,
            "curl",
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
        ])
        .args(["--max-time", "2", url])
        .output()
        .context("running curl")?;
    let head = String::from_utf8_lossy(&output.stdout).to_ascii_lowercase();
    if !head.contains(&format!("{}: backend", BACKEND_HEADER.to_ascii_lowercase())) {
        bail!(
            "{url} did not answer from the backend (no `{BACKEND_HEADER}: backend` header); its head was:\n{}",
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    Ok(())
}

/// Sends `signal` to `child` (our own, still unreaped, so its pid cannot have been reused).
pub(super) fn signal(child: &Child, signal: libc::c_int) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = xgate_gateway::sys::send_signal(pid, signal);
    }
}

/// Stops a server: `signal`, then SIGKILL if it has not exited within 5 s.
pub(super) fn stop(mut server: Guarded, with: libc::c_int) {
    signal(&server.0, with);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(_)) = server.0.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Drop kills and reaps.
}

/// The servers under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Server {
    /// xgate with one lane, on the server CPU.
    Xgate,
    /// xgate with two lanes, one on each CPU (the client shares the second).
    XgateTwoLanes,
    Nginx,
    /// xgate with one lane, proxying every request to the backend.
    XgateProxy,
    /// nginx as a reverse proxy to the backend (upstream keepalive on).
    NginxProxy,
    /// No proxy: the client talks to the backend itself.
    Direct,
    /// xgate with one lane, answering over TLS on 443 too (the suite's certificate).
    XgateTls,
    /// nginx terminating, with TLS on 443 too (the same certificate).
    NginxTls,
}

impl Server {
    pub(super) fn name(self) -> &'static str {
        match self {
            Server::Xgate => "xgate",
            Server::XgateTwoLanes => TWO_LANES_SERVER,
            Server::Nginx => "nginx",
            Server::XgateProxy => XGATE_PROXY_SERVER,
            Server::NginxProxy => NGINX_PROXY_SERVER,
            Server::Direct => DIRECT_SERVER,
            Server::XgateTls => "xgate https",
            Server::NginxTls => "nginx https",
        }
    }

    /// The URL of `/healthz` a client asks: over TLS for the TLS servers.
    pub(super) fn healthz_url(self) -> String {
        match self {
            Server::XgateTls | Server::NginxTls => format!("https://{}/healthz", self.host()),
            _ => format!("http://{}/healthz", self.target()),
        }
    }

    /// The server's address without its port.
    fn host(self) -> &'static str {
        let target = self.target();
        target.split_once(':').map_or(target, |(host, _)| host)
    }

    pub(super) fn target(self) -> &'static str {
        match self {
            Server::Xgate | Server::XgateTwoLanes | Server::XgateProxy | Server::XgateTls => XGATE_TARGET,
            Server::Nginx | Server::NginxProxy | Server::NginxTls => NGINX_TARGET,
            Server::Direct => BACKEND_TARGET,
        }
    }
}

/// xgate's config for one run: the lab's, with the socket pool sized for `connections` and
/// `lanes` lanes on `cpus`; with `proxy`, also the backend as its one upstream pool behind a
/// route that takes every request, with as many upstream sockets as connections (plus a margin),
/// as many idle upstream connections as the pool (up to the config's bound, 4,096 per member and
/// lane) and no limit on requests per upstream connection (as the nginx proxy is given).
fn xgate_config(lab_config: &str, connections: usize, lanes: usize, cpus: &str, proxy: bool) -> String {
    let pool = connections + POOL_MARGIN;
    let mut config = lab_config
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("max_connections") {
                if proxy {
                    format!(
                        "max_connections = {pool}\nupstream_connections = {}",
                        connections + UPSTREAM_MARGIN
                    )
                } else {
                    format!("max_connections = {pool}")
                }
            } else if line.trim_start().starts_with("listen_port") {
                format!("{line}\nlanes = {lanes}\ncores = [{cpus}]")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    if proxy {
        // The pool's defaults (idle connections kept as demand needs them): what a user gets.
        config.push_str(&format!(
            "\n\n[[upstream]]\nname = \"backend\"\nmembers = [\"{BACKEND_TARGET}\"]\n\n[[route]]\nupstream = \"backend\"\n"
        ));
    }
    config
}

/// What one nginx of the suite does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NginxRole {
    /// Answers `/healthz` itself on the gateway namespace's kernel address.
    Terminating,
    /// The same, and over TLS on port 443 with the suite's certificate.
    TerminatingTls,
    /// Passes every request on to the backend, on the gateway namespace's kernel address.
    Proxy,
    /// The proxy section's backend, in the backend namespace.
    Backend,
}

impl NginxRole {
    /// The stem of its files in the work directory.
    fn file_stem(self) -> &'static str {
        match self {
            NginxRole::Terminating | NginxRole::TerminatingTls | NginxRole::Proxy => "nginx",
            NginxRole::Backend => "backend",
        }
    }

    fn listen(self) -> &'static str {
        match self {
            NginxRole::Terminating | NginxRole::TerminatingTls | NginxRole::Proxy => NGINX_TARGET,
            NginxRole::Backend => BACKEND_TARGET,
        }
    }
}

/// The suite's certificate and key (ECDSA P-256, self-signed, `bench.test`), in the work
/// directory, made by [`make_certificate`].
pub(super) const TLS_CERT: &str = "tls.pem";
pub(super) const TLS_KEY: &str = "tls.key";

/// Makes the suite's certificate in `work` (once per suite).
pub(super) fn make_certificate(work: &Path) -> anyhow::Result<()> {
    let output = Command::new("openssl")
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
        .arg(work.join(TLS_KEY))
        .arg("-out")
        .arg(work.join(TLS_CERT))
        .args([
            "-days",
            "7",
            "-subj",
            "/CN=bench.test",
            "-addext",
            "subjectAltName=DNS:bench.test",
        ])
        .output()
        .context("running openssl (apt-get install openssl)")?;
    if !output.status.success() {
        bail!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// nginx's config for `role` at `connections` client connections: one worker, no access log,
/// keep-alive without a practical request limit; its pid, log and temp files go to `work`.
fn nginx_config(role: NginxRole, work: &Path, connections: usize) -> String {
    let answer = "location = /healthz { default_type text/plain; return 200 \"ok\\n\"; }\n    location / { return 404; }";
    // A proxy holds a connection to the backend for every client connection.
    let (worker_connections, upstream, locations) = match role {
        NginxRole::Terminating => ((connections + 1024).max(4096), String::new(), answer.to_string()),
        NginxRole::TerminatingTls => (
            (connections + 1024).max(4096),
            String::new(),
            format!(
                "listen {host}:443 ssl backlog=16384;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    \
                 ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:SSL:10m;\n    ssl_session_tickets on;\n    {answer}",
                host = NGINX_TARGET.split_once(':').map_or(NGINX_TARGET, |(host, _)| host),
                cert = work.join(TLS_CERT).display(),
                key = work.join(TLS_KEY).display(),
            ),
        ),
        NginxRole::Backend => (
            (connections + 1024).max(4096),
            String::new(),
            format!("add_header {BACKEND_HEADER} backend always;\n    {answer}"),
        ),
        NginxRole::Proxy => (
            (2 * connections + 1024).max(4096),
            format!(
                "  upstream backend {{ server {BACKEND_TARGET}; keepalive {}; keepalive_requests 100000000; }}\n",
                connections + POOL_MARGIN
            ),
            "location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
                .to_string(),
        ),
    };
    let stem = role.file_stem();
    format!(
        "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {pid};\nerror_log {err} warn;\n\
         events {{ worker_connections {worker_connections}; multi_accept on; }}\n\
         http {{\n  access_log off;\n  server_tokens off;\n  keepalive_requests 100000000;\n  keepalive_timeout 300s;\n\
         client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};\n\
         {upstream}\
         server {{\n    listen {listen} backlog=16384;\n    {locations}\n  }}\n}}\n",
        pid = work.join(format!("{stem}.pid")).display(),
        err = work.join(format!("{stem}.err")).display(),
        tmp = work.display(),
        listen = role.listen(),
    )
}

impl Suite {
    /// Starts xgate with `lanes` lanes: one lane on the server CPU, or two lanes on CPUs 0 and 1
    /// (the lab's gateway link has two queues).
    /// With `proxy`, xgate passes every request on to the backend (which must be running).
    fn start_xgate(
        &self,
        connections: usize,
        lanes: usize,
        proxy: bool,
        tls: bool,
    ) -> anyhow::Result<Guarded> {
        let cpus = if lanes == 1 {
            SERVER_CPU.to_string()
        } else {
            format!("{SERVER_CPU},{CLIENT_CPU}")
        };
        let mut config = xgate_config(&self.lab_config, connections, lanes, &cpus, proxy);
        if tls {
            config.push_str(&format!(
                "\n\n[tls]\n[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\nnames = [\"bench.test\"]\n",
                self.work.join(TLS_CERT).display(),
                self.work.join(TLS_KEY).display()
            ));
        }
        let path = self.work.join("xgate.toml");
        std::fs::write(&path, config)?;
        // One queue per lane: a queue without a lane would lose the flows hashed to it.
        set_gateway_queues(lanes)?;
        let log_path = self.work.join("xgate.err");
        let log = std::fs::File::create(&log_path)?;
        let mut child = in_namespace(GATEWAY_NS, &cpus, &self.xgate)
            .arg("run")
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting xgate")?;
        let stdout = child.stdout.take().expect("piped");
        let server = Guarded(child);
        let (ready_tx, ready_rx) = mpsc::channel();
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("\"event\":\"ready\"") {
                    let _ = ready_tx.send(line);
                } else {
                    let _ = lines_tx.send(line);
                }
            }
        });
        *self.xgate_lines.borrow_mut() = Some(lines_rx);
        let Ok(ready) = ready_rx.recv_timeout(Duration::from_secs(20)) else {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("xgate did not report ready (it said: {})", log.trim());
        };
        if let Some(backing) = serde_json::from_str::<Value>(&ready)
            .ok()
            .and_then(|event| Some(event.get("umem_backing")?.as_str()?.to_string()))
        {
            *self.xgate_umem_backing.borrow_mut() = backing;
        }
        let url = format!("http://{XGATE_TARGET}/healthz");
        let answered = wait_for_http(&url, Duration::from_secs(10)).and_then(|()| {
            if proxy {
                check_served_by_backend(&url)
            } else {
                Ok(())
            }
        });
        if let Err(e) = answered {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("{e:#} (xgate said: {})", log.trim());
        }
        Ok(server)
    }

    /// Starts nginx as `role`: on the server CPU in the gateway namespace, or, as the backend, on
    /// the client CPU in the backend namespace (so that the proxy under test has CPU 0 to itself).
    pub(super) fn start_nginx(&self, role: NginxRole, connections: usize) -> anyhow::Result<Guarded> {
        let (namespace, cpu) = match role {
            NginxRole::Backend => (BACKEND_NS, CLIENT_CPU),
            NginxRole::Terminating | NginxRole::TerminatingTls | NginxRole::Proxy => {
                // The same link as xgate with one lane: one queue.
                set_gateway_queues(1)?;
                (GATEWAY_NS, SERVER_CPU)
            }
        };
        let stem = role.file_stem();
        let conf = self.work.join(format!("{stem}.conf"));
        let err = self.work.join(format!("{stem}.err"));
        std::fs::write(&conf, nginx_config(role, &self.work, connections))?;
        let child = in_namespace(namespace, cpu, Path::new("nginx"))
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(&err)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting nginx ({stem})"))?;
        let server = Guarded(child);
        let url = format!("http://{}/healthz", role.listen());
        let answered = wait_for_http(&url, Duration::from_secs(10)).and_then(|()| match role {
            NginxRole::Terminating | NginxRole::TerminatingTls => Ok(()),
            NginxRole::Proxy | NginxRole::Backend => check_served_by_backend(&url),
        });
        if let Err(e) = answered {
            let log = std::fs::read_to_string(&err).unwrap_or_default();
            bail!("{e:#} (nginx, {stem}, said: {})", log.trim());
        }
        Ok(server)
    }

    /// One proxy run of `measure` against the running xgate `process` at `connections`
    /// connections, with xgate's own count of the upstream connections it opened and the requests
    /// it answered from the end of the warm-up to the end of the run. The warm-up ends, for this
    /// count, once xgate has answered [`WARM_REQUESTS_PER_CONNECTION`] requests per client
    /// connection (so every connection is open and has been served): the load generator's own
    /// start-up time varies too much for a fixed delay.
    pub(super) fn measure_upstream_churn(
        &self,
        process: &Guarded,
        connections: usize,
        measure: impl FnOnce(&Self) -> anyhow::Result<RunFigures>,
    ) -> anyhow::Result<RunFigures> {
        let pid = process.0.id();
        let lines = self.xgate_lines.borrow_mut().take();
        let warm = (connections * WARM_REQUESTS_PER_CONNECTION) as u64;
        let run_ended = std::sync::atomic::AtomicBool::new(false);
        let (run, counts) = std::thread::scope(|scope| {
            let run_ended = &run_ended;
            let first = scope.spawn(move || {
                let lines = lines?;
                let first = loop {
                    std::thread::sleep(Duration::from_millis(100));
                    if run_ended.load(std::sync::atomic::Ordering::SeqCst) {
                        // Never warm before the end: nothing to count.
                        break None;
                    }
                    match xgate_totals(pid, &lines) {
                        Some(totals) if totals.requests >= warm => break Some(totals),
                        _ => {}
                    }
                };
                Some((first, lines))
            });
            let run = measure(self);
            run_ended.store(true, std::sync::atomic::Ordering::SeqCst);
            let counts = first.join().ok().flatten().and_then(|(first, lines)| {
                let last = xgate_totals(pid, &lines);
                *self.xgate_lines.borrow_mut() = Some(lines);
                Some((first?, last?))
            });
            (run, counts)
        });
        let mut run = run?;
        run.upstream = counts.map(|(first, last)| UpstreamChurn {
            requests: last.requests - first.requests,
            connects: last.connects - first.connects,
            connect_failures: last.connect_failures - first.connect_failures,
        });
        Ok(run)
    }

    /// Runs `measure` against a freshly started `server` and stops it afterwards: every repeat
    /// starts from the same state (no sockets, timers or caches left by the run before).
    /// [`Server::Direct`] starts nothing (its backend runs for the whole proxy section), so
    /// `measure` gets no process then.
    pub(super) fn with_fresh_server<T>(
        &self,
        server: Server,
        connections: usize,
        measure: impl FnOnce(&Self, Option<&Guarded>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        check_interrupted()?;
        let process = match server {
            Server::Xgate => Some(self.start_xgate(connections, 1, false, false)?),
            Server::XgateTwoLanes => Some(self.start_xgate(connections, 2, false, false)?),
            Server::XgateProxy => Some(self.start_xgate(connections, 1, true, false)?),
            Server::XgateTls => Some(self.start_xgate(connections, 1, false, true)?),
            Server::Nginx => Some(self.start_nginx(NginxRole::Terminating, connections)?),
            Server::NginxTls => Some(self.start_nginx(NginxRole::TerminatingTls, connections)?),
            Server::NginxProxy => Some(self.start_nginx(NginxRole::Proxy, connections)?),
            Server::Direct => None,
        };
        let result = measure(self, process.as_ref());
        let stop_signal = match server {
            Server::Xgate | Server::XgateTwoLanes | Server::XgateProxy | Server::XgateTls => libc::SIGINT,
            Server::Nginx | Server::NginxProxy | Server::Direct | Server::NginxTls => libc::SIGTERM,
        };
        if let Some(process) = process {
            stop(process, stop_signal);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB_CONFIG: &str = "[gateway]\ninterface = \"xg-gw\"\nqueue = 0\nipv4 = \"10.77.0.2\"\nprefix_len = 24\nmac = \"02:77:00:00:00:02\"\nlisten_port = 80\n\n\
                              [umem]\nframes = 4096\nframe_size = 2048\nallow_normal_pages = true\n\n\
                              [http]\nmax_connections = 1024\nring_size = 1024\nmax_header_bytes = 8192\n\n\
                              [tcp]\nkeepalive_ms = 0\ntimeout_ms = 60000\n";

    /// The text of `table`'s body: from its header to the next header.
    fn table<'a>(config: &'a str, header: &str) -> &'a str {
        let start = config
            .find(header)
            .unwrap_or_else(|| panic!("no {header} in:\n{config}"));
        let body = &config[start + header.len()..];
        &body[..body.find("\n[").unwrap_or(body.len())]
    }

    #[test]
    fn xgate_proxy_config_adds_the_backend_pool_and_a_route_for_everything() {
        let plain = xgate_config(LAB_CONFIG, 100, 1, "0", false);
        assert!(!plain.contains("upstream"), "{plain}");
        assert!(table(&plain, "[http]").contains("max_connections = 164"));
        assert!(table(&plain, "[gateway]").contains("lanes = 1\ncores = [0]"));

        let proxy = xgate_config(LAB_CONFIG, 100, 1, "0", true);
        assert!(
            table(&proxy, "[http]").contains("max_connections = 164\nupstream_connections = 228\n"),
            "{proxy}"
        );
        let upstream = table(&proxy, "[[upstream]]");
        for line in ["name = \"backend\"", "members = [\"10.77.0.4:8080\"]"] {
            assert!(upstream.contains(line), "{line} in {upstream}");
        }
        // The pool runs with its defaults, as a user's would.
        assert!(!upstream.contains("max_idle"), "{upstream}");
        assert_eq!(table(&proxy, "[[route]]").trim(), "upstream = \"backend\"");
        // Everything else of the lab's config is kept.
        assert!(table(&proxy, "[tcp]").contains("timeout_ms = 60000"));
    }

    /// The configs the suite starts xgate with are ones xgate accepts, at every count the suite
    /// allows.
    #[test]
    fn xgate_accepts_the_suite_configs_up_to_the_largest_count() {
        let lab = xgate_lab::gateway_config().to_toml();
        for connections in [10, 100, 10_000, 20_000] {
            for proxy in [false, true] {
                let text = xgate_config(&lab, connections, 1, "0", proxy);
                if let Err(error) = xgate_gateway::Config::parse(&text, "suite.toml") {
                    panic!("{connections} connections, proxy {proxy}: {error}\n{text}");
                }
            }
        }
    }

    #[test]
    fn nginx_configs_answer_proxy_or_serve_as_the_backend() {
        let work = Path::new("/tmp/work");
        let terminating = nginx_config(NginxRole::Terminating, work, 100);
        assert!(terminating.contains("listen 10.77.0.3:80 backlog=16384;"));
        assert!(terminating.contains("return 200 \"ok\\n\";"));
        assert!(!terminating.contains("proxy_pass") && !terminating.contains(BACKEND_HEADER));

        let proxy = nginx_config(NginxRole::Proxy, work, 100);
        assert!(proxy.contains("listen 10.77.0.3:80 backlog=16384;"));
        assert!(proxy.contains(
            "upstream backend { server 10.77.0.4:8080; keepalive 164; keepalive_requests 100000000; }"
        ));
        assert!(proxy.contains(
            "location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
        ));
        assert!(proxy.contains("pid /tmp/work/nginx.pid;"));

        let backend = nginx_config(NginxRole::Backend, work, 228);
        assert!(backend.contains("listen 10.77.0.4:8080 backlog=16384;"));
        assert!(backend.contains("add_header X-Served-By backend always;"));
        assert!(backend.contains("location = /healthz { default_type text/plain; return 200 \"ok\\n\"; }"));
        assert!(backend.contains("access_log off;") && backend.contains("keepalive_requests 100000000;"));
        // Its own pid and log, beside a proxy nginx's.
        assert!(backend.contains("pid /tmp/work/backend.pid;"));
        assert!(backend.contains("error_log /tmp/work/backend.err warn;"));
    }
}
