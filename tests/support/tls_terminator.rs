//! A TLS terminator for the benchmarks: HTTPS on a local port in front of a
//! plain-HTTP service (DynamoDB Local, the Runtime API stub's AWS APIs), so
//! that a function's first call pays the handshake it pays on AWS. The
//! certificates are a test CA's (made by `scripts/bench` with openssl, RSA
//! 2048 like Amazon's chain: root, intermediate, leaf for `localhost`); the
//! functions trust them through `SSL_CERT_FILE`, which their HTTPS client
//! honours.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A running terminator; it lives as long as the runtime it was started on.
pub struct TlsTerminator {
    pub port: u16,
}

impl TlsTerminator {
    /// Serves `chain` (PEM, leaf first) with `key` on a free port of
    /// 127.0.0.1 (and of ::1 where there is one, as `localhost` may resolve
    /// to either) and relays each connection to `upstream` on 127.0.0.1.
    pub async fn start(chain: &Path, key: &Path, upstream: u16) -> Self {
        let certs = CertificateDer::pem_file_iter(chain)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .unwrap_or_else(|e| panic!("{}: {e}", chain.display()));
        let key =
            PrivateKeyDer::from_pem_file(key).unwrap_or_else(|e| panic!("{}: {e}", key.display()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("the test CA's leaf and key");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let v4 = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = v4.local_addr().expect("bound").port();
        let v6 = TcpListener::bind(("::1", port)).await.ok();
        for listener in std::iter::once(v4).chain(v6) {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    tokio::spawn(relay(acceptor, stream, upstream));
                }
            });
        }
        Self { port }
    }
}

async fn relay(acceptor: TlsAcceptor, stream: TcpStream, upstream: u16) {
    let _ = stream.set_nodelay(true);
    let Ok(mut tls) = acceptor.accept(stream).await else {
        return;
    };
    let Ok(mut plain) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let _ = plain.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
}
