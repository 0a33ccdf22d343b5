//! Engine objects bound to subchannels: M2MF (0x9039), copy (0x90b5/0x90b8, NVIDIA's layout)
//! and compute (0x90c0). Methods a class does not define raise PBDMA ILLEGAL_MTHD, and so does
//! a physical copy on a channel whose RAMFC keeps the physical-copy gate closed.

use std::time::Instant;

use gpuvm_uapi::gf100::{class, compute, copy, m2mf, pfifo, pgraph};

use crate::bus::PhysAddr;
use crate::counters::Counters;
use crate::kernels;
use crate::pfifo::{ChanCtx, ExecError, Flow, Loc, ENGINE_CE0, ENGINE_CE1, ENGINE_GR};

pub(crate) enum Object {
    M2mf(Box<M2mf>),
    Copy(Box<Copy>),
    Compute(Box<Compute>),
}

fn illegal() -> ExecError {
    ExecError::Pbdma {
        bits: pfifo::PBDMA_INTR_ILLEGAL_MTHD,
    }
}

fn unsupported() -> ExecError {
    ExecError::Pgraph {
        bit: pgraph::INTR_DATA_ERROR,
        code: pgraph::DATA_ERROR_UNSUPPORTED,
    }
}

fn addr40(hi: u32, lo: u32) -> u64 {
    ((hi & 0xff) as u64) << 32 | lo as u64
}

impl Object {
    /// The object for SET_OBJECT(class | engine << 16), if the model implements that pair.
    pub fn new(cls: u32, engine: u32) -> Option<Object> {
        match (cls, engine) {
            (class::M2MF, pfifo::ENGINE_PGRAPH) => Some(Object::M2mf(Box::default())),
            (class::COMPUTE, pfifo::ENGINE_PGRAPH) => Some(Object::Compute(Box::default())),
            (class::COPY0, pfifo::ENGINE_PCOPY0) => Some(Object::Copy(Box::new(Copy {
                unit: pfifo::FAULT_UNIT_PCOPY0,
                ..Copy::default()
            }))),
            (class::COPY1, pfifo::ENGINE_PCOPY1) => Some(Object::Copy(Box::new(Copy {
                unit: pfifo::FAULT_UNIT_PCOPY1,
                ..Copy::default()
            }))),
            _ => None,
        }
    }

    pub fn method(&mut self, ctx: &ChanCtx, mthd: u32, data: u32) -> Result<Flow, ExecError> {
        match self {
            Object::M2mf(o) => o.method(ctx, mthd, data),
            Object::Copy(o) => o.method(ctx, mthd, data),
            Object::Compute(o) => o.method(ctx, mthd, data),
        }
        .map(|()| Flow::Done)
    }
}

/// NOTIFY (M2MF and compute): writes {time_lo, time_hi, 0, 0} at the notifier address; with
/// WRITE_THEN_AWAKEN also raises PGRAPH NOTIFY.
fn notify(ctx: &ChanCtx, addr: u64, data: u32) -> Result<(), ExecError> {
    let t = ctx.time_ns();
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&t.to_le_bytes());
    ctx.write(pfifo::FAULT_UNIT_PGRAPH, Loc::Virt(addr), &b)?;
    if data == m2mf::NOTIFY_WRITE_THEN_AWAKEN {
        ctx.pgraph_notify();
    }
    Ok(())
}

struct InlineUpload {
    dst: u64,
    pitch_out: u32,
    line_length: u32,
    lines: u32,
    line: u32,
    col: u32,
    launch: u32,
}

#[derive(Default)]
pub(crate) struct M2mf {
    out_hi: u32,
    out_lo: u32,
    in_hi: u32,
    in_lo: u32,
    pitch_in: u32,
    pitch_out: u32,
    line_length: u32,
    line_count: u32,
    sem: [u32; 3],
    notify: [u32; 2],
    inline: Option<InlineUpload>,
}

impl M2mf {
    fn method(&mut self, ctx: &ChanCtx, mthd: u32, data: u32) -> Result<(), ExecError> {
        if self.inline.is_some() && mthd != m2mf::LOAD_INLINE_DATA {
            // Mesa: inline data must directly follow the launch.
            return Err(illegal());
        }
        match mthd {
            m2mf::NOP | m2mf::WAIT_FOR_IDLE => {}
            m2mf::SET_NOTIFY_A => self.notify[0] = data,
            m2mf::SET_NOTIFY_B => self.notify[1] = data,
            m2mf::NOTIFY => notify(ctx, addr40(self.notify[0], self.notify[1]), data)?,
            m2mf::SET_SRC_BLOCK_SIZE..=m2mf::SET_SRC_LAYER
            | m2mf::SET_DST_BLOCK_SIZE..=m2mf::SET_DST_LAYER
            | m2mf::SET_RENDER_ENABLE_A..=m2mf::SET_DST_ORIGIN_Y => {}
            m2mf::OFFSET_OUT_UPPER => self.out_hi = data,
            m2mf::OFFSET_OUT => self.out_lo = data,
            m2mf::OFFSET_IN_UPPER => self.in_hi = data,
            m2mf::OFFSET_IN => self.in_lo = data,
            m2mf::PITCH_IN => self.pitch_in = data,
            m2mf::PITCH_OUT => self.pitch_out = data,
            m2mf::LINE_LENGTH_IN => self.line_length = data,
            m2mf::LINE_COUNT => self.line_count = data,
            m2mf::SET_SEMAPHORE_A => self.sem[0] = data,
            m2mf::SET_SEMAPHORE_B => self.sem[1] = data,
            m2mf::SET_SEMAPHORE_C => self.sem[2] = data,
            m2mf::LAUNCH_DMA => self.launch(ctx, data)?,
            m2mf::LOAD_INLINE_DATA => self.inline_data(ctx, data)?,
            _ => return Err(illegal()),
        }
        Ok(())
    }

    fn launch(&mut self, ctx: &ChanCtx, launch: u32) -> Result<(), ExecError> {
        if launch & m2mf::LAUNCH_DST_PITCH == 0 {
            return Err(unsupported());
        }
        let dst = addr40(self.out_hi, self.out_lo);
        if launch & m2mf::LAUNCH_SRC_INLINE != 0 {
            let up = InlineUpload {
                dst,
                pitch_out: self.pitch_out,
                line_length: self.line_length,
                lines: self.line_count,
                line: 0,
                col: 0,
                launch,
            };
            if up.line_length == 0 || up.lines == 0 {
                return self.complete(ctx, launch);
            }
            self.inline = Some(up);
            return Ok(());
        }
        if launch & m2mf::LAUNCH_SRC_PITCH == 0 {
            return Err(unsupported());
        }
        let gr = ctx.engine(ENGINE_GR);
        let started = Instant::now();
        let src = addr40(self.in_hi, self.in_lo);
        let unit = pfifo::FAULT_UNIT_PGRAPH;
        let res = (0..self.line_count as u64).try_for_each(|line| {
            gr.check()?;
            ctx.copy(
                &gr,
                unit,
                Loc::Virt(dst).offset(line * self.pitch_out as u64),
                Loc::Virt(src).offset(line * self.pitch_in as u64),
                self.line_length as u64,
            )?;
            Counters::add(&ctx.gpu.counters.m2mf_bytes, self.line_length as u64);
            Ok(())
        });
        Counters::add(
            &ctx.gpu.counters.busy_ns_pgraph,
            started.elapsed().as_nanos() as u64,
        );
        res?;
        self.complete(ctx, launch)
    }

    fn inline_data(&mut self, ctx: &ChanCtx, data: u32) -> Result<(), ExecError> {
        let Some(up) = self.inline.as_mut() else {
            return Err(illegal());
        };
        let _gr = ctx.engine(ENGINE_GR);
        let n = (up.line_length - up.col).min(4);
        let va = up
            .dst
            .wrapping_add(up.line as u64 * up.pitch_out as u64 + up.col as u64);
        ctx.write(
            pfifo::FAULT_UNIT_PGRAPH,
            Loc::Virt(va),
            &data.to_le_bytes()[..n as usize],
        )?;
        Counters::add(&ctx.gpu.counters.m2mf_bytes, n as u64);
        up.col += n;
        if up.col == up.line_length {
            up.col = 0;
            up.line += 1;
        }
        if up.line == up.lines {
            let launch = up.launch;
            self.inline = None;
            self.complete(ctx, launch)?;
        }
        Ok(())
    }

    fn complete(&mut self, ctx: &ChanCtx, launch: u32) -> Result<(), ExecError> {
        let completion = (launch >> m2mf::LAUNCH_COMPLETION_SHIFT) & m2mf::LAUNCH_COMPLETION_MASK;
        if completion == m2mf::COMPLETION_RELEASE_SEMAPHORE {
            let four = launch & m2mf::LAUNCH_SEMAPHORE_ONE_WORD == 0;
            ctx.release(
                pfifo::FAULT_UNIT_PGRAPH,
                addr40(self.sem[0], self.sem[1]),
                self.sem[2],
                four,
            )?;
        }
        if (launch >> m2mf::LAUNCH_INTERRUPT_SHIFT) & m2mf::LAUNCH_INTERRUPT_MASK != 0 {
            ctx.pgraph_notify();
        }
        Ok(())
    }
}

#[derive(Default)]
pub(crate) struct Copy {
    unit: u32,
    sem: [u32; 3],
    addressing: u32,
    in_hi: u32,
    in_lo: u32,
    out_hi: u32,
    out_lo: u32,
    pitch_in: u32,
    pitch_out: u32,
    line_length: u32,
    line_count: u32,
}

impl Copy {
    fn method(&mut self, ctx: &ChanCtx, mthd: u32, data: u32) -> Result<(), ExecError> {
        match mthd {
            copy::NOP | copy::PM_TRIGGER | copy::SET_APPLICATION_ID | copy::SET_WATCHDOG_TIMER => {}
            copy::SET_RENDER_ENABLE_A..=copy::SET_RENDER_ENABLE_C => {}
            copy::SET_REMAP_CONST_A..=copy::SET_DST_ORIGIN
            | copy::SET_SRC_BLOCK_SIZE..=copy::SET_SRC_ORIGIN => {}
            copy::PM_TRIGGER_END => {}
            copy::SET_SEMAPHORE_A => self.sem[0] = data,
            copy::SET_SEMAPHORE_B => self.sem[1] = data,
            copy::SET_SEMAPHORE_PAYLOAD => self.sem[2] = data,
            copy::ADDRESSING_MODE => self.addressing = data,
            copy::OFFSET_IN_UPPER => self.in_hi = data,
            copy::OFFSET_IN_LOWER => self.in_lo = data,
            copy::OFFSET_OUT_UPPER => self.out_hi = data,
            copy::OFFSET_OUT_LOWER => self.out_lo = data,
            copy::PITCH_IN => self.pitch_in = data,
            copy::PITCH_OUT => self.pitch_out = data,
            copy::LINE_LENGTH_IN => self.line_length = data,
            copy::LINE_COUNT => self.line_count = data,
            copy::LAUNCH_DMA => self.launch(ctx, data)?,
            _ => return Err(illegal()),
        }
        Ok(())
    }

    fn location(
        &self,
        physical_bit: u32,
        target_shift: u32,
        hi: u32,
        lo: u32,
    ) -> Result<Loc, ExecError> {
        let addr = addr40(hi, lo);
        if self.addressing & physical_bit == 0 {
            return Ok(Loc::Virt(addr));
        }
        match (self.addressing >> target_shift) & copy::ADDR_TARGET_MASK {
            copy::PHYS_TARGET_LOCAL_FB => Ok(Loc::Phys(PhysAddr::vram(addr))),
            copy::PHYS_TARGET_COHERENT_SYSMEM | copy::PHYS_TARGET_NONCOHERENT_SYSMEM => {
                Ok(Loc::Phys(PhysAddr::sys(addr)))
            }
            _ => Err(unsupported()),
        }
    }

    fn launch(&mut self, ctx: &ChanCtx, launch: u32) -> Result<(), ExecError> {
        let transfer = (launch >> copy::LAUNCH_TRANSFER_SHIFT) & copy::LAUNCH_TRANSFER_MASK;
        if transfer != copy::TRANSFER_NONE {
            // The gate (uapi `ramfc::HCE_CTRL`): a physical copy is a privileged operation;
            // without the channel's HCE_PRIV_MODE nothing is read or written.
            let physical = copy::ADDR_SRC_PHYSICAL | copy::ADDR_DST_PHYSICAL;
            if self.addressing & physical != 0 && !ctx.phys_copy {
                return Err(illegal());
            }
            let pitch = copy::LAUNCH_SRC_PITCH | copy::LAUNCH_DST_PITCH;
            if launch & pitch != pitch || launch & copy::LAUNCH_REMAP != 0 {
                return Err(unsupported());
            }
            let src = self.location(
                copy::ADDR_SRC_PHYSICAL,
                copy::ADDR_SRC_TARGET_SHIFT,
                self.in_hi,
                self.in_lo,
            )?;
            let dst = self.location(
                copy::ADDR_DST_PHYSICAL,
                copy::ADDR_DST_TARGET_SHIFT,
                self.out_hi,
                self.out_lo,
            )?;
            let lines = if launch & copy::LAUNCH_MULTI_LINE != 0 {
                self.line_count as u64
            } else {
                1
            };
            let ce = ctx.engine(if self.unit == pfifo::FAULT_UNIT_PCOPY0 {
                ENGINE_CE0
            } else {
                ENGINE_CE1
            });
            let started = Instant::now();
            let res = (0..lines).try_for_each(|line| {
                let d = dst.offset(line * self.pitch_out as u64);
                let s = src.offset(line * self.pitch_in as u64);
                ce.check()?;
                ctx.copy(&ce, self.unit, d, s, self.line_length as u64)?;
                Counters::add(&ctx.gpu.counters.copy_bytes, self.line_length as u64);
                Ok(())
            });
            let busy = if self.unit == pfifo::FAULT_UNIT_PCOPY0 {
                &ctx.gpu.counters.busy_ns_pcopy0
            } else {
                &ctx.gpu.counters.busy_ns_pcopy1
            };
            Counters::add(busy, started.elapsed().as_nanos() as u64);
            res?;
        }
        match (launch >> copy::LAUNCH_SEMAPHORE_SHIFT) & copy::LAUNCH_SEMAPHORE_MASK {
            copy::SEMAPHORE_NONE => {}
            copy::SEMAPHORE_ONE_WORD => ctx.release(
                self.unit,
                addr40(self.sem[0], self.sem[1]),
                self.sem[2],
                false,
            )?,
            copy::SEMAPHORE_FOUR_WORD => ctx.release(
                self.unit,
                addr40(self.sem[0], self.sem[1]),
                self.sem[2],
                true,
            )?,
            _ => return Err(unsupported()),
        }
        if (launch >> copy::LAUNCH_INTERRUPT_SHIFT) & copy::LAUNCH_INTERRUPT_MASK != 0 {
            ctx.nonstall();
        }
        Ok(())
    }
}

/// A bound constant buffer.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct ConstantBuffer {
    pub addr: u64,
    pub size: u32,
}

/// Compute launch state (the subset the model uses).
#[derive(Default)]
pub(crate) struct Compute {
    pub program_region: [u32; 2],
    pub program_start: u32,
    pub raster: [u32; 2],
    pub thread_dim: [u32; 2],
    cb_select: [u32; 3],
    cb_offset: u32,
    pub cb: [Option<ConstantBuffer>; compute::CONSTANT_BUFFER_SLOTS as usize],
    report: [u32; 3],
    notify: [u32; 2],
}

/// Methods that set state the model does not need (accepted, no effect).
fn compute_method_ignored(mthd: u32) -> bool {
    matches!(
        mthd,
        compute::NOP
            | compute::WAIT_FOR_IDLE
            | compute::SET_SHADER_LOCAL_MEMORY_LOW_SIZE
            | compute::SET_SHADER_LOCAL_MEMORY_HIGH_SIZE
            | compute::SET_SHADER_LOCAL_MEMORY_CRS_SIZE
            | compute::SET_SHADER_SHARED_MEMORY_WINDOW
            | compute::INVALIDATE_SHADER_CACHES
            | compute::SET_SHADER_SHARED_MEMORY_SIZE
            | compute::SET_CTA_THREAD_COUNT
            | compute::SET_CTA_BARRIER_COUNT
            | compute::BEGIN_GRID
            | compute::SET_WORK_DISTRIBUTION
            | compute::SET_CTA_REGISTER_COUNT
            | compute::SET_GA_TO_VA_MAPPING_MODE
            | compute::LOAD_GA_TO_VA_MAPPING_ENTRY
            | compute::SET_L1_CONFIGURATION
            | compute::WAIT_REF_COUNT
            | compute::SET_LAUNCH_ID
            | compute::SET_MAX_SM_COUNT
            | compute::SET_SHADER_LOCAL_MEMORY_WINDOW
            | compute::SET_GRID_PARAM
            | compute::SET_SHADER_LOCAL_MEMORY_A
            | compute::SET_SHADER_LOCAL_MEMORY_B
            | compute::SET_SHADER_LOCAL_MEMORY_C
            | compute::SET_SHADER_LOCAL_MEMORY_D
            | compute::SET_SHADER_LOCAL_MEMORY_E
            | compute::END_GRID
            | compute::SET_LAUNCH_SIZE
            | compute::SET_API_VISIBLE_CALL_LIMIT
            | compute::INVALIDATE_SHADER_CACHES_NO_WFI
    )
}

impl Compute {
    fn method(&mut self, ctx: &ChanCtx, mthd: u32, data: u32) -> Result<(), ExecError> {
        let cb_data_end = compute::LOAD_CONSTANT_BUFFER + 4 * compute::LOAD_CONSTANT_BUFFER_WORDS;
        match mthd {
            m if compute_method_ignored(m) => {}
            compute::SET_NOTIFY_A => self.notify[0] = data,
            compute::SET_NOTIFY_B => self.notify[1] = data,
            compute::NOTIFY => notify(ctx, addr40(self.notify[0], self.notify[1]), data)?,
            compute::SET_CTA_RASTER_SIZE_A => self.raster[0] = data,
            compute::SET_CTA_RASTER_SIZE_B => self.raster[1] = data,
            compute::SET_CTA_THREAD_DIMENSION_A => self.thread_dim[0] = data,
            compute::SET_CTA_THREAD_DIMENSION_B => self.thread_dim[1] = data,
            compute::SET_CTA_PROGRAM_START => self.program_start = data,
            compute::SET_PROGRAM_REGION_A => self.program_region[0] = data,
            compute::SET_PROGRAM_REGION_B => self.program_region[1] = data,
            compute::SET_CONSTANT_BUFFER_SELECTOR_A => self.cb_select[0] = data,
            compute::SET_CONSTANT_BUFFER_SELECTOR_B => self.cb_select[1] = data,
            compute::SET_CONSTANT_BUFFER_SELECTOR_C => self.cb_select[2] = data,
            compute::LOAD_CONSTANT_BUFFER_OFFSET => self.cb_offset = data,
            m if (compute::LOAD_CONSTANT_BUFFER..cb_data_end).contains(&m) => {
                let size = self.cb_select[0] & compute::CB_SIZE_MASK;
                if !self.cb_offset.is_multiple_of(4) || self.cb_offset >= size {
                    return Err(ExecError::Pgraph {
                        bit: pgraph::INTR_DATA_ERROR,
                        code: pgraph::DATA_ERROR_BAD_PARAMS,
                    });
                }
                let va = addr40(self.cb_select[1], self.cb_select[2]) + self.cb_offset as u64;
                ctx.write(pfifo::FAULT_UNIT_PGRAPH, Loc::Virt(va), &data.to_le_bytes())?;
                self.cb_offset += 4;
            }
            compute::BIND_CONSTANT_BUFFER => {
                let slot = (data >> compute::BIND_SLOT_SHIFT) & compute::BIND_SLOT_MASK;
                if slot >= compute::CONSTANT_BUFFER_SLOTS {
                    return Err(illegal());
                }
                self.cb[slot as usize] =
                    (data & compute::BIND_VALID != 0).then(|| ConstantBuffer {
                        addr: addr40(self.cb_select[1], self.cb_select[2]),
                        size: self.cb_select[0] & compute::CB_SIZE_MASK,
                    });
            }
            compute::SET_REPORT_SEMAPHORE_A => self.report[0] = data,
            compute::SET_REPORT_SEMAPHORE_B => self.report[1] = data,
            compute::SET_REPORT_SEMAPHORE_C => self.report[2] = data,
            compute::SET_REPORT_SEMAPHORE_D => {
                if data & compute::REPORT_OP_MASK != compute::REPORT_OP_RELEASE {
                    return Err(unsupported());
                }
                let four = data & compute::REPORT_ONE_WORD == 0;
                ctx.release(
                    pfifo::FAULT_UNIT_PGRAPH,
                    addr40(self.report[0], self.report[1]),
                    self.report[2],
                    four,
                )?;
                if data & compute::REPORT_AWAKEN != 0 {
                    ctx.pgraph_notify();
                }
            }
            compute::LAUNCH => {
                let _gr = ctx.engine(ENGINE_GR);
                // Counted when the grid starts (observers can tell a running kernel).
                Counters::inc(&ctx.gpu.counters.kernels_launched);
                let started = Instant::now();
                let res = kernels::launch(ctx, self);
                Counters::add(
                    &ctx.gpu.counters.busy_ns_pgraph,
                    started.elapsed().as_nanos() as u64,
                );
                res?;
            }
            _ => return Err(illegal()),
        }
        Ok(())
    }
}
