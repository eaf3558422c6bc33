//! `xgate doctor`: checks a host against a configuration before the gateway starts, each check
//! passing, warning or failing with the fix as a command.
//!
//! Split as the stack is: [`probe`] gathers what the host says (sysfs, procfs, `ethtool`, `ip`)
//! into [`HostFacts`], and [`judge`] turns facts and configuration into [`Finding`]s without any
//! I/O, so every verdict is tested on made-up hosts (`tests` below) and the probe on real ones
//! (the lab tests). A fact the probe could not read is `None` and its check says so (a warning):
//! the doctor never guesses.

use std::{fmt::Write as _, net::Ipv4Addr, path::Path, process::Command};

use serde::Serialize;

use crate::config::Config;

/// How a check came out; the worst one sets the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Pass => "pass",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub detail: String,
    /// The command (or setting) that fixes it.
    pub fix: Option<String>,
}

/// What the host says, as far as the checks need it.
#[derive(Clone, Debug, PartialEq)]
pub struct HostFacts {
    /// `uname -r`.
    pub kernel_release: Option<String>,
    /// `/sys/kernel/btf/vmlinux` exists.
    pub btf: bool,
    /// The effective capability set (`CapEff` of /proc/self/status).
    pub capabilities: Option<u64>,
    /// The interface exists in this network namespace.
    pub interface_found: bool,
    /// `ethtool -i`'s driver.
    pub driver: Option<String>,
    /// The driver's XDP features (netdev netlink, Linux 6.3+), or why they could not be read.
    pub xdp_features: Result<crate::sys::netdev::XdpFeatures, String>,
    pub rx_queues: usize,
    pub mtu: Option<u32>,
    /// `ethtool -k`: large-receive-offload and rx-vlan-offload on.
    pub lro: Option<bool>,
    pub rx_vlan_offload: Option<bool>,
    /// Free 2 MiB hugepages, on the whole host and per NUMA node (node, free).
    pub hugepages_free: Option<u64>,
    pub hugepages_free_by_node: Vec<(u32, u64)>,
    /// The NIC's NUMA node (`None`: no device or no NUMA).
    pub nic_node: Option<u32>,
    /// NUMA node of each CPU the lanes will run on (cpu, node).
    pub core_nodes: Vec<(usize, u32)>,
    /// The interrupts of the interface's queues (irq, CPUs it may run on); empty for a virtual
    /// interface.
    pub queue_irqs: Vec<(u32, Vec<usize>)>,
    /// IPv4 addresses the kernel holds in this network namespace (interface, address).
    pub kernel_addresses: Vec<(String, Ipv4Addr)>,
    /// The HTTPS certificates the configuration names, as found on disk.
    pub certificates: Vec<CertificateFact>,
    /// Now, in Unix seconds (certificate expiry is judged against it).
    pub now_unix: i64,
}

/// One configured certificate on disk.
#[derive(Clone, Debug, PartialEq)]
pub struct CertificateFact {
    pub cert: String,
    /// The leaf's `notAfter` (Unix seconds), or why it could not be read.
    pub not_after: Result<i64, String>,
    pub key: String,
    /// The key file's permission bits (`None`: it could not be looked at).
    pub key_mode: Option<u32>,
}

/// A certificate this close to its end is warned about.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// Bytes of a 2 MiB hugepage.
const HUGEPAGE: u64 = 2 << 20;
/// The oldest kernel the XDP program loads on (BPF atomics on 32-bit words: 5.12).
const OLDEST_KERNEL: (u32, u32) = (5, 12);
/// Capabilities the gateway uses: NET_ADMIN (12, attach XDP, AF_XDP), NET_RAW (13, AF_XDP
/// sockets), IPC_LOCK (14, the UMEM), and BPF (39) with PERFMON (38), or SYS_ADMIN (21) in
/// their place on older kernels.
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// How to give the gateway what it needs without root (the unit `deploy/xgate.service` does).
pub const CAPABILITIES_FIX: &str =
    "run as root, or with AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_BPF CAP_PERFMON (deploy/xgate.service)";

/// The capabilities the gateway needs that the effective set `caps` lacks, by name.
pub fn missing_capabilities(caps: u64) -> Vec<&'static str> {
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    let bpf = has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON));
    [
        (has(CAP_NET_ADMIN), "CAP_NET_ADMIN"),
        (has(CAP_NET_RAW), "CAP_NET_RAW"),
        (has(CAP_IPC_LOCK), "CAP_IPC_LOCK"),
        (bpf, "CAP_BPF+CAP_PERFMON (or CAP_SYS_ADMIN)"),
    ]
    .into_iter()
    .filter(|(held, _)| !held)
    .map(|(_, name)| name)
    .collect()
}

/// This process's effective capability set (`CapEff` of /proc/self/status).
pub fn effective_capabilities() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
}

fn finding(check: &'static str, level: Level, detail: String, fix: Option<String>) -> Finding {
    Finding {
        check,
        level,
        detail,
        fix,
    }
}

/// The lanes the configuration asks for on a host with `rx_queues` queues and `cores` usable
/// CPUs (as the runtime plans them): the lanes and the cores they are pinned to.
fn planned_lanes(config: &Config, rx_queues: usize, cores: &[usize]) -> (usize, Vec<usize>) {
    let gw = &config.gateway;
    let queues = rx_queues.saturating_sub(gw.queue as usize).max(1);
    let cores: Vec<usize> = gw.cores.clone().unwrap_or_else(|| cores.to_vec());
    let lanes = gw.lanes.unwrap_or_else(|| queues.min(cores.len().max(1)));
    (lanes, cores.into_iter().take(lanes).collect())
}

/// Judges `facts` for `config`, whose lanes would run on `cores` (the CPUs this process may use).
pub fn judge(config: &Config, facts: &HostFacts, cores: &[usize]) -> Vec<Finding> {
    let gw = &config.gateway;
    let iface = gw.interface.as_str();
    let mut out = Vec::new();

    out.push(match facts.kernel_release.as_deref().and_then(kernel_version) {
        Some(version) if version >= (6, 0) => finding("kernel", Level::Pass, format!("Linux {}.{}", version.0, version.1), None),
        Some(version) if version >= OLDEST_KERNEL => finding(
            "kernel",
            Level::Warn,
            format!("Linux {}.{}: works; 6.0 or later is what xgate is tested on", version.0, version.1),
            None,
        ),
        Some(version) => finding(
            "kernel",
            Level::Fail,
            format!(
                "Linux {}.{}: the XDP program needs {}.{} or later (BPF atomics, XDP sockets with need-wakeup)",
                version.0, version.1, OLDEST_KERNEL.0, OLDEST_KERNEL.1
            ),
            Some("upgrade the kernel".into()),
        ),
        None => finding("kernel", Level::Warn, "kernel release unreadable".into(), None),
    });
    out.push(if facts.btf {
        finding("btf", Level::Pass, "/sys/kernel/btf/vmlinux present".into(), None)
    } else {
        finding(
            "btf",
            Level::Warn,
            "no kernel BTF (/sys/kernel/btf/vmlinux): the program loads, tools that inspect it see less"
                .into(),
            Some("a kernel built with CONFIG_DEBUG_INFO_BTF=y".into()),
        )
    });
    out.push(match facts.capabilities {
        Some(caps) => {
            let missing = missing_capabilities(caps);
            if missing.is_empty() {
                finding(
                    "privileges",
                    Level::Pass,
                    "the capabilities XDP, AF_XDP and BPF need are held".into(),
                    None,
                )
            } else {
                finding(
                    "privileges",
                    Level::Fail,
                    format!("missing {}", missing.join(", ")),
                    Some(CAPABILITIES_FIX.into()),
                )
            }
        }
        None => finding(
            "privileges",
            Level::Warn,
            "capabilities unreadable (/proc/self/status)".into(),
            None,
        ),
    });

    out.push(tls_finding(facts));

    if !facts.interface_found {
        out.push(finding(
            "interface",
            Level::Fail,
            format!("no interface `{iface}` in this network namespace"),
            Some(format!("set gateway.interface, or run in the namespace that has `{iface}` (ip netns exec NS xgate ...)")),
        ));
        return out;
    }
    out.push(finding(
        "interface",
        Level::Pass,
        format!(
            "`{iface}`, driver {} ({} rx queues); XDP is attached natively where the driver allows it, else in generic mode (the ready event says which)",
            facts.driver.as_deref().unwrap_or("unknown"),
            facts.rx_queues
        ),
        None,
    ));

    out.push(xdp_finding(facts));

    let (lanes, lane_cores) = planned_lanes(config, facts.rx_queues, cores);
    let available = facts.rx_queues.saturating_sub(gw.queue as usize);
    // veth has rx and tx channels, no combined ones, and at most those it was created with.
    let channels = |count: usize| {
        if facts.driver.as_deref() == Some("veth") {
            format!("ethtool -L {iface} rx {count} tx {count} (veth: at most the numrxqueues it was created with)")
        } else {
            format!("ethtool -L {iface} combined {count}")
        }
    };
    out.push(if lanes > available {
        finding(
            "queues",
            Level::Fail,
            format!("{lanes} lanes need {lanes} rx queues of `{iface}` from queue {}, it has {available}", gw.queue),
            Some(channels(gw.queue as usize + lanes)),
        )
    } else if (gw.queue > 0 || lanes < facts.rx_queues) && !gw.allow_uncovered_queues {
        finding(
            "queues",
            Level::Fail,
            format!(
                "`{iface}` has {} rx queues, the lanes cover {}..{}: the gateway's frames on the others would be dropped",
                facts.rx_queues,
                gw.queue,
                gw.queue as usize + lanes - 1
            ),
            Some(format!("{} (or a lane per queue: gateway.lanes)", channels(lanes))),
        )
    } else {
        finding("queues", Level::Pass, format!("{lanes} lanes on {lanes} of {} rx queues", facts.rx_queues), None)
    });

    let largest = xgate_userstack::xsk::largest_mtu(config.umem.frame_size);
    out.push(match facts.mtu {
        Some(mtu) if mtu > largest => finding(
            "mtu",
            Level::Fail,
            format!(
                "MTU {mtu}, but a {}-byte UMEM frame holds at most {largest} bytes of IP packet",
                config.umem.frame_size
            ),
            Some(format!("ip link set {iface} mtu {largest}")),
        ),
        Some(mtu) => finding(
            "mtu",
            Level::Pass,
            format!("MTU {mtu} fits a {}-byte frame", config.umem.frame_size),
            None,
        ),
        None => finding("mtu", Level::Warn, "MTU unreadable".into(), None),
    });

    out.push(match (facts.lro, facts.rx_vlan_offload) {
        (Some(true), _) => finding(
            "offloads",
            Level::Fail,
            "large-receive-offload is on: XDP refuses to attach (it needs one frame per packet)".into(),
            Some(format!("ethtool -K {iface} lro off")),
        ),
        // The gateway takes untagged frames only, so a NIC that strips 802.1Q tags changes
        // nothing yet; the detail says so for the day the gateway sits on a VLAN.
        (Some(false), vlan) => finding(
            "offloads",
            Level::Pass,
            format!(
                "LRO off{}",
                if vlan == Some(true) {
                    "; rx-vlan-offload on (untagged traffic only: no matter)"
                } else {
                    ""
                }
            ),
            None,
        ),
        (None, _) => finding(
            "offloads",
            Level::Warn,
            "offloads unreadable (is ethtool installed?)".into(),
            Some("apt-get install ethtool".into()),
        ),
    });

    let need_bytes = lanes as u64 * u64::from(config.umem.frames) * u64::from(config.umem.frame_size);
    let need = need_bytes.div_ceil(HUGEPAGE);
    out.push(match facts.hugepages_free {
        Some(free) if free >= need => finding(
            "hugepages",
            Level::Pass,
            format!("{free} free 2 MiB hugepages, the UMEM needs {need} ({lanes} lanes)"),
            None,
        ),
        Some(free) => finding(
            "hugepages",
            if config.umem.allow_normal_pages {
                Level::Warn
            } else {
                Level::Fail
            },
            format!(
                "{free} free 2 MiB hugepages, the UMEM needs {need} ({lanes} lanes × {} frames × {} B){}",
                config.umem.frames,
                config.umem.frame_size,
                if config.umem.allow_normal_pages {
                    ": it falls back to normal pages (slower: more TLB misses)"
                } else {
                    ", and umem.allow_normal_pages is off: xgate will not start"
                }
            ),
            Some(format!("hugepages/setup.sh {}", need)),
        ),
        None => finding(
            "hugepages",
            Level::Warn,
            "hugepage counts unreadable".into(),
            None,
        ),
    });

    let lane_nodes: Vec<u32> = lane_cores
        .iter()
        .filter_map(|cpu| {
            facts
                .core_nodes
                .iter()
                .find(|(c, _)| c == cpu)
                .map(|(_, node)| *node)
        })
        .collect();
    out.push(match facts.nic_node {
        None => finding(
            "numa",
            Level::Pass,
            format!(
                "`{iface}` belongs to no NUMA node (a virtual interface or a one-node host); lanes on node(s) {:?}",
                dedup(&lane_nodes)
            ),
            None,
        ),
        Some(node) if lane_nodes.iter().all(|&n| n == node) => {
            let free = facts.hugepages_free_by_node.iter().find(|(n, _)| *n == node).map(|(_, f)| *f);
            match free {
                Some(free) if free < need => finding(
                    "numa",
                    Level::Warn,
                    format!("the NIC and the lanes are on node {node}, which has {free} free hugepages of the {need} needed"),
                    Some(format!("echo {need} > /sys/devices/system/node/node{node}/hugepages/hugepages-2048kB/nr_hugepages")),
                ),
                _ => finding("numa", Level::Pass, format!("the NIC and every lane's core on node {node}"), None),
            }
        }
        Some(node) => finding(
            "numa",
            Level::Warn,
            format!("the NIC is on node {node}, lanes run on node(s) {:?}: every frame crosses nodes", dedup(&lane_nodes)),
            Some(format!("gateway.cores = cores of node {node} (lscpu -e)")),
        ),
    });

    out.push(if facts.queue_irqs.is_empty() {
        finding(
            "irq affinity",
            Level::Pass,
            format!("`{iface}` has no queue interrupts (a virtual interface)"),
            None,
        )
    } else {
        let astray: Vec<String> = facts
            .queue_irqs
            .iter()
            .filter(|(_, cpus)| !cpus.iter().all(|cpu| lane_cores.contains(cpu)))
            .map(|(irq, cpus)| format!("irq {irq} on CPUs {cpus:?}"))
            .collect();
        if astray.is_empty() {
            finding(
                "irq affinity",
                Level::Pass,
                "every queue's interrupt runs on a lane's core".into(),
                None,
            )
        } else {
            finding(
                "irq affinity",
                Level::Warn,
                format!(
                    "interrupts off the lanes' cores {lane_cores:?}: {}",
                    astray.join(", ")
                ),
                Some(format!(
                    "scripts/nic-setup.sh {iface} --lanes {lanes} --cores {}",
                    join(&lane_cores)
                )),
            )
        }
    });

    let held: Vec<&(String, Ipv4Addr)> = facts
        .kernel_addresses
        .iter()
        .filter(|(_, address)| *address == gw.ipv4)
        .collect();
    out.push(match held.first() {
        Some((holder, address)) => finding(
            "address",
            Level::Fail,
            format!("the kernel holds the gateway's address {address} on `{holder}`: it would answer ARP and TCP for it beside xgate"),
            Some(format!("ip addr del {address}/{} dev {holder}", gw.prefix_len)),
        ),
        None => finding("address", Level::Pass, format!("the kernel does not hold {}", gw.ipv4), None),
    });
    out
}

fn dedup(nodes: &[u32]) -> Vec<u32> {
    let mut nodes = nodes.to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

fn join(values: &[usize]) -> String {
    values.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// `"6.18.44-fc"` → (6, 18).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The worst level among `findings` (pass for none).
pub fn worst(findings: &[Finding]) -> Level {
    findings.iter().map(|f| f.level).max().unwrap_or(Level::Pass)
}

/// The process exit code for `findings`: 0 all pass, 1 a warning, 2 a failure.
pub fn exit_code(findings: &[Finding]) -> i32 {
    match worst(findings) {
        Level::Pass => 0,
        Level::Warn => 1,
        Level::Fail => 2,
    }
}

/// One line per finding, the fix under it.
pub fn render_text(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let _ = writeln!(
            out,
            "{:<4}  {:<13} {}",
            f.level.name().to_uppercase(),
            f.check,
            f.detail
        );
        if let Some(fix) = &f.fix {
            let _ = writeln!(out, "      {:<13} fix: {fix}", "");
        }
    }
    let _ = writeln!(out, "doctor: {}", worst(findings).name());
    out
}

/// The CPUs this process may run on (its affinity mask): where the lanes go unless
/// `gateway.cores` says otherwise.
pub fn usable_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect()
}

/// The `tls` check: every configured certificate readable, not expired nor close to it, and its
/// key readable by its owner only. The worst certificate speaks for all.
fn tls_finding(facts: &HostFacts) -> Finding {
    if facts.certificates.is_empty() {
        return finding(
            "tls",
            Level::Pass,
            "no [[tls.certificate]]: HTTPS is off".into(),
            None,
        );
    }
    let mut worst: Option<Finding> = None;
    let mut soonest: Option<i64> = None;
    for fact in &facts.certificates {
        let found = match &fact.not_after {
            Err(why) => Some(finding(
                "tls",
                Level::Fail,
                format!("certificate {} unreadable: {why}", fact.cert),
                Some(format!(
                    "point tls.certificate's cert at a PEM certificate chain (leaf first): {}",
                    fact.cert
                )),
            )),
            Ok(not_after) => {
                let days = (not_after - facts.now_unix).div_euclid(86_400);
                soonest = Some(soonest.map_or(days, |s| s.min(days)));
                if *not_after <= facts.now_unix {
                    Some(finding(
                        "tls",
                        Level::Fail,
                        format!("certificate {} expired {} days ago", fact.cert, -days),
                        Some(format!(
                            "renew {} and reload: systemctl reload xgate (SIGHUP)",
                            fact.cert
                        )),
                    ))
                } else if days < EXPIRY_WARNING_DAYS {
                    Some(finding(
                        "tls",
                        Level::Warn,
                        format!("certificate {} expires in {days} days", fact.cert),
                        Some(format!(
                            "renew {} and reload: systemctl reload xgate (SIGHUP)",
                            fact.cert
                        )),
                    ))
                } else if fact.key_mode.is_some_and(|mode| mode & 0o077 != 0) {
                    Some(finding(
                        "tls",
                        Level::Warn,
                        format!(
                            "key {} is readable by others than its owner (mode {:o})",
                            fact.key,
                            fact.key_mode.unwrap_or(0) & 0o777
                        ),
                        Some(format!("chmod 600 {} (owned by the service user)", fact.key)),
                    ))
                } else {
                    None
                }
            }
        };
        if let Some(found) = found {
            if worst.as_ref().is_none_or(|w| found.level > w.level) {
                worst = Some(found);
            }
        }
    }
    worst.unwrap_or_else(|| {
        finding(
            "tls",
            Level::Pass,
            format!(
                "{} certificate(s), the first to expire in {} days",
                facts.certificates.len(),
                soonest.unwrap_or(0)
            ),
            None,
        )
    })
}

/// The `xdp` check: what the driver says it runs natively, and whether AF_XDP can be zero-copy.
fn xdp_finding(facts: &HostFacts) -> Finding {
    use crate::sys::netdev::XdpFeatures;
    let driver = facts.driver.as_deref().unwrap_or("unknown");
    let features = match &facts.xdp_features {
        Ok(features) => *features,
        Err(why) => {
            return finding(
                "xdp",
                Level::Warn,
                format!(
                    "the driver's XDP features are unreadable ({why}; the netdev netlink family needs Linux 6.3): \
                     native XDP is tried at start, generic mode is the fallback (the ready event says which)"
                ),
                None,
            )
        }
    };
    let listed = features.names().join(", ");
    if !features.has(XdpFeatures::BASIC) && driver == "veth" {
        // veth withdraws XDP while its peer could send on more queues than this end receives on.
        return finding(
            "xdp",
            Level::Warn,
            format!(
                "veth offers no native XDP now: its peer has more tx queues than its {} rx queues, so the program \
                 would run in generic mode",
                facts.rx_queues
            ),
            Some(format!(
                "ethtool -L PEER tx {} (PEER: the other end of the veth, in its namespace)",
                facts.rx_queues.max(1)
            )),
        );
    }
    if !features.has(XdpFeatures::BASIC) || !features.has(XdpFeatures::REDIRECT) {
        return finding(
            "xdp",
            Level::Warn,
            format!(
                "driver {driver} has no native XDP redirect (features: {}): the program runs in generic mode, \
                 on an skb per frame, several times slower",
                if listed.is_empty() { "none" } else { listed.as_str() }
            ),
            Some("a NIC whose driver runs XDP natively (ice, i40e, ixgbe, mlx5, bnxt, virtio_net, ...)".into()),
        );
    }
    if features.has(XdpFeatures::XSK_ZEROCOPY) {
        return finding(
            "xdp",
            Level::Pass,
            format!("driver {driver}: native XDP and AF_XDP zero-copy ({listed})"),
            None,
        );
    }
    // veth never offers zero-copy: copy mode is all a lab has, not a flaw of the host.
    let virtual_link = matches!(driver, "veth" | "virtio_net" | "tun" | "bond" | "netdevsim");
    finding(
        "xdp",
        if virtual_link { Level::Pass } else { Level::Warn },
        format!("driver {driver}: native XDP ({listed}); no AF_XDP zero-copy, so frames are copied into the UMEM (copy mode)"),
        (!virtual_link).then(|| "a NIC with AF_XDP zero-copy (ice, i40e, ixgbe, mlx5, ...), or accept copy mode".into()),
    )
}

/// What the disk says about one configured certificate.
fn certificate_fact(entry: &crate::config::CertificateConfig) -> CertificateFact {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    use std::os::unix::fs::MetadataExt;
    let not_after = CertificateDer::pem_file_iter(&entry.cert)
        .map_err(|e| e.to_string())
        .and_then(|mut certs| {
            certs
                .next()
                .ok_or_else(|| "no CERTIFICATE block".to_string())?
                .map_err(|e| e.to_string())
        })
        .and_then(|der| {
            crate::tls::expiry::not_after(&der).ok_or_else(|| "no notAfter in its leaf".to_string())
        });
    CertificateFact {
        cert: entry.cert.display().to_string(),
        not_after,
        key: entry.key.display().to_string(),
        key_mode: std::fs::metadata(&entry.key).ok().map(|meta| meta.mode()),
    }
}

/// Reads the facts of this host for `config`, in this process's network namespace.
pub fn probe(config: &Config) -> HostFacts {
    let iface = config.gateway.interface.as_str();
    let net = Path::new("/sys/class/net").join(iface);
    let read = |path: &Path| std::fs::read_to_string(path).ok().map(|s| s.trim().to_string());
    let ethtool = |flag: &str| {
        Command::new("ethtool")
            .args([flag, iface])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let feature = |text: &str, name: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(&format!("{name}: ")))
            .map(|value| value.starts_with("on"))
    };
    let features = ethtool("-k");
    let capabilities = effective_capabilities();
    let hugepages = |root: &Path| {
        read(&root.join("hugepages/hugepages-2048kB/free_hugepages")).and_then(|s| s.parse::<u64>().ok())
    };
    let nodes: Vec<u32> = std::fs::read_dir("/sys/devices/system/node")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("node")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let core_nodes = (0..std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(64))
        .filter_map(|cpu| Some((cpu, cpu_node(cpu)?)))
        .collect();
    HostFacts {
        kernel_release: read(Path::new("/proc/sys/kernel/osrelease")),
        btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
        capabilities,
        interface_found: net.exists(),
        xdp_features: std::fs::read_to_string(net.join("ifindex"))
            .map_err(|e| e.to_string())
            .and_then(|text| text.trim().parse::<u32>().map_err(|e| e.to_string()))
            .and_then(|ifindex| crate::sys::netdev::xdp_features(ifindex).map_err(|e| e.to_string())),
        driver: ethtool("-i").and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("driver: "))
                .map(str::to_string)
        }),
        rx_queues: std::fs::read_dir(net.join("queues"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                    .count()
            })
            .unwrap_or(0),
        mtu: read(&net.join("mtu")).and_then(|s| s.parse().ok()),
        lro: features
            .as_deref()
            .and_then(|text| feature(text, "large-receive-offload")),
        rx_vlan_offload: features
            .as_deref()
            .and_then(|text| feature(text, "rx-vlan-offload")),
        hugepages_free: hugepages(Path::new("/sys/kernel/mm")),
        hugepages_free_by_node: nodes
            .iter()
            .filter_map(|&node| {
                Some((
                    node,
                    hugepages(&Path::new("/sys/devices/system/node").join(format!("node{node}")))?,
                ))
            })
            .collect(),
        nic_node: read(&net.join("device/numa_node"))
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(|node| u32::try_from(node).ok()),
        core_nodes,
        queue_irqs: queue_irqs(iface),
        kernel_addresses: kernel_addresses(),
        certificates: config.tls.certificate.iter().map(certificate_fact).collect(),
        now_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    }
}

/// The NUMA node of CPU `cpu` (its `nodeN` entry in sysfs), if the host says.
pub fn cpu_node(cpu: usize) -> Option<u32> {
    std::fs::read_dir(format!("/sys/devices/system/cpu/cpu{cpu}"))
        .ok()?
        .filter_map(Result::ok)
        .find_map(|entry| entry.file_name().to_str()?.strip_prefix("node")?.parse().ok())
}

/// The interrupts named after `iface` in /proc/interrupts (a NIC's queue vectors, such as
/// `eth0-TxRx-3`), with the CPUs each may run on.
fn queue_irqs(iface: &str) -> Vec<(u32, Vec<usize>)> {
    let Ok(table) = std::fs::read_to_string("/proc/interrupts") else {
        return Vec::new();
    };
    table
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .last()
                .is_some_and(|name| name.starts_with(&format!("{iface}-")))
        })
        .filter_map(|line| {
            let irq: u32 = line.split(':').next()?.trim().parse().ok()?;
            let list = std::fs::read_to_string(format!("/proc/irq/{irq}/smp_affinity_list")).ok()?;
            Some((irq, cpu_list(list.trim())))
        })
        .collect()
}

/// `"0-2,5"` → [0, 1, 2, 5].
fn cpu_list(text: &str) -> Vec<usize> {
    text.split(',')
        .filter_map(|part| match part.split_once('-') {
            Some((from, to)) => Some((from.parse().ok()?..=to.parse().ok()?).collect::<Vec<usize>>()),
            None => Some(vec![part.parse().ok()?]),
        })
        .flatten()
        .collect()
}

/// The IPv4 addresses the kernel holds in this network namespace (`ip -o -4 addr show`).
fn kernel_addresses() -> Vec<(String, Ipv4Addr)> {
    let Ok(out) = Command::new("ip").args(["-o", "-4", "addr", "show"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let iface = words.nth(1)?.to_string();
            let address = words.skip_while(|w| *w != "inet").nth(1)?;
            Some((iface, address.split('/').next()?.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::GatewayConfig, sys::netdev::XdpFeatures};

    fn config() -> Config {
        let mut config = Config::new(GatewayConfig::new(
            "eth1",
            Ipv4Addr::new(10, 0, 0, 2),
            24,
            [2, 0, 0, 0, 0, 2],
        ));
        config.gateway.lanes = Some(2);
        config.gateway.cores = Some(vec![2, 3]);
        config
    }

    /// A host where everything is right for `config()`.
    fn good_host() -> HostFacts {
        HostFacts {
            kernel_release: Some("6.8.0-45-generic".into()),
            btf: true,
            capabilities: Some(u64::MAX >> 23),
            interface_found: true,
            driver: Some("ice".into()),
            xdp_features: Ok(XdpFeatures {
                bits: XdpFeatures::BASIC
                    | XdpFeatures::REDIRECT
                    | XdpFeatures::NDO_XMIT
                    | XdpFeatures::XSK_ZEROCOPY,
                zero_copy_max_segments: 1,
            }),
            rx_queues: 2,
            mtu: Some(1500),
            lro: Some(false),
            rx_vlan_offload: Some(false),
            hugepages_free: Some(64),
            hugepages_free_by_node: vec![(0, 64), (1, 0)],
            nic_node: Some(0),
            core_nodes: vec![(0, 0), (1, 0), (2, 0), (3, 0), (4, 1)],
            queue_irqs: vec![(120, vec![2]), (121, vec![3])],
            kernel_addresses: vec![("eth0".into(), Ipv4Addr::new(192, 168, 1, 5))],
            certificates: vec![CertificateFact {
                cert: "/etc/xgate/a.pem".into(),
                not_after: Ok(1_800_000_000 + 90 * 86_400),
                key: "/etc/xgate/a.key".into(),
                key_mode: Some(0o100600),
            }],
            now_unix: 1_800_000_000,
        }
    }

    fn level_of(findings: &[Finding], check: &str) -> (Level, Option<String>) {
        let f = findings
            .iter()
            .find(|f| f.check == check)
            .unwrap_or_else(|| panic!("no {check}: {findings:?}"));
        (f.level, f.fix.clone())
    }

    #[test]
    fn a_good_host_passes_every_check() {
        let findings = judge(&config(), &good_host(), &[0, 1, 2, 3]);
        assert_eq!(worst(&findings), Level::Pass, "{}", render_text(&findings));
        assert_eq!(exit_code(&findings), 0);
        assert_eq!(findings.len(), 13);
    }

    #[test]
    fn each_bad_host_fails_or_warns_with_its_fix() {
        /// A check, how the host is spoiled for it, the level expected, and a part of the fix.
        type Case = (&'static str, Box<dyn Fn(&mut HostFacts)>, Level, &'static str);
        let cases: Vec<Case> = vec![
            (
                "kernel",
                Box::new(|h| h.kernel_release = Some("5.4.0".into())),
                Level::Fail,
                "upgrade",
            ),
            (
                "privileges",
                Box::new(|h| h.capabilities = Some(1 << CAP_NET_ADMIN)),
                Level::Fail,
                "AmbientCapabilities",
            ),
            (
                "queues",
                Box::new(|h| h.rx_queues = 1),
                Level::Fail,
                "ethtool -L eth1 combined 2",
            ),
            (
                "queues",
                Box::new(|h| h.rx_queues = 4),
                Level::Fail,
                "ethtool -L eth1 combined 2",
            ),
            (
                "mtu",
                Box::new(|h| h.mtu = Some(9000)),
                Level::Fail,
                "ip link set eth1 mtu 1762",
            ),
            (
                "offloads",
                Box::new(|h| h.lro = Some(true)),
                Level::Fail,
                "ethtool -K eth1 lro off",
            ),
            ("offloads", Box::new(|h| h.lro = None), Level::Warn, "ethtool"),
            (
                "xdp",
                Box::new(|h| {
                    h.xdp_features = Ok(XdpFeatures {
                        bits: 0,
                        zero_copy_max_segments: 0,
                    })
                }),
                Level::Warn,
                "runs XDP natively",
            ),
            (
                "xdp",
                Box::new(|h| {
                    h.driver = Some("veth".into());
                    h.xdp_features = Ok(XdpFeatures {
                        bits: 0,
                        zero_copy_max_segments: 0,
                    });
                }),
                Level::Warn,
                "ethtool -L PEER tx 2",
            ),
            (
                "xdp",
                Box::new(|h| h.xdp_features = Err("Operation not supported".into())),
                Level::Warn,
                "",
            ),
            (
                "tls",
                Box::new(|h| h.certificates[0].not_after = Ok(h.now_unix - 86_400)),
                Level::Fail,
                "renew /etc/xgate/a.pem",
            ),
            (
                "tls",
                Box::new(|h| h.certificates[0].not_after = Ok(h.now_unix + 3 * 86_400)),
                Level::Warn,
                "renew /etc/xgate/a.pem",
            ),
            (
                "tls",
                Box::new(|h| h.certificates[0].not_after = Err("No such file or directory".into())),
                Level::Fail,
                "PEM certificate chain",
            ),
            (
                "tls",
                Box::new(|h| h.certificates[0].key_mode = Some(0o100644)),
                Level::Warn,
                "chmod 600 /etc/xgate/a.key",
            ),
            (
                "xdp",
                Box::new(|h| {
                    h.xdp_features = Ok(XdpFeatures {
                        bits: XdpFeatures::BASIC | XdpFeatures::REDIRECT,
                        zero_copy_max_segments: 0,
                    })
                }),
                Level::Warn,
                "zero-copy",
            ),
            (
                "hugepages",
                Box::new(|h| h.hugepages_free = Some(3)),
                Level::Warn,
                "hugepages/setup.sh 32",
            ),
            (
                "numa",
                Box::new(|h| h.nic_node = Some(1)),
                Level::Warn,
                "cores of node 1",
            ),
            (
                "numa",
                Box::new(|h| h.hugepages_free_by_node = vec![(0, 1)]),
                Level::Warn,
                "node0/hugepages",
            ),
            (
                "irq affinity",
                Box::new(|h| h.queue_irqs = vec![(120, vec![0])]),
                Level::Warn,
                "nic-setup.sh eth1 --lanes 2 --cores 2,3",
            ),
            (
                "address",
                Box::new(|h| {
                    h.kernel_addresses
                        .push(("eth1".into(), Ipv4Addr::new(10, 0, 0, 2)))
                }),
                Level::Fail,
                "ip addr del 10.0.0.2/24 dev eth1",
            ),
        ];
        for (check, spoil, level, fix) in cases {
            let mut host = good_host();
            spoil(&mut host);
            let findings = judge(&config(), &host, &[0, 1, 2, 3]);
            let (got, got_fix) = level_of(&findings, check);
            assert_eq!(got, level, "{check}: {}", render_text(&findings));
            assert!(
                got_fix.as_deref().unwrap_or("").contains(fix),
                "{check}: {got_fix:?}"
            );
            assert_eq!(exit_code(&findings), if level == Level::Fail { 2 } else { 1 });
        }
    }

    #[test]
    fn without_normal_pages_too_few_hugepages_fail() {
        let mut config = config();
        config.umem.allow_normal_pages = false;
        let mut host = good_host();
        host.hugepages_free = Some(3);
        assert_eq!(
            level_of(&judge(&config, &host, &[2, 3]), "hugepages").0,
            Level::Fail
        );
    }

    #[test]
    fn a_missing_interface_stops_the_checks_that_need_it() {
        let mut host = good_host();
        host.interface_found = false;
        let findings = judge(&config(), &host, &[2, 3]);
        assert_eq!(level_of(&findings, "interface").0, Level::Fail);
        assert!(findings.iter().all(|f| f.check != "mtu"));
    }

    #[test]
    fn parsers_read_what_the_kernel_writes() {
        assert_eq!(kernel_version("6.18.44-fc-v1300"), Some((6, 18)));
        assert_eq!(kernel_version("garbage"), None);
        assert_eq!(cpu_list("0-2,5"), vec![0, 1, 2, 5]);
        assert_eq!(cpu_list(""), Vec::<usize>::new());
    }
}
