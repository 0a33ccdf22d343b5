//! Micro benchmarks: init/close loop, malloc/free loop, copies 4 KiB..64 MiB both ways, launch
//! latency and fence latency. Each checks what it can (copied bytes, filled words).

use super::{check, run_body, Check, Ctx, Opener, Opts, Params, Size};
use crate::driver::{Gpu, HwError};
use crate::record::{Phase, Record};
use gpuvm_uapi::kernels::{self, fill as fk};
use std::time::{Duration, Instant};

type R = Result<Check, HwError>;

fn iters(c: &Ctx, default: u32, small: u32) -> u32 {
    c.opts.iters.unwrap_or(if c.opts.size == Size::Small { small } else { default })
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// Mean and median of a set of durations, in µs.
fn stats(c: &mut Ctx, key: &str, mut v: Vec<Duration>) {
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len().max(1) as u32;
    c.put(&format!("{key}_mean_us"), us(mean));
    c.put(&format!("{key}_median_us"), us(v[v.len() / 2]));
    c.put(&format!("{key}_n"), v.len());
}

/// Open and close the device repeatedly; the record's Init/Close are the sums, the extra
/// fields the per-iteration figures. Each open also runs one fill kernel and checks it.
pub fn init_close(open: Opener, opts: &Opts) -> Record {
    let n = opts.iters.unwrap_or(if opts.size == Size::Small { 2 } else { 3 });
    let mut total: Option<Record> = None;
    for _ in 0..n {
        let r = run_body("init_close", open, opts, fill_once);
        let failed = !r.ok;
        total = Some(match total {
            None => r,
            Some(mut t) => {
                for p in Phase::ALL {
                    t.phases.add(p, r.phases.get(p));
                }
                for (a, b) in t.bars.iter_mut().zip(r.bars.iter()) {
                    a.reads += b.reads;
                    a.writes += b.writes;
                }
                t.ok &= r.ok;
                t.error = t.error.or(r.error);
                t
            }
        });
        if failed {
            break;
        }
    }
    let mut t = total.unwrap();
    t.extra.retain(|(k, _)| !matches!(k.as_str(), "pushbuf_words" | "doorbells" | "pte_writes"));
    t.extra.push(("iterations".into(), n.to_string()));
    t.extra.push(("init_mean_us".into(), us(t.phases.get(Phase::Init) / n)));
    t.extra.push(("close_mean_us".into(), us(t.phases.get(Phase::Close) / n)));
    t
}

/// Fill `words` u32 at `va` with `value` (the fill kernel), asynchronously.
fn fill(g: &mut Gpu, va: u64, words: u32, value: u32) -> Result<(), HwError> {
    let p = Params::new(fk::PARAM_BYTES).ptr(fk::DST, va).u32(fk::COUNT, words).u32(fk::VALUE, value);
    g.launch(kernels::KERNEL_FILL, [words.div_ceil(256), 1, 1], [256, 1, 1], p.bytes())
}

/// One small allocation, a fill launch, read back and check (init_close's body).
fn fill_once(c: &mut Ctx) -> R {
    let words = 1024u32;
    let mut m = c.timed(Phase::MemAlloc, |g| g.malloc(words as u64 * 4))?;
    c.timed(Phase::Launch, |g| {
        fill(g, m.va, words, 0x5eed_0001)?;
        g.sync()
    })?;
    let mut b = vec![0u8; words as usize * 4];
    c.timed(Phase::DtoH, |g| g.memcpy_dtoh(&mut b, &mut m, 0))?;
    c.timed(Phase::Close, |g| g.free(m))?;
    let mut got: Vec<u32> = super::Elem::from_bytes(&b);
    Ok(check("fill", &mut got, &vec![0x5eed_0001; words as usize], 0, c.opts.corrupt_one))
}

/// Allocate and free VRAM repeatedly (small-page and big-page sizes).
pub fn malloc_free(c: &mut Ctx) -> R {
    let n = iters(c, 50, 5);
    let mut small = Vec::new();
    let mut big = Vec::new();
    for _ in 0..n {
        for (sz, v) in [(4096u64, &mut small), (1 << 20, &mut big)] {
            let t = Instant::now();
            let m = c.timed(Phase::MemAlloc, |g| g.malloc(sz))?;
            c.timed(Phase::Close, |g| g.free(m))?;
            v.push(t.elapsed());
        }
    }
    stats(c, "malloc_free_4k", small);
    stats(c, "malloc_free_1m", big);
    // The allocator must hand the space back: a final fill of a fresh buffer still works.
    fill_once(c)
}

/// Copies of 4 KiB .. 64 MiB host→device and device→host, each checked.
pub fn copy(c: &mut Ctx) -> R {
    let max_shift = if c.opts.size == Size::Small { 20 } else { 26 };
    let mut result = Ok(());
    for shift in (12..=max_shift).step_by(2) {
        let n = 1usize << shift;
        let data: Vec<u8> = (0..n).map(|i| (i as u32).wrapping_mul(2654435761).wrapping_shr(13) as u8 ^ shift as u8).collect();
        let mut m = c.timed(Phase::MemAlloc, |g| g.malloc(n as u64))?;
        let t = Instant::now();
        c.timed(Phase::HtoD, |g| g.memcpy_htod(&mut m, 0, &data))?;
        let htod = t.elapsed();
        let mut back = vec![0u8; n];
        let t = Instant::now();
        c.timed(Phase::DtoH, |g| g.memcpy_dtoh(&mut back, &mut m, 0))?;
        let dtoh = t.elapsed();
        c.timed(Phase::Close, |g| g.free(m))?;
        let kib = n >> 10;
        c.put(&format!("htod_{kib}k_us"), us(htod));
        c.put(&format!("dtoh_{kib}k_us"), us(dtoh));
        c.put(&format!("htod_{kib}k_mbps"), format!("{:.1}", n as f64 / htod.as_secs_f64() / 1e6));
        c.put(&format!("dtoh_{kib}k_mbps"), format!("{:.1}", n as f64 / dtoh.as_secs_f64() / 1e6));
        let last = shift + 2 > max_shift;
        let r = check(&format!("copy {kib} KiB"), &mut back, &data, 0, c.opts.corrupt_one && last);
        if result.is_ok() {
            result = r;
        }
    }
    // The BAR1 path for small copies, both ways.
    let small: Vec<u8> = (0..crate::driver::BAR1_COPY_LIMIT).map(|i| (i * 7) as u8).collect();
    let mut m = c.timed(Phase::MemAlloc, |g| g.malloc(4096))?;
    c.timed(Phase::HtoD, |g| g.memcpy_htod(&mut m, 64, &small))?;
    let mut back = vec![0u8; small.len()];
    c.timed(Phase::DtoH, |g| g.memcpy_dtoh(&mut back, &mut m, 64))?;
    c.timed(Phase::Close, |g| g.free(m))?;
    Ok(result.and(check("copy BAR1", &mut back, &small, 0, false)))
}

/// Launch one small fill kernel and wait for it, repeatedly.
pub fn launch_latency(c: &mut Ctx) -> R {
    let n = iters(c, 100, 10);
    let words = 256u32;
    let mut m = c.timed(Phase::MemAlloc, |g| g.malloc(words as u64 * 4))?;
    let mut lat = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        c.timed(Phase::Launch, |g| {
            fill(g, m.va, words, i)?;
            g.sync()
        })?;
        lat.push(t.elapsed());
    }
    stats(c, "launch", lat);
    let mut b = vec![0u8; words as usize * 4];
    c.timed(Phase::DtoH, |g| g.memcpy_dtoh(&mut b, &mut m, 0))?;
    c.timed(Phase::Close, |g| g.free(m))?;
    let mut got: Vec<u32> = super::Elem::from_bytes(&b);
    Ok(check("last fill", &mut got, &vec![n - 1; words as usize], 0, c.opts.corrupt_one))
}

/// Emit a fence and wait for it, repeatedly (no work in between).
pub fn fence_latency(c: &mut Ctx) -> R {
    let n = iters(c, 200, 20);
    let mut lat = Vec::new();
    let mut seqs = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let s = c.timed(Phase::Launch, |g| {
            let s = g.fence_emit()?;
            g.fence_wait(s)?;
            Ok(s)
        })?;
        lat.push(t.elapsed());
        seqs.push(s);
    }
    stats(c, "fence", lat);
    // Each fence also raised a non-stall interrupt. One the driver did not wait for (its
    // fence was done at the first look) is still pending: take it, so `irqs` counts the
    // interrupts that reached the driver, not only those it happened to wait for.
    c.gpu.irq_take(std::time::Duration::from_millis(200))?;
    // Sequence numbers must be consecutive: every fence was its own release.
    let mut got = seqs.clone();
    let want: Vec<u32> = (0..n).map(|i| seqs[0].wrapping_add(i)).collect();
    Ok(check("fence sequence", &mut got, &want, 0, c.opts.corrupt_one))
}
