//! The io_uring instance and its pool of provided buffers — the crate's only `unsafe` code.
//!
//! Receives name no buffer: the kernel takes one from the pool (a "provided buffer ring") when
//! data arrives, so a connection waiting for its next message holds no memory. A buffer goes
//! back to the pool once the send that forwards its bytes has completed. Sends point into the
//! pool, whose memory never moves; it is freed with the ring only when no operation is left in
//! the kernel (otherwise it is leaked rather than risk the kernel writing into freed memory).
#![allow(unsafe_code)]

use std::alloc::{self, Layout};
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// Bytes per pool buffer; a receive that fills one is the sign of bulk transfer.
pub(crate) const BUF_LEN: usize = 8 * 1024;
/// Buffers in a ring's pool unless told otherwise (a power of two): 2 MiB, touched only as
/// traffic needs it.
pub(crate) const BUFS: u16 = 256;
/// The pool's buffer group id.
const BGID: u16 = 0;
/// Submission and completion queue depth.
const DEPTH: u32 = 512;
/// `user_data` of cancellations, whose own completions are ignored.
pub(crate) const CANCEL: u64 = u64::MAX;
/// `user_data` of the wake-up eventfd's read.
pub(crate) const WAKE: u64 = u64::MAX - 1;

/// A completion: `user_data`, result, flags.
pub(crate) type Cqe = (u64, i32, u32);

/// An io_uring with a registered pool of provided buffers.
pub(crate) struct Ring {
    uring: IoUring,
    /// `bufs` entries shared with the kernel (page-aligned); entry 0 holds the tail.
    entries: *mut types::BufRingEntry,
    /// `bufs * BUF_LEN` bytes the entries point into (page-aligned).
    pool: *mut u8,
    /// Buffers in the pool, a power of two.
    bufs: u16,
    tail: u16,
    /// Operations submitted (or queued) whose completion has not been reaped.
    in_flight: usize,
    /// Where the wake-up eventfd's counter is read to (boxed: the kernel writes it).
    wake: Box<[u8; 8]>,
    /// Entries the submission queue had no room for while the kernel took none (it refuses
    /// submissions until overflowed completions are reaped): queued first on the next turn.
    backlog: VecDeque<squeue::Entry>,
}

// SAFETY: the raw pointers are the ring's own allocations. The ring is made on the thread that
// uses it and never leaves it (it is set up with `IORING_SETUP_SINGLE_ISSUER`); `Send` is only
// for handing it into that thread's closure.
unsafe impl Send for Ring {}

fn entries_layout(bufs: u16) -> Layout {
    // 16 bytes per entry; a size below 1 MiB and page alignment always form a layout.
    Layout::from_size_align(usize::from(bufs) * 16, 4096).unwrap_or_else(|_| Layout::new::<u64>())
}

fn pool_layout(bufs: u16) -> Layout {
    Layout::from_size_align(usize::from(bufs) * BUF_LEN, 4096)
        .unwrap_or_else(|_| Layout::new::<u64>())
}

impl Ring {
    /// Sets up a ring for the calling thread alone (completion work runs in its waits, never
    /// interrupting it) and registers its buffer pool. Fails where io_uring or what the relay
    /// needs of it is missing (kernels before 6.1) or forbidden (seccomp,
    /// `kernel.io_uring_disabled`).
    pub(crate) fn new(bufs: u16) -> io::Result<Self> {
        // A power of two between 2 and 32 768 (the kernel's bounds).
        let bufs = bufs.clamp(2, 1 << 15).next_power_of_two();
        // Completion work deferred to this thread's waits (6.1+; multishot receives, which the
        // relay needs, came in 6.0, so a kernel that takes this flag has them too).
        let uring = IoUring::builder().setup_single_issuer().setup_defer_taskrun().build(DEPTH)?;
        // SAFETY: non-zero sizes; null checked below.
        let entries =
            unsafe { alloc::alloc_zeroed(entries_layout(bufs)) }.cast::<types::BufRingEntry>();
        if entries.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        // SAFETY: as above.
        let pool = unsafe { alloc::alloc_zeroed(pool_layout(bufs)) };
        if pool.is_null() {
            // SAFETY: allocated above with this layout.
            unsafe { alloc::dealloc(entries.cast(), entries_layout(bufs)) };
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        // SAFETY: `entries` is page-aligned memory for `bufs` entries that lives as long as the
        // ring (it is freed after the ring is closed, or leaked).
        let registered = unsafe {
            uring.submitter().register_buf_ring_with_flags(entries as u64, bufs, BGID, 0)
        };
        let mut ring = Ring {
            uring,
            entries,
            pool,
            bufs,
            tail: 0,
            in_flight: 0,
            wake: Box::new([0; 8]),
            backlog: VecDeque::new(),
        };
        registered?;
        for bid in 0..bufs {
            ring.give_back(bid);
        }
        Ok(ring)
    }

    /// Queues a read of the wake-up eventfd `fd` (8 bytes into the ring's own buffer).
    pub(crate) fn read_wake(&mut self, fd: RawFd) {
        let e = opcode::Read::new(types::Fd(fd), self.wake.as_mut_ptr(), 8).build().user_data(WAKE);
        self.push(&e);
    }

    /// Returns buffer `bid` to the pool.
    pub(crate) fn give_back(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (self.bufs - 1));
        // SAFETY: `idx < bufs`; the kernel reads only entries below the published tail, and
        // this one is past it. The entry's fields other than `resv` (entry 0's is the tail)
        // are written.
        unsafe {
            let e = &mut *self.entries.add(idx);
            e.set_addr(self.pool.add(usize::from(bid) * BUF_LEN) as u64);
            e.set_len(BUF_LEN as u32);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is a naturally aligned u16 inside entry 0, shared with the kernel,
        // which reads it atomically.
        let tail = unsafe { &*types::BufRingEntry::tail(self.entries).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    fn push(&mut self, e: &squeue::Entry) {
        self.in_flight += 1;
        if self.backlog.is_empty() {
            if self.try_push(e) {
                return;
            }
            // Full: hand the queue to the kernel and try once more.
            if let Err(err) = self.uring.submit() {
                tracing::debug!(error = %err, "io_uring submit deferred");
            }
            if self.try_push(e) {
                return;
            }
        }
        // The kernel takes nothing until completions are reaped (EBUSY): rather than spin
        // here, the entry waits for the next turn, which reaps first.
        self.backlog.push_back(e.clone());
    }

    /// Puts `e` in the submission queue, if it has room.
    fn try_push(&mut self, e: &squeue::Entry) -> bool {
        // SAFETY: every entry pushed names only descriptors the caller keeps open until the
        // completion and buffers of the pool, which outlives the operations.
        unsafe { self.uring.submission().push(e) }.is_ok()
    }

    /// Queues a multishot receive from `fd`: each message into a pool buffer, its own
    /// completion, until cancelled, end-of-stream, an error or an empty pool.
    pub(crate) fn recv(&mut self, fd: RawFd, user_data: u64) {
        let e = opcode::RecvMulti::new(types::Fd(fd), BGID)
            .len(BUF_LEN as u32)
            .build()
            .user_data(user_data);
        self.push(&e);
    }

    /// Queues a send to `fd` of `len` bytes of buffer `bid` from offset `off`.
    pub(crate) fn send(&mut self, fd: RawFd, bid: u16, off: u32, len: u32, user_data: u64) {
        let off = off.min(BUF_LEN as u32);
        let len = len.min(BUF_LEN as u32 - off);
        // SAFETY: `bid < bufs` (the kernel hands out only the ids given to it) and
        // `off + len <= BUF_LEN`: the range lies inside buffer `bid`.
        let ptr = unsafe { self.pool.add(usize::from(bid % self.bufs) * BUF_LEN + off as usize) };
        let e = opcode::Send::new(types::Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data);
        self.push(&e);
    }

    /// Queues the cancellation of the operation with `user_data`.
    pub(crate) fn cancel(&mut self, user_data: u64) {
        let e = opcode::AsyncCancel::new(user_data).build().user_data(CANCEL);
        self.push(&e);
    }

    /// Hands queued entries to the kernel and, unless completions already wait, sleeps until
    /// one does — one system call for the lot.
    pub(crate) fn submit_and_wait(&mut self) {
        while let Some(e) = self.backlog.pop_front() {
            if !self.try_push(&e) {
                self.backlog.push_front(e);
                break;
            }
        }
        // With entries still waiting for room, no sleep: the next turn queues them.
        let want = usize::from(self.uring.completion().is_empty() && self.backlog.is_empty());
        match self.uring.submit_and_wait(want) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            // EBUSY/EAGAIN: completions must be reaped first; they are, and the entries are
            // submitted on the next turn.
            Err(e) => tracing::debug!(error = %e, "io_uring submit deferred"),
        }
    }

    /// Moves waiting completions into `out`.
    pub(crate) fn reap(&mut self, out: &mut Vec<Cqe>) {
        let mut ended = 0;
        out.extend(self.uring.completion().map(|c| {
            // A multishot receive's completions but the last say more follow.
            ended += usize::from(!cqueue::more(c.flags()));
            (c.user_data(), c.result(), c.flags())
        }));
        self.in_flight = self.in_flight.saturating_sub(ended);
    }
}

/// The pool buffer a receive filled.
pub(crate) fn buffer_of(flags: u32) -> Option<u16> {
    cqueue::buffer_select(flags)
}

/// Whether a multishot receive goes on after this completion.
pub(crate) fn more(flags: u32) -> bool {
    cqueue::more(flags)
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.in_flight > 0 {
            // The kernel may still complete receives into the pool after the ring is closed:
            // leak it (this happens only when a runtime shuts down with relays running).
            tracing::debug!(in_flight = self.in_flight, "io_uring closed with operations left");
            return;
        }
        let _ = self.uring.submitter().unregister_buf_ring(BGID);
        // SAFETY: allocated in `new` with these layouts; no operation is left that uses them.
        unsafe {
            alloc::dealloc(self.pool, pool_layout(self.bufs));
            alloc::dealloc(self.entries.cast(), entries_layout(self.bufs));
        }
    }
}
