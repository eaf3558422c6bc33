//! The memory xgate's AF_XDP UMEM lives in: one anonymous region on 2 MiB hugepages, or on normal
//! pages when the operator allows it and no hugepages are free.
//!
//! Invariants:
//! - A [`Region`] is fully mapped and pre-faulted when `allocate` returns (MAP_POPULATE): the data
//!   path never takes a page fault, and a shortage of hugepages shows up here as an error, never
//!   later as SIGBUS.
//! - Its length is a multiple of the page size it is backed by; its start is page aligned.
//! - Falling back to normal pages happens only under [`FallbackPolicy::AllowNormalPages`], and
//!   the region then says so ([`Region::backing`]) and how to fix it ([`Region::fallback_hint`]).

use std::ptr::NonNull;

use memmap2::{MmapMut, MmapOptions};

/// Size of one hugepage xgate uses.
pub const HUGE_PAGE_SIZE: usize = 2 * 1024 * 1024;

/// What a region is backed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    HugePages2M,
    NormalPages,
}

/// What to do when hugepages are missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackPolicy {
    /// Fail with an error that says how to reserve them.
    Require,
    /// Use normal pages (pre-faulted and locked where allowed).
    AllowNormalPages,
}

/// Why a region could not be had. Each message is one line: what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a UMEM region of 0 bytes was requested: umem.frames x umem.frame_size must be positive")]
    InvalidSize,
    #[error("need {needed} free 2 MiB hugepages for a {mib} MiB UMEM, {free} are free: run `hugepages/setup.sh {suggest}` (or echo {suggest} > /proc/sys/vm/nr_hugepages), or set umem.allow_normal_pages = true")]
    NotEnoughHugePages {
        needed: usize,
        free: usize,
        mib: usize,
        suggest: usize,
    },
    #[error("mapping {len} bytes for the UMEM failed: {source}")]
    Map { len: usize, source: std::io::Error },
}

/// Hugepage counters from /proc/meminfo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HugePageStatus {
    pub total: usize,
    pub free: usize,
    pub reserved: usize,
    pub surplus: usize,
    pub page_size: usize,
}

/// Parses the hugepage lines of a /proc/meminfo text.
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
pub fn status() -> std::io::Result<HugePageStatus> {
    Ok(parse_meminfo(&std::fs::read_to_string("/proc/meminfo")?))
}

/// An anonymous, private, pre-faulted memory region.
pub struct Region {
    map: MmapMut,
    backing: Backing,
    /// Hugepages that were missing when the region fell back to normal pages.
    missing_pages: Option<usize>,
}

impl Region {
    /// Maps `len` bytes (rounded up to whole 2 MiB pages) on hugepages, or per `policy` on normal
    /// pages when not enough are free.
    pub fn allocate(len: usize, policy: FallbackPolicy) -> Result<Region, Error> {
        if len == 0 {
            return Err(Error::InvalidSize);
        }
        let pages = len.div_ceil(HUGE_PAGE_SIZE);
        let huge_len = pages * HUGE_PAGE_SIZE;
        let free = status().map(|s| s.free.saturating_sub(s.reserved)).unwrap_or(0);
        let shortage = || Error::NotEnoughHugePages {
            needed: pages,
            free,
            mib: huge_len / (1024 * 1024),
            suggest: status().map(|s| s.total).unwrap_or(0) + pages.saturating_sub(free),
        };
        if free >= pages {
            match MmapOptions::new()
                .len(huge_len)
                .huge(Some(21))
                .populate()
                .map_anon()
            {
                Ok(map) => {
                    return Ok(Region {
                        map,
                        backing: Backing::HugePages2M,
                        missing_pages: None,
                    })
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => {}
                Err(source) => {
                    return Err(Error::Map {
                        len: huge_len,
                        source,
                    })
                }
            }
        }
        match policy {
            FallbackPolicy::Require => Err(shortage()),
            FallbackPolicy::AllowNormalPages => {
                let map = MmapOptions::new()
                    .len(huge_len)
                    .populate()
                    .map_anon()
                    .map_err(|source| Error::Map {
                        len: huge_len,
                        source,
                    })?;
                // SAFETY: mlock on the region we just mapped, for its exact length; failure (no
                // CAP_IPC_LOCK, RLIMIT_MEMLOCK) only means the pages may be swapped, so it is
                // ignored.
                unsafe { libc::mlock(map.as_ptr().cast(), map.len()) };
                let suggest = status().map(|s| s.total).unwrap_or(0) + pages.saturating_sub(free);
                Ok(Region {
                    map,
                    backing: Backing::NormalPages,
                    missing_pages: Some(suggest),
                })
            }
        }
    }

    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// The command that would reserve the hugepages this region lacked, if it fell back.
    pub fn fallback_hint(&self) -> Option<String> {
        self.missing_pages
            .map(|n| format!("hugepages/setup.sh {n}  (or: echo {n} > /proc/sys/vm/nr_hugepages)"))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The whole region as a raw slice pointer, for registering it as an AF_XDP UMEM.
    pub fn as_non_null_slice(&mut self) -> NonNull<[u8]> {
        NonNull::from(&mut self.map[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "MemTotal:       24000000 kB\nHugePages_Total:      16\nHugePages_Free:       12\nHugePages_Rsvd:        2\nHugePages_Surp:        0\nHugepagesize:       2048 kB\n";

    #[test]
    fn meminfo_is_parsed() {
        let s = parse_meminfo(SAMPLE);
        assert_eq!(
            s,
            HugePageStatus {
                total: 16,
                free: 12,
                reserved: 2,
                surplus: 0,
                page_size: 2 * 1024 * 1024
            }
        );
    }

    #[test]
    fn zero_length_is_refused() {
        assert!(matches!(
            Region::allocate(0, FallbackPolicy::AllowNormalPages),
            Err(Error::InvalidSize)
        ));
    }

    #[test]
    fn fallback_region_is_whole_and_writable() {
        // Far more than any reservation here, so this takes the fallback path.
        let len = 3 * HUGE_PAGE_SIZE + 1;
        let mut region = Region::allocate(len, FallbackPolicy::AllowNormalPages).unwrap();
        assert_eq!(region.len(), 4 * HUGE_PAGE_SIZE);
        assert_eq!(region.as_ptr() as usize % 4096, 0);
        // SAFETY: the slice covers the region, which outlives every use of it below.
        let slice = unsafe { region.as_non_null_slice().as_mut() };
        slice.iter_mut().step_by(4096).for_each(|b| *b = 0xa5);
        assert!(slice.iter().step_by(4096).all(|&b| b == 0xa5));
        if region.backing() == Backing::NormalPages {
            assert!(region.fallback_hint().unwrap().contains("hugepages/setup.sh"));
        }
    }

    #[test]
    fn a_shortage_under_require_names_the_fix() {
        let huge = 1 << 40; // 1 TiB of hugepages is never free here
        let err = Region::allocate(huge, FallbackPolicy::Require)
            .err()
            .expect("must fail");
        let text = err.to_string();
        assert!(
            text.contains("hugepages/setup.sh") && text.contains("free"),
            "{text}"
        );
    }
}
