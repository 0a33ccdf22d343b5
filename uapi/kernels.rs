//! The GF100 model's built-in compute kernel library.
//!
//! The model cannot execute Fermi machine code. Instead, a compute LAUNCH (`compute::LAUNCH`)
//! reads a 16-byte **kernel tag** at the code address `PROGRAM_REGION + CTA_PROGRAM_START`
//! (through the channel's page tables) and runs the built-in kernel it names. The driver
//! uploads the tag where the kernel's machine code would go.
//!
//! Parameters are read from **constant buffer slot 0** (bound with BIND_CONSTANT_BUFFER),
//! starting at byte `PARAM_BASE`, in the little-endian layouts below (pointers are 64-bit
//! channel VAs, 8-byte aligned in the buffer). Bytes 0..0x20 of c0 are left to the driver
//! (Gdev writes shared base, local base, block x/y/z, grid x/y/z there); the model takes the
//! grid and block dimensions from the launch methods (SET_CTA_RASTER_SIZE_A/B,
//! SET_CTA_THREAD_DIMENSION_A/B) only.
//!
//! Every kernel reads and writes its buffers through the channel's GPU page tables; a fault
//! aborts the kernel (stores already done stay done), raises an MMU fault and stops the
//! channel. A bad tag, a required block shape that does not match, or invalid parameters
//! raise PGRAPH DATA_ERROR (`pgraph::DATA_ERROR_*` in gf100.rs) and stop the channel.
//!
//! Arithmetic is IEEE f32 (i32 with two's-complement wrap for `needle`), evaluated in exactly
//! the order written below (Rust operator precedence, left to right), so a CPU reference
//! reproduces results bit for bit. Thread indices: `gx = ctaid.x * ntid.x + tid.x`,
//! `gy = ctaid.y * ntid.y + tid.y`; every launched thread runs (the grid/block come from the
//! launch), which is why the kernels bound-check like their CUDA originals.
//! Indices "clamped" below mean `max(i - 1, 0)` / `min(i + 1, n - 1)` at the borders.

/// Tag layout at the code address.
pub const TAG_MAGIC: u32 = 0x4b4d_5647; // "GVMK" as little-endian bytes
pub const TAG_ABI_VERSION: u32 = 1;
pub const TAG_SIZE: u64 = 16;
/// Tag word offsets: magic, kernel id, ABI version, reserved (must be 0).
pub const TAG_OFF_MAGIC: u64 = 0x0;
pub const TAG_OFF_KERNEL_ID: u64 = 0x4;
pub const TAG_OFF_VERSION: u64 = 0x8;
pub const TAG_OFF_RESERVED: u64 = 0xc;

/// Constant buffer slot holding the parameters, and their start in it.
pub const PARAM_CB_SLOT: u32 = 0;
pub const PARAM_BASE: u32 = 0x20;

/// Kernel ids (tag word 1).
pub const KERNEL_FILL: u32 = 1;
pub const KERNEL_ADD: u32 = 2;
pub const KERNEL_MMUL: u32 = 3;
pub const KERNEL_HOTSPOT: u32 = 4;
pub const KERNEL_LUD_DIAGONAL: u32 = 5;
pub const KERNEL_LUD_PERIMETER: u32 = 6;
pub const KERNEL_LUD_INTERNAL: u32 = 7;
pub const KERNEL_SRAD_1: u32 = 8;
pub const KERNEL_SRAD_2: u32 = 9;
pub const KERNEL_NEEDLE_1: u32 = 10;
pub const KERNEL_NEEDLE_2: u32 = 11;

/// `fill`: 1-D. Thread `gx < count`: `dst[gx] = value` (u32 words).
/// Requires grid y = z = 1 and block y = z = 1.
pub mod fill {
    pub const DST: u32 = 0x00;
    pub const COUNT: u32 = 0x08;
    pub const VALUE: u32 = 0x0c;
    pub const PARAM_BYTES: u32 = 0x10;
}

/// `add`: 1-D. Thread `gx < count`: `c[gx] = a[gx] + b[gx]` (f32).
/// Requires grid y = z = 1 and block y = z = 1.
pub mod add {
    pub const A: u32 = 0x00;
    pub const B: u32 = 0x08;
    pub const C: u32 = 0x10;
    pub const COUNT: u32 = 0x18;
    pub const PARAM_BYTES: u32 = 0x1c;
}

/// `mmul`: C (m x n) = A (m x k) * B (k x n), row-major f32. Thread (row = gy, col = gx)
/// with `row < m && col < n`: `sum = 0.0; for p in 0..k { sum = sum + a[row*k+p] * b[p*n+col] }`
/// (a separate multiply and add, no fused multiply-add); `c[row*n+col] = sum`.
pub mod mmul {
    pub const A: u32 = 0x00;
    pub const B: u32 = 0x08;
    pub const C: u32 = 0x10;
    pub const M: u32 = 0x18;
    pub const N: u32 = 0x1c;
    pub const K: u32 = 0x20;
    pub const PARAM_BYTES: u32 = 0x24;
}

/// `hotspot` (Rodinia HotSpot, one thermal stencil iteration per launch; the driver
/// ping-pongs `temp_src`/`temp_dst`). Thread (r = gy, c = gx) with `r < rows && c < cols`,
/// `i = r*cols + c`, `t = temp_src[i]`, `n`/`s` = temp_src at rows r-1/r+1 (clamped), `w`/`e`
/// at columns c-1/c+1 (clamped):
/// `v = power[i] + ((s + n) - 2.0 * t) * ry_1 + ((e + w) - 2.0 * t) * rx_1 + (amb_temp - t) * rz_1;`
/// `temp_dst[i] = t + step_div_cap * v`.
/// (`step_div_cap = step / Cap`, `rx_1 = 1 / Rx` etc., computed by the host as in Rodinia.)
pub mod hotspot {
    pub const POWER: u32 = 0x00;
    pub const TEMP_SRC: u32 = 0x08;
    pub const TEMP_DST: u32 = 0x10;
    pub const ROWS: u32 = 0x18;
    pub const COLS: u32 = 0x1c;
    pub const STEP_DIV_CAP: u32 = 0x20;
    pub const RX_1: u32 = 0x24;
    pub const RY_1: u32 = 0x28;
    pub const RZ_1: u32 = 0x2c;
    pub const AMB_TEMP: u32 = 0x30;
    pub const PARAM_BYTES: u32 = 0x34;
}

/// `lud` (Rodinia LUD, blocked LU decomposition without pivoting, in place, row-major f32
/// matrix `a` of `dim x dim`, tile size `BLOCK`). `dim` and `offset` must be multiples of
/// `BLOCK` and `offset < dim` (else DATA_ERROR_BAD_PARAMS). Writing `o = offset`:
///
/// * **diagonal** (block must be `(BLOCK,1,1)`; each CTA of the grid repeats the same tile, so
///   launch grid (1,1,1)): for k in 0..BLOCK, for i in k+1..BLOCK:
///   `a[o+i][o+k] = a[o+i][o+k] / a[o+k][o+k]`, then for j in k+1..BLOCK:
///   `a[o+i][o+j] = a[o+i][o+j] - a[o+i][o+k] * a[o+k][o+j]`.
/// * **perimeter** (block `(2*BLOCK,1,1)`, grid `((dim-o)/BLOCK - 1, 1, 1)`): CTA b works on
///   `q = o + (b+1)*BLOCK`. First the U tile (rows o.., columns q..): for j in 0..BLOCK, for i
///   in 1..BLOCK, for k in 0..i: `a[o+i][q+j] = a[o+i][q+j] - a[o+i][o+k] * a[o+k][q+j]`.
///   Then the L tile (rows q.., columns o..): for i in 0..BLOCK, for j in 0..BLOCK: for k in
///   0..j: `a[q+i][o+j] = a[q+i][o+j] - a[q+i][o+k] * a[o+k][o+j]`; then
///   `a[q+i][o+j] = a[q+i][o+j] / a[o+j][o+j]`.
/// * **internal** (block `(BLOCK,BLOCK,1)`, grid `(g, g, 1)` with `g = (dim-o)/BLOCK - 1`): CTA
///   (bx, by) updates rows `r0 = o + (by+1)*BLOCK`, columns `c0 = o + (bx+1)*BLOCK`: for i, j in
///   0..BLOCK: `sum = 0.0; for k in 0..BLOCK { sum = sum + a[r0+i][o+k] * a[o+k][c0+j] }`;
///   `a[r0+i][c0+j] = a[r0+i][c0+j] - sum`.
pub mod lud {
    pub const BLOCK: u32 = 16;
    pub const MATRIX: u32 = 0x00;
    pub const DIM: u32 = 0x08;
    pub const OFFSET: u32 = 0x0c;
    pub const PARAM_BYTES: u32 = 0x10;
}

/// `srad` (Rodinia SRAD v2, two kernels per iteration; `q0sqr` is computed by the host from
/// the ROI statistics as in Rodinia). Thread (r = gy, c = gx) with `r < rows && c < cols`,
/// `i = r*cols + c`; N/S/W/E are the clamped neighbour indices.
///
/// * **srad_1**: `jc = j[i]`; `dn = j[N] - jc`, `ds = j[S] - jc`, `dw = j[W] - jc`,
///   `de = j[E] - jc`; `g2 = (dn*dn + ds*ds + dw*dw + de*de) / (jc*jc)`;
///   `l = (dn + ds + dw + de) / jc`; `num = (0.5*g2) - ((1.0/16.0)*(l*l))`;
///   `den = 1.0 + (0.25*l)`; `qsqr = num / (den*den)`;
///   `den = (qsqr - q0sqr) / (q0sqr * (1.0 + q0sqr))`; `cv = 1.0 / (1.0 + den)`; clamp cv to
///   [0, 1] (`cv.clamp(0.0, 1.0)`, NaN stays NaN); store `c[i] = cv` and
///   `d_n[i] = dn`, `d_s[i] = ds`, `d_w[i] = dw`, `d_e[i] = de`.
/// * **srad_2**: `cn = c[i]; cs = c[S]; cw = c[i]; ce = c[E];`
///   `d = cn*d_n[i] + cs*d_s[i] + cw*d_w[i] + ce*d_e[i];` `j[i] = j[i] + (0.25*lambda)*d`.
pub mod srad {
    pub const J: u32 = 0x00;
    pub const C: u32 = 0x08;
    pub const D_N: u32 = 0x10;
    pub const D_S: u32 = 0x18;
    pub const D_W: u32 = 0x20;
    pub const D_E: u32 = 0x28;
    pub const ROWS: u32 = 0x30;
    pub const COLS: u32 = 0x34;
    pub const Q0SQR: u32 = 0x38;
    pub const LAMBDA: u32 = 0x3c;
    pub const PARAM_BYTES: u32 = 0x40;
}

/// `needle` (Rodinia Needleman-Wunsch, i32 row-major `items` and `reference` of
/// `cols x cols`, `cols = n + 1`, tile size `BLOCK`; block must be `(BLOCK,1,1)`).
/// Host iteration `it` launches grid `(it,1,1)`: **needle_1** for it = 1..=block_width
/// (CTA b: tile x = b, tile y = it - 1 - b), **needle_2** for it = block_width-1 down to 1
/// (CTA b: tile x = b + block_width - it, tile y = block_width - b - 1).
/// A tile (tx, ty) covers rows `ty*BLOCK+1 ..` and columns `tx*BLOCK+1 ..`; for each row i
/// then column j of the tile (row-major order), with (r, c) the cell:
/// `items[r][c] = max(max(items[r-1][c-1] + reference[r][c], items[r][c-1] - penalty),
/// items[r-1][c] - penalty)` (wrapping i32 arithmetic).
pub mod needle {
    pub const BLOCK: u32 = 16;
    pub const REFERENCE: u32 = 0x00;
    pub const ITEMS: u32 = 0x08;
    pub const COLS: u32 = 0x10;
    pub const PENALTY: u32 = 0x14;
    pub const ITERATION: u32 = 0x18;
    pub const BLOCK_WIDTH: u32 = 0x1c;
    pub const PARAM_BYTES: u32 = 0x20;
}
