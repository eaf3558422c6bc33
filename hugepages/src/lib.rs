//! The memory xgate's AF_XDP UMEM lives in.
//!
//! This crate owns one thing: a [`Region`], an anonymous, private mapping that the AF_XDP socket
//! registers as its UMEM and that every received and transmitted frame is written into. It is
//! backed by 2 MiB hugepages so that the whole UMEM is covered by a handful of TLB entries, and it
//! is fully faulted in before the data path ever touches it.
//!
//! # Invariants
//!
//! - A [`Region`] is mapped, pre-faulted (`MAP_POPULATE`) and writable over its whole length when
//!   [`Region::allocate`] returns. The data path never takes a page fault on it, and a shortage of
//!   hugepages shows up as an [`Error`] from `allocate`, never later as `SIGBUS`: a private
//!   `MAP_HUGETLB` mapping reserves its pages when it is created, and the kernel refuses it with
//!   `ENOMEM` when they are not there.
//! - Its length is the requested length rounded up to a whole number of [`HUGE_PAGE_SIZE`]
//!   pages, whatever it is backed by, so the UMEM size does not depend on the backing. Its start
//!   is aligned to the page size of its backing (2 MiB or 4 KiB).
//! - It only ever lands on normal pages under [`FallbackPolicy::AllowNormalPages`]; it then says
//!   so ([`Region::backing`]) and carries the command that would have given it hugepages
//!   ([`Region::fallback_hint`]). The crate never logs; the caller warns once.
//! - Normal-page fallback memory is also locked (`mlock`) when the process is allowed to, so it
//!   is not swapped out under the data path. Hugepages are never swapped.
//!
//! `unsafe` is allowed only in the `sys` module (`mlock`, and the tests' few calls).
//!
//! Hugepages are reserved on the host with `hugepages/setup.sh N` (see its README); [`status`]
//! reads the host's counters from `/proc/meminfo`.

mod sys;

use std::{io, ptr::NonNull};

use memmap2::{MmapMut, MmapOptions};

/// Size of one hugepage xgate uses.
pub const HUGE_PAGE_SIZE: usize = 2 * 1024 * 1024;

/// log2 of [`HUGE_PAGE_SIZE`], as `MAP_HUGE_2MB` encodes it.
const HUGE_PAGE_SHIFT: u8 = 21;

/// The 2 MiB pool in sysfs, for hosts whose default hugepage size is not 2 MiB.
const SYSFS_2M: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB";

/// What a region is backed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// 2 MiB hugepages (`MAP_HUGETLB | MAP_HUGE_2MB`).
    HugePages2M,
    /// Normal 4 KiB pages, because no hugepages were free and the policy allowed it.
    NormalPages,
}

/// What to do when there are not enough free hugepages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackPolicy {
    /// Fail with an error that says how to reserve them.
    Require,
    /// Use normal 4 KiB pages (page aligned, pre-faulted, and locked where allowed).
    AllowNormalPages,
}

/// Why a region could not be had. Each message is one line: what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "a UMEM of 0 bytes was requested: umem.frames x umem.frame_size must be positive (e.g. frames = 4096, frame_size = 4096)"
    )]
    InvalidSize,
    #[error(
        "need {needed} free 2 MiB hugepages for a {mib} MiB UMEM, {free} are free: run `hugepages/setup.sh {suggest}` (or echo {suggest} > /proc/sys/vm/nr_hugepages), or set umem.allow_normal_pages = true"
    )]
    NotEnoughHugePages {
        /// Pages the region needs.
        needed: usize,
        /// Pages that were free and unreserved when it was asked for.
        free: usize,
        /// Size of the region in MiB.
        mib: usize,
        /// Persistent pool size that would cover the shortage.
        suggest: usize,
    },
    #[error(
        "this kernel cannot map 2 MiB hugepages ({source}): check `grep -i huge /proc/meminfo` and that CONFIG_HUGETLBFS is on, or set umem.allow_normal_pages = true"
    )]
    HugePagesUnsupported {
        #[source]
        source: io::Error,
    },
    #[error(
        "mapping {mib} MiB of normal memory for the UMEM failed ({source}): free memory (see `grep MemAvailable /proc/meminfo`) or lower umem.frames"
    )]
    Map {
        mib: usize,
        #[source]
        source: io::Error,
    },
}

/// Hugepage counters of the host's default hugepage size, from `/proc/meminfo`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HugePageStatus {
    /// `HugePages_Total`: pages in the pool, surplus included.
    pub total: usize,
    /// `HugePages_Free`: pages not yet faulted in (reserved ones included).
    pub free: usize,
    /// `HugePages_Rsvd`: free pages promised to mappings that have not faulted them in yet.
    pub reserved: usize,
    /// `HugePages_Surp`: pages above the persistent pool (overcommit).
    pub surplus: usize,
    /// `Hugepagesize`, in bytes.
    pub page_size: usize,
}

impl HugePageStatus {
    /// Pages a new mapping can still take: free minus already promised.
    pub fn available(&self) -> usize {
        self.free.saturating_sub(self.reserved)
    }

    /// The persistent pool size (what `/proc/sys/vm/nr_hugepages` reads).
    pub fn persistent(&self) -> usize {
        self.total.saturating_sub(self.surplus)
    }
}

/// Parses the hugepage lines of a `/proc/meminfo` text; missing lines read as 0.
pub fn parse_meminfo(text: &str) -> HugePageStatus {
    let mut status = HugePageStatus::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<usize>() else {
            continue;
        };
        match key {
            "HugePages_Total:" => status.total = value,
            "HugePages_Free:" => status.free = value,
            "HugePages_Rsvd:" => status.reserved = value,
            "HugePages_Surp:" => status.surplus = value,
            "Hugepagesize:" => status.page_size = value * 1024,
            _ => {}
        }
    }
    status
}

/// The host's hugepage counters now.
pub fn status() -> io::Result<HugePageStatus> {
    Ok(parse_meminfo(&std::fs::read_to_string("/proc/meminfo")?))
}

/// Counters of the 2 MiB pool: `/proc/meminfo` when 2 MiB is the default size (the usual case),
/// else that pool's sysfs directory.
fn status_2m() -> io::Result<HugePageStatus> {
    let meminfo = status()?;
    if meminfo.page_size == HUGE_PAGE_SIZE {
        return Ok(meminfo);
    }
    let read = |name: &str| -> io::Result<usize> {
        std::fs::read_to_string(format!("{SYSFS_2M}/{name}"))?
            .trim()
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    };
    Ok(HugePageStatus {
        total: read("nr_hugepages")?,
        free: read("free_hugepages")?,
        reserved: read("resv_hugepages")?,
        surplus: read("surplus_hugepages")?,
        page_size: HUGE_PAGE_SIZE,
    })
}

/// An anonymous, private, pre-faulted memory region: the UMEM.
pub struct Region {
    map: MmapMut,
    backing: Backing,
    /// When the region fell back: the pool size that would have given it hugepages.
    suggest: Option<usize>,
}

impl Region {
    /// Maps `len` bytes (rounded up to a multiple of [`HUGE_PAGE_SIZE`]) of anonymous, private
    /// memory backed by 2 MiB hugepages, pre-faulted so the data path never page-faults and so a
    /// shortage of hugepages shows up here, not later as `SIGBUS`.
    ///
    /// The free count is read from `/proc/meminfo` first so a shortage can be reported with
    /// numbers; the mapping is tried regardless (the pool may overcommit), and the kernel's
    /// `ENOMEM` is the final word. When hugepages are missing, `policy` decides: an
    /// [`Error::NotEnoughHugePages`] naming the fix, or normal pages.
    pub fn allocate(len: usize, policy: FallbackPolicy) -> Result<Region, Error> {
        Region::allocate_on(len, policy, None)
    }

    /// [`Region::allocate`] with its pages taken from NUMA node `node` while it has them
    /// (`MPOL_PREFERRED` for the calling thread during the mapping, then back to the default):
    /// a lane's UMEM belongs on its core's node. A node the kernel refuses (none such) is
    /// ignored: the pages come from wherever the kernel puts them, which [`Region::node`] tells.
    pub fn allocate_on(len: usize, policy: FallbackPolicy, node: Option<u32>) -> Result<Region, Error> {
        let preferred = node.is_some() && sys::prefer_node(node).is_ok();
        let region = Region::allocate_here(len, policy);
        if preferred {
            // Back to the thread's default; a failure here leaves a preference that only steers
            // later allocations of this thread, never their correctness.
            let _ = sys::prefer_node(None);
        }
        region
    }

    /// The NUMA node holding the region's first page, if the kernel says.
    pub fn node(&self) -> Option<u32> {
        sys::node_of(self.map.as_ptr())
    }

    fn allocate_here(len: usize, policy: FallbackPolicy) -> Result<Region, Error> {
        if len == 0 {
            return Err(Error::InvalidSize);
        }
        let pages = len.div_ceil(HUGE_PAGE_SIZE);
        let rounded = pages * HUGE_PAGE_SIZE;
        let mib = rounded / (1024 * 1024);
        // Unreadable counters only cost the numbers in the message, not the attempt.
        let before = status_2m().unwrap_or_default();
        let free = before.available();
        let suggest = before.persistent() + pages.saturating_sub(free).max(1);

        let huge = MmapOptions::new()
            .len(rounded)
            .huge(Some(HUGE_PAGE_SHIFT))
            .populate()
            .map_anon();
        let refusal = match huge {
            Ok(map) => {
                return Ok(Region {
                    map,
                    backing: Backing::HugePages2M,
                    suggest: None,
                })
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => Error::NotEnoughHugePages {
                needed: pages,
                free,
                mib,
                suggest,
            },
            Err(source) => Error::HugePagesUnsupported { source },
        };
        if policy == FallbackPolicy::Require {
            return Err(refusal);
        }

        let map = MmapOptions::new()
            .len(rounded)
            .populate()
            .map_anon()
            .map_err(|source| Error::Map { mib, source })?;
        sys::lock_if_allowed(&map);
        Ok(Region {
            map,
            backing: Backing::NormalPages,
            suggest: Some(suggest),
        })
    }

    /// What the region ended up on.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// When the region fell back to normal pages: the command that would reserve the hugepages it
    /// lacked. `None` when it is on hugepages.
    pub fn fallback_hint(&self) -> Option<String> {
        self.suggest
            .map(|n| format!("hugepages/setup.sh {n}  (or: echo {n} > /proc/sys/vm/nr_hugepages)"))
    }

    /// Length in bytes: the requested length rounded up to whole 2 MiB pages.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: a region is never empty (a zero length is refused by `allocate`).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The whole region as a raw slice pointer, for registering it as the AF_XDP UMEM. It stays
    /// valid for as long as the region lives.
    pub fn as_non_null_slice(&mut self) -> NonNull<[u8]> {
        NonNull::from(&mut self.map[..])
    }
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("ptr", &self.map.as_ptr())
            .field("len", &self.map.len())
            .field("backing", &self.backing)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real /proc/meminfo from a host with a 2 MiB pool, trimmed.
    const SAMPLE: &str = "\
MemTotal:       24592612 kB
MemFree:        19873212 kB
MemAvailable:   22710432 kB
AnonHugePages:     79872 kB
ShmemHugePages:        0 kB
FileHugePages:         0 kB
HugePages_Total:      16
HugePages_Free:       12
HugePages_Rsvd:        2
HugePages_Surp:        1
Hugepagesize:       2048 kB
Hugetlb:           32768 kB
";

    #[test]
    fn meminfo_is_parsed() {
        let s = parse_meminfo(SAMPLE);
        assert_eq!(
            s,
            HugePageStatus {
                total: 16,
                free: 12,
                reserved: 2,
                surplus: 1,
                page_size: 2 * 1024 * 1024
            }
        );
        assert_eq!(s.available(), 10);
        assert_eq!(s.persistent(), 15);
        assert_eq!(
            parse_meminfo("garbage\nHugePages_Free: x\n"),
            HugePageStatus::default()
        );
    }

    /// Normal pages (no hugepage pool needed) asked on node 0 land on node 0, which every host
    /// has; a node the kernel does not have is ignored, not an error.
    #[test]
    fn a_region_asked_on_a_node_lands_there() {
        assert_eq!(normal_region_on(Some(0)).node(), Some(0));
        assert!(
            normal_region_on(Some(63)).node().is_some(),
            "an absent node is ignored"
        );
        assert!(
            sys::prefer_node(Some(64)).is_err(),
            "nodes past the mask are refused"
        );
        // The thread's policy is the default again afterwards.
        assert_eq!(normal_region_on(None).node(), Some(0));
    }

    /// A region of normal pages on `node`, placed as `allocate_on` places its mapping (normal
    /// pages: the test takes nothing from the host's hugepage pool, which other tests count).
    fn normal_region_on(node: Option<u32>) -> Region {
        let preferred = node.is_some() && sys::prefer_node(node).is_ok();
        let map = MmapOptions::new()
            .len(HUGE_PAGE_SIZE)
            .populate()
            .map_anon()
            .unwrap();
        if preferred {
            sys::prefer_node(None).unwrap();
        }
        Region {
            map,
            backing: Backing::NormalPages,
            suggest: None,
        }
    }

    #[test]
    fn this_hosts_meminfo_has_a_hugepage_size() {
        assert!(status().unwrap().page_size >= 4096);
    }

    #[test]
    fn zero_length_is_refused() {
        for policy in [FallbackPolicy::Require, FallbackPolicy::AllowNormalPages] {
            let err = Region::allocate(0, policy).unwrap_err();
            assert!(matches!(err, Error::InvalidSize));
            assert!(err.to_string().contains("must be positive"));
        }
    }

    /// Exclusive hold on the host's hugepage pool for one test: an flock on the file every xgate
    /// test that depends on the pool takes (flock locks belong to the open file, so this also
    /// serialises tests within this binary), and the original `nr_hugepages` written back on drop,
    /// panics included.
    struct HostPool {
        _lock: std::fs::File,
        original: usize,
    }

    const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

    fn nr_hugepages() -> usize {
        std::fs::read_to_string(NR_HUGEPAGES)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn set_nr_hugepages(n: usize) {
        std::fs::write(NR_HUGEPAGES, n.to_string()).unwrap();
    }

    impl HostPool {
        /// `None` (after saying why) when not root: the pool cannot be changed then.
        fn take(test: &str) -> Option<HostPool> {
            if !sys::is_root() {
                eprintln!("skipping {test}: it changes {NR_HUGEPAGES}, which needs root");
                return None;
            }
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open("/run/xgate-hugepages-test.lock")
                .unwrap();
            // The guard keeps `lock` open, and so holds the lock, for its lifetime.
            let rc = sys::flock_exclusive(&lock);
            assert_eq!(rc, 0, "flock: {}", io::Error::last_os_error());
            Some(HostPool {
                _lock: lock,
                original: nr_hugepages(),
            })
        }
    }

    impl Drop for HostPool {
        fn drop(&mut self) {
            let _ = std::fs::write(NR_HUGEPAGES, self.original.to_string());
        }
    }

    fn fill_and_check(region: &mut Region) {
        let len = region.len();
        let bytes = sys::region_bytes(region);
        assert_eq!(bytes.len(), len);
        bytes.fill(0xa5);
        bytes[len - 1] = 0x5a;
        assert!(bytes[..len - 1].iter().all(|&b| b == 0xa5));
        assert_eq!(bytes[len - 1], 0x5a);
    }

    #[test]
    fn with_no_hugepages_reserved_normal_pages_are_the_fallback() {
        let Some(_pool) = HostPool::take("with_no_hugepages_reserved_normal_pages_are_the_fallback") else {
            return;
        };
        set_nr_hugepages(0);
        assert_eq!(status_2m().unwrap().available(), 0);

        let mut region = Region::allocate(3 * HUGE_PAGE_SIZE + 1, FallbackPolicy::AllowNormalPages).unwrap();
        assert_eq!(region.backing(), Backing::NormalPages);
        assert_eq!(region.len(), 4 * HUGE_PAGE_SIZE);
        assert!(!region.is_empty());
        assert_eq!(region.as_ptr() as usize % 4096, 0);
        assert_eq!(region.as_mut_ptr().cast_const(), region.as_ptr());
        fill_and_check(&mut region);
        let hint = region.fallback_hint().unwrap();
        assert!(hint.contains("hugepages/setup.sh 4"), "{hint}");
        assert!(hint.contains("echo 4 > /proc/sys/vm/nr_hugepages"), "{hint}");
    }

    #[test]
    fn require_with_none_free_fails_with_the_fix() {
        let Some(_pool) = HostPool::take("require_with_none_free_fails_with_the_fix") else {
            return;
        };
        set_nr_hugepages(0);
        let err = Region::allocate(16 * 1024 * 1024, FallbackPolicy::Require).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotEnoughHugePages {
                    needed: 8,
                    free: 0,
                    mib: 16,
                    suggest: 8
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.starts_with("need 8 free 2 MiB hugepages for a 16 MiB UMEM, 0 are free: run `hugepages/setup.sh 8` (or echo 8 > /proc/sys/vm/nr_hugepages)"),
            "{text}"
        );
    }

    #[test]
    fn a_shortage_is_enomem_from_mmap_not_a_later_sigbus() {
        let Some(_pool) = HostPool::take("a_shortage_is_enomem_from_mmap_not_a_later_sigbus") else {
            return;
        };
        // Exactly one free page, two wanted.
        let s = status_2m().unwrap();
        set_nr_hugepages(s.total - s.available() + 1);
        let s = status_2m().unwrap();
        let free = s.available();
        assert!(free >= 1, "the kernel gave no hugepage: {s:?}");
        let err = MmapOptions::new()
            .len((free + 1) * HUGE_PAGE_SIZE)
            .huge(Some(HUGE_PAGE_SHIFT))
            .populate()
            .map_anon()
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOMEM), "{err}");
        // And through the crate: the counted shortage, nothing taken.
        let err = Region::allocate((free + 1) * HUGE_PAGE_SIZE, FallbackPolicy::Require).unwrap_err();
        assert!(
            matches!(err, Error::NotEnoughHugePages { free: f, .. } if f == free),
            "{err:?}"
        );
        assert_eq!(status_2m().unwrap().available(), free);
    }

    #[test]
    fn reserved_hugepages_back_the_region() {
        let Some(pool) = HostPool::take("reserved_hugepages_back_the_region") else {
            return;
        };
        set_nr_hugepages(pool.original + 4);
        assert_eq!(
            nr_hugepages(),
            pool.original + 4,
            "the kernel could not find 4 free 2 MiB pages (memory fragmented)"
        );
        let before = status_2m().unwrap();

        let mut region = Region::allocate(4 * 1024 * 1024, FallbackPolicy::Require).unwrap();
        assert_eq!(region.backing(), Backing::HugePages2M);
        assert!(region.fallback_hint().is_none());
        assert_eq!(region.len(), 2 * HUGE_PAGE_SIZE);
        assert_eq!(region.as_ptr() as usize % HUGE_PAGE_SIZE, 0);
        // Pre-faulted: the pages are taken from the pool now, not reserved for later.
        let mapped = status_2m().unwrap();
        assert_eq!(mapped.free, before.free - 2, "{before:?} -> {mapped:?}");
        assert_eq!(mapped.reserved, before.reserved, "{before:?} -> {mapped:?}");
        fill_and_check(&mut region);
        assert_eq!(status_2m().unwrap().free, before.free - 2);

        drop(region);
        assert_eq!(status_2m().unwrap().free, before.free);
    }
}
