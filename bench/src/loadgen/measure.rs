//! One run of the generator: check the options, set up the port and the stack, connect every
//! connection, warm up, measure (closed or open loop), and reset every connection; latencies in
//! an HdrHistogram.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use smoltcp::{
    iface::{Config as IfaceConfig, Interface, SocketSet},
    time::Instant as StackInstant,
    wire::{EthernetAddress, HardwareAddress, IpCidr},
};
use xgate_userstack::xsk::{PortConfig, XskPort};
use xgate_xdp::Steering;

use crate::cpu::{own_cpu_time, MachineCpu};

use super::{
    generator::{Conn, ConnState, Generator, Shard},
    parse_mac,
    response::ResponseReader,
    schedule::OpenLoop,
    Errors, HttpArgs, HttpReport, Latency, LoopMode, BASE_PORT, HEAD_WINDOW, OPEN_LOOP_GRACE, RX_BURST,
    SHARD_SIZE, TOP_PORT, TX_BUFFER,
};

fn latency_summary(histogram: &Histogram<u64>) -> Latency {
    let us = |ns: u64| ns as f64 / 1000.0;
    if histogram.is_empty() {
        return Latency::default();
    }
    Latency {
        p50: us(histogram.value_at_quantile(0.50)),
        p90: us(histogram.value_at_quantile(0.90)),
        p99: us(histogram.value_at_quantile(0.99)),
        p999: us(histogram.value_at_quantile(0.999)),
        max: us(histogram.max()),
        mean: histogram.mean() / 1000.0,
    }
}

fn latency_cdf(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    // Log-spaced toward the tail: 0..90% in steps of 1%, then 9 of each further "nine".
    let mut quantiles: Vec<f64> = (0..90).map(|i| i as f64 / 100.0).collect();
    let mut step = 0.01;
    let mut base = 0.90;
    for _ in 0..4 {
        for i in 0..9 {
            quantiles.push(base + step * i as f64);
        }
        base += step * 9.0;
        step /= 10.0;
    }
    quantiles.push(1.0);
    quantiles
        .into_iter()
        .map(|q| (q * 100.0, histogram.value_at_quantile(q) as f64 / 1000.0))
        .collect()
}

pub(super) fn measure(args: &HttpArgs) -> anyhow::Result<HttpReport> {
    let most_connections = usize::from(TOP_PORT - BASE_PORT) / 2;
    if args.connections == 0 || args.connections > most_connections {
        bail!("--connections must be between 1 and {most_connections}");
    }
    let finite = [args.duration, args.warmup, args.connect_timeout]
        .iter()
        .all(|v| v.is_finite());
    if !(finite && args.duration > 0.0 && args.warmup >= 0.0 && args.connect_timeout > 0.0) {
        bail!("--duration and --connect-timeout must be positive seconds, --warmup not negative");
    }
    if args.duration + args.warmup > 3600.0 || args.connect_timeout > 3600.0 {
        bail!("runs are limited to an hour: shorten --duration, --warmup or --connect-timeout");
    }
    if args.prefix_len == 0 || args.prefix_len > 32 {
        bail!("--prefix-len must be between 1 and 32");
    }
    let open_rate = match (args.mode, args.rate) {
        (LoopMode::Open, Some(rate)) if rate > 0.0 && rate.is_finite() => Some(rate),
        (LoopMode::Open, _) => bail!("open loop needs --rate (requests per second, > 0)"),
        (LoopMode::Closed, Some(_)) => bail!("--rate is for --mode open only"),
        (LoopMode::Closed, None) => None,
    };
    if args.paths.is_empty()
        || args
            .paths
            .iter()
            .any(|p| !p.starts_with('/') || p.contains(char::is_whitespace))
    {
        bail!("--path must be an origin-form path such as /healthz");
    }
    let mac = parse_mac(&args.mac)?;
    let host = args.host.clone().unwrap_or_else(|| args.target.to_string());
    let requests: Vec<Vec<u8>> = args
        .paths
        .iter()
        .map(|path| {
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xgate-bench\r\n\r\n").into_bytes()
        })
        .collect();
    if let Some(long) = requests.iter().find(|r| r.len() > TX_BUFFER) {
        bail!(
            "a request of {} bytes does not fit the {TX_BUFFER}-byte send buffer: shorten --path or --host",
            long.len()
        );
    }

    let mut steering = Steering::attach(&args.interface, args.local_ip)
        .with_context(|| format!("steering {} on {}", args.local_ip, args.interface))?;
    let mut port = XskPort::open(&PortConfig {
        interface: args.interface.clone(),
        queue: 0,
        frame_size: 2048,
        frames: args.frames,
        allow_normal_pages: true,
        numa_node: None,
    })
    .context("opening the AF_XDP socket")?;
    port.trust_rx_checksums();
    steering
        .register_socket(0, port.fd())
        .context("registering the AF_XDP socket")?;

    let epoch = Instant::now();
    let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    let iface_seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    iface_config.random_seed = iface_seed;
    let mut iface = Interface::new(iface_config, &mut port, StackInstant::from_micros(0));
    iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(args.local_ip.into(), args.prefix_len))
            .expect("one address fits");
    });

    // The initial ports start at a random place in the lower half of the range, so consecutive
    // runs seldom reuse a 4-tuple; the rest of the range is for reconnects.
    let base_port = {
        let span = u64::from(TOP_PORT - BASE_PORT) - 2 * args.connections as u64 + 1;
        BASE_PORT + (iface_seed % span) as u16
    };
    let shard_count = args.connections.div_ceil(SHARD_SIZE);
    let mut shards: Vec<Shard> = (0..shard_count)
        .map(|_| Shard {
            sockets: SocketSet::new(Vec::with_capacity(SHARD_SIZE)),
            dirty: false,
            poll_at: None,
        })
        .collect();
    let mut conns = Vec::with_capacity(args.connections);
    for index in 0..args.connections {
        let shard = index / SHARD_SIZE;
        let handle = shards[shard].sockets.add(Generator::new_socket());
        conns.push(Conn {
            handle,
            shard: shard as u32,
            local_port: 0,
            state: ConnState::Failed,
            started_ns: 0,
            next_request: 0,
            mix: index % requests.len(),
            reader: ResponseReader::default(),
        });
    }
    let mut generator = Generator {
        port,
        iface,
        shards,
        conns,
        port_owner: vec![u32::MAX; 65_536],
        base_port,
        free_ports: (base_port + args.connections as u16..TOP_PORT)
            .chain(BASE_PORT..base_port)
            .collect::<VecDeque<u16>>(),
        woken: Vec::with_capacity(RX_BURST),
        wake_all: false,
        reconnects: Vec::with_capacity(args.connections),
        requests,
        target: args.target,
        epoch,
        scratch: vec![0; HEAD_WINDOW].into_boxed_slice(),
        errors: Errors::default(),
        refused: 0,
        response_bytes: 0,
    };

    // Connect everything, then wait (bounded) for ESTABLISHED. A refused attempt (the server
    // had no free listener yet) is retried from a fresh port every 50 ms until the deadline, as
    // a client ramping up would; the retries are reported.
    for index in 0..args.connections {
        let port = generator.base_port + index as u16;
        generator.connect(index, port);
    }
    let connect_deadline = Duration::from_secs_f64(args.connect_timeout);
    let connect_start = Instant::now();
    let mut last_retry = Instant::now();
    loop {
        generator.receive();
        let retry = last_retry.elapsed() >= Duration::from_millis(50);
        let mut pending = 0;
        for index in 0..args.connections {
            generator.read_response(index);
            match generator.conns[index].state {
                ConnState::Failed if retry => generator.reconnect(index),
                ConnState::Idle => continue,
                _ => {}
            }
            pending += 1;
        }
        if retry {
            last_retry = Instant::now();
        }
        generator.transmit();
        if pending == 0 || connect_start.elapsed() >= connect_deadline {
            break;
        }
    }
    let connect_seconds = connect_start.elapsed().as_secs_f64();
    let connect_retries = generator.refused;
    for index in 0..args.connections {
        if generator.conns[index].state != ConnState::Idle {
            // Not established in time: reset it so it cannot connect later and hold a server slot.
            generator.abort(index);
            generator.conns[index].state = ConnState::Failed;
            generator.errors.connect += 1;
        }
    }
    generator.transmit();
    let live: Vec<usize> = (0..args.connections)
        .filter(|&i| generator.conns[i].state == ConnState::Idle)
        .collect();
    if live.is_empty() {
        bail!(
            "no connection to {} was established within {:.1} s",
            args.target,
            args.connect_timeout
        );
    }
    let mut position_of = vec![u32::MAX; args.connections];
    for (position, &index) in live.iter().enumerate() {
        position_of[index] = position as u32;
    }

    // Load: warm-up, then the measurement window [window_start, window_end).
    // - Throughput: responses completed inside the window.
    // - Latency, closed loop: the responses completed inside the window, from their send.
    // - Latency, open loop: the requests *due* inside the window, from their due time, wherever
    //   they complete: the loop runs on for a grace period after the window (sending nothing due
    //   after it) so that the slowest of them are not left out; one still open when the grace
    //   period ends is recorded with its latency so far (a lower bound) and counted.
    let load_start = generator.now_ns();
    let window_start = load_start + (args.warmup * 1e9) as u64;
    let window_end = window_start + (args.duration * 1e9) as u64;
    let grace_end = window_end + OPEN_LOOP_GRACE.as_nanos() as u64;
    let plan = open_rate.map(|rate| OpenLoop::new(load_start, rate, live.len()));
    // Requests 0..due_in_window fall due before the window ends.
    let due_in_window = plan.map_or(0, |p| p.due_count(window_end - 1));
    for (position, &index) in live.iter().enumerate() {
        generator.conns[index].next_request = plan.map_or(0, |p| p.first_request(position));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 120_000_000_000, 3).expect("valid bounds");
    let mut requests_done = 0u64;
    let mut unfinished = 0u64;
    let mut due_seen = 0u64;
    // Connections with something to do this turn (a frame for them arrived, or a request fell
    // due), as positions in `live`.
    let mut work: Vec<usize> = Vec::with_capacity(live.len());
    let mut in_work = vec![false; live.len()];
    if plan.is_none() {
        // Closed loop: every connection starts with a request.
        for &index in &live {
            let now = generator.now_ns();
            generator.send_request(index, now);
        }
    }
    // Turns of the loop inside the window, and those that found nothing to do: a generator
    // that is often idle is not what limits the rate.
    let mut window_turns = 0u64;
    let mut idle_turns = 0u64;
    let mut window_cpu: Option<(MachineCpu, Duration)> = None;
    let mut window_cpu_spent: Option<(f64, f64)> = None;
    loop {
        let now_ns = generator.now_ns();
        if window_cpu.is_none() && now_ns >= window_start {
            window_cpu = Some((MachineCpu::sample(), own_cpu_time()));
        }
        if now_ns >= window_end && window_cpu_spent.is_none() {
            if let Some((machine, own)) = window_cpu {
                window_cpu_spent = Some((
                    MachineCpu::sample().busy_since(&machine).as_secs_f64(),
                    own_cpu_time().saturating_sub(own).as_secs_f64(),
                ));
            }
        }
        let in_grace = now_ns >= window_end;
        if in_grace {
            let owed = plan.is_some()
                && live.iter().any(|&index| {
                    let conn = &generator.conns[index];
                    conn.state == ConnState::Waiting && conn.started_ns < window_end
                        || conn.state == ConnState::Idle && conn.next_request < due_in_window
                });
            if !owed || now_ns >= grace_end {
                break;
            }
        }
        let received = generator.receive();
        if std::mem::take(&mut generator.wake_all) {
            generator.woken.clear();
            for (position, flag) in in_work.iter_mut().enumerate() {
                if !*flag {
                    *flag = true;
                    work.push(position);
                }
            }
        }
        for index in generator.woken.drain(..) {
            let position = position_of[index as usize];
            if position != u32::MAX && !in_work[position as usize] {
                in_work[position as usize] = true;
                work.push(position as usize);
            }
        }
        if let Some(plan) = plan {
            // In the grace period nothing due after the window is sent.
            let due = if in_grace {
                plan.due_count(now_ns).min(due_in_window)
            } else {
                plan.due_count(now_ns)
            };
            let newly = due.saturating_sub(due_seen).min(live.len() as u64);
            for k in due - newly..due {
                let position = plan.owner(k);
                if !in_work[position] {
                    in_work[position] = true;
                    work.push(position);
                }
            }
            due_seen = due_seen.max(due);
        }
        for &position in &work {
            in_work[position] = false;
            let index = live[position];
            if let Some((origin, status)) = generator.read_response(index) {
                let now = generator.now_ns();
                let counted = now >= window_start && now < window_end;
                let timed = match plan {
                    None => counted,
                    Some(_) => origin >= window_start && origin < window_end,
                };
                if counted {
                    requests_done += 1;
                }
                if timed {
                    histogram.saturating_record(now.saturating_sub(origin).max(1));
                }
                if (counted || timed) && !(200..300).contains(&status) {
                    generator.errors.non_2xx += 1;
                }
            }
            match plan {
                None if !in_grace => {
                    let now = generator.now_ns();
                    generator.send_request(index, now);
                }
                None => {}
                Some(plan) => {
                    let k = generator.conns[index].next_request;
                    let sendable = k < plan.due_count(generator.now_ns()) && (!in_grace || k < due_in_window);
                    if sendable && generator.send_request(index, plan.due_at(k)) {
                        generator.conns[index].next_request = plan.next_request(k);
                    }
                }
            }
            if generator.conns[index].state == ConnState::Failed {
                // Keep the offered load: reset it and reopen from a fresh port once the reset
                // has gone out (after this turn's transmit).
                generator.abort(index);
                generator.reconnects.push(index as u32);
            }
        }
        if now_ns >= window_start && now_ns < window_end {
            window_turns += 1;
            if received == 0 && work.is_empty() {
                idle_turns += 1;
            }
        }
        work.clear();
        generator.transmit();
        while let Some(index) = generator.reconnects.pop() {
            generator.reconnect(index as usize);
        }
    }
    if plan.is_some() {
        let now = generator.now_ns();
        for &index in &live {
            let conn = &generator.conns[index];
            if conn.state == ConnState::Waiting
                && conn.started_ns >= window_start
                && conn.started_ns < window_end
            {
                histogram.saturating_record(now.saturating_sub(conn.started_ns).max(1));
                unfinished += 1;
            }
        }
    }
    let (machine_busy_seconds, generator_cpu_seconds) = window_cpu_spent.unwrap_or((0.0, 0.0));

    // Reset every connection (RST) so the server frees its sockets now, not at its timeouts.
    // Paced, RST_PACE per 100 us, so that a slow server's receive ring does not overflow and
    // drop them.
    const RST_PACE: usize = 16;
    let drain_start = Instant::now();
    let mut next_reset = 0;
    while drain_start.elapsed() < Duration::from_millis(2000) {
        let due = (drain_start.elapsed().as_micros() as usize / 100 + 1) * RST_PACE;
        while next_reset < generator.conns.len().min(due) {
            generator.abort(next_reset);
            next_reset += 1;
        }
        generator.receive();
        generator.transmit();
        if next_reset < generator.conns.len() {
            continue;
        }
        // Done when no shard has work and the kernel has sent every frame handed to it (in copy
        // mode it sends a bounded batch per kick, so frames can still sit in the tx ring).
        let stats = generator.port.stats();
        if generator.shards.iter().all(|s| !s.dirty && s.poll_at.is_none())
            && stats.tx_completed == stats.tx_frames
        {
            break;
        }
    }
    generator.errors.connect += generator.refused - connect_retries;
    let stats = generator.port.stats();
    let kernel = generator.port.kernel_stats().unwrap_or_default();
    Ok(HttpReport {
        client: "xgate-bench",
        target: args.target.to_string(),
        mode: args.mode,
        rate_target: open_rate,
        connections: args.connections,
        established: live.len(),
        connect_seconds,
        connect_retries,
        open_loop_unfinished: unfinished,
        duration_seconds: args.duration,
        requests: requests_done,
        requests_per_second: requests_done as f64 / args.duration,
        latency_us: latency_summary(&histogram),
        cdf: latency_cdf(&histogram),
        errors: generator.errors.clone(),
        response_bytes: generator.response_bytes,
        af_xdp_mode: generator.port.mode().name(),
        rx_frames: stats.rx_frames,
        tx_frames: stats.tx_frames,
        tx_starved: stats.tx_starved,
        kernel_rx_dropped: kernel.rx_dropped,
        machine_busy_seconds,
        generator_cpu_seconds,
        generator_idle_fraction: if window_turns > 0 {
            idle_turns as f64 / window_turns as f64
        } else {
            0.0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_is_monotonic_and_ends_at_the_maximum() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
        for value in 1..=10_000u64 {
            histogram.record(value * 1000).unwrap();
        }
        let cdf = latency_cdf(&histogram);
        assert!(cdf.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(cdf.last().unwrap().0, 100.0);
        assert!((cdf.last().unwrap().1 - 10_000.0).abs() / 10_000.0 < 0.01);
    }
}
