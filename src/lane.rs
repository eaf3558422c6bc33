//! A lane: one AF_XDP port, one smoltcp interface with its TCP sockets, and the HTTP worker it
//! hands requests to. xgate runs one lane for now.
//!
//! Data path of one request:
//! ```text
//! wire ─XDP redirect─▶ rx ring ─▶ UMEM frame lent to smoltcp (no copy) ─▶ TCP socket buffer
//!   ─copy (documented: socket buffer → slot)─▶ slot ─handle over rtrb─▶ worker parses in place,
//!   writes the response into the slot ─handle back─▶ copy (slot → socket tx buffer)
//!   ─▶ smoltcp writes the segment straight into a free UMEM frame ─▶ tx ring ─▶ wire
//! ```
//!
//! Invariants:
//! - Connection `i` owns TCP socket `i` and slot `i` for the lane's lifetime; a connection with
//!   its slot at the worker neither reads nor writes its socket until the handle returns.
//! - After start-up, serving a request allocates nothing: sockets, buffers, slots and rings are
//!   sized from the configuration.
//! - The loop sleeps only when it has nothing to do, in `poll(2)` on the AF_XDP socket and an
//!   eventfd the worker signals, bounded by smoltcp's next timer.

use std::{
    io::Write,
    sync::{
        atomic::{fence, AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context;
use smoltcp::{
    iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet},
    socket::tcp,
    time::Instant as SmolInstant,
    wire::{EthernetAddress, HardwareAddress, IpCidr},
};
use xgate_proxy::{Limits, Outcome, Responder};
use xgate_userstack::{FrameState, PortConfig, XskPort};
use xgate_xdp::{Steering, Verdict as XdpVerdict};

use crate::{
    config::Config,
    exchange::{SlotHandle, SlotTable},
};

/// Bytes of each TCP socket's receive and transmit buffers.
const SOCKET_BUFFER: usize = 16 * 1024;
/// Largest request body the skeleton accepts (it serves no bodies yet).
const MAX_BODY: usize = 8 * 1024;
/// Most handles sent to the worker in one ring write.
const HANDOFF_BATCH: usize = 32;
/// Idle loop turns before the loop or the worker goes to sleep.
const SPIN_BEFORE_SLEEP: u32 = 200;
/// Longest sleep, so a stop request is seen promptly.
const MAX_SLEEP_MS: i64 = 100;

/// Sleep/wake flags shared by the loop and the worker.
struct Wake {
    loop_sleeping: AtomicBool,
    worker_sleeping: AtomicBool,
    stop_worker: AtomicBool,
    /// eventfd the worker writes to wake a sleeping loop.
    loop_event: std::os::fd::OwnedFd,
}

impl Wake {
    fn new() -> anyhow::Result<Wake> {
        // SAFETY: plain eventfd(2) call; the returned fd is checked and then owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("eventfd");
        }
        Ok(Wake {
            loop_sleeping: AtomicBool::new(false),
            worker_sleeping: AtomicBool::new(false),
            stop_worker: AtomicBool::new(false),
            // SAFETY: fd was just returned by eventfd and is owned by nobody else.
            loop_event: unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) },
        })
    }

    fn signal_loop(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to the eventfd this struct owns.
        unsafe {
            libc::write(
                std::os::fd::AsRawFd::as_raw_fd(&self.loop_event),
                (&one as *const u64).cast(),
                8,
            )
        };
    }

    fn drain_loop_event(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from the owned, non-blocking eventfd.
        unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&self.loop_event),
                (&mut value as *mut u64).cast(),
                8,
            )
        };
    }
}

/// What the lane did, reported when it stops.
#[derive(Debug, Default)]
pub struct LaneReport {
    pub responses_by_status: Vec<(u16, u64)>,
    pub connections_accepted: u64,
}

/// Per-connection state the loop keeps beside the socket.
struct Connection {
    socket: SocketHandle,
    /// `Some` while the loop holds the slot; `None` while the worker has it.
    slot: Option<SlotHandle>,
    /// New bytes arrived since the worker last saw the slot.
    unseen_bytes: bool,
    /// Response bytes of the current verdict already written to the socket.
    response_sent: usize,
    /// Whether the socket was seen connected (to count accepts once).
    was_open: bool,
    /// A response with `close` was sent: further bytes from the peer are read and discarded.
    closing: bool,
}

/// 64 random bits from the kernel (getrandom(2)).
fn random_seed() -> anyhow::Result<u64> {
    let mut seed = [0u8; 8];
    // SAFETY: getrandom writes at most `seed.len()` bytes into the live buffer it is given.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if n != seed.len() as isize {
        return Err(std::io::Error::last_os_error()).context("getrandom");
    }
    Ok(u64::from_ne_bytes(seed))
}

fn now(start: std::time::Instant) -> SmolInstant {
    SmolInstant::from_micros(start.elapsed().as_micros() as i64)
}

/// Runs the gateway until `stop` is set. Writes JSON event lines to `events`.
pub fn run(config: &Config, stop: &AtomicBool, events: &mut dyn Write) -> anyhow::Result<LaneReport> {
    let gw = &config.gateway;
    let mut steering = Steering::attach(&gw.interface, gw.ipv4)?;
    let mut port = XskPort::open(&PortConfig {
        interface: gw.interface.clone(),
        queue: gw.queue,
        frame_size: config.umem.frame_size,
        frames: config.umem.frames,
        allow_normal_pages: config.umem.allow_normal_pages,
    })?;
    steering.register_socket(gw.queue, port.fd())?;
    if let Some(hint) = port.hugepage_hint() {
        eprintln!(
            "xgate: warning: no free 2 MiB hugepages; the UMEM runs on normal pages. To reserve them: {hint}"
        );
    }
    eprintln!(
        "xgate: XDP attached to {} ({} mode); AF_XDP socket on queue {} in {} mode; UMEM {} frames x {} B on {:?}",
        gw.interface,
        steering.mode_name(),
        gw.queue,
        port.mode().name(),
        config.umem.frames,
        config.umem.frame_size,
        port.backing()
    );

    let start = std::time::Instant::now();
    let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(gw.mac.0)));
    // The seed drives smoltcp's TCP initial sequence numbers. A kernel-random seed keeps them from
    // being guessed before the first connection; smoltcp's generator is not cryptographic, so an
    // observer of many ISNs could still predict later ones (per-connection keyed ISNs: not yet).
    iface_config.random_seed = random_seed()?;

    let mut iface = Interface::new(iface_config, &mut port, now(start));
    iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(gw.ipv4.into(), gw.prefix_len))
            .expect("one address fits");
    });

    let connections_max = config.http.max_connections;
    let mut sockets = SocketSet::new(Vec::with_capacity(connections_max));
    let (table, handles) = SlotTable::new(connections_max, config.http.max_header_bytes + MAX_BODY);
    let table = Arc::new(table);
    let mut connections: Vec<Connection> = handles
        .into_iter()
        .map(|handle| {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
                tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
            );
            socket.set_nagle_enabled(false);
            // Peers that vanish (no FIN, no RST) or never finish a handshake give their socket
            // back after the timeout instead of holding it forever.
            socket.set_keep_alive(Some(smoltcp::time::Duration::from_millis(
                config.tcp.keepalive_ms,
            )));
            socket.set_timeout(Some(smoltcp::time::Duration::from_millis(config.tcp.timeout_ms)));
            socket.listen(gw.listen_port).expect("port is non-zero");
            Connection {
                socket: sockets.add(socket),
                slot: Some(handle),
                unseen_bytes: false,
                response_sent: 0,
                was_open: false,
                closing: false,
            }
        })
        .collect();

    let (mut to_worker, worker_in) = rtrb::RingBuffer::<SlotHandle>::new(connections_max);
    let (worker_out, mut from_worker) = rtrb::RingBuffer::<SlotHandle>::new(connections_max);
    let wake = Arc::new(Wake::new()?);
    let limits = Limits {
        max_header_bytes: config.http.max_header_bytes,
        max_body: MAX_BODY,
        ..Limits::default()
    };
    let worker = {
        let table = Arc::clone(&table);
        let wake = Arc::clone(&wake);
        std::thread::Builder::new()
            .name("xgate-http".into())
            .spawn(move || http_worker(&table, worker_in, worker_out, &wake, Responder::new(limits)))
            .context("spawning the HTTP worker")?
    };

    writeln!(
        events,
        "{{\"event\":\"ready\",\"interface\":\"{}\",\"ipv4\":\"{}\",\"port\":{},\"xdp_mode\":\"{}\",\"bind_mode\":\"{}\",\"umem_backing\":\"{:?}\"}}",
        gw.interface,
        gw.ipv4,
        gw.listen_port,
        steering.mode_name(),
        port.mode().name(),
        port.backing()
    )?;
    events.flush()?;

    let mut report = LaneReport::default();
    let mut statuses: [(u16, u64); 12] =
        [200, 204, 400, 404, 405, 408, 411, 413, 414, 431, 501, 0].map(|s| (s, 0));
    let mut batch: Vec<SlotHandle> = Vec::with_capacity(HANDOFF_BATCH);
    let mut idle_turns = 0u32;
    let listen_port = gw.listen_port;

    while !stop.load(Ordering::Relaxed) {
        let timestamp = now(start);
        let mut busy = iface.poll(timestamp, &mut port, &mut sockets) != smoltcp::iface::PollResult::None;

        // Handles coming back from the worker: write responses, keep pipelined bytes.
        while let Ok(mut handle) = from_worker.pop() {
            busy = true;
            let index = handle.index();
            let slot = table.slot(&mut handle);
            if let Some(Outcome::Respond { status, .. }) = slot.verdict {
                let at = statuses
                    .iter()
                    .position(|(s, _)| *s == status)
                    .unwrap_or(statuses.len() - 1);
                statuses[at].1 += 1;
            }
            let conn = &mut connections[index];
            conn.response_sent = 0;
            conn.slot = Some(handle);
        }

        for conn in connections.iter_mut() {
            let Some(handle) = conn.slot.as_mut() else {
                continue;
            };
            let socket = sockets.get_mut::<tcp::Socket>(conn.socket);
            let slot = table.slot(handle);
            if socket.is_active() && !conn.was_open {
                conn.was_open = true;
                report.connections_accepted += 1;
            }
            // 1. Finish writing the current response.
            if let Some(Outcome::Respond {
                consumed,
                written,
                close,
                ..
            }) = slot.verdict
            {
                if socket.may_send() && conn.response_sent < written {
                    if let Ok(n) = socket.send_slice(&slot.response[conn.response_sent..written]) {
                        conn.response_sent += n;
                        busy |= n > 0;
                    }
                }
                if conn.response_sent >= written || !socket.may_send() {
                    slot.consume_request(consumed);
                    slot.verdict = None;
                    conn.response_sent = 0;
                    if close {
                        socket.close();
                        conn.closing = true;
                        slot.request_len = 0;
                    } else if slot.request_len > 0 {
                        // Pipelined bytes already in the slot: hand them over again.
                        conn.unseen_bytes = true;
                    }
                } else {
                    continue;
                }
            }
            // 2. Read what arrived; after a closing response, read only to discard.
            if conn.closing {
                while let Ok(n) = socket.recv(|bytes| (bytes.len(), bytes.len())) {
                    if n == 0 {
                        break;
                    }
                }
            } else if socket.can_recv() && slot.request_len < slot.request.len() {
                let start_len = slot.request_len;
                if let Ok(n) = socket.recv_slice(&mut slot.request[start_len..]) {
                    slot.request_len += n;
                    conn.unseen_bytes |= n > 0;
                    busy |= n > 0;
                }
            }
            // 3. The peer closed its side and nothing is left to answer: close ours.
            if socket.state() == tcp::State::CloseWait && !conn.unseen_bytes {
                socket.close();
            }
            // 4. A closed socket listens again, with an empty slot. A socket in TIME-WAIT counts
            //    as closed here: smoltcp would hold it for a fixed 10 s, and a pool of sockets
            //    sitting in TIME-WAIT would refuse new clients (the sockets are the listeners).
            //    Old duplicates of the finished connection would have to match its exact
            //    4-tuple and sequence window to do harm; the listener treats them as strays.
            if !socket.is_open() {
                slot.request_len = 0;
                slot.verdict = None;
                conn.unseen_bytes = false;
                conn.was_open = false;
                conn.closing = false;
                socket.listen(listen_port).expect("a closed socket can listen");
                continue;
            }
            if conn.unseen_bytes && slot.request_len > 0 && batch.len() < HANDOFF_BATCH {
                conn.unseen_bytes = false;
                batch.push(conn.slot.take().expect("slot is held"));
            }
        }
        if !batch.is_empty() {
            busy = true;
            let chunk = to_worker
                .write_chunk_uninit(batch.len())
                .expect("the ring holds every handle");
            chunk.fill_from_iter(batch.drain(..));
            // Publish the handles before reading the worker's flag (pairs with the fence after
            // the worker sets it): one of the two always sees the other.
            fence(Ordering::SeqCst);
            if wake.worker_sleeping.load(Ordering::SeqCst) {
                worker.thread().unpark();
            }
        }
        port.flush();

        if busy {
            idle_turns = 0;
            continue;
        }
        idle_turns += 1;
        if idle_turns < SPIN_BEFORE_SLEEP {
            std::hint::spin_loop();
            continue;
        }
        let delay_ms = iface
            .poll_delay(now(start), &sockets)
            .map_or(MAX_SLEEP_MS, |d| (d.total_millis() as i64).min(MAX_SLEEP_MS));
        wake.loop_sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if from_worker.is_empty() && !port.rx_available() {
            sleep_until_ready(&port, &wake, delay_ms as i32);
        }
        wake.loop_sleeping.store(false, Ordering::SeqCst);
        wake.drain_loop_event();
    }

    // Stop: the worker first (it owns nothing the loop needs), then close every connection.
    wake.stop_worker.store(true, Ordering::SeqCst);
    worker.thread().unpark();
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("the HTTP worker panicked"))?;
    for conn in &connections {
        sockets.get_mut::<tcp::Socket>(conn.socket).abort();
    }
    iface.poll(now(start), &mut port, &mut sockets);
    // Let the kernel complete what is on the tx ring, so the census below shows every frame home.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        port.flush();
        let census = port.ledger().census();
        let in_flight = census[FrameState::TxRing as usize] + census[FrameState::TxPending as usize];
        if in_flight == 0 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // The counters are reported even if the kernel will not give its own (zeros then).
    let kernel = port.kernel_stats().unwrap_or_default();

    let xdp = steering.verdict_stats()?;
    let stats = port.stats();
    let census = port.ledger().census();
    report.responses_by_status = statuses.iter().copied().filter(|(_, n)| *n > 0).collect();
    let xdp_json: Vec<String> = XdpVerdict::ALL
        .iter()
        .map(|v| format!("\"{}\":{}", v.name(), xdp[*v as usize].packets))
        .collect();
    let census_json: Vec<String> = FrameState::ALL
        .iter()
        .map(|s| format!("\"{s:?}\":{}", census[*s as usize]))
        .collect();
    let status_json: Vec<String> = report
        .responses_by_status
        .iter()
        .map(|(s, n)| format!("\"{s}\":{n}"))
        .collect();
    writeln!(
        events,
        "{{\"event\":\"stopped\",\"connections_accepted\":{},\"responses\":{{{}}},\"xdp_packets\":{{{}}},\"rx_frames\":{},\"tx_frames\":{},\"tx_completed\":{},\"frames\":{{{}}},\"ledger_violations\":{},\"tx_refused\":{},\"kernel_rx_dropped\":{},\"kernel_rx_ring_full\":{},\"kernel_fill_ring_empty\":{},\"kernel_invalid_descs\":{}}}",
        report.connections_accepted,
        status_json.join(","),
        xdp_json.join(","),
        stats.rx_frames,
        stats.tx_frames,
        stats.tx_completed,
        census_json.join(","),
        port.ledger().violations(),
        stats.tx_refused,
        kernel.rx_dropped,
        kernel.rx_ring_full,
        kernel.rx_fill_ring_empty,
        kernel.rx_invalid_descs + kernel.tx_invalid_descs
    )?;
    events.flush()?;
    Ok(report)
}

fn sleep_until_ready(port: &XskPort, wake: &Wake, timeout_ms: i32) {
    let mut fds = [
        libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&port.fd()),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&wake.loop_event),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
}

/// The HTTP worker: takes slot handles, answers the request at the front of each slot, and sends
/// the handles back. Owns no socket and no packet memory.
fn http_worker(
    table: &SlotTable,
    mut requests: rtrb::Consumer<SlotHandle>,
    mut responses: rtrb::Producer<SlotHandle>,
    wake: &Wake,
    responder: Responder,
) {
    let mut idle_turns = 0u32;
    loop {
        let available = requests.slots().min(HANDOFF_BATCH);
        if available > 0 {
            idle_turns = 0;
            let chunk = requests.read_chunk(available).expect("slots counted above");
            let out = responses
                .write_chunk_uninit(available)
                .expect("the ring holds every handle");
            out.fill_from_iter(chunk.into_iter().map(|mut handle| {
                let slot = table.slot(&mut handle);
                slot.verdict = Some(responder.handle(&slot.request[..slot.request_len], &mut slot.response));
                handle
            }));
            fence(Ordering::SeqCst);
            if wake.loop_sleeping.load(Ordering::SeqCst) {
                wake.signal_loop();
            }
            continue;
        }
        if wake.stop_worker.load(Ordering::SeqCst) {
            return;
        }
        idle_turns += 1;
        if idle_turns < SPIN_BEFORE_SLEEP {
            std::hint::spin_loop();
            continue;
        }
        wake.worker_sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if requests.is_empty() && !wake.stop_worker.load(Ordering::SeqCst) {
            std::thread::park_timeout(Duration::from_millis(MAX_SLEEP_MS as u64));
        }
        wake.worker_sleeping.store(false, Ordering::SeqCst);
    }
}
