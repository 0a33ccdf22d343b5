//! gpuvm-bench: run workloads against a GF100 (vfio-pci device, mdev, or the in-process model)
//! and print one JSON line per workload. Exit status 1 if any result is wrong.

use gpuvm_guest_driver::transport::model::ModelTransport;
use gpuvm_guest_driver::transport::vfio::{VfioPath, VfioTarget, VfioTransport};
use gpuvm_guest_driver::transport::Transport;
use gpuvm_guest_driver::workloads::{self, Opts, Size};
use std::io;
use std::process::ExitCode;

const USAGE: &str = "\
usage: gpuvm-bench DEVICE [options] WORKLOAD... | all
DEVICE (one of):
  --vfio-pci BDF      a PCI function bound to vfio-pci (e.g. 0000:00:04.0; no-IOMMU or IOMMU)
  --mdev UUID         a gpuvm vGPU (mdev)
  --model             the in-process GF100 model
options:
  --vfio-path P       auto | noiommu | group | cdev (default auto: noiommu group if present,
                      else cdev + iommufd if present, else group + container)
  --vram-mib N        model VRAM (default 1024)
  --small             small problem sizes (the host tests' sizes)
  --poll              wait for fences by polling only (no interrupts)
  --chid N            channel id (default 0)
  --iters N           iterations of the loop-style micro benchmarks
  --corrupt-one       flip one element of each result before checking (must fail)
  --marks             print 'gpuvm-mark PHASE begin|end TSC' to stderr around each timed
                      piece (TSC: the CPU's time-stamp counter), for a host that times the
                      phases of a guest whose own clock it does not trust
  --list              list the workloads
workloads: ";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gpuvm-bench: {e}\n{USAGE}{}", workloads::NAMES.join(" "));
            ExitCode::from(2)
        }
    }
}

enum Device {
    Vfio(VfioTarget),
    Model,
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let mut dev = None;
    let mut path = VfioPath::Auto;
    let mut vram_mib = 1024u64;
    let mut opts = Opts::default();
    let mut names: Vec<String> = Vec::new();
    let mut it = args.iter();
    let val = |it: &mut std::slice::Iter<String>, o: &str| it.next().cloned().ok_or(format!("{o} needs a value"));
    while let Some(a) = it.next() {
        match a.as_str() {
            "--vfio-pci" => dev = Some(Device::Vfio(VfioTarget::Pci(val(&mut it, a)?))),
            "--mdev" => dev = Some(Device::Vfio(VfioTarget::Mdev(val(&mut it, a)?))),
            "--model" => dev = Some(Device::Model),
            "--vfio-path" => path = val(&mut it, a)?.parse()?,
            "--vram-mib" => vram_mib = val(&mut it, a)?.parse().map_err(|e| format!("--vram-mib: {e}"))?,
            "--small" => opts.size = Size::Small,
            "--poll" => opts.use_irq = false,
            "--chid" => opts.chid = val(&mut it, a)?.parse().map_err(|e| format!("--chid: {e}"))?,
            "--iters" => opts.iters = Some(val(&mut it, a)?.parse().map_err(|e| format!("--iters: {e}"))?),
            "--corrupt-one" => opts.corrupt_one = true,
            "--marks" => gpuvm_guest_driver::record::set_marks(true),
            "--list" => {
                println!("{}", workloads::NAMES.join("\n"));
                return Ok(ExitCode::SUCCESS);
            }
            "-h" | "--help" => {
                println!("{USAGE}{}", workloads::NAMES.join(" "));
                return Ok(ExitCode::SUCCESS);
            }
            "all" => names.extend(workloads::NAMES.iter().map(|s| s.to_string())),
            w if !w.starts_with('-') => names.push(w.to_string()),
            o => return Err(format!("unknown option {o}")),
        }
    }
    let dev = dev.ok_or("no device given")?;
    if names.is_empty() {
        return Err("no workload given".into());
    }
    if let Some(bad) = names.iter().find(|n| !workloads::NAMES.contains(&n.as_str())) {
        return Err(format!("unknown workload {bad}"));
    }
    let model = match dev {
        Device::Model => Some(ModelTransport::new(vram_mib).map_err(|e| format!("model: {e}"))?.gpu().clone()),
        Device::Vfio(_) => None,
    };
    let open = || -> io::Result<Box<dyn Transport>> {
        match (&dev, &model) {
            (Device::Model, Some(g)) => Ok(Box::new(ModelTransport::with_gpu(g.clone()))),
            (Device::Vfio(t), _) => Ok(Box::new(VfioTransport::open(t.clone(), path)?)),
            _ => unreachable!(),
        }
    };
    let mut wrong = 0;
    for n in &names {
        let r = workloads::run(n, &open, &opts);
        println!("{}", r.to_json());
        if !r.ok {
            wrong += 1;
            eprintln!("gpuvm-bench: {n} FAILED: {}", r.error.as_deref().unwrap_or("?"));
        }
    }
    eprintln!("gpuvm-bench: {} passed, {} failed", names.len() - wrong, wrong);
    Ok(if wrong > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
