//! The benchmark suite: xgate and nginx side by side in one run, on the same lab, the same
//! clients, the same connection counts and the same pinning, then the packet path, written to
//! `bench/results/` as JSON, a markdown table and SVG plots, and to `bench/RESULTS.md`.
//!
//! What it runs (each measurement repeated `repeats` times; the median is reported with min–max):
//! 1. HTTP, terminating: `GET /healthz` answered by xgate (10.77.0.2, userspace stack) and by
//!    nginx (`return 200 "ok\n"`, kernel stack, the gateway namespace's own 10.77.0.3), at every
//!    connection count, with `xgate-bench http` (userspace client over AF_XDP) and with wrk (the
//!    kernel-stack client, as a cross-check).
//! 2. Proxy mode: `GET /healthz` through xgate (one upstream pool) and through nginx as a reverse
//!    proxy (upstream keepalive on) to the same backend (nginx in the backend namespace,
//!    10.77.0.4:8080), and from the client to that backend directly, for the hop's added latency;
//!    closed loop, then all three in open loop at one offered rate (coordinated-omission corrected).
//! 3. The packet path: `xgate-bench packets` (AF_XDP receive vs XDP_DROP on one veth).
//!
//! Pinning: every server runs on CPU 0 and every client on CPU 1 (`taskset`). On veth the kernel
//! delivers a packet on the *sender's* CPU, so part of each server's receive work lands on the
//! client's CPU and part of the client's on the server's; both servers get the same treatment,
//! which is why the CPU cost per request is taken over the whole machine (`/proc/stat`, softirq
//! included) minus the client process's own time. The proxy section's backend runs on the client's
//! CPU, so that each proxy under test has CPU 0 to itself.
//!
//! Invariants:
//! - Every child is bounded by a deadline and stopped (servers by signal, then SIGKILL); the lab
//!   is removed when the suite ends, also on error.
//! - Nothing here decides pass or fail by speed: the suite reports, and the goals table says
//!   whether each goal was met.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;

use crate::{
    cpu::{children_cpu_time, MachineCpu},
    process::{check_interrupted, install_interrupt_handlers, interrupted, require_root},
    report,
    results::{
        proxy_reference, FloodCase, FloodRun, HttpCase, Machine, NewConnectionRun, Plan, ProfileSection,
        RunFigures, SuiteResults, DIRECT_SERVER, FLOOD_POOL_MARGIN, NEW_CONNECTION_CLIENTS,
        NGINX_PROXY_SERVER, OPEN_LOOP_CLIENT, PROXY_SERVERS, TWO_LANES_SERVER, XGATE_PROXY_SERVER,
    },
};

/// The lab the suite builds (namespaces `xgbench-cli`, `-gw`, `-be`, `-sw`).
const LAB: &str = "xgbench";
const CLIENT_NS: &str = "xgbench-cli";
const GATEWAY_NS: &str = "xgbench-gw";
const BACKEND_NS: &str = "xgbench-be";
const XGATE_TARGET: &str = "10.77.0.2:80";
const NGINX_TARGET: &str = "10.77.0.3:80";
/// The proxy section's backend: nginx in the backend namespace.
const BACKEND_TARGET: &str = "10.77.0.4:8080";
const SERVER_CPU: &str = "0";
const CLIENT_CPU: &str = "1";
/// Socket pool of xgate per run: the connection count plus this margin for reconnects.
const POOL_MARGIN: usize = 64;
/// Upstream sockets of xgate in proxy mode: the connection count plus this margin.
const UPSTREAM_MARGIN: usize = 128;
/// The largest connection count the proxy section runs at.
const PROXY_MAX_CONNECTIONS: usize = 1000;
/// A header only the backend adds: its presence shows that a proxy really passed the request on.
const BACKEND_HEADER: &str = "X-Served-By";
/// How long the flood runs before a measurement starts under it.
const FLOOD_LEAD: Duration = Duration::from_millis(300);

#[derive(Args, Clone, Debug)]
pub struct SuiteArgs {
    /// About 3 minutes: short runs at every connection count.
    #[arg(long, conflicts_with_all = ["full", "smoke"])]
    pub quick: bool,
    /// The full suite (about 15 minutes): longer runs, wrk at every count, a CPU profile of xgate.
    #[arg(long, conflicts_with = "smoke")]
    pub full: bool,
    /// Tiny durations, two connection counts: checks that the harness works (used by the tests).
    #[arg(long)]
    pub smoke: bool,
    /// Repetitions of every measurement (at least 3 for a result).
    #[arg(long)]
    pub repeats: Option<usize>,
    /// Connection counts, comma-separated (default: 10,100,1000,10000; smoke: 10,100).
    #[arg(long, value_delimiter = ',')]
    pub connections: Option<Vec<usize>>,
    /// Where result files go.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Also rewrite bench/RESULTS.md (default for --quick and --full, not for --smoke).
    #[arg(long)]
    pub results_md: Option<PathBuf>,
    /// Record a CPU profile (perf) of xgate at 100 connections (default in --full).
    #[arg(long)]
    pub profile: bool,
}

impl Plan {
    fn from_args(args: &SuiteArgs) -> anyhow::Result<Plan> {
        let mut plan = if args.full {
            Plan {
                mode: "full".into(),
                connections: vec![10, 100, 1000, 10_000],
                repeats: 3,
                warmup_seconds: 2.0,
                duration_seconds: 10.0,
                wrk_connections: vec![10, 100, 1000, 10_000],
                packet_seconds: 3.0,
                profile: true,
                proxy_connections: Vec::new(),
            }
        } else if args.smoke {
            Plan {
                mode: "smoke".into(),
                connections: vec![10, 100],
                repeats: 3,
                warmup_seconds: 0.1,
                duration_seconds: 0.3,
                wrk_connections: vec![10],
                packet_seconds: 0.2,
                profile: false,
                proxy_connections: Vec::new(),
            }
        } else {
            Plan {
                mode: "quick".into(),
                connections: vec![10, 100, 1000, 10_000],
                repeats: 3,
                warmup_seconds: 0.5,
                duration_seconds: 2.0,
                wrk_connections: vec![100],
                packet_seconds: 1.0,
                profile: false,
                proxy_connections: Vec::new(),
            }
        };
        if let Some(repeats) = args.repeats {
            if repeats == 0 {
                bail!("--repeats must be at least 1");
            }
            plan.repeats = repeats;
        }
        if let Some(connections) = &args.connections {
            if connections.is_empty() || connections.iter().any(|&c| c == 0 || c > 20_000) {
                bail!("--connections: each count must be between 1 and 20000");
            }
            plan.connections = connections.clone();
            plan.wrk_connections.retain(|c| connections.contains(c));
        }
        plan.profile |= args.profile;
        plan.proxy_connections = proxy_connections(&plan.mode, &plan.connections);
        Ok(plan)
    }

    fn steps(&self) -> usize {
        let per_server = (self.connections.len() + self.wrk_connections.len() + 1) * self.repeats;
        let profiles = if self.profile {
            self.connections
                .iter()
                .filter(|c| PROFILED_CONNECTIONS.contains(c))
                .count()
        } else {
            0
        };
        let two_lanes = self.lanes_connections().len() * self.repeats;
        // Closed loop at every proxy count, then open loop at the reference count.
        let proxy_open_loop = usize::from(!self.proxy_connections.is_empty());
        let proxy = PROXY_SERVERS.len() * (self.proxy_connections.len() + proxy_open_loop) * self.repeats;
        let flood = 2 * self.repeats;
        2 * per_server + 1 + profiles + two_lanes + proxy + flood
    }

    /// Connection counts at which xgate also runs with two lanes (the reference load and the
    /// largest count of the plan).
    fn lanes_connections(&self) -> Vec<usize> {
        let mut counts: Vec<usize> = self
            .connections
            .iter()
            .copied()
            .filter(|c| *c == 100 || Some(c) == self.connections.iter().max())
            .collect();
        counts.dedup();
        counts
    }
}

/// Connection counts of the proxy section: in the full mode every count of the plan up to
/// [`PROXY_MAX_CONNECTIONS`]; otherwise one of them, 100 if the plan has it.
fn proxy_connections(mode: &str, connections: &[usize]) -> Vec<usize> {
    let candidates: Vec<usize> = connections
        .iter()
        .copied()
        .filter(|&c| c <= PROXY_MAX_CONNECTIONS)
        .collect();
    if mode == "full" {
        candidates
    } else if candidates.contains(&100) {
        vec![100]
    } else {
        candidates.into_iter().take(1).collect()
    }
}

/// Connection counts at which `--profile` records xgate: the reference load and the largest.
const PROFILED_CONNECTIONS: [usize; 2] = [100, 10_000];

/// A child that is killed (and waited for) if it is still running when dropped.
struct Guarded(Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Removes the lab when the suite ends.
struct LabGuard {
    xgate: PathBuf,
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = Command::new(&self.xgate)
            .args(["lab", "down", "--name", LAB])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Prints a progress bar on stderr.
struct Progress {
    done: usize,
    total: usize,
    started: Instant,
}

impl Progress {
    fn step(&mut self, what: &str) {
        self.done += 1;
        let width = 30;
        let filled = width * self.done.min(self.total) / self.total.max(1);
        let elapsed = self.started.elapsed().as_secs();
        let eta = if self.done > 0 {
            elapsed * (self.total.saturating_sub(self.done)) as u64 / self.done as u64
        } else {
            0
        };
        eprintln!(
            "[{}{}] {:>3}/{} {:>3}:{:02} elapsed, ~{}:{:02} left  {what}",
            "#".repeat(filled),
            ".".repeat(width - filled),
            self.done,
            self.total,
            elapsed / 60,
            elapsed % 60,
            eta / 60,
            eta % 60
        );
    }
}

fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn require_tools() -> anyhow::Result<()> {
    require_root(
        "the suite needs root (it builds network namespaces, attaches XDP and opens AF_XDP sockets)",
    )?;
    for (tool, package) in [
        ("ip", "iproute2"),
        ("taskset", "util-linux"),
        ("nginx", "nginx-light"),
        ("wrk", "wrk"),
        ("curl", "curl"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            bail!("`{tool}` is missing: install the Debian package {package} (scripts/bootstrap.sh does)");
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        bail!(
            "the suite pins servers to CPU 0 and clients to CPU 1: it needs 2 CPUs, this machine has {cpus}"
        );
    }
    Ok(())
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let nginx = Command::new("nginx")
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default();
    let wrk = Command::new("wrk")
        .arg("-v")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    Machine {
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: output_of("uname", &["-r"]).unwrap_or_default(),
        memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        nginx,
        wrk,
    }
}

/// `YYYY-MM-DD` (UTC) and the short git revision (`-dirty` when the tree has changes).
fn date_and_revision() -> (String, String) {
    let date = output_of("date", &["-u", "+%Y-%m-%d"]).unwrap_or_else(|| "undated".into());
    let revision = match output_of("git", &["rev-parse", "--short", "HEAD"]) {
        Some(sha) => {
            let dirty = output_of("git", &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{sha}-dirty")
            } else {
                sha
            }
        }
        None => "nogit".into(),
    };
    (date, revision)
}

/// Gives the gateway's link `queues` rx/tx queues (the lab creates it with two).
fn set_gateway_queues(queues: usize) -> anyhow::Result<()> {
    let count = queues.to_string();
    let status = Command::new("ip")
        .args([
            "netns", "exec", GATEWAY_NS, "ethtool", "-L", "xg-gw", "rx", &count, "tx", &count,
        ])
        .status()
        .context("running ethtool")?;
    if !status.success() {
        bail!("ethtool -L xg-gw rx {queues} tx {queues} failed in {GATEWAY_NS}");
    }
    Ok(())
}

/// A command run inside a lab namespace, pinned to `cpu`.
fn in_namespace(ns: &str, cpu: &str, program: &Path) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", ns, "taskset", "-c", cpu])
        .arg(program);
    command
}

fn sysctl(ns: &str, settings: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-q", "-w"])
        .args(settings)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("sysctl {settings:?} in {ns} failed");
    }
    Ok(())
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

fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; the pid is our own live child's.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
}

/// Stops a server: `signal`, then SIGKILL if it has not exited within 5 s.
fn stop(mut server: Guarded, with: libc::c_int) {
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
enum Server {
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
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Xgate => "xgate",
            Server::XgateTwoLanes => TWO_LANES_SERVER,
            Server::Nginx => "nginx",
            Server::XgateProxy => XGATE_PROXY_SERVER,
            Server::NginxProxy => NGINX_PROXY_SERVER,
            Server::Direct => DIRECT_SERVER,
        }
    }

    fn target(self) -> &'static str {
        match self {
            Server::Xgate | Server::XgateTwoLanes | Server::XgateProxy => XGATE_TARGET,
            Server::Nginx | Server::NginxProxy => NGINX_TARGET,
            Server::Direct => BACKEND_TARGET,
        }
    }
}

/// xgate's config for one run: the lab's, with the socket pool sized for `connections` and
/// `lanes` lanes on `cpus`; with `proxy`, also the backend as its one upstream pool behind a
/// route that takes every request, with as many upstream sockets as connections (plus a margin)
/// and no limit on requests per upstream connection (as the nginx proxy is given).
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
        config.push_str(&format!(
            "\n\n[[upstream]]\nname = \"backend\"\nmembers = [\"{BACKEND_TARGET}\"]\nmax_idle = {pool}\n\
             max_requests_per_connection = 0\n\n[[route]]\nupstream = \"backend\"\n"
        ));
    }
    config
}

/// What one nginx of the suite does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NginxRole {
    /// Answers `/healthz` itself on the gateway namespace's kernel address.
    Terminating,
    /// Passes every request on to the backend, on the gateway namespace's kernel address.
    Proxy,
    /// The proxy section's backend, in the backend namespace.
    Backend,
}

impl NginxRole {
    /// The stem of its files in the work directory.
    fn file_stem(self) -> &'static str {
        match self {
            NginxRole::Terminating | NginxRole::Proxy => "nginx",
            NginxRole::Backend => "backend",
        }
    }

    fn listen(self) -> &'static str {
        match self {
            NginxRole::Terminating | NginxRole::Proxy => NGINX_TARGET,
            NginxRole::Backend => BACKEND_TARGET,
        }
    }
}

/// nginx's config for `role` at `connections` client connections: one worker, no access log,
/// keep-alive without a practical request limit; its pid, log and temp files go to `work`.
fn nginx_config(role: NginxRole, work: &Path, connections: usize) -> String {
    let answer = "location = /healthz { default_type text/plain; return 200 \"ok\\n\"; }\n    location / { return 404; }";
    // A proxy holds a connection to the backend for every client connection.
    let (worker_connections, upstream, locations) = match role {
        NginxRole::Terminating => ((connections + 1024).max(4096), String::new(), answer.to_string()),
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

struct Suite {
    /// What xgate's UMEM sat on, from its ready event (`HugePages2M` or `NormalPages`).
    xgate_umem_backing: std::cell::RefCell<String>,
    xgate: PathBuf,
    bench: PathBuf,
    work: PathBuf,
    lab_config: String,
    plan: Plan,
    progress: Progress,
}

impl Suite {
    /// Starts xgate with `lanes` lanes: one lane on the server CPU, or two lanes on CPUs 0 and 1
    /// (the lab's gateway link has two queues).
    /// With `proxy`, xgate passes every request on to the backend (which must be running).
    fn start_xgate(&self, connections: usize, lanes: usize, proxy: bool) -> anyhow::Result<Guarded> {
        let cpus = if lanes == 1 {
            SERVER_CPU.to_string()
        } else {
            format!("{SERVER_CPU},{CLIENT_CPU}")
        };
        let config = xgate_config(&self.lab_config, connections, lanes, &cpus, proxy);
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
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("\"event\":\"ready\"") {
                    let _ = ready_tx.send(line);
                }
            }
        });
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
    fn start_nginx(&self, role: NginxRole, connections: usize) -> anyhow::Result<Guarded> {
        let (namespace, cpu) = match role {
            NginxRole::Backend => (BACKEND_NS, CLIENT_CPU),
            NginxRole::Terminating | NginxRole::Proxy => {
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
            NginxRole::Terminating => Ok(()),
            NginxRole::Proxy | NginxRole::Backend => check_served_by_backend(&url),
        });
        if let Err(e) = answered {
            let log = std::fs::read_to_string(&err).unwrap_or_default();
            bail!("{e:#} (nginx, {stem}, said: {})", log.trim());
        }
        Ok(server)
    }

    fn generator_run(&self, server: Server, connections: usize) -> anyhow::Result<RunFigures> {
        self.generator_run_at(server, connections, None)
    }

    /// One `xgate-bench http` run: closed loop, or open loop at `rate` requests/s.
    fn generator_run_at(
        &self,
        server: Server,
        connections: usize,
        rate: Option<f64>,
    ) -> anyhow::Result<RunFigures> {
        let timeout = self.plan.warmup_seconds + self.plan.duration_seconds + 60.0;
        let mut command = in_namespace(CLIENT_NS, CLIENT_CPU, &self.bench);
        command.args(["http", "--target", server.target(), "--json"]);
        if let Some(rate) = rate {
            command.args(["--mode", "open", "--rate", &format!("{rate:.0}")]);
        }
        let output = command
            .args(["--connections", &connections.to_string()])
            .args(["--duration", &self.plan.duration_seconds.to_string()])
            .args(["--warmup", &self.plan.warmup_seconds.to_string()])
            .args(["--connect-timeout", "30"])
            .stderr(Stdio::piped())
            .output_with_timeout(Duration::from_secs_f64(timeout))?;
        if !output.status.success() {
            bail!(
                "xgate-bench http against {} at {connections} connections failed: {}",
                server.name(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let report: Value =
            serde_json::from_slice(&output.stdout).context("parsing xgate-bench http output")?;
        let number = |path: &[&str]| -> f64 {
            path.iter()
                .try_fold(&report, |v, key| v.get(key))
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        };
        let requests = number(&["requests"]);
        let errors = ["connect", "closed_by_server", "bad_response", "non_2xx"]
            .iter()
            .map(|kind| number(&["errors", kind]) as u64)
            .sum();
        let server_cpu = (number(&["machine_busy_seconds"]) - number(&["generator_cpu_seconds"])).max(0.0);
        let cdf = report
            .get("cdf")
            .and_then(Value::as_array)
            .map(|points| {
                points
                    .iter()
                    .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(RunFigures {
            requests_per_second: number(&["requests_per_second"]),
            p50_us: number(&["latency_us", "p50"]),
            p90_us: number(&["latency_us", "p90"]),
            p99_us: number(&["latency_us", "p99"]),
            p999_us: number(&["latency_us", "p999"]),
            errors,
            client_rx_dropped: number(&["kernel_rx_dropped"]) as u64,
            client_tx_starved: number(&["tx_starved"]) as u64,
            client_idle_fraction: Some(number(&["generator_idle_fraction"])),
            error_kinds: serde_json::json!({
                "by_kind": report.get("errors").cloned().unwrap_or(Value::Null),
                "connect_retries": report.get("connect_retries").cloned().unwrap_or(Value::Null),
                "open_loop_unfinished": report.get("open_loop_unfinished").cloned().unwrap_or(Value::Null),
            }),
            cpu_us_per_request: if requests > 0.0 {
                server_cpu * 1e6 / requests
            } else {
                0.0
            },
            machine_cpu_us_per_request: if requests > 0.0 {
                number(&["machine_busy_seconds"]) * 1e6 / requests
            } else {
                0.0
            },
            response_bytes: number(&["response_bytes"]) as u64,
            offered_rate: rate,
            cdf,
        })
    }

    fn wrk_run(&self, server: Server, connections: usize) -> anyhow::Result<RunFigures> {
        let seconds = (self.plan.duration_seconds.ceil() as u64).max(1);
        let machine_before = MachineCpu::sample();
        let children_before = children_cpu_time();
        let output = in_namespace(CLIENT_NS, CLIENT_CPU, Path::new("wrk"))
            .args([
                "-t1",
                "-c",
                &connections.to_string(),
                "-d",
                &format!("{seconds}s"),
            ])
            .args(["--timeout", "5s", "--latency"])
            .arg(format!("http://{}/healthz", server.target()))
            .stderr(Stdio::piped())
            .output_with_timeout(Duration::from_secs(seconds + 60))?;
        let machine_busy = MachineCpu::sample().busy_since(&machine_before);
        let wrk_cpu = children_cpu_time().saturating_sub(children_before);
        if !output.status.success() {
            bail!(
                "wrk against {} failed: {}",
                server.name(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let (mut figures, completed) =
            report::parse_wrk(&text).with_context(|| format!("could not read wrk's output:\n{text}"))?;
        let requests = completed as f64;
        if requests > 0.0 {
            figures.cpu_us_per_request = machine_busy.saturating_sub(wrk_cpu).as_secs_f64() * 1e6 / requests;
            figures.machine_cpu_us_per_request = machine_busy.as_secs_f64() * 1e6 / requests;
        }
        Ok(figures)
    }

    /// Records xgate's CPU profile (its own threads, user and kernel) during one generator run at
    /// `connections`; returns the top symbols by self time.
    fn profile_xgate(&self, server: &Guarded, connections: usize) -> anyhow::Result<Vec<String>> {
        let data = self.work.join("perf.data");
        let seconds = self.plan.duration_seconds.max(3.0);
        let mut perf = Command::new("perf")
            .args(["record", "-F", "999", "-g", "-o"])
            .arg(&data)
            .args(["-p", &server.0.id().to_string(), "--", "sleep"])
            .arg(format!("{}", seconds + self.plan.warmup_seconds))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf (install linux-perf)")?;
        let _ = self.generator_run(Server::Xgate, connections);
        let _ = perf.wait();
        let report = Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--sort",
                "dso,symbol",
                "-g",
                "none",
                "-i",
            ])
            .arg(&data)
            .output()?;
        let text = String::from_utf8_lossy(&report.stdout);
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains('%'))
            .take(15)
            .map(|l| {
                l.split_whitespace()
                    .filter(|word| *word != "-")
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect())
    }

    /// Runs `measure` against a freshly started `server` and stops it afterwards: every repeat
    /// starts from the same state (no sockets, timers or caches left by the run before).
    /// [`Server::Direct`] starts nothing (its backend runs for the whole proxy section), so
    /// `measure` gets no process then.
    fn with_fresh_server<T>(
        &self,
        server: Server,
        connections: usize,
        measure: impl FnOnce(&Self, Option<&Guarded>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        check_interrupted()?;
        let process = match server {
            Server::Xgate => Some(self.start_xgate(connections, 1, false)?),
            Server::XgateTwoLanes => Some(self.start_xgate(connections, 2, false)?),
            Server::XgateProxy => Some(self.start_xgate(connections, 1, true)?),
            Server::Nginx => Some(self.start_nginx(NginxRole::Terminating, connections)?),
            Server::NginxProxy => Some(self.start_nginx(NginxRole::Proxy, connections)?),
            Server::Direct => None,
        };
        let result = measure(self, process.as_ref());
        let stop_signal = match server {
            Server::Xgate | Server::XgateTwoLanes | Server::XgateProxy => libc::SIGINT,
            Server::Nginx | Server::NginxProxy | Server::Direct => libc::SIGTERM,
        };
        if let Some(process) = process {
            stop(process, stop_signal);
        }
        result
    }

    /// `plan.repeats` runs of `measure`, each against a freshly started server, with a progress
    /// step per run.
    fn repeated(
        &mut self,
        server: Server,
        connections: usize,
        label: &str,
        measure: impl Fn(&Self) -> anyhow::Result<RunFigures>,
    ) -> anyhow::Result<Vec<RunFigures>> {
        let mut runs: Vec<RunFigures> = Vec::new();
        for repeat in 0..self.plan.repeats {
            let run = self.with_fresh_server(server, connections, |suite, _| measure(suite))?;
            let figure = match run.offered_rate {
                Some(_) => format!("p99 {:.0} us", run.p99_us),
                None => format!("{:.0} req/s", run.requests_per_second),
            };
            runs.push(run);
            self.progress.step(&format!(
                "{} c={connections} {label} run {}/{}: {figure}",
                server.name(),
                repeat + 1,
                self.plan.repeats,
            ));
        }
        Ok(runs)
    }

    fn run_server(
        &mut self,
        server: Server,
        cases: &mut Vec<HttpCase>,
        profile: &mut Vec<ProfileSection>,
    ) -> anyhow::Result<()> {
        for connections in self.plan.connections.clone() {
            let runs = self.repeated(server, connections, "xgate-bench", |suite| {
                suite.generator_run(server, connections)
            })?;
            cases.push(HttpCase {
                server: server.name().into(),
                client: "xgate-bench".into(),
                connections,
                runs,
            });
            if self.plan.wrk_connections.contains(&connections) {
                let runs = self.repeated(server, connections, "wrk", |suite| {
                    suite.wrk_run(server, connections)
                })?;
                cases.push(HttpCase {
                    server: server.name().into(),
                    client: "wrk".into(),
                    connections,
                    runs,
                });
            }
            if server == Server::Xgate && self.plan.profile && PROFILED_CONNECTIONS.contains(&connections) {
                let top = self
                    .with_fresh_server(server, connections, |suite, process| match process {
                        Some(process) => suite.profile_xgate(process, connections),
                        None => bail!("no xgate process to profile"),
                    })
                    .unwrap_or_else(|e| vec![format!("profile failed: {e:#}")]);
                profile.push(ProfileSection { connections, top });
                self.progress
                    .step(&format!("xgate profile at {connections} connections recorded"));
            }
        }
        Ok(())
    }
}

impl Suite {
    /// Latency at the same offered load for both servers: open loop (coordinated-omission
    /// corrected) at 100 connections (or the first count), at half the lower of the two servers'
    /// closed-loop medians, so that neither is saturated.
    fn run_open_loop(&mut self, cases: &mut Vec<HttpCase>) -> anyhow::Result<()> {
        let connections = self.reference_connections();
        let median_rps = |server: &str| {
            cases
                .iter()
                .find(|c| c.server == server && c.client == "xgate-bench" && c.connections == connections)
                .and_then(|c| {
                    report::Spread::of(&c.runs.iter().map(|r| r.requests_per_second).collect::<Vec<_>>())
                })
                .map_or(0.0, |s| s.median)
        };
        let rate = (median_rps("xgate").min(median_rps("nginx")) * 0.5).max(100.0);
        for server in [Server::Xgate, Server::Nginx] {
            let label = format!("open loop at {rate:.0} req/s");
            let runs = self.repeated(server, connections, &label, |suite| {
                suite.generator_run_at(server, connections, Some(rate))
            })?;
            cases.push(HttpCase {
                server: server.name().into(),
                client: OPEN_LOOP_CLIENT.into(),
                connections,
                runs,
            });
        }
        Ok(())
    }
}

impl Suite {
    /// xgate with two lanes, closed loop, at the reference load and the largest count. This
    /// machine has two CPUs in all, so the second lane shares its CPU with the load generator:
    /// the figure shows what a second lane costs and gives when no core is free for it.
    fn run_two_lanes(&mut self, cases: &mut Vec<HttpCase>) -> anyhow::Result<()> {
        for connections in self.plan.lanes_connections() {
            let runs = self.repeated(Server::XgateTwoLanes, connections, "xgate-bench", |suite| {
                suite.generator_run(Server::XgateTwoLanes, connections)
            })?;
            cases.push(HttpCase {
                server: TWO_LANES_SERVER.into(),
                client: "xgate-bench".into(),
                connections,
                runs,
            });
        }
        Ok(())
    }
}

impl Suite {
    /// Proxy mode: xgate and nginx each as the one hop between the client and the same backend,
    /// and the client on the backend directly, closed loop at the plan's proxy connection counts;
    /// then all three in open loop at the reference count (see [`proxy_reference`]), at one rate
    /// for all: half the lower of the two proxies' closed-loop medians there, so that neither
    /// proxy is saturated. The backend runs (on the client's CPU) for the whole section and is
    /// stopped at its end.
    fn run_proxy(&mut self, cases: &mut Vec<HttpCase>) -> anyhow::Result<()> {
        let counts = self.plan.proxy_connections.clone();
        let (Some(&most), Some(reference)) = (counts.iter().max(), proxy_reference(&counts)) else {
            return Ok(());
        };
        check_interrupted()?;
        // The backend holds the connections of whichever proxy runs, or the client's.
        let backend = self.start_nginx(NginxRole::Backend, most + UPSTREAM_MARGIN)?;
        let mut measure = || -> anyhow::Result<()> {
            for &connections in &counts {
                for server in [Server::XgateProxy, Server::NginxProxy, Server::Direct] {
                    let runs = self.repeated(server, connections, "xgate-bench", |suite| {
                        suite.generator_run(server, connections)
                    })?;
                    cases.push(HttpCase {
                        server: server.name().into(),
                        client: "xgate-bench".into(),
                        connections,
                        runs,
                    });
                }
            }
            let median_rps = |server: Server| {
                cases
                    .iter()
                    .find(|c| {
                        c.server == server.name() && c.client == "xgate-bench" && c.connections == reference
                    })
                    .and_then(|c| {
                        report::Spread::of(&c.runs.iter().map(|r| r.requests_per_second).collect::<Vec<_>>())
                    })
                    .map_or(0.0, |s| s.median)
            };
            let rate = (median_rps(Server::XgateProxy).min(median_rps(Server::NginxProxy)) * 0.5).max(100.0);
            for server in [Server::XgateProxy, Server::NginxProxy, Server::Direct] {
                let label = format!("open loop at {rate:.0} req/s");
                let runs = self.repeated(server, reference, &label, |suite| {
                    suite.generator_run_at(server, reference, Some(rate))
                })?;
                cases.push(HttpCase {
                    server: server.name().into(),
                    client: OPEN_LOOP_CLIENT.into(),
                    connections: reference,
                    runs,
                });
            }
            Ok(())
        };
        let result = measure();
        stop(backend, libc::SIGTERM);
        result
    }
}

impl Suite {
    /// The reference connection count: 100 if the plan has it, else its first.
    fn reference_connections(&self) -> usize {
        if self.plan.connections.contains(&100) {
            100
        } else {
            self.plan.connections[0]
        }
    }

    /// SYN flood: against a fresh xgate and a fresh nginx, `repeats` times each, the keep-alive
    /// load (xgate-bench, closed loop, the reference count) and the new-connection load (ab, one
    /// connection per request), each without and then under `xgate lab flood` aimed at the
    /// server's address. The flood runs on the client's CPU, and so does its delivery (veth runs
    /// the receiver's XDP and kernel input on the sender's CPU): the server's CPU sees what its
    /// defense lets through.
    fn run_flood(&mut self) -> anyhow::Result<Vec<FloodCase>> {
        let connections = self.reference_connections();
        let mut cases = Vec::new();
        for server in [Server::Xgate, Server::Nginx] {
            let mut runs = Vec::new();
            for repeat in 0..self.plan.repeats {
                // xgate's pool: the connections plus room for what the flood may hold.
                let run = self.with_fresh_server(server, connections + FLOOD_POOL_MARGIN, |suite, _| {
                    suite.flood_run(server, connections)
                })?;
                self.progress.step(&format!(
                    "{} SYN flood run {}/{}: keep-alive {:.0} -> {:.0} req/s, new connections {:.0} -> {:.0}/s, flood {:.0} SYN/s",
                    server.name(),
                    repeat + 1,
                    self.plan.repeats,
                    run.keepalive_quiet.requests_per_second,
                    run.keepalive_flooded.requests_per_second,
                    run.new_connections_quiet.requests_per_second,
                    run.new_connections_flooded.requests_per_second,
                    run.flood_syn_per_second[0],
                ));
                runs.push(run);
            }
            cases.push(FloodCase {
                server: server.name().into(),
                connections,
                runs,
            });
        }
        Ok(cases)
    }

    /// One repeat of the flood section on a running `server`: both loads quiet, then both under
    /// a flood.
    fn flood_run(&self, server: Server, connections: usize) -> anyhow::Result<FloodRun> {
        let keepalive_quiet = self.generator_run(server, connections)?;
        let new_connections_quiet = self.ab_run(server)?;
        // The keep-alive load connects first, then warms up and measures.
        let keepalive_seconds = self.plan.warmup_seconds + self.plan.duration_seconds + 1.0;
        let (keepalive_flooded, keepalive_flood) = self.under_flood(server, keepalive_seconds, |suite| {
            suite.generator_run(server, connections)
        })?;
        let (new_connections_flooded, new_connections_flood) =
            self.under_flood(server, self.ab_seconds() as f64 + 0.5, |suite| {
                suite.ab_run(server)
            })?;
        Ok(FloodRun {
            keepalive_quiet,
            keepalive_flooded,
            new_connections_quiet,
            new_connections_flooded,
            flood_syn_per_second: [keepalive_flood, new_connections_flood],
        })
    }

    /// Runs `measure` while `xgate lab flood` sends SYNs from spoofed sources to `server`'s
    /// address, for `seconds` after a lead of [`FLOOD_LEAD`]; returns what `measure` gave and the
    /// flood's rate (SYN/s).
    fn under_flood<T>(
        &self,
        server: Server,
        seconds: f64,
        measure: impl FnOnce(&Self) -> anyhow::Result<T>,
    ) -> anyhow::Result<(T, f64)> {
        let address = server.target().split(':').next().unwrap_or_default();
        let flood_seconds = seconds + FLOOD_LEAD.as_secs_f64();
        let mut flood = Guarded(
            in_namespace(CLIENT_NS, CLIENT_CPU, &self.xgate)
                .args(["lab", "flood", "--name", LAB, "--to", address])
                .args(["--seconds", &format!("{flood_seconds:.2}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting xgate lab flood")?,
        );
        std::thread::sleep(FLOOD_LEAD);
        let measured = measure(self);
        // The flood ends on its own; the measurement's result waits for it.
        let deadline = Instant::now() + Duration::from_secs_f64(flood_seconds + 10.0);
        let status = loop {
            if let Some(status) = flood.0.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                bail!("xgate lab flood ran over its {flood_seconds:.1} s");
            }
            check_interrupted()?;
            std::thread::sleep(Duration::from_millis(20));
        };
        let read = |pipe: Option<&mut dyn std::io::Read>| {
            let mut text = String::new();
            if let Some(pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        };
        let stdout = read(flood.0.stdout.as_mut().map(|p| p as &mut dyn std::io::Read));
        let stderr = read(flood.0.stderr.as_mut().map(|p| p as &mut dyn std::io::Read));
        let measured = measured?;
        if !status.success() {
            bail!("xgate lab flood failed: {}", stderr.trim());
        }
        let rate = serde_json::from_str::<Value>(&stdout)
            .ok()
            .and_then(|v| v.get("rate")?.as_f64())
            .with_context(|| format!("reading xgate lab flood's output: {stdout:?}"))?;
        Ok((measured, rate))
    }

    /// Seconds the new-connection load runs (ab counts whole seconds).
    fn ab_seconds(&self) -> u64 {
        (self.plan.duration_seconds.ceil() as u64).max(1)
    }

    /// The new-connection load: ab (HTTP/1.0, one connection per request),
    /// [`NEW_CONNECTION_CLIENTS`] at a time, for [`Suite::ab_seconds`]; socket errors are counted,
    /// not fatal (`-r`).
    fn ab_run(&self, server: Server) -> anyhow::Result<NewConnectionRun> {
        let seconds = self.ab_seconds();
        let output = in_namespace(CLIENT_NS, CLIENT_CPU, Path::new("ab"))
            .args(["-q", "-r", "-s", "5", "-c", &NEW_CONNECTION_CLIENTS.to_string()])
            // -n after -t: the time limit ends the run, the count only sizes ab's table.
            .args(["-t", &seconds.to_string(), "-n", "1000000"])
            .arg(format!("http://{}/healthz", server.target()))
            .stderr(Stdio::piped())
            .output_with_timeout(Duration::from_secs(seconds + 60))?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "ab against {} failed: {} {}",
                server.name(),
                String::from_utf8_lossy(&output.stderr).trim(),
                text.trim()
            );
        }
        report::parse_ab(&text).with_context(|| format!("could not read ab's output:\n{text}"))
    }
}

/// `Command::output` with a deadline: the child is killed when it runs over.
trait OutputWithTimeout {
    fn output_with_timeout(&mut self, limit: Duration) -> anyhow::Result<std::process::Output>;
}

impl OutputWithTimeout for Command {
    fn output_with_timeout(&mut self, limit: Duration) -> anyhow::Result<std::process::Output> {
        use std::io::Read;
        let mut child = self.stdout(Stdio::piped()).spawn()?;
        // Readers drain the pipes so the child never blocks on a full one.
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if start.elapsed() > limit || interrupted() {
                // The child is not reaped yet, so its pid cannot have been reused.
                let _ = child.kill();
                let _ = child.wait();
                check_interrupted()?;
                bail!("a benchmark child ran over its {limit:?} deadline and was killed");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Ok(std::process::Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }
}

/// Where one suite run at a time holds a lock (the suite's lab names are fixed).
const SUITE_LOCK: &str = "/run/xgate-bench-suite.lock";

/// Takes the suite lock, or says who has it. The lock goes with the returned file.
fn hold_suite_lock() -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(SUITE_LOCK)
        .with_context(|| format!("opening {SUITE_LOCK}"))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!("another benchmark suite is running (it holds {SUITE_LOCK}); wait for it to finish");
    }
    Ok(file)
}

/// Removes the suite's scratch directory when the suite ends.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The open-file limit must cover the largest connection count (nginx and wrk hold one file per
/// connection; this process's limit is what they inherit).
fn check_file_limit(plan: &Plan) -> anyhow::Result<()> {
    let most = plan.connections.iter().copied().max().unwrap_or(0) as u64 + 256;
    // SAFETY: an all-zero rlimit is a valid value of the plain-data struct.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: getrlimit writes one rlimit into the live, correctly typed struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Ok(());
    }
    if (limit.rlim_cur as u64) < most {
        let raised = libc::rlimit {
            rlim_cur: (most as libc::rlim_t).min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from the live struct it is given.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
        if (raised.rlim_cur as u64) < most {
            bail!(
                "open-file limit {} is below the {most} the largest connection count needs: raise it (ulimit -n) or pass smaller --connections",
                limit.rlim_max
            );
        }
    }
    Ok(())
}

/// Runs the suite and writes its results.
pub fn run(args: &SuiteArgs) -> anyhow::Result<()> {
    let plan = Plan::from_args(args)?;
    require_tools()?;
    check_file_limit(&plan)?;
    let _lock = hold_suite_lock()?;
    // Ctrl-C or SIGTERM ends the suite between steps (the running child is killed), and the
    // lab and work directory are still removed by their guards.
    install_interrupt_handlers();
    let bench = std::env::current_exe().context("locating xgate-bench")?;
    let xgate = bench.with_file_name("xgate");
    if !xgate.exists() {
        bail!(
            "no xgate binary next to {} (build both: cargo build --release -p xgate -p xgate-bench)",
            bench.display()
        );
    }
    let (date, git) = date_and_revision();
    let work = std::env::temp_dir().join(format!("xgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let _work_guard = WorkDir(work.clone());
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    eprintln!(
        "xgate-bench suite ({} mode): {} steps, connections {:?}, {} repeats of {} s",
        plan.mode,
        plan.steps(),
        plan.connections,
        plan.repeats,
        plan.duration_seconds
    );

    let lab_config_path = work.join("lab.toml");
    let _ = Command::new(&xgate).args(["lab", "down", "--name", LAB]).output();
    let up = Command::new(&xgate)
        .args(["lab", "up", "--name", LAB, "--queues", "2", "--config-out"])
        .arg(&lab_config_path)
        .output()?;
    if !up.status.success() {
        bail!(
            "xgate lab up failed: {}",
            String::from_utf8_lossy(&up.stderr).trim()
        );
    }
    let _lab = LabGuard { xgate: xgate.clone() };
    sysctl(
        GATEWAY_NS,
        &["net.core.somaxconn=16384", "net.ipv4.tcp_max_syn_backlog=16384"],
    )?;
    sysctl(
        BACKEND_NS,
        &["net.core.somaxconn=16384", "net.ipv4.tcp_max_syn_backlog=16384"],
    )?;
    sysctl(CLIENT_NS, &["net.ipv4.ip_local_port_range=1024 65000"])?;

    let mut suite = Suite {
        xgate_umem_backing: std::cell::RefCell::new("unknown".into()),
        xgate,
        bench: bench.clone(),
        work: work.clone(),
        lab_config: std::fs::read_to_string(&lab_config_path)?,
        progress: Progress {
            done: 0,
            total: plan.steps(),
            started: Instant::now(),
        },
        plan,
    };
    let mut http = Vec::new();
    let mut profile = Vec::new();
    suite.run_server(Server::Xgate, &mut http, &mut profile)?;
    suite.run_server(Server::Nginx, &mut http, &mut profile)?;
    suite.run_open_loop(&mut http)?;
    suite.run_two_lanes(&mut http)?;
    suite.run_proxy(&mut http)?;
    let flood = suite.run_flood()?;

    let packets = Command::new(&bench)
        .args([
            "packets",
            "--json",
            "--seconds",
            &suite.plan.packet_seconds.to_string(),
        ])
        .args(["--repeats", &suite.plan.repeats.to_string()])
        .stderr(Stdio::piped())
        .output_with_timeout(Duration::from_secs(300))?;
    let packet_path = if packets.status.success() {
        serde_json::from_slice(&packets.stdout).context("parsing xgate-bench packets output")?
    } else {
        serde_json::json!({ "error": String::from_utf8_lossy(&packets.stderr).trim() })
    };
    suite.progress.step("packet path measured");

    let results = SuiteResults {
        schema: 1,
        date: date.clone(),
        git: git.clone(),
        command,
        plan: suite.plan.clone(),
        machine: machine(),
        pinning:
            "servers on CPU 0, clients on CPU 1 (taskset), the proxy section's backend on CPU 1 too; kernel delivery on veth runs on the sender's CPU"
                .into(),
        xgate_umem_backing: suite.xgate_umem_backing.borrow().clone(),
        http,
        packet_path,
        profile,
        flood,
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let stem = args.out.join(format!("{date}-{git}"));
    let written = report::write_all(&results, &stem)?;
    let results_md = match (&args.results_md, results.plan.mode.as_str()) {
        (Some(path), _) => Some(path.clone()),
        (None, "smoke") => None,
        (None, _) => Some(PathBuf::from("bench/RESULTS.md")),
    };
    if let Some(path) = results_md {
        report::write_results_md(&results, &stem, &path)?;
        eprintln!("wrote {}", path.display());
    }
    for path in written {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[derive(Args, Clone, Debug)]
pub struct ReportArgs {
    /// A results file written by the suite (`bench/results/<date>-<sha>.json`).
    pub json: PathBuf,
    /// Also rewrite this RESULTS.md from it (its notes section is kept).
    #[arg(long)]
    pub results_md: Option<PathBuf>,
}

/// `xgate-bench report`: writes the markdown table and the plots of a finished run again from
/// its JSON (after the report's layout changed, say), without measuring anything.
pub fn rerender(args: &ReportArgs) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&args.json).with_context(|| format!("reading {}", args.json.display()))?;
    let results: SuiteResults = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a results file of this suite", args.json.display()))?;
    let stem = args.json.with_extension("");
    for path in report::write_views(&results, &stem)? {
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.results_md {
        report::write_results_md(&results, &stem, path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
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
    fn proxy_section_runs_at_one_count_or_at_every_count_up_to_1000() {
        assert_eq!(proxy_connections("smoke", &[10, 100]), vec![100]);
        assert_eq!(proxy_connections("quick", &[10, 100, 1000, 10_000]), vec![100]);
        assert_eq!(proxy_connections("quick", &[10, 10_000]), vec![10]);
        assert_eq!(proxy_connections("quick", &[10_000]), Vec::<usize>::new());
        assert_eq!(
            proxy_connections("full", &[10, 100, 1000, 10_000]),
            vec![10, 100, 1000]
        );
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
        for line in [
            "name = \"backend\"",
            "members = [\"10.77.0.4:8080\"]",
            "max_idle = 164",
            "max_requests_per_connection = 0",
        ] {
            assert!(upstream.contains(line), "{line} in {upstream}");
        }
        assert_eq!(table(&proxy, "[[route]]").trim(), "upstream = \"backend\"");
        // Everything else of the lab's config is kept.
        assert!(table(&proxy, "[tcp]").contains("timeout_ms = 60000"));
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

    #[test]
    fn plans_written_before_the_proxy_section_still_read() {
        let plan: Plan = serde_json::from_str(
            r#"{"mode":"quick","connections":[10,100],"repeats":3,"warmup_seconds":0.5,
                "duration_seconds":2.0,"wrk_connections":[100],"packet_seconds":1.0,"profile":false}"#,
        )
        .unwrap();
        assert!(plan.proxy_connections.is_empty());
    }

    #[test]
    fn the_proxy_reference_is_100_or_the_first_count() {
        assert_eq!(proxy_reference(&[10, 100, 1000]), Some(100));
        assert_eq!(proxy_reference(&[10, 1000]), Some(10));
        assert_eq!(proxy_reference(&[]), None);
    }

    #[test]
    fn steps_count_the_proxy_runs() {
        let args = SuiteArgs {
            quick: false,
            full: false,
            smoke: true,
            repeats: None,
            connections: None,
            out: PathBuf::from("out"),
            results_md: None,
            profile: false,
        };
        let plan = Plan::from_args(&args).unwrap();
        assert_eq!(plan.proxy_connections, vec![100]);
        let mut without = plan.clone();
        without.proxy_connections.clear();
        // Three servers, closed loop and open loop at 100 connections.
        assert_eq!(plan.steps() - without.steps(), 2 * 3 * plan.repeats);
        let mut full = plan.clone();
        full.proxy_connections = vec![10, 100, 1000];
        // Closed loop at each of three counts, open loop at one.
        assert_eq!(full.steps() - without.steps(), 4 * 3 * plan.repeats);
    }
}
