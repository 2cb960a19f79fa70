//! NLB access logs: one entry per TLS connection (AWS logs TLS listeners only), in AWS's field
//! order, queued when the connection ends (or its handshake fails) and written off the data
//! path by [`weir_telemetry::log_files`] (`..._net.NAME.ID_...log.gz`).

use std::net::SocketAddr;

pub use weir_telemetry::log_files::{parse_line, read_all, AccessLog, LogTarget};

/// The fields of an entry, in order.
pub const FIELDS: &[&str] = &[
    "type",
    "version",
    "time",
    "elb",
    "listener",
    "client:port",
    "destination:port",
    "connection_time",
    "tls_handshake_time",
    "received_bytes",
    "sent_bytes",
    "incoming_tls_alert",
    "chosen_cert_arn",
    "chosen_cert_serial",
    "tls_cipher",
    "tls_protocol_version",
    "tls_named_group",
    "domain_name",
    "alpn_fe_protocol",
    "alpn_be_protocol",
    "alpn_client_preference_list",
    "tls_connection_creation_time",
];

/// One TLS connection, as an NLB access-log entry.
#[derive(Debug, Clone, Default)]
pub struct ConnRecord {
    /// When the connection ended, seconds since the epoch.
    pub end_secs: u64,
    /// When it was accepted, seconds since the epoch.
    pub start_secs: u64,
    /// `net/NAME/ID`.
    pub elb: String,
    /// The listener's id (the last part of its ARN).
    pub listener: String,
    /// The client.
    pub client: Option<SocketAddr>,
    /// The listener address the client connected to.
    pub destination: Option<SocketAddr>,
    /// Accept to close, milliseconds.
    pub connection_ms: u64,
    /// Handshake duration, milliseconds (`None`: it did not complete).
    pub handshake_ms: Option<u64>,
    /// Bytes from the client (decrypted).
    pub received_bytes: u64,
    /// Bytes to the client (before encryption).
    pub sent_bytes: u64,
    /// A TLS alert the client sent during the handshake.
    pub incoming_alert: Option<u8>,
    /// The certificate served and its serial number.
    pub cert: Option<(String, String)>,
    /// OpenSSL name of the suite.
    pub cipher: Option<&'static str>,
    /// `tlsv12` / `tlsv13`.
    pub protocol: Option<&'static str>,
    /// Key-exchange group (`x25519`).
    pub named_group: Option<String>,
    /// The client's SNI name.
    pub domain: Option<String>,
    /// ALPN protocol agreed with the client.
    pub alpn_fe: Option<String>,
    /// ALPN protocol agreed with a TLS target.
    pub alpn_be: Option<String>,
    /// ALPN protocols the client offered, in its order.
    pub alpn_client: Vec<String>,
}

fn dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// `2018-12-20T02:59:40`, as NLB entries write times.
fn iso(secs: u64) -> String {
    let (y, m, d, h, mi, s) = weir_model::time::parts(secs);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
}

/// A field value without spaces (SNI names and ALPN ids are client-chosen bytes).
fn token(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    s.chars().map(|c| if c.is_ascii_graphic() && c != '"' { c } else { '?' }).collect()
}

impl ConnRecord {
    /// The entry, fields separated by spaces.
    pub fn line(&self) -> String {
        let alpn_client = if self.alpn_client.is_empty() {
            "-".to_string()
        } else {
            self.alpn_client
                .iter()
                .map(|p| format!("\"{}\"", token(p)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let fields = [
            "tls".to_string(),
            "2.0".to_string(),
            iso(self.end_secs),
            token(&self.elb),
            token(&self.listener),
            dash(self.client),
            dash(self.destination),
            self.connection_ms.to_string(),
            dash(self.handshake_ms),
            self.received_bytes.to_string(),
            self.sent_bytes.to_string(),
            dash(self.incoming_alert),
            dash(self.cert.as_ref().map(|c| c.0.as_str())),
            dash(self.cert.as_ref().map(|c| c.1.as_str()).filter(|s| !s.is_empty())),
            dash(self.cipher),
            dash(self.protocol),
            dash(self.named_group.as_deref()),
            self.domain.as_deref().map_or_else(|| "-".into(), token),
            self.alpn_fe.as_deref().map_or_else(|| "-".into(), token),
            self.alpn_be.as_deref().map_or_else(|| "-".into(), token),
            alpn_client,
            iso(self.start_secs),
        ];
        fields.join(" ")
    }
}

/// Queues `rec` on `log` (never waits).
pub fn log(log: &AccessLog, rec: &ConnRecord) {
    log.log_line(rec.end_secs, rec.line());
}

/// AWS's spelling of a TLS version in NLB logs.
pub fn protocol_name(v: rustls::ProtocolVersion) -> Option<&'static str> {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => Some("tlsv13"),
        rustls::ProtocolVersion::TLSv1_2 => Some("tlsv12"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_follow_the_nlb_field_order() {
        let r = ConnRecord {
            end_secs: 1_545_274_780,
            start_secs: 1_545_274_775,
            elb: "net/my-network-loadbalancer/c6e77e28c25b2234".into(),
            listener: "g3d4b5e8bb8464cd".into(),
            client: Some("72.21.218.154:51341".parse().unwrap()),
            destination: Some("172.100.100.185:443".parse().unwrap()),
            connection_ms: 5,
            handshake_ms: Some(2),
            received_bytes: 98,
            sent_bytes: 246,
            cert: Some((
                "arn:aws:acm:us-east-2:671290407336:certificate/2a108f19".into(),
                "0abc".into(),
            )),
            cipher: Some("ECDHE-RSA-AES128-SHA"),
            protocol: Some("tlsv12"),
            domain: Some("my-nlb.example.com".into()),
            alpn_fe: Some("h2".into()),
            alpn_client: vec!["h2".into(), "http/1.1".into()],
            ..Default::default()
        };
        let line = r.line();
        assert_eq!(
            line,
            "tls 2.0 2018-12-20T02:59:40 net/my-network-loadbalancer/c6e77e28c25b2234 \
             g3d4b5e8bb8464cd 72.21.218.154:51341 172.100.100.185:443 5 2 98 246 - \
             arn:aws:acm:us-east-2:671290407336:certificate/2a108f19 0abc ECDHE-RSA-AES128-SHA \
             tlsv12 - my-nlb.example.com h2 - \"h2\",\"http/1.1\" 2018-12-20T02:59:35"
        );
        let f = parse_line(&line);
        assert_eq!(f.len(), FIELDS.len(), "{f:?}");
        assert_eq!(f[20], "h2,http/1.1");
    }

    #[test]
    fn client_chosen_bytes_cannot_split_fields() {
        let r = ConnRecord {
            domain: Some("a b".into()),
            alpn_client: vec!["x y\"".into()],
            ..Default::default()
        };
        let f = parse_line(&r.line());
        assert_eq!(f.len(), FIELDS.len(), "{f:?}");
        assert_eq!(f[17], "a?b");
    }
}
