//! A streaming, validating decoder for the chunked transfer coding that passes bytes through:
//! it finds where a chunked body ends and refuses invalid framing, while the caller forwards the
//! bytes it was fed unchanged.
//!
//! Grammar accepted (RFC 9112 §7.1, strictly):
//! - a chunk-size line is 1+ hex digits (at most 16 significant, else [`ChunkError::SizeOverflow`]),
//!   then optional extensions `;name` or `;name=value` (token, or quoted-string without control
//!   bytes), then CRLF; no whitespace anywhere in the line (the optional `BWS` around `;` and `=`
//!   is refused: parsers disagree on it), and at most [`MAX_SIZE_LINE`] bytes without the CRLF;
//! - each chunk's data is followed by CRLF;
//! - after the last (zero-size) chunk, trailer fields `name: value` (token name, no whitespace
//!   before the colon, no obs-fold, no control bytes but HTAB in the value), each ending in CRLF,
//!   at most [`MAX_TRAILER_BYTES`] bytes in all, and a final CRLF.
//!
//! Invariants:
//! - the state is a few words and `Copy`; nothing is allocated;
//! - the outcome of feeding a byte sequence does not depend on how it is split across calls;
//! - [`Feed::consumed`] is less than the bytes fed only when the body has ended: the bytes after
//!   the end belong to the next message;
//! - the payload (sum of chunk sizes) never exceeds the `max_body` given to
//!   [`ChunkedDecoder::new`]: a chunk-size that would pass it is refused with
//!   [`ChunkError::TooLarge`] as soon as its digits show it;
//! - a bare CR or bare LF anywhere in the framing is an error; errors are sticky.

/// Most bytes of a chunk-size line (size and extensions, CRLF excluded).
pub const MAX_SIZE_LINE: usize = 1024;

/// Most bytes of the trailer section (fields and the final CRLF).
pub const MAX_TRAILER_BYTES: usize = 8192;

/// Why a chunked body is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk-size line does not start with a hex digit, or a size is followed by something
    /// other than `;` or CRLF (whitespace, `x`, `-`, ...).
    InvalidSize,
    /// A chunk size has more than 16 significant hex digits, or the chunk sizes so far sum
    /// past `u64::MAX`.
    SizeOverflow,
    /// A chunk extension is not `;token[=token|quoted-string]`.
    InvalidExtension,
    /// A chunk-size line is longer than [`MAX_SIZE_LINE`].
    SizeLineTooLong,
    /// A CR not followed by LF, an LF not preceded by CR, or chunk data not followed by CRLF.
    MissingCrlf,
    /// A trailer line is not a well-formed `name: value` field.
    InvalidTrailer,
    /// The trailer section is longer than [`MAX_TRAILER_BYTES`].
    TrailerTooLarge,
    /// The payload exceeds the body limit.
    TooLarge,
}

impl ChunkError {
    /// The status a gateway answers a client's body with this error: 413 for
    /// [`ChunkError::TooLarge`], 400 for the rest.
    pub fn status(self) -> u16 {
        match self {
            ChunkError::TooLarge => 413,
            _ => 400,
        }
    }
}

/// What one [`ChunkedDecoder::feed`] call found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feed {
    /// Bytes of the input that belong to this body (all of them unless `done`).
    pub consumed: usize,
    /// The body's final CRLF has been consumed.
    pub done: bool,
}

/// Where the decoder is in the chunked grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first hex digit of a chunk size.
    SizeStart,
    /// In the hex digits of a chunk size.
    Size,
    /// After `;`, before an extension name.
    ExtNameStart,
    /// In an extension name.
    ExtName,
    /// After `=`, before an extension value.
    ExtValueStart,
    /// In a token extension value.
    ExtToken,
    /// In a quoted-string extension value.
    Quoted,
    /// After a backslash in a quoted string.
    QuotedPair,
    /// After a quoted string's closing quote.
    QuotedEnd,
    /// After the CR ending a size line.
    SizeLf,
    /// In chunk data; `chunk` bytes remain.
    Data,
    /// After chunk data, expecting CR.
    DataCr,
    /// After chunk data and CR, expecting LF.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value.
    TrailerValue,
    /// After the CR ending a trailer field.
    TrailerLf,
    /// After the CR of the final empty line.
    FinalLf,
    /// The body has ended.
    Done,
    /// The body was refused.
    Failed(ChunkError),
}

/// Finds the end of one chunked body fed to it in pieces; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: State,
    /// The size being parsed, then the data bytes left in the current chunk.
    chunk: u64,
    /// Payload bytes of the chunks whose size lines are complete.
    total: u64,
    max_body: u64,
    /// Bytes of the current size line, or of the trailer section.
    line: usize,
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body whose payload may be at most `max_body` bytes.
    pub fn new(max_body: u64) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::SizeStart,
            chunk: 0,
            total: 0,
            max_body,
            line: 0,
        }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes announced by the chunk sizes read so far.
    pub fn payload_len(&self) -> u64 {
        self.total
    }

    /// Walks the next `bytes` of the body. Once done, further calls consume nothing; once
    /// failed, they return the same error.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Feed, ChunkError> {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Done => break,
                State::Failed(error) => return Err(error),
                State::Data => {
                    let available = (bytes.len() - i) as u64;
                    let n = self.chunk.min(available);
                    i += n as usize;
                    self.chunk -= n;
                    if self.chunk == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    if let Err(error) = self.step(bytes[i]) {
                        self.state = State::Failed(error);
                        return Err(error);
                    }
                    i += 1;
                }
            }
        }
        match self.state {
            State::Failed(error) => Err(error),
            state => Ok(Feed {
                consumed: i,
                done: state == State::Done,
            }),
        }
    }

    /// Moves past one framing byte (any state but `Data`, `Done` and `Failed`).
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        use State::*;
        let in_size_line = matches!(
            self.state,
            SizeStart
                | Size
                | ExtNameStart
                | ExtName
                | ExtValueStart
                | ExtToken
                | Quoted
                | QuotedPair
                | QuotedEnd
        );
        if in_size_line && b != b'\r' {
            self.line += 1;
            if self.line > MAX_SIZE_LINE {
                return Err(ChunkError::SizeLineTooLong);
            }
        }
        if matches!(
            self.state,
            TrailerStart | TrailerName | TrailerValue | TrailerLf | FinalLf
        ) {
            self.line += 1;
            if self.line > MAX_TRAILER_BYTES {
                return Err(ChunkError::TrailerTooLarge);
            }
        }
        // A bare LF is never valid framing, whatever the state.
        if b == b'\n' && !matches!(self.state, SizeLf | DataLf | TrailerLf | FinalLf) {
            return Err(ChunkError::MissingCrlf);
        }
        self.state = match (self.state, b) {
            (SizeStart, _) => {
                self.chunk = 0;
                self.add_digit(b)?;
                Size
            }
            (Size, b';') => ExtNameStart,
            (Size | ExtName | ExtToken | QuotedEnd, b'\r') => SizeLf,
            (Size, _) => {
                self.add_digit(b)?;
                Size
            }
            (ExtNameStart | ExtName, _) if is_tchar(b) => ExtName,
            (ExtName | ExtToken | QuotedEnd, b';') => ExtNameStart,
            (ExtName, b'=') => ExtValueStart,
            (ExtValueStart, b'"') => Quoted,
            (ExtValueStart | ExtToken, _) if is_tchar(b) => ExtToken,
            (Quoted, b'"') => QuotedEnd,
            (Quoted, b'\\') => QuotedPair,
            (Quoted | QuotedPair, _) if is_text(b) => Quoted,
            (ExtNameStart | ExtName | ExtValueStart | ExtToken | Quoted | QuotedPair | QuotedEnd, _) => {
                return Err(if b == b'\r' {
                    ChunkError::MissingCrlf
                } else {
                    ChunkError::InvalidExtension
                })
            }
            (SizeLf, b'\n') => {
                self.line = 0;
                if self.chunk == 0 {
                    TrailerStart
                } else {
                    self.total += self.chunk;
                    Data
                }
            }
            (DataCr, b'\r') => DataLf,
            (DataLf | TrailerLf, b'\n') => {
                if self.state == DataLf {
                    SizeStart
                } else {
                    TrailerStart
                }
            }
            (TrailerStart, b'\r') => FinalLf,
            (FinalLf, b'\n') => Done,
            (TrailerStart | TrailerName, _) if is_tchar(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if is_text(b) => TrailerValue,
            (TrailerStart | TrailerName | TrailerValue, _) => return Err(ChunkError::InvalidTrailer),
            (SizeLf | DataCr | DataLf | TrailerLf | FinalLf, _) => return Err(ChunkError::MissingCrlf),
            (Data | Done | Failed(_), _) => unreachable!("handled by feed"),
        };
        Ok(())
    }

    /// Appends hex digit `b` to the size being parsed, checking overflow and the body limit.
    fn add_digit(&mut self, b: u8) -> Result<(), ChunkError> {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            b'\r' => return Err(ChunkError::MissingCrlf),
            _ => return Err(ChunkError::InvalidSize),
        };
        if self.chunk > u64::MAX >> 4 {
            return Err(ChunkError::SizeOverflow);
        }
        self.chunk = self.chunk << 4 | u64::from(digit);
        // The payload so far plus this chunk must fit in a u64 before it can be held to the
        // limit: with no limit (`u64::MAX`, an upstream's response) two large chunks would
        // otherwise wrap the total.
        match self.total.checked_add(self.chunk) {
            None => return Err(ChunkError::SizeOverflow),
            Some(total) if total > self.max_body => return Err(ChunkError::TooLarge),
            Some(_) => {}
        }
        Ok(())
    }
}

/// A `tchar` of RFC 9110 §5.6.2 (the bytes of a token).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte allowed in a field value or quoted string: HTAB, SP, visible ASCII or obs-text.
fn is_text(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

#[cfg(test)]
mod tests;
