//! The benchmark's own topology: the `xgpkt-` namespaces and the veth between them, the lock that
//! keeps one `packets` run at a time, and putting a thread into a namespace or on a CPU.

use std::{
    fs::File,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use crate::{process::check_interrupted, sys};

use super::{
    LOCK_PATH, LOCK_TIMEOUT, MTU, RX_INTERFACE, RX_MAC, RX_NAMESPACE, TX_INTERFACE, TX_IP, TX_MAC,
    TX_NAMESPACE,
};

/// Pins the calling thread to `cpu`.
pub(super) fn pin_current_thread(cpu: usize) -> anyhow::Result<()> {
    sys::pin_current_thread(cpu).with_context(|| format!("pinning a thread to CPU {cpu}"))
}

/// Moves the calling thread (only) into the named network namespace.
pub(super) fn enter_namespace(name: &str) -> anyhow::Result<()> {
    let path = Path::new("/run/netns").join(name);
    let file = File::open(&path).with_context(|| format!("opening network namespace {}", path.display()))?;
    xgate_lab::sys::enter_network_namespace(&file)
        .with_context(|| format!("entering network namespace {name}"))
}

pub(super) fn interface_index(name: &str) -> anyhow::Result<u32> {
    match xgate_lab::sys::interface_index(name) {
        Some(index) => Ok(index),
        None => bail!("no interface {name} in this namespace"),
    }
}

/// Serialises `packets` runs: two would fight over the same namespaces.
pub(super) struct RunLock {
    _file: File,
}

impl RunLock {
    pub(super) fn acquire() -> anyhow::Result<RunLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_PATH)
            .with_context(|| format!("opening {LOCK_PATH}"))?;
        let deadline = Instant::now() + LOCK_TIMEOUT;
        loop {
            if sys::try_lock_exclusive(&file) {
                return Ok(RunLock { _file: file });
            }
            check_interrupted()?;
            if Instant::now() >= deadline {
                bail!(
                    "another `xgate-bench packets` has held {LOCK_PATH} for {} s; let it finish",
                    LOCK_TIMEOUT.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs `ip` with `args` (split at spaces; no argument here contains one) to completion; a
/// failure becomes one line with the command and its stderr.
fn ip(args: &str) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .context("running `ip` (is iproute2 installed?)")?;
    if !output.status.success() {
        bail!(
            "`ip {args}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn namespace_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// The two namespaces and the veth between them. Dropping it deletes both namespaces (and with
/// them the veth pair).
pub(super) struct Topology {
    _private: (),
}

impl Topology {
    pub(super) fn create() -> anyhow::Result<Topology> {
        // From here on, Drop cleans up whatever part was made.
        let topology = Topology { _private: () };
        topology.remove();
        for namespace in [TX_NAMESPACE, RX_NAMESPACE] {
            ip(&format!("netns add {namespace}")).context(
                "creating the benchmark's network namespaces (needs root and a kernel with network \
                 namespaces)",
            )?;
            ip(&format!("-n {namespace} link set lo up"))?;
            disable_ipv6(namespace)?;
        }
        let (tx_mac, rx_mac) = (format_mac(TX_MAC), format_mac(RX_MAC));
        ip(&format!(
            "link add {TX_INTERFACE} netns {TX_NAMESPACE} mtu {MTU} address {tx_mac} type veth \
             peer name {RX_INTERFACE} netns {RX_NAMESPACE} mtu {MTU} address {rx_mac}"
        ))
        .context("creating the veth pair")?;
        ip(&format!(
            "-n {TX_NAMESPACE} addr add {TX_IP}/24 dev {TX_INTERFACE}"
        ))?;
        ip(&format!("-n {TX_NAMESPACE} link set {TX_INTERFACE} up"))?;
        ip(&format!("-n {RX_NAMESPACE} link set {RX_INTERFACE} up"))?;
        Ok(topology)
    }

    /// Deletes both namespaces if they exist (stale ones from a killed run included).
    fn remove(&self) {
        for namespace in [TX_NAMESPACE, RX_NAMESPACE] {
            if namespace_exists(namespace) {
                if let Err(err) = ip(&format!("netns del {namespace}")) {
                    eprintln!("xgate-bench packets: cleanup: {err:#}");
                }
            }
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Turns IPv6 off in `namespace`, from a short-lived thread inside it (`/proc/sys/net` follows the
/// writing thread's namespace).
fn disable_ipv6(namespace: &'static str) -> anyhow::Result<()> {
    thread::spawn(move || -> anyhow::Result<()> {
        enter_namespace(namespace)?;
        for knob in ["all", "default"] {
            let path = format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6");
            if Path::new(&path).exists() {
                std::fs::write(&path, "1").with_context(|| format!("writing {path} in {namespace}"))?;
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread disabling IPv6 in {namespace} panicked"))?
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
