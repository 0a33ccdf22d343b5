//! `cycle` (create/open/close/remove many times in one process) and `hold` (keep a vGPU open
//! until the kernel asks for it back through the REQ interrupt).

use crate::contract::{Shape, NUM_REGIONS};
use crate::device::{DeviceExt, EventFd, VfioDevice, VfioPath};
use crate::mdev::{self, Parent, PoolOrigin};
use crate::report::Report;
use crate::sys::VFIO_PCI_REQ_IRQ_INDEX;
use std::io::Write;
use std::time::{Duration, Instant};

pub struct CycleOpts {
    pub parent: String,
    pub ty: String,
    pub count: u32,
    /// Used in turn, one per cycle.
    pub paths: Vec<VfioPath>,
    /// Skip the gpuvm-specific sysfs checks (to exercise the VFIO paths on another mdev driver,
    /// e.g. the mtty sample).
    pub generic: bool,
    pub origin: PoolOrigin,
}

/// Checks the whole parent; Err naming the first inconsistency.
pub fn check_parent(p: &Parent, origin: PoolOrigin, when: &str) -> Result<(), String> {
    let s = p.snapshot(origin).map_err(|e| format!("{when}: {e}"))?;
    let mut r = Report::new(format!("parent {} {when}", p.bdf));
    s.check(&mut r);
    r.finish().map(|_| ())
}

pub fn cycle(o: &CycleOpts) -> Result<(), String> {
    let p = Parent { bdf: o.parent.clone() };
    if !o.generic {
        Shape::from_type(&o.ty).ok_or_else(|| format!("{}: not a gpuvm-N type", o.ty))?;
        check_parent(&p, o.origin, "before cycling")?;
    }
    let avail0 = p.available(&o.ty)?;
    if avail0 == 0 {
        return Err(format!("{}: no instance available to cycle", o.ty));
    }
    let vgpus0 = if o.generic { 0 } else { p.attr("vgpus")? };
    let t0 = Instant::now();
    for i in 0..o.count {
        let path = o.paths[i as usize % o.paths.len()];
        let at = |step: &str| format!("cycle {i} ({path}) {step}");
        // available_instances (and the parent's vgpus count) must read `avail`, `vgpus`.
        let expect = |step: &str, avail: u32, vgpus: u64| -> Result<(), String> {
            let a = p.available(&o.ty).map_err(|e| format!("{}: {e}", at(step)))?;
            if a != avail {
                return Err(format!("{}: {} available_instances {a}, want {avail}", at(step), o.ty));
            }
            if !o.generic {
                let v = p.attr("vgpus").map_err(|e| format!("{}: {e}", at(step)))?;
                if v != vgpus {
                    return Err(format!("{}: parent vgpus {v}, want {vgpus}", at(step)));
                }
            }
            Ok(())
        };
        let uuid = mdev::new_uuid()?;
        p.create(&o.ty, &uuid).map_err(|e| format!("{}: create {uuid}: {e}", at("create")))?;
        if !mdev::exists(&uuid) {
            return Err(format!("{}: /sys/bus/mdev/devices/{uuid} missing after create", at("create")));
        }
        expect("after create", avail0 - 1, vgpus0 + 1)?;
        let dev = VfioDevice::open_mdev(&uuid, path).map_err(|e| format!("{}: {e}", at("open")))?;
        let info = dev.get_info().map_err(|e| format!("{}: VFIO_DEVICE_GET_INFO: {e}", at("open")))?;
        if !o.generic && info.num_regions != NUM_REGIONS {
            return Err(format!("{}: GET_INFO num_regions {}", at("open"), info.num_regions));
        }
        expect("while open", avail0 - 1, vgpus0 + 1)?;
        drop(dev);
        expect("after close", avail0 - 1, vgpus0 + 1)?;
        mdev::remove(&uuid).map_err(|e| format!("{}: remove {uuid}: {e}", at("remove")))?;
        if mdev::exists(&uuid) {
            return Err(format!("{}: /sys/bus/mdev/devices/{uuid} still there after remove", at("remove")));
        }
        expect("after remove", avail0, vgpus0)?;
        if (i + 1) % 100 == 0 {
            println!("cycle: {} done, {:.1}s", i + 1, t0.elapsed().as_secs_f64());
            if !o.generic {
                check_parent(&p, o.origin, &format!("after {} cycles", i + 1))?;
            }
        }
    }
    if !o.generic {
        check_parent(&p, o.origin, "after cycling")?;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("cycle: {} create/open/close/remove cycles of {} in {secs:.1}s ({:.1} ms each)", o.count, o.ty, 1000.0 * secs / o.count.max(1) as f64);
    Ok(())
}

/// Opens the vGPU, installs a REQ eventfd and keeps the device until the REQ fires (or
/// `timeout` passes: an error).
pub fn hold(uuid: &str, path: VfioPath, timeout: Duration) -> Result<(), String> {
    let dev = VfioDevice::open_mdev(uuid, path)?;
    let req = EventFd::new()?;
    dev.set_eventfd(VFIO_PCI_REQ_IRQ_INDEX, req.fd()).map_err(|e| format!("SET_IRQS REQ eventfd: {e}"))?;
    println!("holding {}", dev.desc);
    let _ = std::io::stdout().flush();
    let t0 = Instant::now();
    if !req.wait(timeout.as_millis().min(i32::MAX as u128) as i32) {
        return Err(format!("no REQ interrupt within {}s; closing anyway", timeout.as_secs()));
    }
    println!("req received (count {}) after {:.2}s", req.take(), t0.elapsed().as_secs_f64());
    // Uptime just before closing: a removal that waited for this close ends after it.
    let up = mdev::read_trim(std::path::Path::new("/proc/uptime"))?;
    println!("closing at {}s", up.split_whitespace().next().unwrap_or("?"));
    let _ = std::io::stdout().flush();
    drop(dev);
    println!("closed");
    Ok(())
}
