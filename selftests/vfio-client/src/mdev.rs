//! The mdev side in sysfs: creating and removing vGPUs, the gpuvm parent and per-vGPU
//! attributes, and the consistency of the whole parent (pool occupancy, free counts and
//! `available_instances` of every type).

use crate::contract::{Shape, POOL_UNITS, SHARES};
use crate::device::mdev_sysfs;
use crate::errno::Errno;
use crate::report::Report;
use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

/// Named attributes of one vGPU (its `gpuvm/` sysfs directory, or a test double).
pub trait Attrs {
    fn attr(&self, name: &str) -> Result<String, String>;
    fn counter(&self, name: &str) -> Result<u64, String> {
        let s = self.attr(name)?;
        s.parse().map_err(|_| format!("attribute {name}: '{s}' is not a number"))
    }
}

/// `/sys/bus/mdev/devices/UUID/gpuvm/`.
pub struct SysfsVgpu {
    pub uuid: String,
}

impl Attrs for SysfsVgpu {
    fn attr(&self, name: &str) -> Result<String, String> {
        read_trim(&mdev_sysfs(&self.uuid).join("gpuvm").join(name))
    }
}

pub fn read_trim(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(|e| format!("read {}: {e}", path.display()))
}

fn read_num(path: &Path) -> Result<u64, String> {
    let s = read_trim(path)?;
    s.parse().map_err(|_| format!("{}: '{s}' is not a number", path.display()))
}

/// The entry names of a directory, sorted.
fn list_dir(dir: &Path) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// One write(2) of `value` to a sysfs file, as `echo` would do it; the errno on failure.
pub fn write_attr(path: &Path, value: &[u8]) -> Result<(), Errno> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `value` is a valid buffer; `fd` was just opened.
    let n = unsafe { libc::write(fd, value.as_ptr() as *const _, value.len()) };
    let res = if n < 0 { Err(Errno::last()) } else { Ok(()) };
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
    res
}

/// A fresh random UUID from the kernel.
pub fn new_uuid() -> Result<String, String> {
    read_trim(Path::new("/proc/sys/kernel/random/uuid"))
}

/// The mdev type name (`gpuvm-N`) of a vGPU, from its `mdev_type` link.
pub fn type_of(uuid: &str) -> Result<String, String> {
    let link = mdev_sysfs(uuid).join("mdev_type");
    let t = fs::read_link(&link).map_err(|e| format!("readlink {}: {e}", link.display()))?;
    Ok(t.file_name().unwrap_or_default().to_string_lossy().into_owned())
}

pub fn exists(uuid: &str) -> bool {
    mdev_sysfs(uuid).exists()
}

/// `echo 1 > /sys/bus/mdev/devices/UUID/remove`.
pub fn remove(uuid: &str) -> Result<(), Errno> {
    write_attr(&mdev_sysfs(uuid).join("remove"), b"1\n")
}

/// A GPU registered as an mdev parent.
pub struct Parent {
    pub bdf: String,
}

impl Parent {
    pub fn types_dir(&self) -> PathBuf {
        Path::new("/sys/class/mdev_bus").join(&self.bdf).join("mdev_supported_types")
    }
    pub fn attr_dir(&self) -> PathBuf {
        Path::new("/sys/bus/pci/devices").join(&self.bdf).join("gpuvm")
    }
    pub fn available(&self, ty: &str) -> Result<u32, String> {
        read_num(&self.types_dir().join(ty).join("available_instances")).map(|v| v as u32)
    }
    pub fn create(&self, ty: &str, uuid: &str) -> Result<(), Errno> {
        write_attr(&self.types_dir().join(ty).join("create"), format!("{uuid}\n").as_bytes())
    }
    pub fn attr(&self, name: &str) -> Result<u64, String> {
        read_num(&self.attr_dir().join(name))
    }

    /// Reads every type and every vGPU of the parent; `origin` is where the pool starts.
    pub fn snapshot(&self, origin: PoolOrigin) -> Result<ParentState, String> {
        let mut types = Vec::new();
        let mut devs = Vec::new();
        let dir = self.types_dir();
        for name in list_dir(&dir)? {
            let td = dir.join(&name);
            let t = TypeState {
                available: read_num(&td.join("available_instances"))? as u32,
                device_api: read_trim(&td.join("device_api"))?,
                pretty_name: read_trim(&td.join("name"))?,
                description: read_trim(&td.join("description"))?,
                name: name.clone(),
            };
            for uuid in list_dir(&td.join("devices"))? {
                let a = SysfsVgpu { uuid: uuid.clone() };
                devs.push(VgpuState::read(&uuid, &a, &name)?);
            }
            types.push(t);
        }
        Ok(ParentState {
            vram_total_mib: self.attr("vram_total_mib")?,
            vram_free_mib: self.attr("vram_free_mib")?,
            channels_total: self.attr("channels_total")?,
            channels_free: self.attr("channels_free")?,
            vgpus: self.attr("vgpus")?,
            origin,
            types,
            devs,
        })
    }

    /// Finds where the guest pool starts in host VRAM and in the host's channels: on an empty
    /// parent, a gpuvm-1 vGPU takes the whole pool, so its placement is the pool's origin.
    pub fn pool_origin(&self) -> Result<PoolOrigin, String> {
        let uuid = new_uuid()?;
        self.create("gpuvm-1", &uuid).map_err(|e| format!("creating a gpuvm-1 to find the pool origin (is the pool empty?): {e}"))?;
        let a = SysfsVgpu { uuid: uuid.clone() };
        let origin = a.counter("vram_base_mib").and_then(|v| Ok(PoolOrigin { vram_base_mib: v, first_channel: a.counter("first_channel")? }));
        remove(&uuid).map_err(|e| format!("removing the gpuvm-1 {uuid}: {e}"))?;
        origin
    }
}

/// Where the guest pool starts: host VRAM offset (MiB) and host channel number. vGPU
/// placements (`vram_base_mib`, `first_channel`) are host values, so pool units count from here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolOrigin {
    pub vram_base_mib: u64,
    pub first_channel: u64,
}

impl PoolOrigin {
    /// The command-line options that give this origin back.
    pub fn to_args(self) -> String {
        format!("--pool-vram-base {} --pool-first-channel {}", self.vram_base_mib, self.first_channel)
    }
}

#[derive(Clone, Debug, Default)]
pub struct TypeState {
    pub name: String,
    pub available: u32,
    pub device_api: String,
    pub pretty_name: String,
    pub description: String,
}

#[derive(Clone, Debug, Default)]
pub struct VgpuState {
    pub uuid: String,
    /// The type directory it is listed under.
    pub listed_type: String,
    pub type_attr: String,
    pub vram_mib: u64,
    pub vram_base_mib: u64,
    pub channels: u64,
    pub first_channel: u64,
    pub bar1_mib: u64,
    pub bar3_mib: u64,
    pub weight: u64,
}

impl VgpuState {
    pub fn read(uuid: &str, a: &dyn Attrs, listed_type: &str) -> Result<VgpuState, String> {
        let ctx = |e: String| format!("vGPU {uuid} under {listed_type}: {e}");
        // The counters must exist and be numbers, whatever their values.
        for c in ["mmio_traps", "mmio_denied", "resets"] {
            a.counter(c).map_err(ctx)?;
        }
        Ok(VgpuState {
            uuid: uuid.to_string(),
            listed_type: listed_type.to_string(),
            type_attr: a.attr("type").map_err(ctx)?,
            vram_mib: a.counter("vram_mib").map_err(ctx)?,
            vram_base_mib: a.counter("vram_base_mib").map_err(ctx)?,
            channels: a.counter("channels").map_err(ctx)?,
            first_channel: a.counter("first_channel").map_err(ctx)?,
            bar1_mib: a.counter("bar1_mib").map_err(ctx)?,
            bar3_mib: a.counter("bar3_mib").map_err(ctx)?,
            weight: a.counter("weight").map_err(ctx)?,
        })
    }
}

/// How many `share`-type vGPUs still fit in a pool whose occupied units are the set bits of
/// `occupied`: the aligned runs of POOL_UNITS/share units that are all free.
pub fn fits(occupied: u32, share: u32) -> u32 {
    let units = POOL_UNITS / share;
    let run = (1u32 << units) - 1;
    (0..POOL_UNITS).step_by(units as usize).filter(|&u| occupied & (run << u) == 0).count() as u32
}

/// The numbers in a string, in order ("VRAM 128 MiB, 8 ch" → [128, 8]).
fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit()).filter(|t| !t.is_empty()).filter_map(|t| t.parse().ok()).collect()
}

#[derive(Clone, Debug, Default)]
pub struct ParentState {
    pub vram_total_mib: u64,
    pub vram_free_mib: u64,
    pub channels_total: u64,
    pub channels_free: u64,
    pub vgpus: u64,
    pub origin: PoolOrigin,
    pub types: Vec<TypeState>,
    pub devs: Vec<VgpuState>,
}

impl ParentState {
    /// `available_instances` of gpuvm-1, -2, -4, -8.
    pub fn available(&self) -> Vec<u32> {
        SHARES
            .iter()
            .map(|&n| self.types.iter().find(|t| t.name == format!("gpuvm-{n}")).map_or(u32::MAX, |t| t.available))
            .collect()
    }

    /// Everything the contract says about a parent, checked against itself.
    pub fn check(&self, r: &mut Report) {
        let names: Vec<&str> = self.types.iter().map(|t| t.name.as_str()).collect();
        r.eq("mdev types", names, vec!["gpuvm-1", "gpuvm-2", "gpuvm-4", "gpuvm-8"]);
        let pool = POOL_UNITS as u64;
        r.check(self.vram_total_mib > 0 && self.vram_total_mib.is_multiple_of(pool), || {
            format!("vram_total_mib {} is not a positive multiple of {pool}", self.vram_total_mib)
        });
        r.check(self.channels_total > 0 && self.channels_total.is_multiple_of(pool), || {
            format!("channels_total {} is not a positive multiple of {pool}", self.channels_total)
        });
        let vram_unit = (self.vram_total_mib / pool).max(1);
        let ch_unit = (self.channels_total / pool).max(1);
        for t in &self.types {
            let Some(shape) = Shape::from_type(&t.name) else { continue };
            let n = shape.share as u64;
            r.eq(&format!("{} device_api", t.name), t.device_api.as_str(), "vfio-pci");
            r.check(!t.pretty_name.is_empty(), || format!("{} name is empty", t.name));
            let nums = numbers(&t.description);
            let want = [self.vram_total_mib / n, self.channels_total / n, shape.bar1_mib(), shape.bar3_mib()];
            r.check(want.iter().all(|w| nums.contains(w)), || {
                format!("{} description '{}' does not state VRAM {} MiB, {} channels, BAR1 {} MiB, BAR3 {} MiB", t.name, t.description, want[0], want[1], want[2], want[3])
            });
        }
        r.eq("parent vgpus", self.vgpus, self.devs.len() as u64);

        let mut vram_used = 0u32; // occupied pool units, by VRAM placement
        let mut ch_used = 0u32; // and by channel placement
        let (mut vram_sum, mut ch_sum) = (0, 0);
        for d in &self.devs {
            let id = format!("vGPU {} ({})", d.uuid, d.listed_type);
            let Some(shape) = Shape::from_type(&d.listed_type) else { continue };
            let n = shape.share as u64;
            r.eq(&format!("{id} type"), d.type_attr.as_str(), d.listed_type.as_str());
            r.eq(&format!("{id} vram_mib"), d.vram_mib, self.vram_total_mib / n);
            r.eq(&format!("{id} channels"), d.channels, self.channels_total / n);
            r.eq(&format!("{id} bar1_mib"), d.bar1_mib, shape.bar1_mib());
            r.eq(&format!("{id} bar3_mib"), d.bar3_mib, shape.bar3_mib());
            r.check((1..=100).contains(&d.weight), || format!("{id} weight {} outside 1..=100", d.weight));
            vram_sum += d.vram_mib;
            ch_sum += d.channels;
            let units = shape.units() as u64;
            let o = self.origin;
            // Offsets into the pool; u64::MAX (never aligned) when below its start.
            let vrel = d.vram_base_mib.checked_sub(o.vram_base_mib).unwrap_or(u64::MAX);
            let crel = d.first_channel.checked_sub(o.first_channel).unwrap_or(u64::MAX);
            let (vu, cu) = (vrel / vram_unit, crel / ch_unit);
            let placed = vrel % vram_unit == 0 && vu % units == 0 && vu + units <= pool;
            if !r.check(placed, || {
                format!("{id} vram_base_mib {} is not an aligned {units}-unit block of {vram_unit} MiB units in the pool at {} MiB", d.vram_base_mib, o.vram_base_mib)
            }) {
                continue;
            }
            let placed = crel % ch_unit == 0 && cu % units == 0 && cu + units <= pool;
            if !r.check(placed, || {
                format!("{id} first_channel {} is not an aligned {units}-unit block of {ch_unit}-channel units in the pool at channel {}", d.first_channel, o.first_channel)
            }) {
                continue;
            }
            r.check(vu == cu, || format!("{id}: VRAM at pool unit {vu} but channels at pool unit {cu}"));
            let mask = ((1u32 << units) - 1) << vu;
            r.check(vram_used & mask == 0, || format!("{id}: VRAM units {vu}..{} overlap another vGPU", vu + units));
            vram_used |= mask;
            let mask = ((1u32 << units) - 1) << cu;
            r.check(ch_used & mask == 0, || format!("{id}: channel units {cu}..{} overlap another vGPU", cu + units));
            ch_used |= mask;
        }
        r.eq("parent vram_free_mib", self.vram_free_mib, self.vram_total_mib.saturating_sub(vram_sum));
        r.eq("parent channels_free", self.channels_free, self.channels_total.saturating_sub(ch_sum));
        let occupied = vram_used | ch_used;
        for t in &self.types {
            if let Some(shape) = Shape::from_type(&t.name) {
                r.eq(&format!("{} available_instances (pool units in use {occupied:#010b})", t.name), t.available, fits(occupied, shape.share));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_counts_aligned_free_runs() {
        assert_eq!(SHARES.map(|n| fits(0, n)), [1, 2, 4, 8]);
        assert_eq!(SHARES.map(|n| fits(0b0000_1111, n)), [0, 1, 2, 4]);
        assert_eq!(SHARES.map(|n| fits(0b0000_0001, n)), [0, 1, 3, 7]);
        assert_eq!(SHARES.map(|n| fits(0b0000_0011, n)), [0, 1, 3, 6]);
        // gpuvm-8 at 0, gpuvm-4 at 2-3, gpuvm-2 at 4-7: one unit left, no gpuvm-4 fits.
        assert_eq!(SHARES.map(|n| fits(0b1111_1101, n)), [0, 0, 0, 1]);
        // Two units free but not aligned together.
        assert_eq!(SHARES.map(|n| fits(0b1111_1001, n)), [0, 0, 0, 2]);
        assert_eq!(SHARES.map(|n| fits(0xff, n)), [0, 0, 0, 0]);
    }

    #[test]
    fn numbers_in_text() {
        assert_eq!(numbers("VRAM 128 MiB, 16 channels, BAR1 16MiB/BAR3 8MiB"), vec![128, 16, 1, 16, 3, 8]);
    }

    fn ty(n: u32, available: u32) -> TypeState {
        let s = Shape::new(n).unwrap();
        TypeState {
            name: s.type_name(),
            available,
            device_api: "vfio-pci".into(),
            pretty_name: format!("GF100 1/{n}"),
            description: format!("VRAM {} MiB, {} channels, BAR1 {} MiB, BAR3 {} MiB", 1024 / n, 128 / n, s.bar1_mib(), s.bar3_mib()),
        }
    }

    fn vgpu(n: u32, unit: u64) -> VgpuState {
        let s = Shape::new(n).unwrap();
        VgpuState {
            uuid: format!("u{unit}"),
            listed_type: s.type_name(),
            type_attr: s.type_name(),
            vram_mib: 1024 / n as u64,
            vram_base_mib: 64 + unit * 128,
            channels: 128 / n as u64,
            first_channel: 8 + unit * 16,
            bar1_mib: s.bar1_mib(),
            bar3_mib: s.bar3_mib(),
            weight: 10,
        }
    }

    fn state(avail: [u32; 4], devs: Vec<VgpuState>) -> ParentState {
        let vram: u64 = devs.iter().map(|d| d.vram_mib).sum();
        let ch: u64 = devs.iter().map(|d| d.channels).sum();
        ParentState {
            vram_total_mib: 1024,
            vram_free_mib: 1024 - vram,
            channels_total: 128,
            channels_free: 128 - ch,
            vgpus: devs.len() as u64,
            origin: PoolOrigin { vram_base_mib: 64, first_channel: 8 },
            types: SHARES.iter().zip(avail).map(|(&n, a)| ty(n, a)).collect(),
            devs,
        }
    }

    fn fails(s: &ParentState) -> Vec<String> {
        let mut r = Report::quiet("t");
        s.check(&mut r);
        r.failures().to_vec()
    }

    #[test]
    fn consistent_parents_pass() {
        assert_eq!(fails(&state([1, 2, 4, 8], vec![])), Vec::<String>::new());
        assert_eq!(fails(&state([0, 1, 2, 4], vec![vgpu(2, 4)])), Vec::<String>::new());
        assert_eq!(fails(&state([0, 0, 0, 1], vec![vgpu(8, 0), vgpu(4, 2), vgpu(2, 4)])), Vec::<String>::new());
    }

    #[test]
    fn inconsistencies_are_caught() {
        // Availability that ignores alignment.
        let f = fails(&state([0, 1, 3, 7], vec![vgpu(4, 2)]));
        assert!(f.iter().any(|m| m.contains("gpuvm-8 available_instances")), "{f:?}");
        // Misaligned placement.
        let f = fails(&state([0, 1, 3, 6], vec![vgpu(4, 1)]));
        assert!(f.iter().any(|m| m.contains("not an aligned 2-unit block")), "{f:?}");
        // Overlap.
        let f = fails(&state([0, 1, 3, 7], vec![vgpu(8, 3), vgpu(8, 3)]));
        assert!(f.iter().any(|m| m.contains("overlap")), "{f:?}");
        // Free count not updated.
        let mut s = state([0, 1, 2, 4], vec![vgpu(2, 0)]);
        s.vram_free_mib = 1024;
        assert!(fails(&s).iter().any(|m| m.starts_with("parent vram_free_mib")));
        // Wrong per-vGPU share, weight out of range, channel unit ≠ VRAM unit.
        let mut d = vgpu(8, 5);
        d.bar1_mib = 32;
        d.weight = 0;
        d.first_channel = 8 + 16 * 6;
        let f = fails(&state([0, 1, 3, 7], vec![d]));
        assert!(f.iter().any(|m| m.contains("bar1_mib")), "{f:?}");
        assert!(f.iter().any(|m| m.contains("weight 0")), "{f:?}");
        assert!(f.iter().any(|m| m.contains("VRAM at pool unit 5 but channels at pool unit 6")), "{f:?}");
        // The same placements seen from a pool assumed to start at 0.
        let mut s = state([0, 1, 2, 4], vec![vgpu(2, 4)]);
        s.origin = PoolOrigin::default();
        let f = fails(&s);
        assert!(f.iter().any(|m| m.contains("vram_base_mib 576 is not an aligned 4-unit block")), "{f:?}");
        // Vague description, wrong device_api, a missing type, vgpus count.
        let mut s = state([1, 2, 4, 8], vec![]);
        s.types[1].description = "a vGPU".into();
        s.types[2].device_api = "vfio-ap".into();
        s.types.pop();
        s.vgpus = 1;
        let f = fails(&s);
        assert!(f.iter().any(|m| m.starts_with("gpuvm-2 description")), "{f:?}");
        assert!(f.iter().any(|m| m.starts_with("gpuvm-4 device_api")), "{f:?}");
        assert!(f.iter().any(|m| m.starts_with("mdev types")), "{f:?}");
        assert!(f.iter().any(|m| m.starts_with("parent vgpus")), "{f:?}");
    }
}
