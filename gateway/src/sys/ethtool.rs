//! The NIC's RSS hash key and indirection table, read with the ethtool ioctl ETHTOOL_GRSSH:
//! the key the NIC hashes received flows with, so that a lane can pick upstream local ports whose
//! replies the NIC steers back to it (`xgate_userstack::rss`).
//!
//! The ioctl is asked twice, as ethtool does: first for the sizes of the table and the key, then
//! for both. [`read_rss`] takes the call as a function over the request's bytes, so the tests
//! drive the same code with a made-up kernel answer; [`nic_rss`] passes the real ioctl.

use std::io;

/// ETHTOOL_GRSSH: get the RSS hash key, function and indirection table.
const ETHTOOL_GRSSH: u32 = 0x46;
/// Bytes of `struct ethtool_rxfh` before its table and key: cmd, rss_context, indir_size,
/// key_size (u32 each), hfunc, input_xfrm, two reserved bytes, a reserved u32.
const RXFH_HEADER: usize = 24;
/// Largest table and key accepted from a driver (drivers have at most a few thousand entries
/// and 52-byte keys); a bigger answer is taken for garbage.
const MAX_INDIR: u32 = 65_536;
const MAX_KEY: u32 = 256;

/// What the NIC hashes received flows with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicRss {
    /// The Toeplitz key.
    pub key: Vec<u8>,
    /// Entry `hash % len` is the receive queue of a packet whose hash is `hash`.
    pub indirection: Vec<u32>,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn request(indir_size: u32, key_size: u32) -> Vec<u8> {
    let mut bytes = vec![0u8; RXFH_HEADER + indir_size as usize * 4 + key_size as usize];
    bytes[0..4].copy_from_slice(&ETHTOOL_GRSSH.to_ne_bytes());
    bytes[8..12].copy_from_slice(&indir_size.to_ne_bytes());
    bytes[12..16].copy_from_slice(&key_size.to_ne_bytes());
    bytes
}

/// Reads the RSS configuration through `ioctl`, which fills a `struct ethtool_rxfh` request
/// in place as the kernel does. `Ok(None)`: the driver has no RSS (EOPNOTSUPP, as veth), or no
/// key of its own.
pub fn read_rss(mut ioctl: impl FnMut(&mut [u8]) -> io::Result<()>) -> io::Result<Option<NicRss>> {
    let mut sizes = request(0, 0);
    match ioctl(&mut sizes) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(None),
        Err(e) => return Err(e),
    }
    let (indir_size, key_size) = (u32_at(&sizes, 8), u32_at(&sizes, 12));
    if key_size == 0 {
        return Ok(None);
    }
    if indir_size > MAX_INDIR || key_size > MAX_KEY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the driver reports an RSS table of {indir_size} entries and a {key_size}-byte key"),
        ));
    }
    let mut full = request(indir_size, key_size);
    ioctl(&mut full)?;
    if (u32_at(&full, 8), u32_at(&full, 12)) != (indir_size, key_size) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the RSS table or key changed size between two reads",
        ));
    }
    let table_end = RXFH_HEADER + indir_size as usize * 4;
    Ok(Some(NicRss {
        indirection: (0..indir_size as usize)
            .map(|i| u32_at(&full, RXFH_HEADER + i * 4))
            .collect(),
        key: full[table_end..table_end + key_size as usize].to_vec(),
    }))
}

/// The RSS configuration of `interface` (in this network namespace), from its driver.
pub fn nic_rss(interface: &str) -> io::Result<Option<NicRss>> {
    if interface.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    // SAFETY: plain socket(2); the result is checked and closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let result = read_rss(|request: &mut [u8]| {
        // SAFETY: an all-zero ifreq is valid; the name (checked shorter than IFNAMSIZ, so it
        // stays NUL-terminated) and the data pointer are set below.
        let mut ifreq: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifreq.ifr_name.iter_mut().zip(interface.bytes()) {
            *dst = src as libc::c_char;
        }
        ifreq.ifr_ifru.ifru_data = request.as_mut_ptr() as *mut libc::c_char;
        // SAFETY: SIOCETHTOOL reads and writes the `struct ethtool_rxfh` at `ifru_data`, whose
        // buffer (`request`) is as long as its header's sizes say and lives for the call.
        if unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &mut ifreq) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    });
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver with a 4-entry table and a 40-byte key, answering as the kernel does: sizes
    /// first, then table and key into the caller's buffer.
    fn driver(request: &mut [u8]) -> io::Result<()> {
        assert_eq!(u32_at(request, 0), ETHTOOL_GRSSH);
        let (indir, key) = (u32_at(request, 8), u32_at(request, 12));
        if (indir, key) == (0, 0) {
            request[8..12].copy_from_slice(&4u32.to_ne_bytes());
            request[12..16].copy_from_slice(&40u32.to_ne_bytes());
            return Ok(());
        }
        assert_eq!((indir, key), (4, 40));
        for (i, queue) in [0u32, 1, 0, 1].iter().enumerate() {
            request[RXFH_HEADER + i * 4..RXFH_HEADER + i * 4 + 4].copy_from_slice(&queue.to_ne_bytes());
        }
        for (i, byte) in request[RXFH_HEADER + 16..].iter_mut().enumerate() {
            *byte = i as u8 + 1;
        }
        Ok(())
    }

    #[test]
    fn the_key_and_table_come_back_as_the_driver_wrote_them() {
        let rss = read_rss(driver).unwrap().expect("the driver has RSS");
        assert_eq!(rss.indirection, vec![0, 1, 0, 1]);
        assert_eq!(rss.key, (1..=40).collect::<Vec<u8>>());
    }

    #[test]
    fn a_driver_without_rss_or_with_garbage_is_told_apart() {
        let unsupported = |_: &mut [u8]| Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        assert_eq!(read_rss(unsupported).unwrap(), None);
        let no_key = |request: &mut [u8]| {
            request[8..12].copy_from_slice(&128u32.to_ne_bytes());
            Ok(())
        };
        assert_eq!(read_rss(no_key).unwrap(), None);
        let huge = |request: &mut [u8]| {
            request[8..12].copy_from_slice(&u32::MAX.to_ne_bytes());
            request[12..16].copy_from_slice(&40u32.to_ne_bytes());
            Ok(())
        };
        assert!(read_rss(huge).is_err());
        let denied = |_: &mut [u8]| Err(io::Error::from_raw_os_error(libc::EPERM));
        assert!(read_rss(denied).is_err());
    }

    #[test]
    fn veth_in_this_namespace_or_a_missing_interface_answers_without_a_key() {
        // Whatever the host has, the call returns (no panic, no hang); a name that no interface
        // has is an error, not a key.
        assert!(nic_rss("xgate-no-such-if").is_err());
        assert!(nic_rss(&"x".repeat(64)).is_err());
    }
}
