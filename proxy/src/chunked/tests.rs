use super::*;

/// Feeds `input` in one piece; the (consumed, done) outcome or the error.
fn one_shot(input: &[u8], max_body: u64) -> Result<(usize, bool), ChunkError> {
    ChunkedDecoder::new(max_body)
        .feed(input)
        .map(|f| (f.consumed, f.done))
}

/// Feeds `input` split at `at`, checking the `consumed` invariant of each call.
fn split(input: &[u8], at: usize, max_body: u64) -> Result<(usize, bool), ChunkError> {
    let mut decoder = ChunkedDecoder::new(max_body);
    let (a, b) = input.split_at(at);
    let first = decoder.feed(a)?;
    assert!(first.done || first.consumed == a.len());
    if first.done {
        return Ok((first.consumed, true));
    }
    let second = decoder.feed(b)?;
    assert!(second.done || second.consumed == b.len());
    Ok((first.consumed + second.consumed, second.done))
}

/// Feeds `input` one byte at a time.
fn bytewise(input: &[u8], max_body: u64) -> Result<(usize, bool), ChunkError> {
    let mut decoder = ChunkedDecoder::new(max_body);
    let mut consumed = 0;
    for byte in input {
        let feed = decoder.feed(std::slice::from_ref(byte))?;
        consumed += feed.consumed;
        if feed.done {
            return Ok((consumed, true));
        }
    }
    Ok((consumed, false))
}

/// The outcome of `input`, after checking that every way of splitting it agrees.
fn outcome(input: &[u8], max_body: u64) -> Result<(usize, bool), ChunkError> {
    let expected = one_shot(input, max_body);
    assert_eq!(bytewise(input, max_body), expected, "bytewise {input:?}");
    for at in 0..=input.len() {
        assert_eq!(split(input, at, max_body), expected, "split at {at} {input:?}");
    }
    expected
}

const VALID: [&[u8]; 9] = [
    b"0\r\n\r\n",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"A\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\n",
    b"a;ext\r\n0123456789\r\n0;last=1\r\n\r\n",
    b"3;a=b;c=\"q \\\" \\\\ \xff\"\r\nabc\r\n0\r\n\r\n",
    b"1\r\n\r\r\n0\r\nTrailer-A: 1\r\nB: \r\nC:x y\t z\r\n\r\n",
    b"0000000000000000000000001\r\nz\r\n00\r\n\r\n",
    b"ffffFFFF\r\n",
    b"2\r\n\r\n\r\n0\r\n\r\n",
];

#[test]
fn valid_bodies_end_where_expected_however_split() {
    for (i, body) in VALID.iter().enumerate() {
        let expected = if i == 7 {
            (body.len(), false)
        } else {
            (body.len(), true)
        };
        assert_eq!(outcome(body, u64::MAX), Ok(expected), "{body:?}");
        // Bytes after the end are the next message's.
        if expected.1 {
            let more = [*body, b"GET / HTTP/1.1\r\n"].concat();
            assert_eq!(outcome(&more, u64::MAX), Ok(expected));
        }
    }
}

#[test]
fn invalid_sizes() {
    for (body, error) in [
        (&b"0x10\r\n"[..], ChunkError::InvalidSize),
        (b"-1\r\nx\r\n", ChunkError::InvalidSize),
        (b"+1\r\nx\r\n", ChunkError::InvalidSize),
        (b"1 ;a\r\nx\r\n", ChunkError::InvalidSize),
        (b"1 \r\nx\r\n", ChunkError::InvalidSize),
        (b" 1\r\nx\r\n", ChunkError::InvalidSize),
        (b"\r\n", ChunkError::MissingCrlf),
        (b";a\r\n", ChunkError::InvalidSize),
        (b"g\r\n", ChunkError::InvalidSize),
        (b"1\x00\r\nx\r\n", ChunkError::InvalidSize),
        (b"10000000000000000\r\n", ChunkError::SizeOverflow),
        (b"00000ffffffffffffffff0\r\n", ChunkError::SizeOverflow),
        // Each chunk fits, their sum does not (found by the `chunked` fuzz target).
        (b"1\r\nx\r\n0ffffffffffffffff\r\n", ChunkError::SizeOverflow),
    ] {
        assert_eq!(
            outcome(body, u64::MAX),
            Err(error),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    // 16 significant digits are fine.
    assert_eq!(outcome(b"0ffffffffffffffff\r\nabc", u64::MAX), Ok((22, false)));
}

#[test]
fn invalid_extensions() {
    for body in [
        &b"1;\r\nx\r\n"[..],
        b"1; a\r\nx\r\n",
        b"1;a =b\r\nx\r\n",
        b"1;a= b\r\nx\r\n",
        b"1;a=\r\nx\r\n",
        b"1;a=b c\r\nx\r\n",
        b"1;a=\"b\x01\"\r\nx\r\n",
        b"1;a=\"b\"c\r\nx\r\n",
        b"1;a=\"b\\\x7f\"\r\nx\r\n",
        b"1;a@b\r\nx\r\n",
        b"1;a=b;\r\nx\r\n",
    ] {
        assert!(
            matches!(
                outcome(body, u64::MAX),
                Err(ChunkError::InvalidExtension | ChunkError::MissingCrlf)
            ),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    // A CR inside a quoted extension value is never a line end.
    assert_eq!(
        outcome(b"1;a=\"b\r\nx\"\r\n", u64::MAX),
        Err(ChunkError::MissingCrlf)
    );
}

#[test]
fn bare_cr_and_bare_lf_are_refused() {
    for body in [
        &b"1\nx\r\n0\r\n\r\n"[..],
        b"1\rx\r\n0\r\n\r\n",
        b"1;a\nx\r\n",
        b"1;a=\"b\"\n",
        b"1\r\nx\n0\r\n\r\n",
        b"1\r\nx\r0\r\n\r\n",
        b"1\r\nxy\r\n",
        b"0\r\n\n",
        b"0\r\n\r\r\n",
        b"0\r\nA: 1\n\r\n",
        b"0\r\nA: 1\r\r\n\r\n",
    ] {
        assert_eq!(
            outcome(body, u64::MAX),
            Err(ChunkError::MissingCrlf),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn invalid_trailers() {
    for body in [
        &b"0\r\nA B: 1\r\n\r\n"[..],
        b"0\r\nA : 1\r\n\r\n",
        b"0\r\n: 1\r\n\r\n",
        b"0\r\nA\r\n\r\n",
        b"0\r\nA: 1\r\n folded\r\n\r\n",
        b"0\r\nA: 1\x00\r\n\r\n",
        b"0\r\nA: \x7f\r\n\r\n",
    ] {
        assert_eq!(
            outcome(body, u64::MAX),
            Err(ChunkError::InvalidTrailer),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn limits() {
    // The payload limit, decided as soon as the size digits pass it.
    assert_eq!(outcome(b"10\r\n", 16), Ok((4, false)));
    assert_eq!(outcome(b"11\r\n", 16), Err(ChunkError::TooLarge));
    assert_eq!(outcome(b"8\r\n12345678\r\n9\r\n", 16), Err(ChunkError::TooLarge));
    assert_eq!(
        outcome(b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n", 16),
        Ok((31, true))
    );
    assert_eq!(ChunkError::TooLarge.status(), 413);
    assert_eq!(ChunkError::InvalidSize.status(), 400);
    // The size line limit, extensions included.
    let line = |len: usize| [b"1;".as_slice(), &vec![b'a'; len - 2], b"\r\nx\r\n"].concat();
    assert_eq!(
        one_shot(&line(MAX_SIZE_LINE), u64::MAX),
        Ok((MAX_SIZE_LINE + 5, false))
    );
    assert_eq!(
        one_shot(&line(MAX_SIZE_LINE + 1), u64::MAX),
        Err(ChunkError::SizeLineTooLong)
    );
    assert_eq!(
        bytewise(&line(MAX_SIZE_LINE + 1), u64::MAX),
        Err(ChunkError::SizeLineTooLong)
    );
    // The trailer limit, the final CRLF included.
    let trailer = |len: usize| {
        let value = vec![b'v'; len - 7];
        [b"0\r\nA: ".as_slice(), &value, b"\r\n\r\n"].concat()
    };
    let exact = trailer(MAX_TRAILER_BYTES);
    assert_eq!(one_shot(&exact, u64::MAX), Ok((exact.len(), true)));
    assert_eq!(
        one_shot(&trailer(MAX_TRAILER_BYTES + 1), u64::MAX),
        Err(ChunkError::TrailerTooLarge)
    );
}

#[test]
fn done_and_failed_are_sticky() {
    let mut decoder = ChunkedDecoder::new(u64::MAX);
    assert_eq!(
        decoder.feed(b"2\r\nab\r\n0\r\n\r\nXYZ"),
        Ok(Feed {
            consumed: 12,
            done: true
        })
    );
    assert!(decoder.is_done());
    assert_eq!(decoder.payload_len(), 2);
    assert_eq!(
        decoder.feed(b"more"),
        Ok(Feed {
            consumed: 0,
            done: true
        })
    );
    let mut decoder = ChunkedDecoder::new(u64::MAX);
    assert_eq!(decoder.feed(b"x"), Err(ChunkError::InvalidSize));
    assert_eq!(decoder.feed(b"0\r\n\r\n"), Err(ChunkError::InvalidSize));
    assert_eq!(decoder.feed(b""), Err(ChunkError::InvalidSize));
}

/// Pseudo-random mutations of valid bodies: one-shot, split and byte-by-byte feeding agree.
#[test]
fn mutated_bodies_agree_however_split() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"0123456789abcdefABCDEFxX;=\" \t\r\n\\:-\x00\xff";
    for round in 0..3000 {
        let mut body = VALID[round % VALID.len()].to_vec();
        for _ in 0..(next() % 4) {
            let i = (next() as usize) % (body.len() + 1);
            let b = alphabet[(next() as usize) % alphabet.len()];
            match next() % 3 {
                0 if i < body.len() => body[i] = b,
                1 if i < body.len() => {
                    body.remove(i);
                }
                _ => body.insert(i, b),
            }
        }
        let _ = outcome(&body, [u64::MAX, 4][round % 2]);
    }
}
