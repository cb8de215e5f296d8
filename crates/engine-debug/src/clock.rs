//! Turning time-stamp counter (TSC) readings into times and durations.
//!
//! The trampolines record `rdtsc` at a call's entry and after its return,
//! inside the target, at the exact moments; the tracer only sees the call
//! later, at its trap. The tracer reads the same counter (modern x86 CPUs
//! keep one invariant TSC for all cores) next to its own clock to learn the
//! counter's rate, and refines the rate as the run goes on.

use std::time::{Duration, Instant, SystemTime};

/// Maps TSC values to wall-clock times.
#[derive(Debug, Clone)]
pub struct TscClock {
    tsc0: u64,
    instant0: Instant,
    system0: SystemTime,
    /// Counter ticks per second, from the calibration.
    rate: f64,
}

impl TscClock {
    /// Measures the counter's rate over a short sleep.
    pub fn calibrate() -> TscClock {
        let (tsc0, instant0, system0) = (read_tsc(), Instant::now(), SystemTime::now());
        std::thread::sleep(Duration::from_millis(20));
        let mut clock = TscClock { tsc0, instant0, system0, rate: 0.0 };
        clock.rate = clock.measured_rate().unwrap_or(1e9);
        clock
    }

    /// A clock with a known rate and origin, for tests.
    pub fn with_rate(tsc0: u64, system0: SystemTime, rate: f64) -> TscClock {
        TscClock { tsc0, instant0: Instant::now(), system0, rate }
    }

    fn measured_rate(&self) -> Option<f64> {
        let elapsed = self.instant0.elapsed().as_secs_f64();
        let ticks = read_tsc().checked_sub(self.tsc0)? as f64;
        (elapsed > 0.0 && ticks > 0.0).then(|| ticks / elapsed)
    }

    /// The wall-clock time at which the counter read `tsc`.
    pub fn time_of(&self, tsc: u64) -> SystemTime {
        let seconds = (tsc as f64 - self.tsc0 as f64) / self.rate;
        if seconds >= 0.0 {
            self.system0 + Duration::from_secs_f64(seconds)
        } else {
            self.system0.checked_sub(Duration::from_secs_f64(-seconds)).unwrap_or(self.system0)
        }
    }

    /// Time between two counter readings (zero if they run backwards).
    pub fn duration(&self, from: u64, to: u64) -> Duration {
        Duration::from_secs_f64(to.saturating_sub(from) as f64 / self.rate)
    }
}

#[cfg(target_arch = "x86_64")]
fn read_tsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn read_tsc() -> u64 {
    // Other hosts only run the platform-independent tests: nanoseconds
    // since an arbitrary origin stand in for the counter.
    use std::sync::OnceLock;
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_become_times_and_durations() {
        let origin = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = TscClock::with_rate(1_000_000, origin, 2e9); // 2 GHz
        assert_eq!(clock.duration(1_000_000, 1_002_000), Duration::from_micros(1));
        assert_eq!(clock.duration(5, 3), Duration::ZERO);
        assert_eq!(clock.time_of(3_000_000), origin + Duration::from_millis(1));
        assert_eq!(clock.time_of(0), origin - Duration::from_micros(500));
    }

    #[test]
    fn calibration_finds_a_plausible_rate() {
        let clock = TscClock::calibrate();
        // Any real counter (or the nanosecond stand-in) runs between
        // 100 MHz and 10 GHz.
        assert!(clock.rate > 1e8 && clock.rate < 1e10, "{}", clock.rate);
        let now = clock.time_of(read_tsc());
        let drift = now.duration_since(SystemTime::now()).unwrap_or_else(|e| e.duration());
        assert!(drift < Duration::from_millis(50), "{drift:?}");
    }
}
