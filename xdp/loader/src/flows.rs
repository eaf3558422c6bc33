//! The flow layer's maps, seen from userspace: the flow table, the drop map, the handshake
//! histogram and the SYN shield's sources, read and written through their file descriptors.
//!
//! [`FlowMaps`] holds its own duplicates of the maps' descriptors, so it can be shared between
//! threads (the reaper, the metrics listener) independently of the loaded program, and the maps
//! live as long as it does. Every access is one `bpf(2)` command on a descriptor; the flow table
//! is read in batches (`BPF_MAP_LOOKUP_BATCH`), a few thousand entries per system call.
//!
//! Invariants:
//! - Keys and values cross the syscall boundary as the `#[repr(C)]` types of `xgate-xdp-common`,
//!   whose sizes match the maps' key and value sizes (checked at open).
//! - Nothing here runs on a lane's data path.
//!
//! The `bpf(2)` call is this module's `unsafe` (allowed here, denied by the workspace).
#![allow(unsafe_code)]

use std::{
    io,
    os::fd::{AsFd, AsRawFd, OwnedFd},
};

use aya::maps::{Map, MapData};
use xgate_xdp_common::{
    FlowDrop, FlowKey, FlowStats, ReapReason, FLOWS_MAP, FLOW_DROPS_MAP, HANDSHAKE_HISTOGRAM_MAP,
    HANDSHAKE_SUM_SLOT, LATENCY_BUCKETS, SYN_SOURCES_MAP,
};

use crate::SteeringError;

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_ANY: u64 = 0;
/// Entries fetched per `BPF_MAP_LOOKUP_BATCH`.
const BATCH: usize = 4096;

/// `union bpf_attr` for the element commands.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` for the batch commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf<T>(command: libc::c_long, attr: &mut T) -> io::Result<()> {
    // SAFETY: `attr` is a live, initialised `#[repr(C)]` prefix of `union bpf_attr` for
    // `command`, and its size is passed along; every pointer inside it points at a buffer the
    // caller keeps alive for the call and sized for what the command writes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// One flow of the table, as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub key: FlowKey,
    pub stats: FlowStats,
}

/// The flow layer's maps (see the module doc).
#[derive(Debug)]
pub struct FlowMaps {
    flows: OwnedFd,
    drops: OwnedFd,
    sources: OwnedFd,
    handshake: OwnedFd,
    cpus: usize,
}

fn data_of(map: &Map) -> Option<&MapData> {
    match map {
        Map::HashMap(data) | Map::LruHashMap(data) | Map::PerCpuArray(data) | Map::Array(data) => Some(data),
        _ => None,
    }
}

impl FlowMaps {
    pub(crate) fn open(ebpf: &aya::Ebpf) -> Result<FlowMaps, SteeringError> {
        let fd = |name: &str| -> Result<OwnedFd, SteeringError> {
            let data = ebpf
                .map(name)
                .and_then(data_of)
                .ok_or_else(|| SteeringError::Other(format!("map {name} missing")))?;
            data.fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| SteeringError::Other(format!("dup map {name}: {e}")))
        };
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| SteeringError::Other(format!("{what}: {e}")))?;
        Ok(FlowMaps {
            flows: fd(FLOWS_MAP)?,
            drops: fd(FLOW_DROPS_MAP)?,
            sources: fd(SYN_SOURCES_MAP)?,
            handshake: fd(HANDSHAKE_HISTOGRAM_MAP)?,
            cpus,
        })
    }

    /// Every flow in the table (a snapshot; the program keeps writing while it is taken, so an
    /// entry may be a little older than the next).
    pub fn flows(&self) -> io::Result<Vec<Flow>> {
        let mut out = Vec::new();
        let mut keys = vec![FlowKey::default(); BATCH];
        let mut values = vec![FlowStats::default(); BATCH];
        let mut token = 0u32;
        let mut first = true;
        loop {
            let mut next = 0u32;
            let mut attr = BatchAttr {
                in_batch: if first { 0 } else { &token as *const u32 as u64 },
                out_batch: &mut next as *mut u32 as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: BATCH as u32,
                map_fd: self.flows.as_raw_fd() as u32,
                ..BatchAttr::default()
            };
            let result = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
            let got = attr.count as usize;
            out.extend(keys[..got].iter().zip(&values[..got]).map(|(key, stats)| Flow {
                key: *key,
                stats: *stats,
            }));
            match result {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
                Err(e) => return Err(e),
            }
            token = next;
            first = false;
        }
    }

    /// The flow `key`, if the table has it.
    pub fn flow(&self, key: &FlowKey) -> io::Result<Option<FlowStats>> {
        lookup(&self.flows, key)
    }

    /// Removes `key` from the flow table (absent is fine).
    pub fn forget(&self, key: &FlowKey) -> io::Result<()> {
        delete(&self.flows, key)
    }

    /// Puts `key` into the drop map until `expires_ns` (CLOCK_MONOTONIC).
    pub fn drop_flow(&self, key: &FlowKey, reason: ReapReason, expires_ns: u64) -> io::Result<()> {
        let entry = FlowDrop {
            expires_ns,
            reason: reason as u32,
            hits: 0,
        };
        update(&self.drops, key, &entry)
    }

    /// The drop-map entry of `key`, if any.
    pub fn dropped(&self, key: &FlowKey) -> io::Result<Option<FlowDrop>> {
        lookup(&self.drops, key)
    }

    /// Entries of the drop map, removing those expired before `now_ns`; returns (live entries,
    /// total hits of live entries).
    pub fn sweep_drops(&self, now_ns: u64) -> io::Result<(u64, u64)> {
        let keys: Vec<FlowKey> = keys_of(&self.drops)?;
        let (mut live, mut hits) = (0, 0);
        for key in keys {
            let Some(entry) = lookup::<FlowKey, FlowDrop>(&self.drops, &key)? else {
                continue;
            };
            if entry.expires_ns <= now_ns {
                delete(&self.drops, &key)?;
            } else {
                live += 1;
                hits += u64::from(entry.hits);
            }
        }
        Ok((live, hits))
    }

    /// Marks `source` as having completed a handshake: its SYNs no longer draw on the SYN
    /// shield's global budget and get the trusted per-source rate, from a full burst (what it
    /// spent at the stranger's rate is forgiven: at 100 SYNs/s, a client's first burst of
    /// connects would otherwise hold it back for seconds). Only the TCP stack can tell (it
    /// checked the ACK number against its SYN-ACK), so only userspace calls this.
    pub fn trust_source(&self, source: [u8; 4]) -> io::Result<()> {
        let key = u32::from_ne_bytes(source);
        if let Some(state) = lookup::<u32, xgate_xdp_common::SynSource>(&self.sources, &key)? {
            if state.trusted != 0 {
                return Ok(());
            }
        }
        let trusted = xgate_xdp_common::SynSource {
            next_ns: 0,
            trusted: 1,
            pad: 0,
        };
        update(&self.sources, &key, &trusted)
    }

    /// Sources the SYN shield tracks, and how many of them completed a handshake.
    pub fn sources(&self) -> io::Result<(u64, u64)> {
        let keys: Vec<u32> = keys_of(&self.sources)?;
        let mut trusted = 0;
        for key in &keys {
            if let Some(state) = lookup::<u32, xgate_xdp_common::SynSource>(&self.sources, key)? {
                trusted += u64::from(state.trusted != 0);
            }
        }
        Ok((keys.len() as u64, trusted))
    }

    /// The handshake-latency histogram, summed over CPUs (bucket i: [2^i, 2^(i+1)) µs).
    pub fn handshake_histogram(&self) -> io::Result<[u64; LATENCY_BUCKETS as usize]> {
        let mut out = [0u64; LATENCY_BUCKETS as usize];
        let mut per_cpu = vec![0u64; self.cpus];
        for (bucket, total) in out.iter_mut().enumerate() {
            *total = self.handshake_entry(bucket as u32, &mut per_cpu)?;
        }
        Ok(out)
    }

    /// The sum of the handshake latencies the histogram counts, over CPUs (ns).
    pub fn handshake_sum_ns(&self) -> io::Result<u64> {
        self.handshake_entry(HANDSHAKE_SUM_SLOT, &mut vec![0u64; self.cpus])
    }

    /// Entry `key` of the per-CPU handshake array, summed over CPUs (`per_cpu`: one slot per
    /// possible CPU, as the kernel writes).
    fn handshake_entry(&self, key: u32, per_cpu: &mut [u64]) -> io::Result<u64> {
        let mut attr = ElemAttr {
            map_fd: self.handshake.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: per_cpu.as_mut_ptr() as u64,
            ..ElemAttr::default()
        };
        bpf(BPF_MAP_LOOKUP_ELEM, &mut attr)?;
        Ok(per_cpu.iter().fold(0u64, |sum, v| sum.wrapping_add(*v)))
    }
}

fn lookup<K, V: Default>(map: &OwnedFd, key: &K) -> io::Result<Option<V>> {
    let mut value = V::default();
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key as *const K as u64,
        value: &mut value as *mut V as u64,
        ..ElemAttr::default()
    };
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(()) => Ok(Some(value)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn update<K, V>(map: &OwnedFd, key: &K, value: &V) -> io::Result<()> {
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key as *const K as u64,
        value: value as *const V as u64,
        flags: BPF_ANY,
        ..ElemAttr::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
}

fn delete<K>(map: &OwnedFd, key: &K) -> io::Result<()> {
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key as *const K as u64,
        ..ElemAttr::default()
    };
    match bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
        _ => Ok(()),
    }
}

/// Every key of a hash map (small maps only: one syscall per key).
fn keys_of<K: Default + Copy>(map: &OwnedFd) -> io::Result<Vec<K>> {
    let mut keys = Vec::new();
    let mut current: Option<K> = None;
    loop {
        let mut next = K::default();
        let mut attr = ElemAttr {
            map_fd: map.as_raw_fd() as u32,
            key: current.as_ref().map_or(0, |k| k as *const K as u64),
            value: &mut next as *mut K as u64,
            ..ElemAttr::default()
        };
        match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(()) => {
                keys.push(next);
                current = Some(next);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(keys),
            Err(e) => return Err(e),
        }
    }
}
