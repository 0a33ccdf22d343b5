//! `irqs`: eventfds installed with SET_IRQS really get signalled, by the right index only, and
//! stop being signalled once removed or torn down.

use crate::device::{Device, DeviceExt, EventFd};
use crate::errno::Errno;
use crate::report::Report;
use crate::sys::*;

/// How long a fired interrupt may take to show on its eventfd.
const FIRE_MS: i32 = 2000;
/// How long to watch an eventfd that must stay quiet.
const QUIET_MS: i32 = 50;

struct Fds {
    intx: EventFd,
    msi: EventFd,
    req: EventFd,
}

impl Fds {
    /// Expects exactly `want` = (INTx, MSI, REQ) counts, waiting for the non-zero ones.
    fn expect(&self, r: &mut Report, after: &str, want: [u64; 3]) {
        let fds = [&self.intx, &self.msi, &self.req];
        for (i, (fd, w)) in fds.iter().zip(want).enumerate() {
            fd.wait(if w > 0 { FIRE_MS } else { QUIET_MS });
            let name = ["INTx", "MSI", "REQ"][i];
            r.eq(&format!("{name} eventfd count after {after}"), fd.take(), w);
        }
    }
}

pub fn check_irqs(dev: &dyn Device, r: &mut Report) -> Result<(), String> {
    let f = Fds { intx: EventFd::new()?, msi: EventFd::new()?, req: EventFd::new()? };
    r.ok("SET_IRQS REQ eventfd", dev.set_eventfd(VFIO_PCI_REQ_IRQ_INDEX, f.req.fd()));

    // INTx: install, fire, mask/unmask, tear down.
    if r.ok("SET_IRQS INTx eventfd", dev.set_eventfd(VFIO_PCI_INTX_IRQ_INDEX, f.intx.fd())).is_some() {
        r.ok("SET_IRQS INTx DATA_NONE|TRIGGER (fire)", dev.fire(VFIO_PCI_INTX_IRQ_INDEX));
        f.expect(r, "firing INTx", [1, 0, 0]);
        let one = |action| dev.set_irqs(VFIO_IRQ_SET_DATA_NONE | action, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &[]);
        r.ok("SET_IRQS INTx DATA_NONE|MASK", one(VFIO_IRQ_SET_ACTION_MASK));
        r.ok("SET_IRQS INTx DATA_NONE|UNMASK", one(VFIO_IRQ_SET_ACTION_UNMASK));
        r.ok("SET_IRQS INTx DATA_NONE|TRIGGER count 0 (teardown)", dev.teardown(VFIO_PCI_INTX_IRQ_INDEX));
        let _ = dev.fire(VFIO_PCI_INTX_IRQ_INDEX);
        f.expect(r, "firing INTx after its teardown", [0, 0, 0]);
    }

    // MSI: install, fire, remove with fd -1, install another, fire, tear down.
    if r.ok("SET_IRQS MSI eventfd", dev.set_eventfd(VFIO_PCI_MSI_IRQ_INDEX, f.msi.fd())).is_some() {
        r.ok("SET_IRQS MSI DATA_NONE|TRIGGER (fire)", dev.fire(VFIO_PCI_MSI_IRQ_INDEX));
        f.expect(r, "firing MSI", [0, 1, 0]);
        r.ok("SET_IRQS MSI eventfd -1 (remove)", dev.set_eventfd(VFIO_PCI_MSI_IRQ_INDEX, -1));
        let _ = dev.fire(VFIO_PCI_MSI_IRQ_INDEX);
        f.expect(r, "firing MSI after removing its eventfd", [0, 0, 0]);
        let second = EventFd::new()?;
        if r.ok("SET_IRQS MSI second eventfd", dev.set_eventfd(VFIO_PCI_MSI_IRQ_INDEX, second.fd())).is_some() {
            r.ok("SET_IRQS MSI fire (second eventfd)", dev.fire(VFIO_PCI_MSI_IRQ_INDEX));
            second.wait(FIRE_MS);
            r.eq("second MSI eventfd count after firing MSI", second.take(), 1);
            f.expect(r, "firing MSI into the second eventfd", [0, 0, 0]);
            r.ok("SET_IRQS MSI DATA_NONE|TRIGGER count 0 (teardown)", dev.teardown(VFIO_PCI_MSI_IRQ_INDEX));
            let _ = dev.fire(VFIO_PCI_MSI_IRQ_INDEX);
            second.wait(QUIET_MS);
            r.eq("second MSI eventfd count after firing MSI after teardown", second.take(), 0);
        }
    }

    // REQ can be fired like the others.
    r.ok("SET_IRQS REQ DATA_NONE|TRIGGER (fire)", dev.fire(VFIO_PCI_REQ_IRQ_INDEX));
    f.expect(r, "firing REQ", [0, 0, 1]);
    r.ok("SET_IRQS REQ teardown", dev.teardown(VFIO_PCI_REQ_IRQ_INDEX));

    // Indices without vectors take no eventfd.
    let spare = EventFd::new()?;
    r.errno("SET_IRQS MSI-X eventfd (count 0)", dev.set_eventfd(VFIO_PCI_MSIX_IRQ_INDEX, spare.fd()), Errno::EINVAL);
    r.errno("SET_IRQS ERR eventfd (count 0)", dev.set_eventfd(VFIO_PCI_ERR_IRQ_INDEX, spare.fd()), Errno::EINVAL);
    Ok(())
}
