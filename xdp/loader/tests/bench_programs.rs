//! The benchmark programs in the real kernel (BPF_PROG_TEST_RUN, no mocks): `xgate_bench_drop`
//! drops every frame and counts each once with its length; the frame generator (`xgate_bench_tx`
//! in live-frames mode, or its packet-socket fallback where the kernel refuses live frames, as
//! this lab's does) sends frames across a real veth pair (in a private network namespace) to the
//! drop program, counts them, and stops early when interrupted. Needs root (BPF, namespaces).
//!
//! The calls into the kernel (unshare, if_nametoindex, the SIGUSR1 handler and the signal that
//! interrupts the sender, the root check) are this test's only `unsafe`.
#![allow(unsafe_code)]

use std::{
    os::unix::thread::JoinHandleExt as _,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use xgate_xdp::bench::{DropCounter, FrameGenerator, SendEnd, MAX_LIVE_BATCH};

const XDP_DROP: u32 = 1;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "loading the XDP programs needs root");
}

/// An Ethernet + IPv4/UDP-looking frame of `len` bytes (no FCS), cut short if `len` is below a
/// full header: the drop program does not parse it.
fn udp_frame(len: usize) -> Vec<u8> {
    let mut frame = vec![0u8; len.max(34)];
    frame[..12].copy_from_slice(&[0x02, 0x78, 0, 0, 0, 0x02, 0x02, 0x78, 0, 0, 0, 0x01]);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    frame[14] = 0x45;
    frame[23] = 17;
    frame.truncate(len);
    frame
}

#[test]
fn drop_program_drops_every_frame_and_counts_it_once() {
    require_root();
    let mut counter = DropCounter::load().expect("the drop program loads and verifies");
    assert_eq!(counter.interface(), None);
    assert_eq!(
        counter.packets().unwrap().packets,
        0,
        "a fresh load starts at zero"
    );

    let sizes = [60usize, 1514, 14];
    for size in sizes {
        assert_eq!(
            counter.run_on_frame(&udp_frame(size)).unwrap(),
            XDP_DROP,
            "{size}-byte frame"
        );
    }
    let stats = counter.packets().unwrap();
    assert_eq!(stats.packets, sizes.len() as u64);
    assert_eq!(stats.bytes, sizes.iter().sum::<usize>() as u64);
}

#[test]
fn each_drop_counter_has_its_own_counters() {
    require_root();
    let mut first = DropCounter::load().unwrap();
    let second = DropCounter::load().unwrap();
    first.run_on_frame(&udp_frame(60)).unwrap();
    assert_eq!(first.packets().unwrap().packets, 1);
    assert_eq!(second.packets().unwrap().packets, 0);
}

#[test]
fn generator_loads_and_refuses_bad_batches() {
    require_root();
    let generator = FrameGenerator::load().expect("the generator program loads and verifies");
    let frame = udp_frame(60);
    assert!(generator.send(1, &frame, 1, 0).is_err());
    assert!(generator.send(1, &frame, 1, MAX_LIVE_BATCH + 1).is_err());
    // An interface index that exists in no namespace: the kernel refuses the run.
    assert!(generator.send(u32::MAX, &frame, 1, 1).is_err());
}

/// Runs `ip` with `args` in the calling thread's network namespace (a child inherits it).
fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .expect("iproute2's `ip` runs");
    assert!(status.success(), "ip {args:?} failed");
}

/// Runs `body` on a thread of its own, moved into a fresh, nameless network namespace holding a
/// veth pair `gen0`–`sink0` with the drop program on `sink0`: the pair lives and dies with the
/// thread, and nothing else on the machine sees it. `body` gets gen0's ifindex and the counter.
fn with_fresh_veth(body: impl FnOnce(u32, DropCounter) + Send + 'static) {
    std::thread::spawn(move || {
        // SAFETY: unshare(CLONE_NEWNET) only changes this thread's network namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare(CLONE_NEWNET)");
        // No IPv6 here, or the links coming up send router solicitations and MLD reports that
        // the drop program would count too. (/proc/sys/net follows the writing thread's netns.)
        for knob in ["all", "default"] {
            std::fs::write(format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6"), "1")
                .expect("disable IPv6 in the test namespace");
        }
        ip(&["link", "add", "gen0", "type", "veth", "peer", "name", "sink0"]);
        ip(&["link", "set", "gen0", "up"]);
        ip(&["link", "set", "sink0", "up"]);
        // veth delivers XDP_TX/redirected frames only to a peer with an XDP program (or GRO).
        let sink = DropCounter::attach("sink0").expect("native XDP on veth");
        assert_eq!(sink.interface(), Some("sink0"));
        let name = std::ffi::CString::new("gen0").unwrap();
        // SAFETY: `name` is a valid NUL-terminated string; if_nametoindex only reads it.
        let gen_index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(gen_index, 0);
        body(gen_index, sink);
    })
    .join()
    .expect("the veth test thread");
}

#[test]
fn generated_frames_cross_a_veth_and_reach_the_drop_program() {
    require_root();
    with_fresh_veth(|gen_index, sink| {
        let generator = FrameGenerator::load().unwrap();
        let frame = udp_frame(60);
        assert_eq!(
            generator
                .send(gen_index, &frame, 1000, 64)
                .expect("frames out of gen0"),
            SendEnd::Completed
        );
        assert_eq!(generator.sent().unwrap().packets, 1000);
        // Delivery runs in the sink's NAPI poll on this CPU, done by the time send returns, but
        // allow it a moment anyway.
        let deadline = Instant::now() + Duration::from_secs(2);
        while sink.packets().unwrap().packets < 1000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let stats = sink.packets().unwrap();
        assert_eq!(
            stats.packets, 1000,
            "every generated frame reached the drop program once"
        );
        assert_eq!(stats.bytes, 60_000);
    });
}

extern "C" fn ignore_signal(_signal: libc::c_int) {}

#[test]
fn a_signal_ends_a_long_send_early_and_the_count_says_how_far_it_got() {
    require_root();
    // SAFETY: an all-zero sigaction is valid; the handler does nothing, which is
    // async-signal-safe; SIGUSR1 is not used by the test harness.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_signal as *const () as libc::sighandler_t;
        libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut());
    }
    with_fresh_veth(|gen_index, sink| {
        let generator = Arc::new(FrameGenerator::load().unwrap());
        let done = Arc::new(AtomicBool::new(false));
        let sender = {
            let (generator, done) = (Arc::clone(&generator), Arc::clone(&done));
            std::thread::spawn(move || {
                // Far more frames than fit in the test's time: only the signal ends it.
                let end = generator.send(gen_index, &udp_frame(60), u32::MAX, 64);
                done.store(true, Ordering::Release);
                end
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        let while_running = generator.sent().unwrap().packets;
        assert!(while_running > 0, "the count moves while the call runs");
        // The signal may land before the thread enters the kernel: repeat until the call ends.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done.load(Ordering::Acquire) && Instant::now() < deadline {
            // The flag ends a packet-socket send; the signal a live-frames call in the kernel.
            generator.interrupt();
            // SAFETY: the thread is not joined yet, so its pthread_t is valid; SIGUSR1 has a
            // do-nothing handler installed above.
            unsafe { libc::pthread_kill(sender.as_pthread_t(), libc::SIGUSR1) };
            std::thread::sleep(Duration::from_millis(10));
        }
        let end = sender
            .join()
            .unwrap()
            .expect("an interrupted send is not an error");
        assert_eq!(end, SendEnd::Interrupted);
        let sent = generator.sent().unwrap().packets;
        assert!(sent >= while_running && sent < u64::from(u32::MAX));
        std::thread::sleep(Duration::from_millis(50));
        // Frames veth could not queue are dropped before the sink, never counted twice.
        let received = sink.packets().unwrap().packets;
        assert!(received > 0 && received <= sent, "received {received} of {sent}");
    });
}
