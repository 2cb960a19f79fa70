//! Relaying plain TCP connections through io_uring.
//!
//! One thread per CPU the process may run on drives one ring each (see `driver`); connections
//! are dealt to them in turn. Each direction of a connection has one multishot receive armed
//! for its life, into a pool of provided buffers shared by the ring's connections (an idle
//! connection holds none), and the sends forwarding what arrives are queued for all the
//! connections and submitted together; the sockets never enter an epoll set. Per message that
//! is one receive completion and one send in the kernel and no system call of its own: one
//! `io_uring_enter` submits every operation queued in a turn and waits for the next
//! completions. On a loopback request/response benchmark that is about a tenth less CPU per
//! request than the epoll relay (`bench/README.md`).
//!
//! Where io_uring cannot be had — kernels before 6.1 (no deferred completion work; multishot
//! receives came in 6.0), seccomp profiles that forbid it (Docker's default),
//! `kernel.io_uring_disabled`, or `WEIR_IO_URING=off` in the environment — [`start`] hands
//! the sockets back and the caller relays them itself.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::oneshot;

#[cfg(target_os = "linux")]
mod driver;
#[cfg(target_os = "linux")]
mod ring;

/// Bytes moved, shared with the connection's watchdog, which tells idleness from the count
/// not moving between its ticks — no clock is read per message.
#[derive(Debug, Default)]
pub struct Meter {
    /// Payload bytes moved, both directions.
    pub bytes: AtomicU64,
    /// Of those, bytes from the client to the target.
    pub from_client: AtomicU64,
}

impl Meter {
    /// Records `n` bytes moved, from the client (`up`) or to it.
    pub fn record(&self, up: bool, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        if up {
            self.from_client.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    /// Payload bytes moved so far, both directions.
    pub fn moved(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// How one direction of a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The reading side closed cleanly; the writing side was shut down.
    Eof,
    /// The reading side reset or failed.
    ReadError,
    /// The writing side reset or failed.
    WriteError,
}

/// How a relay on the ring ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Both directions ended, or one failed (the other is reported [`End::Eof`]).
    Ended {
        /// Client to target.
        up: End,
        /// Target to client.
        down: End,
    },
    /// Handed back for the caller to go on with: a receive filled a whole buffer (bulk
    /// transfer, better spliced) or found the ring's buffer pool empty. Everything received
    /// has been forwarded; the directions that already ended say how.
    Continue {
        /// Client to target, if ended.
        up: Option<End>,
        /// Target to client, if ended.
        down: Option<End>,
    },
    /// Ended by [`Relay::stop`].
    Stopped,
}

/// A relay's end: how, and the sockets, back with the caller (no operation of the ring uses
/// them any more).
#[derive(Debug)]
pub struct Finish {
    /// The client's socket.
    pub client: OwnedFd,
    /// The target's socket.
    pub target: OwnedFd,
    /// How it ended.
    pub how: How,
}

/// A connection being relayed by a ring. Dropping it before it finished stops the relay and
/// resets both sides.
#[derive(Debug)]
pub struct Relay {
    id: u64,
    tx: Sender,
    rx: oneshot::Receiver<Finish>,
    done: bool,
}

impl Relay {
    /// Asks the ring to end the relay; [`Self::finished`] then reports [`How::Stopped`] (or how
    /// it ended, if it did first).
    pub fn stop(&self) {
        #[cfg(target_os = "linux")]
        self.tx.send(driver::Cmd::Stop(self.id));
    }

    /// Waits for the relay to end. `None` if the ring's thread is gone (the sockets were closed
    /// with it). Cancel-safe.
    pub async fn finished(&mut self) -> Option<Finish> {
        let r = (&mut self.rx).await.ok();
        self.done = true;
        r
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if !self.done {
            self.stop();
        }
    }
}

#[cfg(target_os = "linux")]
type Sender = Arc<driver::Mailbox>;
#[cfg(not(target_os = "linux"))]
type Sender = Arc<()>;

/// io_uring turned off by [`disable`] (the environment and a failed setup leave `RINGS` empty).
static OFF: AtomicBool = AtomicBool::new(false);
/// The rings' mailboxes, once set up (`None`: io_uring unavailable).
static RINGS: OnceLock<Option<Vec<Sender>>> = OnceLock::new();
/// The ring the next connection goes to.
static NEXT_RING: AtomicUsize = AtomicUsize::new(0);
/// Relays started on a ring, since the process began.
static STARTED: AtomicU64 = AtomicU64::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Turns io_uring off for the rest of the process: [`start`] hands every connection back.
pub fn disable() {
    OFF.store(true, Ordering::Relaxed);
}

/// Receives paused for backpressure, since the process began.
static PAUSED: AtomicU64 = AtomicU64::new(0);
/// Connections handed back because the buffer pool was dry, since the process began.
static DRY: AtomicU64 = AtomicU64::new(0);

#[cfg(target_os = "linux")]
fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What the rings did since the process began (tests tell from it which paths ran).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Relays started on a ring.
    pub started: u64,
    /// Receives paused because their direction's sends fell behind.
    pub paused: u64,
    /// Connections handed back because their ring's buffer pool was dry.
    pub pool_dry: u64,
}

/// The counters so far.
pub fn counters() -> Counters {
    Counters {
        started: STARTED.load(Ordering::Relaxed),
        paused: PAUSED.load(Ordering::Relaxed),
        pool_dry: DRY.load(Ordering::Relaxed),
    }
}

/// Sets up the rings: one thread each, as many as the CPUs the process may run on, each with
/// `WEIR_IO_URING_BUFFERS` 8 KiB buffers (256 unless set; rounded to a power of two).
fn setup() -> Option<Vec<Sender>> {
    let v = std::env::var("WEIR_IO_URING").unwrap_or_default();
    if matches!(v.as_str(), "off" | "0" | "false" | "no") {
        return None;
    }
    #[cfg(target_os = "linux")]
    {
        let bufs = std::env::var("WEIR_IO_URING_BUFFERS")
            .ok()
            .and_then(|v| v.parse::<u16>().ok())
            .unwrap_or(ring::BUFS);
        let n = std::thread::available_parallelism().map_or(1, usize::from);
        let mut rings = Vec::with_capacity(n);
        for i in 0..n {
            match driver::spawn(i, bufs) {
                Ok(m) => rings.push(m),
                Err(e) if i == 0 => {
                    tracing::info!(error = %e, "io_uring unavailable; TCP is relayed through epoll");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, rings = i, "fewer io_uring threads than CPUs");
                    break;
                }
            }
        }
        Some(rings)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// The mailbox of the ring the next connection goes to.
fn sender() -> Option<Sender> {
    if OFF.load(Ordering::Relaxed) {
        return None;
    }
    let rings = RINGS.get_or_init(setup).as_ref()?;
    let i = NEXT_RING.fetch_add(1, Ordering::Relaxed) % rings.len().max(1);
    rings.get(i).cloned()
}

/// Whether [`start`] takes connections (setting the rings up on first use).
pub fn available() -> bool {
    !OFF.load(Ordering::Relaxed) && RINGS.get_or_init(setup).is_some()
}

/// Starts relaying between `client` and `target` (connected TCP sockets, in no reactor),
/// counting into `meter`. Hands the sockets back when io_uring is unavailable.
pub fn start(
    client: OwnedFd,
    target: OwnedFd,
    meter: Arc<Meter>,
) -> Result<Relay, (OwnedFd, OwnedFd)> {
    let Some(tx) = sender() else { return Err((client, target)) };
    #[cfg(target_os = "linux")]
    {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        let start = Box::new(driver::Start { id, client, target, meter, reply });
        tx.send(driver::Cmd::Start(start));
        count(&STARTED);
        Ok(Relay { id, tx, rx, done: false })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (tx, meter, &NEXT_ID, &STARTED, &PAUSED, &DRY);
        Err((client, target))
    }
}
