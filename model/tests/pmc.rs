//! PMC identity/enable/interrupts, PTIMER, VRAM geometry, reset.

mod common;

use std::time::{Duration, Instant};

use common::DEADLINE;
use gf100_model::gpuvm_uapi::gf100::*;
use gf100_model::{Bar, Gpu, ModelConfig};

fn gpu(vram: u64) -> std::sync::Arc<Gpu> {
    Gpu::new(ModelConfig {
        vram_bytes: vram,
        ..ModelConfig::default()
    })
    .unwrap()
}

fn rd(g: &Gpu, off: u32) -> u32 {
    g.bar_read32(Bar::Bar0, off as u64)
}

fn wr(g: &Gpu, off: u32, v: u32) {
    g.bar_write32(Bar::Bar0, off as u64, v)
}

#[test]
fn identity_endian_and_unit_enable() {
    let g = gpu(64 << 20);
    let boot0 = pmc::Boot0::from_raw(rd(&g, pmc::Boot0::OFFSET));
    assert_eq!(boot0.chipset(), pmc::CHIPSET_GF100);
    assert_eq!(boot0.stepping(), pci::REVISION as u32);
    assert_eq!(
        boot0.device_id(),
        (pci::DEVICE_QUADRO_6000 & 0x1f) as u32
    );
    assert_eq!(rd(&g, pmc::ENDIAN), 0);
    wr(&g, pmc::ENDIAN, pmc::ENDIAN_BIG);
    assert_eq!(rd(&g, pmc::ENDIAN), pmc::ENDIAN_BIG);
    wr(&g, pmc::ENDIAN, pmc::ENDIAN_BIG);
    assert_eq!(rd(&g, pmc::ENDIAN), 0);
    assert_eq!(
        rd(&g, pstraps::STRAPS) & pstraps::CRYSTAL_MASK,
        pstraps::CRYSTAL_27MHZ
    );

    // Units are disabled at reset.
    assert_eq!(rd(&g, pfifo::INTR_EN), bad::UNIT_DISABLED);
    assert_eq!(rd(&g, ptimer::TIME_LOW), bad::UNIT_DISABLED);
    assert_eq!(rd(&g, pgraph::INTR), bad::UNIT_DISABLED);
    wr(&g, pfifo::INTR_EN, 5); // dropped
    wr(&g, pmc::ENABLE, pmc::ENABLE_ALL);
    assert_eq!(rd(&g, pfifo::INTR_EN), 0);
    wr(&g, pfifo::INTR_EN, 5);
    assert_eq!(rd(&g, pfifo::INTR_EN), 5);
    // A 0 -> 1 transition of the PFIFO bit resets PFIFO.
    wr(&g, pmc::ENABLE, pmc::ENABLE_ALL & !pmc::ENABLE_PFIFO);
    wr(&g, pmc::ENABLE, pmc::ENABLE_ALL);
    assert_eq!(rd(&g, pfifo::INTR_EN), 0);
    // SUBFIFO_ENABLE keeps the bits of the 3 PBDMAs.
    wr(&g, pfifo::SUBFIFO_ENABLE, 0xffff_ffff);
    assert_eq!(
        rd(&g, pfifo::SUBFIFO_ENABLE).count_ones(),
        pfifo::PBDMA_COUNT
    );
}

#[test]
fn vram_geometry_registers() {
    for (mib, parts) in [(1024u64, 4u32), (6144, 6), (64, 4), (100, 5)] {
        let g = gpu(mib << 20);
        // Modern nouveau: FBP count, disabled mask, per-partition MiB.
        let n = rd(&g, pfb::FBP_COUNT);
        let disabled = rd(&g, pfb::FBP_DISABLED_MASK);
        let total: u64 = (0..n)
            .filter(|i| disabled & (1 << i) == 0)
            .map(|i| rd(&g, pfb::part_mib(i)) as u64)
            .sum();
        assert_eq!((n, total), (parts, mib), "{mib} MiB");
        // Old nouveau: partition count and broadcast size.
        assert_eq!(
            rd(&g, pfb::PART_COUNT) as u64 * rd(&g, pfb::PART_MIB_BROADCAST) as u64,
            mib
        );
        if mib == 6144 {
            // The whole 6 GiB is addressable (PRAMIN at the very end).
            wr(
                &g,
                pbus::PraminBase::OFFSET,
                (((mib << 20) - (1 << 20)) >> 16) as u32,
            );
            wr(&g, pbus::PRAMIN_WINDOW + 0xffffc, 0x6666);
            assert_eq!(g.vram().read32((mib << 20) - 4), Some(0x6666));
        }
    }
    assert!(Gpu::new(ModelConfig {
        vram_bytes: 3 << 10,
        ..ModelConfig::default()
    })
    .is_err());
}

/// Nanoseconds of a host interval, as PTIMER counts them.
fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

#[test]
fn ptimer_counts_nanoseconds_and_alarm_interrupts() {
    // PTIMER runs on the host's monotonic clock, as Instant does, so every check brackets
    // its register reads with Instants: it holds however long this thread is preempted.
    const SLEEP: Duration = Duration::from_millis(20);
    const LOW_WORD: u64 = 0xffff_ffff;
    // The resolution: bits 0-4 read 0.
    let granule = u64::from(!ptimer::TIME_LOW_MASK) + 1;
    let g = gpu(64 << 20);
    wr(&g, pmc::ENABLE, pmc::ENABLE_ALL);
    let read = || loop {
        let hi = rd(&g, ptimer::TIME_HIGH);
        let lo = rd(&g, ptimer::TIME_LOW);
        if rd(&g, ptimer::TIME_HIGH) == hi {
            return (hi as u64) << 32 | lo as u64;
        }
    };
    let t0 = Instant::now();
    let a = read();
    let t1 = Instant::now();
    std::thread::sleep(SLEEP);
    let t2 = Instant::now();
    let b = read();
    let t3 = Instant::now();
    // The reads happened at least t2 - t1 and at most t3 - t0 apart.
    let (shortest, longest) = (ns(t2 - t1), ns(t3 - t0));
    assert!(
        b - a >= 19_000_000 && b - a + granule > shortest && b - a < longest + granule,
        "20 ms measured as {} ns (the host saw {shortest}..={longest} ns)",
        b - a
    );
    assert_eq!(a & 0x1f, 0);
    // Setting the time, high word first like nouveau. Should the low word carry into the
    // high word between the two writes (it wraps every 4.3 s), the result is off by 2^32:
    // set it again (once is enough, the low word then starts near 0).
    let base = 0x10u64 << 32;
    let set_at = loop {
        let start = Instant::now();
        let before = read();
        wr(&g, ptimer::TIME_HIGH, 0x10);
        wr(&g, ptimer::TIME_LOW, 0);
        if (before & LOW_WORD) + granule + ns(start.elapsed()) <= LOW_WORD {
            break start;
        }
    };
    let t = read();
    let since = ns(set_at.elapsed());
    assert!(
        t >= base && t - base < since + granule,
        "{t:#x}, read {since} ns after setting {base:#x}"
    );
    // Alarm 2 ms ahead raises PTIMER's interrupt through PMC, and not before. The line is
    // sampled before the time is read: a time still short of the alarm proves the line was
    // not early. Preempted past the alarm in between, the sample proves nothing: take the
    // interrupt and arm again.
    const ALARM_LEAD_NS: u32 = 2_000_000;
    wr(&g, ptimer::INTR_EN, ptimer::INTR_ALARM);
    wr(&g, pmc::INTR_EN_HOST, pmc::INTR_EN_HW);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let alarm = (read() as u32).wrapping_add(ALARM_LEAD_NS);
        wr(&g, ptimer::ALARM, alarm);
        let line = g.irq_line();
        let ahead = alarm.wrapping_sub(read() as u32) as i32;
        if ahead > 0 {
            assert!(!line, "interrupt {ahead} ns before the alarm");
            break;
        }
        assert!(
            g.irq_wait(deadline.saturating_duration_since(Instant::now())),
            "no alarm interrupt, {} ns after the alarm time",
            ahead.unsigned_abs()
        );
        wr(&g, ptimer::INTR, ptimer::INTR_ALARM);
        assert!(
            Instant::now() < deadline,
            "for {DEADLINE:?} this thread never looked at the line within {ALARM_LEAD_NS} ns \
             of arming the alarm"
        );
    }
    assert!(
        g.irq_wait(DEADLINE),
        "no alarm interrupt within {DEADLINE:?}"
    );
    assert_eq!(rd(&g, pmc::INTR_HOST), pmc::INTR_PTIMER);
    wr(&g, ptimer::INTR, ptimer::INTR_ALARM);
    assert!(!g.irq_line());
}

#[test]
fn interrupt_enable_mask_and_software_line() {
    let g = gpu(64 << 20);
    wr(&g, pmc::ENABLE, pmc::ENABLE_ALL);
    let edges = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let e = edges.clone();
    g.set_irq_notifier(Some(std::sync::Arc::new(move |level| {
        if level {
            e.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    })));
    // Software interrupt: visible in INTR_HOST bit 31, asserts the line only with EN_SW.
    wr(&g, pmc::INTR_HOST, pmc::INTR_SOFTWARE);
    assert_eq!(rd(&g, pmc::INTR_HOST), pmc::INTR_SOFTWARE);
    assert!(!g.irq_line());
    wr(&g, pmc::INTR_EN_HOST, pmc::INTR_EN_SW);
    assert!(g.irq_line());
    assert_eq!(rd(&g, pmc::INTR_LINE_STATUS), 1);
    wr(&g, pmc::INTR_HOST, 0);
    assert!(!g.irq_line());
    // A hardware source masked by INTR_MASK_HOST does not show or assert.
    wr(&g, pmc::INTR_EN_HOST, pmc::INTR_EN_HW);
    wr(&g, pmc::INTR_MASK_HOST, !pmc::INTR_PTIMER);
    wr(&g, ptimer::INTR_EN, ptimer::INTR_ALARM);
    wr(&g, ptimer::ALARM, 0); // already passed: fires at once
    assert_eq!(rd(&g, ptimer::INTR), ptimer::INTR_ALARM);
    assert_eq!(rd(&g, pmc::INTR_HOST), 0);
    assert!(!g.irq_line());
    wr(&g, pmc::INTR_MASK_HOST, 0xffff_ffff);
    assert!(g.irq_line());
    // Disarm/rearm (nouveau's ISR) gives a new edge while the source is still pending.
    wr(&g, pmc::INTR_EN_HOST, 0);
    wr(&g, pmc::INTR_EN_HOST, pmc::INTR_EN_HW);
    assert_eq!(edges.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(g.counters().irq_edges, 3);
}

#[test]
fn reset_restores_registers_and_keeps_vram() {
    let g = gpu(64 << 20);
    wr(&g, pmc::ENABLE, pmc::ENABLE_ALL);
    wr(&g, pbus::PraminBase::OFFSET, 0x10);
    wr(&g, pbus::PRAMIN_WINDOW, 0x1234);
    g.reset();
    assert_eq!(rd(&g, pmc::ENABLE), 0);
    assert_eq!(rd(&g, pbus::PraminBase::OFFSET), 0);
    assert_eq!(g.vram().read32(0x10_0000), Some(0x1234));
    g.shutdown();
    g.shutdown();
    assert_eq!(rd(&g, pmc::Boot0::OFFSET), pmc::BOOT_0_QUADRO_6000);
}

#[test]
fn narrow_bar0_accesses() {
    let g = gpu(64 << 20);
    // Reads: bytes of the containing registers.
    let mut b = [0u8; 6];
    g.bar_read(Bar::Bar0, 1, &mut b);
    let boot0 = pmc::BOOT_0_QUADRO_6000.to_le_bytes();
    assert_eq!(&b[..3], &boot0[1..]);
    assert_eq!(u16::from_le_bytes([b[3], b[4]]), 0); // ENDIAN
                                                     // Byte writes reach the config mirror (nouveau-style 8-bit accesses there).
    g.bar_write(
        Bar::Bar0,
        (pci::BAR0_CONFIG_MIRROR as usize + pci::CFG_COMMAND) as u64,
        &[0x06],
    );
    let mut cmd = [0u8; 2];
    g.config_read(pci::CFG_COMMAND as u64, &mut cmd);
    assert_eq!(
        u16::from_le_bytes(cmd),
        pci::COMMAND_MEMORY | pci::COMMAND_BUS_MASTER
    );
    // ... and the MSI re-arm register re-signals an asserted line.
    let edges = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let e = edges.clone();
    g.set_irq_notifier(Some(std::sync::Arc::new(move |level| {
        if level {
            e.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    })));
    wr(&g, pmc::INTR_EN_HOST, pmc::INTR_EN_SW);
    wr(&g, pmc::INTR_HOST, pmc::INTR_SOFTWARE);
    g.bar_write(Bar::Bar0, pci::BAR0_MSI_REARM as u64 + 3, &[0xff]);
    assert_eq!(edges.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Elsewhere a narrow write is dropped and counted.
    wr(&g, pmc::ENABLE, pmc::ENABLE_ALL);
    let before = g.counters().bar0_unknown;
    g.bar_write(Bar::Bar0, pfifo::INTR_EN as u64, &[0xff, 0xff]);
    assert_eq!(rd(&g, pfifo::INTR_EN), 0);
    assert_eq!(g.counters().bar0_unknown, before + 1);
}
