//! Starting and stopping the lanes: one XDP program for the interface, then per lane a queue,
//! an AF_XDP port on its own UMEM and a pinned thread; the rings between lanes; the JSON events
//! (`ready`, `stats` on SIGUSR1, `stopped`).
//!
//! Invariants:
//! - Every port is opened before the lanes start and dropped after every lane has stopped (the
//!   lanes are scoped threads borrowing the ports), so a frame handle one lane lends another
//!   always points into mapped memory.
//! - Errors found before the lanes start (a busy queue, no such interface, missing hugepages)
//!   stop xgate with a message before anything is served.

use std::{
    io::Write,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use xgate_userstack::{rss::FlowSteering, FrameState, PortConfig, XskPort};
use xgate_xdp::{Steering, XdpVerdict};

use crate::{
    config::Config,
    counters::{CounterValues, LaneCounters},
    error::RunError,
    handoff::{link_lanes, LaneWake},
    lane::{self, LaneReport, LaneSetup},
    management::{self, ControlView, LanePlacement, Observatory},
    metrics::LaneMetrics,
    metrics::COUNTED_STATUSES,
    reaper::Reaper,
    sys::{self, monotonic_ns},
};

/// How often the main thread refreshes what the management listener shows (and the heat map
/// gains a row).
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Reloads waiting per lane (a lane takes them within one sweep interval).
const RELOAD_RING: usize = 4;

/// SIGHUP: loads `path` again; a valid file's routing goes to every lane, an invalid one is
/// refused (the running routing stays) with an event that says why. Keys other than routes,
/// upstreams need a restart; a change to them is reported, not applied.
/// What a reload that went through changed, for the metrics.
struct Reloaded {
    route_names: Vec<Box<str>>,
    /// The HTTPS certificates as read again (`None`: HTTPS is off, or needs a restart).
    certificates: Option<Vec<crate::tls::CertificateInfo>>,
}

fn reload(
    running: &Config,
    path: &std::path::Path,
    rings: &mut [rtrb::Producer<lane::Reload>],
    wakes: &[LaneWake],
    events: &mut dyn Write,
) -> Option<Reloaded> {
    let refuse = |events: &mut dyn Write, error: &dyn std::fmt::Display| {
        let _ = writeln!(
            events,
            "{{\"event\":\"reload\",\"ok\":false,\"error\":{}}}",
            json_string(&error.to_string())
        );
        let _ = events.flush();
        tracing::warn!(%error, "reload refused");
    };
    let loaded = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            refuse(events, &error);
            return None;
        }
    };
    // Certificates are read again (renewed ones replace the old for new connections) when the
    // HTTPS listener stays as it is; turning it on or off, or moving it, needs a restart.
    let tls = if loaded.https_port() == running.https_port() {
        match crate::tls::server_config(&loaded.tls) {
            Ok(setup) => setup,
            Err(error) => {
                refuse(events, &error);
                return None;
            }
        }
    } else {
        None
    };
    let routing = Arc::new(loaded.routing());
    let certificates = tls.as_ref().map(|setup| setup.certificates.clone());
    let tls = tls.map(|setup| setup.config);
    let reloaded = lane::Reload {
        routing: Arc::clone(&routing),
        tls: tls.clone(),
    };
    let mut delivered = true;
    for (ring, wake) in rings.iter_mut().zip(wakes) {
        delivered &= ring.push(reloaded.clone()).is_ok();
        wake.wake_if_sleeping();
    }
    let mut unchanged = loaded.clone();
    unchanged.upstream = running.upstream.clone();
    unchanged.route = running.route.clone();
    if tls.is_some() {
        unchanged.tls.certificate = running.tls.certificate.clone();
    }
    let restart_needed = unchanged != *running;
    let _ = writeln!(
        events,
        "{{\"event\":\"reload\",\"ok\":{delivered},\"routes\":{},\"upstreams\":{},\"restart_needed_for_other_keys\":{restart_needed}}}",
        routing.routes.routes().len(),
        routing.pools.len()
    );
    let _ = events.flush();
    tracing::info!(
        routes = routing.routes.routes().len(),
        upstreams = routing.pools.len(),
        "routing reloaded"
    );
    Some(Reloaded {
        route_names: routing.route_names(),
        certificates,
    })
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Rx queues `interface` has in this network namespace (from sysfs; 1 if it cannot be read).
fn rx_queues(interface: &str) -> usize {
    std::fs::read_dir(format!("/sys/class/net/{interface}/queues"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

/// Drops the process's capabilities (see [`crate::sys::capabilities`]), probing with a read of
/// the XDP program's counters, as the metrics and the reaper read its maps; the kept ones as a
/// JSON list body for the ready event. A failure to drop is logged, and the gateway runs on.
fn drop_capabilities(steering: &Steering) -> String {
    use crate::sys::capabilities;
    match capabilities::drop_after_setup(|| steering.verdict_stats().is_ok()) {
        Ok(dropped) => {
            let kept = capabilities::names(dropped.kept);
            tracing::info!(
                held = ?capabilities::names(dropped.held),
                kept = ?kept,
                "capabilities dropped after setup"
            );
            kept.iter()
                .map(|name| format!("\"{name}\""))
                .collect::<Vec<_>>()
                .join(",")
        }
        Err(error) => {
            tracing::warn!(%error, "capabilities not dropped");
            "\"(all)\"".to_string()
        }
    }
}

/// The `umem_backing` label of `xgate_lane_info`.
fn backing_name(backing: xgate_hugepages::Backing) -> &'static str {
    match backing {
        xgate_hugepages::Backing::HugePages2M => "hugepages_2m",
        xgate_hugepages::Backing::NormalPages => "normal_pages",
    }
}

/// The cores this process may run on, in order.
fn allowed_cores() -> Vec<core_affinity::CoreId> {
    core_affinity::get_core_ids().unwrap_or_default()
}

/// How many lanes, and the core of each (`None`: not pinned).
fn plan(config: &Config) -> Result<Vec<Option<core_affinity::CoreId>>, RunError> {
    let gw = &config.gateway;
    let all_queues = rx_queues(&gw.interface);
    let queues = all_queues.saturating_sub(gw.queue as usize).max(1);
    let cores: Vec<core_affinity::CoreId> = match &gw.cores {
        Some(ids) => ids.iter().map(|&id| core_affinity::CoreId { id }).collect(),
        None => allowed_cores(),
    };
    let lanes = match gw.lanes {
        Some(lanes) => {
            if lanes > queues {
                return Err(RunError::Lanes(format!(
                    "config: key `gateway.lanes`: {lanes} lanes need {lanes} rx queues of `{}` from queue {}, \
                     but it has {queues} (more: ethtool -L {} combined {lanes}, or numrxqueues for veth)",
                    gw.interface,
                    gw.queue,
                    gw.interface
                )));
            }
            lanes
        }
        None => queues.min(cores.len().max(1)),
    };
    let covered = gw.queue as usize..gw.queue as usize + lanes;
    if (covered.start > 0 || covered.end < all_queues) && !gw.allow_uncovered_queues {
        let uncovered: Vec<String> = (0..all_queues)
            .filter(|q| !covered.contains(q))
            .map(|q| q.to_string())
            .collect();
        return Err(RunError::Lanes(format!(
            "`{iface}` has {all_queues} rx queues but the lanes cover only queues {}..{}: frames for {} that land on \
             queue {} would be dropped. Give every queue a lane (gateway.lanes, with a core each), or shrink the \
             interface to the lanes (ethtool -L {iface} combined {lanes}; veth: ethtool -L {iface} rx {lanes} tx {lanes}), \
             or set gateway.allow_uncovered_queues = true if the NIC's flow rules keep the gateway's traffic off them",
            covered.start,
            covered.end - 1,
            gw.ipv4,
            uncovered.join(", "),
            iface = gw.interface,
        )));
    }
    Ok((0..lanes).map(|i| cores.get(i).copied()).collect())
}

fn counters_json(lane: usize, values: &CounterValues) -> String {
    let fields: Vec<String> = values
        .named()
        .iter()
        .map(|(name, value)| format!("\"{name}\":{value}"))
        .collect();
    format!("{{\"lane\":{lane},{}}}", fields.join(","))
}

/// What the signal handlers ask of a running gateway.
pub struct Signals {
    /// Stop now (SIGINT, or a second SIGTERM).
    pub stop: &'static AtomicBool,
    /// Print a `stats` event (SIGUSR1).
    pub report: &'static AtomicBool,
    /// Drain (SIGTERM): stop accepting, finish in-flight requests up to `timeouts.drain_ms`.
    pub drain: &'static AtomicBool,
    /// Load the configuration file again (SIGHUP).
    pub reload: &'static AtomicBool,
}

/// Runs the gateway until stopped or drained; prints a `stats` event whenever asked, and
/// reloads the routing from `config_path` on SIGHUP.
pub fn run(
    config: &Config,
    config_path: &std::path::Path,
    signals: &Signals,
    events: &mut dyn Write,
) -> Result<(), RunError> {
    let stop = signals.stop;
    let gw = &config.gateway;
    let cores = plan(config)?;
    let lanes = cores.len();
    // The SYN cookies' secret: the XDP program answers SYNs with cookies and the lanes take up
    // their ACKs, so both have it.
    let cookie_key = [random_key_half()?, random_key_half()?];
    let link_mtu = xgate_userstack::xsk::interface_mtu(&gw.interface).unwrap_or(1500);
    // Certificates and keys are read now, while the process may still read what it must.
    let tls_setup = crate::tls::server_config(&config.tls).map_err(|e| RunError::Tls(e.to_string()))?;
    let certificates = tls_setup
        .as_ref()
        .map(|setup| setup.certificates.clone())
        .unwrap_or_default();
    let tls = tls_setup.map(|setup| setup.config);
    let mut steering = Steering::attach_with(&gw.interface, &config.xdp_options(cookie_key, link_mtu))?;
    let maps = Arc::new(steering.flow_maps()?);
    let listener = if config.metrics.enabled {
        let listener =
            std::net::TcpListener::bind(config.metrics.listen).map_err(|cause| RunError::Management {
                addr: config.metrics.listen,
                cause,
            })?;
        Some(listener)
    } else {
        None
    };
    let mut ports = Vec::with_capacity(lanes);
    for (lane, core) in cores.iter().enumerate() {
        let queue = gw.queue + lane as u32;
        let port = XskPort::open(&PortConfig {
            interface: gw.interface.clone(),
            queue,
            frame_size: config.umem.frame_size,
            frames: config.umem.frames,
            allow_normal_pages: config.umem.allow_normal_pages,
            // The UMEM on the node of the core its lane runs on.
            numa_node: core.and_then(|core| crate::doctor::cpu_node(core.id)),
        })?;
        steering.register_socket(queue, port.fd())?;
        ports.push(port);
    }
    if let Some(hint) = ports.iter().find_map(XskPort::hugepage_hint) {
        tracing::warn!("no free 2 MiB hugepages; the UMEM runs on normal pages. To reserve them: {hint}");
    }
    let core_names: Vec<String> = cores
        .iter()
        .map(|c| c.map_or("-".to_string(), |c| c.id.to_string()))
        .collect();
    tracing::info!(
        interface = %gw.interface,
        xdp_mode = steering.mode_name(),
        lanes,
        queues = %format!("{}..{}", gw.queue, gw.queue as usize + lanes - 1),
        cores = %core_names.join(","),
        bind_mode = ports[0].mode().name(),
        umem_frames = config.umem.frames,
        frame_size = config.umem.frame_size,
        backing = ?ports[0].backing(),
        "XDP attached; lanes bound"
    );

    // Everything privileged is done: give up the capabilities before any other thread exists
    // (they are per thread, and inherited).
    let capabilities_kept = drop_capabilities(&steering);

    // Every lane's port has the same UMEM: half of its frames are rx frames.
    let links = link_lanes(lanes, config.umem.frames as usize / 2);
    let wakes: Vec<LaneWake> = (0..lanes)
        .map(|_| {
            LaneWake::new().map_err(|cause| RunError::System {
                what: "eventfd",
                cause,
            })
        })
        .collect::<Result<_, _>>()?;
    let counters: Vec<LaneCounters> = (0..lanes).map(|_| LaneCounters::default()).collect();
    // Per lane: the seed of smoltcp's generator and the two halves of its ISN key.
    let seeds: Vec<[u64; 3]> = (0..lanes)
        .map(|_| {
            let mut seed = [0u64; 3];
            for word in &mut seed {
                *word = random_key_half()?;
            }
            Ok(seed)
        })
        .collect::<Result<_, RunError>>()?;
    let lane_metrics: Vec<LaneMetrics> = (0..lanes).map(|_| LaneMetrics::default()).collect();
    let (rss_steering, rss_source) = lane_steering(gw, lanes);
    // One rate table for the process: every lane counts in it, and a reload keeps it.
    let rate_table = Arc::new(xgate_proxy::ratelimit::RateTable::new(
        config.http.rate_limit_entries,
    ));
    let (mut reaper, reap_ends) = Reaper::new(Arc::clone(&maps), &config.flows, lanes);
    let mut reap_ends = reap_ends.into_iter();
    let observatory = Observatory {
        counters: &counters,
        metrics: &lane_metrics,
        maps: Arc::clone(&maps),
        view: std::sync::Mutex::new(ControlView {
            route_names: config.routing().route_names(),
            certificates,
            ..ControlView::default()
        }),
        heatmap_seconds: config.metrics.heatmap_seconds,
        placements: ports
            .iter()
            .zip(cores.iter().copied())
            .map(|(port, core)| LanePlacement {
                core: core.map(|core| core.id),
                umem_node: port.umem_node(),
                bind_mode: port.mode().name(),
                umem_backing: backing_name(port.backing()).to_string(),
            })
            .collect(),
    };
    let metrics_address = listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map_or_else(|| "off".to_string(), |a| a.to_string());

    let lane_stop = AtomicBool::new(false);
    let lanes_built = std::sync::atomic::AtomicUsize::new(0);
    let bind_mode = ports[0].mode().name();
    let zero_copy = match ports[0].zero_copy_refusal() {
        None => "bound".to_string(),
        Some(refusal) => format!("refused: {refusal}"),
    };
    let umem_backing = ports[0].backing();
    let umem_nodes: Vec<String> = ports
        .iter()
        .map(|port| {
            port.umem_node()
                .map_or("null".to_string(), |node| node.to_string())
        })
        .collect();
    let umem_nodes = umem_nodes.join(",");
    let (mut reload_rings, reload_ends): (Vec<_>, Vec<_>) = (0..lanes)
        .map(|_| rtrb::RingBuffer::<lane::Reload>::new(RELOAD_RING))
        .unzip();
    let mut reload_ends = reload_ends.into_iter();
    let mut drain_deadline: Option<std::time::Instant> = None;
    let reports: Vec<Result<LaneReport, RunError>> = std::thread::scope(|scope| {
        let mut threads = Vec::with_capacity(lanes);
        for ((index, (port, links)), core) in
            ports.iter_mut().zip(links).enumerate().zip(cores.iter().copied())
        {
            let setup = LaneSetup {
                reloads: reload_ends.next().expect("one ring per lane"),
                drain: signals.drain,
                index,
                port,
                links,
                wakes: &wakes,
                counters: &counters[index],
                seed: seeds[index][0],
                isn_key: xgate_userstack::isn::IsnKey([seeds[index][1], seeds[index][2]]),
                cookie_key: xgate_userstack::tcp_server::CookieKey(cookie_key),
                steering: rss_steering.clone(),
                core,
                metrics: &lane_metrics[index],
                reaps: reap_ends.next().expect("one reaper ring pair per lane"),
                built: &lanes_built,
                rate_table: Arc::clone(&rate_table),
                tls: tls.clone(),
            };
            let lane_stop = &lane_stop;
            let spawned = std::thread::Builder::new()
                .name(format!("xgate-lane{index}"))
                .spawn_scoped(scope, move || lane::run(config, setup, lane_stop));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    lane_stop.store(true, Ordering::SeqCst);
                    tracing::error!(lane = index, error = %e, "cannot start lane");
                    break;
                }
            }
        }
        let management = listener.map(|listener| {
            let observatory = &observatory;
            let lane_stop = &lane_stop;
            scope.spawn(move || management::serve(listener, observatory, lane_stop))
        });
        // Ready once every lane has built its sockets and buffers (or one failed to).
        while lanes_built.load(Ordering::SeqCst) < threads.len() && threads.iter().all(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if lanes_built.load(Ordering::SeqCst) == lanes {
            let _ = writeln!(
                events,
                "{{\"event\":\"ready\",\"interface\":\"{}\",\"ipv4\":\"{}\",\"port\":{},\"lanes\":{lanes},\"xdp_mode\":\"{}\",\"bind_mode\":\"{}\",\"zero_copy\":{},\"umem_backing\":\"{:?}\",\"rss_key\":\"{rss_source}\",\"umem_nodes\":[{umem_nodes}],\"capabilities_kept\":[{capabilities_kept}],\"metrics\":\"{metrics_address}\"}}",
                gw.interface,
                gw.ipv4,
                gw.listen_port,
                steering.mode_name(),
                bind_mode,
                json_string(&zero_copy),
                umem_backing
            );
            let _ = events.flush();
        }
        let mut next_refresh = std::time::Instant::now();
        let mut new_route_names = None;
        while !stop.load(Ordering::Relaxed) && threads.iter().all(|t| !t.is_finished()) {
            if signals.reload.swap(false, Ordering::SeqCst) {
                if let Some(reloaded) = reload(config, config_path, &mut reload_rings, &wakes, events) {
                    new_route_names = Some(reloaded.route_names);
                    if let Some(certificates) = reloaded.certificates {
                        observatory
                            .view
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .certificates = certificates;
                    }
                }
            }
            if reaper.tick(monotonic_ns()) {
                for wake in &wakes {
                    wake.wake_if_sleeping();
                }
            }
            if std::time::Instant::now() >= next_refresh {
                next_refresh += REFRESH_INTERVAL;
                let xdp = steering.verdict_stats().map(|s| s.to_vec()).unwrap_or_default();
                observatory.refresh(xdp, reaper.counts, new_route_names.take());
            }
            if signals.drain.load(Ordering::SeqCst) {
                let deadline = *drain_deadline.get_or_insert_with(|| {
                    let _ = writeln!(
                        events,
                        "{{\"event\":\"draining\",\"deadline_ms\":{}}}",
                        config.timeouts.drain_ms
                    );
                    let _ = events.flush();
                    for wake in &wakes {
                        wake.wake_if_sleeping();
                    }
                    std::time::Instant::now() + Duration::from_millis(config.timeouts.drain_ms)
                });
                let values: Vec<CounterValues> = counters.iter().map(LaneCounters::read).collect();
                let idle = values.iter().all(|v| v.in_flight == 0 && v.open_connections == 0);
                if idle || std::time::Instant::now() >= deadline {
                    let left: u64 = values.iter().map(|v| v.in_flight).sum();
                    let _ = writeln!(events, "{{\"event\":\"drained\",\"in_flight_left\":{left}}}");
                    let _ = events.flush();
                    break;
                }
            }
            if signals.report.swap(false, Ordering::SeqCst) {
                let lanes_json: Vec<String> = counters
                    .iter()
                    .enumerate()
                    .map(|(i, c)| counters_json(i, &c.read()))
                    .collect();
                let _ = writeln!(
                    events,
                    "{{\"event\":\"stats\",\"lanes\":[{}]}}",
                    lanes_json.join(",")
                );
                let _ = events.flush();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        lane_stop.store(true, Ordering::SeqCst);
        for wake in &wakes {
            wake.sleeping.store(true, Ordering::SeqCst);
            wake.wake_if_sleeping();
        }
        if let Some(management) = management {
            let _ = management.join();
        }
        threads
            .into_iter()
            .enumerate()
            .map(|(lane, t)| t.join().unwrap_or(Err(RunError::LanePanicked(lane))))
            .collect()
    });
    let mut reports: Vec<LaneReport> = reports.into_iter().collect::<Result<_, _>>()?;
    // Every lane has stopped: frames still in the rings go home to the ports that lent them.
    for (lane, report) in reports.iter_mut().enumerate() {
        for frames in report.links.frames_in.iter_mut().flatten() {
            while let Ok(handed) = frames.pop() {
                ports[usize::from(handed.origin)].take_back(handed.frame);
            }
        }
        for returns in report.links.returns_in.iter_mut().flatten() {
            while let Ok(frame) = returns.pop() {
                ports[lane].take_back(frame);
            }
        }
    }

    // Let the kernel complete what is on the tx rings, so the census below shows every frame home.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    for port in ports.iter_mut() {
        loop {
            port.flush();
            let census = port.ledger().census();
            let in_flight = census[FrameState::TxRing as usize] + census[FrameState::TxPending as usize];
            if in_flight == 0 || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    write_stopped(events, &steering, &ports, &reports)
}

fn write_stopped(
    events: &mut dyn Write,
    steering: &Steering,
    ports: &[XskPort],
    reports: &[LaneReport],
) -> Result<(), RunError> {
    let xdp = steering.verdict_stats()?;
    let mut statuses = [0u64; COUNTED_STATUSES.len()];
    let mut census = [0usize; FrameState::COUNT];
    let (mut rx, mut tx, mut completed, mut refused, mut violations) = (0, 0, 0, 0, 0);
    let (mut dropped, mut ring_full, mut fill_empty, mut invalid) = (0, 0, 0, 0);
    for (report, port) in reports.iter().zip(ports) {
        for (total, n) in statuses.iter_mut().zip(report.statuses) {
            *total += n;
        }
        for (total, n) in census.iter_mut().zip(port.ledger().census()) {
            *total += n;
        }
        let stats = port.stats();
        rx += stats.rx_frames;
        tx += stats.tx_frames;
        completed += stats.tx_completed;
        refused += stats.tx_refused;
        violations += port.ledger().violations();
        // The counters are reported even if the kernel will not give its own (zeros then).
        let kernel = port.kernel_stats().unwrap_or_default();
        dropped += kernel.rx_dropped;
        ring_full += kernel.rx_ring_full;
        fill_empty += kernel.rx_fill_ring_empty;
        invalid += kernel.rx_invalid_descs + kernel.tx_invalid_descs;
    }
    let accepted: u64 = reports.iter().map(|r| r.counters.accepted).sum();
    let xdp_json: Vec<String> = XdpVerdict::ALL
        .iter()
        .map(|v| format!("\"{}\":{}", v.name(), xdp[*v as usize].packets))
        .collect();
    let census_json: Vec<String> = FrameState::ALL
        .iter()
        .map(|s| format!("\"{s:?}\":{}", census[*s as usize]))
        .collect();
    let status_json: Vec<String> = COUNTED_STATUSES
        .iter()
        .zip(statuses)
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("\"{s}\":{n}"))
        .collect();
    let lanes_json: Vec<String> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| counters_json(i, &r.counters))
        .collect();
    writeln!(
        events,
        "{{\"event\":\"stopped\",\"connections_accepted\":{accepted},\"responses\":{{{}}},\"xdp_packets\":{{{}}},\"rx_frames\":{rx},\"tx_frames\":{tx},\"tx_completed\":{completed},\"frames\":{{{}}},\"ledger_violations\":{violations},\"tx_refused\":{refused},\"kernel_rx_dropped\":{dropped},\"kernel_rx_ring_full\":{ring_full},\"kernel_fill_ring_empty\":{fill_empty},\"kernel_invalid_descs\":{invalid},\"lanes\":[{}]}}",
        status_json.join(","),
        xdp_json.join(","),
        census_json.join(","),
        lanes_json.join(",")
    )?;
    events.flush()?;
    Ok(())
}

/// 64 random bits from the kernel, for a seed or half of a key.
fn random_key_half() -> Result<u64, RunError> {
    sys::random_u64().map_err(|cause| RunError::System {
        what: "getrandom",
        cause,
    })
}

/// How the lanes predict the receive queue of their upstream connections' replies (the local
/// port they pick makes the NIC steer the reply back to them): the NIC's own RSS key and table
/// where its driver reports them (ETHTOOL_GRSSH), else the default Toeplitz key over a
/// round-robin table, as most drivers start. `None` for one lane (every reply is its own).
/// Also says which: `"nic"` or `"default"`, for the ready event.
fn lane_steering(gw: &crate::config::GatewayConfig, lanes: usize) -> (Option<FlowSteering>, &'static str) {
    let from_nic = match sys::ethtool::nic_rss(&gw.interface) {
        Ok(Some(rss)) if rss.key.len() >= 16 => {
            let mut key = [0u8; 40];
            let used = rss.key.len().min(40);
            key[..used].copy_from_slice(&rss.key[..used]);
            let table: Option<Vec<u16>> = rss
                .indirection
                .iter()
                .map(|&queue| {
                    let lane = queue.checked_sub(gw.queue)? as usize;
                    (lane < lanes).then_some(lane as u16)
                })
                .collect();
            match table.map(|table| FlowSteering::new(key, table)) {
                Some(Ok(steering)) => Some(steering),
                _ => {
                    tracing::warn!(
                        interface = %gw.interface,
                        "the NIC's RSS table names queues without a lane: the default key and a round-robin table are assumed"
                    );
                    None
                }
            }
        }
        Ok(_) => None,
        Err(error) => {
            tracing::debug!(interface = %gw.interface, %error, "the NIC's RSS key could not be read");
            None
        }
    };
    let source = if from_nic.is_some() { "nic" } else { "default" };
    if lanes <= 1 {
        return (None, source);
    }
    let steering = from_nic
        .unwrap_or_else(|| FlowSteering::round_robin(xgate_userstack::rss::DEFAULT_RSS_KEY, lanes as u16));
    (Some(steering), source)
}
