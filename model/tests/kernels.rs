//! The built-in compute kernels against independent CPU references (bit-exact), launched
//! through the compute class like Gdev does; plus launch errors and kernel faults.

mod common;

use common::*;
use gf100_model::gpuvm_uapi::gf100::*;
use gf100_model::gpuvm_uapi::kernels as k;

const SUBCH: u32 = 1;
const CODE_VA: u64 = 0x4000_0000;
const CODE_START: u32 = 0x300;
const CB_VA: u64 = 0x4100_0000;
const CB_SIZE: u32 = 0x1000;
const SEM_VA: u64 = 0x2000_0000;
const DATA_VA: u64 = 0x5000_0000;
/// Four-word releases recording when a channel got past its work (in the SEM_VA page of the
/// kernel channel, in a page of its own for the copy channel).
const KERNEL_DONE_VA: u64 = SEM_VA + 0x100;
const COPY_DONE_VA: u64 = 0x3200_0000;

struct Gpu {
    rig: Rig,
    ch: Chan,
    code_pa: u64,
    sem_pa: u64,
    next_va: u64,
    seq: u32,
}

#[derive(Clone, Copy)]
struct Buf {
    va: u64,
    pa: u64,
}

impl Gpu {
    fn new() -> Gpu {
        let mut rig = Rig::with_vram(128 << 20);
        let mut ch = rig.channel(2);
        let code_pa = ch.vm.buffer(&rig, CODE_VA, 0x1000);
        ch.vm.buffer(&rig, CB_VA, CB_SIZE as u64);
        let sem_pa = ch.vm.buffer(&rig, SEM_VA, 0x1000);
        rig.flush(ch.vm.pd, false);
        ch.push(&rig, &incr(SUBCH, 0, &[class::COMPUTE]));
        ch.wait(&rig);
        Gpu {
            rig,
            ch,
            code_pa,
            sem_pa,
            next_va: DATA_VA,
            seq: 0,
        }
    }

    fn buf(&mut self, bytes: u64) -> Buf {
        let va = self.next_va;
        let pa = self.ch.vm.buffer(&self.rig, va, bytes.max(4));
        self.rig.flush(self.ch.vm.pd, false);
        self.next_va += (bytes + 0xffff) & !0xffff;
        Buf { va, pa }
    }

    fn upload_f32(&self, b: Buf, v: &[f32]) {
        for (i, x) in v.iter().enumerate() {
            self.rig.w32(b.pa + 4 * i as u64, x.to_bits());
        }
    }

    fn upload_i32(&self, b: Buf, v: &[i32]) {
        for (i, x) in v.iter().enumerate() {
            self.rig.w32(b.pa + 4 * i as u64, *x as u32);
        }
    }

    fn f32s(&self, b: Buf, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| f32::from_bits(self.rig.r32(b.pa + 4 * i as u64)))
            .collect()
    }

    fn i32s(&self, b: Buf, n: usize) -> Vec<i32> {
        (0..n)
            .map(|i| self.rig.r32(b.pa + 4 * i as u64) as i32)
            .collect()
    }

    /// Gdev's launch sequence, with the tag written at the code address.
    fn launch_words(
        &self,
        kernel: u32,
        params: &[u32],
        grid: (u32, u32),
        block: (u32, u32),
    ) -> Vec<u32> {
        let tag = [k::TAG_MAGIC, kernel, k::TAG_ABI_VERSION, 0];
        for (i, w) in tag.iter().enumerate() {
            self.rig
                .w32(self.code_pa + CODE_START as u64 + 4 * i as u64, *w);
        }
        let mut cb = vec![0u32; (k::PARAM_BASE / 4) as usize];
        cb.extend_from_slice(params);
        let s = SUBCH;
        let bind = k::PARAM_CB_SLOT << compute::BIND_SLOT_SHIFT | compute::BIND_VALID;
        [
            incr(
                s,
                compute::SET_PROGRAM_REGION_A,
                &[(CODE_VA >> 32) as u32, CODE_VA as u32],
            ),
            incr(s, compute::SET_CTA_PROGRAM_START, &[CODE_START]),
            incr(
                s,
                compute::SET_CONSTANT_BUFFER_SELECTOR_A,
                &[CB_SIZE, (CB_VA >> 32) as u32, CB_VA as u32],
            ),
            incr(s, compute::BIND_CONSTANT_BUFFER, &[bind]),
            incr(s, compute::LOAD_CONSTANT_BUFFER_OFFSET, &[0]),
            nonincr(s, compute::LOAD_CONSTANT_BUFFER, &cb),
            incr(s, compute::INVALIDATE_SHADER_CACHES_NO_WFI, &[0x1000]),
            incr(
                s,
                compute::SET_CTA_RASTER_SIZE_A,
                &[grid.1 << 16 | grid.0, 1],
            ),
            incr(
                s,
                compute::SET_CTA_THREAD_DIMENSION_A,
                &[block.1 << 16 | block.0, 1],
            ),
            incr(s, compute::SET_CTA_THREAD_COUNT, &[block.0 * block.1]),
            incr(s, compute::SET_GRID_PARAM, &[1]),
            incr(s, compute::SET_LAUNCH_ID, &[0]),
            incr(s, compute::INVALIDATE_SHADER_CACHES_NO_WFI, &[0x110]),
            incr(s, compute::BEGIN_GRID, &[0]),
            incr(s, compute::SET_LAUNCH_SIZE, &[0]),
            incr(s, compute::LAUNCH, &[compute::LAUNCH_VALUE]),
            incr(s, compute::END_GRID, &[0]),
            incr(s, compute::WAIT_REF_COUNT, &[1]),
        ]
        .concat()
    }

    /// Launches, then releases a report semaphore and waits for it.
    fn launch(&mut self, kernel: u32, params: &[u32], grid: (u32, u32), block: (u32, u32)) {
        self.seq += 1;
        let report = [
            (SEM_VA >> 32) as u32,
            SEM_VA as u32,
            self.seq,
            compute::REPORT_ONE_WORD,
        ];
        let pb = [
            self.launch_words(kernel, params, grid, block),
            incr(SUBCH, compute::WAIT_FOR_IDLE, &[0]),
            incr(SUBCH, compute::SET_REPORT_SEMAPHORE_A, &report),
        ]
        .concat();
        self.ch.push(&self.rig, &pb);
        self.ch.wait(&self.rig);
        assert_eq!(self.rig.r32(self.sem_pa), self.seq);
        assert!(
            !self.rig.gpu.irq_line(),
            "unexpected interrupt {:#x}",
            self.rig.reg(pmc::INTR_HOST)
        );
    }
}

fn ptr(b: Buf) -> [u32; 2] {
    [b.va as u32, (b.va >> 32) as u32]
}

fn rand_f32(n: usize, seed: u32, lo: f32, hi: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            lo + (hi - lo) * ((x >> 8) as f32 / (1u32 << 24) as f32)
        })
        .collect()
}

#[test]
fn fill_add_and_mmul() {
    let mut g = Gpu::new();
    let n = 1000usize;
    let dst = g.buf(4 * n as u64 + 64);
    g.launch(
        k::KERNEL_FILL,
        &[ptr(dst).as_slice(), &[n as u32, 0xfeed_f00d]].concat(),
        (8, 1),
        (128, 1),
    );
    assert!(g.i32s(dst, n + 1)[..n]
        .iter()
        .all(|v| *v as u32 == 0xfeed_f00d));
    assert_eq!(g.rig.r32(dst.pa + 4 * n as u64), 0, "no store beyond count");

    let (a, b, c) = (
        g.buf(4 * n as u64),
        g.buf(4 * n as u64),
        g.buf(4 * n as u64),
    );
    let (av, bv) = (rand_f32(n, 1, -10.0, 10.0), rand_f32(n, 2, -10.0, 10.0));
    g.upload_f32(a, &av);
    g.upload_f32(b, &bv);
    g.launch(
        k::KERNEL_ADD,
        &[ptr(a), ptr(b), ptr(c), [n as u32, 0]].concat()[..7],
        (4, 1),
        (256, 1),
    );
    let want: Vec<f32> = av.iter().zip(&bv).map(|(x, y)| x + y).collect();
    assert_eq!(g.f32s(c, n), want);

    let (m, nn, kk) = (37usize, 29usize, 41usize);
    let (ma, mb, mc) = (
        g.buf((4 * m * kk) as u64),
        g.buf((4 * kk * nn) as u64),
        g.buf((4 * m * nn) as u64),
    );
    let (va, vb) = (
        rand_f32(m * kk, 3, -1.0, 1.0),
        rand_f32(kk * nn, 4, -1.0, 1.0),
    );
    g.upload_f32(ma, &va);
    g.upload_f32(mb, &vb);
    let params = [
        ptr(ma).as_slice(),
        &ptr(mb),
        &ptr(mc),
        &[m as u32, nn as u32, kk as u32],
    ]
    .concat();
    g.launch(k::KERNEL_MMUL, &params, (2, 3), (16, 16));
    let mut want = vec![0f32; m * nn];
    for r in 0..m {
        for col in 0..nn {
            let mut sum = 0f32;
            for p in 0..kk {
                sum += va[r * kk + p] * vb[p * nn + col];
            }
            want[r * nn + col] = sum;
        }
    }
    assert_eq!(g.f32s(mc, m * nn), want);
}

fn clamp_nb(r: usize, c: usize, rows: usize, cols: usize) -> [usize; 4] {
    [
        r.saturating_sub(1) * cols + c,
        (r + 1).min(rows - 1) * cols + c,
        r * cols + c.saturating_sub(1),
        r * cols + (c + 1).min(cols - 1),
    ]
}

#[test]
fn hotspot_iterations_match_reference() {
    let mut g = Gpu::new();
    let (rows, cols) = (45usize, 70usize);
    let power = rand_f32(rows * cols, 5, 0.0, 0.5);
    let mut temp = rand_f32(rows * cols, 6, 320.0, 340.0);
    let (bp, b0, b1) = (
        g.buf((4 * rows * cols) as u64),
        g.buf((4 * rows * cols) as u64),
        g.buf((4 * rows * cols) as u64),
    );
    g.upload_f32(bp, &power);
    g.upload_f32(b0, &temp);
    let (sdc, rx1, ry1, rz1, amb) = (0.7f32, 1.0 / 2.5f32, 1.0 / 1.5f32, 1.0 / 40.0f32, 80.0f32);
    let mut bufs = [b0, b1];
    for _ in 0..3 {
        let params = [
            ptr(bp).as_slice(),
            &ptr(bufs[0]),
            &ptr(bufs[1]),
            &[
                rows as u32,
                cols as u32,
                sdc.to_bits(),
                rx1.to_bits(),
                ry1.to_bits(),
                rz1.to_bits(),
                amb.to_bits(),
            ],
        ]
        .concat();
        g.launch(
            k::KERNEL_HOTSPOT,
            &params,
            ((cols as u32).div_ceil(16), (rows as u32).div_ceil(16)),
            (16, 16),
        );
        let mut next = vec![0f32; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                let i = r * cols + c;
                let [n, s, w, e] = clamp_nb(r, c, rows, cols).map(|j| temp[j]);
                let t = temp[i];
                let v = power[i]
                    + ((s + n) - 2.0 * t) * ry1
                    + ((e + w) - 2.0 * t) * rx1
                    + (amb - t) * rz1;
                next[i] = t + sdc * v;
            }
        }
        temp = next;
        bufs.swap(0, 1);
    }
    assert_eq!(g.f32s(bufs[0], rows * cols), temp);
}

#[test]
fn lud_blocked_decomposition_matches_reference() {
    let mut g = Gpu::new();
    let bs = k::lud::BLOCK as usize;
    let dim = 4 * bs;
    // Diagonally dominant so no pivoting is needed.
    let mut a = rand_f32(dim * dim, 7, -1.0, 1.0);
    for i in 0..dim {
        a[i * dim + i] += dim as f32;
    }
    let buf = g.buf((4 * dim * dim) as u64);
    g.upload_f32(buf, &a);
    let mut off = 0;
    while off < dim {
        let params = [ptr(buf).as_slice(), &[dim as u32, off as u32]].concat();
        g.launch(k::KERNEL_LUD_DIAGONAL, &params, (1, 1), (bs as u32, 1));
        reference_lud(&mut a, dim, off, k::KERNEL_LUD_DIAGONAL, 0);
        let g_rest = ((dim - off) / bs) as u32 - 1;
        if g_rest > 0 {
            g.launch(
                k::KERNEL_LUD_PERIMETER,
                &params,
                (g_rest, 1),
                (2 * bs as u32, 1),
            );
            reference_lud(&mut a, dim, off, k::KERNEL_LUD_PERIMETER, g_rest as usize);
            g.launch(
                k::KERNEL_LUD_INTERNAL,
                &params,
                (g_rest, g_rest),
                (bs as u32, bs as u32),
            );
            reference_lud(&mut a, dim, off, k::KERNEL_LUD_INTERNAL, g_rest as usize);
        }
        off += bs;
    }
    assert_eq!(g.f32s(buf, dim * dim), a);
}

fn reference_lud(a: &mut [f32], dim: usize, o: usize, kernel: u32, blocks: usize) {
    let bs = k::lud::BLOCK as usize;
    let at = |r: usize, c: usize| r * dim + c;
    match kernel {
        k::KERNEL_LUD_DIAGONAL => {
            for kk in 0..bs {
                for i in kk + 1..bs {
                    a[at(o + i, o + kk)] /= a[at(o + kk, o + kk)];
                    for j in kk + 1..bs {
                        a[at(o + i, o + j)] -= a[at(o + i, o + kk)] * a[at(o + kk, o + j)];
                    }
                }
            }
        }
        k::KERNEL_LUD_PERIMETER => {
            for b in 0..blocks {
                let q = o + (b + 1) * bs;
                for j in 0..bs {
                    for i in 1..bs {
                        for kk in 0..i {
                            a[at(o + i, q + j)] -= a[at(o + i, o + kk)] * a[at(o + kk, q + j)];
                        }
                    }
                }
                for i in 0..bs {
                    for j in 0..bs {
                        for kk in 0..j {
                            a[at(q + i, o + j)] -= a[at(q + i, o + kk)] * a[at(o + kk, o + j)];
                        }
                        a[at(q + i, o + j)] /= a[at(o + j, o + j)];
                    }
                }
            }
        }
        _ => {
            for by in 0..blocks {
                for bx in 0..blocks {
                    let (r0, c0) = (o + (by + 1) * bs, o + (bx + 1) * bs);
                    for i in 0..bs {
                        for j in 0..bs {
                            let mut sum = 0f32;
                            for kk in 0..bs {
                                sum += a[at(r0 + i, o + kk)] * a[at(o + kk, c0 + j)];
                            }
                            a[at(r0 + i, c0 + j)] -= sum;
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn srad_two_kernels_match_reference() {
    let mut g = Gpu::new();
    let (rows, cols) = (33usize, 50usize);
    let n = rows * cols;
    let mut j = rand_f32(n, 8, 0.5, 1.5);
    let bufs: Vec<Buf> = (0..6).map(|_| g.buf(4 * n as u64)).collect();
    g.upload_f32(bufs[0], &j);
    let lambda = 0.5f32;
    for iter in 0..2 {
        let q0sqr = 0.05f32 + iter as f32 * 0.01;
        let mut params: Vec<u32> = bufs.iter().flat_map(|b| ptr(*b)).collect();
        params.extend([rows as u32, cols as u32, q0sqr.to_bits(), lambda.to_bits()]);
        let grid = ((cols as u32).div_ceil(16), (rows as u32).div_ceil(16));
        g.launch(k::KERNEL_SRAD_1, &params, grid, (16, 16));
        g.launch(k::KERNEL_SRAD_2, &params, grid, (16, 16));
        // Reference.
        let (mut c, mut dn, mut ds, mut dw, mut de) = (
            vec![0f32; n],
            vec![0f32; n],
            vec![0f32; n],
            vec![0f32; n],
            vec![0f32; n],
        );
        for r in 0..rows {
            for col in 0..cols {
                let i = r * cols + col;
                let [ni, si, wi, ei] = clamp_nb(r, col, rows, cols);
                let jc = j[i];
                dn[i] = j[ni] - jc;
                ds[i] = j[si] - jc;
                dw[i] = j[wi] - jc;
                de[i] = j[ei] - jc;
                let g2 =
                    (dn[i] * dn[i] + ds[i] * ds[i] + dw[i] * dw[i] + de[i] * de[i]) / (jc * jc);
                let l = (dn[i] + ds[i] + dw[i] + de[i]) / jc;
                let num = (0.5 * g2) - ((1.0 / 16.0) * (l * l));
                let den = 1.0 + (0.25 * l);
                let qsqr = num / (den * den);
                let den = (qsqr - q0sqr) / (q0sqr * (1.0 + q0sqr));
                c[i] = (1.0 / (1.0 + den)).clamp(0.0, 1.0);
            }
        }
        for r in 0..rows {
            for col in 0..cols {
                let i = r * cols + col;
                let [_, si, _, ei] = clamp_nb(r, col, rows, cols);
                let d = c[i] * dn[i] + c[si] * ds[i] + c[i] * dw[i] + c[ei] * de[i];
                j[i] += (0.25 * lambda) * d;
            }
        }
        assert_eq!(g.f32s(bufs[1], n), c, "C after iteration {iter}");
    }
    assert_eq!(g.f32s(bufs[0], n), j);
}

#[test]
fn needle_two_kernels_match_reference() {
    let mut g = Gpu::new();
    let bs = k::needle::BLOCK as usize;
    let width = 4usize;
    let cols = width * bs + 1;
    let penalty = 10i32;
    let reference: Vec<i32> = rand_f32(cols * cols, 9, -10.0, 10.0)
        .iter()
        .map(|x| *x as i32)
        .collect();
    let mut items = vec![0i32; cols * cols];
    for i in 0..cols {
        items[i] = -(i as i32) * penalty;
        items[i * cols] = -(i as i32) * penalty;
    }
    let (rb, ib) = (
        g.buf((4 * cols * cols) as u64),
        g.buf((4 * cols * cols) as u64),
    );
    g.upload_i32(rb, &reference);
    g.upload_i32(ib, &items);
    let params = |it: usize| {
        [
            ptr(rb).as_slice(),
            &ptr(ib),
            &[cols as u32, penalty as u32, it as u32, width as u32],
        ]
        .concat()
    };
    for it in 1..=width {
        g.launch(
            k::KERNEL_NEEDLE_1,
            &params(it),
            (it as u32, 1),
            (bs as u32, 1),
        );
    }
    for it in (1..width).rev() {
        g.launch(
            k::KERNEL_NEEDLE_2,
            &params(it),
            (it as u32, 1),
            (bs as u32, 1),
        );
    }
    // Reference: the whole matrix in row-major order (same dependencies).
    for r in 1..cols {
        for c in 1..cols {
            let diag = items[(r - 1) * cols + c - 1] + reference[r * cols + c];
            let left = items[r * cols + c - 1] - penalty;
            let up = items[(r - 1) * cols + c] - penalty;
            items[r * cols + c] = diag.max(left).max(up);
        }
    }
    assert_eq!(g.i32s(ib, cols * cols), items);
}

#[test]
fn launch_errors_and_kernel_faults_stop_the_channel() {
    // A bad tag: PGRAPH DATA_ERROR with the model's code.
    let mut g = Gpu::new();
    g.rig.w32(g.code_pa + CODE_START as u64, 0x1234);
    let s = SUBCH;
    let pb = [
        incr(s, compute::SET_PROGRAM_REGION_A, &[0, CODE_VA as u32]),
        incr(s, compute::SET_CTA_PROGRAM_START, &[CODE_START]),
        incr(s, compute::LAUNCH, &[compute::LAUNCH_VALUE]),
    ]
    .concat();
    g.ch.push(&g.rig, &pb);
    assert_ne!(g.rig.wait_intr() & pmc::INTR_PGRAPH, 0);
    assert_eq!(g.rig.reg(pgraph::INTR), pgraph::INTR_DATA_ERROR);
    assert_eq!(
        g.rig.reg(pgraph::DATA_ERROR_CODE),
        pgraph::DATA_ERROR_BAD_KERNEL_TAG
    );
    assert_eq!(
        g.rig.reg(pgraph::TRAPPED_ADDR),
        compute::LAUNCH | SUBCH << 16
    );

    // A fill whose buffer ends early: MMU fault of PGRAPH at the first unmapped page; the
    // stores before it happened.
    let mut g = Gpu::new();
    let dst = g.buf(0x1000);
    g.ch.vm.unmap(&g.rig, dst.va + 0x1000);
    let params = [ptr(dst).as_slice(), &[2048, 7]].concat();
    let pb = g.launch_words(k::KERNEL_FILL, &params, (16, 1), (128, 1));
    g.ch.push(&g.rig, &pb);
    g.rig.wait_intr();
    let unit = pfifo::FAULT_UNIT_PGRAPH;
    assert_eq!(
        g.rig.reg(pfifo::VM_FAULT_UNITS),
        1 << unit,
        "pgraph {:#x} code {:#x} pbdma {:#x}",
        g.rig.reg(pgraph::INTR),
        g.rig.reg(pgraph::DATA_ERROR_CODE),
        g.rig.reg(pfifo::pbdma_base(0) + pfifo::PBDMA_INTR)
    );
    assert_eq!(
        g.rig.reg(pfifo::VmFaultAddrLo::offset(unit)),
        (dst.va + 0x1000) as u32
    );
    assert_eq!(g.rig.r32(dst.pa + 0xffc), 7);
    assert_ne!(g.ch.gp_get(&g.rig), g.ch.put);
}

#[test]
fn copy_engine_runs_while_a_kernel_occupies_pgraph() {
    let mut g = Gpu::new();
    let n = 128usize;
    let (ma, mb, mc) = (
        g.buf((4 * n * n) as u64),
        g.buf((4 * n * n) as u64),
        g.buf((4 * n * n) as u64),
    );
    g.upload_f32(ma, &rand_f32(n * n, 11, -1.0, 1.0));
    g.upload_f32(mb, &rand_f32(n * n, 12, -1.0, 1.0));
    // A second channel with a copy engine and a 4 KiB buffer pair.
    let mut other = g.rig.channel(3);
    let src = other.vm.buffer(&g.rig, 0x3000_0000, 0x1000);
    let dst = other.vm.buffer(&g.rig, 0x3100_0000, 0x1000);
    let copy_done = other.vm.buffer(&g.rig, COPY_DONE_VA, 0x1000);
    g.rig.flush(other.vm.pd, false);
    g.rig.w32(src, 0xc0ffee);
    // Queue the long kernel without waiting for it.
    let params = [
        ptr(ma).as_slice(),
        &ptr(mb),
        &ptr(mc),
        &[n as u32, n as u32, n as u32],
    ]
    .concat();
    // After the kernel, a four-word release records when its channel got past it.
    let kernel_done = KERNEL_DONE_VA - SEM_VA + g.sem_pa;
    let pb = [
        g.launch_words(k::KERNEL_MMUL, &params, (8, 8), (16, 16)),
        sem_release(KERNEL_DONE_VA, 1, false),
    ]
    .concat();
    g.ch.push(&g.rig, &pb);
    wait_until("kernel started", || {
        g.rig.gpu.counters().kernels_launched == 1
    });
    let copy = [
        incr(
            4,
            0,
            &[class::set_object(class::COPY0, pfifo::ENGINE_PCOPY0)],
        ),
        incr(4, copy::OFFSET_IN_UPPER, &[0, 0x3000_0000, 0, 0x3100_0000]),
        incr(4, copy::LINE_LENGTH_IN, &[0x1000]),
        incr(
            4,
            copy::LAUNCH_DMA,
            &[copy::LAUNCH_COPY_PITCH & !copy::LAUNCH_MULTI_LINE],
        ),
        sem_release(COPY_DONE_VA, 1, false),
    ]
    .concat();
    other.push(&g.rig, &copy);
    other.wait(&g.rig);
    assert_eq!(g.rig.r32(dst), 0xc0ffee);
    g.ch.wait(&g.rig);
    assert_eq!((g.rig.r32(copy_done), g.rig.r32(kernel_done)), (1, 1));
    // The GPU's timestamps give the order, whenever this thread looked.
    let (copy_at, kernel_at) = (
        release_time(&g.rig, copy_done),
        release_time(&g.rig, kernel_done),
    );
    assert!(
        copy_at < kernel_at,
        "the copy should finish while the kernel runs (copy done at {copy_at} ns, kernel \
         at {kernel_at} ns)"
    );
}
