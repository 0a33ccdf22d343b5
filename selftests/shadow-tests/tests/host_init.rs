//! The module's host bring-up, run against the in-process GF100 model: after it, the host's
//! BAR3 reaches its reserved VRAM one to one and BAR1 reaches the USERD area.
use gf100_model::{Bar, Gpu, ModelConfig};
use gpuvm_shadow_tests::gf100::{pbus, pfifo, pmc};
use gpuvm_shadow_tests::host_init::{bring_up, layout, InitError, Mmio};
use std::sync::Arc;

struct ModelBar0(Arc<Gpu>);

impl Mmio for ModelBar0 {
    fn rd(&self, off: u32) -> u32 {
        self.0.bar_read32(Bar::Bar0, off as u64)
    }
    fn wr(&self, off: u32, val: u32) {
        self.0.bar_write32(Bar::Bar0, off as u64, val)
    }
}

const MIB: u64 = 1 << 20;

fn model() -> ModelBar0 {
    ModelBar0(Gpu::new(ModelConfig { vram_bytes: 256 * MIB, ..ModelConfig::default() }).unwrap())
}

#[test]
fn bar3_maps_reserved_vram_one_to_one() {
    let m = model();
    let host = bring_up(&m, 64 * MIB, 64 * MIB).unwrap();
    assert_eq!(host.bar3_mapped, 64 * MIB);
    assert!(host.pbdmas >= 1);
    let vram = m.0.vram().clone();
    for addr in [layout::FREE, 17 * MIB + 0x1234 * 4, 64 * MIB - 4] {
        let pattern = 0xa5a5_0000 ^ (addr as u32);
        m.0.bar_write32(Bar::Bar3, addr, pattern);
        assert_eq!(vram.read32(addr), Some(pattern), "BAR3 write at {addr:#x} must land in VRAM");
        vram.write32(addr, !pattern);
        assert_eq!(m.0.bar_read32(Bar::Bar3, addr), !pattern, "BAR3 read at {addr:#x}");
    }
    // Beyond the mapped range BAR3 faults instead of reaching guest VRAM.
    vram.write32(64 * MIB, 0x1234_5678);
    assert_ne!(m.0.bar_read32(Bar::Bar3, 64 * MIB), 0x1234_5678);
    assert_eq!(m.rd(pbus::BAR3_INST), pbus::BarInst::vm(layout::BAR3_INST).raw());
    assert_eq!(m.rd(pmc::ENABLE), pmc::ENABLE_ALL);
}

#[test]
fn bar1_reaches_userd_and_pfifo_polls_it() {
    let m = model();
    bring_up(&m, 64 * MIB, 64 * MIB).unwrap();
    let vram = m.0.vram().clone();
    // USERD of channel 5, word 0x40, through BAR1.
    let off = layout::USERD_BAR1_VA + 5 * 0x1000 + 0x40;
    m.0.bar_write32(Bar::Bar1, off, 0xdead_beef);
    assert_eq!(vram.read32(layout::USERD + 5 * 0x1000 + 0x40), Some(0xdead_beef));
    assert!(pfifo::UserdPollBase::from_raw(m.rd(pfifo::UserdPollBase::OFFSET)).enable());
    assert_ne!(m.rd(pfifo::CTRL) & pfifo::CTRL_ENABLE, 0);
}

/// PBDMA errors of guest channels must interrupt the host (which hands them to the vGPU):
/// every PBDMA's interrupts are enabled, none left pending.
#[test]
fn pbdma_errors_interrupt_the_host() {
    let m = model();
    let host = bring_up(&m, 64 * MIB, 64 * MIB).unwrap();
    for i in 0..host.pbdmas {
        assert_eq!(m.rd(pfifo::pbdma_base(i) + pfifo::PBDMA_INTR_EN), u32::MAX, "PBDMA {i}");
        assert_eq!(m.rd(pfifo::pbdma_base(i) + pfifo::PBDMA_INTR), 0, "PBDMA {i}");
    }
}

#[test]
fn too_little_reserved_vram_is_refused() {
    let m = model();
    assert_eq!(bring_up(&m, 256 * 1024, 64 * MIB), Err(InitError::ReservedTooSmall));
}

/// Register writes are what a trapped BAR0 costs; bring-up must stay cheap.
#[test]
fn bring_up_register_traffic_is_bounded() {
    let m = model();
    let before = m.0.counters();
    bring_up(&m, 64 * MIB, 64 * MIB).unwrap();
    let after = m.0.counters();
    let writes = after.bar0_writes - before.bar0_writes;
    assert!(writes < 4000, "bring-up took {writes} BAR0 writes");
    assert_eq!(after.bar0_unknown, before.bar0_unknown, "bring-up touched registers the GPU does not have");
}

#[test]
fn shut_down_quiesces_and_bring_up_works_again() {
    let m = model();
    bring_up(&m, 64 * MIB, 64 * MIB).unwrap();
    gpuvm_shadow_tests::host_init::shut_down(&m);
    assert_eq!(m.rd(pmc::INTR_EN_HOST), 0);
    assert_eq!(m.rd(pfifo::CTRL) & pfifo::CTRL_ENABLE, 0);
    assert_eq!(m.rd(pbus::BAR3_INST), 0);
    // rmmod + insmod: a second bring-up on the same GPU must work.
    bring_up(&m, 64 * MIB, 64 * MIB).unwrap();
    m.0.bar_write32(Bar::Bar3, 32 * MIB, 0x600d_f00d);
    assert_eq!(m.0.vram().read32(32 * MIB), Some(0x600d_f00d));
}

/// BAR-remapping slots: after `map_remap_slots`, a slot shows nothing until its small-page PTE
/// is pointed at a host VRAM page (then BAR1 at the slot reaches that page, writes included),
/// and the USERD area's big pages still show through at BAR1 0.
#[test]
fn remap_slots_show_the_page_their_pte_names() {
    use gpuvm_shadow_tests::host_init::{map_remap_slots, remap_pte, remap_pte_addr, remap_slots, tlb_flush, Pramin, REMAP_SPT_BYTES};
    let m = model();
    bring_up(&m, 64 * MIB, 64 * MIB).unwrap();
    let spt = 32 * MIB;
    assert!(spt + REMAP_SPT_BYTES <= 64 * MIB);
    let p = Pramin::new(&m);
    p.wr32(layout::USERD + 0x40, 0x1234_5678);
    p.wr32(spt + 8 * 200, 0xdead_beef); // garbage in the table before set-up
    map_remap_slots(&m, spt).unwrap();
    assert_eq!(m.0.bar_read32(Bar::Bar1, 0x40), 0x1234_5678, "USERD still at BAR1 0");
    let slots = remap_slots(3, 1);
    let slot = slots.bar_off + 5 * 0x1000;
    let target = 100 * MIB + 0x7000;
    p.wr32(target + 8, 0xcafe_f00d);
    assert_ne!(m.0.bar_read32(Bar::Bar1, slot + 8), 0xcafe_f00d, "an unpointed slot shows no VRAM (the access faults)");
    p.wr64(remap_pte_addr(spt, slot), remap_pte(target));
    tlb_flush(&m, None).unwrap();
    assert_eq!(m.0.bar_read32(Bar::Bar1, slot + 8), 0xcafe_f00d);
    m.0.bar_write32(Bar::Bar1, slot + 12, 0x600d_600d);
    assert_eq!(p.rd32(target + 12), 0x600d_600d, "writes through the slot land in the page");
    p.wr32(target + 0x1000 + 8, 0xcafe_f00d);
    assert_ne!(m.0.bar_read32(Bar::Bar1, slot + 0x1000 + 8), 0xcafe_f00d, "the next slot is still empty");
}
