//! TCP and TLS listeners: accept, pick a target by flow hash, connect (from the client's
//! address when preserved), send the PROXY v2 header when enabled, relay, and watch the
//! connection for idle timeout and for its target draining or turning unhealthy.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weir_balance::{flow_hash, HealthState, OutstandingGuard, TargetCell};

use crate::conn_log::{self, ConnRecord};
use crate::relay::{self, Meter, Outcome, Watchdog};
use crate::snapshot::{L4Group, L4Snapshot, L4SnapshotCell};
use crate::stats::L4Stats;
use crate::{proxy_v2, socket};

/// How long a target has to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to complete a TLS handshake.
/// How long a target has to complete the TLS handshake of a TLS target group.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a connection's watchdog looks at idle time and target state.
const WATCH_PERIOD: Duration = Duration::from_millis(250);

/// Accepts connections on `listener` (a node in `zone`) until the task is aborted. Each
/// connection watches `shutdown` and is reset when the listener stops.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    zone: Option<Arc<str>>,
    cell: L4SnapshotCell,
    stats: Arc<L4Stats>,
    rates: Arc<weir_balance::RateCell>,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let snap = cell.load_full();
        if !rates.allow(snap.limits.max_connection_rate_per_source, peer.ip()) {
            L4Stats::inc(&stats.rejected_connections);
            tracing::debug!(%peer, "source over its connection rate; connection closed");
            drop(stream);
            continue;
        }
        let open = L4Stats::get(&stats.active_flows_tcp) + L4Stats::get(&stats.active_flows_tls);
        if open >= snap.limits.max_connections as u64 {
            // Shed: closing at once keeps a flood from costing more than an accept.
            L4Stats::inc(&stats.rejected_connections);
            tracing::debug!(%peer, open, "connection limit reached; connection closed");
            drop(stream);
            continue;
        }
        let stats = stats.clone();
        let zone = zone.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let local = stream.local_addr().unwrap_or(peer);
            let _ = stream.set_nodelay(true);
            handle(stream, peer, local, zone.as_deref(), &snap, &stats, shutdown).await;
        });
    }
}

async fn handle(
    client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    zone: Option<&str>,
    snap: &L4Snapshot,
    stats: &L4Stats,
    shutdown: watch::Receiver<bool>,
) {
    let tls = snap.tls.is_some();
    let (active, new, bytes) = if tls {
        (&stats.active_flows_tls, &stats.new_flows_tls, &stats.processed_bytes_tls)
    } else {
        (&stats.active_flows_tcp, &stats.new_flows_tcp, &stats.processed_bytes_tcp)
    };
    L4Stats::inc(new);
    L4Stats::inc(active);
    let _active = Gauge(active);
    let Some(group) = snap.group.as_ref() else {
        L4Stats::inc(&stats.tcp_elb_resets);
        socket::reset_on_close(&client);
        return;
    };
    let hash = flow_hash(group.key_mode, 6, peer, local);
    let Some(target) = group.pick(zone, hash) else {
        tracing::debug!(%peer, listener = %snap.listener_arn, "no target for the flow");
        L4Stats::inc(&stats.tcp_elb_resets);
        socket::reset_on_close(&client);
        return;
    };
    let guard = OutstandingGuard::new(target.clone());
    let meter = Arc::new(Meter::default());
    // TLS connections are logged when the load balancer's access logs are on (AWS logs TLS
    // listeners only).
    let accepted = Instant::now();
    let mut entry = snap.access_log.as_ref().filter(|_| tls).map(|_| ConnRecord {
        start_secs: epoch_secs(),
        elb: snap.elb.clone(),
        listener: snap.listener_arn.rsplit('/').next().unwrap_or_default().to_string(),
        client: Some(peer),
        destination: Some(local),
        ..Default::default()
    });
    // A TLS listener completes the client's handshake before contacting the target.
    let client = match &snap.tls {
        Some(cfg) => {
            let handshake = tls_accept(client, cfg.clone(), entry.as_mut());
            match tokio::time::timeout(snap.limits.handshake_timeout, handshake).await {
                Ok(Ok(s)) => {
                    if let Some(rec) = entry.as_mut() {
                        describe(rec, s.get_ref().1, snap, accepted);
                    }
                    Client::Tls(Box::new(s))
                }
                failed => {
                    L4Stats::inc(&stats.client_tls_negotiation_errors);
                    if let Some(mut rec) = entry {
                        if let Ok(Err(e)) = &failed {
                            rec.incoming_alert = alert_received(e);
                        }
                        finish_entry(rec, snap, &meter, accepted);
                    }
                    return;
                }
            }
        }
        None => Client::Plain(client),
    };
    let from = group.preserve_client_ip.then(|| peer.ip());
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, socket::connect_tcp(target.addr, from));
    let mut upstream = match connected.await {
        Ok(Ok(s)) => s,
        failed => {
            if let Ok(Err(e)) = failed {
                tracing::debug!(target = %target.addr, error = %e, "target connection failed");
            }
            L4Stats::inc(&stats.target_connection_errors);
            L4Stats::inc(&stats.tcp_elb_resets);
            client.reset();
            if let Some(rec) = entry {
                finish_entry(rec, snap, &meter, accepted);
            }
            return;
        }
    };
    if group.proxy_protocol_v2 {
        let h = proxy_v2::encode(peer, local, proxy_v2::Transport::Stream);
        if upstream.write_all(&h).await.is_err() {
            L4Stats::inc(&stats.target_connection_errors);
            L4Stats::inc(&stats.tcp_elb_resets);
            client.reset();
            if let Some(rec) = entry {
                finish_entry(rec, snap, &meter, accepted);
            }
            return;
        }
    }
    let upstream = match &group.target_tls {
        None => Upstream::Plain(upstream),
        Some(cfg) => match target_tls(upstream, cfg, stats).await {
            Some(t) => {
                if let Some(rec) = entry.as_mut() {
                    rec.alpn_be =
                        t.get_ref().1.alpn_protocol().map(|p| String::from_utf8_lossy(p).into());
                }
                Upstream::Tls(Box::new(t))
            }
            None => {
                L4Stats::inc(&stats.tcp_elb_resets);
                client.reset();
                if let Some(rec) = entry {
                    finish_entry(rec, snap, &meter, accepted);
                }
                return;
            }
        },
    };
    let watchdog = ConnWatch::new(&target, group, snap.tcp_idle_timeout, shutdown);
    let (outcome, client, upstream) = relay_any(client, upstream, &meter, watchdog).await;
    match outcome {
        Outcome::ClientReset => {
            L4Stats::inc(&stats.tcp_client_resets);
            upstream.reset();
        }
        Outcome::TargetReset => {
            L4Stats::inc(&stats.tcp_target_resets);
            client.reset();
        }
        Outcome::Closed => {}
        Outcome::Stopped => {
            // Closed by the load balancer: both sides get a reset.
            L4Stats::inc(&stats.tcp_elb_resets);
            client.reset();
            upstream.reset();
        }
    }
    bytes.fetch_add(meter.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
    drop(guard);
    if let Some(rec) = entry {
        finish_entry(rec, snap, &meter, accepted);
    }
}

fn epoch_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Reads the client's hello (its ALPN list goes to the log entry), then completes the handshake.
async fn tls_accept(
    tcp: TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    rec: Option<&mut ConnRecord>,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    let start =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
    if let Some(rec) = rec {
        rec.alpn_client = start
            .client_hello()
            .alpn()
            .map(|ps| ps.map(|p| String::from_utf8_lossy(p).into_owned()).collect())
            .unwrap_or_default();
    }
    start.into_stream(cfg).await
}

/// What the handshake negotiated, into the log entry.
fn describe(
    rec: &mut ConnRecord,
    conn: &rustls::ServerConnection,
    snap: &L4Snapshot,
    accepted: Instant,
) {
    rec.handshake_ms = Some(accepted.elapsed().as_millis() as u64);
    rec.cipher = conn.negotiated_cipher_suite().map(weir_tls::cipher_name);
    rec.protocol = conn.protocol_version().and_then(conn_log::protocol_name);
    rec.named_group = conn.negotiated_key_exchange_group().map(|g| weir_tls::group_name(g.name()));
    rec.domain = conn.server_name().map(str::to_string);
    rec.alpn_fe = conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
    rec.cert = weir_tls::select(&snap.certificates, rec.domain.as_deref())
        .map(|c| (c.arn.clone(), c.serial.clone()));
}

/// The alert a client sent that ended its handshake.
fn alert_received(e: &std::io::Error) -> Option<u8> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(a) => Some(u8::from(*a)),
        _ => None,
    }
}

/// Completes and queues a connection's log entry.
fn finish_entry(mut rec: ConnRecord, snap: &L4Snapshot, meter: &Meter, accepted: Instant) {
    let Some(log) = snap.access_log.as_ref() else { return };
    rec.end_secs = epoch_secs();
    rec.connection_ms = accepted.elapsed().as_millis() as u64;
    rec.received_bytes = meter.from_client.load(Ordering::Relaxed);
    rec.sent_bytes = meter.bytes.load(Ordering::Relaxed).saturating_sub(rec.received_bytes);
    conn_log::log(log, &rec);
}

/// Relays until the connection ends; gives the sides back for the resets that follow.
async fn relay_any(
    client: Client,
    upstream: Upstream,
    meter: &Arc<Meter>,
    w: ConnWatch<'_>,
) -> (Outcome, Client, Upstream) {
    const P: Duration = WATCH_PERIOD;
    let (mut client, mut upstream) = match (client, upstream) {
        (Client::Plain(c), Upstream::Plain(t)) => return plain(c, t, meter, w).await,
        sides => sides,
    };
    let o = match (&mut client, &mut upstream) {
        (Client::Tls(c), Upstream::Plain(t)) => relay::streams(&mut **c, t, meter, P, w).await,
        (Client::Plain(c), Upstream::Tls(t)) => relay::streams(c, &mut **t, meter, P, w).await,
        (Client::Tls(c), Upstream::Tls(t)) => relay::streams(&mut **c, &mut **t, meter, P, w).await,
        // Plain to plain was relayed above; released sockets are not handed in.
        _ => Outcome::Stopped,
    };
    (o, client, upstream)
}

/// Plain TCP both sides: on an io_uring where the kernel allows it, else through epoll.
async fn plain(
    c: TcpStream,
    t: TcpStream,
    meter: &Arc<Meter>,
    w: ConnWatch<'_>,
) -> (Outcome, Client, Upstream) {
    #[cfg(target_os = "linux")]
    if weir_uring::available() {
        // Out of the reactor: the ring watches the sockets from now on.
        return match (c.into_std(), t.into_std()) {
            (Ok(c), Ok(t)) => on_ring(c, t, meter, w).await,
            // Deregistering fails only for a socket the reactor lost; what is left is reset.
            (c, t) => (Outcome::Stopped, Client::Released(c.ok()), Upstream::Released(t.ok())),
        };
    }
    let o = relay::tcp(&c, &t, meter, WATCH_PERIOD, w).await;
    (o, Client::Plain(c), Upstream::Plain(t))
}

/// Relays on an io_uring (`weir_uring`), asking `w` whether to stop when the target's state
/// or the listener changes and otherwise at [`ConnWatch::next_look`] — no periodic wake-up per
/// connection; a connection the ring hands back (bulk transfer, or its buffer pool dry) goes
/// on with [`relay::resume`] (splice, or its own buffers).
#[cfg(target_os = "linux")]
async fn on_ring(
    c: std::net::TcpStream,
    t: std::net::TcpStream,
    meter: &Arc<Meter>,
    mut w: ConnWatch<'_>,
) -> (Outcome, Client, Upstream) {
    const P: Duration = WATCH_PERIOD;
    let registered = |c, t| Some((TcpStream::from_std(c).ok()?, TcpStream::from_std(t).ok()?));
    let mut relay = match weir_uring::start(c.into(), t.into(), meter.clone()) {
        Ok(r) => r,
        Err((c, t)) => {
            // The ring cannot take it: back to the reactor.
            return match registered(c.into(), t.into()) {
                Some((c, t)) => {
                    let o = relay::tcp(&c, &t, meter, P, w).await;
                    (o, Client::Plain(c), Upstream::Plain(t))
                }
                None => (Outcome::Stopped, Client::Released(None), Upstream::Released(None)),
            };
        }
    };
    let target = w.target;
    let finish = loop {
        // Enabled before the look, so that a change during it is not missed.
        let mut changed = std::pin::pin!(target.changed());
        changed.as_mut().enable();
        if w.must_close(meter.moved()) {
            relay.stop();
            break relay.finished().await;
        }
        let look = tokio::time::sleep_until(w.next_look().into());
        tokio::select! {
            f = relay.finished() => break f,
            _ = changed => {}
            _ = w.shutdown.changed() => {}
            () = look => {}
        }
    };
    let Some(f) = finish else {
        // The ring's thread is gone, and the sockets with it.
        return (Outcome::Stopped, Client::Released(None), Upstream::Released(None));
    };
    let (c, t) = (std::net::TcpStream::from(f.client), std::net::TcpStream::from(f.target));
    match f.how {
        weir_uring::How::Ended { up, down } => {
            (relay::outcome(up, down), Client::Released(Some(c)), Upstream::Released(Some(t)))
        }
        weir_uring::How::Stopped => {
            (Outcome::Stopped, Client::Released(Some(c)), Upstream::Released(Some(t)))
        }
        weir_uring::How::Continue { up, down } => match registered(c, t) {
            Some((c, t)) => {
                let o = relay::resume(&c, &t, meter, P, w, [up, down]).await;
                (o, Client::Plain(c), Upstream::Plain(t))
            }
            None => (Outcome::Stopped, Client::Released(None), Upstream::Released(None)),
        },
    }
}

/// The target side of a connection.
enum Upstream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Out of the reactor after an io_uring relay (`None`: already closed).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Released(Option<std::net::TcpStream>),
}

impl Upstream {
    /// Makes closing the socket send a reset.
    fn reset(&self) {
        match self {
            Self::Plain(s) => socket::reset_on_close(s),
            Self::Tls(s) => socket::reset_on_close(s.get_ref().0),
            Self::Released(Some(s)) => socket::reset_on_close(s),
            Self::Released(None) => {}
        }
    }
}

/// The client side of a connection.
enum Client {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Out of the reactor after an io_uring relay (`None`: already closed).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Released(Option<std::net::TcpStream>),
}

impl Client {
    /// The socket, before the relay.
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Self::Plain(s) => Some(s),
            Self::Tls(s) => Some(s.get_ref().0),
            Self::Released(_) => None,
        }
    }

    /// Makes closing the socket send a reset.
    fn reset(&self) {
        match self {
            Self::Released(Some(s)) => socket::reset_on_close(s),
            other => {
                if let Some(s) = other.tcp() {
                    socket::reset_on_close(s);
                }
            }
        }
    }
}

/// Decrements a gauge when dropped.
pub(crate) struct Gauge<'a>(pub(crate) &'a AtomicU64);

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// TLS towards a target of a TLS group. Targets' certificates are not verified, as on AWS.
async fn target_tls(
    tcp: TcpStream,
    cfg: &Arc<rustls::ClientConfig>,
    stats: &L4Stats,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from("target.weir.internal").ok()?;
    match tokio::time::timeout(
        TLS_HANDSHAKE_TIMEOUT,
        tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp),
    )
    .await
    {
        Ok(Ok(s)) => Some(s),
        _ => {
            L4Stats::inc(&stats.target_tls_negotiation_errors);
            None
        }
    }
}

/// Tells whether the load balancer must close a connection: idle for longer than `idle` (no
/// byte moved), its target's deregistration delay over (with connection termination on), its
/// target unhealthy (with unhealthy termination on), or the listener stopping. The epoll and
/// TLS relays ask it every [`WATCH_PERIOD`]; the io_uring relay when one of these may have
/// changed (see [`ConnWatch::next_look`] and [`on_ring`]).
struct ConnWatch<'a> {
    target: &'a TargetCell,
    group: &'a L4Group,
    idle: Duration,
    shutdown: watch::Receiver<bool>,
    /// The byte count at the last look that saw it move, and when that was.
    seen: u64,
    since: Instant,
}

impl<'a> ConnWatch<'a> {
    fn new(
        target: &'a TargetCell,
        group: &'a L4Group,
        idle: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self { target, group, idle, shutdown, seen: 0, since: Instant::now() }
    }

    /// When to look again if neither the target's state nor the listener changes meanwhile:
    /// the drain deadline when it ends the connection sooner, else a sixteenth of the idle
    /// timeout (between [`WATCH_PERIOD`] and 10 s), so that an idle connection is closed at
    /// most that much after its timeout and a busy one costs few wake-ups.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn next_look(&self) -> Instant {
        let look = Instant::now() + (self.idle / 16).clamp(WATCH_PERIOD, Duration::from_secs(10));
        let drain = (self.group.terminate_on_drain && self.target.state() == HealthState::Draining)
            .then(|| self.target.drain_deadline())
            .flatten();
        drain.map_or(look, |d| d.min(look))
    }
}

impl Watchdog for ConnWatch<'_> {
    fn must_close(&mut self, moved: u64) -> bool {
        if self.shutdown.has_changed().is_err() || *self.shutdown.borrow() {
            return true;
        }
        if moved != self.seen {
            (self.seen, self.since) = (moved, Instant::now());
        } else if self.since.elapsed() >= self.idle {
            tracing::debug!(target = %self.target.addr, "idle timeout");
            return true;
        }
        match self.target.state() {
            HealthState::Draining => {
                self.group.terminate_on_drain
                    && self.target.drain_deadline().is_some_and(|d| d <= Instant::now())
            }
            HealthState::Unhealthy => self.group.terminate_on_unhealthy,
            _ => false,
        }
    }
}
