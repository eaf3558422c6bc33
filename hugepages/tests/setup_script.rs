//! `hugepages/setup.sh`, run for real on this host.
//!
//! The hugepage pool is global, so the test holds an exclusive flock on
//! /run/xgate-hugepages-test.lock (the crate's unit tests and xgate's lab tests take the same one)
//! and writes the original `nr_hugepages` back when it ends, failures included.
//!
//! The flock and the root check are calls into the kernel, the only `unsafe` here.
#![allow(unsafe_code)]

use std::{os::fd::AsRawFd, process::Command};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/setup.sh");
const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// Holds the lock; on drop puts the original reservation back (through the script, and directly
/// should the script fail).
struct HostPool {
    _lock: std::fs::File,
    original: usize,
}

impl HostPool {
    fn take() -> HostPool {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/xgate-hugepages-test.lock")
            .unwrap();
        // SAFETY: flock on a descriptor `lock` owns and keeps open for the guard's lifetime;
        // LOCK_EX blocks until the lock is ours.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
        HostPool {
            _lock: lock,
            original: nr_hugepages(),
        }
    }
}

impl Drop for HostPool {
    fn drop(&mut self) {
        let (code, _) = script(&["--exact", &self.original.to_string()]);
        if code != 0 || nr_hugepages() != self.original {
            let _ = std::fs::write(NR_HUGEPAGES, self.original.to_string());
        }
    }
}

fn nr_hugepages() -> usize {
    std::fs::read_to_string(NR_HUGEPAGES)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Runs the script; its exit code and stdout+stderr.
fn script(args: &[&str]) -> (i32, String) {
    let out = Command::new("bash").arg(SCRIPT).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn help_describes_usage() {
    let (code, text) = script(&["--help"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("--exact N") && text.contains("setup.sh N"),
        "{text}"
    );
}

#[test]
fn nonsense_input_exits_2_with_a_message() {
    // These are refused before anything is read or written, so they need neither root nor the lock.
    for (args, says) in [
        (&[][..], "how many"),
        (&["abc"], "not a whole number"),
        (&["1.5"], "not a whole number"),
        (&["+5"], "not a whole number"),
        (&["-3"], "negative"),
        (&["0"], "--exact 0"),
        (&["99999999"], "90%"),
        (&["99999999999999999999999999"], "90%"),
        (&["--exact", "99999999"], "90%"),
        (&["1", "2"], "one count only"),
        (&["--frobnicate", "1"], "unknown option"),
    ] {
        let (code, text) = script(args);
        assert_eq!(code, 2, "{args:?} exited {code}: {text}");
        assert!(
            text.starts_with("setup.sh: ") && text.contains(says),
            "{args:?}: {text}"
        );
        assert_eq!(text.lines().count(), 1, "{args:?}: {text}");
    }
}

#[test]
fn without_root_it_exits_1_and_says_so() {
    if !is_root() {
        let (code, text) = script(&["2"]);
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("needs root"), "{text}");
        return;
    }
    // As root: drop to nobody for the run, if util-linux's setpriv is there. The checkout may
    // sit where nobody cannot read (under /root), so nobody runs a world-readable copy.
    let copy = std::env::temp_dir().join(format!("xgate-setup-{}.sh", std::process::id()));
    std::fs::copy(SCRIPT, &copy).unwrap();
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let result = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash"])
        .arg(&copy)
        .arg("2")
        .output();
    let _ = std::fs::remove_file(&copy);
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipping the non-root case: cannot run setpriv ({e})");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("needs root"), "{text}");
}

#[test]
fn reserves_idempotently_and_restores_exactly() {
    if !is_root() {
        eprintln!("skipping reserves_idempotently_and_restores_exactly: writing {NR_HUGEPAGES} needs root");
        return;
    }
    let pool = HostPool::take();
    let want = pool.original + 2;

    let (code, text) = script(&[&want.to_string()]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("before: HugePages_Total=") && text.contains("after: HugePages_Total="),
        "{text}"
    );
    assert_eq!(nr_hugepages(), want);

    // Second run: nothing to do, nothing written.
    let (code, text) = script(&[&want.to_string()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("nothing to do"), "{text}");
    assert!(!text.contains("after:"), "{text}");
    assert_eq!(nr_hugepages(), want);

    // Asking for fewer never shrinks.
    let (code, text) = script(&["1"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("nothing to do"), "{text}");
    assert_eq!(nr_hugepages(), want);

    // --exact shrinks back.
    let (code, text) = script(&["--exact", &pool.original.to_string()]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(nr_hugepages(), pool.original);
    let (code, text) = script(&["--exact", &pool.original.to_string()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("nothing to do"), "{text}");
}
