//! PFIFO: channel + runlist + doorbell -> methods executed, every header kind, semaphores,
//! non-stall interrupts, kick, time slicing.

mod common;

use common::*;
use gf100_model::gpuvm_uapi::gf100::*;
use gf100_model::ModelConfig;

const SEM_VA: u64 = 0x2000_0000;

fn sem_chan(rig: &mut Rig, chid: u32) -> (Chan, u64) {
    let mut ch = rig.channel(chid);
    let pa = ch.vm.buffer(rig, SEM_VA, 0x1000);
    rig.flush(ch.vm.pd, false);
    (ch, pa)
}

#[test]
fn doorbell_runs_methods_and_writes_gp_get() {
    let mut rig = Rig::new();
    let (mut ch, sem) = sem_chan(&mut rig, 3);
    let before = rig.reg(ptimer::TIME_LOW) as u64 | (rig.reg(ptimer::TIME_HIGH) as u64) << 32;
    ch.push(&rig, &sem_release(SEM_VA + 0x10, 0x1234, false));
    ch.wait(&rig);
    assert_eq!(ch.gp_get(&rig), 1);
    assert_eq!(rig.r32(sem + 0x10), 0x1234);
    assert_eq!(rig.r32(sem + 0x14), 0);
    let t = rig.r32(sem + 0x18) as u64 | (rig.r32(sem + 0x1c) as u64) << 32;
    assert!(
        t >= before && t & 0x1f == 0,
        "timestamp {t} before {before}"
    );
    // Short release: payload only.
    ch.push(&rig, &sem_release(SEM_VA + 0x40, 7, true));
    ch.wait(&rig);
    assert_eq!((rig.r32(sem + 0x40), rig.r32(sem + 0x44)), (7, 0));
    // USERD progress words.
    let end = PB_VA as u32 + 256 + 5 * 4;
    assert_eq!(rig.r32(ch.userd + userd::GET as u64), end);
    assert_eq!(rig.r32(ch.userd + userd::TOP_LEVEL_GET as u64), end);
    assert_ne!(
        rig.r32(ch.userd + userd::TOP_LEVEL_GET_HI as u64) & userd::TOP_LEVEL_GET_HI_VALID,
        0
    );
    let c = rig.gpu.counters();
    assert_eq!(
        (c.gp_entries, c.methods, c.doorbells, c.semaphore_releases),
        (2, 8, 2, 2)
    );
    // SET_REFERENCE is visible in USERD.
    ch.push(&rig, &incr(0, host::SET_REFERENCE, &[0xabc]));
    ch.wait(&rig);
    assert_eq!(rig.r32(ch.userd + userd::REF as u64), 0xabc);
}

#[test]
fn no_doorbell_not_runnable_or_not_listed_means_no_execution() {
    let mut rig = Rig::new();
    let (mut ch, sem) = sem_chan(&mut rig, 0);

    // Queued but not rung.
    ch.queue(&rig, &sem_release(SEM_VA, 1, true));
    rig.w32(ch.userd + userd::GP_PUT as u64, ch.put); // GP_PUT in memory alone is no doorbell
    settle();
    assert_eq!((ch.gp_get(&rig), rig.r32(sem)), (0, 0));
    ch.ring(&rig);
    ch.wait(&rig);
    assert_eq!(rig.r32(sem), 1);

    // Not runnable: the doorbell is remembered until the channel is enabled.
    rig.set(pfifo::ChanState::offset(0), 0);
    ch.push(&rig, &sem_release(SEM_VA, 2, true));
    settle();
    assert_eq!(rig.r32(sem), 1);
    rig.set(pfifo::ChanState::offset(0), pfifo::ChanState::INITIAL.raw());
    ch.wait(&rig);
    assert_eq!(rig.r32(sem), 2);

    // Not on the runlist.
    rig.runlist.clear();
    rig.commit_runlist();
    ch.push(&rig, &sem_release(SEM_VA, 3, true));
    settle();
    assert_eq!(rig.r32(sem), 2);
    rig.runlist.push(0);
    rig.commit_runlist();
    ch.wait(&rig);
    assert_eq!(rig.r32(sem), 3);

    // PFIFO disabled in PMC_ENABLE: registers read 0xbad0da00 and nothing runs.
    rig.set(pmc::ENABLE, pmc::ENABLE_ALL & !pmc::ENABLE_PFIFO);
    assert_eq!(rig.reg(pfifo::INTR_EN), bad::UNIT_DISABLED);
    assert!(rig.gpu.counters().runlist_commits >= 3);
}

#[test]
fn every_header_kind_decodes() {
    let mut rig = Rig::new();
    let (mut ch, sem) = sem_chan(&mut rig, 5);
    let va = SEM_VA + 0x100;
    let short_release = host::SEM_OP_RELEASE | host::SEMAPHORE_D_RELEASE_SIZE_4;
    let mut pb = vec![0u32; 4]; // NOPs (all-zero words)
                                // Subdevice-mask operations (GRP0, TERT 1..3) are no-ops.
    pb.extend([1 << 16 | 0x10, 2 << 16, 3 << 16]);
    // INCREASE_ONCE: A then B, B.
    pb.extend([
        pushbuf::incr_once(0, host::SEMAPHORE_A, 3),
        (va >> 32) as u32,
        0,
        va as u32,
    ]);
    // NON_INCREASING: C written twice, last wins.
    pb.extend(nonincr(0, host::SEMAPHORE_C, &[0x111, 0x222]));
    pb.extend(incr(0, host::SEMAPHORE_D, &[short_release]));
    // IMMEDIATE payload, old-format increasing D.
    pb.extend([pushbuf::immd(0, host::SEMAPHORE_C, 0x1abc)]);
    pb.extend([1 << 18 | (host::SEMAPHORE_B & 0x1ffc), (va + 4) as u32]);
    pb.extend(incr(0, host::SEMAPHORE_D, &[short_release]));
    // Old-format non-increasing (GRP2): C twice.
    pb.extend([2 << 29 | 2 << 18 | host::SEMAPHORE_C, 0x333, 0x444]);
    pb.extend(incr(0, host::SEMAPHORE_B, &[(va + 8) as u32]));
    pb.extend(incr(0, host::SEMAPHORE_D, &[short_release]));
    // END_PB_SEGMENT: the rest of the segment (an illegal opcode) is skipped.
    pb.extend([7 << 29, 6 << 29]);
    ch.push(&rig, &pb);
    ch.wait(&rig);
    assert_eq!(
        [
            rig.r32(sem + 0x100),
            rig.r32(sem + 0x104),
            rig.r32(sem + 0x108)
        ],
        [0x222, 0x1abc, 0x444]
    );
    assert_eq!(rig.reg(pfifo::PBDMA_INTR_UNITS), 0);
    // Zero-length GPFIFO entry with the NOP opcode, and a method split across two segments.
    ch.queue(&rig, &[]);
    ch.queue(
        &rig,
        &[
            pushbuf::incr(0, host::SEMAPHORE_A, 4),
            (va >> 32) as u32,
            (va + 12) as u32,
        ],
    );
    ch.push(&rig, &[0x99, short_release]);
    ch.wait(&rig);
    assert_eq!(rig.r32(sem + 0x10c), 0x99);
}

#[test]
fn acquire_waits_for_another_channel_and_nonstall_interrupt() {
    let mut rig = Rig::new();
    let (mut a, _) = sem_chan(&mut rig, 1);
    let mut b = rig.channel(2);
    // Both channels map the same semaphore page.
    let shared = rig.alloc(0x1000, 0x1000);
    a.vm.map(&rig, SEM_VA, shared, vm::PTE_APER_VRAM, false);
    b.vm.map(&rig, SEM_VA, shared, vm::PTE_APER_VRAM, false);
    rig.flush(a.vm.pd, false);
    rig.flush(b.vm.pd, false);

    let mut pb = sem_acquire(SEM_VA, 5);
    pb.extend(sem_release(SEM_VA + 0x20, 0xa, true));
    pb.extend(incr(0, host::NON_STALL_INTERRUPT, &[0]));
    a.push(&rig, &pb);
    // PFIFO marks the channel once it found the acquire unsatisfied; the mark stays while
    // the channel waits, so what follows sees the blocked channel.
    let acquire_pending = || pfifo::ChanState::from_raw(rig.reg(pfifo::ChanState::offset(1))).acquire_pending();
    wait_until("channel 1 blocked on its acquire", acquire_pending);
    assert_eq!((a.gp_get(&rig), rig.r32(shared + 0x20)), (0, 0));
    assert!(acquire_pending());
    assert!(!rig.gpu.irq_line());

    b.push(&rig, &sem_release(SEM_VA, 5, true));
    a.wait(&rig);
    assert_eq!(rig.r32(shared + 0x20), 0xa);
    let intr = rig.wait_intr();
    assert_ne!(intr & pmc::INTR_PFIFO, 0);
    assert_ne!(rig.reg(pfifo::INTR) & pfifo::INTR_ENGINE, 0);
    assert_eq!(rig.reg(pfifo::engine_intr(0)), pfifo::ENGINE_INTR_NOTIFY);
    rig.set(pfifo::engine_intr(0), pfifo::ENGINE_INTR_NOTIFY);
    assert!(!rig.gpu.irq_line());
    assert_eq!(rig.reg(pfifo::INTR) & pfifo::INTR_ENGINE, 0);

    // ACQ_GEQ and ACQ_AND.
    let d_geq = host::SEM_OP_ACQ_GEQ;
    a.push(
        &rig,
        &incr(0, host::SEMAPHORE_A, &[0, SEM_VA as u32, 4, d_geq]),
    );
    a.wait(&rig);
    a.push(
        &rig,
        &incr(0, host::SEMAPHORE_A, &[0, SEM_VA as u32, 6, d_geq]),
    );
    settle();
    assert_ne!(a.gp_get(&rig), a.put);
    b.push(&rig, &sem_release(SEM_VA, 0x8000_0006, true));
    settle();
    assert_ne!(a.gp_get(&rig), a.put, "GEQ compares as signed difference");
    b.push(&rig, &sem_release(SEM_VA, 6, true));
    a.wait(&rig);
    a.push(
        &rig,
        &incr(
            0,
            host::SEMAPHORE_A,
            &[0, SEM_VA as u32, 2, host::SEM_OP_ACQ_AND],
        ),
    );
    a.wait(&rig);
    // The interrupt is masked by PMC INTR_EN.
    rig.set(pmc::INTR_EN_HOST, 0);
    a.push(&rig, &incr(0, host::NON_STALL_INTERRUPT, &[0]));
    a.wait(&rig);
    assert!(!rig.gpu.irq_line());
    assert_ne!(rig.reg(pmc::INTR_HOST) & pmc::INTR_PFIFO, 0);
    rig.set(pmc::INTR_EN_HOST, pmc::INTR_EN_HW);
    assert!(rig.gpu.irq_line());
}

#[test]
fn kick_and_time_slicing() {
    // One PBDMA worker: the small channel gets to run before the busy one is done only if
    // PFIFO ends the busy channel's timeslice.
    let mut rig = Rig::with_config(ModelConfig {
        vram_bytes: 64 << 20,
        pbdma_threads: 1,
        ..ModelConfig::default()
    });
    let mut busy = rig.channel(10);
    let (mut small, sem) = sem_chan(&mut rig, 11);
    // The busy channel: 300 M2MF copies of 256 KiB each (far longer than one timeslice),
    // then a four-word release that records when it got there.
    let src = busy.vm.buffer(&rig, 0x3000_0000, 256 << 10);
    let _ = src;
    busy.vm.buffer(&rig, 0x3100_0000, 256 << 10);
    let busy_sem = busy.vm.buffer(&rig, SEM_VA, 0x1000);
    rig.flush(busy.vm.pd, false);
    // Both doorbells ring while PFIFO is off, so that both channels have work from the
    // start however late this thread gets to ring the second one.
    rig.set(pfifo::CTRL, 0);
    busy.push(&rig, &incr(1, 0, &[class::M2MF]));
    let copy: Vec<u32> = [
        incr(1, m2mf::OFFSET_OUT_UPPER, &[0, 0x3100_0000]),
        incr(
            1,
            m2mf::OFFSET_IN_UPPER,
            &[0, 0x3000_0000, 4096, 4096, 4096, 64],
        ),
        incr(1, m2mf::LAUNCH_DMA, &[m2mf::LAUNCH_COPY_PITCH]),
    ]
    .concat();
    for _ in 0..300 {
        busy.queue(&rig, &copy);
    }
    busy.queue(&rig, &sem_release(SEM_VA, 1, false));
    busy.ring(&rig);
    small.push(&rig, &sem_release(SEM_VA, 42, false));
    rig.set(pfifo::CTRL, pfifo::CTRL_ENABLE);
    small.wait(&rig);
    assert_eq!(rig.r32(sem), 42);
    busy.wait(&rig);
    assert_eq!(rig.r32(busy_sem), 1);
    // The GPU's timestamps give the order, whenever this thread looked.
    let (small_done, busy_done) = (release_time(&rig, sem), release_time(&rig, busy_sem));
    assert!(
        small_done < busy_done,
        "the small channel should not wait for the busy one (done at {small_done} ns, \
         the busy one at {busy_done} ns)"
    );
    // Kick: reads back the chid once it is not executing.
    rig.set(pfifo::KICK, 10);
    wait_until("kick", || rig.reg(pfifo::KICK) == 10);
    assert_eq!(rig.gpu.counters().m2mf_bytes, 300 * (256 << 10));
}

#[test]
fn channel_tlb_is_stale_until_host_mem_op_invalidate() {
    let mut rig = Rig::new();
    let mut ch = rig.channel(127); // the last channel: USERD at the end of the poll area
    let old = rig.alloc(0x1000, 0x1000);
    let new = rig.alloc(0x1000, 0x1000);
    ch.vm.map(&rig, SEM_VA, old, vm::PTE_APER_VRAM, false);
    rig.flush(ch.vm.pd, false);
    ch.push(&rig, &sem_release(SEM_VA, 1, true));
    ch.wait(&rig);
    assert_eq!(rig.r32(old), 1);
    // Remap without any flush: the channel still writes the old page.
    ch.vm.map(&rig, SEM_VA, new, vm::PTE_APER_VRAM, false);
    ch.push(&rig, &sem_release(SEM_VA, 2, true));
    ch.wait(&rig);
    assert_eq!((rig.r32(old), rig.r32(new)), (2, 0));
    // MEM_OP TLB invalidate of this PD from the pushbuffer itself.
    let op_a = ((ch.vm.pd >> 12) as u32) << host::MEM_OP_A_TLB_PDB_SHIFT;
    let op_b = host::MEM_OP_MMU_TLB_INVALIDATE << host::MEM_OP_B_OP_SHIFT;
    let mut pb = incr(0, host::MEM_OP_A, &[op_a, op_b]);
    pb.extend(sem_release(SEM_VA, 3, true));
    ch.push(&rig, &pb);
    ch.wait(&rig);
    assert_eq!((rig.r32(old), rig.r32(new)), (2, 3));
}

#[test]
fn rebinding_the_same_instance_resumes_at_the_saved_gp_get() {
    let mut rig = Rig::new();
    let (mut ch, sem) = sem_chan(&mut rig, 8);
    ch.push(
        &rig,
        &incr(
            0,
            host::SEMAPHORE_A,
            &[
                0,
                SEM_VA as u32,
                1,
                host::SEM_OP_RELEASE | host::SEMAPHORE_D_RELEASE_SIZE_4,
            ],
        ),
    );
    ch.wait(&rig);
    // An acquire-increment pattern: entry 1 releases 2 only if it runs exactly once after 1.
    rig.set(pfifo::ChanInst::offset(8), pfifo::ChanInst::bound(ch.vm.inst).raw());
    assert_eq!(rig.r32(ch.vm.inst + ramfc::GP_GET as u64), 1);
    rig.w32(sem, 0);
    let mut pb = sem_acquire(SEM_VA, 0);
    pb.extend(sem_release(SEM_VA, 2, true));
    ch.push(&rig, &pb);
    ch.wait(&rig);
    // Had the rebind restarted at entry 0, the release of 1 would have run again and the
    // acquire of 0 would never complete.
    assert_eq!(rig.r32(sem), 2);
    assert_eq!(rig.gpu.counters().gp_entries, 2);
}

/// RAMFC is the channel's state while it is switched out: a RAMFC word written while the
/// channel is loaded (here its USERD pointer) takes effect only once a kick has switched it
/// out, at its next timeslice; it resumes at the GP_GET saved in RAMFC.
#[test]
fn a_kicked_channel_is_restored_from_ramfc() {
    let mut rig = Rig::new();
    let (mut ch, sem) = sem_chan(&mut rig, 5);
    ch.push(&rig, &sem_release(SEM_VA, 1, true));
    ch.wait(&rig);
    // A second USERD page, already holding the ring position.
    let other = rig.alloc(0x1000, 0x1000);
    for off in (0..0x1000).step_by(4) {
        rig.w32(other + off, 0);
    }
    rig.w32(other + userd::GP_PUT as u64, ch.put);
    rig.w32(ch.vm.inst + ramfc::USERD_LO as u64, other as u32);
    rig.w32(ch.vm.inst + ramfc::USERD_HI as u64, (other >> 32) as u32);
    // Still loaded: the channel keeps the USERD it was restored with.
    ch.push(&rig, &sem_release(SEM_VA, 2, true));
    ch.wait(&rig);
    assert_eq!((rig.r32(sem), rig.r32(other + userd::GP_GET as u64)), (2, 0));
    // Kicked: restored from RAMFC at its next slice, so it reads GP_PUT from the new page and
    // writes its progress there; the old page is no longer touched.
    rig.set(pfifo::KICK, 5);
    wait_until("kick", || rig.reg(pfifo::KICK) == 5);
    let old_get = ch.gp_get(&rig);
    ch.queue(&rig, &sem_release(SEM_VA, 3, true));
    rig.w32(other + userd::GP_PUT as u64, ch.put);
    ch.ring(&rig);
    wait_until("the release through the new USERD", || rig.r32(sem) == 3);
    wait_until("GP_GET in the new USERD", || rig.r32(other + userd::GP_GET as u64) == ch.put);
    assert_eq!(ch.gp_get(&rig), old_get, "the old USERD page is left alone");
    assert_eq!(rig.r32(ch.vm.inst + ramfc::GP_GET as u64), ch.put, "RAMFC holds the position");
    assert_eq!(rig.gpu.counters().gp_entries, 3, "no entry ran twice");
}

#[test]
fn chained_channels_across_workers() {
    // Channel i may do step k only after channel i-1 did: a pipeline of acquires/releases
    // that needs wake-ups across PBDMA workers and channels to finish.
    let mut rig = Rig::new();
    let shared = rig.alloc(0x1000, 0x1000);
    let n_chans = 6u32;
    let steps = 60u32;
    let mut chans: Vec<Chan> = (0..n_chans).map(|i| rig.channel(20 + i)).collect();
    for ch in chans.iter_mut() {
        ch.vm.map(&rig, SEM_VA, shared, vm::PTE_APER_VRAM, false);
        rig.flush(ch.vm.pd, false);
    }
    // Submit the later stages first so that they must wait.
    for (i, ch) in chans.iter_mut().enumerate().rev() {
        for k in 1..=steps {
            let mut pb = Vec::new();
            if i > 0 {
                let prev = SEM_VA + 4 * (i as u64 - 1);
                pb.extend(incr(
                    0,
                    host::SEMAPHORE_A,
                    &[0, prev as u32, k, host::SEM_OP_ACQ_GEQ],
                ));
            }
            pb.extend(sem_release(SEM_VA + 4 * i as u64, k, true));
            ch.queue(&rig, &pb);
        }
        ch.ring(&rig);
    }
    for ch in &chans {
        ch.wait(&rig);
    }
    for i in 0..n_chans as u64 {
        assert_eq!(rig.r32(shared + 4 * i), steps);
    }
    assert_eq!(rig.gpu.counters().gp_entries, (n_chans * steps) as u64);
}
