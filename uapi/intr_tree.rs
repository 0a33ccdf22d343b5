// SPDX-License-Identifier: GPL-2.0
//! The GF100's top-level interrupt tree (§3.3, §4): PMC's INTR / INTR_EN / INTR_MASK of the
//! HOST and NRHOST outputs, the software interrupt, PMC_ENABLE and the gating of unit
//! interrupts by it, and PTIMER (time, alarm and its interrupt), the one unit whose source
//! lives in the tree.
//!
//! One implementation serves the model and the mediator's vGPUs. What differs between them is
//! passed in, never copied:
//! - `inputs`: the PMC input lines (`pmc::INTR_*` bits) of the units outside the tree, each
//!   set while that unit's own INTR & INTR_EN is non-zero. The model derives them from its
//!   PFIFO and PGRAPH; a vGPU from the emulated state the host's interrupts were injected into.
//! - `now_ns`: the clock PTIMER counts (the model's host clock, the kernel's monotonic clock).
//! - [`Written`]: what a write asks of the owner (reset the units PMC_ENABLE just enabled,
//!   look at a newly set alarm).
//!
//! Pure `core`; nothing here panics on a guest's offset or value.

use crate::gf100::{pmc, ptimer};

/// The two outputs of the tree; both drive the PCI interrupt (ENV `pmc.rst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// The host line (INTR_HOST and friends).
    Host,
    /// The non-redirectable line (INTR_NRHOST and friends).
    NrHost,
}

impl Line {
    const ALL: [Line; 2] = [Line::Host, Line::NrHost];

    const fn index(self) -> usize {
        match self {
            Line::Host => 0,
            Line::NrHost => 1,
        }
    }
}

/// What a write asks of the tree's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// Nothing outside the tree changes.
    Done,
    /// PMC_ENABLE was written; these bits went 0 -> 1, and a 0 -> 1 transition resets the
    /// unit (§3.2): the owner resets its units among them. PTIMER's interrupt state has been
    /// reset here.
    Enabled(u32),
    /// ALARM was written (it may already have fired): an owner that polls the alarm between
    /// accesses looks again.
    AlarmSet,
}

/// PMC input line and PMC_ENABLE bit of each unit. A disabled unit is held in reset, so its
/// interrupt does not reach PMC [inference].
const UNIT_GATES: [(u32, u32); 5] = [
    (pmc::INTR_PCOPY0, pmc::ENABLE_PCOPY0),
    (pmc::INTR_PCOPY1, pmc::ENABLE_PCOPY1),
    (pmc::INTR_PFIFO, pmc::ENABLE_PFIFO),
    (pmc::INTR_PGRAPH, pmc::ENABLE_PGRAPH),
    (pmc::INTR_PTIMER, pmc::ENABLE_PTIMER),
];

/// INTR_EN bits that exist.
const INTR_EN_BITS: u32 = pmc::INTR_EN_HW | pmc::INTR_EN_SW;

/// PTIMER time bits below TIME_LOW's resolution; they always read 0.
const TIME_SUBTICK: u64 = !ptimer::TIME_LOW_MASK as u64;

/// The registers the tree serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    Intr(Line),
    IntrEn(Line),
    IntrMask(Line),
    LineStatus,
    Enable,
    PtimerIntr,
    PtimerIntrEn,
    ClockDiv,
    ClockMul,
    ClockSource,
    TimeLow,
    TimeHigh,
    Alarm,
}

impl Reg {
    const fn decode(off: u32) -> Option<Reg> {
        Some(match off {
            pmc::INTR_HOST => Reg::Intr(Line::Host),
            pmc::INTR_NRHOST => Reg::Intr(Line::NrHost),
            pmc::INTR_EN_HOST => Reg::IntrEn(Line::Host),
            pmc::INTR_EN_NRHOST => Reg::IntrEn(Line::NrHost),
            pmc::INTR_MASK_HOST => Reg::IntrMask(Line::Host),
            pmc::INTR_MASK_NRHOST => Reg::IntrMask(Line::NrHost),
            pmc::INTR_LINE_STATUS => Reg::LineStatus,
            pmc::ENABLE => Reg::Enable,
            ptimer::INTR => Reg::PtimerIntr,
            ptimer::INTR_EN => Reg::PtimerIntrEn,
            ptimer::CLOCK_DIV => Reg::ClockDiv,
            ptimer::CLOCK_MUL => Reg::ClockMul,
            ptimer::CLOCK_SOURCE => Reg::ClockSource,
            ptimer::TIME_LOW => Reg::TimeLow,
            ptimer::TIME_HIGH => Reg::TimeHigh,
            ptimer::ALARM => Reg::Alarm,
            _ => return None,
        })
    }
}

/// PTIMER's registers.
#[derive(Clone, Copy, Debug)]
struct Ptimer {
    intr: u32,
    intr_en: u32,
    clock_div: u32,
    clock_mul: u32,
    clock_source: u32,
    alarm: u32,
    alarm_armed: bool,
    /// Time = clock + offset (software may set TIME_LOW/HIGH).
    time_offset: u64,
}

/// PMC's interrupt tree and PTIMER of one GPU (the model's, or a vGPU's).
#[derive(Clone, Copy, Debug)]
pub struct IntrTree {
    enable: u32,
    intr_en: [u32; 2],
    intr_mask: [u32; 2],
    sw_intr: [bool; 2],
    timer: Ptimer,
}

impl Default for IntrTree {
    fn default() -> Self {
        Self::new()
    }
}

impl IntrTree {
    /// Power-on state: every unit disabled, every output disabled, every input unmasked
    /// (the **Choice**s at `pmc::ENABLE_*` and `pmc::INTR_MASK_HOST`).
    pub const fn new() -> IntrTree {
        IntrTree {
            enable: 0,
            intr_en: [0; 2],
            intr_mask: [u32::MAX; 2],
            sw_intr: [false; 2],
            timer: Ptimer {
                intr: 0,
                intr_en: 0,
                clock_div: 0,
                clock_mul: 0,
                clock_source: 0,
                alarm: 0,
                alarm_armed: false,
                time_offset: 0,
            },
        }
    }

    /// Whether BAR0 offset `off` is one of the tree's registers.
    pub const fn serves(off: u32) -> bool {
        Reg::decode(off).is_some()
    }

    /// PMC_ENABLE.
    pub const fn enable(&self) -> u32 {
        self.enable
    }

    /// PTIMER's time in ns at host time `now_ns` (bits 0-4 zero): what TIME_LOW/HIGH read
    /// and what semaphore releases write.
    pub const fn time(&self, now_ns: u64) -> u64 {
        now_ns.wrapping_add(self.timer.time_offset) & !TIME_SUBTICK
    }

    /// Whether an alarm is set and has not fired yet.
    pub const fn alarm_armed(&self) -> bool {
        self.timer.alarm_armed
    }

    /// Fires the alarm if TIME_LOW has reached ALARM; `true` if it fired now. The tree looks
    /// whenever software reads interrupt state (PMC INTR, PTIMER INTR); an owner that must
    /// raise the line without such a read (the model) also calls this periodically.
    ///
    /// **Choice:** the hardware fires when TIME_LOW bits 5-31 *equal* ALARM (ENV
    /// `ptimer.rst`), which a check between accesses cannot see. The alarm fires once TIME_LOW
    /// has reached or passed ALARM within half the 32-bit period (about 2.1 s), and once per
    /// ALARM write, not again at every wrap of TIME_LOW.
    pub fn check_alarm(&mut self, now_ns: u64) -> bool {
        let t = &mut self.timer;
        let low = (now_ns.wrapping_add(t.time_offset) as u32) & ptimer::TIME_LOW_MASK;
        let reached = low.wrapping_sub(t.alarm) as i32 >= 0;
        let fired = t.alarm_armed && reached;
        if fired {
            t.alarm_armed = false;
            t.intr |= ptimer::INTR_ALARM;
        }
        fired
    }

    /// The hardware inputs as PMC sees them: the owner's `inputs` and PTIMER's, each only
    /// while its unit is enabled.
    fn hw_inputs(&self, inputs: u32) -> u32 {
        let mut v = inputs & !pmc::INTR_SOFTWARE;
        if self.timer.intr & self.timer.intr_en != 0 {
            v |= pmc::INTR_PTIMER;
        }
        for (intr, enable) in UNIT_GATES {
            if self.enable & enable == 0 {
                v &= !intr;
            }
        }
        v
    }

    /// INTR_HOST / INTR_NRHOST: the unmasked hardware inputs in bits 0-30, the software
    /// interrupt in bit 31.
    ///
    /// **Choice:** the software bit is set and shown whatever INTR_MASK says, on both lines
    /// (ENV `pmc.rst`: on GF100+ that holds for NRHOST; HOST takes it only while unmasked;
    /// nouveau never masks it).
    fn intr(&self, line: Line, inputs: u32) -> u32 {
        let i = line.index();
        let sw = if self.sw_intr[i] {
            pmc::INTR_SOFTWARE
        } else {
            0
        };
        (self.hw_inputs(inputs) & self.intr_mask[i]) | sw
    }

    /// Whether the interrupt output (either line) is asserted. It does not look at the
    /// alarm: call [`IntrTree::check_alarm`] first where time matters.
    pub fn line(&self, inputs: u32) -> bool {
        let hw = self.hw_inputs(inputs);
        Line::ALL.iter().any(|l| {
            let i = l.index();
            let en = self.intr_en[i];
            (hw & self.intr_mask[i] != 0 && en & pmc::INTR_EN_HW != 0)
                || (self.sw_intr[i] && en & pmc::INTR_EN_SW != 0)
        })
    }

    /// A read of BAR0 offset `off`; `None` if the tree does not serve it.
    pub fn read(&mut self, off: u32, inputs: u32, now_ns: u64) -> Option<u32> {
        let reg = Reg::decode(off)?;
        let t = &self.timer;
        Some(match reg {
            Reg::Intr(l) => {
                self.check_alarm(now_ns);
                self.intr(l, inputs)
            }
            Reg::IntrEn(l) => self.intr_en[l.index()],
            Reg::IntrMask(l) => self.intr_mask[l.index()],
            // GF100: 1 = asserted (ENV `pmc.rst`).
            Reg::LineStatus => u32::from(self.line(inputs)),
            Reg::Enable => self.enable,
            Reg::PtimerIntr => {
                self.check_alarm(now_ns);
                self.timer.intr
            }
            Reg::PtimerIntrEn => t.intr_en,
            Reg::ClockDiv => t.clock_div,
            Reg::ClockMul => t.clock_mul,
            Reg::ClockSource => t.clock_source,
            Reg::TimeLow => self.time(now_ns) as u32 & ptimer::TIME_LOW_MASK,
            Reg::TimeHigh => (self.time(now_ns) >> 32) as u32 & ptimer::TIME_HIGH_MASK,
            Reg::Alarm => t.alarm,
        })
    }

    /// A write of `v` to BAR0 offset `off`; `None` if the tree does not serve it.
    pub fn write(&mut self, off: u32, v: u32, now_ns: u64) -> Option<Written> {
        let reg = Reg::decode(off)?;
        let t = &mut self.timer;
        match reg {
            // Only the software bit is writable (ENV `pmc.rst`).
            Reg::Intr(l) => self.sw_intr[l.index()] = v & pmc::INTR_SOFTWARE != 0,
            Reg::IntrEn(l) => self.intr_en[l.index()] = v & INTR_EN_BITS,
            Reg::IntrMask(l) => self.intr_mask[l.index()] = v,
            Reg::LineStatus => {}
            Reg::Enable => {
                let rising = v & !self.enable;
                self.enable = v;
                if rising & pmc::ENABLE_PTIMER != 0 {
                    t.intr = 0;
                    t.intr_en = 0;
                }
                return Some(Written::Enabled(rising));
            }
            // Write 1 to clear (ENV `ptimer.rst`).
            Reg::PtimerIntr => t.intr &= !v,
            Reg::PtimerIntrEn => t.intr_en = v & ptimer::INTR_ALARM,
            Reg::ClockDiv => t.clock_div = v & ptimer::CLOCK_RATIO_MASK,
            Reg::ClockMul => t.clock_mul = v & ptimer::CLOCK_RATIO_MASK,
            Reg::ClockSource => t.clock_source = v,
            Reg::TimeLow | Reg::TimeHigh => {
                let cur = self.time(now_ns);
                let low = u64::from(u32::MAX);
                let new = if reg == Reg::TimeLow {
                    (cur & !low) | u64::from(v & ptimer::TIME_LOW_MASK)
                } else {
                    (cur & low) | u64::from(v & ptimer::TIME_HIGH_MASK) << 32
                };
                let t = &mut self.timer;
                t.time_offset = t.time_offset.wrapping_add(new.wrapping_sub(cur));
            }
            Reg::Alarm => {
                t.alarm = v & ptimer::TIME_LOW_MASK;
                t.alarm_armed = true;
                self.check_alarm(now_ns);
                return Some(Written::AlarmSet);
            }
        }
        Some(Written::Done)
    }
}
