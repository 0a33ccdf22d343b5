//! Lazy shadowing and a channel that is already past its doorbell (issue 13, item 3;
//! `hostile::lazy_in_flight`, also run in the VM by `vgpu-lazy-inflight`): the channel waits on
//! a semaphore acquire, the guest moves a page under a mapped VA (PTE rewrite + TLB flush),
//! then the CPU releases the semaphore with a plain memory write the mediator never sees. The
//! channel's next write must land at the new translation and nothing at the old one, in lazy
//! mode as in naive mode; and with the channel idle, lazy mode still leaves the sync to the
//! next doorbell.

use gpuvm_guest_driver::hostile::{self, Checks};
use gpuvm_guest_driver::transport::mediated::{HostileTarget as Mediated, MediatedHost};

/// Model VRAM (as in mediated.rs).
const VRAM_MIB: u64 = 512;

fn blocked_channel_sees_the_new_translation(lazy: bool) {
    let host = MediatedHost::new(VRAM_MIB).expect("host bring-up");
    host.set_lazy_shadow(lazy);
    let v = Mediated { host: &host, v: host.create(1).expect("gpuvm-1") };
    let mut c = Checks::default();
    hostile::lazy_in_flight(&v, &mut c, lazy).expect("lazy_in_flight ran");
    assert!(c.failed == 0 && c.passed == 6, "lazy={lazy}: {} checks failed, {} passed", c.failed, c.passed);
    assert!(host.host_errors().is_empty(), "lazy={lazy}: host errors {:?}", host.host_errors());
}

#[test]
fn lazy_blocked_channel_sees_the_new_translation() {
    blocked_channel_sees_the_new_translation(true);
}

#[test]
fn naive_blocked_channel_sees_the_new_translation() {
    blocked_channel_sees_the_new_translation(false);
}
