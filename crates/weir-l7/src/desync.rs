//! HTTP desync mitigation (`routing.http.desync_mitigation_mode`), with the request
//! classification of AWS's `http_desync_guardian`: each HTTP/1.x request is `Compliant`,
//! `Acceptable`, `Ambiguous` or `Severe`, and the mode decides what happens to it:
//!
//! | classification | monitor | defensive (default)          | strictest |
//! |----------------|---------|------------------------------|-----------|
//! | Compliant      | forward | forward                      | forward   |
//! | Acceptable     | forward | forward                      | 400       |
//! | Ambiguous      | forward | forward, then close both ends| 400       |
//! | Severe         | forward | 400                          | 400       |
//!
//! The request head is classified as the client sent it (captured by `client_io`), because
//! hyper's parser normalises exactly what matters (a `Content-Length` beside
//! `Transfer-Encoding` is dropped, for one). When no raw head is at hand (HTTP/2 requests, or
//! pipelined requests whose head was not captured) the parsed head is classified instead.
//! HTTP/2 requests themselves are out of the classifier's scope and count as compliant.

use http::{Request, Version};
use http_desync_guardian::request_analyzer::HttpRequestData;
use http_desync_guardian::RequestSafetyTier;

/// The attribute's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesyncMode {
    /// Forward everything; classify for logs and metrics.
    Monitor,
    /// Block severe requests; forward ambiguous ones and close the connections after.
    Defensive,
    /// Forward only compliant requests.
    Strictest,
}

impl DesyncMode {
    /// Parses the attribute value (unknown values mean the default, `defensive`).
    pub fn parse(s: &str) -> Self {
        match s {
            "monitor" => Self::Monitor,
            "strictest" => Self::Strictest,
            _ => Self::Defensive,
        }
    }
}

/// A request's classification tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// RFC compliant.
    Compliant,
    /// Not compliant, but no desync risk.
    Acceptable,
    /// Servers may disagree on its boundaries.
    Ambiguous,
    /// A desync risk.
    Severe,
}

impl Tier {
    /// The spelling in access logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compliant => "Compliant",
            Self::Acceptable => "Acceptable",
            Self::Ambiguous => "Ambiguous",
            Self::Severe => "Severe",
        }
    }
}

/// A request's classification and the reason for it (`-` when compliant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// Tier.
    pub tier: Tier,
    /// The classifier's reason, e.g. `BothTeClPresent`.
    pub reason: String,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it.
    Forward,
    /// Forward it, then close the client and target connections.
    ForwardAndClose,
    /// Answer 400.
    Block,
}

/// The decision table of the module docs.
pub fn verdict(mode: DesyncMode, tier: Tier) -> Verdict {
    match (mode, tier) {
        (DesyncMode::Monitor, _) | (_, Tier::Compliant) => Verdict::Forward,
        (DesyncMode::Defensive, Tier::Acceptable) => Verdict::Forward,
        (DesyncMode::Defensive, Tier::Ambiguous) => Verdict::ForwardAndClose,
        _ => Verdict::Block,
    }
}

/// Classifies a raw HTTP/1.x request head.
pub fn classify_raw(head: &[u8]) -> Classification {
    let r = HttpRequestData::analyze_raw_request(head);
    let tier = match r.tier {
        RequestSafetyTier::Compliant => Tier::Compliant,
        RequestSafetyTier::Acceptable => Tier::Acceptable,
        RequestSafetyTier::Ambiguous => Tier::Ambiguous,
        RequestSafetyTier::Severe => Tier::Severe,
    };
    let reason = if tier == Tier::Compliant { "-".to_string() } else { format!("{:?}", r.reason) };
    Classification { tier, reason }
}

/// Classifies a request: its raw head when it is the head of this request, else its parsed
/// head rebuilt; HTTP/2 requests are compliant.
pub fn classify<B>(req: &Request<B>, raw: Option<&[u8]>) -> Classification {
    if req.version() == Version::HTTP_2 {
        return Classification { tier: Tier::Compliant, reason: "-".into() };
    }
    if let Some(head) = raw.filter(|h| h.starts_with(req.method().as_str().as_bytes())) {
        return classify_raw(head);
    }
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(req.method().as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(req.uri().to_string().as_bytes());
    head.extend_from_slice(if req.version() == Version::HTTP_10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    for (k, v) in req.headers() {
        head.extend_from_slice(k.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(v.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    classify_raw(&head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_of_classic_smuggling_shapes() {
        let c = |s: &[u8]| classify_raw(s);
        assert_eq!(c(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").tier, Tier::Compliant);
        let both = c(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((both.tier, both.reason.as_str()), (Tier::Ambiguous, "BothTeClPresent"));
        assert_eq!(
            c(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n").tier,
            Tier::Severe
        );
        assert_eq!(c(b"GET / HTTP/1.1\r\nHost: a\r\nX-Y: a\x01b\r\n\r\n").tier, Tier::Acceptable);
    }

    #[test]
    fn modes_follow_the_table() {
        use Tier::*;
        use Verdict::*;
        let row = |m| [Compliant, Acceptable, Ambiguous, Severe].map(|t| verdict(m, t));
        assert_eq!(row(DesyncMode::Monitor), [Forward, Forward, Forward, Forward]);
        assert_eq!(row(DesyncMode::Defensive), [Forward, Forward, ForwardAndClose, Block]);
        assert_eq!(row(DesyncMode::Strictest), [Forward, Block, Block, Block]);
        assert_eq!(DesyncMode::parse("nonsense"), DesyncMode::Defensive);
    }

    #[test]
    fn parsed_heads_are_classified_when_no_raw_head_fits() {
        let req = Request::get("/").header("host", "a").body(()).unwrap();
        assert_eq!(classify(&req, None).tier, Tier::Compliant);
        assert_eq!(classify(&req, Some(b"POST /other HTTP/1.1\r\n\r\n")).tier, Tier::Compliant);
        let h2 = Request::get("/").version(Version::HTTP_2).body(()).unwrap();
        assert_eq!(classify(&h2, None).reason, "-");
    }
}
