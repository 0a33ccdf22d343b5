//! Lazy shadowing and a channel that is already past its doorbell (issue 13, item 3): the
//! channel waits on a semaphore acquire, the guest moves a page under a mapped VA (PTE rewrite
//! + TLB flush), then the CPU releases the semaphore with a plain memory write the mediator
//! never sees. The channel's next write must land at the new translation and nothing at the
//! old one, in lazy mode as in naive mode; and with the channel idle, lazy mode still leaves
//! the sync to the next doorbell.

use gpuvm_guest_driver::driver::vm::Aper;
use gpuvm_guest_driver::driver::Gpu;
use gpuvm_guest_driver::transport::mediated::MediatedHost;
use gpuvm_uapi::gf100::host;
use std::time::{Duration, Instant};

/// Model VRAM (as in mediated.rs).
const VRAM_MIB: u64 = 512;
/// What the released channel writes (the semaphore payload of its release).
const MARK: u32 = 0x5eaf_00d5;
/// How long the acquire is given to be seen blocking before the guest edits its tables.
const SETTLE: Duration = Duration::from_millis(100);
/// How long the released channel is given to write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

fn blocked_channel_sees_the_new_translation(lazy: bool) {
    let mode = if lazy { "lazy" } else { "naive" };
    let host = MediatedHost::new(VRAM_MIB).expect("host bring-up");
    host.set_lazy_shadow(lazy);
    let v = host.create(1).expect("gpuvm-1");
    let t = host.open(&v).expect("open");
    let mut g = Gpu::open(Box::new(t), 0, true).expect("driver");
    // System memory the CPU writes and reads directly: the semaphore, the page the VA maps
    // first (old) and the page it is moved to (new).
    let mut sem = g.malloc_host(4096).expect("semaphore page");
    let old = g.malloc_host(4096).expect("old page");
    let new = g.malloc_host(4096).expect("new page");
    sem.buf.write32_volatile(0, 0);
    let va = old.va;
    let split = |a: u64| ((a >> 32) as u32, a as u32);
    // Acquire (wait until the semaphore word is 1), then a release of MARK at `va`: both
    // submitted (doorbells rung) before the tables change.
    let (sh, sl) = split(sem.va);
    g.raw_submit(0, host::SEMAPHORE_A, &[sh, sl, 1, host::SEM_OP_ACQUIRE]).expect("acquire");
    let (vh, vl) = split(va);
    g.raw_submit(0, host::SEMAPHORE_A, &[vh, vl, MARK, host::SEMAPHORE_D_FENCE_RELEASE]).expect("release");
    std::thread::sleep(SETTLE);
    assert_eq!(old.buf.read32_volatile(0), 0, "{mode}: the channel waits on its acquire");
    // The guest moves `va` onto the new page: PTE rewrite and TLB flush (trapped, seen).
    g.raw_remap(va, new.buf.pages()[0], Aper::Sys).expect("remap + flush");
    let syncs_before_release = v.stats().syncs;
    // The CPU releases the channel with a plain write: no trap, no doorbell, no kick.
    sem.buf.write32_volatile(0, 1);
    let start = Instant::now();
    while old.buf.read32_volatile(0) != MARK && new.buf.read32_volatile(0) != MARK {
        assert!(start.elapsed() < WRITE_TIMEOUT, "{mode}: the released channel wrote nowhere in {WRITE_TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    // A late write to the other page would show within the settle time.
    std::thread::sleep(SETTLE);
    let (at_old, at_new) = (old.buf.read32_volatile(0), new.buf.read32_volatile(0));
    println!("{mode}: old page {at_old:#x}, new page {at_new:#x}; syncs {} -> {}", syncs_before_release, v.stats().syncs);
    assert_eq!(at_old, 0, "{mode}: the write went through the stale translation to the old page");
    assert_eq!(at_new, MARK, "{mode}: the write reached the new page");
    assert_eq!(v.stats().syncs, syncs_before_release, "{mode}: no sync was needed after the CPU's release");
    g.sync().expect("the channel goes on");
    // Lazy stays lazy for an idle channel: once its work is done (GP_GET written back after the
    // fence's entry: given the settle time), a flush syncs nothing and the next doorbell does.
    std::thread::sleep(SETTLE);
    let before = v.stats().syncs;
    g.raw_remap(va, old.buf.pages()[0], Aper::Sys).expect("remap back + flush");
    let at_flush = v.stats().syncs;
    g.raw_submit(0, host::SEMAPHORE_A, &[vh, vl, MARK + 1, host::SEMAPHORE_D_FENCE_RELEASE]).expect("second release");
    let at_doorbell = v.stats().syncs;
    g.sync().expect("second release done");
    assert_eq!((old.buf.read32_volatile(0), new.buf.read32_volatile(0)), (MARK + 1, MARK), "{mode}: the second write used the moved-back page");
    if lazy {
        assert_eq!((at_flush, at_doorbell), (before, before + 1), "lazy: an idle channel's flush waits for the doorbell");
    } else {
        assert_eq!(at_flush, before + 1, "naive: the flush synced");
    }
    assert!(host.host_errors().is_empty(), "{mode}: host errors {:?}", host.host_errors());
    drop(g);
}

#[test]
fn lazy_blocked_channel_sees_the_new_translation() {
    blocked_channel_sees_the_new_translation(true);
}

#[test]
fn naive_blocked_channel_sees_the_new_translation() {
    blocked_channel_sees_the_new_translation(false);
}
