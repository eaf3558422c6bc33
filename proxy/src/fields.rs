//! Header-field helpers shared by the two directions of forwarding: which fields are
//! hop-by-hop, and merging a list-valued field with the gateway's own element.
//!
//! Invariants: the framing fields (`Host`, `Content-Length`, `Transfer-Encoding`) are never
//! treated as hop-by-hop, even when a `Connection` field names them, so a peer cannot make the
//! gateway strip the fields the next hop frames the message with.

use httparse::Header;

use crate::{request::list_items, writer::Cursor};

/// Fields that describe one connection, not the message (RFC 9110 §7.6.1, plus the legacy
/// `Keep-Alive`, `Proxy-Connection` and `Proxy-Authenticate`/`Proxy-Authorization`).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Fields a `Connection` field cannot make hop-by-hop.
const FRAMING: [&str; 3] = ["host", "content-length", "transfer-encoding"];

/// Whether the field `name` must not be forwarded: it is hop-by-hop, or a `Connection` field
/// among `headers` names it (unless it frames the message).
pub(crate) fn is_hop_by_hop(name: &str, headers: &[Header<'_>]) -> bool {
    if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
        return true;
    }
    if FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f)) {
        return false;
    }
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| list_items(h.value))
        .any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
}

/// Writes one `name: v1, v2, ..., own` field: the non-empty values of every forwarded field
/// called `name` among `headers`, in order, then the gateway's own element written by `own`.
pub(crate) fn put_merged(
    cursor: &mut Cursor<'_>,
    name: &str,
    headers: &[Header<'_>],
    own: impl FnOnce(&mut Cursor<'_>),
) {
    cursor.put(name.as_bytes()).put(b": ");
    for header in headers {
        if header.name.eq_ignore_ascii_case(name) && !is_hop_by_hop(header.name, headers) {
            let value = crate::request::trim(header.value);
            if !value.is_empty() {
                cursor.put(value).put(b", ");
            }
        }
    }
    own(cursor);
    cursor.put(b"\r\n");
}

/// Writes one field as received.
pub(crate) fn put_field(cursor: &mut Cursor<'_>, header: &Header<'_>) {
    cursor
        .put(header.name.as_bytes())
        .put(b": ")
        .put(header.value)
        .put(b"\r\n");
}

/// Whether a configured value can go in a field without breaking the head: no CR, LF or NUL.
pub(crate) fn is_safe_value(value: &str) -> bool {
    !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}
