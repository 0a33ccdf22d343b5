// SPDX-License-Identifier: GPL-2.0
//! The scheduler's sysfs knobs as validated values.
//!
//! Parsing lives here, not in the sysfs glue, so that every accepted and refused input is
//! tested on the host. A value that passes is in range by construction (the types have no
//! public constructor without the check). Every [`KnobError`] becomes EINVAL in the kernel;
//! [`KnobError::reason`] is the text for its one `pr_warn!`.

/// Nanoseconds per microsecond (the knobs are in µs, the scheduler counts ns).
pub const NS_PER_US: u64 = 1_000;

/// Why a knob value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnobError {
    /// The input is not UTF-8.
    NotText,
    /// The input is not a decimal number.
    NotANumber,
    /// The number is outside `min..=max`.
    OutOfRange { min: u32, max: u32 },
    /// Not one of `fifo`, `credit`, `band`.
    UnknownPolicy,
}

impl KnobError {
    /// One line for the kernel log.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::NotText => "not text",
            Self::NotANumber => "not a decimal number",
            Self::OutOfRange { .. } => "out of range",
            Self::UnknownPolicy => "unknown policy (fifo, credit, band)",
        }
    }
}

/// The sysfs text without surrounding white space (`echo` adds a newline).
fn text(input: &[u8]) -> Result<&str, KnobError> {
    core::str::from_utf8(input).map(str::trim).map_err(|_| KnobError::NotText)
}

fn number(input: &[u8]) -> Result<u32, KnobError> {
    text(input)?.parse::<u32>().map_err(|_| KnobError::NotANumber)
}

const fn in_range(v: u32, min: u32, max: u32) -> Result<u32, KnobError> {
    if v < min || v > max {
        Err(KnobError::OutOfRange { min, max })
    } else {
        Ok(v)
    }
}

/// The `sched_policy` knob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// Arrival order across vGPUs; ignores weights.
    Fifo,
    /// Weighted credit; work-conserving.
    Credit,
    /// Credit with utilisation-aware demotion and a bounded wait (Gdev's BAND).
    Band,
}

impl PolicyKind {
    /// CREDIT: it honours weights and never idles the GPU while work waits; BAND trades some
    /// GPU time for the latency of short-kernel vGPUs and is chosen deliberately.
    pub const DEFAULT: Self = Self::Credit;
    /// Every policy, in the order sysfs lists them.
    pub const ALL: [Self; 3] = [Self::Fifo, Self::Credit, Self::Band];

    /// The sysfs spelling.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Fifo => "fifo",
            Self::Credit => "credit",
            Self::Band => "band",
        }
    }

    /// Parses a sysfs write (`fifo`, `credit` or `band`, surrounding white space ignored).
    pub fn parse(input: &[u8]) -> Result<Self, KnobError> {
        let t = text(input)?;
        Self::ALL.into_iter().find(|k| k.name() == t).ok_or(KnobError::UnknownPolicy)
    }
}

/// A vGPU's scheduling weight (sysfs `weight`): its share is its weight over the sum of the
/// weights of the vGPUs competing with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Weight(u32);

impl Weight {
    pub const MIN: u32 = 1;
    pub const MAX: u32 = 100;
    pub const DEFAULT: Self = Self(10);

    pub const fn new(w: u32) -> Result<Self, KnobError> {
        match in_range(w, Self::MIN, Self::MAX) {
            Ok(w) => Ok(Self(w)),
            Err(e) => Err(e),
        }
    }

    pub fn parse(input: &[u8]) -> Result<Self, KnobError> {
        Self::new(number(input)?)
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for Weight {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Declares a knob in microseconds with its range and default: the type, its checked
/// constructor, its sysfs parser and its value in µs and ns (the two knobs differ only there).
macro_rules! us_knob {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr, $default:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(u32);

        impl $name {
            pub const MIN_US: u32 = $min;
            pub const MAX_US: u32 = $max;
            pub const DEFAULT: Self = Self($default);

            pub const fn from_us(us: u32) -> Result<Self, KnobError> {
                match in_range(us, Self::MIN_US, Self::MAX_US) {
                    Ok(us) => Ok(Self(us)),
                    Err(e) => Err(e),
                }
            }

            pub fn parse(input: &[u8]) -> Result<Self, KnobError> {
                Self::from_us(number(input)?)
            }

            pub const fn us(self) -> u32 {
                self.0
            }

            pub const fn ns(self) -> u64 {
                self.0 as u64 * NS_PER_US
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::DEFAULT
            }
        }
    };
}

us_knob! {
    /// The credit replenish period (sysfs `sched_period_us`). 30 ms is Gdev's and GPUvm's 2015
    /// value (Xen's time slice). Below 1 ms a period is shorter than many kernels and credit
    /// only measures noise; above 1 s an idle vGPU may bank a second of GPU time.
    Period, 1_000, 1_000_000, 30_000
}

us_knob! {
    /// BAND's wait before it gives the GPU to a vGPU over its share (sysfs `band_wait_us`).
    /// 500 µs is Gdev's and GPUvm's value: long enough for a guest to see its completion and
    /// ring the next doorbell. 0 turns the wait off; more than 10 ms would idle the GPU for
    /// longer than the short kernels the wait is for.
    BandWait, 0, 10_000, 500
}

/// The per-GPU knobs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Knobs {
    pub period: Period,
    pub band_wait: BandWait,
}

impl Knobs {
    /// The defaults, as a constant.
    pub const DEFAULT: Self = Self { period: Period::DEFAULT, band_wait: BandWait::DEFAULT };
}
