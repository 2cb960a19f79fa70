//! Sans-I/O HTTP/1.1 pieces of the fast path (`proxy::fast`): the scan of a request head's
//! fields, the framing of a target's response (RFC 9112 §6), its head rewritten for the client
//! without hop-by-hop fields, and a chunked-coding scanner that finds where a body ends
//! without changing it. No sockets here; `weir_fuzz::http1` fuzzes all of it.

use std::mem::MaybeUninit;

use httparse::Status;

use crate::headers::{is_hop_by_hop, is_invalid_name};

/// Most header fields in a target's response head.
pub const MAX_RESPONSE_HEADERS: usize = 128;

/// Largest response head taken from a target.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// What the fast path needs from a request head's fields.
#[derive(Debug, Default)]
pub struct RequestFields<'a> {
    /// The one `Host` value.
    pub host: Option<&'a str>,
    /// The one valid `Content-Length`.
    pub content_length: Option<usize>,
    /// `Connection` values (at most four fields).
    pub connection: Vec<&'a [u8]>,
    /// `X-Forwarded-For` values (at most four fields).
    pub forwarded_for: Vec<&'a [u8]>,
    /// The last `X-Amzn-Trace-Id` value.
    pub trace_id: Option<&'a [u8]>,
}

/// Most `Connection` or `X-Forwarded-For` fields the fast path takes.
const MAX_REPEATED: usize = 4;

/// Scans a request head's fields; `None` when the request is not for the fast path (a second
/// Host, an invalid or repeated Content-Length, Transfer-Encoding, Upgrade or Expect, a line
/// longer than `max_line`, too many repeated fields, or, with `strict_names`, a name with
/// anything beyond letters, digits and hyphens).
pub fn scan_request<'a>(
    fields: &[httparse::Header<'a>],
    max_line: usize,
    strict_names: bool,
) -> Option<RequestFields<'a>> {
    let mut f = RequestFields::default();
    for h in fields {
        let n = h.name;
        if n.len() + h.value.len() + 2 > max_line {
            return None;
        }
        if strict_names && is_invalid_name(n) {
            return None;
        }
        if n.eq_ignore_ascii_case("host") {
            if f.host.is_some() {
                return None;
            }
            f.host = Some(std::str::from_utf8(h.value).ok().filter(|v| !v.is_empty())?);
        } else if n.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))?;
            if f.content_length.is_some() {
                return None;
            }
            f.content_length = Some(v.parse().ok()?);
        } else if n.eq_ignore_ascii_case("transfer-encoding")
            || n.eq_ignore_ascii_case("upgrade")
            || n.eq_ignore_ascii_case("expect")
        {
            return None;
        } else if n.eq_ignore_ascii_case("connection") {
            if f.connection.len() == MAX_REPEATED {
                return None;
            }
            f.connection.push(h.value);
        } else if n.eq_ignore_ascii_case("x-forwarded-for") {
            if f.forwarded_for.len() == MAX_REPEATED {
                return None;
            }
            f.forwarded_for.push(h.value);
        } else if n.eq_ignore_ascii_case("x-amzn-trace-id") {
            f.trace_id = Some(h.value);
        }
    }
    Some(f)
}

/// Whether the `Connection` field values in `list` name `name`.
pub fn named_in(list: &[&[u8]], name: &str) -> bool {
    list.iter().any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
}

/// The comma-separated tokens of a field value, trimmed.
pub fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|b| *b == b',').map(|t| t.trim_ascii()).filter(|t| !t.is_empty())
}

/// Appends `v` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked.
    Chunked,
    /// Until the target closes the connection.
    Close,
}

/// The framing of a parsed response of `head_len` bytes; `None` when it is ambiguous.
pub fn response_framing(
    r: &httparse::Response<'_, '_>,
    head_len: usize,
    head_request: bool,
) -> Option<(usize, u16, Framing, bool)> {
    let status = r.code.filter(|c| (100..=999).contains(c))?;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut other_coding = false;
    let mut keep_alive = r.version == Some(1);
    for h in r.headers.iter() {
        // Told apart by length first: most fields are none of the three.
        if !matches!(h.name.len(), 10 | 14 | 17) {
            continue;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).ok()?.trim();
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let v: u64 = v.parse().ok()?;
            if length.is_some_and(|l| l != v) {
                return None;
            }
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding decides; a body not chunked last runs until close.
            for t in tokens(h.value) {
                chunked = t.eq_ignore_ascii_case(b"chunked");
                other_coding |= !chunked;
            }
        } else if h.name.eq_ignore_ascii_case("connection")
            && tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"close"))
        {
            keep_alive = false;
        }
    }
    let framing = if head_request || status == 204 || status == 304 || (100..200).contains(&status)
    {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if other_coding {
        Framing::Close
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    Some((head_len, status, framing, keep_alive))
}

/// What one look at the buffered start of a target's response found: the step both target
/// clients (`proxy::fast`, `proxy::pooled`) loop on between reads.
#[derive(Debug)]
pub enum ResponseHead<T> {
    /// The head is not complete yet: read more.
    Partial,
    /// An interim (1xx) response of this many bytes, to skip.
    Interim(usize),
    /// The final response head.
    Final(FinalHead<T>),
    /// Not a valid HTTP/1.x response: ambiguous framing, a 101 nobody asked for, a head over
    /// [`MAX_RESPONSE_HEAD`], or one the caller's `build` refused.
    Invalid,
}

/// A final response head, as [`parse_response_head`] found it.
#[derive(Debug)]
pub struct FinalHead<T> {
    /// Length of the head in the buffer; the body follows.
    pub len: usize,
    /// The status code.
    pub status: u16,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after the body.
    pub keep_alive: bool,
    /// What the caller's `build` made of the parsed head.
    pub out: T,
}

/// Parses the start of `buf` as a response head (to a HEAD request when `head_request`); for
/// a final response, `build` turns the parse and its framing into the caller's form of the
/// head (`None` refuses it) while the fields still point into `buf`.
pub fn parse_response_head<T>(
    buf: &[u8],
    head_request: bool,
    build: impl FnOnce(&httparse::Response<'_, '_>, Framing) -> Option<T>,
) -> ResponseHead<T> {
    // Uninitialised: filling 128 empty fields per response cost more than the parse.
    let mut fields = [const { MaybeUninit::uninit() }; MAX_RESPONSE_HEADERS];
    let mut r = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut r,
        buf,
        &mut fields,
    ) {
        Ok(Status::Complete(n)) => match response_framing(&r, n, head_request) {
            Some((_, 101, ..)) | None => ResponseHead::Invalid,
            Some((len, status, ..)) if (100..200).contains(&status) => ResponseHead::Interim(len),
            Some((len, status, framing, keep_alive)) => match build(&r, framing) {
                Some(out) => {
                    ResponseHead::Final(FinalHead { len, status, framing, keep_alive, out })
                }
                None => ResponseHead::Invalid,
            },
        },
        Ok(Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => ResponseHead::Partial,
        _ => ResponseHead::Invalid,
    }
}

/// The fields of a response head that pass to the client: not hop-by-hop, not named in
/// `Connection` (its first four fields), and no `Content-Length` beside chunked framing.
fn passed_fields<'r, 'b>(
    headers: &'r [httparse::Header<'b>],
    framing: Framing,
) -> impl Iterator<Item = &'r httparse::Header<'b>> {
    let mut connection: [&'b [u8]; 4] = [b""; 4];
    let mut n = 0;
    for h in
        headers.iter().filter(|h| h.name.len() == 10 && h.name.eq_ignore_ascii_case("connection"))
    {
        // The common `Connection: keep-alive` names only a field dropped as hop-by-hop anyway:
        // no need to look for its tokens in every field's name (`close` is looked for: a field
        // named so goes too, RFC 9110 §7.6.1).
        if tokens(h.value).all(|t| t.eq_ignore_ascii_case(b"keep-alive")) {
            continue;
        }
        if let Some(slot) = connection.get_mut(n) {
            *slot = h.value;
            n += 1;
        }
    }
    headers.iter().filter(move |h| {
        !(is_hop_by_hop(h.name)
            || named_in(&connection[..n], h.name)
            || (framing == Framing::Chunked && h.name.eq_ignore_ascii_case("content-length")))
    })
}

/// Writes the client's response head from the target's, without hop-by-hop fields; false when
/// the head does not parse (it did a moment ago).
pub fn write_response_head(head: &[u8], out: &mut Vec<u8>, framing: Framing, close: bool) -> bool {
    let mut fields = [const { MaybeUninit::uninit() }; MAX_RESPONSE_HEADERS];
    let mut r = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut r,
        head,
        &mut fields,
    );
    if !matches!(parsed, Ok(Status::Complete(_))) {
        return false;
    }
    write_parsed_response_head(&r, out, framing, close)
}

/// [`write_response_head`] from a parsed head.
pub fn write_parsed_response_head(
    r: &httparse::Response<'_, '_>,
    out: &mut Vec<u8>,
    framing: Framing,
    close: bool,
) -> bool {
    let Some(status) = r.code else {
        return false;
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    match r.reason.filter(|r| !r.is_empty()) {
        Some(reason) => out.extend_from_slice(reason.as_bytes()),
        None => out.extend_from_slice(
            http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .as_bytes(),
        ),
    }
    out.extend_from_slice(b"\r\n");
    for h in passed_fields(r.headers, framing) {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    true
}

/// The status and fields of a parsed final response head, for a client on any HTTP version:
/// without hop-by-hop fields, those `Connection` names, and (for a chunked body)
/// `Content-Length`. The values share `src`, the buffer `r` was parsed from (no copies).
/// `None` when the status or a field is not valid.
pub fn response_fields(
    r: &httparse::Response<'_, '_>,
    framing: Framing,
    src: &bytes::Bytes,
) -> Option<(http::StatusCode, http::HeaderMap)> {
    let status = http::StatusCode::from_u16(r.code?).ok()?;
    let mut map = http::HeaderMap::with_capacity(r.headers.len());
    for h in passed_fields(r.headers, framing) {
        let name = match common_response_name(h.name) {
            Some(n) => n,
            None => http::HeaderName::from_bytes(h.name.as_bytes()).ok()?,
        };
        map.append(name, http::HeaderValue::from_maybe_shared(src.slice_ref(h.value)).ok()?);
    }
    Some((status, map))
}

/// The field names most responses carry, told apart by length then compared ignoring case:
/// cheaper than [`http::HeaderName::from_bytes`] (which lower-cases into a scratch buffer
/// first). `None` for any other name.
fn common_response_name(name: &str) -> Option<http::HeaderName> {
    use http::header;
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    Some(match name.len() {
        4 if is("date") => header::DATE,
        4 if is("etag") => header::ETAG,
        4 if is("vary") => header::VARY,
        6 if is("server") => header::SERVER,
        7 if is("expires") => header::EXPIRES,
        8 if is("location") => header::LOCATION,
        10 if is("set-cookie") => header::SET_COOKIE,
        12 if is("content-type") => header::CONTENT_TYPE,
        13 if is("cache-control") => header::CACHE_CONTROL,
        13 if is("last-modified") => header::LAST_MODIFIED,
        13 if is("accept-ranges") => header::ACCEPT_RANGES,
        14 if is("content-length") => header::CONTENT_LENGTH,
        16 if is("content-encoding") => header::CONTENT_ENCODING,
        _ => return None,
    })
}

/// Where a response body ends, fed the bytes as they come.
#[derive(Debug)]
pub struct Body {
    /// How the body is delimited.
    pub framing: Framing,
    /// Bytes left of a `Content-Length` body.
    left: u64,
    chunks: Chunks,
}

impl Body {
    /// A body delimited by `framing`.
    pub fn new(framing: Framing) -> Self {
        let left = if let Framing::Length(n) = framing { n } else { 0 };
        Self { framing, left, chunks: Chunks::default() }
    }

    /// Whether the whole body has been fed.
    pub fn done(&self) -> bool {
        match self.framing {
            Framing::Empty => true,
            Framing::Length(_) => self.left == 0,
            Framing::Chunked => self.chunks.state == ChunkState::Done,
            Framing::Close => false,
        }
    }

    /// How many of `b`'s bytes belong to the body (the rest follow it); `Err` when the
    /// chunked coding is malformed.
    #[allow(clippy::result_unit_err)] // one way to fail
    pub fn feed(&mut self, b: &[u8]) -> Result<usize, ()> {
        match self.framing {
            Framing::Empty => Ok(0),
            Framing::Length(_) => {
                let n = (b.len() as u64).min(self.left);
                self.left -= n;
                Ok(n as usize)
            }
            Framing::Chunked => self.chunks.feed(b),
            Framing::Close => Ok(b.len()),
        }
    }

    /// A body delimited by `framing` that is decoded ([`Body::decode`]) rather than only
    /// scanned: chunked coding is taken off and trailer fields kept.
    pub fn decoding(framing: Framing) -> Self {
        Self { chunks: Chunks::decoding(), ..Self::new(framing) }
    }

    /// Consumes bytes of `b` up to and including the first run of body data (or to the end of
    /// `b` or of the body); `Err` when the chunked coding is malformed or its trailer section
    /// too large.
    #[allow(clippy::result_unit_err)] // one way to fail
    pub fn decode(&mut self, b: &[u8]) -> Result<Decoded, ()> {
        let all = |n: usize| Decoded { consumed: n, data: (n > 0).then_some(0..n) };
        match self.framing {
            Framing::Chunked => self.chunks.decode(b),
            _ => self.feed(b).map(all),
        }
    }

    /// Bytes left of a `Content-Length` body; `None` for other framings.
    pub fn remaining(&self) -> Option<u64> {
        matches!(self.framing, Framing::Length(_)).then_some(self.left)
    }

    /// The trailer fields of a decoded chunked body once it is [`done`](Body::done) (see
    /// [`Chunks::take_trailers`]).
    pub fn take_trailers(&mut self) -> Option<http::HeaderMap> {
        self.chunks.take_trailers()
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In a chunk-size line's digits.
    #[default]
    Size,
    /// In a chunk extension.
    Extension,
    /// After the size line's CR.
    SizeLf,
    /// In chunk data.
    Data,
    /// After chunk data, expecting CR.
    DataCr,
    /// Expecting LF after the data's CR.
    DataLf,
    /// At the start of a trailer line.
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// After the final CR.
    EndLf,
    /// The body is complete.
    Done,
}

/// Most bytes of trailer fields a decoding [`Chunks`] keeps.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// A chunked-coding scanner (RFC 9112 §7.1): finds the end of the body without changing it
/// ([`Chunks::feed`]), or decodes it ([`Chunks::decode`]: the chunk data and the trailer fields).
#[derive(Debug, Default)]
pub struct Chunks {
    state: ChunkState,
    size: u64,
    digits: u8,
    /// The trailer section's bytes, when decoding.
    trailers: Option<Vec<u8>>,
}

/// What one [`Chunks::decode`] step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the input consumed (coding and data).
    pub consumed: usize,
    /// Where in the input the chunk data found lies, if any.
    pub data: Option<std::ops::Range<usize>>,
}

impl Chunks {
    /// A scanner that also keeps the trailer fields, for [`Chunks::decode`].
    pub fn decoding() -> Self {
        Self { trailers: Some(Vec::new()), ..Self::default() }
    }

    /// Whether the whole body has been consumed.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes bytes up to the end of the body; how many belong to it, or `Err` when the
    /// coding is malformed.
    #[allow(clippy::result_unit_err)] // one way to fail
    pub fn feed(&mut self, b: &[u8]) -> Result<usize, ()> {
        self.scan(b, false).map(|d| d.consumed)
    }

    /// Consumes bytes up to and including the first run of chunk data in `b` (or to the end of
    /// `b` or of the body); `Err` when the coding is malformed or the trailer section is larger
    /// than [`MAX_TRAILER_BYTES`].
    #[allow(clippy::result_unit_err)] // one way to fail
    pub fn decode(&mut self, b: &[u8]) -> Result<Decoded, ()> {
        self.scan(b, true)
    }

    /// The trailer fields of a decoded body, once it is [`done`](Chunks::done): valid ones
    /// only, without the fields a trailer may not carry (RFC 9110 §6.5.1) or hop-by-hop ones.
    pub fn take_trailers(&mut self) -> Option<http::HeaderMap> {
        let mut raw = self.trailers.take().filter(|t| !t.is_empty())?;
        raw.extend_from_slice(b"\r\n");
        let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let Ok(Status::Complete((_, fields))) = httparse::parse_headers(&raw, &mut fields) else {
            return None;
        };
        let mut map = http::HeaderMap::new();
        for f in fields {
            if is_hop_by_hop(f.name)
                || FORBIDDEN_TRAILERS.iter().any(|n| f.name.eq_ignore_ascii_case(n))
            {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(f.name.as_bytes()),
                http::HeaderValue::from_bytes(f.value),
            ) {
                map.append(n, v);
            }
        }
        (!map.is_empty()).then_some(map)
    }

    fn scan(&mut self, b: &[u8], decode: bool) -> Result<Decoded, ()> {
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            match self.state {
                ChunkState::Size => match c {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (c as char).to_digit(16).ok_or(())?;
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err(());
                        }
                        self.size = self.size * 16 + u64::from(d);
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => self.state = ChunkState::Extension,
                    b'\r' if self.digits > 0 => self.state = ChunkState::SizeLf,
                    _ => return Err(()),
                },
                ChunkState::Extension => match c {
                    b'\r' => self.state = ChunkState::SizeLf,
                    b'\n' => return Err(()),
                    _ => {}
                },
                ChunkState::SizeLf => {
                    if c != b'\n' {
                        return Err(());
                    }
                    self.digits = 0;
                    self.state =
                        if self.size == 0 { ChunkState::TrailerStart } else { ChunkState::Data };
                }
                ChunkState::Data => {
                    let n = (b.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    if decode {
                        return Ok(Decoded { consumed: i + n, data: Some(i..i + n) });
                    }
                    i += n;
                    continue;
                }
                ChunkState::DataCr => {
                    if c != b'\r' {
                        return Err(());
                    }
                    self.state = ChunkState::DataLf;
                }
                ChunkState::DataLf => {
                    if c != b'\n' {
                        return Err(());
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::TrailerStart => {
                    self.state = if c == b'\r' { ChunkState::EndLf } else { ChunkState::Trailer };
                    if c == b'\n' {
                        return Err(());
                    }
                    if c != b'\r' {
                        self.keep_trailer_byte(c)?;
                    }
                }
                ChunkState::Trailer => {
                    self.keep_trailer_byte(c)?;
                    if c == b'\n' {
                        self.state = ChunkState::TrailerStart;
                    }
                }
                ChunkState::EndLf => {
                    if c != b'\n' {
                        return Err(());
                    }
                    self.state = ChunkState::Done;
                    return Ok(Decoded { consumed: i + 1, data: None });
                }
                ChunkState::Done => return Ok(Decoded { consumed: i, data: None }),
            }
            i += 1;
        }
        Ok(Decoded { consumed: i, data: None })
    }

    fn keep_trailer_byte(&mut self, c: u8) -> Result<(), ()> {
        if let Some(t) = &mut self.trailers {
            if t.len() >= MAX_TRAILER_BYTES {
                return Err(());
            }
            t.push(c);
        }
        Ok(())
    }
}

/// Fields a trailer section may not carry: framing, routing, request modifiers, authentication,
/// response control and payload processing (RFC 9110 §6.5.1).
const FORBIDDEN_TRAILERS: [&str; 12] = [
    "content-length",
    "content-encoding",
    "content-type",
    "content-range",
    "host",
    "authorization",
    "set-cookie",
    "cache-control",
    "expires",
    "location",
    "retry-after",
    "www-authenticate",
];

#[cfg(test)]
mod tests {
    use super::*;
    use httparse::Status;

    fn scan(parts: &[&[u8]]) -> Result<(usize, bool), ()> {
        let mut c = Chunks::default();
        let mut total = 0;
        for p in parts {
            total += c.feed(p)?;
        }
        Ok((total, c.state == ChunkState::Done))
    }

    #[test]
    fn chunked_bodies_end_where_they_end() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-t: 1\r\n\r\n";
        assert_eq!(scan(&[body]), Ok((body.len(), true)));
        // Split at every position: the same end.
        for i in 0..body.len() {
            assert_eq!(scan(&[&body[..i], &body[i..]]), Ok((body.len(), true)), "split at {i}");
        }
        // Bytes after the end are not the body's.
        let mut more = body.to_vec();
        more.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(scan(&[&more]), Ok((body.len(), true)));
        assert_eq!(scan(&[b"0\r\n\r\n"]), Ok((5, true)));
        assert_eq!(scan(&[b"5\r\nhel"]), Ok((6, false)));
    }

    /// Decodes `parts` fed one after another: the data, and the trailers once done.
    fn decode(parts: &[&[u8]]) -> Result<(Vec<u8>, Option<http::HeaderMap>), ()> {
        let mut c = Chunks::decoding();
        let mut data = Vec::new();
        for p in parts {
            let mut at = 0;
            while at < p.len() && !c.done() {
                let d = c.decode(&p[at..])?;
                if let Some(r) = d.data {
                    data.extend_from_slice(&p[at + r.start..at + r.end]);
                }
                at += d.consumed;
            }
        }
        assert!(c.done(), "not done");
        Ok((data, c.take_trailers()))
    }

    #[test]
    fn length_and_close_bodies_decode_to_their_bytes() {
        let mut b = Body::decoding(Framing::Length(7));
        assert_eq!(b.remaining(), Some(7));
        assert_eq!(b.decode(b"abc").unwrap(), Decoded { consumed: 3, data: Some(0..3) });
        assert!(!b.done());
        // Bytes past the body are not its own.
        assert_eq!(b.decode(b"defgHTTP").unwrap(), Decoded { consumed: 4, data: Some(0..4) });
        assert!(b.done() && b.remaining() == Some(0) && b.take_trailers().is_none());
        let mut b = Body::decoding(Framing::Close);
        assert_eq!(b.remaining(), None);
        assert_eq!(b.decode(b"all of it").unwrap(), Decoded { consumed: 9, data: Some(0..9) });
        assert_eq!(b.decode(b"").unwrap(), Decoded { consumed: 0, data: None });
        assert!(!b.done(), "a close-delimited body ends with the connection");
        let mut b = Body::decoding(Framing::Chunked);
        assert_eq!(b.decode(b"3\r\nabc\r\n").unwrap().data, Some(3..6));
    }

    #[test]
    fn chunked_bodies_decode_to_their_data_and_trailers() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-t: 1\r\nHost: no\r\nConnection: x\r\n\r\n";
        let want = b"helloabcdefghijklmnopqrstuvwxyz".to_vec();
        for i in 0..body.len() {
            let (data, trailers) = decode(&[&body[..i], &body[i..]]).unwrap();
            assert_eq!(data, want, "split at {i}");
            let t = trailers.expect("trailers");
            assert_eq!(t.len(), 1, "framing/routing and hop-by-hop fields are dropped: {t:?}");
            assert_eq!(t["x-t"], "1");
        }
        assert_eq!(decode(&[b"0\r\n\r\n"]).unwrap(), (Vec::new(), None));
        let mut huge = b"0\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b"x-a: b\r\n", MAX_TRAILER_BYTES / 8 + 1).flatten());
        huge.extend_from_slice(b"\r\n");
        assert_eq!(decode(&[&huge]), Err(()), "trailers beyond the limit are refused");
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX",
            b"1111111111111111\r\n",
            b"0\r\n\n",
        ] {
            assert_eq!(scan(&[bad]), Err(()), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn common_response_names_are_the_standard_ones() {
        for n in [
            "date",
            "ETag",
            "vary",
            "Server",
            "expires",
            "Location",
            "set-cookie",
            "Content-Type",
            "cache-control",
            "Last-Modified",
            "accept-ranges",
            "Content-Length",
            "content-encoding",
        ] {
            let parsed = http::HeaderName::from_bytes(n.as_bytes()).unwrap();
            assert_eq!(common_response_name(n), Some(parsed), "{n}");
        }
        for n in ["x-date", "dates", "content-typ", "", "serve"] {
            assert_eq!(common_response_name(n), None, "{n}");
        }
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let frame = |head: &[u8], head_req: bool| {
            let mut f = [httparse::EMPTY_HEADER; 16];
            let mut r = httparse::Response::new(&mut f);
            let n = match r.parse(head) {
                Ok(Status::Complete(n)) => n,
                other => panic!("{other:?}"),
            };
            response_framing(&r, n, head_req).map(|(_, s, f, k)| (s, f, k))
        };
        assert_eq!(
            frame(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
            Some((200, Framing::Length(5), true))
        );
        assert_eq!(
            frame(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            Some((200, Framing::Empty, true))
        );
        assert_eq!(
            frame(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n",
                false
            ),
            Some((200, Framing::Chunked, true))
        );
        assert_eq!(
            frame(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false),
            Some((200, Framing::Close, true))
        );
        assert_eq!(frame(b"HTTP/1.0 200 OK\r\n\r\n", false), Some((200, Framing::Close, false)));
        assert_eq!(
            frame(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", false),
            Some((204, Framing::Empty, false))
        );
        assert_eq!(
            frame(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false),
            None
        );
        assert_eq!(frame(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false), None);
    }

    #[test]
    fn response_heads_lose_hop_by_hop_fields() {
        let mut out = Vec::new();
        let head = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, x-private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nTransfer-Encoding: chunked\r\nX-App: yes\r\n\r\n";
        assert!(write_response_head(head, &mut out, Framing::Chunked, true));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nX-App: yes\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn every_connection_field_counts_whatever_it_names() {
        // A keep-alive-only value is skipped; the fields after it still name what goes.
        let mut out = Vec::new();
        let head = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close, x-a\r\nConnection: KEEP-ALIVE , x-b\r\nClose: 1\r\nX-A: 1\r\nX-B: 1\r\nX-Keep: 1\r\nContent-Length: 0\r\n\r\n";
        assert!(write_response_head(head, &mut out, Framing::Length(0), false));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nX-Keep: 1\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
