//! Response framing for the load generator: finds where one HTTP/1.1 response ends in the bytes a
//! connection has received, without I/O (tested on its own).
//!
//! Invariants:
//! - A response is complete only when its head has been parsed and exactly `Content-Length` body
//!   bytes have been taken after it; nothing past that is consumed, so a pipelined or early next
//!   response is never eaten.
//! - A response the generator cannot frame (chunked, no length, unparsable head, head larger than
//!   the scratch buffer) is an error for that connection, never a guess.

/// Most header fields a response may carry.
const MAX_HEADERS: usize = 32;

/// What the reader needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// More bytes are needed; `consumed` of the offered ones were taken.
    NeedMore { consumed: usize },
    /// One whole response was taken; `consumed` of the offered bytes belonged to it.
    Done {
        consumed: usize,
        status: u16,
        close: bool,
    },
}

/// Why a response could not be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramingError {
    /// The head is not valid HTTP/1.x.
    Malformed,
    /// The head does not fit in the bytes the reader may look at.
    HeadTooLarge,
    /// No `Content-Length` (chunked or close-delimited bodies are not supported by the generator).
    NoLength,
}

/// Tracks one response as its bytes arrive.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseReader {
    /// `Some` once the head is parsed: (status, close, body bytes still to take).
    body: Option<(u16, bool, usize)>,
    /// Bytes taken of the response in progress.
    taken: usize,
    /// Bytes of the last complete response.
    last: usize,
}

impl ResponseReader {
    /// Feeds received bytes that are not yet consumed (`window`; a head must fit within
    /// `head_limit` bytes). An interim 1xx response (other than 101) is skipped: its head is
    /// consumed and the final response is awaited.
    pub fn feed(&mut self, window: &[u8], head_limit: usize) -> Result<Progress, FramingError> {
        let mut consumed = 0;
        if self.body.is_none() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(window) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let status = response.code.unwrap_or(0);
                    let mut length = None;
                    let mut close = response.version == Some(0);
                    for header in response.headers.iter() {
                        if header.name.eq_ignore_ascii_case("content-length") {
                            let text =
                                std::str::from_utf8(header.value).map_err(|_| FramingError::Malformed)?;
                            length = Some(
                                text.trim()
                                    .parse::<usize>()
                                    .map_err(|_| FramingError::Malformed)?,
                            );
                        } else if header.name.eq_ignore_ascii_case("connection") {
                            close = header.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    if (100..200).contains(&status) && status != 101 {
                        self.taken += head_len;
                        return Ok(Progress::NeedMore { consumed: head_len });
                    }
                    // 101, 204 and 304 carry no body.
                    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
                    let length = match (bodiless, length) {
                        (true, _) => 0,
                        (false, Some(length)) => length,
                        (false, None) => return Err(FramingError::NoLength),
                    };
                    self.body = Some((status, close, length));
                    consumed = head_len;
                }
                Ok(httparse::Status::Partial) => {
                    if window.len() >= head_limit {
                        return Err(FramingError::HeadTooLarge);
                    }
                    return Ok(Progress::NeedMore { consumed: 0 });
                }
                Err(_) => return Err(FramingError::Malformed),
            }
        }
        let (status, close, remaining) = self.body.expect("head parsed above");
        let take = remaining.min(window.len() - consumed);
        consumed += take;
        self.taken += consumed;
        if take == remaining {
            self.body = None;
            self.last = std::mem::take(&mut self.taken);
            Ok(Progress::Done {
                consumed,
                status,
                close,
            })
        } else {
            self.body = Some((status, close, remaining - take));
            Ok(Progress::NeedMore { consumed })
        }
    }

    /// Whether the head is parsed and only body bytes are awaited (they need not be looked at).
    pub fn in_body(&self) -> bool {
        self.body.is_some()
    }

    /// Head and body bytes of the last complete response.
    pub fn last_response_bytes(&self) -> usize {
        self.last
    }

    pub fn reset(&mut self) {
        self.body = None;
        self.taken = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";

    #[test]
    fn whole_response_in_one_piece() {
        let mut reader = ResponseReader::default();
        assert_eq!(
            reader.feed(OK, 4096),
            Ok(Progress::Done {
                consumed: OK.len(),
                status: 200,
                close: false
            })
        );
        assert_eq!(reader.last_response_bytes(), OK.len());
    }

    #[test]
    fn response_split_at_every_byte() {
        for split in 1..OK.len() {
            let mut reader = ResponseReader::default();
            // The caller re-offers unconsumed bytes together with new ones.
            let first = reader.feed(&OK[..split], 4096).unwrap();
            let Progress::NeedMore { consumed } = first else {
                panic!("split {split}: done too early")
            };
            let second = reader.feed(&OK[consumed..], 4096).unwrap();
            assert_eq!(
                second,
                Progress::Done {
                    consumed: OK.len() - consumed,
                    status: 200,
                    close: false
                },
                "split {split}"
            );
        }
    }

    #[test]
    fn next_response_is_not_eaten() {
        let mut two = OK.to_vec();
        two.extend_from_slice(OK);
        let mut reader = ResponseReader::default();
        assert_eq!(
            reader.feed(&two, 4096),
            Ok(Progress::Done {
                consumed: OK.len(),
                status: 200,
                close: false
            })
        );
    }

    #[test]
    fn close_statuses_and_bodiless_responses() {
        let mut reader = ResponseReader::default();
        let closing = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            reader.feed(closing, 4096),
            Ok(Progress::Done {
                consumed: closing.len(),
                status: 400,
                close: true
            })
        );
        let no_content = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert!(matches!(
            reader.feed(no_content, 4096),
            Ok(Progress::Done { status: 204, .. })
        ));
        let http10 = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            reader.feed(http10, 4096),
            Ok(Progress::Done { close: true, .. })
        ));
    }

    #[test]
    fn interim_responses_are_skipped() {
        let mut reader = ResponseReader::default();
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
        let mut bytes = interim.to_vec();
        bytes.extend_from_slice(OK);
        assert_eq!(
            reader.feed(&bytes, 4096),
            Ok(Progress::NeedMore {
                consumed: interim.len()
            })
        );
        assert_eq!(
            reader.feed(&bytes[interim.len()..], 4096),
            Ok(Progress::Done {
                consumed: OK.len(),
                status: 200,
                close: false
            })
        );
    }

    #[test]
    fn unframeable_responses_are_errors() {
        let mut reader = ResponseReader::default();
        assert_eq!(
            reader.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 4096),
            Err(FramingError::NoLength)
        );
        assert_eq!(
            reader.feed(b"HTTX/1.1 200 OK\r\n\r\n", 4096),
            Err(FramingError::Malformed)
        );
        assert_eq!(
            reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 4096),
            Err(FramingError::Malformed)
        );
        assert_eq!(
            reader.feed(b"HTTP/1.1 200 OK\r\nX: aaaaaaaa", 16),
            Err(FramingError::HeadTooLarge)
        );
    }

    #[test]
    fn large_body_taken_in_parts() {
        let mut reader = ResponseReader::default();
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n";
        assert_eq!(
            reader.feed(head, 4096),
            Ok(Progress::NeedMore { consumed: head.len() })
        );
        assert!(reader.in_body());
        let chunk = [b'x'; 4096];
        assert_eq!(
            reader.feed(&chunk, 4096),
            Ok(Progress::NeedMore { consumed: 4096 })
        );
        assert_eq!(
            reader.feed(&chunk, 4096),
            Ok(Progress::NeedMore { consumed: 4096 })
        );
        assert!(matches!(
            reader.feed(&chunk, 4096),
            Ok(Progress::Done { consumed: 1808, .. })
        ));
    }
}
