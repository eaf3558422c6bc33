//! One large zeroed allocation to cut buffers from: memory that becomes resident only where it
//! is written.
//!
//! A lane sizes its buffers at start for the most connections it may hold (thousands of
//! sockets, each with a receive and a transmit buffer, and as many request slots), though most
//! of them are idle or unused most of the time. Allocated one by one (`vec![0; 16 * 1024]` per
//! buffer), the buffers come from the allocator's heap, and many of their pages are resident
//! from the start (measured with glibc: all of them when the heap is the main arena's, about
//! half in a thread's arena): 415 MB for one lane of the default configuration before a client
//! connected. An [`Arena`] is one zeroed allocation instead. At this size the allocator takes it
//! straight from the kernel as a fresh anonymous mapping (glibc maps every allocation above its
//! mmap threshold, 128 KiB at first and by default never above 32 MiB), whose pages are zero without being written and
//! become resident one by one, on their first write. So a buffer cut from an arena costs
//! address space for its whole capacity but resident memory only for the pages it has used.
//!
//! The arena's first byte starts a page, so buffers whose sizes are whole pages (the default
//! sizes) start on pages too, and one that is written only at its start touches one page.
//!
//! Invariant: the bytes are zero until written; nothing here writes them.

/// The page size the arena aligns to (x86-64's and most Arm kernels' base page). On a kernel with
/// larger pages buffers still work; they only share pages more.
pub const PAGE: usize = 4096;

/// `len` zeroed bytes in one allocation, starting at a page boundary.
pub struct Arena {
    bytes: Box<[u8]>,
    start: usize,
    len: usize,
}

impl Arena {
    /// An arena of `len` zeroed bytes (it allocates up to a page more, to align its start).
    pub fn zeroed(len: usize) -> Arena {
        // `vec![0; n]` asks the allocator for zeroed memory (calloc): for a large `n` a fresh
        // mapping, which it neither writes nor clears.
        let bytes = vec![0u8; len + PAGE - 1].into_boxed_slice();
        // An offset the platform cannot compute (`usize::MAX`) only costs the alignment.
        let start = match bytes.as_ptr().align_offset(PAGE) {
            offset if offset < PAGE => offset,
            _ => 0,
        };
        Arena { bytes, start, len }
    }

    /// The arena's bytes.
    pub fn bytes(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + self.len]
    }

    /// Bytes of the arena: address space reserved, resident only where written.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_zero_page_aligned_and_exactly_as_many_as_asked() {
        for len in [0, 1, PAGE - 1, PAGE, 3 * PAGE + 17, 1 << 20] {
            let mut arena = Arena::zeroed(len);
            assert_eq!(arena.len(), len);
            let bytes = arena.bytes();
            assert_eq!(bytes.len(), len);
            assert!(bytes.iter().all(|&b| b == 0));
            assert_eq!(bytes.as_ptr() as usize % PAGE, 0, "len {len}");
        }
    }

    /// Resident bytes of this process (Linux: `/proc/self/statm`, in pages).
    fn resident() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * PAGE
    }

    /// The point of an arena: reserving it costs no resident memory, writing a page costs that
    /// page. (Other tests run meanwhile: the bounds leave them room.)
    #[test]
    fn pages_become_resident_only_once_written() {
        const MIB: usize = 1 << 20;
        let before = resident();
        let mut arena = Arena::zeroed(256 * MIB);
        let reserved = resident();
        assert!(
            reserved < before + 32 * MIB,
            "reserving 256 MiB made {} MiB resident",
            (reserved - before) / MIB
        );
        for page in arena.bytes()[..64 * MIB].chunks_mut(PAGE) {
            page[0] = 1;
        }
        let written = resident();
        assert!(
            written >= reserved + 60 * MIB,
            "writing 64 MiB made {} MiB resident",
            written.saturating_sub(reserved) / MIB
        );
    }
}
