// SPDX-License-Identifier: GPL-2.0
//! One of the host's own GPFIFO channels (ids `GUEST_CHANNELS..`), for work the host must
//! have the GPU do itself: bulk writes of VRAM (scrubbing a partition, `scrub.rs`) are a copy
//! engine's job, since every CPU access through a BAR is a bus round trip (~30 us on the
//! modelled GPU of the test VM, ~1 us on real hardware).
//!
//! Everything lives in the host's reserved VRAM, in one block from the host pool ([`ctl`]):
//! the instance block, the GPFIFO ring, one pushbuffer page and a semaphore word. The channel's
//! address space is the host's BAR3 VM (`host_init::layout::BAR3_PD`), the identity map of
//! the reserved VRAM: channel VA x is host VRAM x, so the ring, the pushbuffer and the
//! semaphore are addressed by their VRAM addresses and no page table of its own is needed.
//! USERD is the host USERD page of its id (`layout::USERD`), where BAR1's poll area rings it.
//!
//! The channel opens the physical-copy gate in its RAMFC (`ramfc::HCE_CTRL_PRIV_MODE`): only
//! a host channel may address VRAM physically with the copy engine; guest shadows hold 0.
//!
//! One submission at a time: [`HostChannel::submit`] writes the pushbuffer, its GPFIFO entry
//! and rings the doorbell; the caller waits for its semaphore ([`HostChannel::wait`], bounded)
//! before the next one reuses the pushbuffer page. A submission that did not complete leaves
//! the channel to be restarted (preempted, unbound, rebound from a fresh RAMFC) before the
//! next one, so a stuck or stopped channel never hangs the host.

use crate::gf100::{gpfifo, inst, pfifo, ramfc, target, userd};
use crate::host_gpu::{self, HostBars, HostError, HostRunlist, KickLock, GUEST_CHANNELS};
use crate::host_pool::HostPool;
use crate::host_init::{self, layout};
use crate::memory::Clock;

/// Time and patience for bounded waits: the kernel implements it over ktime with a short
/// sleep (or cond_resched), the host tests over `Instant` and a yield.
pub trait Waiter: Clock {
    /// Gives the CPU away between two polls.
    fn pause(&self);
}

/// Where the channel's structures lie in its control block (offsets from its base, a host
/// pool allocation of [`ctl::BYTES`]).
pub mod ctl {
    /// Instance block (RAMFC in its first 0x100 bytes), 4 KiB aligned.
    pub const INST: u64 = 0x0000;
    /// GPFIFO ring of 2^[`super::GP_ORDER`] entries.
    pub const GPFIFO: u64 = 0x1000;
    /// The pushbuffer of the submission in flight.
    pub const PUSHBUF: u64 = 0x2000;
    /// Bytes of the pushbuffer page.
    pub const PUSHBUF_BYTES: u64 = 0x1000;
    /// The semaphore word the copy engine releases when a submission is done.
    pub const SEMAPHORE: u64 = 0x3000;
    /// Bytes of the whole block.
    pub const BYTES: u64 = 0x4000;
}

/// GPFIFO ring order: one submission is in flight at a time, so a short ring suffices.
pub const GP_ORDER: u32 = 3;
const GP_MASK: u32 = (1 << GP_ORDER) - 1;

/// Largest pushbuffer of one submission, in words.
pub const MAX_PUSH_WORDS: usize = (ctl::PUSHBUF_BYTES / 4) as usize;

/// Why the host channel could not do what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// The id is a vGPU's (below `GUEST_CHANNELS`) or not a channel.
    NotHostChannel,
    /// The control block is unaligned or not inside the BAR3 identity map (the channel's VM).
    OutsideBar3,
    /// A pushbuffer longer than [`MAX_PUSH_WORDS`] (a caller bug).
    PushTooLong,
    /// The BAR write flush before a doorbell did not complete.
    FlushTimeout,
    /// The submission's semaphore did not arrive within the time allowed.
    Timeout,
    /// A channel control (kick, runlist) did not settle.
    Host(HostError),
}

impl From<HostError> for ChannelError {
    fn from(e: HostError) -> Self {
        ChannelError::Host(e)
    }
}

/// The host's channel `chid` with its control block at host VRAM `base`.
pub struct HostChannel {
    chid: u32,
    base: u64,
    /// The channel's VM (BAR3's) maps host VRAM `[0, bar3_mapped)`.
    bar3_mapped: u64,
    /// Next GPFIFO entry (the GP_PUT the doorbell announces after it).
    put: u32,
    /// Payload of the last submission's semaphore.
    seq: u32,
    /// A submission was made and not seen complete: the pushbuffer may still be read, the
    /// channel may be stopped. The next submission restarts the channel first.
    in_flight: bool,
    /// Whether [`HostChannel::start`] has bound the channel.
    started: bool,
}

impl HostChannel {
    /// The channel `chid` (a host id) over the control block at host VRAM `base`, which must
    /// be 4 KiB aligned and inside the BAR3 identity map `[0, bar3_mapped)`.
    pub fn new(chid: u32, base: u64, bar3_mapped: u64) -> Result<Self, ChannelError> {
        if !(GUEST_CHANNELS..pfifo::CHANNELS).contains(&chid) {
            return Err(ChannelError::NotHostChannel);
        }
        if !base.is_multiple_of(inst::SIZE) || base.checked_add(ctl::BYTES).is_none_or(|end| end > bar3_mapped) {
            return Err(ChannelError::OutsideBar3);
        }
        Ok(HostChannel { chid, base, bar3_mapped, put: 0, seq: 0, in_flight: false, started: false })
    }

    /// The host channel id.
    pub fn chid(&self) -> u32 {
        self.chid
    }

    /// Host VRAM address of the instance block.
    pub fn inst(&self) -> u64 {
        self.base + ctl::INST
    }

    /// Channel VA (= host VRAM address) of the semaphore word.
    pub fn semaphore(&self) -> u64 {
        self.base + ctl::SEMAPHORE
    }

    /// Host VRAM address of this channel's USERD page.
    fn userd(&self) -> u64 {
        layout::USERD + u64::from(self.chid) * userd::SIZE
    }

    /// Writes the instance block and USERD, and binds the channel RUNNABLE. The caller then
    /// puts it on the host runlist (`HostRunlist::set_host_channel`). Host VRAM is not zeroed
    /// at power-on, so every word PFIFO may read is written, not assumed.
    pub fn start<B: HostBars>(&mut self, bars: &B) -> Result<(), ChannelError> {
        let i = self.inst();
        let gp_va = self.base + ctl::GPFIFO;
        let userd = self.userd();
        // RAMFC as nouveau fills it for a GF100 GPFIFO channel (§8.6), every other word 0 (the
        // saved GP_GET and semaphore state included: the channel starts at entry 0), plus the
        // physical-copy gate open: this is a host channel.
        for off in (0..RAMFC_BYTES).step_by(4) {
            let v = match off {
                ramfc::USERD_LO => (userd as u32 & ramfc::USERD_ADDR_MASK) | target::VRAM,
                ramfc::USERD_HI => (userd >> 32) as u32,
                ramfc::SIGNATURE => ramfc::SIGNATURE_VALUE,
                ramfc::ACQUIRE => ramfc::ACQUIRE_VALUE,
                ramfc::GP_BASE => gp_va as u32,
                ramfc::GP_BASE_HI => ramfc::gp_base_hi_value(gp_va, GP_ORDER),
                ramfc::UNK54 => ramfc::UNK54_VALUE,
                ramfc::PB_HEADER => ramfc::PB_HEADER_VALUE,
                ramfc::SUBDEVICE => ramfc::SUBDEVICE_VALUE,
                ramfc::FORMATS => ramfc::FORMATS_VALUE,
                ramfc::SUBCH_ENGINE_MAP0 | ramfc::SUBCH_ENGINE_MAP1 => ramfc::SUBCH_ENGINE_MAP_VALUE,
                ramfc::CURRENT_ENGINE => ramfc::CURRENT_ENGINE_VALUE,
                ramfc::UNKB8 => ramfc::UNKB8_VALUE,
                ramfc::HCE_CTRL => ramfc::HCE_CTRL_PRIV_MODE,
                ramfc::UNKF8 => ramfc::UNKF8_VALUE,
                ramfc::UNKFC => ramfc::UNKFC_VALUE,
                _ => 0,
            };
            bars.bar3_write32(i + u64::from(off), v);
        }
        // The address space: the host's BAR3 VM, with BAR3's limit, so the channel reaches
        // exactly what BAR3 maps (the reserved VRAM, never a partition) by virtual address.
        let limit = self.bar3_mapped - 1;
        let pd = layout::BAR3_PD;
        bars.bar3_write32(i + u64::from(inst::PDB_LO), (pd as u32 & inst::PDB_ADDR_MASK) | target::VRAM);
        bars.bar3_write32(i + u64::from(inst::PDB_HI), (pd >> 32) as u32);
        bars.bar3_write32(i + u64::from(inst::LIMIT_LO), limit as u32);
        bars.bar3_write32(i + u64::from(inst::LIMIT_HI), (limit >> 32) as u32);
        // No engine context: the copy engine needs none, and nothing stale may be taken as one.
        for off in (inst::GR_CTX_LO..=inst::PCOPY1_CTX_HI).step_by(4) {
            bars.bar3_write32(i + u64::from(off), 0);
        }
        // USERD: the words PFIFO and the host use (pscnv's set), zero.
        for off in [userd::PUT, userd::GET, userd::REF, userd::PUT_HI, userd::REF_THRESHOLD, userd::TOP_LEVEL_GET, userd::TOP_LEVEL_GET_HI, userd::GET_HI, userd::GP_GET, userd::GP_PUT] {
            bars.bar3_write32(userd + u64::from(off), 0);
        }
        bars.bar3_write32(self.semaphore(), self.seq);
        host_init::flush_bar_writes(bars).map_err(|_| ChannelError::FlushTimeout)?;
        host_gpu::bind_channel(bars, self.chid, Some(i));
        host_gpu::set_runnable(bars, self.chid, true);
        self.put = 0;
        self.in_flight = false;
        self.started = true;
        Ok(())
    }

    /// Takes the channel off the GPU (not runnable, preempted, unbound) and binds it again
    /// from a fresh RAMFC: what follows a submission that did not complete.
    pub fn restart<B: HostBars>(&mut self, bars: &B, w: &impl Waiter, kick_lock: &impl KickLock) -> Result<(), ChannelError> {
        self.stop(bars, w, kick_lock)?;
        self.start(bars)
    }

    /// Takes the channel off the GPU: not runnable, preempted, unbound (§8.5). The caller
    /// removes it from the runlist if it is not started again. The kick is made under the
    /// GPU's kick lock: PFIFO has one KICK register, shared with the vGPUs' channels.
    pub fn stop<B: HostBars>(&mut self, bars: &B, w: &impl Waiter, kick_lock: &impl KickLock) -> Result<(), ChannelError> {
        host_gpu::set_runnable(bars, self.chid, false);
        let kicked = kick_lock.hold(|| host_gpu::kick(bars, w, self.chid));
        host_gpu::bind_channel(bars, self.chid, None);
        self.started = false;
        kicked.map_err(ChannelError::from)
    }

    /// Brings up host channel `chid` with its control block from `pool`: started and put on
    /// the host runlist. `None` if the pool has no room for the block; on an error nothing of
    /// the channel stays on the GPU, the runlist or in the pool.
    pub fn bring_up<B: HostBars>(
        bars: &B,
        w: &impl Waiter,
        kick_lock: &impl KickLock,
        pool: &mut HostPool,
        runlist: &mut HostRunlist,
        bar3_mapped: u64,
        chid: u32,
    ) -> Option<Result<HostChannel, ChannelError>> {
        let base = pool.alloc(ctl::BYTES)?;
        let mut ch = match HostChannel::new(chid, base, bar3_mapped) {
            Ok(ch) => ch,
            Err(e) => {
                pool.free(base, ctl::BYTES);
                return Some(Err(e));
            }
        };
        let r = ch.start(bars).and_then(|()| runlist.set_host_channel(bars, w, bar3_mapped, chid, true).map(|_| ()).map_err(ChannelError::from));
        Some(match r {
            Ok(()) => Ok(ch),
            Err(e) => {
                ch.take_down(bars, w, kick_lock, pool, runlist);
                Err(e)
            }
        })
    }

    /// Takes the channel off the GPU (stopped, off the host runlist) and gives its control
    /// block back to `pool`: the undoing of [`HostChannel::bring_up`].
    pub fn take_down<B: HostBars>(mut self, bars: &B, w: &impl Waiter, kick_lock: &impl KickLock, pool: &mut HostPool, runlist: &mut HostRunlist) {
        let _ = self.stop(bars, w, kick_lock);
        let _ = runlist.set_host_channel(bars, w, self.bar3_mapped, self.chid, false);
        pool.free(self.base, ctl::BYTES);
    }

    /// Host VRAM address of the control block (from the host pool).
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The payload the next submission's semaphore must carry.
    pub fn next_payload(&self) -> u32 {
        self.seq.wrapping_add(1)
    }

    /// Submits `words` as one pushbuffer segment; it must end with a release of
    /// [`HostChannel::semaphore`] with [`HostChannel::next_payload`]. Restarts the channel
    /// first if the previous submission was not seen complete.
    pub fn submit<B: HostBars>(&mut self, bars: &B, w: &impl Waiter, kick_lock: &impl KickLock, words: &[u32]) -> Result<(), ChannelError> {
        if words.len() > MAX_PUSH_WORDS {
            return Err(ChannelError::PushTooLong);
        }
        if self.in_flight || !self.started {
            self.restart(bars, w, kick_lock)?;
        }
        let pb = self.base + ctl::PUSHBUF;
        for (n, &word) in words.iter().enumerate() {
            bars.bar3_write32(pb + 4 * n as u64, word);
        }
        let e = gpfifo::entry(pb, words.len() as u32);
        let at = self.base + ctl::GPFIFO + u64::from(self.put) * gpfifo::ENTRY_SIZE;
        bars.bar3_write32(at, e as u32);
        bars.bar3_write32(at + 4, (e >> 32) as u32);
        self.put = (self.put + 1) & GP_MASK;
        self.seq = self.next_payload();
        self.in_flight = true;
        // The pushbuffer and its entry must be in VRAM before PFIFO fetches them.
        host_init::flush_bar_writes(bars).map_err(|_| ChannelError::FlushTimeout)?;
        host_gpu::ring_doorbell(bars, self.chid, self.put);
        Ok(())
    }

    /// Waits until the last submission's semaphore holds its payload, polling (one BAR3 read
    /// per poll) for at most `timeout_ns`. On a timeout the channel is restarted at the next
    /// submission.
    pub fn wait<B: HostBars>(&mut self, bars: &B, w: &impl Waiter, timeout_ns: u64) -> Result<(), ChannelError> {
        if !self.in_flight {
            return Ok(());
        }
        let start = w.now_ns();
        loop {
            if bars.bar3_read32(self.semaphore()) == self.seq {
                self.in_flight = false;
                return Ok(());
            }
            if w.now_ns().saturating_sub(start) > timeout_ns {
                return Err(ChannelError::Timeout);
            }
            w.pause();
        }
    }
}

/// Bytes of RAMFC at the start of the instance block.
const RAMFC_BYTES: u32 = 0x100;
