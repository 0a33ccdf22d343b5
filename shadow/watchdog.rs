// SPDX-License-Identifier: GPL-2.0
//! The runaway-work watchdog, pure logic: at each check it is told, per engine, which host
//! channel the engine is working for (ENG_STATE) and a progress mark of that channel (its
//! GP_GET, which PFIFO advances as each GPFIFO entry completes). An engine found on the same
//! channel with the same mark for longer than the limit is held by one piece of work that does
//! not end (an endless copy, a kernel that never returns): the caller stops that channel
//! (`Mediator::watchdog_stop`, then `host_gpu::evict`, which resets the engine if the kick
//! cannot take it off) and tells the guest that owns it (`Mediator::watchdog_outcome`:
//! killed with an error if an engine had to be reset, else switched out and left to run).
//!
//! The limit is the parent's sysfs knob `watchdog_ms` (uapi/sysfs-gpuvm). Checks run a few
//! times per limit (`Watchdog::period_ns`), so work is stopped between one limit and one
//! limit plus one period after it stopped making progress.

use crate::gf100::pfifo;

/// Engines the watchdog watches, in `pfifo::RESETTABLE_ENGINES` order.
pub const ENGINES: usize = pfifo::RESETTABLE_ENGINES.len();

/// Default limit (issue 11: at most 2 s).
pub const WATCHDOG_MS_DEFAULT: u32 = 2000;
/// Smallest limit accepted: below this a legitimate entry (a large copy on a loaded host)
/// would be killed.
pub const WATCHDOG_MS_MIN: u32 = 100;
/// Largest limit accepted (a minute); there is no "off".
pub const WATCHDOG_MS_MAX: u32 = 60_000;
/// Checks per limit.
pub const CHECKS_PER_LIMIT: u64 = 4;

/// What one engine was doing at one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The host channel it was working for.
    pub host_chid: u32,
    /// The channel's progress mark (GP_GET).
    pub progress: u32,
}

/// Work the watchdog found holding an engine past the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Runaway {
    /// PFIFO engine id (`pfifo::ENGINE_*`).
    pub engine: u32,
    pub host_chid: u32,
    /// How long it has been seen there without progress.
    pub held_ns: u64,
}

/// A limit outside `WATCHDOG_MS_MIN..=WATCHDOG_MS_MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadLimit;

#[derive(Clone, Copy)]
struct Held {
    seen: Seen,
    since_ns: u64,
}

/// The tracker: for each engine, what it was first seen doing and when.
pub struct Watchdog {
    limit_ns: u64,
    held: [Option<Held>; ENGINES],
}

impl Default for Watchdog {
    fn default() -> Self {
        Self { limit_ns: u64::from(WATCHDOG_MS_DEFAULT) * 1_000_000, held: [None; ENGINES] }
    }
}

impl Watchdog {
    /// Sets the limit in milliseconds (`BadLimit` outside the documented range, the limit
    /// unchanged).
    pub fn set_limit_ms(&mut self, ms: u32) -> Result<(), BadLimit> {
        if !(WATCHDOG_MS_MIN..=WATCHDOG_MS_MAX).contains(&ms) {
            return Err(BadLimit);
        }
        self.limit_ns = u64::from(ms) * 1_000_000;
        Ok(())
    }

    /// The limit in milliseconds.
    pub fn limit_ms(&self) -> u32 {
        (self.limit_ns / 1_000_000) as u32
    }

    /// How often to check.
    pub fn period_ns(&self) -> u64 {
        self.limit_ns / CHECKS_PER_LIMIT
    }

    /// One check at `now_ns`, with what each engine is doing (`None`: idle). Returns the
    /// work to stop; each is reported once (the engine is seen afresh afterwards).
    pub fn check(&mut self, now_ns: u64, seen: [Option<Seen>; ENGINES]) -> [Option<Runaway>; ENGINES] {
        let mut out = [None; ENGINES];
        for (e, (held, now)) in self.held.iter_mut().zip(seen).enumerate() {
            *held = match (*held, now) {
                (_, None) => None,
                (Some(h), Some(s)) if h.seen == s => {
                    let held_ns = now_ns.saturating_sub(h.since_ns);
                    if held_ns > self.limit_ns {
                        if let (Some(o), Some(&(engine, _))) = (out.get_mut(e), pfifo::RESETTABLE_ENGINES.get(e)) {
                            *o = Some(Runaway { engine, host_chid: s.host_chid, held_ns });
                        }
                        None
                    } else {
                        Some(h)
                    }
                }
                (_, Some(s)) => Some(Held { seen: s, since_ns: now_ns }),
            };
        }
        out
    }
}
