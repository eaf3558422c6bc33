//! A lane: one rx/tx queue, its AF_XDP port and UMEM, its own smoltcp interface and sockets
//! ([`TcpServer`]), its HTTP stage, on one thread pinned to one core. Lanes share no mutable
//! state on the data path; they meet only in the rings of [`crate::handoff`].
//!
//! Data path of one request:
//! ```text
//! wire ─XDP redirect (by rx queue)─▶ this lane's rx ring ─▶ classify the frame; its flow's
//!   ├─ a SYN, or a flow this lane owns (it took the flow's SYN): the UMEM frame is lent to
//!   │  smoltcp in place (no copy), in the one socket shard the flow table names
//!   └─ a flow this lane does not know (steering changed under it): the frame handle goes to
//!      the next lane over an rtrb ring; the owner reads the frame in this lane's UMEM and
//!      hands the handle back (see `handoff`)
//! ─▶ TCP socket buffer ─copy (socket buffer → slot)─▶ slot ─handle over rtrb, in chunks of up
//!   to 32─▶ HTTP stage parses in place, writes the response into the slot ─handle back─▶ copy
//!   (slot → socket tx buffer) ─▶ smoltcp writes the segment straight into a free UMEM frame of
//!   this lane ─▶ its tx ring ─▶ wire
//! ```
//! A request the HTTP stage forwards instead (its slot holds the head for the upstream) is
//! carried on by the lane's proxying half, [`proxy`]: an upstream connection on this lane's own
//! stack, bodies streamed socket to socket.
//!
//! Time limits (header read, keep-alive idle, upstream connect and response) and health checks
//! are looked at every 50 ms by a sweep over the connections; control messages (a reload, a
//! drain) are read at the same moments.
//!
//! Invariants:
//! - Connection `i` owns TCP socket `i` and slot `i` for the lane's lifetime; a connection whose
//!   slot is at the HTTP stage neither reads nor writes its socket until the handle returns (so
//!   a closed connection is only settled, and its socket reused, once its slot is home).
//! - After start-up, serving a request allocates nothing: sockets, buffers, slots, rings, the
//!   flow table and the ready queue are sized from the configuration. The lane counts its own
//!   heap allocations (see `sys::alloc`) and reports them. The socket buffers and the slots are
//!   two arenas `run` owns (`SocketMemory`, `SlotMemory`): reserved for every connection at
//!   start, resident only as far as connections have written them.
//! - The loop sleeps only when it has nothing to do, in `poll(2)` on the AF_XDP socket and the
//!   eventfd other lanes signal, bounded by the stack's next timer and the next sweep.

use std::{
    collections::VecDeque,
    sync::{atomic::AtomicBool, atomic::Ordering, Arc},
};

use smoltcp::{
    iface::{Config as IfaceConfig, Interface},
    time::Instant as SmolInstant,
    wire::{EthernetAddress, HardwareAddress, IpCidr},
};
use xgate_proxy::{gateway::Gateway, ratelimit::RateTable};
use xgate_userstack::{
    tcp_server::{ConnId, ServerConfig, SocketMemory, TcpServer},
    wire, XskPort,
};

use crate::{
    access_log::AccessLog,
    config::Config,
    counters::{CounterValues, LaneCounters},
    error::RunError,
    handoff::{LaneLinks, LaneWake},
    metrics::LaneMetrics,
    metrics::COUNTED_STATUSES,
    reaper::{LaneReapRings, ReapOrder, ReapOutcome, ReapReply, StallMark},
    routing::{Routing, TimeoutsConfig},
    stage::{HttpStage, SlotHandle, SlotMemory},
    sys,
};
use xgate_xdp::ReapReason;

mod client;
mod demand;
mod proxy;
mod receive;
mod sweep;
mod upstream;

use proxy::Proxied;
use upstream::Upstreams;

/// Bytes of each TCP socket's receive and transmit buffers (reserved for every socket; resident
/// only as far as its connections have used them, see `xgate_userstack::tcp_server`).
pub(crate) const SOCKET_BUFFER: usize = 16 * 1024;
/// Request body bytes a connection's slot holds beyond its head: a direct answer's request body
/// must fit (proxied bodies stream through and are limited by `http.max_body` instead).
pub const SLOT_BODY: usize = 8 * 1024;
/// Bytes of the largest upstream response head the gateway forwards (then 502).
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// How often time limits and health checks are looked at (ms).
const SWEEP_INTERVAL_MS: u64 = 50;
/// Received frames (local and handed) taken per loop turn before other work.
const RX_BURST: usize = 64;
/// Idle loop turns before the lane sleeps.
const SPIN_BEFORE_SLEEP: u32 = 200;
/// Longest sleep, so a stop request is seen promptly.
const MAX_SLEEP_MS: i64 = 100;
/// `Connection::last_active_ms` of a socket whose connection the lane has not served yet.
pub(crate) const NOT_SEEN: u64 = u64::MAX;

/// Per-connection state the lane keeps beside the socket.
struct Connection<'m> {
    /// `Some` while the lane holds the slot; `None` while the HTTP stage has it.
    slot: Option<SlotHandle<'m>>,
    /// New bytes arrived since the HTTP stage last saw the slot.
    unseen_bytes: bool,
    /// In the ready queue (waiting for room in the request ring).
    queued: bool,
    /// Response bytes of the current verdict already written to the socket.
    response_sent: usize,
    /// A response with `close` was sent: further bytes from the peer are read and discarded.
    closing: bool,
    /// The proxied request in flight, if any.
    proxy: Option<Proxied>,
    /// When the connection last finished a request or was accepted (keep-alive idle limit).
    last_active_ms: u64,
    /// When the first byte of the request head now in the slot arrived (header read limit).
    head_started_ms: u64,
    /// When the XDP program saw this connection's latest frame (CLOCK_MONOTONIC ns; 0: unknown).
    last_arrival_ns: u64,
    /// When the frame that began the request now in the slot arrived (0: unknown).
    request_arrival_ns: u64,
    /// When the lane last handed the slot to the HTTP stage (CLOCK_MONOTONIC ns): the end of the
    /// head read once the verdict is not "more bytes".
    handed_ns: u64,
    /// When the first byte of a direct answer that did not fit in one write went to the socket
    /// (0: none).
    write_started_ns: u64,
    /// The reaper's stall check between two orders.
    stall: StallMark,
    /// The stack accepted this connection's handshake and the reaper was told.
    handshake_noted: bool,
}

impl<'m> Connection<'m> {
    fn new(slot: SlotHandle<'m>) -> Connection<'m> {
        Connection {
            slot: Some(slot),
            unseen_bytes: false,
            queued: false,
            response_sent: 0,
            closing: false,
            proxy: None,
            last_active_ms: NOT_SEEN,
            head_started_ms: 0,
            last_arrival_ns: 0,
            request_arrival_ns: 0,
            handed_ns: 0,
            write_started_ns: 0,
            stall: StallMark::default(),
            handshake_noted: false,
        }
    }

    fn reset(&mut self) {
        self.unseen_bytes = false;
        self.response_sent = 0;
        self.closing = false;
        self.proxy = None;
        self.last_active_ms = NOT_SEEN;
        self.last_arrival_ns = 0;
        self.request_arrival_ns = 0;
        self.handed_ns = 0;
        self.write_started_ns = 0;
        self.stall = StallMark::default();
        self.handshake_noted = false;
    }
}

/// Everything a lane needs, built on the main thread before the lane starts.
pub struct LaneSetup<'a> {
    pub index: usize,
    pub port: &'a mut XskPort,
    pub links: LaneLinks,
    /// Every lane's wake-up (to signal the lanes this one hands work to).
    pub wakes: &'a [LaneWake],
    pub counters: &'a LaneCounters,
    pub seed: u64,
    /// The secret of the lane's keyed initial sequence numbers (from the kernel's random source).
    pub isn_key: xgate_userstack::isn::IsnKey,
    /// The SYN cookies' secret (the XDP program's).
    pub cookie_key: xgate_userstack::tcp_server::CookieKey,
    /// How the NIC steers replies to the lanes (the NIC's RSS key and table, or the default;
    /// `None` with one lane): upstream local ports are picked by it.
    pub steering: Option<xgate_userstack::rss::FlowSteering>,
    pub core: Option<core_affinity::CoreId>,
    /// New routing (and certificates) from a reload, sent by the main thread.
    pub reloads: rtrb::Consumer<Reload>,
    /// Set by the main thread on SIGTERM: stop accepting, finish what is in flight.
    pub drain: &'a AtomicBool,
    /// Requests by route and status, latency, reaped connections (read by the metrics listener).
    pub metrics: &'a LaneMetrics,
    /// Orders from the reaper, and the replies.
    pub reaps: LaneReapRings,
    /// Counts the lanes that have built their state and serve (the gateway is ready when all
    /// have).
    pub built: &'a std::sync::atomic::AtomicUsize,
    /// The table every lane's rate limits count in (one per process, kept across reloads).
    pub rate_table: Arc<RateTable>,
    /// The TLS configuration of the HTTPS listener (`None`: no certificates, no HTTPS).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// What a lane did, reported when it stops, with its ring ends (frames still in them go back
/// to the ports that lent them once every lane has stopped).
pub struct LaneReport {
    pub statuses: [u64; COUNTED_STATUSES.len()],
    pub counters: CounterValues,
    pub links: LaneLinks,
}

fn now(start: std::time::Instant) -> SmolInstant {
    SmolInstant::from_micros(start.elapsed().as_micros() as i64)
}

/// The lane's end of its HTTP stage: the rings both ways, the connections waiting for room in
/// the request ring, and what the stage is rebuilt from on a reload.
struct StageLink<'m> {
    to_http: rtrb::Producer<SlotHandle<'m>>,
    from_http: rtrb::Consumer<SlotHandle<'m>>,
    http: HttpStage<'m>,
    /// Connections with a request waiting for room in the request ring.
    ready: VecDeque<ConnId>,
    /// Limits and routing the HTTP stage uses (kept to rebuild it on reload).
    gateway_limits: xgate_proxy::Limits,
    gateway_authority: Box<str>,
    /// Bytes of a slot's request buffer.
    slot_request: usize,
    /// The rate table shared by all lanes.
    rate_table: Arc<RateTable>,
}

/// What the lane's proxying half needs beside the sockets and the pools.
struct Proxying {
    timeouts: TimeoutsConfig,
    /// Largest request body streamed to an upstream (413 beyond).
    max_body: u64,
    max_response_head: usize,
    /// Bytes on their way between two sockets (see `proxy`).
    scratch: Box<[u8]>,
}

/// Fault injection: deliver every Nth owned segment to the next lane (0: never).
struct Fault {
    misroute_every: u64,
    owned_segments: u64,
}

/// What a reload sends every lane: the new routing, and the new TLS configuration (renewed
/// certificates) when HTTPS is on.
#[derive(Clone)]
pub struct Reload {
    pub routing: Arc<Routing>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Orders from other threads: reloads and the drain from the main thread, the reaper's aborts.
struct Control<'a> {
    reloads: rtrb::Consumer<Reload>,
    drain: &'a AtomicBool,
    reaps: LaneReapRings,
}

/// The gateway's own address on this lane's interface.
struct OwnAddress {
    /// The gateway's IPv4 address.
    own_ip: [u8; 4],
    /// The listening ports (to find a client's connection from the reaper's client address).
    listen_port: u16,
    https_port: Option<u16>,
}

struct Lane<'a> {
    index: usize,
    lanes: usize,
    port: &'a mut XskPort,
    links: LaneLinks,
    wakes: &'a [LaneWake],
    /// Lanes that were handed work this turn (to wake).
    to_wake: Vec<bool>,
    /// Its sockets' buffers and its connections' slots are borrowed from `run`'s arenas.
    server: TcpServer<'a>,
    connections: Vec<Connection<'a>>,
    stage: StageLink<'a>,
    /// Upstream pools and connections.
    upstreams: Upstreams,
    proxying: Proxying,
    address: OwnAddress,
    fault: Fault,
    control: Control<'a>,
    /// Draining: no new connections, every connection closes after its request.
    draining: bool,
    start: std::time::Instant,
    /// Milliseconds since the lane started, read once per turn.
    now_ms: u64,
    next_sweep_ms: u64,
    counters: &'a LaneCounters,
    values: CounterValues,
    statuses: [u64; COUNTED_STATUSES.len()],
    metrics: &'a LaneMetrics,
    /// The server's count of evicted half-open connections at the last sweep.
    half_open_evicted_seen: u64,
    access_log: Option<AccessLog>,
    https: Https,
}

/// The HTTPS listener's side of a lane: the shared TLS configuration and each client
/// connection's TLS session (by connection index; `None` for plain connections).
struct Https {
    config: Option<Arc<rustls::ServerConfig>>,
    port: Option<u16>,
    sessions: Vec<Option<Box<crate::tls::session::TlsSession>>>,
    handshake_timeout_ms: u64,
}

/// `gateway` with the routes' HTTPS policies when the HTTPS listener is on (`port`).
fn with_https(gateway: Gateway, routing: &Routing, port: Option<u16>) -> Gateway {
    match port {
        Some(port) => gateway.with_https(port, routing.https.clone()),
        None => gateway,
    }
}

/// Runs one lane until `stop` is set.
pub fn run(config: &Config, setup: LaneSetup<'_>, stop: &AtomicBool) -> Result<LaneReport, RunError> {
    if let Some(core) = setup.core {
        if !core_affinity::set_for_current(core) {
            tracing::warn!(
                lane = setup.index,
                core = core.id,
                "lane could not be pinned to its core"
            );
        }
    }
    let built = setup.built;
    let gw = &config.gateway;
    let start = std::time::Instant::now();
    let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(gw.mac.0)));
    // The seed drives smoltcp's own generator (ephemeral choices of the stack). TCP initial
    // sequence numbers do not come from it: the server gives every handshake a keyed ISN
    // (`xgate_userstack::isn`, RFC 6528).
    iface_config.random_seed = setup.seed;
    let mut iface = Interface::new(iface_config, setup.port, now(start));
    iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(gw.ipv4.into(), gw.prefix_len))
            .expect("one address fits");
    });
    let sockets = config.http.max_connections;
    let outbound = config.http.upstream_connections;
    let server_config = ServerConfig {
        listen_port: gw.listen_port,
        extra_listen_port: config.https_port(),
        sockets,
        rx_buffer: SOCKET_BUFFER,
        tx_buffer: SOCKET_BUFFER,
        keep_alive: Some(smoltcp::time::Duration::from_millis(config.tcp.keepalive_ms)),
        timeout: Some(smoltcp::time::Duration::from_millis(config.tcp.timeout_ms)),
        outbound_sockets: outbound,
        max_half_open: config.max_half_open(),
        reset_when_full: config.http.reset_when_full,
        isn_key: setup.isn_key,
        syn_cookies: config.shield.syn_cookies.mode(),
        cookie_key: setup.cookie_key,
        monotonic_ns: crate::sys::monotonic_ns,
    };
    let response_capacity = (config.http.max_header_bytes + 1024).max(MAX_RESPONSE_HEAD + 1024);
    let slot_request = config.http.max_header_bytes + SLOT_BODY;
    // The lane's two arenas: every socket buffer and every slot, reserved now and resident only
    // as connections use them. They outlive the lane, which borrows them.
    let mut socket_memory = SocketMemory::new(&server_config);
    let mut slot_memory = SlotMemory::new(sockets, slot_request, response_capacity);
    let server = TcpServer::new(iface, &server_config, &mut socket_memory);
    let connections = slot_memory.slots().into_iter().map(Connection::new).collect();
    let ring = config.http.ring_size.min(sockets).max(1);
    let (to_http, stage_in) = rtrb::RingBuffer::<SlotHandle>::new(ring);
    let (stage_out, from_http) = rtrb::RingBuffer::<SlotHandle>::new(ring);
    let limits = config.http.limits();
    let routing = config.routing();
    let authority: Box<str> = format!("{}:{}", gw.ipv4, gw.listen_port).into();
    let lanes = setup.wakes.len();
    // Local ports for upstream connections: each lane its own share of 20000..60000.
    let share = (40_000 / lanes.max(1)) as u16;
    let first_port = 20_000 + share * setup.index as u16;
    let steering = setup.steering.clone();
    let upstreams = Upstreams::new(
        &routing,
        sockets as ConnId,
        outbound,
        first_port..first_port + share,
        steering,
        lanes,
        sockets,
    );
    let mut lane = Lane {
        index: setup.index,
        lanes,
        port: setup.port,
        links: setup.links,
        wakes: setup.wakes,
        to_wake: vec![false; lanes],
        server,
        connections,
        stage: StageLink {
            to_http,
            from_http,
            http: HttpStage::new(
                stage_in,
                stage_out,
                with_https(
                    Gateway::new(&routing.routes, &routing.pools, limits, &authority, slot_request)
                        .with_rate_table(Arc::clone(&setup.rate_table)),
                    &routing,
                    setup.tls.as_ref().and(config.https_port()),
                ),
            ),
            ready: VecDeque::with_capacity(sockets),
            gateway_limits: limits,
            gateway_authority: authority,
            slot_request,
            rate_table: setup.rate_table,
        },
        upstreams,
        proxying: Proxying {
            timeouts: config.timeouts.clone(),
            max_body: config.http.max_body,
            max_response_head: MAX_RESPONSE_HEAD,
            scratch: vec![0; SOCKET_BUFFER.max(MAX_RESPONSE_HEAD)].into_boxed_slice(),
        },
        address: OwnAddress {
            own_ip: gw.ipv4.octets(),
            listen_port: gw.listen_port,
            https_port: config.https_port(),
        },
        fault: Fault {
            misroute_every: if lanes > 1 { config.fault.misroute_every } else { 0 },
            owned_segments: 0,
        },
        control: Control {
            reloads: setup.reloads,
            drain: setup.drain,
            reaps: setup.reaps,
        },
        draining: false,
        start,
        now_ms: 0,
        next_sweep_ms: SWEEP_INTERVAL_MS,
        counters: setup.counters,
        values: CounterValues::default(),
        statuses: [0; COUNTED_STATUSES.len()],
        metrics: setup.metrics,
        half_open_evicted_seen: 0,
        access_log: config
            .http
            .access_log
            .then(|| AccessLog::new(setup.index, routing.route_names())),
        https: Https {
            port: setup.tls.as_ref().and(config.https_port()),
            config: setup.tls,
            sessions: (0..sockets).map(|_| None).collect(),
            handshake_timeout_ms: config.tls.handshake_timeout_ms,
        },
    };
    built.fetch_add(1, Ordering::SeqCst);
    let allocations_at_start = sys::alloc::thread_allocations();
    let mut idle_turns = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let busy = lane.turn();
        let stats = lane.server.stats();
        lane.values.accepted = stats.accepted;
        lane.values.refused = stats.refused;
        lane.values.syn_dropped_full = stats.syn_dropped_full;
        lane.values.syn_deferred = stats.syn_deferred;
        lane.values.half_open_evicted = stats.half_open_evicted;
        lane.values.syn_cookies_sent = stats.syn_cookies_sent;
        lane.values.syn_cookies_unanswered = stats.syn_cookies_unanswered;
        lane.values.syn_cookies_accepted = stats.syn_cookies_accepted;
        lane.values.syn_cookies_rejected = stats.syn_cookies_rejected;
        lane.values.syn_cookies_no_socket = stats.syn_cookies_no_socket;
        lane.values.heap_allocations = sys::alloc::thread_allocations() - allocations_at_start;
        if !lane.draining {
            lane.values.open_connections = lane.server.inbound_connected() as u64;
        }
        lane.values.upstream_connects = stats.connects;
        lane.counters.publish(&lane.values);
        if busy {
            idle_turns = 0;
            continue;
        }
        idle_turns += 1;
        if idle_turns < SPIN_BEFORE_SLEEP {
            std::hint::spin_loop();
            continue;
        }
        lane.sleep();
    }
    lane.shut_down();
    lane.counters.publish(&lane.values);
    Ok(LaneReport {
        statuses: lane.statuses,
        counters: lane.values,
        links: lane.links,
    })
}

impl Lane<'_> {
    /// One loop turn. Returns whether anything happened.
    fn turn(&mut self) -> bool {
        let timestamp = now(self.start);
        self.now_ms = (timestamp.total_millis()).max(0) as u64;
        let mut busy = self.take_returns();
        if self.now_ms >= self.next_sweep_ms {
            self.next_sweep_ms = self.now_ms + SWEEP_INTERVAL_MS;
            busy |= self.control();
            self.sweep();
            self.census();
        }
        busy |= self.receive_handed(timestamp);
        busy |= self.receive_local(timestamp);
        busy |= self.collect_responses();
        while let Some(id) = self.server.next_woken() {
            self.service(id);
            busy = true;
        }
        self.serve_waiting();
        busy |= self.send_to_http();
        if self.stage.http.run_batch() > 0 {
            busy = true;
            self.collect_responses();
            self.send_to_http();
        }
        busy |= self.server.egress(timestamp, self.port);
        self.port.flush();
        if let Some(log) = self.access_log.as_mut() {
            log.flush();
        }
        for (lane, wake) in self.to_wake.iter_mut().enumerate() {
            if std::mem::take(wake) {
                self.wakes[lane].wake_if_sleeping();
            }
        }
        busy
    }

    /// Messages from the main thread: a new routing (reload), the start of a drain.
    fn control(&mut self) -> bool {
        let mut any = false;
        while let Ok(reload) = self.control.reloads.pop() {
            let routing = reload.routing;
            if let Some(tls) = reload.tls {
                // New connections get the new certificates; open ones keep theirs.
                if self.https.config.is_some() {
                    self.https.config = Some(tls);
                }
            }
            self.apply_routing(&routing);
            self.stage.http.set_gateway(with_https(
                Gateway::new(
                    &routing.routes,
                    &routing.pools,
                    self.stage.gateway_limits,
                    &self.stage.gateway_authority,
                    self.stage.slot_request,
                )
                .with_rate_table(Arc::clone(&self.stage.rate_table)),
                &routing,
                self.https.port,
            ));
            if let Some(log) = self.access_log.as_mut() {
                log.set_routes(routing.route_names());
            }
            any = true;
        }
        if !self.draining && self.control.drain.load(Ordering::Relaxed) {
            self.draining = true;
            self.server.stop_listening();
            any = true;
        }
        while let Ok(order) = self.control.reaps.orders.pop() {
            let outcome = self.reap(&order);
            // The reply ring is as large as the order ring, and one reply follows each order.
            let _ = self.control.reaps.replies.push(ReapReply {
                id: order.id,
                outcome,
            });
            any = true;
        }
        any
    }

    /// Carries out the reaper's order: aborts the connection from `order.client` if this lane
    /// has it and it is dead (a stall is confirmed first, see `StallMark`).
    fn reap(&mut self, order: &ReapOrder) -> ReapOutcome {
        // The flow table (userstack) keys IPv4 flows so far: an IPv6 client is not here.
        let std::net::SocketAddr::V4(client) = order.client else {
            return ReapOutcome::NotHere;
        };
        let flow = |dst_port| wire::TcpFlowKey {
            src_ip: client.ip().octets(),
            dst_ip: self.address.own_ip,
            src_port: client.port(),
            dst_port,
        };
        let found = std::iter::once(self.address.listen_port)
            .chain(self.address.https_port)
            .find_map(|port| self.server.find(&flow(port)));
        let Some(id) = found else {
            return ReapOutcome::NotHere;
        };
        let index = id as usize;
        if index >= self.connections.len() {
            return ReapOutcome::NotHere;
        }
        if order.reason == ReapReason::Stalled {
            let queued = self.server.socket(id).send_queue();
            if queued == 0 {
                self.connections[index].stall = StallMark::default();
                return ReapOutcome::Quiet;
            }
            let tx_pressure = self.port.stats().tx_starved;
            if !self.connections[index].stall.confirm(queued, tx_pressure) {
                return ReapOutcome::Kept;
            }
        }
        self.abort_connection(id);
        self.metrics.record_reaped(order.reason);
        ReapOutcome::Reaped
    }

    /// Publishes the UMEM frames by state, the port's tx counters, the HTTP ring's fill and the
    /// kernel's counts for the AF_XDP socket.
    fn census(&mut self) {
        use xgate_userstack::FrameState;
        let census = self.port.ledger().census();
        let v = &mut self.values;
        v.umem_fill = census[FrameState::Fill as usize] as u64;
        v.umem_in_stack = census[FrameState::InStack as usize] as u64;
        v.umem_tx_free = census[FrameState::TxFree as usize] as u64;
        v.umem_tx_pending = census[FrameState::TxPending as usize] as u64;
        v.umem_tx_ring = census[FrameState::TxRing as usize] as u64;
        v.umem_lent = census[FrameState::Lent as usize] as u64;
        let stats = self.port.stats();
        v.tx_frames = stats.tx_frames;
        v.tx_starved = stats.tx_starved;
        v.http_ring_used = (self.stage.to_http.buffer().capacity() - self.stage.to_http.slots()) as u64;
        v.upstream_connecting = self
            .upstreams
            .connecting
            .iter()
            .flatten()
            .map(|&n| u64::from(n))
            .sum();
        v.upstream_waiting = self.upstreams.waiting.iter().map(|q| q.len() as u64).sum();
        // One getsockopt per sweep; a failure leaves the last counts.
        if let Ok(kernel) = self.port.kernel_stats() {
            v.xsk_rx_dropped = kernel.rx_dropped;
            v.xsk_rx_ring_full = kernel.rx_ring_full;
            v.xsk_fill_ring_empty = kernel.rx_fill_ring_empty;
            v.xsk_invalid_descs = kernel.rx_invalid_descs + kernel.tx_invalid_descs;
        }
    }

    fn sleep(&mut self) {
        let wake = &self.wakes[self.index];
        let delay_ms = self
            .server
            .poll_delay(now(self.start))
            .map_or(MAX_SLEEP_MS, |d| (d.total_millis() as i64).min(MAX_SLEEP_MS))
            .min(self.next_sweep_ms.saturating_sub(self.now_ms) as i64);
        if delay_ms == 0 {
            return;
        }
        wake.sleeping.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.port.rx_available() && !self.links.has_input() {
            let fds = [std::os::fd::AsRawFd::as_raw_fd(&self.port.fd()), wake.event_fd()];
            sys::poll_readable(fds, delay_ms as i32);
        }
        wake.sleeping.store(false, Ordering::SeqCst);
        wake.drain();
    }

    /// Resets every connection and sends what is queued, so peers learn at once.
    fn shut_down(&mut self) {
        self.server.abort_all();
        let timestamp = now(self.start);
        self.server.egress(timestamp, self.port);
        self.port.flush();
    }
}
