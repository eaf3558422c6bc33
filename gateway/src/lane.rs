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
//!   heap allocations (see `sys::alloc`) and reports them.
//! - The loop sleeps only when it has nothing to do, in `poll(2)` on the AF_XDP socket and the
//!   eventfd other lanes signal, bounded by the stack's next timer and the next sweep.

use std::{
    collections::VecDeque,
    sync::{atomic::AtomicBool, atomic::Ordering, Arc},
};

use smoltcp::{
    iface::{Config as IfaceConfig, Interface},
    socket::tcp,
    time::Instant as SmolInstant,
    wire::{EthernetAddress, HardwareAddress, IpCidr},
};
use xgate_proxy::{
    gateway::{Gateway, Verdict},
    stream::Stream,
};
use xgate_userstack::{
    device::HandedFrameDevice,
    tcp_server::{ConnId, ServerConfig, Settled, TcpServer},
    wire::{self, FrameKind},
    XskPort,
};

use crate::{
    access_log::AccessLog,
    config::Config,
    counters::{CounterValues, LaneCounters},
    handoff::{Handed, LaneLinks, LaneWake},
    metrics::LaneMetrics,
    metrics::COUNTED_STATUSES,
    reaper::{LaneReapRings, ReapOrder, ReapOutcome, ReapReply, StallMark},
    routing::{Routing, TimeoutsConfig},
    stage::{self, HttpStage, SlotHandle, BATCH},
    sys::{self, monotonic_ns},
    transport::SocketStream,
};
use xgate_xdp::ReapReason;

mod proxy;
mod sweep;
mod upstream;

use proxy::Proxied;
use upstream::Upstreams;

/// Bytes of each TCP socket's receive and transmit buffers.
const SOCKET_BUFFER: usize = 16 * 1024;
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
struct Connection {
    /// `Some` while the lane holds the slot; `None` while the HTTP stage has it.
    slot: Option<SlotHandle>,
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
    /// The reaper's stall check between two orders.
    stall: StallMark,
    /// The stack accepted this connection's handshake and the reaper was told.
    handshake_noted: bool,
}

impl Connection {
    fn new(slot: SlotHandle) -> Connection {
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
    pub core: Option<core_affinity::CoreId>,
    /// New routing from a reload, sent by the main thread.
    pub reloads: rtrb::Consumer<Arc<Routing>>,
    /// Set by the main thread on SIGTERM: stop accepting, finish what is in flight.
    pub drain: &'a AtomicBool,
    /// Requests by route and status, latency, reaped connections (read by the metrics listener).
    pub metrics: &'a LaneMetrics,
    /// Orders from the reaper, and the replies.
    pub reaps: LaneReapRings,
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

struct Lane<'a> {
    index: usize,
    lanes: usize,
    port: &'a mut XskPort,
    links: LaneLinks,
    wakes: &'a [LaneWake],
    counters: &'a LaneCounters,
    server: TcpServer,
    connections: Vec<Connection>,
    /// Connections with a request waiting for room in the request ring.
    ready: VecDeque<ConnId>,
    to_http: rtrb::Producer<SlotHandle>,
    from_http: rtrb::Consumer<SlotHandle>,
    http: HttpStage,
    values: CounterValues,
    statuses: [u64; COUNTED_STATUSES.len()],
    start: std::time::Instant,
    /// Lanes that were handed work this turn (to wake).
    to_wake: Vec<bool>,
    /// The gateway's IPv4 address.
    own_ip: [u8; 4],
    /// Fault injection: deliver every Nth owned segment to the next lane (0: never).
    misroute_every: u64,
    owned_segments: u64,
    /// Upstream pools and connections.
    upstreams: Upstreams,
    /// Bytes on their way between two sockets (see `proxy`).
    scratch: Box<[u8]>,
    timeouts: TimeoutsConfig,
    /// Largest request body streamed to an upstream (413 beyond).
    max_body: u64,
    max_response_head: usize,
    /// Milliseconds since the lane started, read once per turn.
    now_ms: u64,
    next_sweep_ms: u64,
    reloads: rtrb::Consumer<Arc<Routing>>,
    drain: &'a AtomicBool,
    /// Draining: no new connections, every connection closes after its request.
    draining: bool,
    access_log: Option<AccessLog>,
    /// Limits and routing the HTTP stage uses (kept to rebuild it on reload).
    gateway_limits: xgate_proxy::Limits,
    gateway_authority: Box<str>,
    /// Bytes of a slot's request buffer.
    slot_request: usize,
    metrics: &'a LaneMetrics,
    reaps: LaneReapRings,
    /// The server's count of evicted half-open connections at the last sweep.
    half_open_evicted_seen: u64,
    /// The listening port (to find a client's connection from the reaper's 5-tuple).
    listen_port: u16,
}

/// Runs one lane until `stop` is set.
pub fn run(config: &Config, setup: LaneSetup<'_>, stop: &AtomicBool) -> anyhow::Result<LaneReport> {
    if let Some(core) = setup.core {
        if !core_affinity::set_for_current(core) {
            tracing::warn!(
                lane = setup.index,
                core = core.id,
                "lane could not be pinned to its core"
            );
        }
    }
    let gw = &config.gateway;
    let start = std::time::Instant::now();
    let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(gw.mac.0)));
    // The seed drives smoltcp's TCP initial sequence numbers. A kernel-random seed keeps them from
    // being guessed before the first connection; smoltcp's generator is not cryptographic, so an
    // observer of many ISNs could still predict later ones (per-connection keyed ISNs: not yet).
    iface_config.random_seed = setup.seed;
    let mut iface = Interface::new(iface_config, setup.port, now(start));
    iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(gw.ipv4.into(), gw.prefix_len))
            .expect("one address fits");
    });
    let sockets = config.http.max_connections;
    let outbound = config.http.upstream_connections;
    let server = TcpServer::new(
        iface,
        &ServerConfig {
            listen_port: gw.listen_port,
            sockets,
            rx_buffer: SOCKET_BUFFER,
            tx_buffer: SOCKET_BUFFER,
            keep_alive: Some(smoltcp::time::Duration::from_millis(config.tcp.keepalive_ms)),
            timeout: Some(smoltcp::time::Duration::from_millis(config.tcp.timeout_ms)),
            outbound_sockets: outbound,
            max_half_open: config.max_half_open(),
        },
    );
    let response_capacity = (config.http.max_header_bytes + 1024).max(MAX_RESPONSE_HEAD + 1024);
    let slot_request = config.http.max_header_bytes + SLOT_BODY;
    let handles = stage::slots(sockets, slot_request, response_capacity);
    let connections = handles.into_iter().map(Connection::new).collect();
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
    let steering = (lanes > 1).then(|| {
        xgate_userstack::rss::FlowSteering::round_robin(xgate_userstack::rss::DEFAULT_RSS_KEY, lanes as u16)
    });
    let upstreams = Upstreams::new(
        &routing,
        sockets as ConnId,
        outbound,
        first_port..first_port + share,
        steering,
    );
    let mut lane = Lane {
        index: setup.index,
        lanes,
        port: setup.port,
        links: setup.links,
        wakes: setup.wakes,
        counters: setup.counters,
        server,
        http: HttpStage::new(
            stage_in,
            stage_out,
            Gateway::new(&routing.routes, &routing.pools, limits, &authority, slot_request),
        ),
        connections,
        ready: VecDeque::with_capacity(sockets),
        to_http,
        from_http,
        values: CounterValues::default(),
        statuses: [0; COUNTED_STATUSES.len()],
        start,
        to_wake: vec![false; lanes],
        own_ip: gw.ipv4.octets(),
        misroute_every: if lanes > 1 { config.fault.misroute_every } else { 0 },
        owned_segments: 0,
        upstreams,
        scratch: vec![0; SOCKET_BUFFER.max(MAX_RESPONSE_HEAD)].into_boxed_slice(),
        timeouts: config.timeouts.clone(),
        max_body: config.http.max_body,
        max_response_head: MAX_RESPONSE_HEAD,
        now_ms: 0,
        next_sweep_ms: SWEEP_INTERVAL_MS,
        reloads: setup.reloads,
        drain: setup.drain,
        draining: false,
        access_log: config
            .http
            .access_log
            .then(|| AccessLog::new(setup.index, routing.route_names())),
        gateway_limits: limits,
        gateway_authority: authority,
        slot_request,
        metrics: setup.metrics,
        reaps: setup.reaps,
        half_open_evicted_seen: 0,
        listen_port: gw.listen_port,
    };
    let allocations_at_start = sys::alloc::thread_allocations();
    let mut idle_turns = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let busy = lane.turn();
        let stats = lane.server.stats();
        lane.values.accepted = stats.accepted;
        lane.values.refused = stats.refused;
        lane.values.syn_deferred = stats.syn_deferred;
        lane.values.half_open_evicted = stats.half_open_evicted;
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
        busy |= self.send_to_http();
        if self.http.run_batch() > 0 {
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
        while let Ok(routing) = self.reloads.pop() {
            self.apply_routing(&routing);
            self.http.set_gateway(Gateway::new(
                &routing.routes,
                &routing.pools,
                self.gateway_limits,
                &self.gateway_authority,
                self.slot_request,
            ));
            if let Some(log) = self.access_log.as_mut() {
                log.set_routes(routing.route_names());
            }
            any = true;
        }
        if !self.draining && self.drain.load(Ordering::Relaxed) {
            self.draining = true;
            self.server.stop_listening();
            any = true;
        }
        while let Ok(order) = self.reaps.orders.pop() {
            let outcome = self.reap(&order);
            // The reply ring is as large as the order ring, and one reply follows each order.
            let _ = self.reaps.replies.push(ReapReply {
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
        let flow = wire::TcpFlowKey {
            src_ip: order.client.ip().octets(),
            dst_ip: self.own_ip,
            src_port: order.client.port(),
            dst_port: self.listen_port,
        };
        let Some(id) = self.server.find(&flow) else {
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

    /// Aborts client connection `id` (the peer gets a RST); an exchange in flight ends with it.
    fn abort_connection(&mut self, id: ConnId) {
        let index = id as usize;
        if self.connections[index].proxy.is_some() {
            self.fail_exchange(index, proxy::BAD_GATEWAY);
        }
        self.server.abort(id);
        self.service(id);
    }

    /// Counts a response with `status` for `route` on connection `index`, with its latency
    /// from the request's arrival in XDP to now (when the arrival is known).
    fn count_status(&mut self, index: usize, status: u16, route: Option<usize>) {
        let at = COUNTED_STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(COUNTED_STATUSES.len() - 1);
        self.statuses[at] += 1;
        let arrival = self.connections.get(index).map_or(0, |c| c.request_arrival_ns);
        let latency = (arrival != 0).then(|| monotonic_ns().saturating_sub(arrival));
        self.metrics.record(route, at, latency);
    }

    /// One access-log line for the exchange of connection `index` (when the log is on).
    fn log_access(&mut self, index: usize, proxied: &Proxied, status: u16) {
        let Some(log) = self.access_log.as_mut() else {
            return;
        };
        let client = self.server.socket(index as ConnId).remote_endpoint();
        let upstream = proxied
            .upstream
            .map(|id| self.upstreams.conns[(id - self.upstreams.first) as usize].addr);
        let x = &proxied.exchange;
        log.write(
            self.now_ms,
            client,
            x.forward().route,
            upstream,
            status,
            x.response_bytes(),
            self.now_ms.saturating_sub(x.started_ms()),
        );
    }

    /// Frames this lane lent that their owners have read: back to the fill ring.
    fn take_returns(&mut self) -> bool {
        let mut any = false;
        for returns in self.links.returns_in.iter_mut().flatten() {
            while let Ok(frame) = returns.pop() {
                self.port.take_back(frame);
                any = true;
            }
        }
        any
    }

    /// Whether this lane should hand `kind`'s frame on rather than process it: a TCP segment of a
    /// flow it does not know, other than a SYN, while some lane has not looked at it yet.
    fn passes_on(&self, kind: &FrameKind, hops: usize) -> bool {
        match kind {
            FrameKind::Tcp(segment) => {
                let opens_a_connection = segment.syn && !segment.ack;
                hops + 1 < self.lanes && !opens_a_connection && !self.server.knows(segment)
            }
            _ => false,
        }
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
        v.http_ring_used = (self.to_http.buffer().capacity() - self.to_http.slots()) as u64;
        // One getsockopt per sweep; a failure leaves the last counts.
        if let Ok(kernel) = self.port.kernel_stats() {
            v.xsk_rx_dropped = kernel.rx_dropped;
            v.xsk_rx_ring_full = kernel.rx_ring_full;
            v.xsk_fill_ring_empty = kernel.rx_fill_ring_empty;
            v.xsk_invalid_descs = kernel.rx_invalid_descs + kernel.tx_invalid_descs;
        }
    }

    /// Remembers when a client connection's latest frame arrived (from its XDP stamp).
    fn note_arrival(&mut self, kind: &FrameKind, arrival: Option<u64>) {
        let (FrameKind::Tcp(segment), Some(arrival)) = (kind, arrival) else {
            return;
        };
        if let Some(id) = self.server.find(&segment.flow) {
            if let Some(conn) = self.connections.get_mut(id as usize) {
                conn.last_arrival_ns = arrival;
            }
        }
    }

    /// Fault injection (`fault.misroute_every`): whether this owned segment goes astray.
    fn misroutes(&mut self, kind: &FrameKind) -> bool {
        if self.misroute_every == 0 {
            return false;
        }
        let FrameKind::Tcp(segment) = kind else {
            return false;
        };
        if segment.syn || !self.server.knows(segment) {
            return false;
        }
        self.owned_segments += 1;
        self.owned_segments.is_multiple_of(self.misroute_every)
    }

    /// Passes a frame to the next lane; returns it to its origin if that ring is full (the frame
    /// is dropped, counted; TCP sends it again).
    fn pass_on(&mut self, handed: Handed) {
        let next = (self.index + 1) % self.lanes;
        let ring = self.links.frames_out[next]
            .as_mut()
            .expect("a ring to every other lane");
        match ring.push(handed) {
            Ok(()) => {
                self.values.handed_out += 1;
                self.to_wake[next] = true;
            }
            Err(rtrb::PushError::Full(handed)) => {
                self.values.handoff_dropped += 1;
                self.give_back(handed);
            }
        }
    }

    /// Sends a handed frame home to the lane whose UMEM holds it.
    fn give_back(&mut self, handed: Handed) {
        let origin = usize::from(handed.origin);
        if origin == self.index {
            self.port.take_back(handed.frame);
            return;
        }
        let returned = self.links.returns_out[origin]
            .as_mut()
            .expect("a ring to every other lane")
            .push(handed.frame);
        debug_assert!(returned.is_ok(), "returns ring sized to every rx frame");
        self.to_wake[origin] = true;
    }

    /// Frames other lanes passed to this one, and their ARP copies.
    fn receive_handed(&mut self, timestamp: SmolInstant) -> bool {
        let mut any = false;
        for from in 0..self.lanes {
            let mut taken = 0;
            while taken < RX_BURST {
                let Some(handed) = self.links.frames_in[from].as_mut().and_then(|r| r.pop().ok()) else {
                    break;
                };
                taken += 1;
                self.values.handed_in += 1;
                let (bytes, arrival) = sys::lent_frame(&handed.frame);
                let kind = wire::classify(bytes);
                if self.passes_on(&kind, usize::from(handed.hops)) {
                    self.pass_on(Handed {
                        hops: handed.hops + 1,
                        ..handed
                    });
                    continue;
                }
                let mut device = HandedFrameDevice::new(bytes, self.port);
                self.server.ingress(timestamp, &mut device, &kind);
                if !device.consumed() {
                    // No tx frame was free to answer with: the frame is dropped like a full
                    // NIC queue would drop it (TCP sends it again), and counted.
                    self.values.handoff_dropped += 1;
                }
                self.note_arrival(&kind, arrival);
                self.give_back(handed);
            }
            any |= taken > 0;
        }
        for from in 0..self.lanes {
            let Some(neighbours) = self.links.neighbours_in[from].as_mut() else {
                continue;
            };
            while let Ok(arp) = neighbours.pop() {
                let mut device = HandedFrameDevice::new(&arp, self.port);
                self.server.ingress(timestamp, &mut device, &FrameKind::Arp);
                // Copies are only made of ARP aimed at the gateway's address.
                self.server.neighbours_changed();
                any = true;
            }
        }
        any
    }

    /// Frames from this lane's own rx ring: to the stack here, or on to the next lane.
    fn receive_local(&mut self, timestamp: SmolInstant) -> bool {
        let mut taken = 0;
        while taken < RX_BURST {
            let Some(frame) = self.port.peek_rx() else { break };
            let kind = wire::classify(frame);
            // ARP aimed at the gateway's address teaches the stack a neighbour; other ARP on the
            // link (broadcasts about other hosts) teaches it nothing.
            let arp_for_us = kind == FrameKind::Arp && wire::arp_target_ip(frame) == Some(self.own_ip);
            if self.lanes > 1 && arp_for_us {
                if let Some(copy) = wire::arp_request_as_reply(frame) {
                    for (lane, ring) in self.links.neighbours_out.iter_mut().enumerate() {
                        if let Some(ring) = ring {
                            // A full ring loses one copy: that lane asks by ARP itself.
                            let _ = ring.push(copy);
                            self.to_wake[lane] = true;
                        }
                    }
                }
            }
            taken += 1;
            // `misroutes`: fault injection, as if the NIC had put the frame on the next lane's
            // queue; that lane sees a flow it does not know and passes the frame back here.
            if !self.misroutes(&kind) && !self.passes_on(&kind, 0) {
                let arrival = self.port.peek_rx_arrival_ns();
                if !self.server.ingress(timestamp, self.port, &kind) {
                    // The stack took nothing: no tx frame was free; try again next turn.
                    break;
                }
                self.note_arrival(&kind, arrival);
                self.values.rx_frames += 1;
                if arp_for_us {
                    self.server.neighbours_changed();
                }
                continue;
            }
            let Some(frame) = self.port.lend_rx() else {
                continue;
            };
            self.values.rx_frames += 1;
            self.pass_on(Handed {
                frame,
                origin: self.index as u8,
                hops: 0,
            });
        }
        taken > 0
    }

    /// Handles coming back from the HTTP stage: count the verdict and serve the connection.
    fn collect_responses(&mut self) -> bool {
        let mut any = false;
        while let Ok(mut handle) = self.from_http.pop() {
            any = true;
            let index = handle.index();
            let slot = handle.slot();
            let verdict = slot.verdict;
            match verdict {
                Some(Verdict::Respond { status, route, .. }) => {
                    self.count_status(index, status, route);
                    self.values.requests += 1;
                }
                // More bytes are needed: the connection reads on.
                Some(Verdict::Incomplete) | None => slot.verdict = None,
                Some(Verdict::Forward(_)) => slot.verdict = None,
            }
            let conn = &mut self.connections[index];
            conn.response_sent = 0;
            conn.slot = Some(handle);
            if let Some(Verdict::Forward(forward)) = verdict {
                self.values.in_flight += 1;
                self.start_forward(index, forward);
                continue;
            }
            self.service(index as ConnId);
        }
        any
    }

    /// Moves ready connections' slots to the HTTP stage, as far as the ring has room.
    fn send_to_http(&mut self) -> bool {
        let mut sent = false;
        loop {
            let room = self.to_http.slots().min(BATCH).min(self.ready.len());
            if room == 0 {
                if !self.ready.is_empty() && !sent {
                    self.values.http_ring_full += 1;
                }
                return sent;
            }
            let chunk = self.to_http.write_chunk_uninit(room).expect("room counted above");
            let connections = &mut self.connections;
            let ready = &mut self.ready;
            // Each ready connection still holds its slot (it reads nothing while queued).
            let moved = chunk.fill_from_iter(std::iter::from_fn(|| {
                let id = ready.pop_front()?;
                let conn = &mut connections[id as usize];
                conn.queued = false;
                conn.unseen_bytes = false;
                Some(conn.slot.take().expect("a queued connection holds its slot"))
            }));
            sent |= moved > 0;
        }
    }

    /// Once the stack has accepted client connection `id`'s handshake (the client's ACK matched
    /// the SYN-ACK, which the XDP program cannot check), tells the reaper, which trusts the
    /// client's address in the SYN shield.
    fn note_handshake(&mut self, id: ConnId) {
        let socket = self.server.socket(id);
        if matches!(
            socket.state(),
            tcp::State::Closed | tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived
        ) {
            return;
        }
        let Some(smoltcp::wire::IpEndpoint {
            addr: smoltcp::wire::IpAddress::Ipv4(ip),
            ..
        }) = socket.remote_endpoint()
        else {
            return;
        };
        self.connections[id as usize].handshake_noted = true;
        self.reaps.handshakes.note(ip.octets(), self.now_ms);
    }

    /// Serves connection `id`: finishes its response, reads what arrived, closes and settles.
    fn service(&mut self, id: ConnId) {
        let index = id as usize;
        if index >= self.connections.len() {
            self.service_upstream(id);
            return;
        }
        if !self.connections[index].handshake_noted {
            self.note_handshake(id);
        }
        if self.connections[index].proxy.is_some() {
            self.pump(index);
            return;
        }
        let now_ms = self.now_ms;
        let conn = &mut self.connections[index];
        if conn.queued {
            return;
        }
        let Some(handle) = conn.slot.as_mut() else {
            // At the HTTP stage: served again when the handle returns.
            return;
        };
        let slot = handle.slot();
        let mut stream = SocketStream::of(&mut self.server, id);
        if conn.last_active_ms == NOT_SEEN {
            // A new connection: its keep-alive idle time starts now.
            conn.last_active_ms = now_ms;
            if let Some(ip) = stream.remote_ip() {
                slot.client_ip = ip;
            }
        }
        let mut touched = false;
        // 1. Finish writing the current response.
        if let Some(Verdict::Respond {
            consumed,
            written,
            close,
            ..
        }) = slot.verdict
        {
            if conn.response_sent < written {
                let n = stream.send(&slot.response[conn.response_sent..written]);
                conn.response_sent += n;
                touched |= n > 0;
            }
            if conn.response_sent >= written || !stream.may_send() {
                slot.consume_request(consumed);
                slot.verdict = None;
                conn.response_sent = 0;
                conn.last_active_ms = now_ms;
                if slot.request_len > 0 {
                    // A pipelined request's head began before this response ended.
                    conn.head_started_ms = now_ms;
                    conn.request_arrival_ns = conn.last_arrival_ns;
                }
                if close || self.draining {
                    stream.close();
                    touched = true;
                    conn.closing = true;
                    slot.request_len = 0;
                } else if slot.request_len > 0 {
                    // Pipelined bytes already in the slot: hand them over again.
                    conn.unseen_bytes = true;
                }
            }
        }
        // 2. Read what arrived (not while a response is unfinished: one request at a time);
        //    after a closing response, read only to discard.
        if slot.verdict.is_none() {
            if conn.closing {
                touched |= stream.discard_received();
            } else if stream.can_recv() && slot.request_len < slot.request.len() {
                let start_len = slot.request_len;
                let n = stream.recv(&mut slot.request[start_len..]);
                if start_len == 0 && n > 0 {
                    conn.head_started_ms = now_ms;
                    conn.request_arrival_ns = conn.last_arrival_ns;
                }
                slot.request_len += n;
                conn.unseen_bytes |= n > 0;
                touched |= n > 0;
            }
        }
        // 3. The peer closed its side and nothing is left to answer: close ours.
        if stream.peer_closed() && !conn.unseen_bytes && slot.verdict.is_none() {
            stream.close();
            touched = true;
        }
        if touched {
            self.server.touch(id);
        }
        // 4. A finished connection frees its socket; its slot starts empty for the next one.
        if self.server.settle(id) == Settled::Closed {
            slot.request_len = 0;
            slot.verdict = None;
            conn.reset();
            return;
        }
        if conn.unseen_bytes && slot.request_len > 0 && slot.verdict.is_none() {
            conn.queued = true;
            // Capacity is the number of connections and each is queued at most once.
            self.ready.push_back(id);
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
