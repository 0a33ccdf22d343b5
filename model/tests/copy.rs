//! Copy engine (0x90b5, NVIDIA layout) and M2MF (0x9039): byte-exact copies, inline uploads,
//! completion semaphores and interrupts, faults.

mod common;

use common::*;
use gf100_model::gpuvm_uapi::gf100::*;

const SRC_VA: u64 = 0x3000_0000;
const DST_VA: u64 = 0x3100_0000;
const SEM_VA: u64 = 0x2000_0000;
const CE: u32 = 3;
const M2MF: u32 = 2;

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A channel with `len` bytes at SRC_VA and DST_VA, each backed by pages in scrambled
/// physical order, and a semaphore page.
fn setup(len: u64) -> (Rig, Chan, Vec<u64>, Vec<u64>, u64) {
    setup_with(len, &[])
}

/// `setup` with a host driver's own channel: its RAMFC opens the physical-copy gate.
fn setup_host(len: u64) -> (Rig, Chan, Vec<u64>, Vec<u64>, u64) {
    setup_with(len, &[(ramfc::HCE_CTRL, ramfc::HCE_CTRL_PRIV_MODE)])
}

fn setup_with(len: u64, extra_ramfc: &[(u32, u32)]) -> (Rig, Chan, Vec<u64>, Vec<u64>, u64) {
    let mut rig = Rig::new();
    let mut ch = rig.channel_with(6, extra_ramfc);
    let pages = len.div_ceil(0x1000);
    let map = |base_va: u64, rig: &Rig, ch: &mut Chan| {
        let phys: Vec<u64> = (0..pages)
            .map(|_| rig.alloc(0x1000, 0x1000))
            .rev()
            .collect();
        for (i, pa) in phys.iter().enumerate() {
            ch.vm.map(
                rig,
                base_va + i as u64 * 0x1000,
                *pa,
                vm::PTE_APER_VRAM,
                false,
            );
        }
        phys
    };
    let src = map(SRC_VA, &rig, &mut ch);
    let dst = map(DST_VA, &rig, &mut ch);
    let sem = ch.vm.buffer(&rig, SEM_VA, 0x1000);
    rig.flush(ch.vm.pd, false);
    ch.push(
        &rig,
        &[
            incr(
                CE,
                0,
                &[class::set_object(class::COPY0, pfifo::ENGINE_PCOPY0)],
            ),
            incr(M2MF, 0, &[class::M2MF]),
        ]
        .concat(),
    );
    ch.wait(&rig);
    (rig, ch, src, dst, sem)
}

fn write_virt(rig: &Rig, phys: &[u64], off: u64, data: &[u8]) {
    for (i, b) in data.iter().enumerate() {
        let o = off + i as u64;
        rig.gpu
            .vram()
            .write(phys[(o / 0x1000) as usize] + o % 0x1000, &[*b]);
    }
}

fn read_virt(rig: &Rig, phys: &[u64], off: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let o = off + i;
            let mut b = [0u8];
            rig.gpu
                .vram()
                .read(phys[(o / 0x1000) as usize] + o % 0x1000, &mut b);
            b[0]
        })
        .collect()
}

fn ce_copy(
    src: u64,
    dst: u64,
    pitch_in: u32,
    pitch_out: u32,
    line: u32,
    count: u32,
    launch: u32,
) -> Vec<u32> {
    [
        incr(
            CE,
            copy::OFFSET_IN_UPPER,
            &[
                (src >> 32) as u32,
                src as u32,
                (dst >> 32) as u32,
                dst as u32,
            ],
        ),
        incr(CE, copy::PITCH_IN, &[pitch_in, pitch_out, line, count]),
        incr(CE, copy::LAUNCH_DMA, &[launch]),
    ]
    .concat()
}

#[test]
fn copy_engine_linear_and_pitched_copies_are_byte_exact() {
    let len = 64 << 10;
    let (rig, mut ch, src, dst, sem) = setup(len);
    let data = pattern(len as usize, 1);
    write_virt(&rig, &src, 0, &data);

    // One line of 40000 bytes from an odd offset to another odd offset (crosses pages).
    ch.push(
        &rig,
        &ce_copy(
            SRC_VA + 3,
            DST_VA + 1001,
            0,
            0,
            40000,
            0,
            copy::LAUNCH_COPY_PITCH & !copy::LAUNCH_MULTI_LINE,
        ),
    );
    ch.wait(&rig);
    assert_eq!(read_virt(&rig, &dst, 1001, 40000), data[3..40003]);
    assert_eq!(read_virt(&rig, &dst, 1000, 1), [0]);
    assert_eq!(read_virt(&rig, &dst, 41001, 1), [0]);

    // 100 lines of 300 bytes, pitch 600 in and 333 out, with a four-word semaphore release
    // and a non-stall interrupt.
    let clear = vec![0u8; len as usize];
    write_virt(&rig, &dst, 0, &clear);
    let sem_setup = incr(
        CE,
        copy::SET_SEMAPHORE_A,
        &[(SEM_VA >> 32) as u32, SEM_VA as u32, 0x5e11],
    );
    let launch = copy::LAUNCH_COPY_PITCH
        | copy::SEMAPHORE_FOUR_WORD << copy::LAUNCH_SEMAPHORE_SHIFT
        | 2 << copy::LAUNCH_INTERRUPT_SHIFT;
    ch.push(
        &rig,
        &[
            sem_setup,
            ce_copy(SRC_VA, DST_VA, 600, 333, 300, 100, launch),
        ]
        .concat(),
    );
    ch.wait(&rig);
    for line in 0..100usize {
        assert_eq!(
            read_virt(&rig, &dst, line as u64 * 333, 300),
            data[line * 600..line * 600 + 300],
            "line {line}"
        );
        assert_eq!(
            read_virt(&rig, &dst, line as u64 * 333 + 300, 33),
            vec![0u8; 33]
        );
    }
    assert_eq!((rig.r32(sem), rig.r32(sem + 4)), (0x5e11, 0));
    assert_ne!(rig.r32(sem + 8) | rig.r32(sem + 12), 0, "timestamp written");
    assert_ne!(rig.wait_intr() & pmc::INTR_PFIFO, 0);
    assert_eq!(rig.reg(pfifo::engine_intr(0)), pfifo::ENGINE_INTR_NOTIFY);
    assert_eq!(rig.gpu.counters().copy_bytes, 40000 + 300 * 100);
}

#[test]
fn copy_engine_physical_addressing_reaches_sysmem_and_vram() {
    let (rig, mut ch, src, _dst, _sem) = setup_host(0x4000);
    let data = pattern(0x3000, 2);
    write_virt(&rig, &src, 0, &data);
    // Virtual VRAM -> physical sysmem (noncoherent target), then physical sysmem -> physical VRAM.
    let to_sys = copy::ADDR_DST_PHYSICAL
        | copy::PHYS_TARGET_NONCOHERENT_SYSMEM << copy::ADDR_DST_TARGET_SHIFT;
    ch.push(
        &rig,
        &[
            incr(CE, copy::ADDRESSING_MODE, &[to_sys]),
            ce_copy(
                SRC_VA,
                SYS_IOVA + 0x100,
                0,
                0,
                0x3000,
                1,
                copy::LAUNCH_COPY_PITCH,
            ),
        ]
        .concat(),
    );
    ch.wait(&rig);
    let mut got = vec![0u8; 0x3000];
    rig.sys.read(0x100, &mut got);
    assert_eq!(got, data);
    let vram_dst = rig.alloc(0x3000, 0x1000);
    let sys_to_vram = copy::ADDR_SRC_PHYSICAL
        | copy::PHYS_TARGET_COHERENT_SYSMEM << copy::ADDR_SRC_TARGET_SHIFT
        | copy::ADDR_DST_PHYSICAL
        | copy::PHYS_TARGET_LOCAL_FB << copy::ADDR_DST_TARGET_SHIFT;
    ch.push(
        &rig,
        &[
            incr(CE, copy::ADDRESSING_MODE, &[sys_to_vram]),
            ce_copy(
                SYS_IOVA + 0x100,
                vram_dst,
                0,
                0,
                0x3000,
                1,
                copy::LAUNCH_COPY_PITCH,
            ),
        ]
        .concat(),
    );
    ch.wait(&rig);
    let mut back = vec![0u8; 0x3000];
    rig.gpu.vram().read(vram_dst, &mut back);
    assert_eq!(back, data);
}

/// Where a physical-mode copy points.
#[derive(Clone, Copy)]
enum At {
    /// The channel's own virtual buffer (SRC_VA or DST_VA).
    Virt,
    /// VRAM at this physical address.
    Vram(u64),
    /// System memory at this bus address.
    Sys(u64),
}

impl At {
    /// ADDRESSING_MODE bits for this end (`physical`, `shift`: the SRC or DST field).
    fn mode(self, physical: u32, shift: u32) -> u32 {
        match self {
            At::Virt => 0,
            At::Vram(_) => physical | copy::PHYS_TARGET_LOCAL_FB << shift,
            At::Sys(_) => physical | copy::PHYS_TARGET_NONCOHERENT_SYSMEM << shift,
        }
    }
    fn addr(self, va: u64) -> u64 {
        match self {
            At::Virt => va,
            At::Vram(a) | At::Sys(a) => a,
        }
    }
}

/// On a channel whose RAMFC leaves the physical-copy gate closed (every channel nouveau's
/// GF100 fill makes), a copy from `src` to `dst` with physical addressing moves no byte:
/// PBDMA ILLEGAL_MTHD names LAUNCH_DMA and its data on that channel, and the channel stops.
/// Returns the rig for further checks.
fn refused_physical_copy(src: At, dst: At, len: u32) -> (Rig, Chan) {
    let (rig, mut ch, src_pages, dst_pages, _sem) = setup(len as u64);
    let secret = pattern(len as usize, 9);
    write_virt(&rig, &src_pages, 0, &secret);
    // Victim data where a physical end points: VRAM and system memory hold `victim`.
    let victim = pattern(len as usize, 10);
    for at in [src, dst] {
        match at {
            At::Virt => {}
            At::Vram(a) => assert!(rig.gpu.vram().write(a, &victim)),
            At::Sys(a) => assert!(rig.sys.write(a - SYS_IOVA, &victim)),
        }
    }
    let mode = src.mode(copy::ADDR_SRC_PHYSICAL, copy::ADDR_SRC_TARGET_SHIFT)
        | dst.mode(copy::ADDR_DST_PHYSICAL, copy::ADDR_DST_TARGET_SHIFT);
    ch.push(
        &rig,
        &[
            incr(CE, copy::ADDRESSING_MODE, &[mode]),
            ce_copy(
                src.addr(SRC_VA),
                dst.addr(DST_VA),
                0,
                0,
                len,
                1,
                copy::LAUNCH_COPY_PITCH,
            ),
        ]
        .concat(),
    );
    assert_ne!(rig.wait_intr() & pmc::INTR_PFIFO, 0);
    assert_ne!(rig.reg(pfifo::INTR) & pfifo::INTR_PBDMA, 0);
    assert_eq!(rig.reg(pfifo::PBDMA_INTR_UNITS), 1);
    let base = pfifo::pbdma_base(0);
    assert_eq!(
        rig.reg(base + pfifo::PBDMA_INTR),
        pfifo::PBDMA_INTR_ILLEGAL_MTHD
    );
    assert_eq!(
        rig.reg(base + pfifo::PBDMA_METHOD),
        copy::LAUNCH_DMA | CE << pfifo::PBDMA_METHOD_SUBCH_SHIFT
    );
    assert_eq!(rig.reg(base + pfifo::PBDMA_DATA), copy::LAUNCH_COPY_PITCH);
    assert_eq!(rig.reg(base + pfifo::PBDMA_CHID), ch.chid);
    assert_eq!(
        rig.reg(pfifo::VM_FAULT_UNITS),
        0,
        "refused before any translation"
    );
    // Nothing moved: the virtual destination is still zero, the physical ends still hold the
    // victim's data.
    assert_eq!(rig.gpu.counters().copy_bytes, 0);
    if let At::Virt = dst {
        assert_eq!(
            read_virt(&rig, &dst_pages, 0, len as usize),
            vec![0u8; len as usize]
        );
    }
    for at in [src, dst] {
        let mut got = vec![0u8; len as usize];
        match at {
            At::Virt => continue,
            At::Vram(a) => assert!(rig.gpu.vram().read(a, &mut got)),
            At::Sys(a) => assert!(rig.sys.read(a - SYS_IOVA, &mut got)),
        }
        assert!(got == victim, "the physical end was written");
    }
    // The channel stopped at the copy.
    assert_ne!(ch.gp_get(&rig), ch.put);
    rig.set(base + pfifo::PBDMA_INTR, pfifo::PBDMA_INTR_ILLEGAL_MTHD);
    assert!(!rig.gpu.irq_line());
    (rig, ch)
}

#[test]
fn physical_copy_on_a_channel_without_the_gate_is_refused() {
    let victim_vram = 48 << 20;
    let victim_sys = SYS_IOVA + 0x10_0000;
    // Reads and writes of VRAM and system memory, and both ends physical.
    refused_physical_copy(At::Vram(victim_vram), At::Virt, 0x2000);
    refused_physical_copy(At::Virt, At::Vram(victim_vram), 0x2000);
    refused_physical_copy(At::Sys(victim_sys), At::Virt, 0x2000);
    refused_physical_copy(At::Virt, At::Sys(victim_sys), 0x2000);
    refused_physical_copy(
        At::Vram(victim_vram),
        At::Vram(victim_vram + 0x10_0000),
        0x1000,
    );
    // Host VRAM at 0 (where a host keeps its BAR instance blocks), one 64 KiB copy.
    refused_physical_copy(At::Vram(0), At::Virt, 0x1_0000);
}

#[test]
fn the_gate_is_per_channel_and_the_host_opens_it_in_ramfc() {
    let victim_vram = 48 << 20;
    let (mut rig, _guest) = refused_physical_copy(At::Vram(victim_vram), At::Virt, 0x1000);
    // A host driver's own channel on the same GPU, its RAMFC HCE_CTRL = PRIV_MODE before the
    // CHAN word is written: the same physical read goes through.
    let mut host = rig.channel_with(7, &[(ramfc::HCE_CTRL, ramfc::HCE_CTRL_PRIV_MODE)]);
    let dst = host.vm.buffer(&rig, DST_VA, 0x1000);
    rig.flush(host.vm.pd, false);
    let mode = copy::ADDR_SRC_PHYSICAL | copy::PHYS_TARGET_LOCAL_FB << copy::ADDR_SRC_TARGET_SHIFT;
    host.push(
        &rig,
        &[
            incr(
                CE,
                0,
                &[class::set_object(class::COPY0, pfifo::ENGINE_PCOPY0)],
            ),
            incr(CE, copy::ADDRESSING_MODE, &[mode]),
            ce_copy(
                victim_vram,
                DST_VA,
                0,
                0,
                0x1000,
                1,
                copy::LAUNCH_COPY_PITCH,
            ),
        ]
        .concat(),
    );
    host.wait(&rig);
    let mut want = vec![0u8; 0x1000];
    rig.gpu.vram().read(victim_vram, &mut want);
    let mut got = vec![0u8; 0x1000];
    rig.gpu.vram().read(dst, &mut got);
    assert_eq!(got, want);
    assert_eq!(rig.gpu.counters().copy_bytes, 0x1000);
    // Virtual copies need no gate: a guest-like channel (nouveau's RAMFC) still copies.
    let (rig, mut ch, src, dst, _sem) = setup(0x1000);
    let data = pattern(0x1000, 11);
    write_virt(&rig, &src, 0, &data);
    ch.push(
        &rig,
        &ce_copy(SRC_VA, DST_VA, 0, 0, 0x1000, 1, copy::LAUNCH_COPY_PITCH),
    );
    ch.wait(&rig);
    assert_eq!(read_virt(&rig, &dst, 0, 0x1000), data);
}

#[test]
fn copy_fault_reports_pcopy0_and_stops_the_channel() {
    let (rig, mut ch, _src, dst, _sem) = setup(0x2000);
    // Source runs off the end of the mapping after 0x2000 bytes.
    ch.push(
        &rig,
        &ce_copy(SRC_VA, DST_VA, 0, 0, 0x3000, 1, copy::LAUNCH_COPY_PITCH),
    );
    rig.wait_intr();
    let unit = pfifo::FAULT_UNIT_PCOPY0;
    assert_eq!(rig.reg(pfifo::VM_FAULT_UNITS), 1 << unit);
    assert_eq!(
        rig.reg(pfifo::VmFaultAddrLo::offset(unit)),
        (SRC_VA + 0x2000) as u32
    );
    assert!(!pfifo::VmFaultInfo::from_raw(rig.reg(pfifo::VmFaultInfo::offset(unit))).write());
    // What was copied before the fault stays copied (zeros here), nothing beyond.
    assert_eq!(read_virt(&rig, &dst, 0, 4), [0; 4]);
    assert_ne!(ch.gp_get(&rig), ch.put);
    // Read-only destination.
    let (rig, mut ch, _src, _dst, _sem) = setup(0x1000);
    let ro = rig.alloc(0x1000, 0x1000);
    ch.vm.map(&rig, 0x3800_0000, ro, vm::PTE_APER_VRAM, true);
    rig.flush(ch.vm.pd, false);
    ch.push(
        &rig,
        &ce_copy(SRC_VA, 0x3800_0000, 0, 0, 16, 1, copy::LAUNCH_COPY_PITCH),
    );
    rig.wait_intr();
    let info = pfifo::VmFaultInfo::from_raw(
        rig.reg(pfifo::VmFaultInfo::offset(pfifo::FAULT_UNIT_PCOPY0)),
    );
    assert_eq!(info.reason(), mmu::FAULT_PAGE_READ_ONLY);
    assert!(info.write());
}

#[test]
fn m2mf_copy_inline_upload_semaphore_and_notify() {
    let len = 0x6000;
    let (rig, mut ch, src, dst, sem) = setup(len);
    let data = pattern(len as usize, 3);
    write_virt(&rig, &src, 0, &data);
    // Gdev-style linear copy: 5 lines of 4 KiB with a one-word semaphore release.
    let pb = [
        incr(M2MF, m2mf::OFFSET_OUT_UPPER, &[0, DST_VA as u32 + 8]),
        incr(
            M2MF,
            m2mf::OFFSET_IN_UPPER,
            &[0, SRC_VA as u32 + 4, 4096, 4096, 4096, 5],
        ),
        incr(M2MF, m2mf::SET_SEMAPHORE_A, &[0, SEM_VA as u32, 77]),
        incr(M2MF, m2mf::LAUNCH_DMA, &[m2mf::LAUNCH_COPY_PITCH_RELEASE]),
    ]
    .concat();
    ch.push(&rig, &pb);
    ch.wait(&rig);
    assert_eq!(read_virt(&rig, &dst, 8, 5 * 4096), data[4..4 + 5 * 4096]);
    assert_eq!((rig.r32(sem), rig.r32(sem + 4)), (77, 0));

    // Mesa-style inline upload of 10 bytes (3 data words, the last one partial), 2 lines with
    // a pitch: LINE_LENGTH 5, LINE_COUNT 2, PITCH_OUT 16.
    let up = [
        incr(M2MF, m2mf::OFFSET_OUT_UPPER, &[0, DST_VA as u32 + 0x5800]),
        incr(M2MF, m2mf::PITCH_OUT, &[16]),
        incr(M2MF, m2mf::LINE_LENGTH_IN, &[5, 2]),
        incr(M2MF, m2mf::LAUNCH_DMA, &[m2mf::LAUNCH_INLINE_PITCH]),
        nonincr(
            M2MF,
            m2mf::LOAD_INLINE_DATA,
            &[0x4433_2211, 0x0000_0055, 0x0000_aa99, 0xddcc_bbee],
        ),
    ]
    .concat();
    ch.push(&rig, &up);
    ch.wait(&rig);
    assert_eq!(
        read_virt(&rig, &dst, 0x5800, 8),
        [0x11, 0x22, 0x33, 0x44, 0x55, 0, 0, 0]
    );
    assert_eq!(
        read_virt(&rig, &dst, 0x5810, 8),
        [0x99, 0xaa, 0, 0, 0xee, 0, 0, 0]
    );

    // NOTIFY with WRITE_THEN_AWAKEN: notifier written, PGRAPH NOTIFY raised.
    ch.push(
        &rig,
        &incr(
            M2MF,
            m2mf::SET_NOTIFY_A,
            &[0, SEM_VA as u32 + 0x100, m2mf::NOTIFY_WRITE_THEN_AWAKEN],
        ),
    );
    ch.wait(&rig);
    assert_ne!(rig.wait_intr() & pmc::INTR_PGRAPH, 0);
    assert_eq!(rig.reg(pgraph::INTR), pgraph::INTR_NOTIFY);
    assert_ne!(rig.r32(sem + 0x100) | rig.r32(sem + 0x104), 0);
    assert_eq!(rig.gpu.counters().m2mf_bytes, 5 * 4096 + 10);
}

/// An endless copy (4 KiB lines, pitch 0, 2^32 - 1 of them): the copy engine stays on the
/// channel, ENG_STATE[PCOPY0] names it, and a kick (preempt) stays pending, as on a GF100
/// whose engine does not reach a switch point (nouveau then sees CTXSW_TIMEOUT). Clearing
/// PCOPY0's PMC_ENABLE bit resets the engine: the copy is abandoned, the kick completes,
/// the engine is idle, and after it is enabled again the channel (rebound) copies normally.
#[test]
fn endless_copy_holds_the_engine_until_it_is_reset() {
    let len = 0x2000;
    let (rig, mut ch, src, dst, _sem) = setup(len);
    let endless = ce_copy(SRC_VA, DST_VA, 0, 0, 0x1000, u32::MAX, copy::LAUNCH_COPY_PITCH);
    ch.push(&rig, &endless);
    let state = pfifo::EngState::offset(pfifo::ENGINE_PCOPY0);
    wait_until("the copy engine is busy on the channel", || {
        let s = pfifo::EngState::from_raw(rig.reg(state));
        s.busy() && s.chid() == ch.chid
    });
    rig.set(pfifo::ChanState::offset(ch.chid), 0);
    rig.set(pfifo::KICK, ch.chid);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(rig.reg(pfifo::KICK), ch.chid | pfifo::KICK_PENDING, "an engine on endless work does not let the kick complete");
    assert!(pfifo::EngState::from_raw(rig.reg(state)).busy());
    assert_eq!(rig.reg(pfifo::EngState::offset(pfifo::ENGINE_PGRAPH)), 0, "PGRAPH is idle");
    let copied = rig.gpu.counters().copy_bytes;

    rig.set(pmc::ENABLE, pmc::ENABLE_ALL & !pmc::ENABLE_PCOPY0);
    wait_until("the kick completes after the engine reset", || rig.reg(pfifo::KICK) == ch.chid);
    assert_eq!(rig.reg(state), 0, "the engine left the channel");
    rig.set(pmc::ENABLE, pmc::ENABLE_ALL);
    settle();
    let after = rig.gpu.counters().copy_bytes;
    settle();
    assert_eq!(rig.gpu.counters().copy_bytes, after, "the abandoned copy does not go on");
    assert!(after >= copied);
    assert_ne!(ch.gp_get(&rig), ch.put, "the entry holding the copy never completed");

    // The channel's context on the engine is gone: rebound, it sets its object up again and
    // copies as before.
    rig.w32(ch.vm.inst + ramfc::GP_GET as u64, 0);
    ch.rebind(&rig);
    rig.set(pfifo::ChanState::offset(ch.chid), pfifo::ChanState::default().with_runnable(true).raw());
    let data = pattern(len as usize, 7);
    write_virt(&rig, &src, 0, &data);
    ch.push(
        &rig,
        &[
            incr(CE, 0, &[class::set_object(class::COPY0, pfifo::ENGINE_PCOPY0)]),
            ce_copy(SRC_VA, DST_VA, 0, 0, len as u32, 0, copy::LAUNCH_COPY_PITCH & !copy::LAUNCH_MULTI_LINE),
        ]
        .concat(),
    );
    ch.wait(&rig);
    assert!(read_virt(&rig, &dst, 0, len as usize) == data, "the copy after the reset is exact");
}
