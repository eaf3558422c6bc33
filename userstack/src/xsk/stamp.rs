//! The arrival stamp ([`xgate_xdp_common::FrameMeta`]) the XDP program puts in front of every
//! packet it redirects: stripped from a received frame's descriptor, and read back from the UMEM
//! right before the packet.
#![allow(unsafe_code)]

use std::ptr::NonNull;

use xdpilone::xdp::XdpDesc;

/// A received frame as the XDP program sent it, stamp first ([`xgate_xdp_common::FrameMeta`]),
/// turned into the packet alone: the descriptor moves past the stamp, which stays in the UMEM
/// right before the packet for [`frame_meta`]. A frame without the stamp is left as it is.
///
/// The caller holds the frame (it just moved to `InStack`), so the kernel does not write it.
pub(super) fn strip_arrival_stamp(base: NonNull<u8>, desc: XdpDesc, frame_size: u32) -> XdpDesc {
    let stamp_len = xgate_xdp_common::FRAME_META_LEN as u64;
    let room = u64::from(frame_size) - desc.addr % u64::from(frame_size);
    if u64::from(desc.len) < stamp_len || room < stamp_len {
        return desc;
    }
    // SAFETY: [addr, addr + 16) lies inside the frame (checked above), which the caller holds;
    // a u32 is valid for any bit pattern and is read unaligned.
    let magic = unsafe { std::ptr::read_unaligned(base.as_ptr().add(desc.addr as usize) as *const u32) };
    if magic != xgate_xdp_common::FRAME_META_MAGIC {
        return desc;
    }
    XdpDesc {
        addr: desc.addr + stamp_len,
        len: desc.len - stamp_len as u32,
        options: desc.options,
    }
}

/// The XDP program's stamp of the frame whose packet starts at `addr` in the UMEM at `base`
/// (see [`strip_arrival_stamp`]): when it saw the frame (CLOCK_MONOTONIC ns) and its
/// `FRAME_FLAG_*` bits; `None` if the frame carries no stamp.
///
/// The stamp is read only when those 16 bytes are inside the same 2048-byte-aligned chunk as the
/// packet (every frame size is a multiple of 2048).
pub(super) fn frame_meta(base: NonNull<u8>, addr: u64) -> Option<xgate_xdp_common::FrameMeta> {
    let meta_len = xgate_xdp_common::FRAME_META_LEN as u64;
    if addr % 2048 < meta_len {
        return None;
    }
    // SAFETY: [addr - 16, addr) lies in the same UMEM frame as the packet (checked above), which
    // the caller holds (InStack or Lent), so the kernel does not write it; the bytes are plain
    // integers, valid for any bit pattern, read unaligned.
    let meta = unsafe {
        std::ptr::read_unaligned(
            base.as_ptr().add((addr - meta_len) as usize) as *const xgate_xdp_common::FrameMeta
        )
    };
    (meta.magic == xgate_xdp_common::FRAME_META_MAGIC).then_some(meta)
}

#[cfg(test)]
mod tests {
    use xgate_xdp_common::{FrameMeta, FRAME_META_LEN, FRAME_META_MAGIC};

    use super::*;
    use crate::xsk::KERNEL_HEADROOM;

    const FRAME: u32 = 4096;

    /// Two UMEM frames in a buffer aligned like the UMEM (to its frame size).
    #[repr(C, align(4096))]
    struct TwoFrames([u8; 2 * FRAME as usize]);

    fn stamp(umem: &mut TwoFrames, at: usize, arrival_ns: u64) {
        let meta = FrameMeta {
            magic: FRAME_META_MAGIC,
            flags: 0,
            arrival_ns,
        };
        umem.0[at..at + 4].copy_from_slice(&meta.magic.to_ne_bytes());
        umem.0[at + 4..at + 8].copy_from_slice(&meta.flags.to_ne_bytes());
        umem.0[at + 8..at + 16].copy_from_slice(&meta.arrival_ns.to_ne_bytes());
    }

    fn desc(addr: u64, len: u32) -> XdpDesc {
        XdpDesc {
            addr,
            len,
            options: 0,
        }
    }

    fn ends(d: XdpDesc) -> (u64, u32) {
        (d.addr, d.len)
    }

    #[test]
    fn a_stamped_frame_becomes_its_packet_and_keeps_its_arrival_time() {
        let mut umem = Box::new(TwoFrames([0; 2 * FRAME as usize]));
        // The second frame, past the kernel's headroom: stamp, then a 60-byte packet.
        let at = FRAME as usize + KERNEL_HEADROOM as usize;
        stamp(&mut umem, at, 123_456_789);
        umem.0[at + 16..at + 76].fill(0xab);
        let base = NonNull::new(umem.0.as_mut_ptr()).unwrap();
        let packet = strip_arrival_stamp(base, desc(at as u64, 16 + 60), FRAME);
        assert_eq!(packet.addr, at as u64 + FRAME_META_LEN as u64);
        assert_eq!(packet.len, 60);
        assert_eq!(umem.0[packet.addr as usize], 0xab, "the packet's first byte");
        assert_eq!(
            frame_meta(base, packet.addr).map(|m| m.arrival_ns),
            Some(123_456_789)
        );
    }

    #[test]
    fn frames_without_a_whole_stamp_are_left_as_they_are() {
        let mut umem = Box::new(TwoFrames([0; 2 * FRAME as usize]));
        let base = NonNull::new(umem.0.as_mut_ptr()).unwrap();
        // No magic: the frame is the packet, and it has no arrival time.
        let plain = desc(KERNEL_HEADROOM as u64, 60);
        assert_eq!(ends(strip_arrival_stamp(base, plain, FRAME)), ends(plain));
        assert_eq!(frame_meta(base, plain.addr), None);
        // Shorter than a stamp.
        stamp(&mut umem, 512, 7);
        let short = desc(512, 8);
        assert_eq!(ends(strip_arrival_stamp(base, short, FRAME)), ends(short));
        // A stamp that would cross into the next frame is not read (its magic is there).
        umem.0[FRAME as usize - 8..FRAME as usize - 4].copy_from_slice(&FRAME_META_MAGIC.to_ne_bytes());
        let at_end = desc(u64::from(FRAME) - 8, 16);
        assert_eq!(ends(strip_arrival_stamp(base, at_end, FRAME)), ends(at_end));
        // A packet at the very start of a 2048-byte chunk has no room for a stamp before it,
        // whatever the bytes before it (the previous frame's) say.
        stamp(&mut umem, FRAME as usize - 16, 9);
        assert_eq!(frame_meta(base, u64::from(FRAME)), None);
    }
}
