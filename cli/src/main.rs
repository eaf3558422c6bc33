//! `xgate`: the kernel-bypass HTTP gateway's one binary, a thin command line over the gateway
//! crate (`run`, `reload`), the lab crate (`lab up|down|flood`, `demo`) and the operator's views
//! of a running gateway (`flows`, `top`, `heatmap`, in [`views`]).
//!
//! Errors reach the operator here, as one `xgate: error: …` line and a failing exit code.

#![forbid(unsafe_code)]

mod views;

use anyhow::{bail, Context};
use xgate_gateway::{config, logging, runtime, sys};
use xgate_lab as lab;

#[global_allocator]
static ALLOCATOR: sys::alloc::CountingAllocator = sys::alloc::CountingAllocator;

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xgate",
    version,
    about = "Kernel-bypass HTTP gateway: XDP + AF_XDP + userspace TCP/IP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway on the interface named in the config (needs root).
    Run {
        /// TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check this host against a configuration before starting: kernel, privileges, the
    /// interface (queues, MTU, offloads, interrupts, NUMA), hugepages, and that the kernel does
    /// not hold the gateway's address. Each check passes, warns or fails with its fix; the exit
    /// code is 0, 1 or 2 by the worst one.
    Doctor {
        /// TOML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Print the findings as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Check a config file and ask a running gateway to load it (SIGHUP): routes and upstream
    /// pools change without dropping connections; an invalid file is refused.
    Reload {
        /// TOML configuration file (the one the gateway was started with).
        #[arg(long)]
        config: PathBuf,
        /// Process id of the running gateway.
        #[arg(long)]
        pid: i32,
    },
    /// Create or remove the network-namespace lab.
    Lab {
        #[command(subcommand)]
        action: LabAction,
    },
    /// The XDP flow table of a running gateway, like `ss` (from its management listener).
    Flows {
        /// The gateway's management listener (`metrics.listen`).
        #[arg(long, default_value = DEFAULT_MANAGEMENT)]
        addr: std::net::SocketAddr,
        /// Order: latency (handshake, slowest first), bytes, packets, retransmits, age (oldest
        /// first).
        #[arg(long, default_value = "age")]
        sort: String,
        /// Show at most this many flows.
        #[arg(long)]
        limit: Option<usize>,
        /// Print the JSON the gateway returns instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A live view of a running gateway: rates, latency percentiles, flows, drops; refreshed
    /// once a second.
    Top {
        #[arg(long, default_value = DEFAULT_MANAGEMENT)]
        addr: std::net::SocketAddr,
        /// Stop after this many screens (default: until interrupted).
        #[arg(long)]
        iterations: Option<u64>,
        /// Milliseconds between screens.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Print screens one after another instead of redrawing the terminal.
        #[arg(long)]
        plain: bool,
    },
    /// The latency heat map of a running gateway (time x latency bucket, colour = count) as SVG.
    Heatmap {
        #[arg(long, default_value = DEFAULT_MANAGEMENT)]
        addr: std::net::SocketAddr,
        /// request (wire arrival to response queued) or handshake (SYN to first ACK).
        #[arg(long, default_value = "request")]
        kind: String,
        /// Where to write the SVG.
        #[arg(long)]
        out: PathBuf,
    },
    /// Build the lab, start the gateway in it, send real HTTP requests with curl, print what came
    /// back and a summary, and remove the lab.
    Demo {
        /// Lab name (namespaces are <name>-cli, -gw, -be, -sw).
        #[arg(long, default_value = "xgate-demo")]
        name: String,
        /// Requests sent over one keep-alive connection for the latency summary.
        #[arg(long, default_value_t = 500)]
        requests: usize,
    },
}

#[derive(Subcommand)]
enum LabAction {
    /// Create the lab (removing a stale one of the same name first) and write its gateway config.
    Up {
        #[arg(long, default_value = lab::DEFAULT_NAME)]
        name: String,
        /// Where to write the gateway config for this lab.
        #[arg(long)]
        config_out: Option<PathBuf>,
        /// Rx/tx queues per veth (xgate runs one lane per queue, up to the cores it has).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
        queues: u32,
    },
    /// Remove every namespace and link of the lab (also after a crash).
    Down {
        #[arg(long, default_value = lab::DEFAULT_NAME)]
        name: String,
    },
    /// Flood the gateway with SYNs from spoofed sources, from the lab's client namespace, as fast
    /// as one core can send; prints one JSON line (sent, seconds, rate, sources).
    Flood {
        #[arg(long, default_value = lab::DEFAULT_NAME)]
        name: String,
        /// How long to send.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Stop after this many frames (SYNs, and their ACKs with `--blind-ack`).
        #[arg(long, default_value_t = u64::MAX)]
        count: u64,
        /// Distinct spoofed (address, port) sources.
        #[arg(long, default_value_t = 65_000)]
        sources: u32,
        /// First spoofed source address (counted up from here, 60,000 addresses at most).
        #[arg(long, default_value = "10.77.1.0")]
        from: std::net::Ipv4Addr,
        /// Where the SYNs go: the gateway's address, or another on the gateway's link (frames
        /// are addressed to the gateway interface's MAC).
        #[arg(long, default_value = "10.77.0.2")]
        to: std::net::Ipv4Addr,
        /// The listening port.
        #[arg(long, default_value_t = 80)]
        port: u16,
        /// Follow each SYN with an ACK from its source, its acknowledgment number guessed (a
        /// blind spoofer posing as completed handshakes).
        #[arg(long)]
        blind_ack: bool,
    },
}

/// Where the management listener is unless the configuration says otherwise.
const DEFAULT_MANAGEMENT: &str = "127.0.0.1:9180";

static STOP: AtomicBool = AtomicBool::new(false);
static REPORT: AtomicBool = AtomicBool::new(false);
static DRAIN: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: i32) {
    match signal {
        libc::SIGUSR1 => REPORT.store(true, Ordering::SeqCst),
        libc::SIGHUP => RELOAD.store(true, Ordering::SeqCst),
        // The first SIGTERM drains; a second one stops at once.
        libc::SIGTERM if !DRAIN.swap(true, Ordering::SeqCst) => {}
        _ => STOP.store(true, Ordering::SeqCst),
    }
}

/// SIGTERM drains the gateway (a second SIGTERM or SIGINT stops it at once); SIGHUP reloads the
/// configuration; SIGUSR1 asks for a `stats` event.
fn install_signal_handlers() {
    // `on_signal` is async-signal-safe: a single atomic store.
    sys::on_signals(
        &[libc::SIGINT, libc::SIGTERM, libc::SIGUSR1, libc::SIGHUP],
        on_signal,
    );
}

fn require_root(what: &str) -> anyhow::Result<()> {
    if !sys::is_root() {
        bail!("{what} needs root (CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW): run it with sudo or as root");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Run { config } => run(&config),
        Command::Doctor { config, json } => doctor(&config, json),
        Command::Reload { config, pid } => reload(&config, pid),
        Command::Lab {
            action:
                LabAction::Up {
                    name,
                    config_out,
                    queues,
                },
        } => lab_up(&name, config_out, queues),
        Command::Lab {
            action: LabAction::Down { name },
        } => require_root("xgate lab down").and_then(|_| {
            lab::Lab::new(&name)
                .and_then(|lab| lab.down())
                .map_err(anyhow::Error::from)
        }),
        Command::Lab {
            action:
                LabAction::Flood {
                    name,
                    seconds,
                    count,
                    sources,
                    from,
                    to,
                    port,
                    blind_ack,
                },
        } => require_root("xgate lab flood").and_then(|_| {
            let plan = lab::flood::FloodPlan {
                lab: name,
                from,
                sources,
                seconds,
                count,
                to,
                port,
                blind_ack,
            };
            let outcome = lab::flood::run(&plan)?;
            println!(
                "{}",
                serde_json::json!({
                    "sent": outcome.sent,
                    "seconds": outcome.seconds,
                    "rate": outcome.sent as f64 / outcome.seconds,
                    "sources": sources,
                    "generator": "af_packet sendmmsg",
                })
            );
            Ok(())
        }),
        Command::Demo { name, requests } => require_root("xgate demo").and_then(|_| {
            let xgate = std::env::current_exe().context("locating the xgate binary")?;
            Ok(lab::demo::run(&xgate, &name, requests)?)
        }),
        Command::Flows {
            addr,
            sort,
            limit,
            json,
        } => flows(addr, &sort, limit, json),
        Command::Top {
            addr,
            iterations,
            interval_ms,
            plain,
        } => top(addr, iterations, interval_ms, plain),
        Command::Heatmap { addr, kind, out } => heatmap(addr, &kind, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xgate: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn flows(addr: std::net::SocketAddr, sort: &str, limit: Option<usize>, json: bool) -> anyhow::Result<()> {
    let mut path = format!("/flows?sort={sort}");
    if let Some(limit) = limit {
        path.push_str(&format!("&limit={limit}"));
    }
    if json {
        println!("{}", views::fetch(addr, &path)?.trim_end());
    } else {
        print!("{}", views::flows_table(&views::fetch_json(addr, &path)?));
    }
    Ok(())
}

fn top(
    addr: std::net::SocketAddr,
    iterations: Option<u64>,
    interval_ms: u64,
    plain: bool,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let redraw = !plain && std::io::stdout().is_terminal();
    let interval = std::time::Duration::from_millis(interval_ms.max(100));
    let mut previous: Option<(serde_json::Value, std::time::Instant)> = None;
    let mut shown = 0;
    loop {
        let now = views::fetch_json(addr, "/top")?;
        let at = std::time::Instant::now();
        let seconds = previous.as_ref().map_or(interval.as_secs_f64(), |(_, t)| {
            at.duration_since(*t).as_secs_f64()
        });
        let screen = views::top_screen(previous.as_ref().map(|(v, _)| v), &now, seconds);
        if redraw {
            print!("\x1b[2J\x1b[H{screen}");
        } else {
            println!("{screen}");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        previous = Some((now, at));
        shown += 1;
        if iterations.is_some_and(|n| shown >= n) || STOP.load(Ordering::Relaxed) {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

fn heatmap(addr: std::net::SocketAddr, kind: &str, out: &std::path::Path) -> anyhow::Result<()> {
    let map = views::fetch_json(addr, &format!("/heatmap?kind={kind}"))?;
    let svg = views::heatmap_svg(&map)?;
    std::fs::write(out, svg).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{} heat map of {} s written to {}",
        kind,
        map["rows"].as_array().map_or(0, Vec::len),
        out.display()
    );
    Ok(())
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let config = config::Config::load(path)?;
    logging::init(&config.log.level);
    // Root, or the capabilities XDP, AF_XDP and BPF need (a unit's AmbientCapabilities).
    let missing = xgate_gateway::doctor::effective_capabilities()
        .map(xgate_gateway::doctor::missing_capabilities)
        .unwrap_or_default();
    if !missing.is_empty() {
        bail!(
            "xgate run needs {}: {}",
            missing.join(", "),
            xgate_gateway::doctor::CAPABILITIES_FIX
        );
    }
    install_signal_handlers();
    let stdout = std::io::stdout();
    let mut events = stdout.lock();
    let signals = runtime::Signals {
        stop: &STOP,
        report: &REPORT,
        drain: &DRAIN,
        reload: &RELOAD,
    };
    Ok(runtime::run(&config, path, &signals, &mut events)?)
}

/// `xgate doctor`: the host's findings for the configuration; exits with their worst level.
fn doctor(path: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let config = config::Config::load(path)?;
    let cores = xgate_gateway::doctor::usable_cores();
    let findings = xgate_gateway::doctor::judge(&config, &xgate_gateway::doctor::probe(&config), &cores);
    if json {
        let worst = xgate_gateway::doctor::worst(&findings);
        println!(
            "{}",
            serde_json::json!({ "worst": worst.name(), "findings": findings })
        );
    } else {
        print!("{}", xgate_gateway::doctor::render_text(&findings));
    }
    std::process::exit(xgate_gateway::doctor::exit_code(&findings));
}

/// `xgate reload`: checks the file first (so its errors reach the operator here), then asks
/// the running gateway to load it with SIGHUP.
fn reload(config: &std::path::Path, pid: i32) -> anyhow::Result<()> {
    config::Config::load(config)?;
    if pid <= 0 {
        bail!("--pid {pid}: expected the gateway's process id");
    }
    sys::send_signal(pid, libc::SIGHUP).with_context(|| format!("cannot signal process {pid}"))?;
    println!(
        "config {} is valid; asked process {pid} to reload it",
        config.display()
    );
    Ok(())
}

fn lab_up(name: &str, config_out: Option<PathBuf>, queues: u32) -> anyhow::Result<()> {
    require_root("xgate lab up")?;
    let mut lab = lab::Lab::new(name)?;
    lab.queues = queues;
    lab.up()?;
    let config = lab::gateway_config().to_toml();
    if let Some(path) = &config_out {
        std::fs::write(path, &config).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "lab `{name}` is up: client {} ({}-cli), gateway {} owned by xgate ({}-gw, kernel keeps {}), backend {} ({}-be)",
        lab::netns::CLIENT_IP,
        name,
        lab::netns::GATEWAY_IP,
        name,
        lab::netns::GATEWAY_HOST_IP,
        lab::netns::BACKEND_IP,
        name
    );
    match config_out {
        Some(path) => println!("gateway config written to {}", path.display()),
        None => print!("gateway config:\n{config}"),
    }
    println!("start the gateway: ip netns exec {name}-gw xgate run --config <that file>");
    Ok(())
}
