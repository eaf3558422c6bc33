//! The machine the suite runs on: the tools it needs, what it records about the machine and the
//! revision, the lock that keeps one suite at a time, the scratch directory and the open-file
//! limit.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{bail, Context};

use crate::{
    process::require_root,
    results::{Machine, Plan},
    sys,
};

fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

pub(super) fn require_tools() -> anyhow::Result<()> {
    require_root(
        "the suite needs root (it builds network namespaces, attaches XDP and opens AF_XDP sockets)",
    )?;
    for (tool, package) in [
        ("ip", "iproute2"),
        ("taskset", "util-linux"),
        ("nginx", "nginx-light"),
        ("wrk", "wrk"),
        ("curl", "curl"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            bail!("`{tool}` is missing: install the Debian package {package} (scripts/bootstrap.sh does)");
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        bail!(
            "the suite pins servers to CPU 0 and clients to CPU 1: it needs 2 CPUs, this machine has {cpus}"
        );
    }
    Ok(())
}

pub(super) fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let nginx = Command::new("nginx")
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default();
    let wrk = Command::new("wrk")
        .arg("-v")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    Machine {
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: output_of("uname", &["-r"]).unwrap_or_default(),
        memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        nginx,
        wrk,
    }
}

/// `YYYY-MM-DD` (UTC) and the short git revision (`-dirty` when the tree has changes).
pub(super) fn date_and_revision() -> (String, String) {
    let date = output_of("date", &["-u", "+%Y-%m-%d"]).unwrap_or_else(|| "undated".into());
    let revision = match output_of("git", &["rev-parse", "--short", "HEAD"]) {
        Some(sha) => {
            let dirty = output_of("git", &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{sha}-dirty")
            } else {
                sha
            }
        }
        None => "nogit".into(),
    };
    (date, revision)
}

/// Where one suite run at a time holds a lock (the suite's lab names are fixed).
const SUITE_LOCK: &str = "/run/xgate-bench-suite.lock";

/// Takes the suite lock, or says who has it. The lock goes with the returned file.
pub(super) fn hold_suite_lock() -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(SUITE_LOCK)
        .with_context(|| format!("opening {SUITE_LOCK}"))?;
    if !sys::try_lock_exclusive(&file) {
        bail!("another benchmark suite is running (it holds {SUITE_LOCK}); wait for it to finish");
    }
    Ok(file)
}

/// Removes the suite's scratch directory when the suite ends.
pub(super) struct WorkDir(pub(super) PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The open-file limit must cover the largest connection count (nginx and wrk hold one file per
/// connection; this process's limit is what they inherit).
pub(super) fn check_file_limit(plan: &Plan) -> anyhow::Result<()> {
    let most = plan.connections.iter().copied().max().unwrap_or(0) as u64 + 256;
    let Some(limit) = sys::open_file_limit() else {
        return Ok(());
    };
    if limit.rlim_cur < most as libc::rlim_t {
        let raised = libc::rlimit {
            rlim_cur: (most as libc::rlim_t).min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        let _ = sys::set_open_file_limit(&raised);
        if raised.rlim_cur < most as libc::rlim_t {
            bail!(
                "open-file limit {} is below the {most} the largest connection count needs: raise it (ulimit -n) or pass smaller --connections",
                limit.rlim_max
            );
        }
    }
    Ok(())
}
