//! Hostile input must never crash the model: random register traffic, random BAR windows,
//! random pushbuffers. Afterwards the engine thread must still execute work.

mod common;

use std::time::Instant;

use common::*;
use gf100_model::gpuvm_uapi::gf100::*;
use gf100_model::Bar;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn word(&mut self) -> u32 {
        self.next() as u32
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[(self.next() % v.len() as u64) as usize]
    }
}

/// Acks every interrupt source the model has.
fn ack_all(rig: &Rig) {
    rig.set(pfifo::VM_FAULT_UNITS, 0xffff_ffff);
    rig.set(pfifo::pbdma_base(0) + pfifo::PBDMA_INTR, 0xffff_ffff);
    rig.set(pgraph::INTR, 0xffff_ffff);
    rig.set(pfifo::engine_intr(0), 0xffff_ffff);
    rig.set(pfifo::INTR, 0xffff_ffff);
}

#[test]
fn random_pushbuffers_never_kill_the_engine_thread() {
    let mut rig = Rig::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ch = rig.channel(1);
    // Some mapped memory so that random copies sometimes succeed.
    ch.vm.buffer(&rig, 0x2000_0000, 0x10000);
    rig.flush(ch.vm.pd, false);
    let methods = [
        0u32, 0x10, 0x14, 0x18, 0x1c, 0x20, 0x28, 0x2c, 0x50, 0x80, 0x100, 0x104, 0x10c, 0x110,
        0x238, 0x23c, 0x250, 0x300, 0x304, 0x30c, 0x310, 0x314, 0x318, 0x31c, 0x320, 0x32c, 0x400,
        0x404, 0x408, 0x40c, 0x410, 0x418, 0x41c, 0x368, 0x1608, 0x160c, 0x3b4, 0x2380, 0x2388,
        0x238c, 0x2390, 0x1694, 0x1b00, 0x1b0c, 0x1ffc,
    ];
    let objects = [
        class::M2MF,
        class::COMPUTE,
        class::set_object(class::COPY0, 4),
        0x9097,
        0,
    ];
    let mut errors = 0;
    for round in 0..300 {
        let mut pb = Vec::new();
        for s in 1..4 {
            pb.extend(incr(
                s,
                0,
                &[objects[(s as usize - 1 + round) % objects.len()]],
            ));
        }
        for _ in 0..24 {
            let r = rng.word();
            let word = match r % 4 {
                0 => rng.word(),
                1 => pushbuf::incr(rng.word() % 8, rng.pick(&methods), rng.word() % 4),
                2 => pushbuf::immd(rng.word() % 8, rng.pick(&methods), rng.word()),
                _ => rng.pick(&[
                    0x2000_0000u32,
                    0x1000,
                    0,
                    1,
                    0xffff_ffff,
                    64,
                    0x386,
                    0x0010_0110,
                ]),
            };
            pb.push(word);
        }
        ch.push(&rig, &pb);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if ch.gp_get(&rig) == ch.put {
                break;
            }
            if rig.gpu.irq_line() {
                errors += 1;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: neither finished nor faulted within {DEADLINE:?}"
            );
            std::thread::sleep(POLL);
        }
        ack_all(&rig);
        // Rebinding resets PFIFO's state for the channel, faulted or not.
        ch.rebind(&rig);
    }
    assert!(errors > 10, "random input should mostly fault ({errors})");

    // Random register traffic over the implemented blocks (not PMC_ENABLE/PFIFO CTRL, which
    // would just switch things off) and the BAR windows.
    let blocks = [
        (0x000100u32, 0x700u32),
        (0x001700, 0x20),
        (0x002100, 0x1300),
        (0x040000, 0x6000),
        (0x100c00, 0x100),
        (0x400100, 0x10000),
        (0x088000, 0x1000),
    ];
    for _ in 0..20_000 {
        let (base, len) = rng.pick(&blocks);
        let off = (base + rng.word() % len) & !3;
        if off == pmc::ENABLE || off == pfifo::CTRL || off == pbus::PraminBase::OFFSET {
            continue;
        }
        if rng.next().is_multiple_of(2) {
            rig.set(off, rng.word());
        } else {
            rig.reg(off);
        }
        let bar = rng.pick(&[Bar::Bar1, Bar::Bar3]);
        let mut buf = vec![0u8; (rng.next() % 64) as usize];
        rig.gpu
            .bar_read(bar, rng.next() % (bar.size() + 0x1000), &mut buf);
    }
    // Unaligned and out-of-range accesses.
    assert_eq!(rig.gpu.bar_read32(Bar::Bar0, 2), bad::NO_REGISTER);
    assert_eq!(
        rig.gpu.bar_read32(Bar::Bar0, u64::MAX - 3),
        bad::NO_REGISTER
    );
    rig.gpu.bar_write(Bar::Bar0, u64::MAX - 8, &[1; 16]);
    rig.gpu.bar_write(Bar::Bar1, u64::MAX - 8, &[1; 16]);
    let mut cfg = [0u8; 8];
    rig.gpu.config_read(u64::MAX - 2, &mut cfg);
    rig.gpu.config_write(u64::MAX - 2, &cfg);

    // The engine thread is alive: a clean rig on the same GPU still runs work.
    ack_all(&rig);
    rig.set(pmc::ENABLE, 0);
    rig.set(pmc::ENABLE, pmc::ENABLE_ALL);
    rig.set(pfifo::CTRL, pfifo::CTRL_ENABLE);
    rig.set(pfifo::INTR_EN, 0xffff_ffff);
    rig.set(mmu::CTRL, 0); // the random traffic may have selected 64 KiB big pages
    rig.bar1 = None;
    rig.runlist.clear();
    let mut ch = rig.channel(2);
    let pa = ch.vm.buffer(&rig, 0x2000_0000, 0x1000);
    rig.flush(ch.vm.pd, false);
    ch.push(&rig, &sem_release(0x2000_0000, 0x600d, true));
    ch.wait(&rig);
    assert_eq!(rig.r32(pa), 0x600d);
}
