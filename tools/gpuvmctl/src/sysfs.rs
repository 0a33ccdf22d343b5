//! The gpuvm sysfs tree (uapi/sysfs-gpuvm), read into values and written back:
//! `class/mdev_bus/<pci>/` (the parent: `gpuvm/` files, `mdev_supported_types/gpuvm-N/`) and
//! `bus/mdev/devices/<uuid>/` (a vGPU: `gpuvm/` files, `remove`). The root is `/sys` or, for
//! tests, any directory laid out the same way.

use crate::error::{Error, Knob, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Per-GPU scheduler knobs, in `<pci>/gpuvm/`; older modules have none of them.
pub const SCHED_KNOBS: [&str; 3] = ["sched_policy", "sched_period_us", "band_wait_us"];

/// vGPU files that describe it rather than count; every other number in its `gpuvm/` is a counter.
pub const VGPU_IDENTITY: [&str; 8] =
    ["type", "vram_mib", "vram_base_mib", "channels", "first_channel", "bar1_mib", "bar3_mib", "weight"];

/// GPU files that count events (every other GPU file is pool accounting or a knob).
pub const GPU_COUNTERS: [&str; 2] = ["interrupts", "nonstall_unclaimed"];

/// A sysfs file's value: a number when it reads as one.
pub type Attrs = BTreeMap<String, Value>;

#[derive(Clone, Debug)]
pub struct Sysfs {
    pub root: PathBuf,
}

#[derive(Clone, Debug)]
pub struct MdevType {
    /// The directory name, e.g. `gpuvm-4`: what `create` and mdevctl take.
    pub id: String,
    pub name: String,
    pub description: String,
    pub device_api: String,
    pub available: u64,
    pub devices: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Vgpu {
    pub uuid: String,
    pub parent: String,
    /// Every readable file of its `gpuvm/` directory.
    pub attrs: Attrs,
}

#[derive(Clone, Debug)]
pub struct Gpu {
    pub pci: String,
    /// Every readable file of its `gpuvm/` directory.
    pub attrs: Attrs,
    pub types: Vec<MdevType>,
    pub vgpus: Vec<Vgpu>,
}

impl Vgpu {
    pub fn num(&self, name: &str) -> Option<u64> {
        self.attrs.get(name).and_then(Value::as_u64)
    }
    pub fn text(&self, name: &str) -> String {
        self.attrs.get(name).map(show).unwrap_or_else(|| "-".into())
    }
    /// Counters: the numeric files that are not identity or configuration.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.attrs
            .iter()
            .filter(|(k, _)| !VGPU_IDENTITY.contains(&k.as_str()))
            .filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)))
            .collect()
    }
}

impl Gpu {
    pub fn num(&self, name: &str) -> Option<u64> {
        self.attrs.get(name).and_then(Value::as_u64)
    }
    pub fn text(&self, name: &str) -> String {
        self.attrs.get(name).map(show).unwrap_or_else(|| "-".into())
    }
    /// The event counters this module has (`GPU_COUNTERS`).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        GPU_COUNTERS.iter().filter_map(|&k| self.num(k).map(|n| (k.to_string(), n))).collect()
    }
    /// The scheduler knobs this module has, or `None` if it has none of them.
    pub fn sched(&self) -> Option<Vec<(&'static str, String)>> {
        let have: Vec<_> = SCHED_KNOBS.iter().filter_map(|k| self.attrs.get(*k).map(|v| (*k, show(v)))).collect();
        (!have.is_empty()).then_some(have)
    }
}

/// A value as sysfs showed it.
pub fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// `sched_policy` may list every policy with the active one in brackets (`fifo [credit] band`),
/// like the kernel's selector files, or show only the active one.
pub fn active_policy(shown: &str) -> String {
    match (shown.find('['), shown.find(']')) {
        (Some(a), Some(b)) if a < b => shown[a + 1..b].to_string(),
        _ => shown.trim().to_string(),
    }
}

fn parse_value(s: &str) -> Value {
    let t = s.trim_end_matches('\n');
    match t.trim().parse::<u64>() {
        Ok(n) => Value::from(n),
        Err(_) => Value::from(t.trim()),
    }
}

/// Reads every regular file of `dir`; unreadable ones (write-only files) are left out.
fn read_attrs(dir: &Path) -> Result<Attrs> {
    let mut out = Attrs::new();
    for e in fs::read_dir(dir).map_err(|e| Error::read(dir, e))? {
        let e = e.map_err(|e| Error::read(dir, e))?;
        let p = e.path();
        if !p.is_file() {
            continue;
        }
        if let Ok(s) = fs::read_to_string(&p) {
            out.insert(e.file_name().to_string_lossy().into_owned(), parse_value(&s));
        }
    }
    Ok(out)
}

fn read_text(path: &Path) -> Result<String> {
    fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(|e| Error::read(path, e))
}

fn sorted_names(dir: &Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map_err(|e| Error::read(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    v.sort();
    Ok(v)
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn mdev_bus(&self) -> PathBuf {
        self.root.join("class/mdev_bus")
    }
    pub fn parent_dir(&self, pci: &str) -> PathBuf {
        self.mdev_bus().join(pci)
    }
    pub fn gpu_attr(&self, pci: &str, name: &str) -> PathBuf {
        self.parent_dir(pci).join("gpuvm").join(name)
    }
    pub fn type_dir(&self, pci: &str, id: &str) -> PathBuf {
        self.parent_dir(pci).join("mdev_supported_types").join(id)
    }
    pub fn vgpu_dir(&self, uuid: &str) -> PathBuf {
        self.root.join("bus/mdev/devices").join(uuid)
    }
    pub fn vgpu_attr(&self, uuid: &str, name: &str) -> PathBuf {
        self.vgpu_dir(uuid).join("gpuvm").join(name)
    }

    /// The PCI addresses of the mdev parents gpuvm.ko owns (those with a `gpuvm/` directory;
    /// other mdev drivers' parents, e.g. mtty, are skipped).
    pub fn gpu_names(&self) -> Result<Vec<String>> {
        let bus = self.mdev_bus();
        if !bus.exists() {
            return Ok(Vec::new());
        }
        Ok(sorted_names(&bus)?.into_iter().filter(|p| self.parent_dir(p).join("gpuvm").is_dir()).collect())
    }

    pub fn gpu(&self, pci: &str) -> Result<Gpu> {
        let dir = self.parent_dir(pci);
        let attrs = read_attrs(&dir.join("gpuvm"))?;
        let tdir = dir.join("mdev_supported_types");
        let mut types = Vec::new();
        let mut vgpus = Vec::new();
        for id in sorted_names(&tdir)? {
            let t = tdir.join(&id);
            let devices = if t.join("devices").is_dir() { sorted_names(&t.join("devices"))? } else { Vec::new() };
            for uuid in &devices {
                // The device may go away between the listing and the read: skip it then.
                let g = self.vgpu_dir(uuid).join("gpuvm");
                if let Ok(attrs) = read_attrs(&g) {
                    vgpus.push(Vgpu { uuid: uuid.clone(), parent: pci.to_string(), attrs });
                }
            }
            types.push(MdevType {
                name: read_text(&t.join("name")).unwrap_or_default(),
                description: read_text(&t.join("description")).unwrap_or_default(),
                device_api: read_text(&t.join("device_api")).unwrap_or_default(),
                available: read_text(&t.join("available_instances"))?.parse().unwrap_or(0),
                devices,
                id,
            });
        }
        vgpus.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        Ok(Gpu { pci: pci.to_string(), attrs, types, vgpus })
    }

    pub fn gpus(&self) -> Result<Vec<Gpu>> {
        self.gpu_names()?.iter().map(|p| self.gpu(p)).collect()
    }

    /// The parent of vGPU `uuid`, or an error naming the path that is missing.
    pub fn vgpu_parent(&self, uuid: &str) -> Result<String> {
        let dir = self.vgpu_dir(uuid);
        if !dir.join("gpuvm").is_dir() {
            return Err(Error::Msg(format!(
                "no gpuvm vGPU {uuid} (no {}): `gpuvmctl list` shows the vGPUs",
                dir.join("gpuvm").display()
            )));
        }
        for pci in self.gpu_names()? {
            for t in sorted_names(&self.parent_dir(&pci).join("mdev_supported_types"))? {
                if self.type_dir(&pci, &t).join("devices").join(uuid).exists() {
                    return Ok(pci);
                }
            }
        }
        Err(Error::Msg(format!("vGPU {uuid} is listed under no gpuvm GPU's mdev types")))
    }

    /// Writes `value` to `path`. On failure the error carries the errno, what it means for
    /// `knob`, and what gpuvm.ko logged meanwhile (when the root is the real /sys).
    pub fn write(&self, knob: Knob, path: &Path, value: &str) -> Result<()> {
        let mut log = (self.root == Path::new("/sys")).then(KernelLog::open).flatten();
        fs::write(path, value).map_err(|e| {
            let kernel = log.as_mut().map(KernelLog::gpuvm_lines).unwrap_or_default();
            Error::write(knob, value, path, e, kernel)
        })
    }
}

/// New records of the kernel log (/dev/kmsg read from its end), to show the module's own
/// reason for a refused write. Needs root, like the writes; without it nothing is shown.
struct KernelLog(fs::File);

impl KernelLog {
    fn open() -> Option<Self> {
        let mut f = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg").ok()?;
        f.seek(SeekFrom::End(0)).ok()?;
        Some(Self(f))
    }

    /// The gpuvm lines logged since `open`. Each read returns one record
    /// ("prio,seq,usec,flags;text"); EAGAIN means there is no more.
    fn gpuvm_lines(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    let first = rec.lines().next().unwrap_or("");
                    if let Some((_, text)) = first.split_once(';') {
                        if text.contains("gpuvm") {
                            out.push(text.to_string());
                        }
                    }
                }
                // EPIPE: records were overwritten while we read; the next read resumes.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        out
    }
}

/// The JSON form of a GPU for `list --json`.
pub fn gpu_json(g: &Gpu) -> Value {
    let mut m = Map::new();
    m.insert("pci".into(), g.pci.clone().into());
    m.insert("gpuvm".into(), Value::Object(g.attrs.clone().into_iter().collect()));
    m.insert(
        "sched".into(),
        match g.sched() {
            Some(knobs) => {
                let mut s: Map<String, Value> = knobs.iter().map(|(k, v)| (k.to_string(), parse_value(v))).collect();
                if let Some(p) = g.attrs.get("sched_policy") {
                    s.insert("policy".into(), active_policy(&show(p)).into());
                }
                Value::Object(s)
            }
            None => Value::Null,
        },
    );
    m.insert(
        "types".into(),
        g.types
            .iter()
            .map(|t| {
                serde_json::json!({
                    "type": t.id, "name": t.name, "description": t.description,
                    "device_api": t.device_api, "available_instances": t.available,
                    "devices": t.devices,
                })
            })
            .collect(),
    );
    m.insert("vgpus".into(), g.vgpus.iter().map(vgpu_json).collect());
    Value::Object(m)
}

pub fn vgpu_json(v: &Vgpu) -> Value {
    serde_json::json!({
        "uuid": v.uuid, "parent": v.parent,
        "gpuvm": Value::Object(v.attrs.clone().into_iter().collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_numbers_when_they_read_as_numbers() {
        assert_eq!(parse_value("42\n"), Value::from(42u64));
        assert_eq!(parse_value("gpuvm-2\n"), Value::from("gpuvm-2"));
        assert_eq!(parse_value("fifo [credit] band\n"), Value::from("fifo [credit] band"));
    }

    #[test]
    fn active_policy_reads_both_spellings() {
        assert_eq!(active_policy("fifo [credit] band"), "credit");
        assert_eq!(active_policy("band\n"), "band");
    }
}
