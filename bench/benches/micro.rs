//! Micro benchmarks of xgate's per-packet and per-request building blocks, measured in isolation
//! with criterion (`cargo bench -p xgate-bench --bench micro`; the whole suite takes well under a
//! minute). Every group mirrors what the data path does, step for step, on the same types.
//!
//! Groups:
//! - `frame_pool`: the UMEM frame pool as `xsk`/`device` drive it. `tx_cycle/N` takes N tx frames
//!   (free-list pop + ledger `TxFree → TxPending`, address queued as pending, like a tx token),
//!   submits them (`TxPending → TxRing`, like `submit_tx`) and puts them back (`TxRing → TxFree` +
//!   free-list push, like `reclaim_tx`): one get/put pair per frame, for N = 1, 32 and 64 (the
//!   ring batch). `rx_recycle/64` runs a batch of received frames through the rx side: `Fill →
//!   InStack` as they are read, the frame base queued for recycling as the rx token drops, then
//!   `InStack → Fill` as they are refilled. Throughput is in frames.
//!   Excludes: the AF_XDP rings themselves (no socket, no kernel, no wakeups), touching the frame
//!   bytes, and cache misses on cold frames: the free list is LIFO, so the same few frames (and
//!   ledger entries) are reused and stay in L1, as they do on a lightly loaded lane.
//! - `ring_handoff`: the rtrb hand-off of `u32` handles (the lane passes slot handles, never
//!   request bytes; its `SlotHandle` is two `u32`s, so it moves twice these bytes per item).
//!   `single_thread/push_pop` pushes and pops one handle; `single_thread/chunk_32` writes 32 with
//!   `write_chunk_uninit` + `fill_from_iter` and reads them with `read_chunk`, as the lane and the
//!   HTTP worker do. `cross_thread/per_item` and `cross_thread/chunk_32` move N handles through a
//!   1024-slot ring from this thread to a consumer thread, one at a time or in chunks of 32; the
//!   consumer checks every handle arrives in sequence. The time is from the start of the first
//!   push to the consumer taking the last handle, divided per handle.
//!   Excludes: thread start-up (both threads meet at a barrier before the clock starts), parking
//!   and waking (both sides spin, as the lane does while busy), and the slot contents.
//! - `http`: [`Responder::handle`] on requests already in memory: (a) a small keep-alive `GET
//!   /healthz`, (b) a browser-like GET with 12 headers, (c) 32 small pipelined requests answered
//!   one after another from one buffer, as a worker does with a pipelined burst. Each call frames
//!   the request (httparse plus xgate's framing checks), routes it and writes the whole response
//!   into a fixed buffer. Throughput is in requests; `http_bytes` repeats (b) and (c) with
//!   throughput in request bytes. `httparse_only/*` parses (a) and (b) with bare httparse into the
//!   same 64-entry header array, to show what xgate's own checks and response writing add.
//!   Excludes: TCP, copying the bytes into the slot, sending the response, and buffer management
//!   between pipelined requests (the input is sliced, never moved).
//! - `lane_counters`: why each lane's counters sit on their own cache lines. Two threads, one per
//!   lane, each publish their own counters (relaxed stores, as a lane does every loop turn) N
//!   times: `packed` puts both lanes' counter blocks next to each other (they share a 64-byte
//!   line), `padded` aligns each block to 64 bytes, like xgate's `LaneCounters`. The time is per
//!   publish of one lane's block while the other lane publishes too.
//!   Excludes: the readers (the main thread reads the counters only on request).

use std::{
    hint::black_box,
    sync::{
        atomic::{AtomicU64, Ordering},
        Barrier,
    },
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rtrb::{PushError, RingBuffer};
use xgate_proxy::{Limits, Outcome, Responder, MAX_HEADERS, MIN_RESPONSE_BUFFER};
use xgate_userstack::{
    xsk::{BATCH, KERNEL_HEADROOM},
    FrameLedger, FrameState,
};

// ---------------------------------------------------------------------------------------------
// Frame pool
// ---------------------------------------------------------------------------------------------

/// UMEM geometry of the default `PortConfig`: 4096 frames of 4096 bytes, the first half rx.
const UMEM_FRAMES: u32 = 4096;
const FRAME_SIZE: u32 = 4096;
const RX_FRAMES: u32 = UMEM_FRAMES / 2;

/// The tx side of a port: the ledger, the free list and the pending list, driven as
/// `XskTxToken::consume`, `submit_tx` and `reclaim_tx` drive them.
struct TxPool {
    ledger: FrameLedger,
    free: Vec<u64>,
    pending: Vec<u64>,
}

impl TxPool {
    fn new() -> TxPool {
        let ledger = FrameLedger::new(UMEM_FRAMES, FRAME_SIZE, FrameState::TxFree);
        let free = (RX_FRAMES as usize..UMEM_FRAMES as usize)
            .map(|index| ledger.frame_base(index))
            .collect();
        TxPool {
            ledger,
            free,
            pending: Vec::with_capacity((UMEM_FRAMES - RX_FRAMES) as usize),
        }
    }

    /// Takes a free frame for the stack to write (a tx token being consumed).
    #[inline]
    fn get(&mut self) -> Option<u64> {
        while let Some(addr) = self.free.pop() {
            if self
                .ledger
                .transition(addr, FrameState::TxFree, FrameState::TxPending)
            {
                self.pending.push(addr);
                return Some(addr);
            }
        }
        None
    }

    /// Puts every pending frame on the "tx ring" and takes it straight back from the "completion
    /// ring" into the free list.
    #[inline]
    fn submit_and_reclaim(&mut self) {
        let ledger = &self.ledger;
        for &addr in &self.pending {
            if !ledger.transition(addr, FrameState::TxPending, FrameState::TxRing) {
                panic!("pending frame refused by the ledger");
            }
        }
        for &addr in &self.pending {
            if ledger.transition(black_box(addr), FrameState::TxRing, FrameState::TxFree) {
                // Capacity is the number of tx frames, so this never allocates.
                self.free.push(addr);
            }
        }
        self.pending.clear();
    }

    /// One get/put pair for each of `n` frames.
    #[inline]
    fn cycle(&mut self, n: usize) {
        for _ in 0..n {
            if self.get().is_none() {
                panic!("tx frame pool ran dry");
            }
        }
        self.submit_and_reclaim();
    }

    fn check(&self) {
        assert_eq!(self.ledger.violations(), 0);
        assert_eq!(self.free.len(), (UMEM_FRAMES - RX_FRAMES) as usize);
        assert!(self.pending.is_empty());
    }
}

/// The rx side of a port: frames come back from the kernel, are lent to the stack, queued for
/// recycling and put back on the fill ring, as `fetch_rx`, `XskRxToken::drop` and `refill` do.
struct RxPool {
    ledger: FrameLedger,
    /// What the kernel's rx ring would hand over: addresses past the kernel headroom.
    arriving: Vec<u64>,
    ready: Vec<u64>,
    recycle: Vec<u64>,
}

impl RxPool {
    fn new(batch: usize) -> RxPool {
        let ledger = FrameLedger::new(UMEM_FRAMES, FRAME_SIZE, FrameState::Fill);
        let arriving = (0..batch)
            .map(|index| ledger.frame_base(index) + u64::from(KERNEL_HEADROOM))
            .collect();
        RxPool {
            ledger,
            arriving,
            ready: Vec::with_capacity(batch),
            recycle: Vec::with_capacity(RX_FRAMES as usize),
        }
    }

    #[inline]
    fn cycle(&mut self) {
        let ledger = &self.ledger;
        for &addr in black_box(&self.arriving) {
            if ledger.transition(addr, FrameState::Fill, FrameState::InStack) {
                self.ready.push(addr);
            }
        }
        for &addr in &self.ready {
            self.recycle
                .push(ledger.frame_base(ledger.frame_of(addr).unwrap_or(0)));
        }
        self.ready.clear();
        for &addr in &self.recycle {
            if !ledger.transition(addr, FrameState::InStack, FrameState::Fill) {
                panic!("recycled frame refused by the ledger");
            }
        }
        self.recycle.clear();
    }

    fn check(&self) {
        assert_eq!(self.ledger.violations(), 0);
        assert_eq!(
            self.ledger.census()[FrameState::Fill as usize],
            UMEM_FRAMES as usize
        );
    }
}

fn frame_pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_pool");
    for n in [1, 32, BATCH] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("tx_cycle", n), &n, |b, &n| {
            let mut pool = TxPool::new();
            b.iter(|| pool.cycle(n));
            pool.check();
        });
    }
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(BenchmarkId::new("rx_recycle", BATCH), |b| {
        let mut pool = RxPool::new(BATCH);
        b.iter(|| pool.cycle());
        pool.check();
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// rtrb hand-off
// ---------------------------------------------------------------------------------------------

/// Slots in the cross-thread ring.
const RING_CAPACITY: usize = 1024;
/// Handles per chunk, as the lane's hand-off batch.
const CHUNK: usize = 32;

/// Moves `count` handles from this thread to a consumer thread through a fresh ring, `chunk` at a
/// time (1: `push`/`pop`; more: the chunk APIs), and returns the time from the first push to the
/// consumer holding the last handle. Panics if a handle arrives out of sequence.
fn cross_thread(count: u64, chunk: usize) -> Duration {
    let (mut producer, mut consumer) = RingBuffer::<u32>::new(RING_CAPACITY);
    let start_line = Barrier::new(2);
    std::thread::scope(|scope| {
        let start_line = &start_line;
        let receiver = scope.spawn(move || {
            start_line.wait();
            let mut expected: u64 = 0;
            if chunk == 1 {
                while expected < count {
                    match consumer.pop() {
                        Ok(handle) => {
                            if handle != expected as u32 {
                                panic!("handle {handle} arrived, expected {}", expected as u32);
                            }
                            expected += 1;
                        }
                        Err(_) => std::hint::spin_loop(),
                    }
                }
            } else {
                while expected < count {
                    let available = consumer.slots().min(chunk);
                    if available == 0 {
                        std::hint::spin_loop();
                        continue;
                    }
                    let handles = consumer.read_chunk(available).expect("slots counted above");
                    for handle in handles {
                        if handle != expected as u32 {
                            panic!("handle {handle} arrived, expected {}", expected as u32);
                        }
                        expected += 1;
                    }
                }
            }
            (Instant::now(), black_box(expected))
        });
        start_line.wait();
        let start = Instant::now();
        let mut next: u64 = 0;
        if chunk == 1 {
            while next < count {
                let mut handle = next as u32;
                loop {
                    match producer.push(handle) {
                        Ok(()) => break,
                        Err(PushError::Full(back)) => {
                            handle = back;
                            std::hint::spin_loop();
                        }
                    }
                }
                next += 1;
            }
        } else {
            while next < count {
                let want = (count - next).min(chunk as u64);
                match producer.write_chunk_uninit(want as usize) {
                    Ok(slots) => {
                        slots.fill_from_iter((next..next + want).map(|n| n as u32));
                        next += want;
                    }
                    Err(_) => std::hint::spin_loop(),
                }
            }
        }
        let (end, received) = receiver.join().expect("consumer thread panicked");
        assert_eq!(received, count);
        end - start
    })
}

fn ring_handoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_handoff");

    group.throughput(Throughput::Elements(1));
    group.bench_function("single_thread/push_pop", |b| {
        let (mut producer, mut consumer) = RingBuffer::<u32>::new(RING_CAPACITY);
        let mut handle = 0u32;
        b.iter(|| {
            handle = handle.wrapping_add(1);
            if producer.push(black_box(handle)).is_err() {
                panic!("ring full");
            }
            match consumer.pop() {
                Ok(popped) => black_box(popped),
                Err(_) => panic!("ring empty"),
            }
        });
    });

    group.throughput(Throughput::Elements(CHUNK as u64));
    group.bench_function("single_thread/chunk_32", |b| {
        let (mut producer, mut consumer) = RingBuffer::<u32>::new(RING_CAPACITY);
        let handles: [u32; CHUNK] = std::array::from_fn(|i| i as u32);
        b.iter(|| {
            let slots = producer.write_chunk_uninit(CHUNK).expect("ring has room");
            slots.fill_from_iter(black_box(&handles).iter().copied());
            let chunk = consumer.read_chunk(CHUNK).expect("chunk was written");
            let sum = chunk.into_iter().fold(0u32, u32::wrapping_add);
            black_box(sum)
        });
    });

    group.throughput(Throughput::Elements(1));
    group.bench_function("cross_thread/per_item", |b| {
        b.iter_custom(|iters| cross_thread(iters, 1));
    });
    group.bench_function("cross_thread/chunk_32", |b| {
        b.iter_custom(|iters| cross_thread(iters, CHUNK));
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// HTTP request handling
// ---------------------------------------------------------------------------------------------

const SMALL_GET: &[u8] =
    b"GET /healthz HTTP/1.1\r\nHost: 10.77.0.2\r\nUser-Agent: xgate-bench\r\nAccept: */*\r\n\r\n";

const BROWSER_GET: &[u8] = b"GET /healthz?probe=1 HTTP/1.1\r\n\
Host: 10.77.0.2\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Connection: keep-alive\r\n\
Referer: http://10.77.0.2/status\r\n\
Cookie: session=4f9c2d7e1a8b3c6d5e0f; theme=dark; lang=en\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
\r\n";

/// Requests in the pipelined burst.
const PIPELINED: usize = 32;

/// Answers the single request in `input`; panics unless it is a keep-alive 200 for all of it.
#[inline]
fn answer_one(responder: &Responder, input: &[u8], out: &mut [u8]) -> usize {
    match responder.handle(input, out) {
        Outcome::Respond {
            consumed,
            written,
            close: false,
            status: 200,
            ..
        } if consumed == input.len() => written,
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// Answers every request in `input`, one `handle` call each; returns (requests, response bytes).
#[inline]
fn answer_all(responder: &Responder, input: &[u8], out: &mut [u8]) -> (usize, usize) {
    let (mut position, mut requests, mut written) = (0, 0, 0);
    while position < input.len() {
        match responder.handle(&input[position..], out) {
            Outcome::Respond {
                consumed,
                written: n,
                close: false,
                status: 200,
                ..
            } => {
                position += consumed;
                requests += 1;
                written += n;
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    (requests, written)
}

/// Parses with bare httparse into the responder's header array size; returns the head length.
#[inline]
fn httparse_only(input: &[u8]) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("unexpected parse result {other:?}"),
    }
}

fn http(c: &mut Criterion) {
    let responder = Responder::new(Limits::default());
    let burst: Vec<u8> = SMALL_GET.repeat(PIPELINED);
    let mut out = [0u8; MIN_RESPONSE_BUFFER];
    // The inputs are what they claim to be before anything is timed.
    assert_eq!(httparse_only(BROWSER_GET), BROWSER_GET.len());
    let mut probe = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut probe);
    parsed.parse(BROWSER_GET).expect("browser request parses");
    assert_eq!(parsed.headers.len(), 12);
    assert_eq!(answer_all(&responder, &burst, &mut out).0, PIPELINED);

    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements(1));
    group.bench_function("small_get", |b| {
        b.iter(|| answer_one(&responder, black_box(SMALL_GET), &mut out));
    });
    group.bench_function("browser_12_headers", |b| {
        b.iter(|| answer_one(&responder, black_box(BROWSER_GET), &mut out));
    });
    group.throughput(Throughput::Elements(PIPELINED as u64));
    group.bench_function("pipelined_32", |b| {
        b.iter(|| answer_all(&responder, black_box(&burst), &mut out));
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("httparse_only/small_get", |b| {
        b.iter(|| httparse_only(black_box(SMALL_GET)));
    });
    group.bench_function("httparse_only/browser_12_headers", |b| {
        b.iter(|| httparse_only(black_box(BROWSER_GET)));
    });
    group.finish();

    let mut group = c.benchmark_group("http_bytes");
    group.throughput(Throughput::Bytes(BROWSER_GET.len() as u64));
    group.bench_function("browser_12_headers", |b| {
        b.iter(|| answer_one(&responder, black_box(BROWSER_GET), &mut out));
    });
    group.throughput(Throughput::Bytes(burst.len() as u64));
    group.bench_function("pipelined_32", |b| {
        b.iter(|| answer_all(&responder, black_box(&burst), &mut out));
    });
    group.finish();
}

/// One lane's hot counters as the lane publishes them (four words: a block of 32 bytes).
#[derive(Default)]
struct CounterBlock {
    rx_frames: AtomicU64,
    requests: AtomicU64,
    handed_out: AtomicU64,
    handed_in: AtomicU64,
}

impl CounterBlock {
    fn publish(&self, n: u64) {
        self.rx_frames.store(n, Ordering::Relaxed);
        self.requests.store(n, Ordering::Relaxed);
        self.handed_out.store(n, Ordering::Relaxed);
        self.handed_in.store(n, Ordering::Relaxed);
    }
}

/// Two lanes' blocks side by side: they share a cache line.
#[derive(Default)]
#[repr(C)]
struct PackedLanes([CounterBlock; 2]);

/// A block alone on its cache line, like `LaneCounters`.
#[derive(Default)]
#[repr(C, align(64))]
struct PaddedBlock(CounterBlock);

#[derive(Default)]
#[repr(C)]
struct PaddedLanes([PaddedBlock; 2]);

/// Both lanes publish `count` times at once; returns the time per publish of one lane.
fn publish_from_two_threads(first: &CounterBlock, second: &CounterBlock, count: u64) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            barrier.wait();
            for n in 0..count {
                second.publish(black_box(n));
            }
        });
        barrier.wait();
        let start = Instant::now();
        for n in 0..count {
            first.publish(black_box(n));
        }
        let elapsed = start.elapsed();
        other.join().unwrap();
        elapsed
    })
}

fn lane_counters(c: &mut Criterion) {
    let mut group = c.benchmark_group("lane_counters");
    group.throughput(Throughput::Elements(1));
    let packed = PackedLanes::default();
    let padded = PaddedLanes::default();
    group.bench_function("packed", |b| {
        b.iter_custom(|iters| publish_from_two_threads(&packed.0[0], &packed.0[1], iters))
    });
    group.bench_function("padded", |b| {
        b.iter_custom(|iters| publish_from_two_threads(&padded.0[0].0, &padded.0[1].0, iters))
    });
    group.finish();
}

criterion_group! {
    name = micro;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30);
    targets = frame_pool, ring_handoff, http, lane_counters
}
criterion_main!(micro);
