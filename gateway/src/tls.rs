//! HTTPS: the TLS configuration the lanes share (certificates chosen by server name, ALPN,
//! session tickets) built from `[tls]`, and each connection's TLS record layer
//! ([`session::TlsSession`]), which the transport seam puts between the socket and the HTTP code.
//!
//! The provider is rustls's `ring`: it builds with the C compiler alone, in seconds, where
//! `aws-lc-rs` needs its own C library built (and CMake on some hosts) on every clean build.
//!
//! Invariants:
//! - One [`rustls::ServerConfig`] serves every lane (shared read-only behind an `Arc`); the
//!   session-ticket key and the session cache are the only state it shares, touched on
//!   handshakes only, never per request.
//! - A certificate is chosen by exact server name first, then by a `*.` pattern covering one
//!   label; a ClientHello no entry covers gets the default certificate, or with
//!   `refuse_unknown_names` an `unrecognized_name` alert.
//! - 0-RTT is off (rustls's default: `max_early_data_size` 0).

pub mod expiry;
pub mod session;

use std::{fmt, path::Path, sync::Arc};

use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};

use crate::config::{CertificateConfig, TlsConfig};

/// Why the TLS configuration could not be built.
#[derive(Debug)]
pub struct TlsError {
    pub what: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for TlsError {}

/// Whether `name` is a DNS name (letters, digits, `-`, labels of 1..=63) or `*.` and one.
pub fn valid_name_pattern(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether `pattern` (exact, or `*.rest`) covers server name `name` (both lowercase).
fn covers(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(rest) => name
            .split_once('.')
            .is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
        None => pattern == name,
    }
}

/// The certificates by server name: exact names, then wildcards, then the default.
#[derive(Debug)]
pub struct Certificates {
    /// (lowercase name pattern, certificate), exact names first.
    by_name: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
    refuse_unknown_names: bool,
}

impl Certificates {
    /// The certificate for server name `name` (`None`: no server name in the ClientHello).
    pub fn choose(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = name.and_then(|name| {
            let name = name.to_ascii_lowercase();
            self.by_name
                .iter()
                .find(|(pattern, _)| covers(pattern, &name))
                .map(|(_, key)| Arc::clone(key))
        });
        match found {
            Some(key) => Some(key),
            None if self.refuse_unknown_names => None,
            None => Some(Arc::clone(&self.default)),
        }
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(client_hello.server_name())
    }
}

/// A configured certificate, as the metrics and the doctor show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The certificate file.
    pub path: String,
    /// Its first configured server name (empty if none).
    pub name: String,
    /// The leaf's `notAfter` (Unix seconds), if it could be read.
    pub not_after: Option<i64>,
}

/// The lanes' TLS configuration and what its certificates are.
pub struct TlsSetup {
    pub config: Arc<ServerConfig>,
    pub certificates: Vec<CertificateInfo>,
}

/// Reads one certificate entry: its chain and key, and warns when the key file is readable by
/// others than its owner.
fn load_certificate(entry: &CertificateConfig, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let fail = |path: &Path, what: String| TlsError {
        what: format!("tls.certificate {}: {what}", path.display()),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&entry.cert)
        .map_err(|e| fail(&entry.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(&entry.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(fail(&entry.cert, "no CERTIFICATE block in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&entry.key).map_err(|e| fail(&entry.key, e.to_string()))?;
    warn_if_readable_by_others(&entry.key);
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| fail(&entry.key, e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| fail(&entry.key, format!("does not match the certificate: {e}")))?;
    Ok(certified)
}

/// A private key readable by its group or by everyone is said once, at load.
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.mode() & 0o077 != 0 {
            tracing::warn!(
                key = %path.display(),
                mode = format!("{:o}", meta.mode() & 0o777),
                "a TLS private key is readable by others than its owner: chmod 600 it (owned by the service user)"
            );
        }
    }
}

/// The lanes' TLS configuration from `[tls]`, or `None` when no certificate is configured.
pub fn server_config(config: &TlsConfig) -> Result<Option<TlsSetup>, TlsError> {
    if config.certificate.is_empty() {
        return Ok(None);
    }
    // rustls marks ring's provider deprecated for lacking post-quantum key exchange
    // (X25519MLKEM768); its classical groups (X25519, P-256, P-384) are what clients here use.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut by_name = Vec::new();
    let mut default = None;
    let mut first = None;
    let mut certificates = Vec::new();
    for entry in &config.certificate {
        let key = Arc::new(load_certificate(entry, &provider)?);
        certificates.push(CertificateInfo {
            path: entry.cert.display().to_string(),
            name: entry.names.first().cloned().unwrap_or_default(),
            not_after: key.end_entity_cert().ok().and_then(|der| expiry::not_after(der)),
        });
        for name in &entry.names {
            by_name.push((name.to_ascii_lowercase(), Arc::clone(&key)));
        }
        if entry.default {
            default = Some(Arc::clone(&key));
        }
        first.get_or_insert(key);
    }
    // Exact names before wildcards, so that `a.example.com` beats `*.example.com`.
    by_name.sort_by_key(|(pattern, _)| pattern.starts_with("*."));
    let resolver = Certificates {
        by_name,
        default: default.or(first).expect("at least one certificate"),
        refuse_unknown_names: config.refuse_unknown_names,
    };
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError { what: e.to_string() })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    server.max_early_data_size = 0;
    if config.session_tickets {
        server.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError { what: e.to_string() })?;
        server.send_tls13_tickets = 2;
    }
    // Session ids for TLS 1.2 clients without tickets, and TLS 1.3 stateful resumption.
    server.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Some(TlsSetup {
        config: Arc::new(server),
        certificates,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns() {
        assert!(valid_name_pattern("a.example.com"));
        assert!(valid_name_pattern("*.example.com"));
        assert!(valid_name_pattern("localhost"));
        for bad in ["", "*.", "a..b", "-a.b", "a_b.c", "*.*.a", "a.*.b", "a b"] {
            assert!(!valid_name_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("*.example.com", "a.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(covers("a.example.com", "a.example.com"));
        assert!(!covers("a.example.com", "b.example.com"));
    }
}
