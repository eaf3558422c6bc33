//! A cursor that writes responses into a caller's fixed byte buffer without allocating.
//!
//! Invariants: bytes are only ever written inside the buffer; a write that does not fit is
//! dropped whole and marks the cursor as overflowed, so a truncated response is never reported
//! as written.

/// Appends bytes and decimal numbers to a borrowed buffer.
pub(crate) struct Cursor<'a> {
    buf: &'a mut [u8],
    pos: usize,
    overflow: bool,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Cursor {
            buf,
            pos: 0,
            overflow: false,
        }
    }

    /// Appends `bytes`, or marks overflow if they do not fit.
    pub(crate) fn put(&mut self, bytes: &[u8]) -> &mut Self {
        let end = self.pos.saturating_add(bytes.len());
        if !self.overflow && end <= self.buf.len() {
            self.buf[self.pos..end].copy_from_slice(bytes);
            self.pos = end;
        } else {
            self.overflow = true;
        }
        self
    }

    /// Appends `value` in decimal ASCII.
    pub(crate) fn put_decimal(&mut self, mut value: usize) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.put(&digits[i..])
    }

    /// Appends `ip`: IPv4 in dotted-decimal form, IPv6 in its RFC 5952 text form (no brackets).
    /// Allocation-free.
    pub(crate) fn put_ip(&mut self, ip: std::net::IpAddr) -> &mut Self {
        match ip {
            std::net::IpAddr::V4(ip) => {
                for (i, octet) in ip.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.put(b".");
                    }
                    self.put_decimal(usize::from(octet));
                }
                self
            }
            std::net::IpAddr::V6(ip) => {
                use std::io::Write;
                // The longest IPv6 text form is 45 bytes (an IPv4-mapped address).
                let mut text = [0u8; 48];
                let mut room = &mut text[..];
                let _ = write!(room, "{ip}");
                let len = 48 - room.len();
                self.put(&text[..len])
            }
        }
    }

    /// Appends `addr` as a URI authority: `a.b.c.d:port` or `[v6]:port`.
    pub(crate) fn put_authority(&mut self, addr: std::net::SocketAddr) -> &mut Self {
        match addr {
            std::net::SocketAddr::V4(_) => self.put_ip(addr.ip()),
            std::net::SocketAddr::V6(_) => self.put(b"[").put_ip(addr.ip()).put(b"]"),
        };
        self.put(b":").put_decimal(usize::from(addr.port()))
    }

    /// Bytes written, or `None` if the buffer was too small.
    pub(crate) fn finish(&self) -> Option<usize> {
        (!self.overflow).then_some(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_detects_overflow() {
        let mut buf = [0u8; 8];
        let mut c = Cursor::new(&mut buf);
        c.put(b"ab").put_decimal(0).put_decimal(1234);
        assert_eq!(c.finish(), Some(7));
        assert_eq!(&buf[..7], b"ab01234");
        let mut small = [0u8; 2];
        let mut c = Cursor::new(&mut small);
        c.put(b"abc");
        assert_eq!(c.finish(), None);
    }
}
