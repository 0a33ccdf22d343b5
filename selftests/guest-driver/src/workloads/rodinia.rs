//! Rodinia-like applications and mmul, each with a CPU reference that follows the kernel
//! definitions in uapi::kernels operation for operation.

use super::{check, Check, Ctx, Elem, Params, Rng, Size};
use crate::driver::{DevMem, HwError};
use crate::record::Phase;
use gpuvm_uapi::kernels::{self, hotspot as hk, lud as lk, mmul as mk, needle as nk, srad as sk};

type R = Result<Check, HwError>;

fn alloc(c: &mut Ctx, bytes: usize) -> Result<DevMem, HwError> {
    c.timed(Phase::MemAlloc, |g| g.malloc(bytes as u64))
}

fn upload<T: Elem>(c: &mut Ctx, m: &mut DevMem, data: &[T]) -> Result<(), HwError> {
    let b = T::to_bytes(data);
    c.timed(Phase::HtoD, |g| g.memcpy_htod(m, 0, &b))
}

fn download<T: Elem>(c: &mut Ctx, m: &mut DevMem, n: usize) -> Result<Vec<T>, HwError> {
    let mut b = vec![0u8; n * 4];
    c.timed(Phase::DtoH, |g| g.memcpy_dtoh(&mut b, m, 0))?;
    Ok(T::from_bytes(&b))
}

fn free_all(c: &mut Ctx, bufs: Vec<DevMem>) -> Result<(), HwError> {
    c.timed(Phase::Close, |g| bufs.into_iter().try_for_each(|m| g.free(m)))
}

/// Launch and wait (the Launch phase ends when the results are complete).
fn launch_all(c: &mut Ctx, f: impl FnOnce(&mut crate::driver::Gpu) -> Result<u32, HwError>) -> Result<(), HwError> {
    c.timed(Phase::Launch, |g| {
        let n = f(g)?;
        g.sync()?;
        let _ = n;
        Ok(())
    })
}

fn grid2(cols: usize, rows: usize, b: u32) -> [u32; 3] {
    [(cols as u32).div_ceil(b), (rows as u32).div_ceil(b), 1]
}

// ---- mmul ------------------------------------------------------------------------------

pub fn mmul_ref(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for row in 0..m {
        for col in 0..n {
            let mut sum = 0.0f32;
            for p in 0..k {
                sum = sum + a[row * k + p] * b[p * n + col];
            }
            c[row * n + col] = sum;
        }
    }
    c
}

pub fn mmul(c: &mut Ctx) -> R {
    let (m, n, k) = if c.opts.size == Size::Small { (48, 40, 24) } else { (256, 256, 256) };
    let mut rng = Rng::new(1);
    let a: Vec<f32> = (0..m * k).map(|_| rng.f32() - 0.5).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rng.f32() - 0.5).collect();
    let mut da = alloc(c, a.len() * 4)?;
    let mut db = alloc(c, b.len() * 4)?;
    let mut dc = alloc(c, m * n * 4)?;
    upload(c, &mut da, &a)?;
    upload(c, &mut db, &b)?;
    let p = Params::new(mk::PARAM_BYTES)
        .ptr(mk::A, da.va)
        .ptr(mk::B, db.va)
        .ptr(mk::C, dc.va)
        .u32(mk::M, m as u32)
        .u32(mk::N, n as u32)
        .u32(mk::K, k as u32);
    launch_all(c, |g| g.launch(kernels::KERNEL_MMUL, grid2(n, m, 16), [16, 16, 1], p.bytes()).map(|_| 1))?;
    let mut got: Vec<f32> = download(c, &mut dc, m * n)?;
    free_all(c, vec![da, db, dc])?;
    c.put("m", m);
    c.put("n", n);
    c.put("k", k);
    Ok(check("mmul C", &mut got, &mmul_ref(&a, &b, m, n, k), n, c.opts.corrupt_one))
}

// ---- hotspot ---------------------------------------------------------------------------

/// Rodinia HotSpot's chip constants.
const T_CHIP: f32 = 0.0005;
const CHIP_HEIGHT: f32 = 0.016;
const CHIP_WIDTH: f32 = 0.016;
const AMB_TEMP: f32 = 80.0;
const MAX_PD: f32 = 3.0e6;
const PRECISION: f32 = 0.001;
const SPEC_HEAT_SI: f32 = 1.75e6;
const K_SI: f32 = 100.0;
const FACTOR_CHIP: f32 = 0.5;

/// (step_div_cap, rx_1, ry_1, rz_1) as Rodinia computes them on the host.
fn hotspot_coeffs(rows: usize, cols: usize) -> (f32, f32, f32, f32) {
    let grid_height = CHIP_HEIGHT / rows as f32;
    let grid_width = CHIP_WIDTH / cols as f32;
    let cap = FACTOR_CHIP * SPEC_HEAT_SI * T_CHIP * grid_width * grid_height;
    let rx = grid_width / (2.0 * K_SI * T_CHIP * grid_height);
    let ry = grid_height / (2.0 * K_SI * T_CHIP * grid_width);
    let rz = T_CHIP / (K_SI * grid_height * grid_width);
    let max_slope = MAX_PD / (FACTOR_CHIP * T_CHIP * SPEC_HEAT_SI);
    let step = PRECISION / max_slope;
    (step / cap, 1.0 / rx, 1.0 / ry, 1.0 / rz)
}

pub fn hotspot_step(power: &[f32], src: &[f32], dst: &mut [f32], rows: usize, cols: usize, k: (f32, f32, f32, f32)) {
    let (step_div_cap, rx_1, ry_1, rz_1) = k;
    for r in 0..rows {
        for c in 0..cols {
            let i = r * cols + c;
            let t = src[i];
            let n = src[r.saturating_sub(1) * cols + c];
            let s = src[(r + 1).min(rows - 1) * cols + c];
            let w = src[r * cols + c.saturating_sub(1)];
            let e = src[r * cols + (c + 1).min(cols - 1)];
            let v = power[i] + ((s + n) - 2.0 * t) * ry_1 + ((e + w) - 2.0 * t) * rx_1 + (AMB_TEMP - t) * rz_1;
            dst[i] = t + step_div_cap * v;
        }
    }
}

pub fn hotspot(c: &mut Ctx) -> R {
    let (rows, cols, iters) = if c.opts.size == Size::Small { (40, 56, 5) } else { (512, 512, 20) };
    let mut rng = Rng::new(2);
    let temp: Vec<f32> = (0..rows * cols).map(|_| 323.0 + 17.0 * rng.f32()).collect();
    let power: Vec<f32> = (0..rows * cols).map(|_| 0.001 * rng.f32()).collect();
    let k = hotspot_coeffs(rows, cols);
    let mut dp = alloc(c, power.len() * 4)?;
    let mut dt = [alloc(c, temp.len() * 4)?, alloc(c, temp.len() * 4)?];
    upload(c, &mut dp, &power)?;
    upload(c, &mut dt[0], &temp)?;
    let vas = [dt[0].va, dt[1].va];
    launch_all(c, |g| {
        for it in 0..iters {
            let p = Params::new(hk::PARAM_BYTES)
                .ptr(hk::POWER, dp.va)
                .ptr(hk::TEMP_SRC, vas[it % 2])
                .ptr(hk::TEMP_DST, vas[(it + 1) % 2])
                .u32(hk::ROWS, rows as u32)
                .u32(hk::COLS, cols as u32)
                .f32(hk::STEP_DIV_CAP, k.0)
                .f32(hk::RX_1, k.1)
                .f32(hk::RY_1, k.2)
                .f32(hk::RZ_1, k.3)
                .f32(hk::AMB_TEMP, AMB_TEMP);
            g.launch(kernels::KERNEL_HOTSPOT, grid2(cols, rows, 16), [16, 16, 1], p.bytes())?;
        }
        Ok(iters as u32)
    })?;
    let mut got: Vec<f32> = download(c, &mut dt[iters % 2], rows * cols)?;
    let [d0, d1] = dt;
    free_all(c, vec![dp, d0, d1])?;
    let mut want = [temp.clone(), temp];
    for it in 0..iters {
        let (a, b) = want.split_at_mut(1);
        let (src, dst) = if it % 2 == 0 { (&a[0], &mut b[0]) } else { (&b[0], &mut a[0]) };
        hotspot_step(&power, src, dst, rows, cols, k);
    }
    c.put("rows", rows);
    c.put("cols", cols);
    c.put("iterations", iters);
    Ok(check("hotspot temp", &mut got, &want[iters % 2], cols, c.opts.corrupt_one))
}

// ---- lud -------------------------------------------------------------------------------

const LB: usize = lk::BLOCK as usize;

fn lud_diagonal(a: &mut [f32], dim: usize, o: usize) {
    for k in 0..LB {
        for i in k + 1..LB {
            a[(o + i) * dim + o + k] = a[(o + i) * dim + o + k] / a[(o + k) * dim + o + k];
            for j in k + 1..LB {
                a[(o + i) * dim + o + j] = a[(o + i) * dim + o + j] - a[(o + i) * dim + o + k] * a[(o + k) * dim + o + j];
            }
        }
    }
}

fn lud_perimeter(a: &mut [f32], dim: usize, o: usize) {
    for b in 0..(dim - o) / LB - 1 {
        let q = o + (b + 1) * LB;
        for j in 0..LB {
            for i in 1..LB {
                for k in 0..i {
                    a[(o + i) * dim + q + j] = a[(o + i) * dim + q + j] - a[(o + i) * dim + o + k] * a[(o + k) * dim + q + j];
                }
            }
        }
        for i in 0..LB {
            for j in 0..LB {
                for k in 0..j {
                    a[(q + i) * dim + o + j] = a[(q + i) * dim + o + j] - a[(q + i) * dim + o + k] * a[(o + k) * dim + o + j];
                }
                a[(q + i) * dim + o + j] = a[(q + i) * dim + o + j] / a[(o + j) * dim + o + j];
            }
        }
    }
}

fn lud_internal(a: &mut [f32], dim: usize, o: usize) {
    let g = (dim - o) / LB - 1;
    for by in 0..g {
        for bx in 0..g {
            let (r0, c0) = (o + (by + 1) * LB, o + (bx + 1) * LB);
            for i in 0..LB {
                for j in 0..LB {
                    let mut sum = 0.0f32;
                    for k in 0..LB {
                        sum = sum + a[(r0 + i) * dim + o + k] * a[(o + k) * dim + c0 + j];
                    }
                    a[(r0 + i) * dim + c0 + j] = a[(r0 + i) * dim + c0 + j] - sum;
                }
            }
        }
    }
}

/// The host loop of Rodinia's lud_cuda, on the CPU.
pub fn lud_ref(a: &mut [f32], dim: usize) {
    let mut o = 0;
    while o < dim - LB {
        lud_diagonal(a, dim, o);
        lud_perimeter(a, dim, o);
        lud_internal(a, dim, o);
        o += LB;
    }
    lud_diagonal(a, dim, o);
}

pub fn lud(c: &mut Ctx) -> R {
    let dim = if c.opts.size == Size::Small { 64 } else { 256 };
    let mut rng = Rng::new(3);
    // Diagonally dominant, so LU without pivoting is well behaved.
    let a: Vec<f32> = (0..dim * dim).map(|i| if i / dim == i % dim { dim as f32 } else { rng.f32() - 0.5 }).collect();
    let mut dm = alloc(c, a.len() * 4)?;
    upload(c, &mut dm, &a)?;
    let va = dm.va;
    let p = |o: usize| Params::new(lk::PARAM_BYTES).ptr(lk::MATRIX, va).u32(lk::DIM, dim as u32).u32(lk::OFFSET, o as u32);
    launch_all(c, |g| {
        let mut o = 0;
        let mut n = 0;
        while o < dim - LB {
            let t = ((dim - o) / LB - 1) as u32;
            g.launch(kernels::KERNEL_LUD_DIAGONAL, [1, 1, 1], [lk::BLOCK, 1, 1], p(o).bytes())?;
            g.launch(kernels::KERNEL_LUD_PERIMETER, [t, 1, 1], [2 * lk::BLOCK, 1, 1], p(o).bytes())?;
            g.launch(kernels::KERNEL_LUD_INTERNAL, [t, t, 1], [lk::BLOCK, lk::BLOCK, 1], p(o).bytes())?;
            o += LB;
            n += 3;
        }
        g.launch(kernels::KERNEL_LUD_DIAGONAL, [1, 1, 1], [lk::BLOCK, 1, 1], p(o).bytes())?;
        Ok(n + 1)
    })?;
    let mut got: Vec<f32> = download(c, &mut dm, dim * dim)?;
    free_all(c, vec![dm])?;
    let mut want = a;
    lud_ref(&mut want, dim);
    c.put("dim", dim);
    Ok(check("lud LU", &mut got, &want, dim, c.opts.corrupt_one))
}

// ---- srad ------------------------------------------------------------------------------

/// Rodinia SRAD v2's ROI (rows/cols 0..=127) and lambda.
const SRAD_ROI: usize = 128;
const SRAD_LAMBDA: f32 = 0.5;

/// q0sqr from the ROI statistics, as Rodinia's host code computes it (f32 sums).
fn srad_q0sqr(j: &[f32], cols: usize, roi_rows: usize, roi_cols: usize) -> f32 {
    let (mut sum, mut sum2) = (0f32, 0f32);
    for r in 0..roi_rows {
        for c in 0..roi_cols {
            let t = j[r * cols + c];
            sum += t;
            sum2 += t * t;
        }
    }
    let size_r = (roi_rows * roi_cols) as f32;
    let mean = sum / size_r;
    let var = (sum2 / size_r) - mean * mean;
    var / (mean * mean)
}

/// One SRAD iteration (srad_1 then srad_2) on the CPU.
pub fn srad_step(j: &mut [f32], rows: usize, cols: usize, q0sqr: f32, lambda: f32) {
    let n = rows * cols;
    let (mut cc, mut dn, mut ds, mut dw, mut de) = (vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    let nb = |r: usize, c: usize| {
        (r.saturating_sub(1) * cols + c, (r + 1).min(rows - 1) * cols + c, r * cols + c.saturating_sub(1), r * cols + (c + 1).min(cols - 1))
    };
    for r in 0..rows {
        for c in 0..cols {
            let i = r * cols + c;
            let (i_n, i_s, i_w, i_e) = nb(r, c);
            let jc = j[i];
            let (n_, s_, w_, e_) = (j[i_n] - jc, j[i_s] - jc, j[i_w] - jc, j[i_e] - jc);
            let g2 = (n_ * n_ + s_ * s_ + w_ * w_ + e_ * e_) / (jc * jc);
            let l = (n_ + s_ + w_ + e_) / jc;
            let num = (0.5 * g2) - ((1.0 / 16.0) * (l * l));
            let den = 1.0 + (0.25 * l);
            let qsqr = num / (den * den);
            let den = (qsqr - q0sqr) / (q0sqr * (1.0 + q0sqr));
            let cv = 1.0 / (1.0 + den);
            cc[i] = if cv < 0.0 { 0.0 } else if cv > 1.0 { 1.0 } else { cv };
            (dn[i], ds[i], dw[i], de[i]) = (n_, s_, w_, e_);
        }
    }
    for r in 0..rows {
        for c in 0..cols {
            let i = r * cols + c;
            let (_, i_s, _, i_e) = nb(r, c);
            let (cn, cs, cw, ce) = (cc[i], cc[i_s], cc[i], cc[i_e]);
            let d = cn * dn[i] + cs * ds[i] + cw * dw[i] + ce * de[i];
            j[i] = j[i] + (0.25 * lambda) * d;
        }
    }
}

pub fn srad(c: &mut Ctx) -> R {
    let (rows, cols, iters) = if c.opts.size == Size::Small { (32, 48, 2) } else { (512, 512, 4) };
    let (roi_r, roi_c) = (SRAD_ROI.min(rows), SRAD_ROI.min(cols));
    let mut rng = Rng::new(4);
    let j0: Vec<f32> = (0..rows * cols).map(|_| (rng.f32() as f64).exp() as f32).collect();
    let n = rows * cols;
    let mut dj = alloc(c, n * 4)?;
    let mut scratch = Vec::new();
    for _ in 0..5 {
        scratch.push(alloc(c, n * 4)?);
    }
    // Rodinia's loop: ROI statistics on the host, J to the device, two kernels, J back.
    let mut j = j0.clone();
    for _ in 0..iters {
        let q0sqr = srad_q0sqr(&j, cols, roi_r, roi_c);
        upload(c, &mut dj, &j)?;
        let p = Params::new(sk::PARAM_BYTES)
            .ptr(sk::J, dj.va)
            .ptr(sk::C, scratch[0].va)
            .ptr(sk::D_N, scratch[1].va)
            .ptr(sk::D_S, scratch[2].va)
            .ptr(sk::D_W, scratch[3].va)
            .ptr(sk::D_E, scratch[4].va)
            .u32(sk::ROWS, rows as u32)
            .u32(sk::COLS, cols as u32)
            .f32(sk::Q0SQR, q0sqr)
            .f32(sk::LAMBDA, SRAD_LAMBDA);
        launch_all(c, |g| {
            g.launch(kernels::KERNEL_SRAD_1, grid2(cols, rows, 16), [16, 16, 1], p.bytes())?;
            g.launch(kernels::KERNEL_SRAD_2, grid2(cols, rows, 16), [16, 16, 1], p.bytes())?;
            Ok(2)
        })?;
        j = download(c, &mut dj, n)?;
    }
    scratch.push(dj);
    free_all(c, scratch)?;
    let mut want = j0;
    for _ in 0..iters {
        let q0sqr = srad_q0sqr(&want, cols, roi_r, roi_c);
        srad_step(&mut want, rows, cols, q0sqr, SRAD_LAMBDA);
    }
    c.put("rows", rows);
    c.put("cols", cols);
    c.put("iterations", iters);
    Ok(check("srad J", &mut j, &want, cols, c.opts.corrupt_one))
}

// ---- needle ----------------------------------------------------------------------------

const PENALTY: i32 = 10;
/// Substitution scores: a fixed symmetric 24x24 table in BLOSUM62's value range (-4..=11),
/// generated deterministically (Rodinia indexes BLOSUM62 with residues 1..=10 the same way).
fn score_table() -> [[i32; 24]; 24] {
    let mut t = [[0i32; 24]; 24];
    let mut rng = Rng::new(5);
    for a in 0..24 {
        for b in a..24 {
            let v = if a == b { 4 + rng.below(8) as i32 } else { rng.below(7) as i32 - 4 };
            t[a][b] = v;
            t[b][a] = v;
        }
    }
    t
}

/// Rodinia's input: random sequences, reference scores, and the first row/column penalties.
fn needle_input(n: usize) -> (Vec<i32>, Vec<i32>) {
    let cols = n + 1;
    let table = score_table();
    let mut rng = Rng::new(6);
    let seq_a: Vec<usize> = (0..cols).map(|_| rng.below(10) as usize + 1).collect();
    let seq_b: Vec<usize> = (0..cols).map(|_| rng.below(10) as usize + 1).collect();
    let mut reference = vec![0i32; cols * cols];
    for i in 1..cols {
        for j in 1..cols {
            reference[i * cols + j] = table[seq_a[i]][seq_b[j]];
        }
    }
    let mut items = vec![0i32; cols * cols];
    for i in 1..cols {
        items[i * cols] = -(i as i32) * PENALTY;
        items[i] = -(i as i32) * PENALTY;
    }
    (reference, items)
}

/// Needleman-Wunsch fill on the CPU (the GPU's tile wavefront computes the same recurrence).
pub fn needle_ref(reference: &[i32], items: &mut [i32], cols: usize, penalty: i32) {
    for r in 1..cols {
        for c in 1..cols {
            let diag = items[(r - 1) * cols + c - 1].wrapping_add(reference[r * cols + c]);
            let left = items[r * cols + c - 1].wrapping_sub(penalty);
            let up = items[(r - 1) * cols + c].wrapping_sub(penalty);
            items[r * cols + c] = diag.max(left).max(up);
        }
    }
}

pub fn needle(c: &mut Ctx) -> R {
    let n = if c.opts.size == Size::Small { 64 } else { 1024 };
    let cols = n + 1;
    let (reference, items) = needle_input(n);
    let mut dref = alloc(c, reference.len() * 4)?;
    let mut ditems = alloc(c, items.len() * 4)?;
    upload(c, &mut dref, &reference)?;
    upload(c, &mut ditems, &items)?;
    let bw = (n / nk::BLOCK as usize) as u32;
    let (rva, iva) = (dref.va, ditems.va);
    let p = |it: u32| {
        Params::new(nk::PARAM_BYTES)
            .ptr(nk::REFERENCE, rva)
            .ptr(nk::ITEMS, iva)
            .u32(nk::COLS, cols as u32)
            .i32(nk::PENALTY, PENALTY)
            .u32(nk::ITERATION, it)
            .u32(nk::BLOCK_WIDTH, bw)
    };
    launch_all(c, |g| {
        for it in 1..=bw {
            g.launch(kernels::KERNEL_NEEDLE_1, [it, 1, 1], [nk::BLOCK, 1, 1], p(it).bytes())?;
        }
        for it in (1..bw).rev() {
            g.launch(kernels::KERNEL_NEEDLE_2, [it, 1, 1], [nk::BLOCK, 1, 1], p(it).bytes())?;
        }
        Ok(2 * bw - 1)
    })?;
    let mut got: Vec<i32> = download(c, &mut ditems, cols * cols)?;
    free_all(c, vec![dref, ditems])?;
    let mut want = items;
    needle_ref(&reference, &mut want, cols, PENALTY);
    c.put("n", n);
    c.put("penalty", PENALTY);
    Ok(check("needle items", &mut got, &want, cols, c.opts.corrupt_one))
}
