//! The hugepage script and hugepage-backed regions on this host, for real (needs root). The host's
//! reservation is global, so every test here holds an exclusive lock on
//! /run/xgate-hugepages-test.lock (xgate's lab tests take the same one) and restores the
//! original count when it ends, also on failure.

use std::{os::fd::AsRawFd, process::Command};

use xgate_hugepages::{status, Backing, FallbackPolicy, Region, HUGE_PAGE_SIZE};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/setup.sh");

/// Holds the lock and puts the original reservation back on drop.
struct HostGuard {
    _lock: std::fs::File,
    original: usize,
}

impl HostGuard {
    fn take() -> HostGuard {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "these tests change /proc/sys/vm/nr_hugepages: run as root"
        );
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/xgate-hugepages-test.lock")
            .unwrap();
        // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        HostGuard {
            _lock: lock,
            original: nr_hugepages(),
        }
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        std::fs::write("/proc/sys/vm/nr_hugepages", self.original.to_string()).unwrap();
    }
}

fn nr_hugepages() -> usize {
    std::fs::read_to_string("/proc/sys/vm/nr_hugepages")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn script(args: &[&str]) -> (i32, String) {
    let out = Command::new("bash").arg(SCRIPT).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn setup_script_refuses_nonsense_and_reserves_idempotently() {
    let guard = HostGuard::take();
    for bad in [
        &["abc"][..],
        &["-3"],
        &["0"],
        &["99999999"],
        &[],
        &["1", "2"],
        &["--frobnicate", "1"],
    ] {
        let (code, text) = script(bad);
        assert_eq!(code, 2, "{bad:?} gave {code}: {text}");
        assert!(text.starts_with("setup.sh: "), "{text}");
    }
    let want = (guard.original + 2).to_string();
    let (code, text) = script(&[&want]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("before:") && text.contains("after:"), "{text}");
    assert_eq!(nr_hugepages(), guard.original + 2);
    let (code, text) = script(&[&want]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("nothing to do"), "{text}");
    let (code, _) = script(&["--exact", &guard.original.to_string()]);
    assert_eq!(code, 0);
    assert_eq!(nr_hugepages(), guard.original);
}

#[test]
fn regions_land_on_hugepages_when_reserved_and_fall_back_when_not() {
    let guard = HostGuard::take();
    let (code, text) = script(&["--exact", &(guard.original + 4).to_string()]);
    assert_eq!(code, 0, "{text}");
    let before = status().unwrap();
    let mut region = Region::allocate(2 * HUGE_PAGE_SIZE, FallbackPolicy::Require).unwrap();
    assert_eq!(region.backing(), Backing::HugePages2M);
    assert!(region.fallback_hint().is_none());
    assert_eq!(
        status().unwrap().free,
        before.free - 2,
        "the region did not take 2 hugepages"
    );
    // SAFETY: the slice covers the region, which lives until the end of this test.
    let bytes = unsafe { region.as_non_null_slice().as_mut() };
    bytes.iter_mut().step_by(4096).for_each(|b| *b = 7);
    assert!(bytes.iter().step_by(4096).all(|&b| b == 7));
    drop(region);
    assert_eq!(status().unwrap().free, before.free);

    // Ask for more than is free: Require fails with the fix, AllowNormalPages falls back.
    let free = status().unwrap().free;
    let len = (free + 1) * HUGE_PAGE_SIZE;
    let err = Region::allocate(len, FallbackPolicy::Require)
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("hugepages/setup.sh"), "{err}");
    let region = Region::allocate(len, FallbackPolicy::AllowNormalPages).unwrap();
    assert_eq!(region.backing(), Backing::NormalPages);
    assert!(region.fallback_hint().unwrap().contains("hugepages/setup.sh"));
}
