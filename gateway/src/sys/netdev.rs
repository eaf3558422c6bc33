//! What a driver says it can do with XDP: the `netdev` generic-netlink family's `dev-get`
//! (Linux 6.3 and later), read for `xgate doctor`. Its `xdp-features` bits say whether the
//! driver runs XDP natively, redirects (which AF_XDP needs) and offers AF_XDP zero-copy.
//!
//! The messages are built and parsed here by hand (a generic-netlink header and attributes), so
//! the parsing is a pure function over bytes, tested on hand-made answers; the socket calls are
//! this module's only `unsafe`.

use std::io;

/// The driver's XDP features (`enum netdev_xdp_act` of the kernel's uapi).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpFeatures {
    pub bits: u64,
    /// Most fragments per frame in zero-copy mode (0 when the driver gives none).
    pub zero_copy_max_segments: u32,
}

impl XdpFeatures {
    /// XDP runs in the driver (native mode).
    pub const BASIC: u64 = 1 << 0;
    /// XDP_REDIRECT, and so AF_XDP, in native mode.
    pub const REDIRECT: u64 = 1 << 1;
    /// The driver can transmit redirected frames (`ndo_xdp_xmit`).
    pub const NDO_XMIT: u64 = 1 << 2;
    /// AF_XDP zero-copy.
    pub const XSK_ZEROCOPY: u64 = 1 << 3;

    pub fn has(self, bit: u64) -> bool {
        self.bits & bit != 0
    }

    /// The features' uapi names, for the doctor's detail.
    pub fn names(self) -> Vec<&'static str> {
        const NAMES: [&str; 7] = [
            "basic",
            "redirect",
            "ndo-xmit",
            "xsk-zerocopy",
            "hw-offload",
            "rx-sg",
            "ndo-xmit-sg",
        ];
        NAMES
            .iter()
            .enumerate()
            .filter(|(bit, _)| self.bits & 1 << bit != 0)
            .map(|(_, name)| *name)
            .collect()
    }
}

const NLMSG_HEADER: usize = 16;
const GENL_HEADER: usize = 4;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NETDEV_A_DEV_XDP_ZC_MAX_SEGS: u16 = 4;
/// Attribute types carry two flag bits (nested, network byte order) above the type.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A generic-netlink request: `cmd` to `family`, with `attributes` (type, value).
fn request(family: u16, cmd: u8, seq: u32, attributes: &[(u16, &[u8])]) -> Vec<u8> {
    let mut message = vec![0u8; NLMSG_HEADER];
    message.extend_from_slice(&[cmd, 1, 0, 0]);
    for (kind, value) in attributes {
        let length = 4 + value.len();
        message.extend_from_slice(&(length as u16).to_ne_bytes());
        message.extend_from_slice(&kind.to_ne_bytes());
        message.extend_from_slice(value);
        message.resize(message.len().next_multiple_of(4), 0);
    }
    let total = message.len() as u32;
    message[0..4].copy_from_slice(&total.to_ne_bytes());
    message[4..6].copy_from_slice(&family.to_ne_bytes());
    message[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    message[8..12].copy_from_slice(&seq.to_ne_bytes());
    message
}

/// The attributes of the one answer in `reply` (type, value), or the kernel's error.
fn attributes(reply: &[u8]) -> io::Result<Vec<(u16, &[u8])>> {
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed netlink answer");
    let header = reply.get(..NLMSG_HEADER).ok_or_else(malformed)?;
    let length = u32::from_ne_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let kind = u16::from_ne_bytes(header[4..6].try_into().expect("2 bytes"));
    let message = reply.get(..length).ok_or_else(malformed)?;
    if kind == NLMSG_ERROR {
        let errno = message
            .get(NLMSG_HEADER..NLMSG_HEADER + 4)
            .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(malformed)?;
        return Err(io::Error::from_raw_os_error(-errno));
    }
    let mut rest = message.get(NLMSG_HEADER + GENL_HEADER..).ok_or_else(malformed)?;
    let mut out = Vec::new();
    while rest.len() >= 4 {
        let length = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if length < 4 || length > rest.len() {
            return Err(malformed());
        }
        out.push((kind, &rest[4..length]));
        rest = rest.get(length.next_multiple_of(4)..).unwrap_or(&[]);
    }
    Ok(out)
}

/// The `netdev` family's id from a CTRL_CMD_GETFAMILY answer.
fn parse_family(reply: &[u8]) -> io::Result<u16> {
    attributes(reply)?
        .into_iter()
        .find(|(kind, _)| *kind == CTRL_ATTR_FAMILY_ID)
        .and_then(|(_, value)| Some(u16::from_ne_bytes(value.get(..2)?.try_into().ok()?)))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no family id in the answer"))
}

/// The XDP features from a `dev-get` answer.
fn parse_dev(reply: &[u8]) -> io::Result<XdpFeatures> {
    let mut features = None;
    let mut zero_copy_max_segments = 0;
    for (kind, value) in attributes(reply)? {
        match kind {
            NETDEV_A_DEV_XDP_FEATURES => {
                features = value
                    .get(..8)
                    .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")));
            }
            NETDEV_A_DEV_XDP_ZC_MAX_SEGS => {
                zero_copy_max_segments = value
                    .get(..4)
                    .map_or(0, |b| u32::from_ne_bytes(b.try_into().expect("4 bytes")));
            }
            _ => {}
        }
    }
    let bits = features
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no xdp-features in the answer"))?;
    Ok(XdpFeatures {
        bits,
        zero_copy_max_segments,
    })
}

/// A generic-netlink socket, closed on drop.
struct GenericNetlink(std::os::fd::OwnedFd);

impl GenericNetlink {
    fn open() -> io::Result<GenericNetlink> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2); the result is checked before it is owned.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a socket just opened and owned by nothing else.
        Ok(GenericNetlink(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends `message` to the kernel and returns its answer.
    fn exchange(&self, message: &[u8]) -> io::Result<Vec<u8>> {
        use std::os::fd::AsRawFd;
        let fd = self.0.as_raw_fd();
        // SAFETY: send reads `message.len()` bytes from the live slice; the destination is the
        // socket's default (the kernel, port 0).
        if unsafe { libc::send(fd, message.as_ptr().cast(), message.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buffer = vec![0u8; 8192];
        // SAFETY: recv writes at most `buffer.len()` bytes into the live buffer.
        let n = unsafe { libc::recv(fd, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buffer.truncate(n as usize);
        Ok(buffer)
    }
}

/// The XDP features of interface `ifindex` (in the calling thread's network namespace).
/// `ErrorKind::NotFound`-like errors (ENOENT for the family) mean a kernel before 6.3.
pub fn xdp_features(ifindex: u32) -> io::Result<XdpFeatures> {
    let socket = GenericNetlink::open()?;
    let family = parse_family(&socket.exchange(&request(
        GENL_ID_CTRL,
        CTRL_CMD_GETFAMILY,
        1,
        &[(CTRL_ATTR_FAMILY_NAME, b"netdev\0")],
    ))?)?;
    parse_dev(&socket.exchange(&request(
        family,
        NETDEV_CMD_DEV_GET,
        2,
        &[(NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes())],
    ))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as the kernel builds it: a netlink header of `kind`, a genl header, attributes.
    fn answer(kind: u16, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut message = request(kind, 1, 7, attributes);
        message[6..8].copy_from_slice(&0u16.to_ne_bytes());
        message
    }

    #[test]
    fn requests_are_padded_and_sized() {
        let message = request(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            1,
            &[(CTRL_ATTR_FAMILY_NAME, b"netdev\0")],
        );
        // 16 + 4 + (4 + 7, padded to 12).
        assert_eq!(message.len(), 32);
        assert_eq!(u32::from_ne_bytes(message[0..4].try_into().unwrap()), 32);
        assert_eq!(message[16], CTRL_CMD_GETFAMILY);
        assert_eq!(&message[24..31], b"netdev\0");
    }

    #[test]
    fn the_family_id_and_the_features_are_read() {
        let family = answer(
            GENL_ID_CTRL,
            &[
                (CTRL_ATTR_FAMILY_NAME, b"netdev\0"),
                (CTRL_ATTR_FAMILY_ID, &0x21u16.to_ne_bytes()),
            ],
        );
        assert_eq!(parse_family(&family).unwrap(), 0x21);
        let bits = XdpFeatures::BASIC | XdpFeatures::REDIRECT | XdpFeatures::XSK_ZEROCOPY;
        let dev = answer(
            0x21,
            &[
                (NETDEV_A_DEV_IFINDEX, &3u32.to_ne_bytes()),
                (NETDEV_A_DEV_XDP_FEATURES, &bits.to_ne_bytes()),
                (NETDEV_A_DEV_XDP_ZC_MAX_SEGS, &1u32.to_ne_bytes()),
            ],
        );
        let features = parse_dev(&dev).unwrap();
        assert_eq!(features.bits, bits);
        assert_eq!(features.zero_copy_max_segments, 1);
        assert!(features.has(XdpFeatures::XSK_ZEROCOPY));
        assert_eq!(features.names(), ["basic", "redirect", "xsk-zerocopy"]);
    }

    #[test]
    fn errors_and_garbage_are_errors_not_panics() {
        let mut error = answer(NLMSG_ERROR, &[]);
        error.truncate(NLMSG_HEADER);
        error.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
        error.extend_from_slice(&[0; 16]);
        let len = error.len() as u32;
        error[0..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(
            parse_family(&error).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        assert!(parse_dev(&[0; 5]).is_err());
        let mut short = answer(0x21, &[(NETDEV_A_DEV_XDP_FEATURES, &1u64.to_ne_bytes())]);
        short[20..22].copy_from_slice(&200u16.to_ne_bytes());
        assert!(parse_dev(&short).is_err());
        assert!(parse_dev(&answer(0x21, &[])).is_err(), "no features attribute");
    }
}
