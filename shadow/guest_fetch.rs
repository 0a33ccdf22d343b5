// SPDX-License-Identifier: GPL-2.0
//! Bulk reads of guest VRAM for shadow syncs: the copy engine copies guest page tables from
//! the guest pool into a staging buffer in host system memory, where the CPU reads them at
//! memory speed, instead of one PRAMIN round trip per 32-bit word (a page re-read whole after
//! BAR3 remapping is 1024 round trips; one copy is ~30 host BAR accesses however long).
//!
//! The copy runs on a host channel of its own ([`Fetcher`], `host_channel.rs`, set up and
//! driven exactly as `scrub.rs` drives the scrubber's): one submission per fetch, a
//! single-line copy (NVIDIA cl90b5.h GF100_DMA_COPY: OFFSET_IN/OUT, PITCH_IN/OUT,
//! LINE_LENGTH_IN, LINE_COUNT, LAUNCH_DMA; open-gpu-doc `classes/dma-copy/cl90b5.h`,
//! gf100-interface.md §13 (a)) with physical addressing on both sides: ADDRESSING_MODE
//! source target LOCAL_FB (0) and destination target COHERENT_SYSMEM (1), cl90b5.h's
//! `SRC_TARGET`/`DST_TARGET` values (envytools names the same field of 0x90b5 the same
//! way), and a semaphore release after it (non-pipelined, flushed: the data is in host memory
//! when the payload is in VRAM), polled through BAR3 for a bounded time.
//!
//! [`FetchedVram`] is the [`Vram`] one sync reads through: reads inside the vGPU's partition
//! are served from staged chunks, everything else goes to the inner `Vram` unchanged.
//!
//! Failure never costs correctness, only speed:
//! - a fetch that does not complete within [`FETCH_TIMEOUT_NS`] (the copy engine may be held
//!   by a guest's endless copy until the watchdog resets it) makes the wrapper read through
//!   the inner `Vram` (PRAMIN) for the rest of its sync;
//! - that fetch is still in flight: its copy may land in the staging buffer at any time. The
//!   fetcher submits nothing and trusts no staged byte until its semaphore shows it done, or
//!   until the channel was evicted (`host_gpu::evict`: no engine works for it after that)
//!   and started again, which it does once the fetch has been pending [`RECOVER_AFTER_NS`];
//! - staged data is valid for one sync only: a [`FetchedVram`] starts with no chunk staged,
//!   and the glue holds the fetcher (its lock) from a sync's first fetch to its end, so no
//!   other vGPU's fetch can overwrite a slot meanwhile.
//!
//! Only the guest pool is ever copied (the fetcher refuses anything else), and the wrapper
//! asks only for chunks inside the partition of the vGPU being synced.

use core::cell::{Cell, RefCell};

use crate::gf100::{class, copy, host, pfifo, pushbuf};
use crate::host_channel::{ChannelError, HostChannel, Waiter, MAX_PUSH_WORDS};
use crate::host_gpu::{self, HostBars, HostRunlist, KickLock};
use crate::host_pool::HostPool;
use crate::memory::Vram;
use crate::partition::{Pools, Slice};

/// Bytes of one staged chunk (aligned in host VRAM): a 4 KiB page table page and its
/// neighbours, or a whole 8 KiB big-page table, in one copy.
pub const CHUNK_BYTES: u64 = 16 << 10;
/// Chunks one sync may hold staged at once (replaced round robin): the PD's chunk and the
/// page tables a sync walks in PDE order.
pub const SLOTS: usize = 4;
/// Bytes of the staging buffer in host system memory.
pub const STAGING_BYTES: u64 = CHUNK_BYTES * SLOTS as u64;
/// How long a sync waits for one fetch before it reads through PRAMIN instead: a working
/// copy of 16 KiB takes microseconds on a GF100 and well under a millisecond on the model,
/// but a guest's endless copy can hold the copy engine until the watchdog stops it
/// (`watchdog::WATCHDOG_MS_DEFAULT`, 2 s), and a sync must not wait that long.
// TIMEOUT: FETCH_TIMEOUT_NS, then the sync falls back to PRAMIN reads (counted).
pub const FETCH_TIMEOUT_NS: u64 = 5_000_000;
/// A fetch pending this long is not waiting for the copy engine any more (the watchdog
/// would have freed it): the channel is evicted and started again, so fetching resumes.
pub const RECOVER_AFTER_NS: u64 = 10_000_000_000;
/// Words a sync reads through the inner `Vram` in a row from one chunk before it fetches
/// that chunk. A fetch is about 25 host BAR accesses, but nearly all of them are posted
/// writes (pushbuffer, GPFIFO entry, doorbell); its round trips are the flush and the
/// semaphore polls, a few reads, about what this many PRAMIN reads cost (each a round trip:
/// 114 us against 3 us for a posted write on the test machine's modelled GPU, `make bench`'s
/// probe line; on a GF100 about 1 us against 0.1 us). So a sync that reads an entry or two
/// (a trapped PTE write) stays on PRAMIN, and one that walks a table pays at most about twice
/// what either path alone would.
pub const FETCH_AFTER_WORDS: u32 = 4;
/// The subchannel the copy object is bound to (the scrubber's, Gdev's for PCOPY0).
pub const SUBC_COPY: u32 = crate::scrub::SUBC_COPY;

/// Host system memory the copy engine writes staged chunks into (kernel: `DmaWords`,
/// coherent DMA memory; host tests: memory the model maps for DMA).
pub trait Staging {
    /// Bus address of byte 0, as the GPU reaches it.
    fn bus(&self) -> u64;
    /// Bytes of the buffer.
    fn bytes(&self) -> u64;
    /// The word at byte offset `off`.
    fn read32(&self, off: u64) -> u32;
    /// The word at byte `off` of staging slot `slot` (each [`CHUNK_BYTES`]).
    fn slot32(&self, slot: usize, off: u64) -> u32 {
        self.read32(slot as u64 * CHUNK_BYTES + off)
    }
}

/// Why a fetch did not stage its chunk. Every one of them makes the sync read through PRAMIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchError {
    /// The range is not inside the guest pool, or not inside the staging buffer.
    Outside,
    /// No host VRAM left for the channel's control block (bring-up).
    NoHostVram,
    /// An earlier fetch timed out and its copy is still in flight: nothing is submitted and
    /// the staging buffer is not trusted until it completes or the channel is evicted.
    InFlight,
    /// The host channel failed (submission, or the bounded wait timed out).
    Channel(ChannelError),
}

impl From<ChannelError> for FetchError {
    fn from(e: ChannelError) -> Self {
        FetchError::Channel(e)
    }
}

/// What the fetcher did, for sysfs and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Chunks copied into the staging buffer.
    pub fetches: u64,
    /// Bytes staged.
    pub bytes: u64,
    /// Fetches that failed (each sends the rest of one sync to PRAMIN).
    pub fallbacks: u64,
    /// Fetches whose wait timed out (a subset of `fallbacks`).
    pub timeouts: u64,
    /// Times a fetch pending too long was evicted and the channel started again.
    pub recoveries: u64,
}

fn split(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

/// Words of [`fetch_push`].
pub const FETCH_PUSH_WORDS: usize = 2 + 2 + 4 + 9 + 2;

/// Writes into `out` the pushbuffer that copies host VRAM `[src, src + len)` (physical) to
/// system memory at bus address `dst` (physical, coherent), then releases the semaphore at
/// channel VA `sem` with `payload`. Returns the number of words, or `None` if `out` is too
/// short or `len` is 0 or does not fit LINE_LENGTH_IN.
pub fn fetch_push(out: &mut [u32], src: u64, dst: u64, len: u64, sem: u64, payload: u32) -> Option<usize> {
    let len32 = u32::try_from(len).ok().filter(|&l| l != 0)?;
    let words = out.get_mut(..FETCH_PUSH_WORDS)?;
    let m = |subc_method: u32, n: u32| pushbuf::incr(SUBC_COPY, subc_method, n);
    let mode = copy::ADDR_SRC_PHYSICAL
        | copy::PHYS_TARGET_LOCAL_FB << copy::ADDR_SRC_TARGET_SHIFT
        | copy::ADDR_DST_PHYSICAL
        | copy::PHYS_TARGET_COHERENT_SYSMEM << copy::ADDR_DST_TARGET_SHIFT;
    // One line, pitch layouts both sides, after everything before it (non-pipelined), its
    // writes visible before the semaphore (flush), which is released after the transfer.
    let launch = copy::TRANSFER_NON_PIPELINED << copy::LAUNCH_TRANSFER_SHIFT
        | copy::LAUNCH_FLUSH_ENABLE
        | copy::LAUNCH_SRC_PITCH
        | copy::LAUNCH_DST_PITCH
        | copy::SEMAPHORE_ONE_WORD << copy::LAUNCH_SEMAPHORE_SHIFT;
    let (sh, sl) = split(sem);
    let (ih, il) = split(src);
    let (oh, ol) = split(dst);
    // SET_OBJECT in every submission: a restarted channel has lost its objects.
    let push = [
        pushbuf::incr(SUBC_COPY, host::SET_OBJECT, 1),
        class::set_object(class::COPY0, pfifo::ENGINE_PCOPY0),
        m(copy::ADDRESSING_MODE, 1),
        mode,
        m(copy::SET_SEMAPHORE_A, 3),
        sh,
        sl,
        payload,
        m(copy::OFFSET_IN_UPPER, 8),
        ih,
        il,
        oh,
        ol,
        len32,
        len32,
        len32,
        1,
        m(copy::LAUNCH_DMA, 1),
        launch,
    ];
    words.copy_from_slice(&push);
    Some(FETCH_PUSH_WORDS)
}

/// The host's guest-VRAM fetcher: its channel and the range it may copy from.
pub struct Fetcher {
    ch: HostChannel,
    /// The guest pool `[start, end)` in host VRAM.
    allowed: (u64, u64),
    /// When the fetch that timed out was submitted (`None`: nothing in flight).
    pending_since: Option<u64>,
    /// What it did.
    pub stats: FetchStats,
}

impl Fetcher {
    /// Sets the fetcher up at host bring-up: its channel `chid` (a host id, not the
    /// scrubber's) from the host pool, started and put on the host runlist. `pools` is the
    /// guest pool it may read.
    pub fn bring_up<B: HostBars>(
        bars: &B,
        w: &impl Waiter,
        kick_lock: &impl KickLock,
        pool: &mut HostPool,
        runlist: &mut HostRunlist,
        bar3_mapped: u64,
        chid: u32,
        pools: &Pools,
    ) -> Result<Fetcher, FetchError> {
        let ch = HostChannel::bring_up(bars, w, kick_lock, pool, runlist, bar3_mapped, chid).ok_or(FetchError::NoHostVram)??;
        Ok(Fetcher { ch, allowed: pools.guest_vram(), pending_since: None, stats: FetchStats::default() })
    }

    /// Takes the fetcher off the GPU and gives its host VRAM back (host shutdown). Returns
    /// whether no copy of it can land in the staging buffer any more: the channel is evicted
    /// (an engine stuck on it reset), not only kicked. If not, the caller must not give the
    /// staging buffer back (a late copy would write memory reused by someone else).
    #[must_use]
    pub fn shut_down<B: HostBars>(self, bars: &B, w: &impl Waiter, kick_lock: &impl KickLock, pool: &mut HostPool, runlist: &mut HostRunlist, bar3_mapped: u64) -> bool {
        let chid = self.ch.chid();
        let evicted = host_gpu::evict(bars, w, kick_lock, chid).is_ok();
        host_gpu::bind_channel(bars, chid, None);
        let _ = runlist.set_host_channel(bars, w, bar3_mapped, chid, false);
        if evicted {
            pool.free(self.ch.base(), crate::host_channel::ctl::BYTES);
        }
        evicted
    }

    /// The host channel it uses.
    pub fn channel(&self) -> &HostChannel {
        &self.ch
    }

    /// Whether a fetch that timed out may still write the staging buffer.
    pub fn in_flight(&self) -> bool {
        self.pending_since.is_some()
    }

    /// Copies host VRAM `[src, src + len)`, which must lie inside the guest pool, to byte
    /// `dst_off` of `staging`, and returns when the data is there. An error counts as a
    /// fallback: the caller reads through PRAMIN.
    pub fn fetch<B: HostBars>(&mut self, bars: &B, w: &impl Waiter, kick_lock: &impl KickLock, staging: &impl Staging, src: u64, dst_off: u64, len: u64) -> Result<(), FetchError> {
        let r = self.fetch_inner(bars, w, kick_lock, staging, src, dst_off, len);
        match r {
            Ok(()) => {
                self.stats.fetches += 1;
                self.stats.bytes += len;
            }
            Err(e) => {
                self.stats.fallbacks += 1;
                if e == FetchError::Channel(ChannelError::Timeout) {
                    self.stats.timeouts += 1;
                }
            }
        }
        r
    }

    fn fetch_inner<B: HostBars>(&mut self, bars: &B, w: &impl Waiter, kick_lock: &impl KickLock, staging: &impl Staging, src: u64, dst_off: u64, len: u64) -> Result<(), FetchError> {
        let (lo, hi) = self.allowed;
        if len == 0 || src < lo || src.checked_add(len).is_none_or(|end| end > hi) {
            return Err(FetchError::Outside);
        }
        if dst_off.checked_add(len).is_none_or(|end| end > staging.bytes()) {
            return Err(FetchError::Outside);
        }
        self.settle(bars, w, kick_lock)?;
        let mut words = [0u32; FETCH_PUSH_WORDS];
        const _: () = assert!(FETCH_PUSH_WORDS <= MAX_PUSH_WORDS);
        let dst = staging.bus().checked_add(dst_off).ok_or(FetchError::Outside)?;
        let n = fetch_push(&mut words, src, dst, len, self.ch.semaphore(), self.ch.next_payload()).ok_or(FetchError::Outside)?;
        let t0 = w.now_ns();
        if let Err(e) = self.ch.submit(bars, w, kick_lock, &words[..n]) {
            // A doorbell may have been rung (a flush that timed out after the entry was
            // written is reported before it): take the copy as in flight.
            self.pending_since = Some(t0);
            return Err(e.into());
        }
        if let Err(e) = self.ch.wait(bars, w, FETCH_TIMEOUT_NS) {
            self.pending_since = Some(t0);
            return Err(e.into());
        }
        Ok(())
    }

    /// Makes sure no earlier copy is in flight: one look at the semaphore; a fetch pending
    /// longer than [`RECOVER_AFTER_NS`] is evicted and the channel started again.
    fn settle<B: HostBars>(&mut self, bars: &B, w: &impl Waiter, kick_lock: &impl KickLock) -> Result<(), FetchError> {
        let Some(since) = self.pending_since else { return Ok(()) };
        if self.ch.wait(bars, w, 0).is_ok() {
            self.pending_since = None;
            return Ok(());
        }
        if w.now_ns().saturating_sub(since) < RECOVER_AFTER_NS {
            return Err(FetchError::InFlight);
        }
        // After the eviction no engine works for the channel: its copy can no longer land.
        host_gpu::evict(bars, w, kick_lock, self.ch.chid()).map_err(ChannelError::from)?;
        host_gpu::bind_channel(bars, self.ch.chid(), None);
        self.ch.start(bars)?;
        self.pending_since = None;
        self.stats.recoveries += 1;
        Ok(())
    }
}

/// What a sync's [`FetchedVram`] asks of the host: stage a chunk, read it back. The glue
/// implements it over the GPU's one [`Fetcher`] and staging buffer, held from the first
/// [`GuestFetch::fetch`] of a sync until [`GuestFetch::end`].
pub trait GuestFetch {
    /// Copies host VRAM `[pa, pa + CHUNK_BYTES)` into staging slot `slot` (below [`SLOTS`]);
    /// whether it is there now. `false`: read through PRAMIN for the rest of the sync.
    fn fetch(&mut self, slot: usize, pa: u64) -> bool;
    /// The word at byte `off` of slot `slot`, as the last successful fetch staged it.
    fn staged32(&self, slot: usize, off: u64) -> u32;
    /// The sync is over: nothing staged is read any more (the glue lets the fetcher go).
    fn end(&mut self) {}
}

/// A [`GuestFetch`] over a [`Fetcher`] and its staging buffer, for whoever holds both.
pub struct Session<'a, B: HostBars, W: Waiter, K: KickLock, S: Staging> {
    pub fetcher: &'a mut Fetcher,
    pub staging: &'a S,
    pub bars: &'a B,
    pub w: &'a W,
    pub kick_lock: &'a K,
}

impl<B: HostBars, W: Waiter, K: KickLock, S: Staging> GuestFetch for Session<'_, B, W, K, S> {
    fn fetch(&mut self, slot: usize, pa: u64) -> bool {
        if slot >= SLOTS {
            return false;
        }
        let off = slot as u64 * CHUNK_BYTES;
        self.fetcher.fetch(self.bars, self.w, self.kick_lock, self.staging, pa, off, CHUNK_BYTES).is_ok()
    }
    fn staged32(&self, slot: usize, off: u64) -> u32 {
        self.staging.slot32(slot, off)
    }
}

/// Host VRAM as one shadow sync reads it: words inside the vGPU's partition come from chunks
/// the copy engine staged in host memory during this sync; everything else, every write, and
/// every read after a fetch failed, goes to `inner`. Make a fresh one per sync.
pub struct FetchedVram<'a> {
    inner: &'a mut dyn Vram,
    fetch: RefCell<&'a mut dyn GuestFetch>,
    /// The partition `[lo, hi)` in host VRAM.
    lo: u64,
    hi: u64,
    /// Chunk (host VRAM address) staged in each slot.
    slots: [Cell<Option<u64>>; SLOTS],
    next: Cell<usize>,
    /// The chunk of the current run of inner reads, and its length in words.
    run: Cell<(u64, u32)>,
    after: u32,
    /// A fetch failed: the rest of the sync reads through `inner`.
    failed: Cell<bool>,
}

impl<'a> FetchedVram<'a> {
    /// The view for one sync of the vGPU on `slice`, fetching a chunk after
    /// [`FETCH_AFTER_WORDS`] reads of it in a row.
    pub fn new(inner: &'a mut dyn Vram, fetch: &'a mut dyn GuestFetch, slice: &Slice) -> Self {
        Self::with_threshold(inner, fetch, slice, FETCH_AFTER_WORDS)
    }

    /// As [`FetchedVram::new`], fetching after `after` inner reads in a row (0: at once).
    pub fn with_threshold(inner: &'a mut dyn Vram, fetch: &'a mut dyn GuestFetch, slice: &Slice, after: u32) -> Self {
        FetchedVram {
            inner,
            fetch: RefCell::new(fetch),
            lo: slice.vram_base,
            hi: slice.vram_base.saturating_add(slice.vram_size),
            slots: Default::default(),
            next: Cell::new(0),
            run: Cell::new((u64::MAX, 0)),
            after,
            failed: Cell::new(false),
        }
    }

    /// Whether a fetch failed in this sync (it then read through the inner `Vram`).
    pub fn fell_back(&self) -> bool {
        self.failed.get()
    }

    fn chunk_of(&self, pa: u64) -> Option<u64> {
        let chunk = pa & !(CHUNK_BYTES - 1);
        (chunk >= self.lo && chunk.checked_add(CHUNK_BYTES).is_some_and(|end| end <= self.hi)).then_some(chunk)
    }

    fn slot_of(&self, chunk: u64) -> Option<usize> {
        self.slots.iter().position(|s| s.get() == Some(chunk))
    }

    /// The staged word at `pa`, fetching its chunk if this read is the one that pays for it.
    fn staged(&self, pa: u64) -> Option<u32> {
        if self.failed.get() {
            return None;
        }
        let chunk = self.chunk_of(pa)?;
        // The fetcher is borrowed only inside this function, never across a call back into
        // it: a borrow that fails cannot happen, and would only send the read to `inner`
        // (no panic path in the module).
        if let Some(i) = self.slot_of(chunk) {
            return self.fetch.try_borrow().ok().map(|f| f.staged32(i, pa - chunk));
        }
        let (c, n) = self.run.get();
        let n = if c == chunk { n.saturating_add(1) } else { 1 };
        self.run.set((chunk, n));
        if n <= self.after {
            return None;
        }
        let i = self.next.get();
        self.next.set((i + 1) % SLOTS);
        let slot = self.slots.get(i)?;
        // The slot is overwritten whatever happens next.
        slot.set(None);
        let Ok(mut f) = self.fetch.try_borrow_mut() else { return None };
        if !f.fetch(i, chunk) {
            self.failed.set(true);
            return None;
        }
        slot.set(Some(chunk));
        Some(f.staged32(i, pa - chunk))
    }
}

impl Vram for FetchedVram<'_> {
    fn read32(&self, pa: u64) -> u32 {
        match self.staged(pa) {
            Some(v) => v,
            None => self.inner.read32(pa),
        }
    }

    fn write32(&mut self, pa: u64, v: u32) {
        // A sync writes only shadow tables (outside every partition); should it ever write a
        // staged chunk, the chunk is dropped rather than read back stale.
        if let Some(i) = self.chunk_of(pa).and_then(|c| self.slot_of(c)) {
            if let Some(s) = self.slots.get(i) {
                s.set(None);
            }
        }
        self.inner.write32(pa, v)
    }
}

impl Drop for FetchedVram<'_> {
    fn drop(&mut self) {
        self.fetch.get_mut().end();
    }
}
