//! The built-in compute kernel library (the ABI is uapi/kernels.rs).
//!
//! A launch reads the tag at the code address, the parameters from constant buffer 0, and
//! runs every thread of the grid. The kernels' threads never depend on each other's stores
//! within one launch (or, for the tile kernels, only within their own CTA in program order),
//! so running CTAs and threads sequentially gives exactly the documented results. Every load
//! and store goes through the channel's page tables via [`GlobalMemory`].

use std::sync::Arc;

use gpuvm_uapi::gf100::{compute, pfifo, pgraph};
use gpuvm_uapi::kernels as abi;

use crate::engines::Compute;
use crate::mem::HostMemory;
use crate::pfifo::{ChanCtx, ExecError, Loc};

const UNIT: u32 = pfifo::FAULT_UNIT_PGRAPH;
const CACHE_WAYS: usize = 16;

fn data_error(code: u32) -> ExecError {
    ExecError::Pgraph {
        bit: pgraph::INTR_DATA_ERROR,
        code,
    }
}

/// Loads and stores through the channel's MMU, with a small per-launch cache of resolved
/// pages (filled from the TLB, so it has the TLB's staleness and no more).
struct GlobalMemory<'a> {
    ctx: &'a ChanCtx<'a>,
    read_cache: [Option<(u64, Arc<HostMemory>, u64)>; CACHE_WAYS],
    write_cache: [Option<(u64, Arc<HostMemory>, u64)>; CACHE_WAYS],
}

impl<'a> GlobalMemory<'a> {
    fn new(ctx: &'a ChanCtx<'a>) -> Self {
        GlobalMemory {
            ctx,
            read_cache: Default::default(),
            write_cache: Default::default(),
        }
    }

    fn page(&mut self, va: u64, write: bool) -> Result<(Arc<HostMemory>, u64), ExecError> {
        let vpn = va >> 12;
        let cache = if write {
            &mut self.write_cache
        } else {
            &mut self.read_cache
        };
        let slot = &mut cache[vpn as usize % CACHE_WAYS];
        if let Some((v, mem, off)) = slot {
            if *v == vpn {
                return Ok((mem.clone(), *off));
            }
        }
        let (mem, off, _) = self
            .ctx
            .resolve(UNIT, Loc::Virt(vpn << 12), 0x1000, write)?;
        *slot = Some((vpn, mem.clone(), off));
        Ok((mem, off))
    }

    fn ld(&mut self, va: u64) -> Result<u32, ExecError> {
        if !va.is_multiple_of(4) {
            return Err(data_error(pgraph::DATA_ERROR_BAD_PARAMS));
        }
        let (mem, off) = self.page(va, false)?;
        Ok(mem.read32(off + (va & 0xfff)).unwrap_or(0))
    }

    fn st(&mut self, va: u64, v: u32) -> Result<(), ExecError> {
        if !va.is_multiple_of(4) {
            return Err(data_error(pgraph::DATA_ERROR_BAD_PARAMS));
        }
        let (mem, off) = self.page(va, true)?;
        mem.write32(off + (va & 0xfff), v);
        Ok(())
    }

    fn ldf(&mut self, base: u64, index: u64) -> Result<f32, ExecError> {
        self.ld(base.wrapping_add(index * 4)).map(f32::from_bits)
    }

    fn stf(&mut self, base: u64, index: u64, v: f32) -> Result<(), ExecError> {
        self.st(base.wrapping_add(index * 4), v.to_bits())
    }

    fn ldi(&mut self, base: u64, index: u64) -> Result<i32, ExecError> {
        self.ld(base.wrapping_add(index * 4)).map(|v| v as i32)
    }

    fn sti(&mut self, base: u64, index: u64, v: i32) -> Result<(), ExecError> {
        self.st(base.wrapping_add(index * 4), v as u32)
    }
}

/// Kernel parameters as read from constant buffer 0.
struct Params(Vec<u8>);

impl Params {
    fn u32(&self, off: u32) -> u32 {
        let o = off as usize;
        u32::from_le_bytes([self.0[o], self.0[o + 1], self.0[o + 2], self.0[o + 3]])
    }
    fn u64(&self, off: u32) -> u64 {
        self.u32(off) as u64 | (self.u32(off + 4) as u64) << 32
    }
    fn f32(&self, off: u32) -> f32 {
        f32::from_bits(self.u32(off))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dim3 {
    x: u32,
    y: u32,
    z: u32,
}

/// Every thread's (gx, gy) in launch order (CTA z, y, x; then thread z, y, x).
fn threads(grid: Dim3, block: Dim3) -> impl Iterator<Item = (u64, u64)> {
    (0..grid.z).flat_map(move |_| {
        (0..grid.y).flat_map(move |cy| {
            (0..grid.x).flat_map(move |cx| {
                (0..block.z).flat_map(move |_| {
                    (0..block.y).flat_map(move |ty| {
                        (0..block.x).map(move |tx| {
                            (
                                (cx as u64) * block.x as u64 + tx as u64,
                                (cy as u64) * block.y as u64 + ty as u64,
                            )
                        })
                    })
                })
            })
        })
    })
}

fn param_bytes(kernel: u32) -> Option<u32> {
    Some(match kernel {
        abi::KERNEL_FILL => abi::fill::PARAM_BYTES,
        abi::KERNEL_ADD => abi::add::PARAM_BYTES,
        abi::KERNEL_MMUL => abi::mmul::PARAM_BYTES,
        abi::KERNEL_HOTSPOT => abi::hotspot::PARAM_BYTES,
        abi::KERNEL_LUD_DIAGONAL | abi::KERNEL_LUD_PERIMETER | abi::KERNEL_LUD_INTERNAL => {
            abi::lud::PARAM_BYTES
        }
        abi::KERNEL_SRAD_1 | abi::KERNEL_SRAD_2 => abi::srad::PARAM_BYTES,
        abi::KERNEL_NEEDLE_1 | abi::KERNEL_NEEDLE_2 => abi::needle::PARAM_BYTES,
        _ => return None,
    })
}

/// Executes a LAUNCH with the current compute state.
pub(crate) fn launch(ctx: &ChanCtx, st: &Compute) -> Result<(), ExecError> {
    let code = ((st.program_region[0] & 0xff) as u64) << 32 | st.program_region[1] as u64;
    let tag_va = code.wrapping_add(st.program_start as u64);
    let mut tag = [0u8; abi::TAG_SIZE as usize];
    ctx.read(UNIT, Loc::Virt(tag_va), &mut tag)?;
    let word = |o: u64| {
        u32::from_le_bytes([
            tag[o as usize],
            tag[o as usize + 1],
            tag[o as usize + 2],
            tag[o as usize + 3],
        ])
    };
    let kernel = word(abi::TAG_OFF_KERNEL_ID);
    if word(abi::TAG_OFF_MAGIC) != abi::TAG_MAGIC
        || word(abi::TAG_OFF_VERSION) != abi::TAG_ABI_VERSION
        || word(abi::TAG_OFF_RESERVED) != 0
    {
        return Err(data_error(pgraph::DATA_ERROR_BAD_KERNEL_TAG));
    }
    let nbytes = param_bytes(kernel).ok_or(data_error(pgraph::DATA_ERROR_BAD_KERNEL_TAG))?;
    let dim = |yx: u32, z: u32| Dim3 {
        x: yx & compute::DIM_X_MASK,
        y: yx >> compute::DIM_Y_SHIFT,
        z: z & compute::DIM_Z_MASK,
    };
    let grid = dim(st.raster[0], st.raster[1]);
    let block = dim(st.thread_dim[0], st.thread_dim[1]);
    let threads_per_cta = block.x as u64 * block.y as u64 * block.z as u64;
    if grid.x == 0 || grid.y == 0 || grid.z == 0 || threads_per_cta == 0 || threads_per_cta > 1024 {
        return Err(data_error(pgraph::DATA_ERROR_BAD_LAUNCH_DIMS));
    }
    let cb = st.cb[abi::PARAM_CB_SLOT as usize]
        .ok_or(data_error(pgraph::DATA_ERROR_NO_CONSTANT_BUFFER))?;
    if cb.size < abi::PARAM_BASE + nbytes {
        return Err(data_error(pgraph::DATA_ERROR_NO_CONSTANT_BUFFER));
    }
    let mut raw = vec![0u8; nbytes as usize];
    ctx.read(UNIT, Loc::Virt(cb.addr + abi::PARAM_BASE as u64), &mut raw)?;
    let p = Params(raw);
    let mut m = GlobalMemory::new(ctx);
    let one_d = grid.y == 1 && grid.z == 1 && block.y == 1 && block.z == 1;
    let require = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(data_error(pgraph::DATA_ERROR_BAD_LAUNCH_DIMS))
        }
    };
    match kernel {
        abi::KERNEL_FILL => {
            require(one_d)?;
            fill(&mut m, &p, grid, block)
        }
        abi::KERNEL_ADD => {
            require(one_d)?;
            add(&mut m, &p, grid, block)
        }
        abi::KERNEL_MMUL => mmul(&mut m, &p, grid, block),
        abi::KERNEL_HOTSPOT => hotspot(&mut m, &p, grid, block),
        abi::KERNEL_LUD_DIAGONAL | abi::KERNEL_LUD_PERIMETER | abi::KERNEL_LUD_INTERNAL => {
            let bs = abi::lud::BLOCK;
            let want = match kernel {
                abi::KERNEL_LUD_DIAGONAL => Dim3 { x: bs, y: 1, z: 1 },
                abi::KERNEL_LUD_PERIMETER => Dim3 {
                    x: 2 * bs,
                    y: 1,
                    z: 1,
                },
                _ => Dim3 { x: bs, y: bs, z: 1 },
            };
            require(block == want)?;
            lud(&mut m, &p, kernel, grid)
        }
        abi::KERNEL_SRAD_1 => srad_1(&mut m, &p, grid, block),
        abi::KERNEL_SRAD_2 => srad_2(&mut m, &p, grid, block),
        _ => {
            require(
                block
                    == Dim3 {
                        x: abi::needle::BLOCK,
                        y: 1,
                        z: 1,
                    },
            )?;
            needle(&mut m, &p, kernel == abi::KERNEL_NEEDLE_1, grid)
        }
    }
}

fn fill(m: &mut GlobalMemory, p: &Params, grid: Dim3, block: Dim3) -> Result<(), ExecError> {
    let (dst, count, value) = (
        p.u64(abi::fill::DST),
        p.u32(abi::fill::COUNT) as u64,
        p.u32(abi::fill::VALUE),
    );
    for (gx, _) in threads(grid, block) {
        if gx < count {
            m.st(dst.wrapping_add(gx * 4), value)?;
        }
    }
    Ok(())
}

fn add(m: &mut GlobalMemory, p: &Params, grid: Dim3, block: Dim3) -> Result<(), ExecError> {
    let (a, b, c) = (p.u64(abi::add::A), p.u64(abi::add::B), p.u64(abi::add::C));
    let count = p.u32(abi::add::COUNT) as u64;
    for (gx, _) in threads(grid, block) {
        if gx < count {
            let v = m.ldf(a, gx)? + m.ldf(b, gx)?;
            m.stf(c, gx, v)?;
        }
    }
    Ok(())
}

fn mmul(m: &mut GlobalMemory, p: &Params, grid: Dim3, block: Dim3) -> Result<(), ExecError> {
    let (a, b, c) = (
        p.u64(abi::mmul::A),
        p.u64(abi::mmul::B),
        p.u64(abi::mmul::C),
    );
    let (rows, cols, inner) = (
        p.u32(abi::mmul::M) as u64,
        p.u32(abi::mmul::N) as u64,
        p.u32(abi::mmul::K) as u64,
    );
    for (col, row) in threads(grid, block) {
        if row < rows && col < cols {
            let mut sum = 0.0f32;
            for k in 0..inner {
                let prod = m.ldf(a, row * inner + k)? * m.ldf(b, k * cols + col)?;
                sum += prod;
            }
            m.stf(c, row * cols + col, sum)?;
        }
    }
    Ok(())
}

/// The in-range cells (row, column, index) of a rows x cols grid covered by the launch, in
/// thread order (threads outside the grid do nothing, as in the CUDA originals).
fn cells(grid: Dim3, block: Dim3, rows: u64, cols: u64) -> impl Iterator<Item = (u64, u64, u64)> {
    threads(grid, block)
        .filter(move |&(c, r)| r < rows && c < cols)
        .map(move |(c, r)| (r, c, r * cols + c))
}

/// Clamped neighbour indices (north, south, west, east) of (r, c) in a rows x cols grid.
fn neighbours(r: u64, c: u64, rows: u64, cols: u64) -> (u64, u64, u64, u64) {
    let n = r.saturating_sub(1);
    let s = (r + 1).min(rows - 1);
    let w = c.saturating_sub(1);
    let e = (c + 1).min(cols - 1);
    (n * cols + c, s * cols + c, r * cols + w, r * cols + e)
}

fn hotspot(m: &mut GlobalMemory, p: &Params, grid: Dim3, block: Dim3) -> Result<(), ExecError> {
    use abi::hotspot as h;
    let (power, src, dst) = (p.u64(h::POWER), p.u64(h::TEMP_SRC), p.u64(h::TEMP_DST));
    let (rows, cols) = (p.u32(h::ROWS) as u64, p.u32(h::COLS) as u64);
    let (sdc, rx_1, ry_1, rz_1, amb) = (
        p.f32(h::STEP_DIV_CAP),
        p.f32(h::RX_1),
        p.f32(h::RY_1),
        p.f32(h::RZ_1),
        p.f32(h::AMB_TEMP),
    );
    for (r, c, i) in cells(grid, block, rows, cols) {
        let (ni, si, wi, ei) = neighbours(r, c, rows, cols);
        let t = m.ldf(src, i)?;
        let (n, s, w, e) = (
            m.ldf(src, ni)?,
            m.ldf(src, si)?,
            m.ldf(src, wi)?,
            m.ldf(src, ei)?,
        );
        let v = m.ldf(power, i)?
            + ((s + n) - 2.0 * t) * ry_1
            + ((e + w) - 2.0 * t) * rx_1
            + (amb - t) * rz_1;
        m.stf(dst, i, t + sdc * v)?;
    }
    Ok(())
}

fn lud(m: &mut GlobalMemory, p: &Params, kernel: u32, grid: Dim3) -> Result<(), ExecError> {
    let bs = abi::lud::BLOCK as u64;
    let a = p.u64(abi::lud::MATRIX);
    let dim = p.u32(abi::lud::DIM) as u64;
    let o = p.u32(abi::lud::OFFSET) as u64;
    if dim == 0 || !dim.is_multiple_of(bs) || !o.is_multiple_of(bs) || o >= dim {
        return Err(data_error(pgraph::DATA_ERROR_BAD_PARAMS));
    }
    let at = |r: u64, c: u64| r * dim + c;
    match kernel {
        abi::KERNEL_LUD_DIAGONAL => {
            for _ in 0..grid.x as u64 * grid.y as u64 * grid.z as u64 {
                for k in 0..bs {
                    for i in k + 1..bs {
                        let l = m.ldf(a, at(o + i, o + k))? / m.ldf(a, at(o + k, o + k))?;
                        m.stf(a, at(o + i, o + k), l)?;
                        for j in k + 1..bs {
                            let v = m.ldf(a, at(o + i, o + j))? - l * m.ldf(a, at(o + k, o + j))?;
                            m.stf(a, at(o + i, o + j), v)?;
                        }
                    }
                }
            }
        }
        abi::KERNEL_LUD_PERIMETER => {
            for b in 0..grid.x as u64 {
                let q = o + (b + 1) * bs;
                for j in 0..bs {
                    for i in 1..bs {
                        for k in 0..i {
                            let v = m.ldf(a, at(o + i, q + j))?
                                - m.ldf(a, at(o + i, o + k))? * m.ldf(a, at(o + k, q + j))?;
                            m.stf(a, at(o + i, q + j), v)?;
                        }
                    }
                }
                for i in 0..bs {
                    for j in 0..bs {
                        for k in 0..j {
                            let v = m.ldf(a, at(q + i, o + j))?
                                - m.ldf(a, at(q + i, o + k))? * m.ldf(a, at(o + k, o + j))?;
                            m.stf(a, at(q + i, o + j), v)?;
                        }
                        let v = m.ldf(a, at(q + i, o + j))? / m.ldf(a, at(o + j, o + j))?;
                        m.stf(a, at(q + i, o + j), v)?;
                    }
                }
            }
        }
        _ => {
            for by in 0..grid.y as u64 {
                for bx in 0..grid.x as u64 {
                    let (r0, c0) = (o + (by + 1) * bs, o + (bx + 1) * bs);
                    for i in 0..bs {
                        for j in 0..bs {
                            let mut sum = 0.0f32;
                            for k in 0..bs {
                                let prod =
                                    m.ldf(a, at(r0 + i, o + k))? * m.ldf(a, at(o + k, c0 + j))?;
                                sum += prod;
                            }
                            let v = m.ldf(a, at(r0 + i, c0 + j))? - sum;
                            m.stf(a, at(r0 + i, c0 + j), v)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

struct SradBuffers {
    j: u64,
    c: u64,
    d_n: u64,
    d_s: u64,
    d_w: u64,
    d_e: u64,
    rows: u64,
    cols: u64,
}

fn srad_buffers(p: &Params) -> Result<SradBuffers, ExecError> {
    use abi::srad as s;
    let b = SradBuffers {
        j: p.u64(s::J),
        c: p.u64(s::C),
        d_n: p.u64(s::D_N),
        d_s: p.u64(s::D_S),
        d_w: p.u64(s::D_W),
        d_e: p.u64(s::D_E),
        rows: p.u32(s::ROWS) as u64,
        cols: p.u32(s::COLS) as u64,
    };
    if b.rows == 0 || b.cols == 0 {
        return Err(data_error(pgraph::DATA_ERROR_BAD_PARAMS));
    }
    Ok(b)
}

fn srad_1(m: &mut GlobalMemory, p: &Params, grid: Dim3, block: Dim3) -> Result<(), ExecError> {
    let b = srad_buffers(p)?;
    let q0sqr = p.f32(abi::srad::Q0SQR);
    for (r, c, i) in cells(grid, block, b.rows, b.cols) {
        let (ni, si, wi, ei) = neighbours(r, c, b.rows, b.cols);
        let jc = m.ldf(b.j, i)?;
        let dn = m.ldf(b.j, ni)? - jc;
        let ds = m.ldf(b.j, si)? - jc;
        let dw = m.ldf(b.j, wi)? - jc;
        let de = m.ldf(b.j, ei)? - jc;
        let g2 = (dn * dn + ds * ds + dw * dw + de * de) / (jc * jc);
        let l = (dn + ds + dw + de) / jc;
        let num = (0.5 * g2) - ((1.0 / 16.0) * (l * l));
        let den = 1.0 + (0.25 * l);
        let qsqr = num / (den * den);
        let den = (qsqr - q0sqr) / (q0sqr * (1.0 + q0sqr));
        let cv = 1.0 / (1.0 + den);
        let cv = cv.clamp(0.0, 1.0);
        m.stf(b.c, i, cv)?;
        m.stf(b.d_n, i, dn)?;
        m.stf(b.d_s, i, ds)?;
        m.stf(b.d_w, i, dw)?;
        m.stf(b.d_e, i, de)?;
    }
    Ok(())
}

fn srad_2(m: &mut GlobalMemory, p: &Params, grid: Dim3, block: Dim3) -> Result<(), ExecError> {
    let b = srad_buffers(p)?;
    let lambda = p.f32(abi::srad::LAMBDA);
    for (r, c, i) in cells(grid, block, b.rows, b.cols) {
        let (_, si, _, ei) = neighbours(r, c, b.rows, b.cols);
        let (cn, cs, cw, ce) = (
            m.ldf(b.c, i)?,
            m.ldf(b.c, si)?,
            m.ldf(b.c, i)?,
            m.ldf(b.c, ei)?,
        );
        let d = cn * m.ldf(b.d_n, i)?
            + cs * m.ldf(b.d_s, i)?
            + cw * m.ldf(b.d_w, i)?
            + ce * m.ldf(b.d_e, i)?;
        let v = m.ldf(b.j, i)? + (0.25 * lambda) * d;
        m.stf(b.j, i, v)?;
    }
    Ok(())
}

fn needle(m: &mut GlobalMemory, p: &Params, first_half: bool, grid: Dim3) -> Result<(), ExecError> {
    use abi::needle as nw;
    let bs = nw::BLOCK as u64;
    let (reference, items) = (p.u64(nw::REFERENCE), p.u64(nw::ITEMS));
    let cols = p.u32(nw::COLS) as u64;
    let penalty = p.u32(nw::PENALTY) as i32;
    let it = p.u32(nw::ITERATION) as u64;
    let width = p.u32(nw::BLOCK_WIDTH) as u64;
    if it == 0 || it > width || cols < width * bs + 1 {
        return Err(data_error(pgraph::DATA_ERROR_BAD_PARAMS));
    }
    for b in 0..grid.x as u64 {
        let (tx, ty) = if first_half {
            (b, (it - 1).wrapping_sub(b))
        } else {
            ((b + width).wrapping_sub(it), (width - 1).wrapping_sub(b))
        };
        for i in 0..bs {
            for j in 0..bs {
                // Out-of-range tiles (a grid larger than the iteration) wrap like GPU address
                // arithmetic and fault or scribble; they never panic the model.
                let r = ty.wrapping_mul(bs).wrapping_add(1 + i);
                let c = tx.wrapping_mul(bs).wrapping_add(1 + j);
                let at = |r: u64, c: u64| r.wrapping_mul(cols).wrapping_add(c);
                let (up_r, left_c) = (r.wrapping_sub(1), c.wrapping_sub(1));
                let diag = m
                    .ldi(items, at(up_r, left_c))?
                    .wrapping_add(m.ldi(reference, at(r, c))?);
                let left = m.ldi(items, at(r, left_c))?.wrapping_sub(penalty);
                let up = m.ldi(items, at(up_r, c))?.wrapping_sub(penalty);
                m.sti(items, at(r, c), diag.max(left).max(up))?;
            }
        }
    }
    Ok(())
}
