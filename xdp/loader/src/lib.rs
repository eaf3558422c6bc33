//! Userspace side of xgate's XDP layer: loads the steering program, attaches it to the gateway's
//! interface, registers AF_XDP sockets in its XSKMAP and reads its counters.
//!
//! Invariants:
//! - The program is attached through a BPF link owned by this process, so it is detached when the
//!   [`Steering`] value is dropped *and* when the process dies for any reason (the kernel closes
//!   the link's file descriptor): a crashed gateway never leaves its program attached.
//! - The gateway address is written into the program before it is loaded; it cannot change while
//!   attached.
//!
//! `unsafe` (denied by the workspace) is allowed only in `flows` (the `bpf(2)` map commands),
//! `bench` (the packet socket) and `sys` (if_nametoindex).

#[cfg(feature = "bench")]
pub mod bench;
pub mod flows;
mod sys;

use std::{net::Ipv4Addr, os::fd::AsRawFd};

use aya::{
    maps::{PerCpuArray, XskMap},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode},
    Ebpf, EbpfError, EbpfLoader,
};
pub use flows::{Flow, FlowMaps};
use xgate_xdp_common::syncookie::SYN_COOKIES_GLOBAL;
pub use xgate_xdp_common::syncookie::{SynCookieConfig, SynCookieMode};
pub use xgate_xdp_common::{
    ActionStats, FlowDrop, FlowKey, FlowStats, RateLimit, ReapReason, ShieldLimits, XdpVerdict,
    FLOW_ESTABLISHED, FLOW_FIN, FLOW_RST, FLOW_SYN, LATENCY_BUCKETS,
};
use xgate_xdp_common::{
    DEFAULT_FLOWS, DEFAULT_FLOW_DROPS, DEFAULT_SYN_SOURCES, EXTRA_LISTEN_PORT_GLOBAL, FLOWS_MAP,
    FLOW_DROPS_MAP, GATEWAY_IPV4_GLOBAL, LISTEN_PORT_GLOBAL, MAX_QUEUES, SHIELD_GLOBAL, SYN_SOURCES_MAP,
    VERDICT_STATS_MAP, XSK_MAP,
};

/// What the program is loaded with: the gateway's address and port, the flow layer's map sizes
/// the SYN shield's limits and its SYN cookies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpOptions {
    pub gateway: Ipv4Addr,
    /// The listening TCP port: flows to it are watched.
    pub listen_port: u16,
    /// A second listening port (HTTPS), watched as the first; 0: none.
    pub extra_listen_port: u16,
    /// Entries of the flow table (LRU: the least recently used flow makes room).
    pub flows: u32,
    /// Entries of the drop map.
    pub drops: u32,
    /// Sources the SYN shield tracks (LRU).
    pub sources: u32,
    pub shield: ShieldLimits,
    /// When and how the program answers SYNs with cookies (see `xgate_xdp_common::syncookie`).
    pub syn_cookies: SynCookieConfig,
}

impl XdpOptions {
    /// Defaults for `gateway`: port 80, default map sizes, no SYN limits.
    pub fn new(gateway: Ipv4Addr) -> XdpOptions {
        XdpOptions {
            gateway,
            listen_port: 80,
            extra_listen_port: 0,
            flows: DEFAULT_FLOWS,
            drops: DEFAULT_FLOW_DROPS,
            sources: DEFAULT_SYN_SOURCES,
            shield: ShieldLimits::default(),
            syn_cookies: SynCookieConfig {
                key: [0; 2],
                mode: SynCookieMode::Never as u32,
                mss: 1460,
                window: u16::MAX,
                mac: [0; 6],
                pad: [0; 2],
            },
        }
    }
}

/// The compiled XDP program (built by `build.rs` from `xdp/ebpf`).
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xgate-steer"));
/// `xgate-pass` (built with the XDP program): passes every frame to the kernel. The lab attaches
/// it to the far end of the gateway's veth, which takes the XDP program's XDP_TX frames only with
/// an XDP program of its own.
pub static PASS_PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xgate-pass"));
const PROGRAM_NAME: &str = "xgate_steer";

/// Why the XDP layer could not be set up. Each message is one line saying what is wrong and how
/// to fix it.
#[derive(Debug, thiserror::Error)]
pub enum SteeringError {
    #[error("loading the XDP program was refused ({0}): xgate needs CAP_BPF and CAP_NET_ADMIN (run it as root with those capabilities)")]
    Permission(String),
    #[error("no network interface named `{0}` in this network namespace: check `interface` in the config (see `ip link`)")]
    NoSuchInterface(String),
    #[error("attaching XDP to `{interface}` was refused: {reason}; check that no other XDP program is attached (`ip link show {interface}`) and that the driver supports native XDP")]
    AttachRefused { interface: String, reason: String },
    #[error("rx queue {queue} is out of range: the XSKMAP holds queues 0..{max}")]
    QueueOutOfRange { queue: u32, max: u32 },
    #[error("XDP program error: {0}")]
    Other(String),
}

fn is_permission(text: &str) -> bool {
    text.contains("Operation not permitted") || text.contains("EPERM") || text.contains("Permission denied")
}

fn load_error(err: EbpfError) -> SteeringError {
    let text = format!("{err}: {:?}", err);
    if is_permission(&text) {
        SteeringError::Permission(err.to_string())
    } else {
        SteeringError::Other(text)
    }
}

fn program_error(err: ProgramError, interface: &str) -> SteeringError {
    match err {
        ProgramError::UnknownInterface { name } => SteeringError::NoSuchInterface(name),
        other => {
            let text = format!("{other}: {other:?}");
            if is_permission(&text) {
                SteeringError::Permission(other.to_string())
            } else {
                SteeringError::AttachRefused {
                    interface: interface.to_string(),
                    reason: text,
                }
            }
        }
    }
}

/// The attached steering program. Dropping it detaches the program.
pub struct Steering {
    ebpf: Ebpf,
    interface: String,
    /// `None` while loaded but not attached.
    mode: Option<XdpMode>,
}

impl Steering {
    /// Loads the program for `gateway` and attaches it to `interface`, natively if the driver
    /// allows (veth does), else in generic (skb) mode.
    pub fn attach(interface: &str, gateway: Ipv4Addr) -> Result<Steering, SteeringError> {
        Steering::attach_with(interface, &XdpOptions::new(gateway))
    }

    /// As [`Steering::attach`], with the flow layer's options.
    pub fn attach_with(interface: &str, options: &XdpOptions) -> Result<Steering, SteeringError> {
        // Check the interface first so the error names it, not a later attach failure.
        let c_name = std::ffi::CString::new(interface)
            .map_err(|_| SteeringError::NoSuchInterface(interface.to_string()))?;
        if sys::interface_index(&c_name) == 0 {
            return Err(SteeringError::NoSuchInterface(interface.to_string()));
        }
        let mut steering = Steering::load_with(options)?;
        let program = steering.program_mut()?;
        let mode = match program.attach(interface, XdpMode::Driver) {
            Ok(_) => XdpMode::Driver,
            Err(ProgramError::UnknownInterface { name }) => return Err(SteeringError::NoSuchInterface(name)),
            Err(native_err) => match program.attach(interface, XdpMode::Skb) {
                Ok(_) => XdpMode::Skb,
                Err(_) => return Err(program_error(native_err, interface)),
            },
        };
        steering.interface = interface.to_string();
        steering.mode = Some(mode);
        Ok(steering)
    }

    /// Loads and verifies the program for `gateway` without attaching it anywhere.
    pub fn load(gateway: Ipv4Addr) -> Result<Steering, SteeringError> {
        Steering::load_with(&XdpOptions::new(gateway))
    }

    /// As [`Steering::load`], with the flow layer's options.
    pub fn load_with(options: &XdpOptions) -> Result<Steering, SteeringError> {
        let gateway_raw = u32::from_ne_bytes(options.gateway.octets());
        let port_raw = u32::from(u16::from_ne_bytes(options.listen_port.to_be_bytes()));
        let extra_port_raw = u32::from(u16::from_ne_bytes(options.extra_listen_port.to_be_bytes()));
        for (what, size) in [
            ("flows", options.flows),
            ("drops", options.drops),
            ("sources", options.sources),
        ] {
            if size == 0 {
                return Err(SteeringError::Other(format!(
                    "the {what} map needs at least one entry"
                )));
            }
        }
        let ebpf = EbpfLoader::new()
            .override_global(GATEWAY_IPV4_GLOBAL, &gateway_raw, true)
            .override_global(LISTEN_PORT_GLOBAL, &port_raw, true)
            .override_global(EXTRA_LISTEN_PORT_GLOBAL, &extra_port_raw, true)
            .override_global(SHIELD_GLOBAL, &options.shield, true)
            .override_global(SYN_COOKIES_GLOBAL, &options.syn_cookies, true)
            .map_max_entries(FLOWS_MAP, options.flows)
            .map_max_entries(FLOW_DROPS_MAP, options.drops)
            .map_max_entries(SYN_SOURCES_MAP, options.sources)
            .load(PROGRAM)
            .map_err(load_error)?;
        let mut steering = Steering {
            ebpf,
            interface: String::new(),
            mode: None,
        };
        steering
            .program_mut()?
            .load()
            .map_err(|e| program_error(e, "(not attached)"))?;
        Ok(steering)
    }

    fn program_mut(&mut self) -> Result<&mut Xdp, SteeringError> {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| SteeringError::Other(format!("program {PROGRAM_NAME} missing from object")))?
            .try_into()
            .map_err(|e: ProgramError| SteeringError::Other(e.to_string()))
    }

    /// Runs the loaded program once on `frame` in the kernel (BPF_PROG_TEST_RUN) and returns its
    /// XDP action. Counters move as for a real frame; nothing is sent anywhere.
    pub fn run_on_frame(&mut self, frame: &[u8]) -> Result<u32, SteeringError> {
        let program = self.program_mut()?;
        let options = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::new()
        };
        program
            .test_run(options)
            .map(|result| result.return_value)
            .map_err(|e| SteeringError::Other(format!("test run: {e}")))
    }

    /// As [`Steering::run_on_frame`], and the frame as the program left it (what XDP_TX would
    /// send) in `out`: the action and the frame's length.
    pub fn run_on_frame_out(&mut self, frame: &[u8], out: &mut [u8]) -> Result<(u32, usize), SteeringError> {
        let program = self.program_mut()?;
        let options = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(out),
            ..TestRunOptions::new()
        };
        program
            .test_run(options)
            .map(|result| (result.return_value, result.data_size_out as usize))
            .map_err(|e| SteeringError::Other(format!("test run: {e}")))
    }

    /// The flow layer's maps, on descriptors of their own (shareable between threads).
    pub fn flow_maps(&self) -> Result<FlowMaps, SteeringError> {
        FlowMaps::open(&self.ebpf)
    }

    /// The interface the program is attached to.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// `"native"` when the driver runs the program, `"generic"` when the kernel's skb path does.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Some(XdpMode::Driver) => "native",
            Some(XdpMode::Skb) => "generic",
            Some(_) => "other",
            None => "detached",
        }
    }

    /// Points rx queue `queue` at the AF_XDP socket `socket`.
    pub fn register_socket(&mut self, queue: u32, socket: impl AsRawFd) -> Result<(), SteeringError> {
        if queue >= MAX_QUEUES {
            return Err(SteeringError::QueueOutOfRange {
                queue,
                max: MAX_QUEUES,
            });
        }
        let map = self
            .ebpf
            .map_mut(XSK_MAP)
            .ok_or_else(|| SteeringError::Other(format!("map {XSK_MAP} missing")))?;
        let mut xsks = XskMap::try_from(map).map_err(|e| SteeringError::Other(e.to_string()))?;
        xsks.set(queue, socket, 0)
            .map_err(|e| SteeringError::Other(e.to_string()))
    }

    /// Packets and bytes per verdict, summed over all CPUs, in [`XdpVerdict::ALL`] order.
    pub fn verdict_stats(&self) -> Result<[ActionStats; XdpVerdict::COUNT as usize], SteeringError> {
        let map = self
            .ebpf
            .map(VERDICT_STATS_MAP)
            .ok_or_else(|| SteeringError::Other(format!("map {VERDICT_STATS_MAP} missing")))?;
        let stats =
            PerCpuArray::<_, ActionStats>::try_from(map).map_err(|e| SteeringError::Other(e.to_string()))?;
        let mut out = [ActionStats::default(); XdpVerdict::COUNT as usize];
        for verdict in XdpVerdict::ALL {
            let per_cpu = stats
                .get(&(verdict as u32), 0)
                .map_err(|e| SteeringError::Other(e.to_string()))?;
            for cpu in per_cpu.iter() {
                out[verdict as usize].packets += cpu.packets;
                out[verdict as usize].bytes += cpu.bytes;
            }
        }
        Ok(out)
    }
}
