//! The relay state machine: one thread per ring moves the bytes of all its connections.
//!
//! Each direction of a connection has one multishot receive in the kernel — armed once, it
//! completes for every message, into a pool buffer the kernel picks — and at most one send,
//! forwarding the oldest buffer received. Buffers received while a send is in the kernel wait
//! in the direction's queue; at [`PAUSE_AT`] of them the receive is cancelled (the sender is
//! faster than the receiver: backpressure) and re-armed once the queue is drained. The thread
//! reaps every completion waiting, queues what follows from each, and submits the lot and
//! sleeps until the next completion in one system call (`io_uring_enter`): no socket is in any
//! epoll set, no receive is re-armed per message, and one wake-up serves every connection with
//! something to do. Commands (a new connection, a stop) arrive in a mailbox whose eventfd the
//! ring always has a read pending on.
//!
//! A connection ends when both directions have seen end-of-stream (each shuts the other
//! side's writing down once what came before it is sent), one fails (everything of the
//! connection is cancelled), it is stopped (likewise), or it is handed back to the caller to
//! go on with ([`How::Continue`]): when a receive fills a whole buffer — bulk transfer, which
//! the caller relays with `splice(2)` — or finds the pool empty (connections holding buffers
//! their peers do not take cannot starve the others). The receives are cancelled then and
//! what was received is forwarded first. The descriptors go back to the caller in every case.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::ring::{self, Cqe, Ring, BUF_LEN};
use crate::{End, Finish, How, Meter};

/// What a connection's task asks of its ring's thread.
pub(crate) enum Cmd {
    /// Relay a new connection.
    Start(Box<Start>),
    /// End the connection with this id.
    Stop(u64),
}

/// A connection to relay.
pub(crate) struct Start {
    pub(crate) id: u64,
    pub(crate) client: OwnedFd,
    pub(crate) target: OwnedFd,
    pub(crate) meter: Arc<Meter>,
    pub(crate) reply: oneshot::Sender<Finish>,
}

/// Messages a direction holds received and not yet sent before its receive is paused.
const PAUSE_AT: usize = 4;

/// One direction: 0 reads the client and writes the target, 1 the reverse.
#[derive(Default)]
struct Dir {
    /// Its multishot receive is in the kernel.
    recv: bool,
    /// A cancellation of that receive has been asked for.
    cancelling: bool,
    /// The buffer being sent (in the kernel): id, bytes sent, bytes received.
    send: Option<(u16, u32, u32)>,
    /// Buffers received and waiting to be sent: id, length.
    queue: VecDeque<(u16, u32)>,
    /// How the reading side ended, once it has.
    end: Option<End>,
    /// The destination's write side has been shut down (after end-of-stream, once drained).
    shut: bool,
    /// The receive was stopped because too much waits to be sent; re-armed once drained.
    paused: bool,
}

impl Dir {
    fn busy(&self) -> bool {
        self.recv || self.send.is_some()
    }
}

/// Why a connection is winding down (its operations are not re-armed).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ending {
    No,
    /// To the caller, once what was received is sent.
    Handover,
    Failed,
    Stopped,
}

struct Conn {
    id: u64,
    /// Client, target.
    fds: [OwnedFd; 2],
    dirs: [Dir; 2],
    meter: Arc<Meter>,
    reply: Option<oneshot::Sender<Finish>>,
    ending: Ending,
}

/// `user_data`: slot << 8 | direction << 1 | send.
fn user_data(slot: usize, d: usize, send: bool) -> u64 {
    ((slot as u64) << 8) | ((d as u64) << 1) | u64::from(send)
}

struct Driver {
    ring: Ring,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    ids: HashMap<u64, usize>,
    cqes: Vec<Cqe>,
}

impl Driver {
    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Start(s) => self.start(*s),
            Cmd::Stop(id) => {
                if let Some(&slot) = self.ids.get(&id) {
                    self.end(slot, Ending::Stopped);
                    self.maybe_finish(slot);
                }
            }
        }
    }

    fn start(&mut self, s: Start) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        self.conns[slot] = Some(Conn {
            id: s.id,
            fds: [s.client, s.target],
            dirs: [Dir::default(), Dir::default()],
            meter: s.meter,
            reply: Some(s.reply),
            ending: Ending::No,
        });
        self.ids.insert(s.id, slot);
        self.recv(slot, 0);
        self.recv(slot, 1);
    }

    fn recv(&mut self, slot: usize, d: usize) {
        let Some(c) = self.conns[slot].as_mut() else { return };
        let fd = c.fds[d].as_raw_fd();
        c.dirs[d].recv = true;
        c.dirs[d].cancelling = false;
        c.dirs[d].paused = false;
        self.ring.recv(fd, user_data(slot, d, false));
    }

    /// Sends the next queued buffer, if none is being sent; once the queue is drained, shuts
    /// the destination's write side down after end-of-stream and resumes a paused receive.
    fn pump(&mut self, slot: usize, d: usize) {
        let Some(c) = self.conns[slot].as_mut() else { return };
        let fd = c.fds[1 - d].as_raw_fd();
        let dir = &mut c.dirs[d];
        if dir.send.is_some() {
            return;
        }
        if let Some((bid, len)) = dir.queue.pop_front() {
            dir.send = Some((bid, 0, len));
            self.ring.send(fd, bid, 0, len, user_data(slot, d, true));
            return;
        }
        if dir.end == Some(End::Eof) && !dir.shut {
            dir.shut = true;
            // Half-close: the other side learns of it once everything before it is there.
            let _ = rustix::net::shutdown(c.fds[1 - d].as_fd(), rustix::net::Shutdown::Write);
        }
        if dir.paused && !dir.recv && c.ending == Ending::No && dir.end.is_none() {
            self.recv(slot, d);
        }
    }

    fn cancel_recv(&mut self, slot: usize, d: usize) {
        let Some(c) = self.conns[slot].as_mut() else { return };
        if c.dirs[d].recv && !c.dirs[d].cancelling {
            c.dirs[d].cancelling = true;
            self.ring.cancel(user_data(slot, d, false));
        }
    }

    /// Winds a connection down for `why`: cancels what must not complete.
    fn end(&mut self, slot: usize, why: Ending) {
        let Some(c) = self.conns[slot].as_mut() else { return };
        if c.ending >= why {
            return;
        }
        c.ending = why;
        let mut freed = Vec::new();
        let mut sends = [false, false];
        if why >= Ending::Failed {
            // Nothing more is forwarded.
            for (d, dir) in c.dirs.iter_mut().enumerate() {
                freed.extend(dir.queue.drain(..).map(|(bid, _)| bid));
                sends[d] = dir.send.is_some();
            }
        }
        for (d, sending) in sends.into_iter().enumerate() {
            self.cancel_recv(slot, d);
            if sending {
                self.ring.cancel(user_data(slot, d, true));
            }
        }
        for bid in freed {
            self.ring.give_back(bid);
        }
    }

    fn complete(&mut self, (ud, res, flags): Cqe) {
        if ud == ring::CANCEL || ud == ring::WAKE {
            return;
        }
        let (slot, d, send) = ((ud >> 8) as usize, ((ud >> 1) & 1) as usize, ud & 1 == 1);
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            tracing::warn!(user_data = ud, "io_uring completion for no connection");
            return;
        };
        if send {
            let Some((bid, sent, len)) = c.dirs[d].send.take() else { return };
            if res > 0 {
                let sent = sent + res as u32;
                c.meter.record(d == 0, res as usize);
                if sent < len && c.ending < Ending::Failed {
                    c.dirs[d].send = Some((bid, sent, len));
                    let fd = c.fds[1 - d].as_raw_fd();
                    self.ring.send(fd, bid, sent, len - sent, user_data(slot, d, true));
                } else {
                    self.ring.give_back(bid);
                    if self.conns[slot].as_ref().is_some_and(|c| c.ending < Ending::Failed) {
                        self.pump(slot, d);
                    }
                }
            } else {
                self.ring.give_back(bid);
                if res != -libc::ECANCELED {
                    if let Some(c) = self.conns[slot].as_mut() {
                        c.dirs[d].end = Some(End::WriteError);
                    }
                    self.end(slot, Ending::Failed);
                }
            }
            return self.maybe_finish(slot);
        }
        let more = ring::more(flags);
        if !more {
            c.dirs[d].recv = false;
        }
        if res > 0 {
            let Some(bid) = ring::buffer_of(flags) else {
                c.dirs[d].end = Some(End::ReadError);
                self.end(slot, Ending::Failed);
                return self.maybe_finish(slot);
            };
            if c.ending >= Ending::Failed {
                self.ring.give_back(bid);
                return self.maybe_finish(slot);
            }
            let n = res as u32;
            c.dirs[d].queue.push_back((bid, n));
            let (queued, normal) = (c.dirs[d].queue.len(), c.ending == Ending::No);
            let rearm = !more && normal && c.dirs[d].end.is_none();
            self.pump(slot, d);
            if n as usize == BUF_LEN {
                // Bulk transfer: forward what came, then hand the connection back.
                self.end(slot, Ending::Handover);
            } else if more && queued >= PAUSE_AT {
                if let Some(c) = self.conns[slot].as_mut() {
                    c.dirs[d].paused = true;
                }
                crate::count(&crate::PAUSED);
                self.cancel_recv(slot, d);
            } else if rearm {
                self.recv(slot, d);
            }
        } else if res == 0 {
            c.dirs[d].end = Some(End::Eof);
            self.pump(slot, d);
        } else if res == -libc::ENOBUFS {
            // The pool is dry: the caller goes on with buffers of its own.
            crate::count(&crate::DRY);
            self.end(slot, Ending::Handover);
        } else if res == -libc::ECANCELED {
            // A paused receive resumes once what it left is sent.
            self.pump(slot, d);
        } else {
            c.dirs[d].end = Some(End::ReadError);
            self.end(slot, Ending::Failed);
        }
        self.maybe_finish(slot);
    }

    /// Hands the connection back when nothing of it is left in the kernel and it is over.
    fn maybe_finish(&mut self, slot: usize) {
        let Some(c) = self.conns[slot].as_ref() else { return };
        if c.dirs.iter().any(|d| d.busy() || !d.queue.is_empty()) {
            return;
        }
        let [up, down] = [c.dirs[0].end, c.dirs[1].end];
        let how = match c.ending {
            Ending::No if up.is_none() || down.is_none() => return,
            // A direction cut short by the other's failure is reported ended cleanly.
            Ending::No | Ending::Failed => {
                How::Ended { up: up.unwrap_or(End::Eof), down: down.unwrap_or(End::Eof) }
            }
            Ending::Handover => How::Continue { up, down },
            Ending::Stopped => How::Stopped,
        };
        let Some(c) = self.conns[slot].take() else { return };
        self.free.push(slot);
        self.ids.remove(&c.id);
        let [client, target] = c.fds;
        if let Some(reply) = c.reply {
            if let Err(f) = reply.send(Finish { client, target, how }) {
                // Nobody waits (the connection's task is gone): end both sides with a reset.
                for fd in [&f.client, &f.target] {
                    let _ = rustix::net::sockopt::set_socket_linger(
                        fd,
                        Some(std::time::Duration::ZERO),
                    );
                }
            }
        }
    }
}

/// Where connections' tasks leave commands for a ring's thread.
pub(crate) struct Mailbox {
    cmds: Mutex<Vec<Cmd>>,
    /// Written after each command; the ring always has a read of it pending.
    wake: OwnedFd,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox").field("wake", &self.wake).finish_non_exhaustive()
    }
}

impl Mailbox {
    /// Leaves `cmd` and wakes the ring's thread.
    pub(crate) fn send(&self, cmd: Cmd) {
        match self.cmds.lock() {
            Ok(mut q) => q.push(cmd),
            Err(poisoned) => poisoned.into_inner().push(cmd),
        }
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    fn take(&self, into: &mut Vec<Cmd>) {
        match self.cmds.lock() {
            Ok(mut q) => into.append(&mut q),
            Err(poisoned) => into.append(&mut poisoned.into_inner()),
        }
    }
}

/// Starts a ring's thread: the ring is set up there (it is that thread's alone, so the kernel
/// can defer completion work to its waits). Fails as the ring's setup does.
pub(crate) fn spawn(n: usize, bufs: u16) -> io::Result<Arc<Mailbox>> {
    use rustix::event::{eventfd, EventfdFlags};
    let wake = eventfd(0, EventfdFlags::CLOEXEC)?;
    let mailbox = Arc::new(Mailbox { cmds: Mutex::new(Vec::new()), wake });
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mb = mailbox.clone();
    std::thread::Builder::new().name(format!("weir-uring-{n}")).spawn(move || {
        let ring = match Ring::new(bufs) {
            Ok(r) => {
                let _ = ready_tx.send(Ok(()));
                r
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        let driver = Driver {
            ring,
            conns: Vec::new(),
            free: Vec::new(),
            ids: HashMap::new(),
            cqes: Vec::with_capacity(64),
        };
        run(driver, &mb);
    })?;
    ready_rx.recv().map_err(|_| io::Error::other("io_uring thread ended"))??;
    Ok(mailbox)
}

/// The ring's thread: handles commands and completions, then submits what follows and sleeps
/// until the next completion, in one system call. Runs for the life of the process.
fn run(mut d: Driver, mailbox: &Mailbox) {
    let wake = mailbox.wake.as_raw_fd();
    d.ring.read_wake(wake);
    let mut cmds = Vec::new();
    loop {
        d.ring.submit_and_wait();
        let mut cqes = std::mem::take(&mut d.cqes);
        d.ring.reap(&mut cqes);
        for cqe in cqes.drain(..) {
            if cqe.0 == ring::WAKE {
                mailbox.take(&mut cmds);
                for cmd in cmds.drain(..) {
                    d.command(cmd);
                }
                d.ring.read_wake(wake);
            } else {
                d.complete(cqe);
            }
        }
        d.cqes = cqes;
    }
}
