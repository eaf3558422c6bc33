//! The lab: network namespaces joined by veth through a bridge, standing in for a dedicated NIC
//! and the hosts around it.
//!
//! ```text
//!  <lab>-cli  xg-cli 10.77.0.1 ──┐
//!  <lab>-gw   xg-gw  (xgate: 10.77.0.2, MAC 02:77:00:00:00:02; kernel keeps 10.77.0.3) ──┤ br0 in <lab>-sw
//!  <lab>-be   xg-be  10.77.0.4 ──┘
//! ```
//!
//! Invariants:
//! - Every name the lab creates derives from the lab name, so `down` finds all of it again, also
//!   after a crash, and labs with different names never touch each other.
//! - The gateway namespace's kernel never holds the gateway address 10.77.0.2: xgate's userspace
//!   stack owns it (ARP, ICMP, TCP). The kernel holds 10.77.0.3 on the same interface, which is how
//!   tests show that other traffic still reaches it (XDP_PASS).
//! - The kernel-stack hosts (client, backend) send with checksum offload off, so every frame on
//!   the wire carries complete checksums (veth would otherwise pass partial ones), and MTU 1500,
//!   which fits a 2048- or 4096-byte UMEM frame.

use std::{net::Ipv4Addr, process::Command};

use crate::LabError;

pub const CLIENT_IFACE: &str = "xg-cli";
pub const GATEWAY_IFACE: &str = "xg-gw";
pub const BACKEND_IFACE: &str = "xg-be";
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const GATEWAY_HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
pub const BACKEND_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 4);
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x02];
pub const PREFIX_LEN: u8 = 24;
pub const MTU: u32 = 1500;
/// Lab name used when none is given.
pub const DEFAULT_NAME: &str = "xgate";

/// The namespaces of one lab.
#[derive(Clone, Debug)]
pub struct Lab {
    pub name: String,
    /// Rx/tx queues of every veth of the lab (2 or more lets xgate run that many lanes).
    pub queues: u32,
}

/// The roles of the lab's namespaces.
#[derive(Clone, Copy, Debug)]
pub enum Host {
    Client,
    Gateway,
    Backend,
    Switch,
}

impl Host {
    const ALL: [Host; 4] = [Host::Client, Host::Gateway, Host::Backend, Host::Switch];
    fn suffix(self) -> &'static str {
        match self {
            Host::Client => "cli",
            Host::Gateway => "gw",
            Host::Backend => "be",
            Host::Switch => "sw",
        }
    }
}

fn run(args: &[&str]) -> Result<(), LabError> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|cause| LabError::CannotRun {
            program: args[0].to_string(),
            cause,
            hint: " (install iproute2 and ethtool: scripts/bootstrap.sh)",
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(LabError::Failed {
            command: args.join(" "),
            output: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

impl Lab {
    /// A lab named `name`: 1-40 characters of `[A-Za-z0-9_-]`.
    pub fn new(name: &str) -> Result<Lab, LabError> {
        if name.is_empty()
            || name.len() > 40
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(LabError::BadName(name.to_string()));
        }
        Ok(Lab {
            name: name.to_string(),
            queues: 1,
        })
    }

    /// The network namespace of `host`.
    pub fn netns(&self, host: Host) -> String {
        format!("{}-{}", self.name, host.suffix())
    }

    /// Creates the lab. If part of it already exists (say, after a crash), it is removed first.
    pub fn up(&self) -> Result<(), LabError> {
        self.down()?;
        let result = self.build();
        if result.is_err() {
            let _ = self.down();
        }
        result
    }

    fn build(&self) -> Result<(), LabError> {
        for host in Host::ALL {
            run(&["ip", "netns", "add", &self.netns(host)])?;
            run(&["ip", "-n", &self.netns(host), "link", "set", "lo", "up"])?;
        }
        let sw = self.netns(Host::Switch);
        run(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        // No STP delay: ports forward as soon as they are up.
        run(&[
            "ip",
            "-n",
            &sw,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
            "stp_state",
            "0",
        ])?;
        run(&["ip", "-n", &sw, "link", "set", "br0", "up"])?;
        let mtu = MTU.to_string();
        let queues = self.queues.to_string();
        for (host, iface, port) in [
            (Host::Client, CLIENT_IFACE, "p-cli"),
            (Host::Gateway, GATEWAY_IFACE, "p-gw"),
            (Host::Backend, BACKEND_IFACE, "p-be"),
        ] {
            let ns = self.netns(host);
            // Only the gateway's link has several queues: the switch spreads flows over them by
            // their hash (as a NIC's RSS would), and the client keeps one rx queue so that a
            // load generator on one AF_XDP socket sees every reply.
            let queues = if matches!(host, Host::Gateway) {
                queues.as_str()
            } else {
                "1"
            };
            #[rustfmt::skip]
            run(&[
                "ip", "link", "add", iface, "netns", &ns, "mtu", &mtu,
                "numrxqueues", queues, "numtxqueues", queues,
                "type", "veth", "peer", "name", port, "netns", &sw, "mtu", &mtu,
                "numrxqueues", queues, "numtxqueues", queues,
            ])?;
            run(&["ip", "-n", &sw, "link", "set", port, "master", "br0"])?;
            run(&["ip", "-n", &sw, "link", "set", port, "up"])?;
        }
        self.take_xdp_tx(&sw, "p-gw")?;
        let gw = self.netns(Host::Gateway);
        // The gateway interface carries the gateway MAC, as a dedicated NIC would: frames for
        // xgate and for the host kernel arrive addressed to it, and XDP tells them apart by IP.
        let mac = GATEWAY_MAC.map(|o| format!("{o:02x}")).join(":");
        run(&["ip", "-n", &gw, "link", "set", GATEWAY_IFACE, "address", &mac])?;
        for (host, iface, ip) in [
            (Host::Client, CLIENT_IFACE, CLIENT_IP),
            (Host::Gateway, GATEWAY_IFACE, GATEWAY_HOST_IP),
            (Host::Backend, BACKEND_IFACE, BACKEND_IP),
        ] {
            let ns = self.netns(host);
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/{PREFIX_LEN}"),
                "dev",
                iface,
            ])?;
            run(&["ip", "-n", &ns, "link", "set", iface, "up"])?;
            if !matches!(host, Host::Gateway) {
                // Complete checksums on the wire (see the module invariants).
                run(&["ip", "netns", "exec", &ns, "ethtool", "-K", iface, "tx", "off"])?;
            }
        }
        Ok(())
    }

    /// The gateway answers SYNs with cookie SYN-ACKs sent back with XDP_TX. veth delivers such
    /// frames to its peer's XDP queue and wakes that queue only when the peer has an XDP program
    /// of its own, so the switch's end of the gateway's link (`port` in namespace `sw`) gets
    /// `xgate-pass`, which passes every frame on. A real NIC needs nothing like it.
    fn take_xdp_tx(&self, sw: &str, port: &str) -> Result<(), LabError> {
        let object = std::env::temp_dir().join(format!("xgate-pass-{}-{}.o", self.name, std::process::id()));
        std::fs::write(&object, xgate_xdp::PASS_PROGRAM).map_err(|cause| LabError::CannotRun {
            program: format!("write {}", object.display()),
            cause,
            hint: "",
        })?;
        let path = object.to_string_lossy().to_string();
        let attached = run(&[
            "ip", "-n", sw, "link", "set", "dev", port, "xdpdrv", "obj", &path, "sec", "xdp",
        ]);
        let _ = std::fs::remove_file(&object);
        attached
    }

    /// Removes every namespace of the lab (and with them their links), ending any process still
    /// running inside. Succeeds when nothing is left, also if nothing was there.
    pub fn down(&self) -> Result<(), LabError> {
        for host in Host::ALL {
            let ns = self.netns(host);
            if !std::path::Path::new("/run/netns").join(&ns).exists() {
                continue;
            }
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let _ = xgate_gateway::sys::send_signal(pid, libc::SIGKILL);
                    }
                }
            }
            run(&["ip", "netns", "del", &ns])?;
        }
        Ok(())
    }

    /// A command that runs `program` inside `host`'s namespace.
    pub fn command(&self, host: Host, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns(host), program]);
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names_are_checked() {
        assert!(Lab::new("xgate").is_ok());
        assert!(Lab::new("t-1_a").is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(41), "../etc"] {
            assert!(Lab::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn namespaces_derive_from_the_name() {
        let lab = Lab::new("t7").unwrap();
        assert_eq!(lab.netns(Host::Client), "t7-cli");
        assert_eq!(lab.netns(Host::Gateway), "t7-gw");
        assert_eq!(lab.netns(Host::Backend), "t7-be");
        assert_eq!(lab.netns(Host::Switch), "t7-sw");
    }
}
