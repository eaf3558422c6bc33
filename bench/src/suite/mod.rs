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
//! `--only` runs some of these sections (see [`Section`]), `--xgate` names the xgate binary under
//! test: `scripts/ab.sh` compares two binaries that way.
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
//!
//! This module holds the options and the run from start to end (and `report`'s rewrite of a
//! finished run's views); the plan, the lab, the host, the servers, single runs, the HTTP
//! sections and the SYN-flood section each have a module of their own.

mod flood;
mod host;
mod lab;
mod plan;
mod runs;
mod sections;
mod servers;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;

use crate::{
    process::install_interrupt_handlers,
    report,
    results::{Plan, Section, SuiteResults},
};

use self::{
    host::{check_file_limit, date_and_revision, hold_suite_lock, machine, require_tools, WorkDir},
    lab::{lab_gateway_config, lab_up, sysctl, BACKEND_NS, CLIENT_NS, GATEWAY_NS},
    plan::results_md_path,
    runs::OutputWithTimeout,
    servers::Server,
};

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
    /// Run only these sections, comma-separated (default: all). A run that leaves some out
    /// rewrites no RESULTS.md unless --results-md is given.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub only: Option<Vec<Section>>,
    /// The xgate binary under test (default: the `xgate` next to xgate-bench).
    #[arg(long)]
    pub xgate: Option<PathBuf>,
    /// Connection counts of the proxy section, comma-separated (default: 100 in the quick
    /// mode, every count up to 1000 in the full one); 1 to 20000 each.
    #[arg(long, value_delimiter = ',')]
    pub proxy_connections: Option<Vec<usize>>,
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

/// One suite run in progress: the binaries, the scratch directory, the lab's gateway config, the
/// plan and the progress bar, shared by every section.
struct Suite {
    /// What xgate's UMEM sat on, from its ready event (`HugePages2M` or `NormalPages`).
    xgate_umem_backing: std::cell::RefCell<String>,
    /// The running xgate's stdout lines after its `ready` event (its `stats` events).
    xgate_lines: std::cell::RefCell<Option<std::sync::mpsc::Receiver<String>>>,
    xgate: PathBuf,
    bench: PathBuf,
    work: PathBuf,
    lab_config: String,
    plan: Plan,
    progress: Progress,
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
    let xgate = match &args.xgate {
        Some(path) => {
            let xgate = std::fs::canonicalize(path).with_context(|| format!("--xgate {}", path.display()))?;
            if !xgate.is_file() {
                bail!("--xgate {}: not a file", path.display());
            }
            eprintln!("xgate under test: {}", xgate.display());
            xgate
        }
        None => bench.with_file_name("xgate"),
    };
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

    let _lab = lab_up()?;
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
        xgate_lines: std::cell::RefCell::new(None),
        xgate,
        bench: bench.clone(),
        work: work.clone(),
        lab_config: lab_gateway_config(),
        progress: Progress {
            done: 0,
            total: plan.steps(),
            started: Instant::now(),
        },
        plan,
    };
    let mut http = Vec::new();
    let mut profile = Vec::new();
    if suite.plan.runs(Section::Xgate) {
        suite.run_server(Server::Xgate, &mut http, &mut profile)?;
    }
    if suite.plan.runs(Section::Nginx) {
        suite.run_server(Server::Nginx, &mut http, &mut profile)?;
    }
    if suite.plan.runs(Section::OpenLoop) {
        suite.run_open_loop(&mut http)?;
    }
    if suite.plan.runs(Section::TwoLanes) {
        suite.run_two_lanes(&mut http)?;
    }
    suite.run_proxy(&mut http)?;
    let flood = if suite.plan.runs(Section::Flood) {
        suite.run_flood()?
    } else {
        Vec::new()
    };
    let tls = if suite.plan.runs(Section::Tls) {
        suite.run_tls()?
    } else {
        Vec::new()
    };
    let packet_path = if suite.plan.runs(Section::Packets) {
        measure_packet_path(&mut suite)?
    } else {
        Value::Null
    };

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
        tls,
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let stem = args.out.join(format!("{date}-{git}"));
    let written = report::write_all(&results, &stem)?;
    if let Some(path) = results_md_path(args, &results.plan) {
        report::write_results_md(&results, &stem, &path)?;
        eprintln!("wrote {}", path.display());
    }
    for path in written {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs `xgate-bench packets` as a child and returns its JSON, or its error as JSON.
fn measure_packet_path(suite: &mut Suite) -> anyhow::Result<Value> {
    let packets = Command::new(&suite.bench)
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
    Ok(packet_path)
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
