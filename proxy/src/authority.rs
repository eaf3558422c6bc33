//! The syntax of a request's authority: a `Host` field value (RFC 9110 §7.2, RFC 9112 §3.2)
//! and the authority of an absolute-form request target (RFC 9112 §3.2.2), both
//! `uri-host [ ":" port ]` in RFC 3986 §3.2.2–3.2.3 terms.
//!
//! - `uri-host` is an IP-literal in brackets (an IPv6 address, or `v<hex>.<chars>` for a future
//!   version), or a reg-name: unreserved characters (letters, digits, `-._~`), sub-delims
//!   (`!$&'()*+,;=`) and `%XX` escapes. A dotted IPv4 address is one such reg-name. Anything
//!   else (space, `@`, `/`, `"`, a second `:`, a bare `%`, a bracket out of place) makes the
//!   value invalid, and the request is refused with 400.
//! - `port` is digits only and at most 65535; an empty port after the `:` (`example.com:`) is
//!   allowed, as RFC 3986 allows it (it means the scheme's default).
//! - An empty `Host` value is valid: RFC 9112 §3.2 has clients send it when the target URI has
//!   no authority. Such a request matches only routes without `host`, as one without `Host`
//!   does. An absolute-form target's authority is an `http(s)` URI's, and RFC 9110 §4.2.1 has a
//!   recipient reject an empty host there; RFC 9110 §4.2.4 has it treat `userinfo@` as an error.
//!   Both are 400 ([`valid_target_authority`]).
//!
//! Invariants: no allocation; each function looks at each byte a bounded number of times.

/// Whether `value` (a `Host` field value, without surrounding whitespace) is
/// `uri-host [ ":" port ]`, the host possibly empty.
pub fn valid_host(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let (literal, rest) = value.split_at(close + 1);
        if !valid_ip_literal(&literal[1..literal.len() - 1]) {
            return false;
        }
        match rest {
            [] => return true,
            [b':', port @ ..] => (&[][..], port),
            _ => return false,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon + 1..]),
            None => (value, &[][..]),
        }
    };
    valid_reg_name(host) && valid_port(port)
}

/// Whether `authority` (of an absolute-form `http`/`https` target) is a valid, non-empty host
/// with an optional port, and carries no `userinfo@`.
pub fn valid_target_authority(authority: &[u8]) -> bool {
    let host_empty = authority.is_empty() || authority[0] == b':';
    !host_empty && valid_host(authority)
}

/// RFC 3986 reg-name: `*( unreserved / pct-encoded / sub-delims )`.
fn valid_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        if b == b'%' {
            if !(name.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && name.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else if is_unreserved(b) || is_sub_delim(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// RFC 3986 `port = *DIGIT`, here also at most 65535.
fn valid_port(port: &[u8]) -> bool {
    port.iter().all(u8::is_ascii_digit)
        && port
            .iter()
            .try_fold(0u32, |acc, &d| {
                let value = acc * 10 + u32::from(d - b'0');
                (value <= 65_535).then_some(value)
            })
            .is_some()
}

/// The inside of an IP-literal: an IPv6 address (no zone) or `v<hex>.<unreserved/sub-delims/:>`.
fn valid_ip_literal(inside: &[u8]) -> bool {
    if let Some(future) = inside.strip_prefix(b"v").or_else(|| inside.strip_prefix(b"V")) {
        let Some(dot) = future.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (version, rest) = (&future[..dot], &future[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !rest.is_empty()
            && rest
                .iter()
                .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':');
    }
    std::str::from_utf8(inside).is_ok_and(|text| text.parse::<std::net::Ipv6Addr>().is_ok())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_hosts() {
        for host in [
            "",
            "a",
            "example.com",
            "example.com.",
            "EXAMPLE.com:80",
            "a-b_c~d.e",
            "10.77.0.2",
            "10.77.0.2:8080",
            "999.1.1.1",
            "xn--bcher-kva.example",
            "a%2Db",
            "a!$&'()*+,;=b",
            "example.com:",
            "example.com:0",
            "example.com:65535",
            "example.com:00080",
            ":80",
            "[::1]",
            "[::1]:443",
            "[2001:db8::1]:",
            "[v1.fe80::a+en1]",
        ] {
            assert!(valid_host(host.as_bytes()), "{host:?}");
        }
    }

    #[test]
    fn invalid_hosts() {
        for host in [
            "a b",
            "a\tb",
            "a@b",
            "user@example.com",
            "a/b",
            "a?b",
            "a#b",
            "a\"b",
            "a<b>",
            "a\\b",
            "a%",
            "a%2",
            "a%zz",
            "example.com:65536",
            "example.com:99999999999999999999",
            "example.com:8o",
            "example.com:80:80",
            "example.com: 80",
            "::1",
            "[::1",
            "[::1]x",
            "[::1]80",
            "[]",
            "[example.com]",
            "[fe80::1%25eth0]",
            "[v.x]",
            "[vz.x]",
            "[v1.]",
            "[v1.a b]",
            "a]",
            "a[",
            "é.example",
        ] {
            assert!(!valid_host(host.as_bytes()), "{host:?}");
        }
        assert!(!valid_host(b"a\x00b"));
        assert!(!valid_host(b"a\xffb"));
    }

    #[test]
    fn target_authorities_need_a_host_and_no_userinfo() {
        for good in ["gw", "gw:80", "[::1]:80", "10.0.0.1", "gw:"] {
            assert!(valid_target_authority(good.as_bytes()), "{good:?}");
        }
        for bad in ["", ":80", "user@gw", "user:pw@gw:80", "@gw", "a b", "gw:x"] {
            assert!(!valid_target_authority(bad.as_bytes()), "{bad:?}");
        }
    }
}
