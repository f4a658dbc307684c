//! The TLS handshake of a connection to an HTTPS listener.
//!
//! It runs beside the connection's watchdog, whose header-read deadline counts from the
//! accept: a client that opens a connection and never finishes the handshake (or sends it a
//! byte at a time) is closed and counted like a slowloris, and holds its connection slot only
//! that long. A client that speaks plain HTTP to the port gets a `400` saying to use
//! `https://` (as Go's server answers) and is closed at once, without waiting for a timeout.
//! Every failure is counted by reason in `modfleet_proxy_tls_handshake_failures_total`.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::metrics::{ReasonLabel, TlsMetrics};

/// The first byte of a TLS connection: a handshake record (RFC 8446, 5.1).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How much of a plain HTTP request is read before answering it, so that closing the socket
/// with unread bytes (which sends a reset) does not destroy the answer first.
const PLAIN_HTTP_DRAIN: usize = 16 << 10;

const PLAIN_HTTP_ANSWER: &str =
    "this port serves HTTPS: use an https:// URL (GOPROXY=https://...)\n";

/// Why a handshake failed (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// An HTTP request to the HTTPS port.
    PlainHttp,
    /// The client sent an alert: usually it does not trust the certificate.
    Alert,
    /// The client went away during the handshake.
    Closed,
    /// Not TLS, no common version or cipher suite, a malformed message.
    Error,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::PlainHttp => "plain_http",
            Failure::Alert => "alert",
            Failure::Closed => "closed",
            Failure::Error => "error",
        }
    }

    /// What a failed accept says.
    fn of(e: &std::io::Error) -> Failure {
        use std::io::ErrorKind;
        if let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            return match tls {
                rustls::Error::AlertReceived(_) => Failure::Alert,
                _ => Failure::Error,
            };
        }
        match e.kind() {
            ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe => Failure::Closed,
            _ => Failure::Error,
        }
    }
}

/// TLS for one listener: the acceptor and its failure counters.
pub struct Handshaker {
    acceptor: TlsAcceptor,
    failures: [Counter; 4],
}

impl Handshaker {
    pub fn new(config: Arc<rustls::ServerConfig>, metrics: &TlsMetrics) -> Handshaker {
        Handshaker {
            acceptor: TlsAcceptor::from(config),
            failures: [
                Failure::PlainHttp,
                Failure::Alert,
                Failure::Closed,
                Failure::Error,
            ]
            .map(|f| {
                metrics
                    .handshake_failures
                    .get_or_create(&ReasonLabel { reason: f.as_str() })
                    .clone()
            }),
        }
    }

    /// The handshake; a failure is counted and logged at debug level (a client's mistake, not
    /// the proxy's). Not timed here: the caller races it against the watchdog.
    pub async fn accept(&self, tcp: TcpStream) -> Option<TlsStream<TcpStream>> {
        let result = self.handshake(tcp).await;
        if let Err((failure, why)) = &result {
            self.failures[*failure as usize].inc();
            tracing::debug!(reason = failure.as_str(), "TLS handshake failed: {why}");
        }
        result.ok()
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, (Failure, String)> {
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(0) => return Err((Failure::Closed, "closed before sending anything".into())),
            Ok(_) => {}
            Err(e) => return Err((Failure::of(&e), e.to_string())),
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            if first[0].is_ascii_uppercase() {
                answer_plain_http(&tcp);
                return Err((
                    Failure::PlainHttp,
                    "an HTTP request to the HTTPS port".into(),
                ));
            }
            return Err((
                Failure::Error,
                format!("not TLS (first byte {:#04x})", first[0]),
            ));
        }
        self.acceptor
            .accept(tcp)
            .await
            .map_err(|e| (Failure::of(&e), e.to_string()))
    }
}

/// A best-effort `400` (written only if the socket takes it at once) after reading what has
/// arrived of the request; the caller then closes the connection.
fn answer_plain_http(tcp: &TcpStream) {
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < PLAIN_HTTP_DRAIN {
        match tcp.try_read(&mut buf) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{PLAIN_HTTP_ANSWER}",
        PLAIN_HTTP_ANSWER.len()
    );
    let _ = tcp.try_write(response.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_apart() {
        let alert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate),
        );
        assert_eq!(Failure::of(&alert), Failure::Alert);
        let garbage = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert_eq!(Failure::of(&garbage), Failure::Error);
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(Failure::of(&eof), Failure::Closed);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(Failure::of(&reset), Failure::Closed);
    }
}
