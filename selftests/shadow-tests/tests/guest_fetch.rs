//! Bulk reads of guest VRAM by the copy engine (shadow/guest_fetch.rs): the fetcher's host
//! channel against the in-process GF100 model, and the per-sync `FetchedVram` view. Staged
//! reads must equal PRAMIN reads word for word, a stuck channel must fall back to PRAMIN with
//! correct data and never be submitted to again while its copy is in flight, and nothing
//! outside the guest pool (or the synced vGPU's partition) is ever copied.
mod common;
mod model_host;

use model_host::{bring_up, Brought, HostWait, Kicks, ModelBars};

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gf100_model::mem::HostMemory;
use gpuvm_shadow_tests::gf100::{copy, pushbuf, vm};
use gpuvm_shadow_tests::guest_fetch::{
    self, FetchError, FetchedVram, Fetcher, GuestFetch, Session, Staging, CHUNK_BYTES, FETCH_AFTER_WORDS, RECOVER_AFTER_NS, SLOTS,
    STAGING_BYTES,
};
use gpuvm_shadow_tests::host_channel::ChannelError;
use gpuvm_shadow_tests::host_gpu::{self, HostRunlist, HostVram, GUEST_CHANNELS};
use gpuvm_shadow_tests::host_init::layout;
use gpuvm_shadow_tests::host_pool::HostPool;
use gpuvm_shadow_tests::memory::Vram;
use gpuvm_shadow_tests::pagetable::{Aperture, Pde, TableRef, VmDesc};
use gpuvm_shadow_tests::partition::{Pools, Slice};
use gpuvm_shadow_tests::shadow_vm::ShadowVm;

use common::{ByteVram, FakeSys, MIB};

/// The fetcher's host channel in these tests (the scrubber has `GUEST_CHANNELS`).
const FETCH_CHANNEL: u32 = GUEST_CHANNELS + 1;
/// Where the staging buffer sits on the model's bus.
const STAGING_BUS: u64 = 0xf << 36;

/// The staging buffer: model memory mapped for DMA at [`STAGING_BUS`].
struct ModelStaging(Arc<HostMemory>);

impl Staging for ModelStaging {
    fn bus(&self) -> u64 {
        STAGING_BUS
    }
    fn bytes(&self) -> u64 {
        self.0.len()
    }
    fn read32(&self, off: u64) -> u32 {
        self.0.read32(off).unwrap_or(u32::MAX)
    }
}

struct Host {
    bars: ModelBars,
    w: HostWait,
    kicks: Kicks,
    pools: Pools,
    bar3_mapped: u64,
    pool: HostPool,
    runlist: HostRunlist,
    fetcher: Fetcher,
    staging: ModelStaging,
}

fn host(vram_mib: u64) -> Host {
    let Brought { bars, pools, bar3_mapped, mut pool, mut runlist } = bring_up(vram_mib);
    let w = HostWait::new();
    let kicks = Kicks::default();
    let fetcher = Fetcher::bring_up(&bars, &w, &kicks, &mut pool, &mut runlist, bar3_mapped, FETCH_CHANNEL, &pools).expect("fetcher bring-up");
    let mem = Arc::new(HostMemory::new("staging", STAGING_BYTES).unwrap());
    bars.gpu.dma_map(STAGING_BUS, mem.clone()).unwrap();
    Host { bars, w, kicks, pools, bar3_mapped, pool, runlist, fetcher, staging: ModelStaging(mem) }
}

/// A partition of one unit at the start of the guest pool (or the `n`th).
fn slice_n(h: &Host, n: u32) -> Slice {
    let size = h.pools.vram_per_unit;
    Slice { first_unit: n, units: 1, vram_base: h.pools.vram_base + u64::from(n) * size, vram_size: size, first_channel: 0, channels: 1 }
}

/// A word pattern that differs at every address.
fn pattern(pa: u64) -> u32 {
    (pa as u32).wrapping_mul(0x9e37_79b9) ^ 0x5a5a_0000
}

fn fill_pattern(h: &Host, base: u64, len: u64) {
    let bytes: Vec<u8> = (0..len / 4).flat_map(|i| pattern(base + i * 4).to_le_bytes()).collect();
    assert!(h.bars.gpu.vram().write(base, &bytes));
}

/// Model MMIO so far (every BAR access the host made).
fn mmio(h: &Host) -> u64 {
    let c = h.bars.gpu.counters();
    c.bar0_reads + c.bar0_writes + c.bar1_reads + c.bar1_writes + c.bar3_reads + c.bar3_writes
}

impl Host {
    fn session(&mut self) -> Session<'_, ModelBars, HostWait, Kicks, ModelStaging> {
        Session { fetcher: &mut self.fetcher, staging: &self.staging, bars: &self.bars, w: &self.w, kick_lock: &self.kicks }
    }
    fn doorbells(&self) -> u64 {
        self.bars.gpu.counters().doorbells
    }
}

/// Reads `words` words from `base` through `v`.
fn read_all(v: &dyn Vram, base: u64, words: u64) -> Vec<u32> {
    (0..words).map(|i| v.read32(base + 4 * i)).collect()
}

#[test]
fn staged_reads_equal_pramin_reads_and_cost_fewer_bar_accesses() {
    let mut h = host(256);
    let s = slice_n(&h, 1);
    let len = SLOTS as u64 * CHUNK_BYTES;
    // A range straddling the staged chunks, in the middle of the partition (PRAMIN territory).
    let base = s.vram_base + 3 * MIB;
    fill_pattern(&h, base, len);
    let want: Vec<u32> = (0..len / 4).map(|i| pattern(base + 4 * i)).collect();

    let bars = ModelBars { gpu: h.bars.gpu.clone(), pramin: Mutex::new(Cell::new(None)) };
    let mut pramin = HostVram::new(&bars, h.bar3_mapped);
    let m0 = mmio(&h);
    assert_eq!(read_all(&pramin, base, len / 4), want, "PRAMIN reads");
    let through_pramin = mmio(&h) - m0;

    let m0 = mmio(&h);
    let mut session = h.session();
    let got = {
        let v = FetchedVram::with_threshold(&mut pramin, &mut session, &s, 0);
        let got = read_all(&v, base, len / 4);
        assert!(!v.fell_back());
        got
    };
    let staged = mmio(&h) - m0;
    assert_eq!(got, want, "staged reads");
    assert_eq!(h.fetcher.stats.fetches, SLOTS as u64, "one fetch per chunk: {:?}", h.fetcher.stats);
    assert_eq!(h.fetcher.stats.bytes, len);
    assert_eq!(h.fetcher.stats.fallbacks, 0);
    eprintln!("{} words: {through_pramin} BAR accesses through PRAMIN, {staged} staged", len / 4);
    assert!(staged * 10 < through_pramin, "staged reads cost {staged} BAR accesses, PRAMIN {through_pramin}");
    assert_eq!(h.bars.gpu.counters().copy_bytes, len, "the copy engine copied exactly the chunks");
}

#[test]
fn a_sync_stays_on_pramin_for_scattered_reads_and_fetches_a_table_read_whole() {
    let mut h = host(256);
    let s = slice_n(&h, 0);
    fill_pattern(&h, s.vram_base, 4 * CHUNK_BYTES);
    let bars = ModelBars { gpu: h.bars.gpu.clone(), pramin: Mutex::new(Cell::new(None)) };
    let mut pramin = HostVram::new(&bars, h.bar3_mapped);
    let mut session = h.session();
    let v = FetchedVram::new(&mut pramin, &mut session, &s);
    // Scattered entries: one word from each of several chunks, alternating.
    for i in 0..(2 * FETCH_AFTER_WORDS as u64) {
        let pa = s.vram_base + (i % 2) * 2 * CHUNK_BYTES + 8 * i;
        assert_eq!(v.read32(pa), pattern(pa));
    }
    drop(v);
    assert_eq!(h.fetcher.stats.fetches, 0, "scattered reads fetch nothing");
    let mut session = h.session();
    let v = FetchedVram::new(&mut pramin, &mut session, &s);
    let base = s.vram_base + CHUNK_BYTES;
    assert_eq!(read_all(&v, base, CHUNK_BYTES / 4), (0..CHUNK_BYTES / 4).map(|i| pattern(base + 4 * i)).collect::<Vec<_>>());
    drop(v);
    assert_eq!(h.fetcher.stats.fetches, 1, "a chunk read whole is fetched once");
}

#[test]
fn nothing_outside_the_partition_or_the_guest_pool_is_copied() {
    let mut h = host(256);
    let s = slice_n(&h, 1);
    let other = slice_n(&h, 2);
    fill_pattern(&h, other.vram_base, CHUNK_BYTES);
    fill_pattern(&h, s.vram_base, CHUNK_BYTES);
    let bars = ModelBars { gpu: h.bars.gpu.clone(), pramin: Mutex::new(Cell::new(None)) };
    let mut pramin = HostVram::new(&bars, h.bar3_mapped);
    {
        let mut session = h.session();
        let v = FetchedVram::with_threshold(&mut pramin, &mut session, &s, 0);
        // Another vGPU's partition and the host's own structures go to the inner Vram.
        for pa in [other.vram_base, other.vram_base + 4, layout::FREE, 0x1000, s.vram_base - 4, s.vram_base + s.vram_size] {
            let _ = v.read32(pa);
        }
        assert_eq!(v.read32(other.vram_base + 8), pattern(other.vram_base + 8));
    }
    assert_eq!(h.fetcher.stats.fetches, 0, "{:?}", h.fetcher.stats);
    assert_eq!(h.bars.gpu.counters().copy_bytes, 0, "the copy engine copied nothing");
    // The fetcher itself refuses the host's reserved VRAM and ranges leaving the guest pool or
    // the staging buffer, before anything reaches the GPU.
    let doorbells = h.doorbells();
    let end = h.pools.vram_base + 8 * h.pools.vram_per_unit;
    let (b, w, k, st) = (&h.bars, &h.w, &h.kicks, &h.staging);
    for (src, off) in [(layout::FREE, 0), (h.pools.vram_base - CHUNK_BYTES, 0), (end - CHUNK_BYTES / 2, 0), (s.vram_base, STAGING_BYTES - 4)] {
        assert_eq!(h.fetcher.fetch(b, w, k, st, src, off, CHUNK_BYTES), Err(FetchError::Outside), "{src:#x} -> {off:#x}");
    }
    assert_eq!(h.doorbells(), doorbells, "no submission");
    assert_eq!(h.bars.gpu.counters().copy_bytes, 0);
}

#[test]
fn a_stuck_channel_falls_back_to_pramin_and_is_never_submitted_to_while_in_flight() {
    let mut h = host(256);
    let s = slice_n(&h, 0);
    fill_pattern(&h, s.vram_base, 2 * CHUNK_BYTES);
    let want: Vec<u32> = (0..2 * CHUNK_BYTES / 4).map(|i| pattern(s.vram_base + 4 * i)).collect();
    let bars = ModelBars { gpu: h.bars.gpu.clone(), pramin: Mutex::new(Cell::new(None)) };
    let mut pramin = HostVram::new(&bars, h.bar3_mapped);
    // The fetch channel cannot run (as if the copy engine were held by an endless copy).
    host_gpu::set_runnable(&h.bars, FETCH_CHANNEL, false);
    let doorbells = h.doorbells();
    {
        let mut session = h.session();
        let v = FetchedVram::with_threshold(&mut pramin, &mut session, &s, 0);
        assert_eq!(read_all(&v, s.vram_base, 2 * CHUNK_BYTES / 4), want, "the fallback reads correct data");
        assert!(v.fell_back());
    }
    assert_eq!(h.doorbells(), doorbells + 1, "one submission, then none for the rest of the sync");
    assert_eq!(h.fetcher.stats.fallbacks, 1);
    assert_eq!(h.fetcher.stats.timeouts, 1);
    assert!(h.fetcher.in_flight());
    // Next syncs: the copy is still in flight, so nothing is submitted and nothing staged is
    // read (the staging buffer was never written: all of it would read 0).
    for _ in 0..3 {
        let mut session = h.session();
        let v = FetchedVram::with_threshold(&mut pramin, &mut session, &s, 0);
        assert_eq!(read_all(&v, s.vram_base, CHUNK_BYTES / 4), want[..(CHUNK_BYTES / 4) as usize]);
        assert!(v.fell_back());
    }
    assert_eq!(h.doorbells(), doorbells + 1, "no submission while the first one is in flight");
    assert_eq!(h.fetcher.stats.fallbacks, 4);
    assert_eq!(h.fetcher.stats.fetches, 0);
    // The engine lets go: the late copy completes, the next sync sees its semaphore and fetches.
    host_gpu::set_runnable(&h.bars, FETCH_CHANNEL, true);
    let start = Instant::now();
    while h.bars.gpu.counters().copy_bytes < CHUNK_BYTES && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Change the data under the landed copy: a fetcher trusting it would read the old words.
    fill_pattern(&h, s.vram_base, CHUNK_BYTES);
    let new: Vec<u32> = (0..CHUNK_BYTES / 4).map(|i| !pattern(s.vram_base + 4 * i)).collect();
    let bytes: Vec<u8> = new.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert!(h.bars.gpu.vram().write(s.vram_base, &bytes));
    {
        let mut session = h.session();
        let v = FetchedVram::with_threshold(&mut pramin, &mut session, &s, 0);
        assert_eq!(read_all(&v, s.vram_base, CHUNK_BYTES / 4), new, "fresh data after recovery");
        assert!(!v.fell_back());
    }
    assert!(!h.fetcher.in_flight());
    assert_eq!(h.fetcher.stats.fetches, 1);
    assert_eq!(h.fetcher.stats.recoveries, 0, "recovered by completion, not eviction");
}

#[test]
fn a_fetch_pending_too_long_is_evicted_and_the_channel_started_again() {
    let mut h = host(256);
    let s = slice_n(&h, 0);
    fill_pattern(&h, s.vram_base, CHUNK_BYTES);
    let (b, w, k, st) = (&h.bars, &h.w, &h.kicks, &h.staging);
    host_gpu::set_runnable(b, FETCH_CHANNEL, false);
    assert_eq!(h.fetcher.fetch(b, w, k, st, s.vram_base, 0, CHUNK_BYTES), Err(FetchError::Channel(ChannelError::Timeout)));
    assert_eq!(h.fetcher.fetch(b, w, k, st, s.vram_base, 0, CHUNK_BYTES), Err(FetchError::InFlight));
    let kicks = k.count.get();
    w.1.set(RECOVER_AFTER_NS);
    h.fetcher.fetch(b, w, k, st, s.vram_base, 0, CHUNK_BYTES).expect("evicted, restarted, fetched");
    assert!(k.count.get() > kicks, "the eviction kicked under the kick lock");
    assert_eq!(h.fetcher.stats.recoveries, 1);
    assert_eq!(st.read32(8), pattern(s.vram_base + 8));
    // The abandoned copy never ran: exactly one chunk was copied.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(b.gpu.counters().copy_bytes, CHUNK_BYTES);
    assert!(h.fetcher.shut_down(b, w, k, &mut h.pool, &mut h.runlist, h.bar3_mapped), "evicted at shutdown");
}

#[test]
fn the_pushbuffer_is_one_physical_copy_into_coherent_system_memory() {
    let mut w = [0u32; guest_fetch::FETCH_PUSH_WORDS];
    let n = guest_fetch::fetch_push(&mut w, 0x1234_5000, 0xf_0000_4000, CHUNK_BYTES, 0x3000, 9).unwrap();
    assert_eq!(n, guest_fetch::FETCH_PUSH_WORDS);
    let sub = guest_fetch::SUBC_COPY;
    assert_eq!(w[2], pushbuf::incr(sub, copy::ADDRESSING_MODE, 1));
    let mode = w[3];
    assert_eq!(mode & copy::ADDR_SRC_PHYSICAL, copy::ADDR_SRC_PHYSICAL);
    assert_eq!((mode >> copy::ADDR_SRC_TARGET_SHIFT) & copy::ADDR_TARGET_MASK, copy::PHYS_TARGET_LOCAL_FB);
    assert_eq!(mode & copy::ADDR_DST_PHYSICAL, copy::ADDR_DST_PHYSICAL);
    assert_eq!((mode >> copy::ADDR_DST_TARGET_SHIFT) & copy::ADDR_TARGET_MASK, copy::PHYS_TARGET_COHERENT_SYSMEM);
    assert_eq!(&w[5..8], &[0, 0x3000, 9]);
    assert_eq!(&w[9..17], &[0, 0x1234_5000, 0xf, 0x4000, CHUNK_BYTES as u32, CHUNK_BYTES as u32, CHUNK_BYTES as u32, 1]);
    assert_eq!(w[17], pushbuf::incr(sub, copy::LAUNCH_DMA, 1));
    assert_ne!(w[18] & (copy::LAUNCH_SEMAPHORE_MASK << copy::LAUNCH_SEMAPHORE_SHIFT), 0, "releases the semaphore");
    assert!(guest_fetch::fetch_push(&mut w, 0, 0, 0, 0, 0).is_none());
    assert!(guest_fetch::fetch_push(&mut w[..4], 0, 0, 4, 0, 0).is_none());
}

// ---- FetchedVram over a fake fetcher: a shadow sync through it is bit-exact --------------

/// A fetcher that copies from a snapshot of a `ByteVram` and counts what it did.
struct FakeFetch<'a> {
    src: &'a ByteVram,
    staged: Vec<Vec<u8>>,
    fetched: Vec<u64>,
    fail: bool,
    ended: u32,
}

impl GuestFetch for FakeFetch<'_> {
    fn fetch(&mut self, slot: usize, pa: u64) -> bool {
        self.fetched.push(pa);
        if self.fail {
            return false;
        }
        self.staged[slot] = self.src.bytes[pa as usize..(pa + CHUNK_BYTES) as usize].to_vec();
        true
    }
    fn staged32(&self, slot: usize, off: u64) -> u32 {
        let b = &self.staged[slot][off as usize..off as usize + 4];
        u32::from_le_bytes(b.try_into().unwrap())
    }
    fn end(&mut self) {
        self.ended += 1;
    }
}

/// A ByteVram reader that counts its reads (the inner Vram of the wrapper).
struct Counting<'a>(&'a mut ByteVram, Cell<u64>);

impl Vram for Counting<'_> {
    fn read32(&self, pa: u64) -> u32 {
        self.1.set(self.1.get() + 1);
        self.0.read32(pa)
    }
    fn write32(&mut self, pa: u64, v: u32) {
        self.0.write32(pa, v)
    }
}

fn guest_space(v: &mut ByteVram) -> VmDesc {
    // A PD at guest 0 with one small-page table of 2048 entries (one 16 KiB chunk), every
    // entry valid and distinct.
    let limit = 2048 * 4096 - 1;
    let pt = 0x10_0000u64;
    let small = Some(TableRef { addr: pt, aperture: Aperture::Vram, vol: false });
    v.guest64(0, Pde { big: None, small, size_shift: 0 }.encode());
    for e in 0..2048u64 {
        v.guest64(pt + e * vm::PTE_SIZE, common::vram_pte(0x40_0000 + (e << 12), e % 3 == 0));
    }
    VmDesc { pd: 0, limit }
}

fn shadow_bytes(v: &ByteVram) -> Vec<u8> {
    v.bytes[common::SHADOW_BASE as usize..common::SHADOW_END as usize].to_vec()
}

#[test]
fn a_shadow_sync_through_staged_chunks_is_bit_exact_and_falls_back_whole() {
    for fail in [false, true] {
        let s = common::slice();
        // Plain sync.
        let mut plain = ByteVram::new();
        let desc = guest_space(&mut plain);
        let mut fetched = ByteVram::new();
        guest_space(&mut fetched);
        let snapshot = ByteVram { bytes: fetched.bytes.clone(), writable: fetched.writable.clone(), writes: Cell::new(0) };
        let mut a1 = common::Alloc::new(common::SHADOW_BASE..common::SHADOW_END);
        let mut a2 = common::Alloc::new(common::SHADOW_BASE..common::SHADOW_END);
        let mut sys = FakeSys::new();
        let mut vm1 = ShadowVm::new(desc, vec![Default::default(); 8], true, &mut plain, &mut a1).unwrap();
        vm1.sync(&mut plain, &s, &mut sys, &mut a1);
        let mut vm2 = ShadowVm::new(desc, vec![Default::default(); 8], true, &mut fetched, &mut a2).unwrap();
        let mut f = FakeFetch { src: &snapshot, staged: vec![Vec::new(); SLOTS], fetched: Vec::new(), fail, ended: 0 };
        let mut inner = Counting(&mut fetched, Cell::new(0));
        {
            let mut v = FetchedVram::new(&mut inner, &mut f, &s);
            vm2.sync(&mut v, &s, &mut sys, &mut a2);
            assert_eq!(v.fell_back(), fail);
        }
        assert_eq!(f.ended, 1, "the fetcher is let go at the end of the sync");
        let inner_reads = inner.1.get();
        assert_eq!(shadow_bytes(&plain), shadow_bytes(&fetched), "shadow tables (fetch failing: {fail})");
        assert_eq!(vm1.stats, vm2.stats);
        for pa in &f.fetched {
            assert!(*pa >= s.vram_base && pa + CHUNK_BYTES <= s.vram_base + s.vram_size && pa % CHUNK_BYTES == 0, "{pa:#x} is a chunk of the partition");
        }
        if fail {
            assert_eq!(f.fetched.len(), 1, "one failed fetch, then PRAMIN for the rest of the sync");
        } else {
            // The table is one chunk, fetched once (the PD's two words stay on PRAMIN).
            assert_eq!(f.fetched.len(), 1, "{:x?}", f.fetched);
            eprintln!("sync: {inner_reads} inner reads with fetching, {} guest entries read", vm2.stats.guest_reads);
            assert!(inner_reads < vm2.stats.guest_reads, "most guest reads were staged ({inner_reads} inner reads)");
        }
    }
}
