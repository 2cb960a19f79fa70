//! Coarse clocks for per-request timestamps that only need seconds: the kernel's tick-granular
//! time (a few milliseconds), read from the vDSO without touching the timestamp counter — a
//! fraction of what a precise clock read costs, which under a hypervisor is several times more.

use std::time::Duration;

/// Monotonic time since an arbitrary start, to within a kernel tick.
pub fn coarse_monotonic() -> Duration {
    read(rustix::time::ClockId::MonotonicCoarse)
}

/// Seconds since the Unix epoch, to within a kernel tick.
pub fn coarse_epoch_secs() -> u64 {
    read(rustix::time::ClockId::RealtimeCoarse).as_secs()
}

fn read(id: rustix::time::ClockId) -> Duration {
    let t = rustix::time::clock_gettime(id);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_clocks_follow_the_precise_ones() {
        let epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(coarse_epoch_secs().abs_diff(epoch) <= 1);
        let a = coarse_monotonic();
        std::thread::sleep(Duration::from_millis(50));
        let b = coarse_monotonic();
        // A tick is at most 10 ms (HZ=100).
        assert!(b - a >= Duration::from_millis(40), "{:?}", b - a);
    }
}
