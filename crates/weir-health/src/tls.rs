//! TLS for HTTPS health checks: accepts any target certificate, as ALB does, with the same
//! client configuration the proxy uses towards targets.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Connects TLS over `tcp` offering `alpn`; `None` on handshake failure.
pub(crate) async fn connect(
    tcp: TcpStream,
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> Option<TlsStream<TcpStream>> {
    let name = ServerName::IpAddress(addr.ip().into());
    let cfg = Arc::new(weir_l7::upstream::insecure_client_config(alpn));
    TlsConnector::from(cfg).connect(name, tcp).await.ok()
}
