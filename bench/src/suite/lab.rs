//! The suite's lab: its name and namespaces, the addresses and CPUs servers and clients use in
//! it, bringing it up and removing it, and running commands inside its namespaces.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{anyhow, bail, Context};
use xgate_lab::Lab;

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

/// Rx/tx queues of the gateway's link as the lab creates it: enough for xgate with two lanes.
const LAB_QUEUES: u32 = 2;

/// The lab, up; removed when the suite ends (dropped), also on error.
pub(super) struct LabGuard(Lab);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = self.0.down();
    }
}

/// Builds the suite's lab (removing a stale one of the same name first) with the gateway's link
/// at [`LAB_QUEUES`] queues.
pub(super) fn lab_up() -> anyhow::Result<LabGuard> {
    let mut lab = Lab::new(LAB).map_err(|e| anyhow!(e))?;
    lab.queues = LAB_QUEUES;
    lab.up().map_err(|e| anyhow!("building the lab {LAB}: {e}"))?;
    Ok(LabGuard(lab))
}

/// The lab's gateway config, which every xgate run of the suite starts from.
pub(super) fn lab_gateway_config() -> String {
    xgate_lab::gateway_config().to_toml()
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

#[cfg(test)]
mod tests {
    use xgate_lab::{netns, Host};

    use super::*;

    #[test]
    fn namespaces_and_addresses_are_the_labs() {
        let lab = Lab::new(LAB).unwrap();
        assert_eq!(lab.netns(Host::Client), CLIENT_NS);
        assert_eq!(lab.netns(Host::Gateway), GATEWAY_NS);
        assert_eq!(lab.netns(Host::Backend), BACKEND_NS);
        assert_eq!(XGATE_TARGET, format!("{}:80", netns::GATEWAY_IP));
        assert_eq!(NGINX_TARGET, format!("{}:80", netns::GATEWAY_HOST_IP));
        assert_eq!(BACKEND_TARGET, format!("{}:8080", netns::BACKEND_IP));
        assert!(lab_gateway_config().contains(&format!("interface = \"{}\"", netns::GATEWAY_IFACE)));
    }
}
