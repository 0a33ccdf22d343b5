//! The scrubber (shadow/scrub.rs) and the host channel it runs on (shadow/host_channel.rs),
//! against the in-process GF100 model brought up by the host's own code: a scrub zeroes
//! exactly its range with the copy engine (neighbours untouched), stays inside the guest
//! pool, survives a stopped channel, and says how fast it went.
mod model_host;

use model_host::{bring_up, Brought, HostWait, Kicks, ModelBars, MIB};

use gpuvm_shadow_tests::channel::{ChannelSet, RunlistPart};
use gpuvm_shadow_tests::gf100::{copy, host, pfifo, pushbuf, ramfc, target, userd};
use gpuvm_shadow_tests::host_channel::{ctl, ChannelError, HostChannel};
use gpuvm_shadow_tests::host_gpu::{self, HostRunlist, GUEST_CHANNELS, HOST_VRAM_RESERVED};
use gpuvm_shadow_tests::host_init::{layout, Mmio};
use gpuvm_shadow_tests::host_pool::HostPool;
use gpuvm_shadow_tests::partition::{Pools, UNITS};
use gpuvm_shadow_tests::scrub::{self, ScrubError, ScrubStats, Scrubber, ZERO_BYTES};


/// A model GPU brought up by the host, its pool, runlist and scrubber.
struct Host {
    bars: ModelBars,
    w: HostWait,
    pools: Pools,
    bar3_mapped: u64,
    pool: HostPool,
    runlist: HostRunlist,
    scrubber: Scrubber,
    kicks: Kicks,
}

fn host(vram_mib: u64) -> Host {
    let Brought { bars, pools, bar3_mapped, mut pool, mut runlist } = bring_up(vram_mib);
    let w = HostWait::new();
    let kicks = Kicks::default();
    let scrubber = Scrubber::bring_up(&bars, &w, &kicks, &mut pool, &mut runlist, bar3_mapped, GUEST_CHANNELS, &pools).expect("scrubber bring-up");
    Host { bars, w, kicks, pools, bar3_mapped, pool, runlist, scrubber }
}

impl Host {
    fn vram(&self) -> &gf100_model::mem::HostMemory {
        self.bars.gpu.vram()
    }
    /// Test setup, straight into VRAM: `len` bytes of `byte` (never 0).
    fn fill(&self, addr: u64, len: u64, byte: u8) {
        assert!(self.vram().fill(addr, len, byte));
    }
    /// Whether `[addr, addr + len)` holds only `byte` (compared a MiB at a time).
    fn holds(&self, addr: u64, len: u64, byte: u8) -> bool {
        let want = vec![byte; MIB as usize];
        let mut got = vec![0u8; MIB as usize];
        (0..len).step_by(MIB as usize).all(|off| {
            let n = (len - off).min(MIB) as usize;
            assert!(self.vram().read(addr + off, &mut got[..n]));
            got[..n] == want[..n]
        })
    }
    fn is_zero(&self, addr: u64, len: u64) -> bool {
        self.holds(addr, len, 0)
    }
    fn scrub(&mut self, addr: u64, len: u64) -> Result<ScrubStats, ScrubError> {
        self.scrubber.scrub(&self.bars, &self.w, &self.kicks, addr, len)
    }
}

#[test]
fn the_zero_block_is_filled_by_the_copy_engine_at_bring_up() {
    let h = host(256);
    let z = h.scrubber.zero_block();
    assert!(z + ZERO_BYTES <= HOST_VRAM_RESERVED, "the zero block is host VRAM");
    assert!(h.is_zero(z, ZERO_BYTES));
    let c = h.bars.gpu.counters();
    // The CPU wrote only the seed, the copy engine the rest.
    assert_eq!(c.copy_bytes, ZERO_BYTES - scrub::SEED_BYTES);
    assert!(c.bar3_writes < 2 * (scrub::SEED_BYTES / 4) + 200, "{} BAR3 writes", c.bar3_writes);
}

#[test]
fn a_scrub_zeroes_its_range_and_nothing_around_it() {
    let mut h = host(256);
    let base = h.pools.vram_base;
    // A range that is neither block aligned nor a whole number of blocks: multi-line copy
    // plus a remainder line.
    let (addr, len) = (base + 3 * MIB + 0x1234, 9 * MIB + 0x2_4444);
    h.fill(addr - MIB, MIB, 1);
    h.fill(addr, len, 2);
    h.fill(addr + len, MIB, 3);
    assert!(h.holds(addr, len, 2));
    let writes0 = h.bars.gpu.counters().bar3_writes + h.bars.gpu.counters().bar0_writes;
    let s = h.scrub(addr, len).expect("scrub");
    let c = h.bars.gpu.counters();
    assert_eq!(s.bytes, len);
    assert!(h.is_zero(addr, len), "every byte of the range is zero");
    assert!(h.holds(addr - MIB, MIB, 1), "the neighbour below is untouched");
    assert!(h.holds(addr + len, MIB, 3), "the neighbour above is untouched");
    // CPU traffic is the pushbuffer, not the range: a few dozen BAR writes for 9 MiB.
    let writes = c.bar3_writes + c.bar0_writes - writes0;
    assert!(writes < 64, "{writes} BAR writes for a {len}-byte scrub");
    println!("scrub of {} KiB: {} MiB/s ({} ns), {writes} BAR writes", len >> 10, s.mib_per_s(), s.ns);
    // Exact multiples of the block and a range shorter than one block.
    for (addr, len) in [(base + 20 * MIB, 4 * ZERO_BYTES), (base + 30 * MIB + 8, 0x1_0004)] {
        h.fill(addr - 4096, len + 8192, 4);
        h.scrub(addr, len).expect("scrub");
        assert!(h.is_zero(addr, len));
        assert!(h.holds(addr - 4096, 4096, 4), "below {addr:#x}");
        let mut b = [0u8; 4];
        h.vram().read(addr + len, &mut b);
        assert_ne!(b, [0; 4], "above {addr:#x} + {len:#x}");
    }
}

#[test]
fn every_partition_scrubs_alone_and_reports_its_rate() {
    let mut h = host(512);
    let per_unit = h.pools.vram_per_unit;
    for u in 0..UNITS as u64 {
        h.fill(h.pools.vram_base + u * per_unit, per_unit, 0xa0 + u as u8);
    }
    // A gpuvm-4 vGPU's slice (units 2..4) among full neighbours.
    let slice = h.pools.slice(2, 2);
    let s = h.scrubber.scrub_slice(&h.bars, &h.w, &h.kicks, &slice).expect("scrub a slice");
    assert!(h.is_zero(slice.vram_base, slice.vram_size));
    for u in [0, 1, 4, 5, 6, 7] {
        assert!(h.holds(h.pools.vram_base + u * per_unit, per_unit, 0xa0 + u as u8), "unit {u} untouched");
    }
    // The whole guest pool (a gpuvm-1 vGPU).
    let all = h.pools.slice(0, UNITS);
    let s1 = h.scrubber.scrub_slice(&h.bars, &h.w, &h.kicks, &all).expect("scrub the pool");
    assert!(h.is_zero(all.vram_base, all.vram_size));
    println!(
        "scrub rate on the in-process model: {} MiB in {:.1} ms = {} MiB/s (gpuvm-4 slice), {} MiB in {:.1} ms = {} MiB/s (gpuvm-1)",
        slice.vram_size >> 20,
        s.ns as f64 / 1e6,
        s.mib_per_s(),
        all.vram_size >> 20,
        s1.ns as f64 / 1e6,
        s1.mib_per_s()
    );
    assert!(s1.mib_per_s() >= scrub::MIN_MIB_PER_S, "slower than the timeout assumes");
}

#[test]
fn ranges_outside_the_guest_pool_are_refused_and_untouched() {
    let mut h = host(256);
    let (lo, hi) = (h.pools.vram_base, h.pools.vram_base + UNITS as u64 * h.pools.vram_per_unit);
    h.fill(lo - MIB, MIB, 7);
    let copies = h.bars.gpu.counters().copy_bytes;
    for (addr, len) in [(0, 4096), (lo - 4096, 8192), (lo - MIB, MIB), (hi - 4096, 8192), (hi, 4096), (u64::MAX - 4095, 4096), (lo, u64::MAX)] {
        assert_eq!(h.scrub(addr, len), Err(ScrubError::Outside), "{addr:#x}+{len:#x}");
    }
    assert_eq!(h.bars.gpu.counters().copy_bytes, copies, "nothing was copied");
    assert!(h.holds(lo - MIB, MIB, 7), "host VRAM below the pool untouched");
    assert_eq!(h.scrub(lo, 0), Ok(ScrubStats::default()));
}

#[test]
fn the_host_channel_is_a_host_channel_with_the_gate_open() {
    let mut h = host(256);
    let (chid, i) = (h.scrubber.channel().chid(), h.scrubber.channel().inst());
    assert!(chid >= GUEST_CHANNELS);
    assert!(i + ctl::BYTES <= h.bar3_mapped);
    let vram = h.bars.gpu.vram().clone();
    let rd = |a: u64| vram.read32(a).unwrap();
    assert_eq!(rd(i + u64::from(ramfc::HCE_CTRL)), ramfc::HCE_CTRL_PRIV_MODE);
    assert_eq!(rd(i + u64::from(ramfc::SIGNATURE)), ramfc::SIGNATURE_VALUE);
    let userd = layout::USERD + u64::from(chid) * userd::SIZE;
    assert_eq!(rd(i + u64::from(ramfc::USERD_LO)), userd as u32 | target::VRAM);
    assert_eq!(h.bars.rd(pfifo::ChanInst::offset(chid)), pfifo::ChanInst::bound(i).raw());
    assert!(pfifo::ChanState::from_raw(h.bars.rd(pfifo::ChanState::offset(chid))).runnable());
    // A vGPU's runlist commit (here: one with no channel) keeps the host channel listed.
    let slice = h.pools.slice(0, 1);
    let n = h.runlist.commit(&h.bars, &h.w, h.bar3_mapped, RunlistPart { slice, channels: ChannelSet::default() }).unwrap();
    assert_eq!(n, 1, "only the host channel");
    let base = h.pools.vram_base;
    h.fill(base, MIB, 9);
    h.scrub(base, MIB).expect("scrub after a vGPU's runlist commit");
    assert!(h.is_zero(base, MIB));
    // Its GPFIFO progress is in its USERD page.
    assert_ne!(rd(userd + u64::from(userd::GP_GET)), 0);
    // vGPU channel ids are not the host's.
    assert_eq!(HostChannel::new(GUEST_CHANNELS - 1, h.pool.alloc(ctl::BYTES).unwrap(), h.bar3_mapped).err(), Some(ChannelError::NotHostChannel));
    assert_eq!(h.runlist.set_host_channel(&h.bars, &h.w, h.bar3_mapped, 5, true), Err(host_gpu::HostError::NotHostChannel));
}

#[test]
fn a_stopped_host_channel_times_out_and_is_restarted_by_the_next_submission() {
    let mut h = host(256);
    let chid = GUEST_CHANNELS + 1;
    let mut ch = HostChannel::new(chid, h.pool.alloc(ctl::BYTES).unwrap(), h.bar3_mapped).unwrap();
    ch.start(&h.bars).unwrap();
    h.runlist.set_host_channel(&h.bars, &h.w, h.bar3_mapped, chid, true).unwrap();
    // A method no class has: PBDMA ILLEGAL_MTHD stops the channel before its release.
    let sem = ch.semaphore();
    let release = |p: u32| {
        [
            pushbuf::incr(0, host::SEMAPHORE_A, 4),
            (sem >> 32) as u32,
            sem as u32,
            p,
            host::SEM_OP_RELEASE | host::SEMAPHORE_D_RELEASE_SIZE_4,
        ]
    };
    let bad = [&[pushbuf::incr(0, host::YIELD + 4, 1), 0][..], &release(ch.next_payload())[..]].concat();
    ch.submit(&h.bars, &h.w, &h.kicks, &bad).unwrap();
    assert_eq!(ch.wait(&h.bars, &h.w, 200_000_000), Err(ChannelError::Timeout));
    // Acknowledge what the error raised, as the host's interrupt handler does.
    host_gpu::service_interrupt(&h.bars);
    // The next submission restarts the channel (a kick, made under the GPU's kick lock)
    // and goes through.
    let kicks = h.kicks.count.get();
    ch.submit(&h.bars, &h.w, &h.kicks, &release(ch.next_payload())).unwrap();
    assert_eq!(h.kicks.count.get(), kicks + 1, "the restart's kick is made under the kick lock");
    ch.wait(&h.bars, &h.w, 5_000_000_000).expect("the restarted channel runs");
    // The scrubber's own channel was not disturbed.
    let base = h.pools.vram_base;
    h.fill(base, MIB, 5);
    h.scrub(base, MIB).unwrap();
    assert!(h.is_zero(base, MIB));
}

#[test]
fn the_pushbuffer_is_two_launches_at_most_and_rereads_the_zero_block() {
    let mut w = [0u32; scrub::ZERO_PUSH_WORDS];
    let z = 0x3_0000;
    let n = scrub::zero_push(&mut w, z, ZERO_BYTES, 0x1_2345_6000, 5 * ZERO_BYTES + 12, 0x4000, 7).unwrap();
    assert_eq!(n, scrub::ZERO_PUSH_WORDS);
    let sub = scrub::SUBC_COPY;
    assert_eq!(w[4], pushbuf::incr(sub, copy::SET_SEMAPHORE_A, 3));
    assert_eq!(&w[5..8], &[0, 0x4000, 7]);
    assert_eq!(w[8], pushbuf::incr(sub, copy::OFFSET_IN_UPPER, 8));
    // src, dst, PITCH_IN 0, PITCH_OUT = LINE_LENGTH = block, 5 lines.
    assert_eq!(&w[9..17], &[0, z as u32, 1, 0x2345_6000, 0, ZERO_BYTES as u32, ZERO_BYTES as u32, 5]);
    assert_eq!(w[18] & copy::LAUNCH_MULTI_LINE, copy::LAUNCH_MULTI_LINE);
    assert_eq!((w[18] >> copy::LAUNCH_SEMAPHORE_SHIFT) & copy::LAUNCH_SEMAPHORE_MASK, copy::SEMAPHORE_NONE);
    // The 12-byte remainder after the 5 blocks, with the release.
    assert_eq!(&w[20..28], &[0, z as u32, 1, 0x2345_6000 + 5 * ZERO_BYTES as u32, 12, 12, 12, 1]);
    assert_eq!(w[29] & copy::LAUNCH_MULTI_LINE, 0);
    assert_eq!((w[29] >> copy::LAUNCH_SEMAPHORE_SHIFT) & copy::LAUNCH_SEMAPHORE_MASK, copy::SEMAPHORE_ONE_WORD);
    // Whole blocks: one launch carries the release.
    let n = scrub::zero_push(&mut w, z, ZERO_BYTES, 0, 2 * ZERO_BYTES, 0x4000, 8).unwrap();
    assert_eq!(n, 19);
    assert_eq!((w[18] >> copy::LAUNCH_SEMAPHORE_SHIFT) & copy::LAUNCH_SEMAPHORE_MASK, copy::SEMAPHORE_ONE_WORD);
    // Nothing to do, no source line, too many lines, no room.
    assert_eq!(scrub::zero_push(&mut w, z, ZERO_BYTES, 0, 0, 0x4000, 9), None);
    assert_eq!(scrub::zero_push(&mut w, z, 0, 0, 4096, 0x4000, 9), None);
    assert_eq!(scrub::zero_push(&mut w, z, 4, 0, 4 << 32, 0x4000, 9), None);
    assert_eq!(scrub::zero_push(&mut w[..10], z, ZERO_BYTES, 0, 4096, 0x4000, 9), None);
}
