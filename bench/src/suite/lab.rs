//! The suite's lab: its name and namespaces, the addresses and CPUs servers and clients use in
//! it, bringing it up and removing it, and running commands inside its namespaces.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context};

/// The lab the suite builds (namespaces `xgbench-cli`, `-gw`, `-be`, `-sw`).
pub(super) const LAB: &str = "xgbench";
pub(super) const CLIENT_NS: &str = "xgbench-cli";
pub(super) const GATEWAY_NS: &str = "xgbench-gw";
pub(super) const BACKEND_NS: &str = "xgbench-be";
pub(super) const XGATE_TARGET: &str = "10.77.0.2:80";
pub(super) const NGINX_TARGET: &str = "10.77.0.3:80";
/// The proxy section's backend: nginx in the backend namespace.
pub(super) const BACKEND_TARGET: &str = "10.77.0.4:8080";
pub(super) const SERVER_CPU: &str = "0";
pub(super) const CLIENT_CPU: &str = "1";

/// Removes the lab when the suite ends.
pub(super) struct LabGuard {
    pub(super) xgate: PathBuf,
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = Command::new(&self.xgate)
            .args(["lab", "down", "--name", LAB])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Gives the gateway's link `queues` rx/tx queues (the lab creates it with two).
pub(super) fn set_gateway_queues(queues: usize) -> anyhow::Result<()> {
    let count = queues.to_string();
    let status = Command::new("ip")
        .args([
            "netns", "exec", GATEWAY_NS, "ethtool", "-L", "xg-gw", "rx", &count, "tx", &count,
        ])
        .status()
        .context("running ethtool")?;
    if !status.success() {
        bail!("ethtool -L xg-gw rx {queues} tx {queues} failed in {GATEWAY_NS}");
    }
    Ok(())
}

/// A command run inside a lab namespace, pinned to `cpu`.
pub(super) fn in_namespace(ns: &str, cpu: &str, program: &Path) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", ns, "taskset", "-c", cpu])
        .arg(program);
    command
}

pub(super) fn sysctl(ns: &str, settings: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-q", "-w"])
        .args(settings)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("sysctl {settings:?} in {ns} failed");
    }
    Ok(())
}
