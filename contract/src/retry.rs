//! The one retry/backoff policy of the workspace: bounded exponential
//! backoff (initial delay, doubling, capped), giving up after a number of
//! attempts and/or a total time. rolectl's `wait-master` and `weave`, the
//! builder's artifact downloads (async: they sleep on tokio and ask
//! [`Backoff::next_delay`]) and the VM harness's waits all use it.
//!
//! A module of our own rather than a crate such as `backon`: rolectl is baked
//! into every image and kept under 2 MB, it needs only a blocking loop, and
//! the async caller needs only the schedule. This is that loop and that
//! schedule, nothing more (cf. afterburn's `retry`).

use std::time::{Duration, Instant};

/// When to try again and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Longest delay (the delay doubles up to this).
    pub max: Duration,
    /// Give up after this many attempts (None: no limit).
    pub max_attempts: Option<u32>,
    /// Give up once this much time has passed since the first attempt
    /// (None: no limit). The last delay is shortened to end at the deadline.
    pub timeout: Option<Duration>,
    /// Shorten each delay by a random 0-20 % in [`run`](Self::run), so that
    /// many nodes waiting for the same master do not poll in lockstep (the
    /// cap `max` still holds). [`next_delay`](Self::next_delay) is exact.
    pub jitter: bool,
}

/// The operation never succeeded before the policy gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp<E> {
    pub attempts: u32,
    pub last_error: E,
    pub waited: Duration,
}

impl Backoff {
    /// Exponential backoff from `initial`, doubling, capped at `max`; no limit
    /// until [`attempts`](Self::attempts) or [`timeout`](Self::timeout).
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial: initial.min(max),
            max,
            max_attempts: None,
            timeout: None,
            jitter: false,
        }
    }

    /// Polling at a fixed interval.
    pub fn every(interval: Duration) -> Self {
        Self::exponential(interval, interval)
    }

    pub fn attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n.max(1));
        self
    }

    pub fn timeout(mut self, t: Option<Duration>) -> Self {
        self.timeout = t;
        self
    }

    pub fn with_jitter(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// The delay before the next attempt after `attempt` attempts (counting
    /// from 1) have failed, `elapsed` after the first began; None: give up.
    pub fn next_delay(&self, attempt: u32, elapsed: Duration) -> Option<Duration> {
        if self.max_attempts.is_some_and(|m| attempt >= m) {
            return None;
        }
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let delay = self.initial.saturating_mul(factor).min(self.max);
        match self.timeout {
            Some(t) if elapsed >= t => None,
            Some(t) => Some(delay.min(t - elapsed)),
            None => Some(delay),
        }
    }

    /// Runs `op(attempt)` until it returns Ok, sleeping between attempts.
    /// After each failure `on_failure(attempt, error, next_delay)` is called
    /// once (the place to log one line per attempt); `next_delay` is None
    /// when giving up.
    pub fn run<T, E>(
        &self,
        mut op: impl FnMut(u32) -> Result<T, E>,
        mut on_failure: impl FnMut(u32, &E, Option<Duration>),
    ) -> Result<T, GaveUp<E>> {
        let start = Instant::now();
        let mut attempt = 0u32;
        let mut rng = Jitter::seeded();
        loop {
            attempt = attempt.saturating_add(1);
            let err = match op(attempt) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let next = self.next_delay(attempt, start.elapsed());
            let next = match next {
                Some(d) if self.jitter => Some(rng.shorten(d)),
                other => other,
            };
            on_failure(attempt, &err, next);
            match next {
                Some(d) => std::thread::sleep(d),
                None => {
                    return Err(GaveUp {
                        attempts: attempt,
                        last_error: err,
                        waited: start.elapsed(),
                    })
                }
            }
        }
    }
}

/// A tiny xorshift generator seeded from the clock and the pid: jitter
/// needs no quality, only nodes that differ.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Jitter((t ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    /// `d` shortened by 0-20 %.
    fn shorten(&mut self, d: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let permille = (self.0 % 201) as u32;
        d - d * permille / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    #[test]
    fn backoff_doubles_and_caps() {
        let r = Backoff::exponential(Duration::from_millis(1), Duration::from_millis(4));
        let delays = RefCell::new(Vec::new());
        let out = r.run(
            |n| if n < 5 { Err(format!("no {n}")) } else { Ok(n) },
            |_, _, d| delays.borrow_mut().push(d.unwrap().as_millis()),
        );
        assert_eq!(out, Ok(5));
        assert_eq!(*delays.borrow(), vec![1, 2, 4, 4]);
    }

    #[test]
    fn gives_up_at_deadline() {
        let r = Backoff::every(Duration::from_millis(20)).timeout(Some(Duration::from_millis(70)));
        let calls = Cell::new(0);
        let e = r
            .run(
                |_| -> Result<(), &str> {
                    calls.set(calls.get() + 1);
                    Err("down")
                },
                |_, _, _| {},
            )
            .unwrap_err();
        assert_eq!(e.last_error, "down");
        assert!((3..=6).contains(&calls.get()), "{}", calls.get());
        assert!(e.waited >= Duration::from_millis(70));
    }

    #[test]
    fn jitter_shortens_within_20_percent() {
        let r = Backoff::every(Duration::from_millis(10))
            .attempts(30)
            .with_jitter();
        let delays = RefCell::new(Vec::new());
        let _ = r.run(
            |_| -> Result<(), ()> { Err(()) },
            |_, _, d| delays.borrow_mut().extend(d),
        );
        let d = delays.borrow();
        assert_eq!(d.len(), 29);
        assert!(d
            .iter()
            .all(|d| (Duration::from_millis(8)..=Duration::from_millis(10)).contains(d)));
        assert!(d.iter().any(|x| *x != d[0]), "no jitter: {d:?}");
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let r =
            Backoff::exponential(Duration::from_millis(500), Duration::from_secs(8)).attempts(4);
        let d = |n| r.next_delay(n, Duration::ZERO);
        assert_eq!(d(1), Some(Duration::from_millis(500)));
        assert_eq!(d(3), Some(Duration::from_secs(2)));
        assert_eq!(d(4), None);
        assert_eq!(
            Backoff::every(Duration::from_secs(1))
                .timeout(Some(Duration::from_secs(5)))
                .next_delay(9, Duration::from_millis(4500)),
            Some(Duration::from_millis(500))
        );
    }
}
