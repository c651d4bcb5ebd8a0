//! Where the writer reads the time, and how it notices a clock that steps back.
//!
//! Received times never decrease along the log: each commit takes
//! `max(now, last received)`. When the wall clock reads earlier than the last received
//! time by more than [`crate::LogOptions::clock_backwards_tolerance_ns`], the writer
//! records a [`ClockBackwards`] event, once per episode (an episode ends when the clock
//! again reads within the tolerance of the last received time). Entries keep their
//! order and indexes whatever the clock does.

use std::sync::Arc;

/// A source of wall-clock time in ns since the Unix epoch. The default reads the
/// system clock; tests set the time with [`Clock::from_fn`].
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<dyn Fn() -> u64 + Send + Sync>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that reads `f` (ns since the Unix epoch).
    pub fn from_fn(f: impl Fn() -> u64 + Send + Sync + 'static) -> Clock {
        Clock(Some(Arc::new(f)))
    }

    /// The current time, ns since the Unix epoch.
    pub fn now_ns(&self) -> u64 {
        match &self.0 {
            Some(f) => f(),
            None => crate::log::now_ns(),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Clock(custom)" } else { "Clock(system)" })
    }
}

/// One backward step of the wall clock, as the writer saw it at a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockBackwards {
    /// The last received time in the log (ns): where the clock had been.
    pub from_ns: u64,
    /// What the clock read (ns).
    pub to_ns: u64,
    /// `from_ns - to_ns` (ns).
    pub jump_ns: u64,
}

/// The writer's view of its clock across commits.
#[derive(Debug, Default)]
pub(crate) struct ClockWatch {
    in_episode: bool,
    pub(crate) total: u64,
    pub(crate) pending: Vec<ClockBackwards>,
}

impl ClockWatch {
    /// Notes a clock reading `now` against the last received time `last`.
    pub(crate) fn observe(&mut self, now: u64, last: u64, tolerance: u64) {
        if now.saturating_add(tolerance) < last {
            if !self.in_episode {
                self.in_episode = true;
                self.total += 1;
                // Bounded: the server drains these after every commit.
                if self.pending.len() < 1024 {
                    self.pending.push(ClockBackwards { from_ns: last, to_ns: now, jump_ns: last - now });
                }
            }
        } else {
            self.in_episode = false;
        }
    }
}
