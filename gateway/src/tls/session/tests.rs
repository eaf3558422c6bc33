//! The TLS session over an in-memory transport, against a rustls client: a handshake and bytes
//! both ways, a ClientHello split into one-byte segments, bytes that are not TLS, an oversized
//! record, mutated ClientHellos (a poor fuzzer for stable Rust), and sending bounded by the
//! transport's room.

use std::collections::VecDeque;

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, ServerName},
    ClientConfig, ClientConnection, RootCertStore,
};

use super::*;
use crate::config::{CertificateConfig, TlsConfig};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/testdata");

/// Bytes both ways, with a bounded send buffer like a socket's.
struct Pipe {
    /// From the client to the session.
    inbound: VecDeque<u8>,
    /// From the session to the client.
    outbound: VecDeque<u8>,
    capacity: usize,
    finished: bool,
}

impl Pipe {
    fn new(capacity: usize) -> Pipe {
        Pipe {
            inbound: VecDeque::new(),
            outbound: VecDeque::new(),
            capacity,
            finished: false,
        }
    }
}

impl Transport for Pipe {
    fn can_recv(&self) -> bool {
        !self.inbound.is_empty()
    }

    fn recv_into(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.inbound.len());
        for (slot, byte) in buf.iter_mut().zip(self.inbound.drain(..n)) {
            *slot = byte;
        }
        n
    }

    fn peer_finished(&self) -> bool {
        self.finished && self.inbound.is_empty()
    }

    fn send_from(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.send_room());
        self.outbound.extend(&bytes[..n]);
        n
    }

    fn send_room(&self) -> usize {
        self.capacity - self.outbound.len()
    }
}

fn server_config() -> Arc<ServerConfig> {
    let config = TlsConfig {
        certificate: vec![CertificateConfig {
            cert: format!("{FIXTURES}/ec-p256.pem").into(),
            key: format!("{FIXTURES}/ec-p256.key").into(),
            names: vec!["fixture.test".into()],
            default: true,
        }],
        ..TlsConfig::default()
    };
    crate::tls::server_config(&config).unwrap().unwrap().config
}

fn client() -> ClientConnection {
    let mut roots = RootCertStore::empty();
    let pem = std::fs::read(format!("{FIXTURES}/ec-p256.pem")).unwrap();
    roots.add(CertificateDer::from_pem_slice(&pem).unwrap()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    ClientConnection::new(Arc::new(config), ServerName::try_from("fixture.test").unwrap()).unwrap()
}

/// Moves bytes between `client` and `session` until neither has anything to say; the client's
/// bytes go in pieces of at most `piece` bytes, the session pumped after each.
fn exchange(client: &mut ClientConnection, session: &mut TlsSession, pipe: &mut Pipe, piece: usize) {
    for _ in 0..100 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        for chunk in to_server.chunks(piece) {
            pipe.inbound.extend(chunk);
            session.pump(pipe);
        }
        session.pump(pipe);
        let from_server: Vec<u8> = pipe.outbound.drain(..).collect();
        if to_server.is_empty() && from_server.is_empty() {
            return;
        }
        let mut reader = from_server.as_slice();
        while !reader.is_empty() {
            client.read_tls(&mut reader).unwrap();
        }
        if let Err(error) = client.process_new_packets() {
            // The tests that feed bad bytes never get here: a client error is a failed test.
            panic!("the client refused the session's answer: {error}");
        }
    }
    panic!("the exchange did not settle");
}

fn session() -> TlsSession {
    TlsSession::new(server_config(), 0, 1).unwrap()
}

#[test]
fn a_handshake_completes_and_bytes_cross_both_ways() {
    let (mut client, mut session, mut pipe) = (client(), session(), Pipe::new(64 * 1024));
    exchange(&mut client, &mut session, &mut pipe, usize::MAX);
    assert!(!session.is_handshaking() && !client.is_handshaking());
    assert_eq!(
        session.take_outcome(),
        Some(HandshakeOutcome::Done {
            tls13: true,
            resumed: false
        })
    );
    assert_eq!(session.take_outcome(), None, "counted once");
    client
        .writer()
        .write_all(b"GET / HTTP/1.1\r\nHost: fixture.test\r\n\r\n")
        .unwrap();
    exchange(&mut client, &mut session, &mut pipe, usize::MAX);
    assert_eq!(
        session.buffered(),
        b"GET / HTTP/1.1\r\nHost: fixture.test\r\n\r\n"
    );
    session.consume(4);
    assert!(session.buffered().starts_with(b"/ HTTP/1.1"));
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(session.send(&mut pipe, response), response.len());
    exchange(&mut client, &mut session, &mut pipe, usize::MAX);
    let mut answer = vec![0u8; 256];
    let n = client.reader().read(&mut answer).unwrap();
    assert_eq!(&answer[..n], response);
    // close_notify from the client: nothing more will come.
    client.send_close_notify();
    exchange(&mut client, &mut session, &mut pipe, usize::MAX);
    assert!(session.peer_done());
}

#[test]
fn a_client_hello_in_one_byte_segments_still_completes() {
    let (mut client, mut session, mut pipe) = (client(), session(), Pipe::new(64 * 1024));
    exchange(&mut client, &mut session, &mut pipe, 1);
    assert!(session.failure().is_none(), "{:?}", session.failure());
    assert!(!session.is_handshaking());
}

#[test]
fn bytes_that_are_not_tls_fail_the_session_with_an_alert() {
    let (mut session, mut pipe) = (session(), Pipe::new(64 * 1024));
    pipe.inbound.extend(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    session.pump(&mut pipe);
    assert_eq!(session.failure(), Some(FailureKind::NotTls));
    assert_eq!(
        session.take_outcome(),
        Some(HandshakeOutcome::Failed(FailureKind::NotTls))
    );
    assert_eq!(pipe.outbound.front(), Some(&0x15), "an alert record");
    assert!(session.peer_done());
    assert_eq!(session.send_room(64 * 1024), 0);
}

#[test]
fn an_oversized_record_fails_the_session() {
    let (mut session, mut pipe) = (session(), Pipe::new(64 * 1024));
    // A handshake record claiming 65,535 bytes (the limit is 16,384 plus a little).
    pipe.inbound.extend([0x16, 0x03, 0x01, 0xff, 0xff]);
    pipe.inbound.extend(std::iter::repeat_n(0u8, 20_000));
    session.pump(&mut pipe);
    assert!(session.failure().is_some());
    assert_eq!(pipe.outbound.front(), Some(&0x15), "an alert record");
}

#[test]
fn mutated_client_hellos_end_in_a_handshake_or_a_failure_never_a_panic() {
    let mut hello = Vec::new();
    let mut c = client();
    while c.wants_write() {
        c.write_tls(&mut hello).unwrap();
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let config = server_config();
    let mut failures = 0;
    for _ in 0..400 {
        let mut input = hello.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % input.len() as u64) as usize;
            match next() % 3 {
                0 => input[at] ^= 1 << (next() % 8),
                1 => input[at] = next() as u8,
                _ => input.truncate(at.max(1)),
            }
        }
        let mut session = TlsSession::new(Arc::clone(&config), 0, 1).unwrap();
        let mut pipe = Pipe::new(64 * 1024);
        pipe.inbound.extend(&input);
        session.pump(&mut pipe);
        pipe.finished = true;
        session.pump(&mut pipe);
        assert!(session.is_handshaking() || session.failure().is_some() || session.peer_done());
        failures += usize::from(session.failure().is_some());
    }
    assert!(failures > 100, "most mutations break the hello: {failures}");
}

#[test]
fn sending_takes_only_what_the_transport_has_room_for() {
    let (mut client, mut session, mut pipe) = (client(), session(), Pipe::new(64 * 1024));
    exchange(&mut client, &mut session, &mut pipe, usize::MAX);
    pipe.capacity = pipe.outbound.len() + 1000;
    let body = vec![b'x'; 10_000];
    let taken = session.send(&mut pipe, &body);
    assert!(taken > 0 && taken < 1000, "{taken}");
    assert!(!session.wants_write(), "every record went into the transport");
    assert_eq!(session.send(&mut pipe, &body), 0, "no room left for a record");
}
