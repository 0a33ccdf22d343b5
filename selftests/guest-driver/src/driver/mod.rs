//! The GF100 driver: bring-up, memory, copies, launches and fences, with a Gdev-like API.
//!
//! Order and mechanisms follow nouveau's GF100 path (shared/docs/gf100-interface.md §15):
//! identify, PMC, PTIMER, VRAM size, MMU page size; the BAR3 VM built through PRAMIN, after
//! which every instance block and page table is written through BAR3; the BAR1 VM; PFIFO with
//! the USERD area mapped in BAR1; a channel (RAMFC, channel table, runlist); objects bound on
//! subchannels (compute 1, M2MF 2, copy 3 as in Gdev); kick and runlist removal on teardown.

pub mod chan;
pub mod hw;
pub mod vm;

use crate::alloc::RangeAlloc;
use crate::record::BarCount;
use crate::transport::{Bar, DmaBuf, IrqMode, Transport, PAGE};
use chan::{commit_runlist, Channel};
pub use hw::{HwError, Result};
use hw::{fail, Hw};
use std::time::{Duration, Instant};
use vm::{Access, Aper, Pool, Vm, BIG_PAGE, SMALL_PAGE};

use gpuvm_uapi::gf100::{
    class, compute, copy, host, inst, m2mf, mmu, pbus, pfb, pfifo, pgraph, pmc, pstraps, ptimer, report, userd,
};
use gpuvm_uapi::kernels;

/// nouveau's allocator keeps the first 256 KiB (VGA) and the last 1 MiB (VBIOS) of VRAM out.
const VRAM_RESERVED_LOW: u64 = 256 << 10;
const VRAM_RESERVED_HIGH: u64 = 1 << 20;
/// Instance memory pool (instance blocks, page tables, runlists), mapped at BAR3 VA 0.
const POOL_SIZE: u64 = 4 << 20;
/// Channel VM: Gdev's allocations start at 0x20000000. Big-page mappings use VA below
/// 16 GiB; 4 KiB mappings (host memory, small VRAM buffers) use the 16 MiB above it, where
/// the VM ends. The limit keeps the small-page table's reachable part at 4096 entries, so a
/// new channel zeroes 32 KiB instead of 256 KiB through (trapped) BAR3.
const CHAN_VA_START: u64 = 0x2000_0000;
const CHAN_SMALL_VA: u64 = 16 << 20;
const CHAN_VM_LIMIT: u64 = (16 << 30) + CHAN_SMALL_VA;
/// The 128 USERD pages (one per channel) live in VRAM and are mapped into BAR1.
const USERD_BYTES: u64 = pfifo::CHANNELS as u64 * userd::SIZE;
/// Subchannels as Gdev binds them.
pub const SUBC_COMPUTE: u32 = 1;
pub const SUBC_M2MF: u32 = 2;
pub const SUBC_COPY: u32 = 3;
/// Host-memory staging buffer for copies (two halves used alternately).
const STAGING_BYTES: usize = 4 << 20;
/// Copies up to this size go through BAR1 instead of the copy engine (Gdev's IORW limit).
pub const BAR1_COPY_LIMIT: usize = 0x400;
/// Kernel tags are uploaded at `id * CODE_SLOT` in the code region.
const CODE_SLOT: u64 = 0x100;
const CODE_BYTES: u64 = 0x4000;
/// Constant buffer 0 (kernel parameters).
const CB_BYTES: u64 = 0x1000;
/// Local memory for the compute object (the model does not use it; real hardware would).
const LOCAL_MEM_BYTES: u64 = 128 << 10;
/// Generic-address windows for local and shared memory (Mesa's choice).
const LOCAL_WINDOW: u32 = 0xff << 24;
const SHARED_WINDOW: u32 = 0xfe << 24;
/// Registers per thread declared for every launch.
const CTA_REGISTERS: u32 = 32;
/// How long a fence wait may take before it is an error.
const FENCE_TIMEOUT: Duration = Duration::from_secs(60);
/// Interrupt waits re-check the fence at least this often (poll fallback).
const IRQ_SLICE: Duration = Duration::from_millis(20);
/// PTIMER: aim for 1 ns per unit (31.25 MHz counter, as nouveau does).
const PTIMER_TARGET_KHZ: u32 = 1_000_000 / 32;
const CRYSTAL_27MHZ_KHZ: u32 = 27_000;
/// Which PBDMA each engine may use (nouveau: PGRAPH 0, PCOPY0 2, the rest 1).
const ENGINE_PBDMA: [u32; pfifo::ENG_SUBFIFO_MASK_COUNT as usize] = [0, 1, 1, 1, 2, 1];

/// Device memory: VRAM mapped into the channel VM.
#[derive(Debug)]
pub struct DevMem {
    pub vram: u64,
    pub size: u64,
    pub va: u64,
    alloc_size: u64,
    big: bool,
    /// BAR1 mapping (offset), made on first use of the BAR1 copy path.
    bar1: Option<u64>,
}

/// Host memory the GPU reaches by DMA, mapped into the channel VM.
pub struct HostMem {
    pub buf: DmaBuf,
    pub va: u64,
}

impl HostMem {
    pub fn as_slice(&self) -> &[u8] {
        self.buf.as_slice()
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.buf.as_mut_slice()
    }
}

/// How [`Gpu::open_opts`] sets up the driver's channel.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChannelOpts {
    /// Open the physical-copy gate in the channel's RAMFC (`ramfc::HCE_CTRL`), as a host
    /// driver does for its own channel: copy-engine physical addressing is then allowed
    /// natively. On a gpuvm vGPU the mediator keeps every guest channel's gate closed.
    pub phys_copy: bool,
}

/// Statistics next to the access counts.
#[derive(Default, Clone, Copy, Debug)]
pub struct Stats {
    pub irqs: u64,
    pub fence_polls: u64,
    pub ce_copies: u64,
    pub bar1_copies: u64,
    pub launches: u64,
}

/// What `close` hands back: the statistics and the final BAR access counts.
pub struct CloseReport {
    pub stats: Stats,
    pub counts: [BarCount; 3],
}

impl CloseReport {
    /// The statistics as JSON fields.
    pub fn stats_fields(&self) -> Vec<(String, String)> {
        let s = &self.stats;
        [("irqs", s.irqs), ("fence_polls", s.fence_polls), ("ce_copies", s.ce_copies), ("bar1_copies", s.bar1_copies), ("launches", s.launches)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

pub struct Gpu {
    hw: Hw,
    pool: Pool,
    vram_alloc: RangeAlloc,
    pub vram_size: u64,
    boot0: u32,
    bar3_vm: Vm,
    bar3_inst: u64,
    bar1_vm: Vm,
    bar1_inst: u64,
    userd_vram: u64,
    userd_bar1: u64,
    runlist: [u64; 2],
    runlist_cur: usize,
    vm: Vm,
    ch: Option<Channel>,
    fence: Option<HostMem>,
    fence_seq: u32,
    staging: Option<HostMem>,
    /// Fence sequence that last used each staging half.
    staging_busy: [u32; 2],
    code: Option<DevMem>,
    cb: Option<DevMem>,
    local: Option<DevMem>,
    pub irq: IrqMode,
    pub stats: Stats,
}

fn split(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

impl Gpu {
    /// Bring the GPU up and create one channel (chid `chid`). `use_irq` = false forces polled
    /// fence waits.
    pub fn open(t: Box<dyn Transport>, chid: u32, use_irq: bool) -> Result<Gpu> {
        Self::open_opts(t, chid, use_irq, ChannelOpts::default())
    }

    /// [`Gpu::open`] with channel options.
    pub fn open_opts(t: Box<dyn Transport>, chid: u32, use_irq: bool, opts: ChannelOpts) -> Result<Gpu> {
        let mut hw = Hw::new(t);
        // Identify (§3.1).
        if hw.rd(pmc::ENDIAN) != 0 {
            hw.wr(pmc::ENDIAN, pmc::ENDIAN_BIG);
        }
        let boot0 = pmc::Boot0::from_raw(hw.rd(pmc::Boot0::OFFSET));
        if boot0.chipset() != pmc::CHIPSET_GF100 {
            return fail(format!("not a GF100: BOOT_0 = {:#010x}", boot0.raw()));
        }
        let straps = hw.rd(pstraps::STRAPS);
        // PMC: everything on; interrupts of the units we use pass; host line enabled.
        hw.wr(pmc::ENABLE, pmc::ENABLE_ALL);
        hw.wr(pmc::INTR_MASK_HOST, pmc::INTR_PFIFO | pmc::INTR_PGRAPH | pmc::INTR_PCOPY0);
        hw.wr(pmc::INTR_EN_HOST, 0);
        // PTIMER.
        Self::ptimer_init(&mut hw, straps);
        // VRAM size (§6.1, modern nouveau).
        let fbps = hw.rd(pfb::FBP_COUNT).min(pfb::MAX_PARTS);
        let disabled = hw.rd(pfb::FBP_DISABLED_MASK);
        let vram_mib: u64 = (0..fbps).filter(|f| disabled & (1 << f) == 0).map(|f| hw.rd(pfb::part_mib(f)) as u64).sum();
        let vram_size = vram_mib << 20;
        if vram_size < POOL_SIZE + (64 << 20) {
            return fail(format!("VRAM too small: {vram_mib} MiB"));
        }
        // 128 KiB big pages.
        hw.mask(mmu::CTRL, mmu::CTRL_BIG_PAGE_64K, 0);

        // BAR3 VM, built through PRAMIN: the pool mapped linearly at BAR3 VA 0.
        let mut pool = Pool::new(VRAM_RESERVED_LOW, POOL_SIZE);
        let bar3_inst = pool.alloc(inst::SIZE, inst::SIZE)?;
        let mut bar3_vm = Vm::new(&mut hw, &mut pool, Access::Pramin, POOL_SIZE, 0, 0, true)?;
        let pool_pages: Vec<u64> = (0..POOL_SIZE / SMALL_PAGE).map(|i| VRAM_RESERVED_LOW + i * SMALL_PAGE).collect();
        bar3_vm.map(&mut hw, &mut pool, 0, &pool_pages, Aper::Vram, false)?;
        bar3_vm.bind_inst(&mut hw, &pool, Access::Pramin, bar3_inst);
        hw.wr(pbus::BAR3_INST, pbus::BarInst::vm(bar3_inst).raw());
        bar3_vm.flush(&mut hw)?;

        // BAR1 VM (big pages only: 128 KiB granules), written through BAR3 from now on.
        let bar1_size = hw.transport().bar_size(Bar::Bar1);
        let bar1_inst = pool.alloc(inst::SIZE, inst::SIZE)?;
        let mut bar1_vm = Vm::new(&mut hw, &mut pool, Access::Bar3, bar1_size, 0, 0, true)?;
        bar1_vm.bind_inst(&mut hw, &pool, Access::Bar3, bar1_inst);
        hw.wr(pbus::BAR1_INST, pbus::BarInst::vm(bar1_inst).raw());

        let mut vram_alloc = RangeAlloc::new(VRAM_RESERVED_LOW + POOL_SIZE, vram_size - VRAM_RESERVED_HIGH);
        // USERD area in VRAM, mapped at the start of BAR1.
        let userd_vram = vram_alloc.alloc(USERD_BYTES, BIG_PAGE).ok_or_else(|| HwError("no VRAM for USERD".into()))?;
        let userd_bar1 = bar1_vm.alloc_va(USERD_BYTES, true).unwrap();
        let pages: Vec<u64> = (0..USERD_BYTES / BIG_PAGE).map(|i| userd_vram + i * BIG_PAGE).collect();
        bar1_vm.map(&mut hw, &mut pool, userd_bar1, &pages, Aper::Vram, true)?;
        bar1_vm.flush(&mut hw)?;

        // PFIFO (§8.9).
        hw.mask(pmc::ENABLE, pmc::ENABLE_PFIFO, 0);
        hw.mask(pmc::ENABLE, 0, pmc::ENABLE_PFIFO);
        hw.wr(pfifo::SUBFIFO_ENABLE, u32::MAX);
        let n = hw.rd(pfifo::SUBFIFO_ENABLE).count_ones();
        hw.wr(pmc::SPOON_ENABLE, (1 << n) - 1);
        hw.wr(pfifo::SUBFIFO_ENABLE, (1 << n) - 1);
        if n >= pfifo::PBDMA_COUNT {
            for (e, p) in ENGINE_PBDMA.iter().enumerate() {
                hw.wr(pfifo::eng_subfifo_mask(e as u32), !(1 << p));
            }
        }
        for i in 0..n {
            let b = pfifo::pbdma_base(i);
            hw.wr(b + pfifo::PBDMA_INTR, u32::MAX);
            hw.wr(b + pfifo::PBDMA_INTR_EN, u32::MAX);
        }
        hw.mask(pfifo::CTRL, 0, pfifo::CTRL_ENABLE);
        hw.wr(pfifo::UserdPollBase::OFFSET, pfifo::UserdPollBase::default().with_bar1_va(userd_bar1).with_enable(true).raw());
        hw.wr(pfifo::INTR_RUNLIST_STATUS, u32::MAX);
        hw.wr(pfifo::INTR, u32::MAX);
        hw.wr(pfifo::INTR_EN, u32::MAX);
        hw.wr(pfifo::ENGINE_INTR_EN, pfifo::ENGINE_INTR_NOTIFY);
        let runlist = [pool.alloc(PAGE as u64, PAGE as u64)?, pool.alloc(PAGE as u64, PAGE as u64)?];

        // The channel VM.
        let vm = Vm::new(&mut hw, &mut pool, Access::Bar3, CHAN_VM_LIMIT, CHAN_VA_START, CHAN_SMALL_VA, false)?;
        let mut g = Gpu {
            hw,
            pool,
            vram_alloc,
            vram_size,
            boot0: boot0.raw(),
            bar3_vm,
            bar3_inst,
            bar1_vm,
            bar1_inst,
            userd_vram,
            userd_bar1,
            runlist,
            runlist_cur: 0,
            vm,
            ch: None,
            fence: None,
            fence_seq: 0,
            staging: None,
            staging_busy: [0; 2],
            code: None,
            cb: None,
            local: None,
            irq: IrqMode::None,
            stats: Stats::default(),
        };
        g.channel_new(chid, opts)?;
        g.objects_init()?;
        if use_irq {
            g.irq = g.hw.transport().irq_enable();
            if g.irq != IrqMode::None {
                g.hw.wr(pmc::INTR_EN_HOST, pmc::INTR_EN_HW);
            }
        }
        Ok(g)
    }

    /// nouveau's PTIMER programming (a 31.25 MHz count, i.e. 1 ns per unit of the 64-bit time).
    fn ptimer_init(hw: &mut Hw, straps: u32) {
        let f = match straps & pstraps::CRYSTAL_MASK {
            pstraps::CRYSTAL_27MHZ => CRYSTAL_27MHZ_KHZ,
            _ => CRYSTAL_27MHZ_KHZ,
        };
        let (mut m, mut n, mut d) = (1u32, f, PTIMER_TARGET_KHZ);
        while n < d * 2 {
            n += n / m;
            m += 1;
        }
        for p in [5, 2] {
            while n % p == 0 && d % p == 0 {
                n /= p;
                d /= p;
            }
        }
        while n > 0xffff || d > 0xffff {
            n >>= 1;
            d >>= 1;
        }
        hw.wr(ptimer::CLOCK_SOURCE, m - 1);
        hw.wr(ptimer::CLOCK_DIV, n);
        hw.wr(ptimer::CLOCK_MUL, d);
    }

    pub fn describe(&mut self) -> String {
        format!("{} boot0={:#010x} vram={}MiB irq={:?}", self.hw.transport().describe(), self.boot0, self.vram_size >> 20, self.irq)
    }

    pub fn counts(&self) -> [BarCount; 3] {
        self.hw.counts()
    }

    /// PTIMER time in ns (hi/lo/hi protocol).
    pub fn gpu_time(&mut self) -> u64 {
        loop {
            let hi = self.hw.rd(ptimer::TIME_HIGH);
            let lo = self.hw.rd(ptimer::TIME_LOW);
            if hi == self.hw.rd(ptimer::TIME_HIGH) {
                return (hi as u64) << 32 | lo as u64;
            }
        }
    }

    fn ch(&mut self) -> (&mut Hw, &mut Channel) {
        (&mut self.hw, self.ch.as_mut().expect("channel"))
    }

    fn channel_new(&mut self, chid: u32, opts: ChannelOpts) -> Result<()> {
        if chid >= pfifo::CHANNELS {
            return fail(format!("chid {chid} out of range"));
        }
        let inst_addr = self.pool.alloc(inst::SIZE, inst::SIZE)?;
        vm::zero(&mut self.hw, &self.pool, Access::Bar3, inst_addr, inst::SIZE);
        let gp = self.hw.transport().dma_alloc(chan::GP_ENTRIES as usize * gpuvm_uapi::gf100::gpfifo::ENTRY_SIZE as usize).map_err(io_err)?;
        let pb = self.hw.transport().dma_alloc(chan::PB_BYTES).map_err(io_err)?;
        let gp_va = self.map_sys(&gp)?;
        let pb_va = self.map_sys(&pb)?;
        self.vm.flush(&mut self.hw)?;
        self.vm.bind_inst(&mut self.hw, &self.pool, Access::Bar3, inst_addr);
        let ch = Channel::new(chid, inst_addr, self.userd_bar1 + chid as u64 * pfifo::USERD_POLL_STRIDE, gp, gp_va, pb, pb_va);
        ch.write_ramfc(&mut self.hw, &self.pool, self.userd_vram + chid as u64 * userd::SIZE, opts.phys_copy);
        ch.clear_userd(&mut self.hw);
        self.hw.bar_flush()?;
        ch.enable(&mut self.hw);
        self.ch = Some(ch);
        self.update_runlist(true)
    }

    fn update_runlist(&mut self, with_channel: bool) -> Result<()> {
        self.runlist_cur ^= 1;
        let chids: Vec<u32> = self.ch.iter().filter(|_| with_channel).map(|c| c.chid).collect();
        commit_runlist(&mut self.hw, &self.pool, self.runlist[self.runlist_cur], &chids)
    }

    /// Map host memory into the channel VM (4 KiB pages); returns its VA. Caller flushes.
    fn map_sys(&mut self, b: &DmaBuf) -> Result<u64> {
        let va = self.vm.alloc_va(b.len() as u64, false).ok_or_else(|| HwError("channel VA exhausted".into()))?;
        self.vm.map(&mut self.hw, &mut self.pool, va, b.pages(), Aper::Sys, false)?;
        Ok(va)
    }

    /// Bind the objects and do the one-time compute setup, upload the kernel tags.
    fn objects_init(&mut self) -> Result<()> {
        let fence = self.malloc_host(PAGE)?;
        self.fence = Some(fence);
        self.staging = Some(self.malloc_host(STAGING_BYTES)?);
        let local = self.malloc(LOCAL_MEM_BYTES)?;
        let code = self.malloc(CODE_BYTES)?;
        let cb = self.malloc(CB_BYTES)?;
        let (hw, ch) = self.ch();
        // Gdev starts a channel with 32 NOPs.
        ch.mthd(hw, 0, host::NOP, &[0; 32], true)?;
        ch.mthd(hw, SUBC_COMPUTE, host::SET_OBJECT, &[class::set_object(class::COMPUTE, pfifo::ENGINE_PGRAPH)], false)?;
        ch.mthd(hw, SUBC_M2MF, host::SET_OBJECT, &[class::set_object(class::M2MF, pfifo::ENGINE_PGRAPH)], false)?;
        ch.mthd(hw, SUBC_COPY, host::SET_OBJECT, &[class::set_object(class::COPY0, pfifo::ENGINE_PCOPY0)], false)?;
        ch.mthd(hw, SUBC_COPY, copy::SET_APPLICATION_ID, &[copy::APPLICATION_ID_NORMAL], false)?;
        ch.mthd(hw, SUBC_COPY, copy::ADDRESSING_MODE, &[0], false)?;
        // Compute one-time state: local memory, windows, code region.
        let (lh, ll) = split(local.va);
        ch.mthd(hw, SUBC_COMPUTE, compute::SET_SHADER_LOCAL_MEMORY_A, &[lh, ll, 0, LOCAL_MEM_BYTES as u32], false)?;
        ch.mthd(hw, SUBC_COMPUTE, compute::SET_SHADER_LOCAL_MEMORY_WINDOW, &[LOCAL_WINDOW], false)?;
        ch.mthd(hw, SUBC_COMPUTE, compute::SET_SHADER_SHARED_MEMORY_WINDOW, &[SHARED_WINDOW], false)?;
        let (chh, chl) = split(code.va);
        ch.mthd(hw, SUBC_COMPUTE, compute::SET_PROGRAM_REGION_A, &[chh, chl], false)?;
        // Kernel tags into the code region, by M2MF inline upload.
        for id in kernels::KERNEL_FILL..=kernels::KERNEL_NEEDLE_2 {
            let tag = [kernels::TAG_MAGIC, id, kernels::TAG_ABI_VERSION, 0];
            Self::m2mf_inline(hw, ch, code.va + id as u64 * CODE_SLOT, &tag)?;
        }
        ch.mthd(hw, SUBC_COMPUTE, compute::INVALIDATE_SHADER_CACHES_NO_WFI, &[compute::INVALIDATE_INSTRUCTION], false)?;
        self.local = Some(local);
        self.code = Some(code);
        self.cb = Some(cb);
        self.sync()
    }

    /// M2MF inline upload of `words` to `va` (Mesa's nvc0_m2mf_push_linear order).
    fn m2mf_inline(hw: &mut Hw, ch: &mut Channel, va: u64, words: &[u32]) -> Result<()> {
        let (h, l) = split(va);
        ch.reserve(hw, 8 + words.len())?;
        ch.mthd(hw, SUBC_M2MF, m2mf::OFFSET_OUT_UPPER, &[h, l], false)?;
        ch.mthd(hw, SUBC_M2MF, m2mf::LINE_LENGTH_IN, &[words.len() as u32 * 4, 1], false)?;
        ch.mthd(hw, SUBC_M2MF, m2mf::LAUNCH_DMA, &[m2mf::LAUNCH_INLINE_PITCH], false)?;
        ch.mthd(hw, SUBC_M2MF, m2mf::LOAD_INLINE_DATA, words, true)
    }

    // ---- memory ------------------------------------------------------------------------

    /// Allocate VRAM and map it into the channel VM. Buffers of at least one big page get
    /// 128 KiB pages.
    pub fn malloc(&mut self, size: u64) -> Result<DevMem> {
        let big = size >= BIG_PAGE;
        let page = if big { BIG_PAGE } else { SMALL_PAGE };
        let alloc_size = size.max(1).next_multiple_of(page);
        let vram = self.vram_alloc.alloc(alloc_size, page).ok_or_else(|| HwError(format!("out of VRAM ({size} bytes)")))?;
        let va = match self.vm.alloc_va(alloc_size, big) {
            Some(v) => v,
            None => {
                self.vram_alloc.free(vram, alloc_size);
                return fail("channel VA exhausted");
            }
        };
        let pages: Vec<u64> = (0..alloc_size / page).map(|i| vram + i * page).collect();
        self.vm.map(&mut self.hw, &mut self.pool, va, &pages, Aper::Vram, big)?;
        self.vm.flush(&mut self.hw)?;
        Ok(DevMem { vram, size, va, alloc_size, big, bar1: None })
    }

    pub fn free(&mut self, m: DevMem) -> Result<()> {
        // Work still queued may use it.
        self.sync()?;
        let page = if m.big { BIG_PAGE } else { SMALL_PAGE };
        self.vm.unmap(&mut self.hw, &mut self.pool, m.va, (m.alloc_size / page) as usize, m.big)?;
        self.vm.flush(&mut self.hw)?;
        if let Some(b1) = m.bar1 {
            let (start, len) = Self::bar1_span(&m);
            self.bar1_vm.unmap(&mut self.hw, &mut self.pool, b1, (len / BIG_PAGE) as usize, true)?;
            self.bar1_vm.flush(&mut self.hw)?;
            let _ = start;
            self.bar1_vm.free_va(b1, len, true);
        }
        self.vm.free_va(m.va, m.alloc_size, m.big);
        self.vram_alloc.free(m.vram, m.alloc_size);
        Ok(())
    }

    /// Allocate host memory for DMA and map it into the channel VM.
    pub fn malloc_host(&mut self, size: usize) -> Result<HostMem> {
        let buf = self.hw.transport().dma_alloc(size).map_err(io_err)?;
        let va = self.map_sys(&buf)?;
        self.vm.flush(&mut self.hw)?;
        Ok(HostMem { buf, va })
    }

    pub fn free_host(&mut self, m: HostMem) -> Result<()> {
        self.sync()?;
        self.vm.unmap(&mut self.hw, &mut self.pool, m.va, m.buf.len() / PAGE, false)?;
        self.vm.flush(&mut self.hw)?;
        self.vm.free_va(m.va, m.buf.len() as u64, false);
        self.hw.transport().dma_free(m.buf);
        Ok(())
    }

    // ---- copies ------------------------------------------------------------------------

    /// Copy engine: `len` bytes from `src` to `dst` (channel VAs), one line per launch.
    pub fn ce_copy(&mut self, dst: u64, src: u64, len: u64) -> Result<()> {
        let (hw, ch) = self.ch();
        let mut done = 0;
        while done < len {
            let n = (len - done).min(u32::MAX as u64 & !(PAGE as u64 - 1));
            let (ih, il) = split(src + done);
            let (oh, ol) = split(dst + done);
            ch.reserve(hw, 12)?;
            ch.mthd(hw, SUBC_COPY, copy::OFFSET_IN_UPPER, &[ih, il, oh, ol, n as u32, n as u32, n as u32, 1], false)?;
            let launch = copy::TRANSFER_NON_PIPELINED << copy::LAUNCH_TRANSFER_SHIFT
                | copy::LAUNCH_FLUSH_ENABLE
                | copy::LAUNCH_SRC_PITCH
                | copy::LAUNCH_DST_PITCH;
            ch.mthd(hw, SUBC_COPY, copy::LAUNCH_DMA, &[launch], false)?;
            done += n;
        }
        self.stats.ce_copies += 1;
        Ok(())
    }

    /// The BAR1 window over a buffer's big pages: (first big page of the buffer, span).
    fn bar1_span(m: &DevMem) -> (u64, u64) {
        let start = m.vram & !(BIG_PAGE - 1);
        let end = (m.vram + m.alloc_size).next_multiple_of(BIG_PAGE);
        (start, end - start)
    }

    /// BAR1 offset of byte `off` of `m`, mapping the buffer into BAR1 on first use.
    fn bar1_of(&mut self, m: &mut DevMem, off: u64) -> Result<u64> {
        let (start, len) = Self::bar1_span(m);
        if m.bar1.is_none() {
            let b1 = self.bar1_vm.alloc_va(len, true).ok_or_else(|| HwError("BAR1 space exhausted".into()))?;
            let pages: Vec<u64> = (0..len / BIG_PAGE).map(|i| start + i * BIG_PAGE).collect();
            self.bar1_vm.map(&mut self.hw, &mut self.pool, b1, &pages, Aper::Vram, true)?;
            self.bar1_vm.flush(&mut self.hw)?;
            m.bar1 = Some(b1);
        }
        Ok(m.bar1.unwrap() + (m.vram - start) + off)
    }

    /// Host → device: BAR1 for small aligned copies, else through the staging buffer and the
    /// copy engine. Returns when the data is in VRAM.
    pub fn memcpy_htod(&mut self, dst: &mut DevMem, off: u64, src: &[u8]) -> Result<()> {
        assert!(off + src.len() as u64 <= dst.size);
        if src.len() <= BAR1_COPY_LIMIT && src.len() % 4 == 0 && off % 4 == 0 {
            self.sync()?;
            let b = self.bar1_of(dst, off)?;
            self.hw.bar_write_block(Bar::Bar1, b, src);
            self.hw.bar_flush()?;
            self.stats.bar1_copies += 1;
            return Ok(());
        }
        let half = STAGING_BYTES / 2;
        for (i, chunk) in src.chunks(half).enumerate() {
            let h = i % 2;
            let busy = self.staging_busy[h];
            self.fence_wait(busy)?;
            let st = self.staging.as_mut().unwrap();
            st.as_mut_slice()[h * half..h * half + chunk.len()].copy_from_slice(chunk);
            let sva = st.va + (h * half) as u64;
            self.ce_copy(dst.va + off + (i * half) as u64, sva, chunk.len() as u64)?;
            self.staging_busy[h] = self.fence_emit()?;
        }
        self.fence_wait(self.fence_seq)
    }

    /// Device → host, the same two paths.
    pub fn memcpy_dtoh(&mut self, dst: &mut [u8], src: &mut DevMem, off: u64) -> Result<()> {
        assert!(off + dst.len() as u64 <= src.size);
        if dst.len() <= BAR1_COPY_LIMIT && dst.len() % 4 == 0 && off % 4 == 0 {
            self.sync()?;
            let b = self.bar1_of(src, off)?;
            self.hw.bar_read_block(Bar::Bar1, b, dst);
            self.stats.bar1_copies += 1;
            return Ok(());
        }
        let half = STAGING_BYTES / 2;
        let total = dst.len();
        let n = total.div_ceil(half);
        // Pipelined: the copy of chunk i+1 runs while chunk i is read out.
        let issue = |g: &mut Gpu, i: usize| -> Result<u32> {
            let len = (total - i * half).min(half) as u64;
            let sva = g.staging.as_ref().unwrap().va + ((i % 2) * half) as u64;
            g.ce_copy(sva, src.va + off + (i * half) as u64, len)?;
            g.fence_emit()
        };
        let mut pending = issue(self, 0)?;
        for i in 0..n {
            let next = if i + 1 < n { Some(issue(self, i + 1)?) } else { None };
            self.fence_wait(pending)?;
            let lo = i * half;
            let hi = (lo + half).min(dst.len());
            let h = (i % 2) * half;
            dst[lo..hi].copy_from_slice(&self.staging.as_ref().unwrap().as_slice()[h..h + hi - lo]);
            if let Some(s) = next {
                pending = s;
            }
        }
        Ok(())
    }

    /// Device → device copy by the copy engine (asynchronous: ordered in the channel).
    pub fn memcpy_dtod(&mut self, dst: &DevMem, src: &DevMem, len: u64) -> Result<()> {
        assert!(len <= dst.size && len <= src.size);
        self.ce_copy(dst.va, src.va, len)
    }

    /// Host DMA buffer ↔ device by the copy engine, no staging (asynchronous).
    pub fn copy_host_to_dev(&mut self, dst: &DevMem, src: &HostMem, len: u64) -> Result<()> {
        self.ce_copy(dst.va, src.va, len)
    }
    pub fn copy_dev_to_host(&mut self, dst: &HostMem, src: &DevMem, len: u64) -> Result<()> {
        self.ce_copy(dst.va, src.va, len)
    }

    // ---- launches ----------------------------------------------------------------------

    /// Launch built-in kernel `id` (uapi::kernels) with `params` (its PARAM layout) on a grid of
    /// `grid` CTAs of `block` threads. Asynchronous: follow with a fence to wait.
    pub fn launch(&mut self, id: u32, grid: [u32; 3], block: [u32; 3], params: &[u8]) -> Result<()> {
        assert!(params.len() % 4 == 0);
        let code_off = id as u64 * CODE_SLOT;
        let (cbh, cbl) = split(self.cb.as_ref().unwrap().va);
        let mut c0 = vec![SHARED_WINDOW, LOCAL_WINDOW, block[0], block[1], block[2], grid[0], grid[1], grid[2]];
        debug_assert_eq!(c0.len() * 4, kernels::PARAM_BASE as usize);
        c0.extend(params.chunks_exact(4).map(|w| u32::from_le_bytes(w.try_into().unwrap())));
        let threads = block[0] * block[1] * block[2];
        let (hw, ch) = self.ch();
        ch.reserve(hw, 64 + c0.len())?;
        let s = SUBC_COMPUTE;
        ch.mthd(hw, s, compute::SET_CTA_PROGRAM_START, &[code_off as u32], false)?;
        ch.mthd(hw, s, compute::SET_CONSTANT_BUFFER_SELECTOR_A, &[CB_BYTES as u32, cbh, cbl], false)?;
        ch.mthd(hw, s, compute::BIND_CONSTANT_BUFFER, &[kernels::PARAM_CB_SLOT << compute::BIND_SLOT_SHIFT | compute::BIND_VALID], false)?;
        ch.mthd(hw, s, compute::LOAD_CONSTANT_BUFFER_OFFSET, &[0], false)?;
        ch.mthd(hw, s, compute::LOAD_CONSTANT_BUFFER, &c0, true)?;
        ch.mthd(hw, s, compute::INVALIDATE_SHADER_CACHES_NO_WFI, &[compute::INVALIDATE_CONSTANT], false)?;
        ch.mthd(hw, s, compute::SET_CTA_RASTER_SIZE_A, &[grid[1] << 16 | grid[0], grid[2]], false)?;
        ch.mthd(hw, s, compute::SET_CTA_THREAD_DIMENSION_A, &[block[1] << 16 | block[0], block[2]], false)?;
        ch.mthd(hw, s, compute::SET_CTA_THREAD_COUNT, &[threads], false)?;
        ch.mthd(hw, s, compute::SET_CTA_BARRIER_COUNT, &[1], false)?;
        ch.mthd(hw, s, compute::SET_CTA_REGISTER_COUNT, &[CTA_REGISTERS], false)?;
        ch.mthd(hw, s, compute::SET_GRID_PARAM, &[1], false)?;
        ch.mthd(hw, s, compute::SET_LAUNCH_ID, &[0], false)?;
        ch.mthd(hw, s, compute::INVALIDATE_SHADER_CACHES_NO_WFI, &[compute::INVALIDATE_GLOBAL_DATA | compute::INVALIDATE_UNIFORM], false)?;
        ch.mthd(hw, s, compute::BEGIN_GRID, &[0], false)?;
        ch.mthd(hw, s, compute::SET_LAUNCH_SIZE, &[0], false)?;
        ch.mthd(hw, s, compute::LAUNCH, &[compute::LAUNCH_VALUE], false)?;
        ch.mthd(hw, s, compute::END_GRID, &[0], false)?;
        ch.mthd(hw, s, compute::WAIT_REF_COUNT, &[1], false)?;
        self.stats.launches += 1;
        Ok(())
    }

    // ---- fences ------------------------------------------------------------------------

    /// Queue a fence (host semaphore release + non-stall interrupt) and submit; returns its
    /// sequence number.
    pub fn fence_emit(&mut self) -> Result<u32> {
        self.fence_seq = self.fence_seq.wrapping_add(1);
        let seq = self.fence_seq;
        let (fh, fl) = split(self.fence.as_ref().unwrap().va);
        let (hw, ch) = self.ch();
        ch.reserve(hw, 8)?;
        ch.mthd(hw, 0, host::SEMAPHORE_A, &[fh, fl, seq, host::SEMAPHORE_D_FENCE_RELEASE], false)?;
        ch.mthd(hw, 0, host::NON_STALL_INTERRUPT, &[0], false)?;
        ch.kick(hw)?;
        Ok(seq)
    }

    /// Whether fence `seq` has completed (no waiting).
    pub fn fence_done(&self, seq: u32) -> bool {
        let cur = self.fence.as_ref().unwrap().buf.read32_volatile(report::PAYLOAD as usize);
        cur.wrapping_sub(seq) as i32 >= 0
    }

    /// Wait for fence `seq`: interrupt-driven when interrupts work, polling otherwise (and
    /// always re-checking memory, so a lost interrupt only costs a slice).
    pub fn fence_wait(&mut self, seq: u32) -> Result<()> {
        let start = Instant::now();
        while !self.fence_done(seq) {
            if start.elapsed() > FENCE_TIMEOUT {
                return fail(format!("fence {seq} timed out ({})", self.diagnose()));
            }
            if self.irq != IrqMode::None {
                if self.hw.transport().irq_wait(IRQ_SLICE) {
                    self.stats.irqs += 1;
                    self.service_irq()?;
                } else {
                    self.check_errors()?;
                }
            } else {
                self.stats.fence_polls += 1;
                self.hw.transport().pump();
                if self.stats.fence_polls % 4096 == 0 {
                    self.check_errors()?;
                }
                std::thread::yield_now();
            }
        }
        Ok(())
    }

    /// Takes an interrupt that may still be pending, waiting up to `wait` for it (counted in
    /// `irqs` and serviced as in [`Self::fence_wait`]); whether one came. A fence found done
    /// at its first look never waits, so a test about interrupt delivery asks here: the
    /// vGPU's MSI for that fence is raised whether or not the driver was waiting for it.
    pub fn irq_take(&mut self, wait: std::time::Duration) -> Result<bool> {
        if self.irq == IrqMode::None || !self.hw.transport().irq_wait(wait) {
            return Ok(false);
        }
        self.stats.irqs += 1;
        self.service_irq()?;
        Ok(true)
    }

    /// Submit everything and wait for the channel to finish it.
    pub fn sync(&mut self) -> Result<()> {
        let s = self.fence_emit()?;
        self.fence_wait(s)
    }

    /// Read and acknowledge the interrupt causes; error causes become an Err.
    fn service_irq(&mut self) -> Result<()> {
        let r = self.check_errors();
        self.hw.transport().irq_rearm();
        if self.irq == IrqMode::Msi {
            self.hw.wr(gpuvm_uapi::gf100::pci::BAR0_MSI_REARM, 0);
        }
        r
    }

    fn check_errors(&mut self) -> Result<()> {
        let intr = self.hw.rd(pmc::INTR_HOST);
        if intr & pmc::INTR_PFIFO != 0 {
            let f = self.hw.rd(pfifo::INTR);
            if f & pfifo::INTR_ENGINE != 0 {
                let n = self.hw.rd(pfifo::engine_intr(0));
                self.hw.wr(pfifo::engine_intr(0), n);
                self.hw.wr(pfifo::INTR, pfifo::INTR_ENGINE);
            }
            if f & pfifo::INTR_RUNLIST != 0 {
                // Runlist update completion: informational.
                self.hw.wr(pfifo::INTR_RUNLIST_STATUS, pfifo::INTR_RUNLIST_DONE);
                self.hw.wr(pfifo::INTR, pfifo::INTR_RUNLIST);
            }
            if f & !(pfifo::INTR_ENGINE | pfifo::INTR_RUNLIST) != 0 {
                return fail(format!("PFIFO error interrupt {f:#010x} ({})", self.diagnose()));
            }
        }
        if intr & pmc::INTR_PGRAPH != 0 {
            let g = self.hw.rd(pgraph::INTR);
            if g & !pgraph::INTR_NOTIFY != 0 {
                let code = self.hw.rd(pgraph::DATA_ERROR_CODE);
                let m = self.hw.rd(pgraph::TRAPPED_ADDR);
                return fail(format!("PGRAPH error interrupt {g:#010x} code {code:#x} mthd {m:#x}"));
            }
            self.hw.wr(pgraph::INTR, g);
        }
        Ok(())
    }

    /// A one-line account of PFIFO's error state, for error messages.
    fn diagnose(&mut self) -> String {
        let f = self.hw.rd(pfifo::INTR);
        let mut s = format!("PFIFO INTR {f:#010x}");
        if f & pfifo::INTR_VM_FAULT != 0 {
            let units = self.hw.rd(pfifo::VM_FAULT_UNITS);
            for u in (0..pfifo::VM_FAULT_UNITS_MAX).filter(|u| units & (1 << u) != 0) {
                let lo = pfifo::VmFaultAddrLo::from_raw(self.hw.rd(pfifo::VmFaultAddrLo::offset(u)));
                let hi = pfifo::VmFaultAddrHi::from_raw(self.hw.rd(pfifo::VmFaultAddrHi::offset(u)));
                let info = pfifo::VmFaultInfo::from_raw(self.hw.rd(pfifo::VmFaultInfo::offset(u)));
                s += &format!("; VM fault unit {u:#x} addr {:#x} info {:#x}", hi.va() | lo.va(), info.raw());
            }
        }
        if f & pfifo::INTR_PBDMA != 0 {
            let units = self.hw.rd(pfifo::PBDMA_INTR_UNITS);
            for i in (0..pfifo::PBDMA_COUNT).filter(|i| units & (1 << i) != 0) {
                let b = pfifo::pbdma_base(i);
                let pi = self.hw.rd(b + pfifo::PBDMA_INTR);
                let m = self.hw.rd(b + pfifo::PBDMA_METHOD);
                let d = self.hw.rd(b + pfifo::PBDMA_DATA);
                s += &format!("; PBDMA{i} intr {pi:#x} method {m:#x} data {d:#x}");
            }
        }
        if f & pfifo::INTR_SCHED_ERROR != 0 {
            s += &format!("; sched error {:#x}", self.hw.rd(pfifo::SCHED_ERROR));
        }
        if f & pfifo::INTR_CHAN_TABLE_ERROR != 0 {
            s += &format!("; chan table error {:#x}", self.hw.rd(pfifo::CHAN_TABLE_ERROR));
        }
        s
    }

    // ---- test hooks (gpuvm-hostile only) -------------------------------------------------
    //
    // Raw access for the hostile-guest tests: they bypass the driver's own bookkeeping on
    // purpose (arbitrary PTEs, arbitrary runlists). A normal driver never calls these.

    /// Test hook: the register and BAR access under the driver (counted like the driver's).
    pub fn raw_hw(&mut self) -> &mut Hw {
        &mut self.hw
    }

    /// Test hook: the channel's id and the VRAM address of its instance block.
    pub fn raw_channel(&self) -> (u32, u64) {
        self.ch.as_ref().map(|c| (c.chid, c.inst)).expect("channel")
    }

    /// Test hook: the channel's GP_PUT as last submitted.
    pub fn raw_gp_put(&self) -> u32 {
        self.ch.as_ref().map(|c| c.gp_put()).expect("channel")
    }

    /// Test hook: push one method packet on the channel and submit it (no fence).
    pub fn raw_submit(&mut self, subc: u32, method: u32, data: &[u32]) -> Result<()> {
        let (hw, ch) = self.ch();
        ch.mthd(hw, subc, method, data, false)?;
        ch.kick(hw)
    }

    /// Test hook: the BAR1 offset of the channel's USERD page.
    pub fn raw_userd_bar1(&self) -> u64 {
        self.ch.as_ref().map(|c| c.userd_bar1).expect("channel")
    }

    /// Test hook: ring the channel's doorbell again with its current GP_PUT.
    pub fn raw_doorbell(&mut self) {
        let (hw, ch) = self.ch();
        ch.ring(hw);
    }

    /// Test hook: map `pages` (4 KiB page addresses, taken as given: no check that they are
    /// the driver's) into the channel VM with aperture `aper`, flush, and return the VA.
    pub fn raw_map(&mut self, pages: &[u64], aper: Aper) -> Result<u64> {
        let len = pages.len() as u64 * SMALL_PAGE;
        let va = self.vm.alloc_va(len, false).ok_or_else(|| HwError("channel VA exhausted".into()))?;
        self.vm.map(&mut self.hw, &mut self.pool, va, pages, aper, false)?;
        self.vm.flush(&mut self.hw)?;
        Ok(va)
    }

    /// Test hook: the channel VM's small page at `va` is pointed at `page` (aperture `aper`)
    /// by a rewrite of its PTE, then the VM's TLB is flushed: what a driver moving a buffer
    /// under a mapped VA does.
    pub fn raw_remap(&mut self, va: u64, page: u64, aper: Aper) -> Result<()> {
        use gpuvm_uapi::gf100::vm as hwvm;
        let pte_aper = match aper {
            Aper::Vram => hwvm::PTE_APER_VRAM,
            Aper::Sys => hwvm::PTE_APER_SYS_COHERENT,
        };
        self.vm.raw_pte(&mut self.hw, &mut self.pool, va, hwvm::pte(page, pte_aper, false, hwvm::KIND_PITCH))?;
        self.vm.flush(&mut self.hw)
    }

    /// Test hook: BAR3 page `va` (a BAR3 offset below [`Gpu::raw_bar3_limit`]) gets the raw
    /// small-page PTE `pte` (None: back to the pool page the driver maps there), then BAR3's
    /// TLB is flushed.
    pub fn raw_bar3_pte(&mut self, va: u64, pte: Option<u64>) -> Result<()> {
        use gpuvm_uapi::gf100::vm as hwvm;
        let pte = pte.unwrap_or_else(|| hwvm::pte(VRAM_RESERVED_LOW + va, hwvm::PTE_APER_VRAM, false, hwvm::KIND_PITCH));
        self.bar3_vm.raw_pte(&mut self.hw, &mut self.pool, va, pte)?;
        self.bar3_vm.flush(&mut self.hw)
    }

    /// Test hook: the bytes of BAR3 the driver's BAR3 VM maps (its pool, linearly).
    pub fn raw_bar3_limit(&self) -> u64 {
        POOL_SIZE
    }

    /// Test hook: a copy-engine copy of `len` bytes from `src` to `dst` with ADDRESSING_MODE
    /// `addressing` (`copy::ADDR_*`: either end may be a physical VRAM or system-memory
    /// address instead of a channel VA); virtual addressing is restored after it. Submitted
    /// with the next fence.
    pub fn raw_ce_copy(&mut self, addressing: u32, dst: u64, src: u64, len: u64) -> Result<()> {
        let (hw, ch) = self.ch();
        ch.mthd(hw, SUBC_COPY, copy::ADDRESSING_MODE, &[addressing], false)?;
        self.ce_copy(dst, src, len)?;
        let (hw, ch) = self.ch();
        ch.mthd(hw, SUBC_COPY, copy::ADDRESSING_MODE, &[0], false)
    }

    /// Test hook: an endless copy: `u32::MAX` lines of one page from `src` to `dst`, both
    /// pitches 0 (the same page over and over), so the copy engine never finishes the method.
    pub fn raw_ce_endless(&mut self, dst: u64, src: u64) -> Result<()> {
        let (hw, ch) = self.ch();
        let (ih, il) = split(src);
        let (oh, ol) = split(dst);
        ch.reserve(hw, 12)?;
        ch.mthd(hw, SUBC_COPY, copy::OFFSET_IN_UPPER, &[ih, il, oh, ol, 0, 0, PAGE as u32, u32::MAX], false)?;
        let launch = copy::TRANSFER_NON_PIPELINED << copy::LAUNCH_TRANSFER_SHIFT
            | copy::LAUNCH_SRC_PITCH
            | copy::LAUNCH_DST_PITCH
            | copy::LAUNCH_MULTI_LINE;
        ch.mthd(hw, SUBC_COPY, copy::LAUNCH_DMA, &[launch], false)
    }

    /// Test hook: reset the device under the driver (VFIO_DEVICE_RESET). Everything the
    /// driver set up is gone afterwards: only dropping the `Gpu` is left to do.
    pub fn raw_reset(&mut self) -> std::io::Result<()> {
        self.hw.transport().reset()
    }

    /// Test hook: write a runlist naming `chids` (as given) and commit it.
    pub fn raw_runlist(&mut self, chids: &[u32]) -> Result<()> {
        self.runlist_cur ^= 1;
        commit_runlist(&mut self.hw, &self.pool, self.runlist[self.runlist_cur], chids)
    }

    // ---- teardown ----------------------------------------------------------------------

    /// Tear down in nouveau's order: idle, kick the channel off, runlist without it, channel
    /// table entry cleared; then the BARs are unbound and memory given back.
    pub fn close(mut self) -> Result<CloseReport> {
        let idle = self.sync();
        self.hw.transport().irq_disable();
        self.hw.wr(pmc::INTR_EN_HOST, 0);
        let ch = self.ch.take().expect("channel");
        ch.disable_and_kick(&mut self.hw)?;
        self.update_runlist(false)?;
        self.hw.wr(pfifo::ChanInst::offset(ch.chid), 0);
        for m in [self.code.take(), self.cb.take(), self.local.take()].into_iter().flatten() {
            self.vram_alloc.free(m.vram, m.alloc_size);
        }
        let bar1 = pbus::BarInst::from_raw(self.hw.rd(pbus::BAR1_INST)).with_mode_vm(false);
        self.hw.wr(pbus::BAR1_INST, bar1.raw());
        let bar3 = pbus::BarInst::from_raw(self.hw.rd(pbus::BAR3_INST)).with_mode_vm(false);
        self.hw.wr(pbus::BAR3_INST, bar3.raw());
        let t = self.hw.transport();
        for m in [self.fence.take(), self.staging.take()].into_iter().flatten() {
            t.dma_free(m.buf);
        }
        t.dma_free(ch.gp);
        t.dma_free(ch.pb);
        let _ = (self.bar3_inst, self.bar1_inst);
        idle.map(|_| CloseReport { stats: self.stats, counts: self.hw.counts() })
    }

    /// Pushbuffer words and doorbells so far.
    pub fn channel_counts(&self) -> (u64, u64) {
        self.ch.as_ref().map(|c| (c.words_pushed, c.doorbells)).unwrap_or_default()
    }

    pub fn pte_writes(&self) -> u64 {
        self.vm.pte_writes + self.bar1_vm.pte_writes + self.bar3_vm.pte_writes
    }
}

fn io_err(e: std::io::Error) -> HwError {
    HwError(format!("transport: {e}"))
}
