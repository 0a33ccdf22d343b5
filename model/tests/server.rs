//! The vfio-user server against the crate's own client: config space, BAR sizing, BAR0,
//! PRAMIN, BAR1 in direct mode, DMA maps, clean exit on disconnect.

use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gf100_model::gpuvm_uapi::gf100::{pbus, pci, pmc, target};
use gf100_model::server::{GpuServer, READY_LINE_PREFIX};
use gf100_model::{Bar, Gpu, HostMemory, ModelConfig};
use vfio_bindings::bindings::vfio::*;
use vfio_user::Client;

/// How long a server may take to start, to return or exit after its client left. Reached
/// only when something is broken; generous because the machine may be busy with other builds.
const DEADLINE: Duration = Duration::from_secs(30);
/// How often `wait_exit` looks at the child: short against `DEADLINE`, long enough not to spin.
const POLL: Duration = Duration::from_millis(10);
/// How long a whole test may run: longer than all its waits together, so that their own
/// messages come first.
const TEST_LIMIT: Duration = Duration::from_secs(120);

/// Aborts the test process if the test runs past [`TEST_LIMIT`]. The vfio-user client waits
/// for every reply without a timeout (the crate does not expose its socket), so a server
/// that stops answering would otherwise hang the test, and `cargo test` with it. Dropped at
/// the end of the test, passed or failed, it stops watching.
struct Watchdog {
    _stop: mpsc::Sender<()>,
}

impl Watchdog {
    fn new(test: &'static str) -> Watchdog {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TEST_LIMIT) {
                // Straight to stderr: eprintln! would go to the test's captured output,
                // which the abort discards.
                let _ = writeln!(
                    std::io::stderr(),
                    "{test}: still running after {TEST_LIMIT:?}, aborting (a request unanswered?)"
                );
                std::process::abort();
            }
        });
        Watchdog { _stop: stop }
    }
}

fn rd32(c: &mut Client, region: u32, off: u64) -> u32 {
    let mut b = [0u8; 4];
    c.region_read(region, off, &mut b).unwrap();
    u32::from_le_bytes(b)
}

fn wr32(c: &mut Client, region: u32, off: u64, v: u32) {
    c.region_write(region, off, &v.to_le_bytes()).unwrap();
}

/// A server for a fresh GPU on a socket in a private directory, serving in a thread.
struct Served {
    dir: std::path::PathBuf,
    gpu: Arc<Gpu>,
    /// The server thread's result (the thread itself is detached: `finish` waits for the
    /// result with a deadline, which a join could not).
    result: Receiver<Result<(), String>>,
    client: Client,
}

fn serve(name: &str, vram: u64) -> Served {
    let dir = std::env::temp_dir().join(format!("gf100-model-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("gpu.sock");
    let _ = std::fs::remove_file(&sock);
    let gpu = Gpu::new(ModelConfig {
        vram_bytes: vram,
        ..ModelConfig::default()
    })
    .unwrap();
    // bind() returns with the socket listening, so the client can connect at once.
    let server = GpuServer::bind(&sock, gpu.clone()).unwrap();
    let (tx, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.serve());
    });
    let client = Client::new(&sock).unwrap();
    Served {
        dir,
        gpu,
        result,
        client,
    }
}

impl Served {
    /// Disconnects and checks that the server returned cleanly.
    fn finish(self) {
        drop(self.client);
        match self.result.recv_timeout(DEADLINE) {
            Ok(r) => assert_eq!(r, Ok(())),
            Err(RecvTimeoutError::Timeout) => {
                panic!("server did not return within {DEADLINE:?} after its client left")
            }
            Err(RecvTimeoutError::Disconnected) => panic!("server thread panicked"),
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn serves_one_client_then_returns() {
    let _watchdog = Watchdog::new("serves_one_client_then_returns");
    let s = serve("test", 64 << 20);
    let gpu = s.gpu.clone();
    let mut c = s.client;
    let cfg = VFIO_PCI_CONFIG_REGION_INDEX;
    assert_eq!(rd32(&mut c, cfg, 0), 0x06d8_10de);
    assert_eq!(rd32(&mut c, cfg, 8) >> 8, pci::CLASS_CODE);
    for (off, size) in [
        (pci::CFG_BAR0, pci::BAR0_SIZE),
        (pci::CFG_BAR1_LO, pci::BAR1_SIZE),
        (pci::CFG_BAR3_LO, pci::BAR3_SIZE),
    ] {
        wr32(&mut c, cfg, off as u64, 0xffff_ffff);
        let v = rd32(&mut c, cfg, off as u64) & !0xf;
        assert_eq!((!v).wrapping_add(1) as u64, size);
    }
    assert_eq!(
        c.region(VFIO_PCI_BAR1_REGION_INDEX).unwrap().size,
        pci::BAR1_SIZE
    );
    assert_eq!(
        c.region(VFIO_PCI_BAR3_REGION_INDEX).unwrap().size,
        pci::BAR3_SIZE
    );
    let bar0 = VFIO_PCI_BAR0_REGION_INDEX;
    assert_eq!(
        rd32(&mut c, bar0, pmc::Boot0::OFFSET as u64),
        pmc::BOOT_0_QUADRO_6000
    );
    // PRAMIN window onto VRAM 0x300000.
    wr32(&mut c, bar0, pbus::PraminBase::OFFSET as u64, 0x30);
    wr32(&mut c, bar0, pbus::PRAMIN_WINDOW as u64 + 0x10, 0xcafe_f00d);
    assert_eq!(gpu.vram().read32(0x300010), Some(0xcafe_f00d));
    // BAR1 with its VM disabled is VRAM itself.
    assert_eq!(
        rd32(&mut c, VFIO_PCI_BAR1_REGION_INDEX, 0x300010),
        0xcafe_f00d
    );

    // DMA map of a shared memory region; the GPU sees it at the bus address.
    let ram = HostMemory::new("guest-ram", 1 << 20).unwrap();
    ram.write32(0x40, 0x1234_5678);
    c.dma_map(
        0,
        0x8000_0000,
        1 << 20,
        std::os::fd::AsRawFd::as_raw_fd(ram.file().unwrap()),
    )
    .unwrap();
    wr32(&mut c, cfg, 0x04, 0x0006); // memory + bus master
    wr32(
        &mut c,
        bar0,
        pbus::PraminBase::OFFSET as u64,
        pbus::PraminBase::default()
            .with_addr(0x8000 << 16)
            .with_target(target::SYS_COHERENT)
            .raw(),
    );
    assert_eq!(
        rd32(&mut c, bar0, pbus::PRAMIN_WINDOW as u64 + 0x40),
        0x1234_5678
    );
    // Bus mastering off: system memory is unreachable.
    wr32(&mut c, cfg, 0x04, 0x0002);
    assert_eq!(
        rd32(&mut c, bar0, pbus::PRAMIN_WINDOW as u64 + 0x40),
        0xbad0_ac00
    );
    Served { client: c, ..s }.finish();
    let c = gpu.counters();
    assert_eq!(
        (c.bar0_reads, c.bar0_writes, c.bar1_reads, c.dma_maps),
        (3, 3, 1, 1),
        "{c:?}"
    );
    // The GPU outlives its server.
    assert_eq!(gpu.bar_read32(Bar::Bar0, 0), pmc::BOOT_0_QUADRO_6000);
}

fn eventfd() -> std::fs::File {
    // SAFETY: plain syscall; the result is checked and owned by File.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

/// Reads and resets an eventfd counter (0 if it was not signalled).
fn take(f: &mut std::fs::File) -> u64 {
    let mut b = [0u8; 8];
    match std::io::Read::read(f, &mut b) {
        Ok(8) => u64::from_ne_bytes(b),
        _ => 0,
    }
}

#[test]
fn msi_and_intx_reach_their_eventfds() {
    use std::os::fd::AsRawFd;
    let _watchdog = Watchdog::new("msi_and_intx_reach_their_eventfds");
    let s = serve("irq", 16 << 20);
    let mut c = s.client;
    let (bar0, cfg) = (VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX);
    let trigger = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    let (mut msi, mut intx) = (eventfd(), eventfd());
    c.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, trigger, 0, 1, &[msi.as_raw_fd()])
        .unwrap();
    c.set_irqs(VFIO_PCI_INTX_IRQ_INDEX, trigger, 0, 1, &[intx.as_raw_fd()])
        .unwrap();
    wr32(&mut c, bar0, pmc::INTR_EN_HOST as u64, pmc::INTR_EN_SW);
    let pulse = |c: &mut Client| {
        wr32(c, bar0, pmc::INTR_HOST as u64, 0);
        wr32(c, bar0, pmc::INTR_HOST as u64, pmc::INTR_SOFTWARE);
    };

    // MSI enabled: one message per rising edge, nothing on INTx.
    c.region_write(cfg, pci::CAP_MSI as u64 + 2, &[1, 0])
        .unwrap();
    pulse(&mut c);
    assert_eq!((take(&mut msi), take(&mut intx)), (1, 0));
    // The rearm register re-sends while the line is still asserted.
    wr32(&mut c, bar0, pci::BAR0_MSI_REARM as u64, 0xff);
    assert_eq!(take(&mut msi), 1);

    // MSI disabled: INTx, auto-masked after one trigger, re-sent on UNMASK while asserted.
    c.region_write(cfg, pci::CAP_MSI as u64 + 2, &[0, 0])
        .unwrap();
    pulse(&mut c);
    assert_eq!((take(&mut msi), take(&mut intx)), (0, 1));
    pulse(&mut c);
    assert_eq!(take(&mut intx), 0, "masked until UNMASK");
    c.set_irqs(
        VFIO_PCI_INTX_IRQ_INDEX,
        VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
        0,
        1,
        &[],
    )
    .unwrap();
    assert_eq!(take(&mut intx), 1);
    // The PCI status interrupt bit follows the INTx pin (vfio-pci's INTx handler reads it).
    assert_ne!(rd32(&mut c, cfg, 4) >> 16 & 0x8, 0);
    wr32(&mut c, bar0, pmc::INTR_HOST as u64, 0);
    assert_eq!(rd32(&mut c, cfg, 4) >> 16 & 0x8, 0);
    c.set_irqs(
        VFIO_PCI_INTX_IRQ_INDEX,
        VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
        0,
        1,
        &[],
    )
    .unwrap();
    assert_eq!(take(&mut intx), 0, "deasserted line: nothing to deliver");
    Served { client: c, ..s }.finish();
}

/// A `gf100-model` process. Dropping it kills and reaps the process, so a failing test
/// does not leave a server behind. Its stdout and stderr are not the test's: an orphan
/// holding the test harness's output pipe open would stall whoever reads that pipe.
struct ModelProcess {
    child: std::process::Child,
    /// Stderr lines as the reader thread gets them; the thread drains the pipe for the whole
    /// life of the process, so the server never blocks on a full pipe.
    lines: Receiver<String>,
    /// Every line taken from `lines` so far, for failure messages.
    log: Vec<String>,
}

impl ModelProcess {
    fn spawn(args: &[&str]) -> ModelProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gf100-model"));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe and touches only the child. Should the test
        // process die without unwinding (no Drop), the kernel kills the server then.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn gf100-model");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ModelProcess {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for the readiness line for `sock`; panics with the server's stderr if the server
    /// exits or stays silent past the deadline.
    fn wait_ready(&mut self, sock: &std::path::Path) {
        let ready = format!("{READY_LINE_PREFIX}{}", sock.display());
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with(&ready);
                    self.log.push(line);
                    if done {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no \"{ready}\" from gf100-model within {DEADLINE:?}; stderr: {:?}",
                    self.log
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "gf100-model closed stderr before \"{ready}\" ({}); stderr: {:?}",
                    match self.child.try_wait() {
                        Ok(Some(status)) => status.to_string(),
                        _ => "not exited yet".to_string(),
                    },
                    self.log
                ),
            }
        }
    }

    /// Waits for the process to exit; panics naming `what` past the deadline.
    fn wait_exit(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("waitpid gf100-model") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gf100-model did not exit within {DEADLINE:?} {what}; stderr: {:?}",
                self.stderr()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Everything the process wrote to stderr so far (all of it once it has exited).
    fn stderr(&mut self) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        let exited = matches!(self.child.try_wait(), Ok(Some(_)));
        loop {
            // After exit, read to the end of the pipe; before, take what has arrived.
            let next = if exited {
                self.lines
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .ok()
            } else {
                self.lines.try_recv().ok()
            };
            match next {
                Some(line) => self.log.push(line),
                None => return self.log.clone(),
            }
        }
    }
}

impl Drop for ModelProcess {
    fn drop(&mut self) {
        // Fails only if the process was already reaped; either way it is gone afterwards.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn binary_serves_writes_stats_and_exits_zero() {
    let _watchdog = Watchdog::new("binary_serves_writes_stats_and_exits_zero");
    let dir = std::env::temp_dir().join(format!("gf100-model-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (sock, stats) = (dir.join("gpu.sock"), dir.join("stats.json"));
    let _ = std::fs::remove_file(&sock);
    let mut model = ModelProcess::spawn(&[
        "--socket",
        sock.to_str().unwrap(),
        "--vram-mib",
        "6144",
        "--stats",
        stats.to_str().unwrap(),
    ]);
    model.wait_ready(&sock);
    let mut c = Client::new(&sock).unwrap();
    assert_eq!(
        rd32(&mut c, VFIO_PCI_BAR0_REGION_INDEX, pmc::Boot0::OFFSET as u64),
        pmc::BOOT_0_QUADRO_6000
    );
    assert_eq!(rd32(&mut c, VFIO_PCI_BAR0_REGION_INDEX, 0x022438), 6);
    drop(c);
    let status = model.wait_exit("after the client left");
    assert!(status.success(), "{status}; stderr: {:?}", model.stderr());
    let json = std::fs::read_to_string(&stats).unwrap();
    assert!(
        json.contains("\"vram_bytes\": 6442450944") && json.contains("\"bar0_reads\": 2"),
        "{json}"
    );
    // Bad arguments: clear error, non-zero exit.
    let mut bad = ModelProcess::spawn(&["--vram-mib", "x"]);
    let status = bad.wait_exit("on bad arguments");
    assert!(!status.success());
    let stderr = bad.stderr();
    assert!(
        stderr.iter().any(|l| l.contains("--vram-mib")),
        "{stderr:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
