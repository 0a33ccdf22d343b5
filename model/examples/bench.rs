//! In-process performance figures: `cargo run --release -p gf100-model --example bench`.
//!
//! Prints the cost of one BAR0 register access (target <= 2 us), of BAR1 accesses through
//! the BAR1 page tables, and the copy-engine throughput (target >= 1 GB/s) for VRAM->VRAM
//! copies through a channel's page tables.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gf100_model::gpuvm_uapi::gf100::*;
use gf100_model::{Bar, Gpu, ModelConfig};

const CHID: u32 = 0;
const GP_ORDER: u32 = 10;

/// Bump allocator + page-table writer working straight on VRAM (setup only, not measured).
struct Setup {
    gpu: Arc<Gpu>,
    next: u64,
}

impl Setup {
    fn alloc(&mut self, size: u64) -> u64 {
        let a = (self.next + 0xfff) & !0xfff;
        self.next = a + size;
        a
    }
    fn vm(&mut self, limit: u64) -> (u64, u64) {
        let inst = self.alloc(0x1000);
        let pd = self.alloc(vm::PD_ENTRIES_128K * 8);
        let v = self.gpu.vram();
        v.write32(inst + inst::PDB_LO as u64, pd as u32);
        v.write32(inst + inst::PDB_HI as u64, 0);
        v.write32(inst + inst::LIMIT_LO as u64, limit as u32);
        v.write32(inst + inst::LIMIT_HI as u64, (limit >> 32) as u32);
        (inst, pd)
    }
    /// Maps [va, va+len) to fresh contiguous VRAM with small pages; returns the VRAM address.
    fn map(&mut self, pd: u64, va: u64, len: u64) -> u64 {
        let pa = self.alloc(len);
        for off in (0..len).step_by(0x1000) {
            let v = va + off;
            let pde_slot = pd + (v >> 27) * 8;
            let mut pde = self.gpu.vram().read64(pde_slot).unwrap();
            if pde >> 32 == 0 {
                let spt = self.alloc(vm::SPT_ENTRIES_128K * 8);
                pde = vm::pde(0, vm::PDE_APER_NONE, spt, vm::PDE_APER_VRAM);
                self.gpu.vram().write64(pde_slot, pde);
            }
            let spt = ((pde >> vm::PDE_SMALL_ADDR_SHIFT) & vm::PDE_ADDR_MASK) << 12;
            let pte = vm::pte(pa + off, vm::PTE_APER_VRAM, false, vm::KIND_PITCH);
            self.gpu
                .vram()
                .write64(spt + ((v >> 12) & (vm::SPT_ENTRIES_128K - 1)) * 8, pte);
        }
        pa
    }
    fn flush(&self, pd: u64) {
        self.gpu.bar_write32(
            Bar::Bar0,
            mmu::InvalidatePdb::OFFSET as u64,
            mmu::InvalidatePdb::default().with_addr(pd).with_sysram(false).raw(),
        );
        self.gpu.bar_write32(
            Bar::Bar0,
            mmu::Invalidate::OFFSET as u64,
            mmu::Invalidate::default().with_page_all(true).with_trigger(true).raw(),
        );
    }
}

fn per_op(d: Duration, n: u64) -> f64 {
    d.as_secs_f64() * 1e9 / n as f64
}

fn main() {
    let gpu = Gpu::new(ModelConfig {
        vram_bytes: 1 << 30,
        ..ModelConfig::default()
    })
    .unwrap();
    let mut s = Setup {
        gpu: gpu.clone(),
        next: 1 << 20,
    };
    let w = |off: u32, v: u32| gpu.bar_write32(Bar::Bar0, off as u64, v);
    w(pmc::ENABLE, pmc::ENABLE_ALL);
    w(pfifo::CTRL, pfifo::CTRL_ENABLE);

    // BAR0: PTIMER reads and a scratch-free write target (PRAMIN window).
    let n = 2_000_000u64;
    let t = Instant::now();
    let mut acc = 0u32;
    for _ in 0..n {
        acc = acc.wrapping_add(gpu.bar_read32(Bar::Bar0, ptimer::TIME_LOW as u64));
    }
    let rd = per_op(t.elapsed(), n);
    let t = Instant::now();
    for i in 0..n {
        gpu.bar_write32(Bar::Bar0, pfifo::INTR_EN as u64, i as u32);
    }
    let wr = per_op(t.elapsed(), n);
    let t = Instant::now();
    for i in 0..n {
        gpu.bar_write32(
            Bar::Bar0,
            (pbus::PRAMIN_WINDOW + (i as u32 & 0xffffc)) as u64,
            i as u32,
        );
    }
    let pramin = per_op(t.elapsed(), n);
    println!("BAR0 register read:  {rd:8.1} ns/access   (target <= 2000 ns) [{acc:x}]");
    println!("BAR0 register write: {wr:8.1} ns/access");
    println!("BAR0 PRAMIN write:   {pramin:8.1} ns/access");

    // BAR1 through its page tables.
    let (b1_inst, b1_pd) = s.vm(pci::BAR1_SIZE - 1);
    s.map(b1_pd, 0, 16 << 20);
    w(pbus::BAR1_INST, pbus::BarInst::vm(b1_inst).raw());
    s.flush(b1_pd);
    let t = Instant::now();
    for i in 0..n {
        gpu.bar_write32(Bar::Bar1, (i * 4) & 0xff_fffc, i as u32);
    }
    let b1 = per_op(t.elapsed(), n);
    let mut chunk = vec![0u8; 1 << 20];
    let reps = 256u64;
    let t = Instant::now();
    for i in 0..reps {
        gpu.bar_read(Bar::Bar1, (i % 16) << 20, &mut chunk);
    }
    let b1_bulk = (reps << 20) as f64 / t.elapsed().as_secs_f64() / 1e9;
    println!("BAR1 32-bit write:   {b1:8.1} ns/access (translated)");
    println!("BAR1 1 MiB reads:    {b1_bulk:8.2} GB/s");

    // Copy engine: channel with 64 MiB source and destination, 1 MiB lines.
    // One USERD page, mapped in BAR1 at the poll area for the doorbell.
    let u_va = 0x100_0000u64;
    let userd = s.map(b1_pd, u_va, 0x1000);
    s.flush(b1_pd);
    w(
        pfifo::UserdPollBase::OFFSET,
        pfifo::UserdPollBase::default()
            .with_bar1_va(u_va)
            .with_enable(true)
            .raw(),
    );
    let (inst, pd) = s.vm(0xff_ffff_ffff);
    let gp_va = 0x1000_0000u64;
    let pb_va = 0x1100_0000u64;
    let (src_va, dst_va, len) = (0x2000_0000u64, 0x3000_0000u64, 64u64 << 20);
    let gp = s.map(pd, gp_va, 8 << GP_ORDER);
    let pb = s.map(pd, pb_va, 1 << 20);
    let src = s.map(pd, src_va, len);
    let dst = s.map(pd, dst_va, len);
    s.flush(pd);
    let v = gpu.vram().clone();
    for off in (0..len).step_by(8) {
        v.write64(src + off, off.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    for (o, val) in [
        (ramfc::USERD_LO, userd as u32),
        (ramfc::USERD_HI, 0),
        (ramfc::SIGNATURE, ramfc::SIGNATURE_VALUE),
        (ramfc::GP_BASE, gp_va as u32),
        (ramfc::GP_BASE_HI, ramfc::gp_base_hi_value(gp_va, GP_ORDER)),
    ] {
        v.write32(inst + o as u64, val);
    }
    let rl = s.alloc(0x1000);
    v.write32(rl, CHID);
    v.write32(rl + 4, pfifo::RUNLIST_ENTRY_WORD1);
    w(pfifo::ChanInst::offset(CHID), pfifo::ChanInst::bound(inst).raw());
    w(pfifo::ChanState::offset(CHID), pfifo::ChanState::INITIAL.raw());
    w(pfifo::RunlistBase::OFFSET, pfifo::RunlistBase::default().with_addr(rl).raw());
    w(pfifo::RunlistSubmit::OFFSET, pfifo::RunlistSubmit::commit(1).raw());

    let line = 1u32 << 20;
    let lines = (len / line as u64) as u32;
    let words = [
        pushbuf::incr(3, 0, 1),
        class::set_object(class::COPY0, pfifo::ENGINE_PCOPY0),
        pushbuf::incr(3, copy::OFFSET_IN_UPPER, 4),
        (src_va >> 32) as u32,
        src_va as u32,
        (dst_va >> 32) as u32,
        dst_va as u32,
        pushbuf::incr(3, copy::PITCH_IN, 4),
        line,
        line,
        line,
        lines,
        pushbuf::incr(3, copy::LAUNCH_DMA, 1),
        copy::LAUNCH_COPY_PITCH,
    ];
    for (i, word) in words.iter().enumerate() {
        v.write32(pb + 4 * i as u64, *word);
    }
    let rounds = 8u32;
    for r in 0..rounds {
        v.write64(gp + 8 * r as u64, gpfifo::entry(pb_va, words.len() as u32));
    }
    let t = Instant::now();
    gpu.bar_write32(Bar::Bar1, u_va + userd::GP_PUT as u64, rounds);
    while v.read32(userd + userd::GP_GET as u64) != Some(rounds) {
        std::thread::yield_now();
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "copy did not finish"
        );
    }
    let secs = t.elapsed().as_secs_f64();
    let bytes = rounds as u64 * len;
    let mut a = vec![0u8; 4096];
    let mut b = vec![0u8; 4096];
    for off in (0..len).step_by(7 << 20) {
        v.read(src + off, &mut a);
        v.read(dst + off, &mut b);
        assert!(a == b, "copy mismatch at {off:#x}");
    }
    println!(
        "copy engine:         {:8.2} GB/s   ({} MiB in {:.3} s; target >= 1 GB/s)",
        bytes as f64 / secs / 1e9,
        bytes >> 20,
        secs
    );
    println!("counters: {}", gpu.counters().to_json());
    vfio_user_round_trips();
}

/// The same accesses through the vfio-user socket (the crate's client in this process, the
/// server in a thread): the floor of a trapped access before QEMU and a guest add theirs.
fn vfio_user_round_trips() {
    use vfio_bindings::bindings::vfio::{VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR1_REGION_INDEX};
    let sock = std::env::temp_dir().join(format!("gf100-bench-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let gpu = Gpu::new(ModelConfig {
        vram_bytes: 256 << 20,
        ..ModelConfig::default()
    })
    .unwrap();
    let server = gf100_model::server::GpuServer::bind(&sock, gpu).unwrap();
    let t = std::thread::spawn(move || server.serve());
    let mut c = vfio_user::Client::new(&sock).unwrap();
    let n = 20_000u64;
    let mut w = [0u8; 4];
    let start = Instant::now();
    for _ in 0..n {
        c.region_read(VFIO_PCI_BAR0_REGION_INDEX, ptimer::TIME_LOW as u64, &mut w)
            .unwrap();
    }
    let bar0 = per_op(start.elapsed(), n) / 1000.0;
    let mut page = vec![0u8; 4096];
    let start = Instant::now();
    for i in 0..n / 4 {
        c.region_read(VFIO_PCI_BAR1_REGION_INDEX, (i % 1024) * 4096, &mut page)
            .unwrap();
    }
    let bar1 = (n / 4 * 4096) as f64 / start.elapsed().as_secs_f64() / 1e6;
    println!("vfio-user BAR0 read: {bar0:8.1} us/access (socket round trip, no QEMU)");
    println!("vfio-user BAR1 4 KiB reads: {bar1:6.0} MB/s (trapped window, no QEMU)");
    drop(c);
    let _ = t.join();
}
