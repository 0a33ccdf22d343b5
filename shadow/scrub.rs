// SPDX-License-Identifier: GPL-2.0
//! Scrubbing: a partition's VRAM is zeroed before anyone else can read it (when a vGPU is
//! created on it, when it is removed, on a device reset), so a tenant never sees what the
//! previous one left there.
//!
//! The copy engine does it, on the host's own channel (`host_channel.rs`), in physical mode:
//! it copies a block of zeros in host VRAM over the range. CPU writes would cost one bus round
//! trip per word (a 64 MiB partition is 16M words: minutes on the modelled GPU, seconds on
//! real hardware); the copy engine runs at memory speed and the CPU writes ~30 words.
//!
//! One scrub is one submission of at most two copy launches (NVIDIA's GF100_DMA_COPY layout,
//! §13 (a)) and a semaphore release:
//! - a multi-line copy of the whole zero block per line: OFFSET_IN = the zero block,
//!   PITCH_IN = 0, LINE_LENGTH_IN = PITCH_OUT = the block size, LINE_COUNT = len / block. Line
//!   i reads OFFSET_IN + i * PITCH_IN (cl90b5.h defines PITCH_IN as a full 32-bit value, 0
//!   included, and nothing forbids rereading the same source; the model implements exactly
//!   that arithmetic). Should a real GF100 refuse a zero pitch, the fallback is one
//!   single-line launch per block, i.e. more pushbuffer words, not more CPU writes of VRAM;
//! - a single-line copy of the remainder;
//! - the last launch releases the host channel's semaphore (SEMAPHORE_TYPE one word) after its
//!   transfer (NON_PIPELINED, FLUSH_ENABLE: the zeros are in VRAM when the payload is), and
//!   the host polls that word through BAR3 for a bounded time.
//!
//! The zero block itself is made at bring-up: the CPU zeroes its first [`SEED_BYTES`]
//! through BAR3 (host VRAM holds garbage at power-on), the copy engine the rest from them.
//!
//! Only ranges inside the guest pool are accepted: a wrong address from the glue must not
//! wipe the host's own page tables or instance blocks.

use crate::gf100::{class, copy, host, pfifo, pushbuf};
use crate::host_channel::{ChannelError, HostChannel, Waiter, MAX_PUSH_WORDS};
use crate::host_gpu::{HostBars, HostRunlist, KickLock};
use crate::host_pool::HostPool;
use crate::partition::{Pools, Slice};

/// Bytes of the zero block the copy engine reads (from the host pool).
pub const ZERO_BYTES: u64 = 128 << 10;
/// Bytes of the zero block the CPU zeroes itself at bring-up (one BAR3 write per word).
pub const SEED_BYTES: u64 = 0x1000;
/// The subchannel the copy object is bound to (Gdev's for PCOPY0, §9.3).
pub const SUBC_COPY: u32 = 3;
/// The slowest a working scrub may be: a scrub of `len` bytes may take
/// [`BASE_TIMEOUT_NS`] plus `len` at this rate before it is reported as failed. The copy
/// engine and the model run at GB/s, but a debug-build model on a loaded 2-core machine was
/// seen below 256 MiB/s; a scrub given up too early leaves its copy running under the next
/// user, so this only bounds the wait for a dead engine (448 MiB: 30 s).
pub const MIN_MIB_PER_S: u64 = 16;
/// Fixed part of the time a scrub may take (channel scheduling, semaphore polling).
pub const BASE_TIMEOUT_NS: u64 = 2_000_000_000;

const MIB: u64 = 1 << 20;
const NS_PER_S: u64 = 1_000_000_000;

/// Why a scrub (or the scrubber's bring-up) failed. After a failure the range must be taken
/// as NOT cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScrubError {
    /// The range is not inside the guest pool (or wraps).
    Outside,
    /// No host VRAM left for the channel's block or the zero block.
    NoHostVram,
    /// The host channel failed (bring-up, submission, or the wait timed out).
    Channel(ChannelError),
}

impl From<ChannelError> for ScrubError {
    fn from(e: ChannelError) -> Self {
        ScrubError::Channel(e)
    }
}

/// Bytes in a KiB.
const KIB: u64 = 1 << 10;

/// What one scrub did: bytes zeroed and the time from submission to the semaphore.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrubStats {
    pub bytes: u64,
    pub ns: u64,
}

impl ScrubStats {
    /// MiB per second (0 for an empty scrub).
    pub fn mib_per_s(&self) -> u64 {
        if self.ns == 0 {
            return 0;
        }
        // In KiB so that the product stays in 64 bits (the kernel has no 128-bit division):
        // 2^27 KiB (128 GiB) times 10^9 is below 2^57.
        (self.bytes / KIB).saturating_mul(NS_PER_S) / self.ns / (MIB / KIB)
    }

    /// Adds another scrub's figures.
    pub fn add(&mut self, o: ScrubStats) {
        self.bytes += o.bytes;
        self.ns += o.ns;
    }
}

/// How long a scrub of `len` bytes may take.
pub fn timeout_ns(len: u64) -> u64 {
    // Whole MiB, rounded up, so the product stays in 64 bits (no 128-bit division in the kernel).
    BASE_TIMEOUT_NS.saturating_add(len.div_ceil(MIB).saturating_mul(NS_PER_S) / MIN_MIB_PER_S)
}

/// LAUNCH_DMA of one zeroing copy: non-pipelined (starts after the previous transfer), flushed
/// (its writes are visible when the semaphore is), pitch layouts both sides.
fn launch(multi_line: bool, release: bool) -> u32 {
    let mut l = copy::TRANSFER_NON_PIPELINED << copy::LAUNCH_TRANSFER_SHIFT
        | copy::LAUNCH_FLUSH_ENABLE
        | copy::LAUNCH_SRC_PITCH
        | copy::LAUNCH_DST_PITCH;
    if multi_line {
        l |= copy::LAUNCH_MULTI_LINE;
    }
    if release {
        l |= copy::SEMAPHORE_ONE_WORD << copy::LAUNCH_SEMAPHORE_SHIFT;
    }
    l
}

fn split(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

/// Appends words to a fixed buffer.
struct Push<'a> {
    buf: &'a mut [u32],
    n: usize,
}

impl Push<'_> {
    fn mthd(&mut self, method: u32, data: &[u32]) -> Option<()> {
        let end = self.n.checked_add(1 + data.len())?;
        let out = self.buf.get_mut(self.n..end)?;
        out[0] = pushbuf::incr(SUBC_COPY, method, data.len() as u32);
        out[1..].copy_from_slice(data);
        self.n = end;
        Some(())
    }
}

/// Writes into `out` the pushbuffer that zeroes host VRAM `[dst, dst + len)` from the zeros
/// at host VRAM `[src, src + line)` (physical addresses), then releases the semaphore at
/// channel VA `sem` with `payload`. Returns the number of words, or `None` if `out` is too
/// short, `line` is 0 or does not fit a 32-bit pitch, or the range needs more lines than
/// LINE_COUNT holds. `len` must not be 0.
pub fn zero_push(out: &mut [u32], src: u64, line: u64, dst: u64, len: u64, sem: u64, payload: u32) -> Option<usize> {
    let line32 = u32::try_from(line).ok().filter(|&l| l != 0)?;
    let lines = u32::try_from(len / line).ok()?;
    let rest = (len % line) as u32;
    if len == 0 {
        return None;
    }
    let mut p = Push { buf: out, n: 0 };
    // SET_OBJECT in every submission: a restarted (rebound) channel has lost its objects.
    p.mthd(host::SET_OBJECT, &[class::set_object(class::COPY0, pfifo::ENGINE_PCOPY0)])?;
    let fb = copy::PHYS_TARGET_LOCAL_FB;
    let mode = copy::ADDR_SRC_PHYSICAL | fb << copy::ADDR_SRC_TARGET_SHIFT | copy::ADDR_DST_PHYSICAL | fb << copy::ADDR_DST_TARGET_SHIFT;
    p.mthd(copy::ADDRESSING_MODE, &[mode])?;
    let (sh, sl) = split(sem);
    p.mthd(copy::SET_SEMAPHORE_A, &[sh, sl, payload])?;
    let (ih, il) = split(src);
    if lines > 0 {
        let (oh, ol) = split(dst);
        // PITCH_IN 0: every line rereads the zero block.
        p.mthd(copy::OFFSET_IN_UPPER, &[ih, il, oh, ol, 0, line32, line32, lines])?;
        p.mthd(copy::LAUNCH_DMA, &[launch(true, rest == 0)])?;
    }
    if rest > 0 {
        let (oh, ol) = split(dst + u64::from(lines) * line);
        p.mthd(copy::OFFSET_IN_UPPER, &[ih, il, oh, ol, rest, rest, rest, 1])?;
        p.mthd(copy::LAUNCH_DMA, &[launch(false, true)])?;
    }
    Some(p.n)
}

/// Words of the longest [`zero_push`].
pub const ZERO_PUSH_WORDS: usize = 2 + 2 + 4 + 2 * (9 + 2);

/// The host's scrubber: its channel, its zero block, and the range it may clear.
pub struct Scrubber {
    ch: HostChannel,
    zero: u64,
    /// The guest pool `[start, end)` in host VRAM.
    allowed: (u64, u64),
}

impl Scrubber {
    /// Sets the scrubber up at host bring-up: its channel `chid` (a host id) and zero block
    /// from the host pool, the channel started and put on the host runlist, the zero block
    /// filled. `pools` is the guest pool it will clear.
    pub fn bring_up<B: HostBars>(
        bars: &B,
        w: &impl Waiter,
        kick_lock: &impl KickLock,
        pool: &mut HostPool,
        runlist: &mut HostRunlist,
        bar3_mapped: u64,
        chid: u32,
        pools: &Pools,
    ) -> Result<Scrubber, ScrubError> {
        let ch = HostChannel::bring_up(bars, w, kick_lock, pool, runlist, bar3_mapped, chid).ok_or(ScrubError::NoHostVram)??;
        let Some(zero) = pool.alloc(ZERO_BYTES) else {
            ch.take_down(bars, w, kick_lock, pool, runlist);
            return Err(ScrubError::NoHostVram);
        };
        let mut s = Scrubber { ch, zero, allowed: pools.guest_vram() };
        match s.init(bars, w, kick_lock) {
            Ok(()) => Ok(s),
            Err(e) => {
                // Nothing of the scrubber may keep running on memory given back.
                s.ch.take_down(bars, w, kick_lock, pool, runlist);
                pool.free(zero, ZERO_BYTES);
                Err(e)
            }
        }
    }

    fn init<B: HostBars>(&mut self, bars: &B, w: &impl Waiter, kick_lock: &impl KickLock) -> Result<(), ScrubError> {
        for off in (0..SEED_BYTES).step_by(4) {
            bars.bar3_write32(self.zero + off, 0);
        }
        // The seed is flushed with the pushbuffer (HostChannel::submit).
        self.fill(bars, w, kick_lock, self.zero, SEED_BYTES, self.zero + SEED_BYTES, ZERO_BYTES - SEED_BYTES).map(|_| ())
    }

    /// Takes the scrubber off the GPU and gives its host VRAM back (host shutdown).
    pub fn shut_down<B: HostBars>(self, bars: &B, w: &impl Waiter, kick_lock: &impl KickLock, pool: &mut HostPool, runlist: &mut HostRunlist) {
        self.ch.take_down(bars, w, kick_lock, pool, runlist);
        pool.free(self.zero, ZERO_BYTES);
    }

    /// The host channel it uses.
    pub fn channel(&self) -> &HostChannel {
        &self.ch
    }

    /// Host VRAM address of the zero block.
    pub fn zero_block(&self) -> u64 {
        self.zero
    }

    /// Zeroes host VRAM `[addr, addr + len)`, which must lie inside the guest pool, and
    /// returns when the zeros are in VRAM (or the bounded wait failed).
    pub fn scrub<B: HostBars>(&mut self, bars: &B, w: &impl Waiter, kick_lock: &impl KickLock, addr: u64, len: u64) -> Result<ScrubStats, ScrubError> {
        let (lo, hi) = self.allowed;
        if addr < lo || addr.checked_add(len).is_none_or(|end| end > hi) {
            return Err(ScrubError::Outside);
        }
        if len == 0 {
            return Ok(ScrubStats::default());
        }
        self.fill(bars, w, kick_lock, self.zero, ZERO_BYTES, addr, len)
    }

    /// Zeroes a vGPU's VRAM partition.
    pub fn scrub_slice<B: HostBars>(&mut self, bars: &B, w: &impl Waiter, kick_lock: &impl KickLock, slice: &Slice) -> Result<ScrubStats, ScrubError> {
        self.scrub(bars, w, kick_lock, slice.vram_base, slice.vram_size)
    }

    fn fill<B: HostBars>(&mut self, bars: &B, w: &impl Waiter, kick_lock: &impl KickLock, src: u64, line: u64, dst: u64, len: u64) -> Result<ScrubStats, ScrubError> {
        let mut words = [0u32; ZERO_PUSH_WORDS];
        const _: () = assert!(ZERO_PUSH_WORDS <= MAX_PUSH_WORDS);
        let n = zero_push(&mut words, src, line, dst, len, self.ch.semaphore(), self.ch.next_payload()).ok_or(ScrubError::Outside)?;
        let t0 = w.now_ns();
        self.ch.submit(bars, w, kick_lock, &words[..n])?;
        self.ch.wait(bars, w, timeout_ns(len))?;
        Ok(ScrubStats { bytes: len, ns: w.now_ns().saturating_sub(t0).max(1) })
    }
}
