// SPDX-License-Identifier: GPL-2.0
//! Static partitioning of one GPU between vGPUs.
//!
//! The guest part of VRAM and of the channel table is cut into [`UNITS`] equal units. An mdev
//! type `gpuvm-N` (N = 1, 2, 4, 8) takes `UNITS / N` contiguous units aligned to their own
//! size, like a buddy allocator with a single level per type: any mix of types packs without
//! fragmentation surprises, and `available_instances` is a simple count of free aligned runs.
//! Guest "physical" VRAM address x of a vGPU maps to host VRAM `vram_base + x`; guest channel
//! c maps to host channel `first_channel + c`.

/// Number of allocation units the guest pools are cut into.
pub const UNITS: u32 = 8;

/// The mdev types, by how many vGPUs share the GPU.
pub const SHARES: [u32; 4] = [1, 2, 4, 8];

/// Geometry of the guest pools of one GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pools {
    /// First host VRAM byte of the guest pool (below it: the host's own structures).
    pub vram_base: u64,
    /// Bytes per unit (a multiple of [`VRAM_UNIT_ALIGN`]).
    pub vram_per_unit: u64,
    /// First host channel of the guest pool.
    pub first_channel: u32,
    /// Channels per unit.
    pub channels_per_unit: u32,
}

/// Units are aligned to 2 MiB so every big page (128 KiB) and page table stays inside one.
pub const VRAM_UNIT_ALIGN: u64 = 2 << 20;

impl Pools {
    /// The guest pool in host VRAM, `[start, end)`: every unit's VRAM, nothing of the host's.
    pub fn guest_vram(&self) -> (u64, u64) {
        (self.vram_base, self.vram_base + u64::from(UNITS) * self.vram_per_unit)
    }

    /// Cuts `vram_bytes` of VRAM, of which the first `host_reserved` bytes belong to the host,
    /// and `guest_channels` channels starting at `first_channel` into [`UNITS`] units.
    /// `None` if there is not at least one aligned VRAM unit and one channel per unit.
    pub fn new(vram_bytes: u64, host_reserved: u64, first_channel: u32, guest_channels: u32) -> Option<Pools> {
        let pool = vram_bytes.checked_sub(host_reserved)?;
        let vram_per_unit = pool / UNITS as u64 / VRAM_UNIT_ALIGN * VRAM_UNIT_ALIGN;
        let channels_per_unit = guest_channels / UNITS;
        if vram_per_unit == 0 || channels_per_unit == 0 {
            return None;
        }
        Some(Pools { vram_base: host_reserved, vram_per_unit, first_channel, channels_per_unit })
    }

    /// The resources of a vGPU holding `units` units starting at unit `first`.
    pub fn slice(&self, first: u32, units: u32) -> Slice {
        Slice {
            first_unit: first,
            units,
            vram_base: self.vram_base + first as u64 * self.vram_per_unit,
            vram_size: units as u64 * self.vram_per_unit,
            first_channel: self.first_channel + first * self.channels_per_unit,
            channels: units * self.channels_per_unit,
        }
    }
}

/// The part of the GPU one vGPU owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// First allocation unit.
    pub first_unit: u32,
    /// Number of units.
    pub units: u32,
    /// Host VRAM address of guest VRAM address 0.
    pub vram_base: u64,
    /// Guest VRAM size in bytes.
    pub vram_size: u64,
    /// Host channel id of guest channel 0.
    pub first_channel: u32,
    /// Number of channels.
    pub channels: u32,
}

impl Slice {
    /// Host VRAM address of guest VRAM range `[addr, addr + len)`, if it lies inside.
    pub fn vram_to_host(&self, addr: u64, len: u64) -> Option<u64> {
        let end = addr.checked_add(len)?;
        (end <= self.vram_size).then(|| self.vram_base + addr)
    }

    /// Host channel id of guest channel `chid`, if the vGPU owns it.
    pub fn channel_to_host(&self, chid: u32) -> Option<u32> {
        (chid < self.channels).then(|| self.first_channel + chid)
    }

    /// The slice's units as a bit mask (bit n: unit n), as [`UnitMap`] marks them.
    pub fn unit_mask(&self) -> u32 {
        u32::from(UnitMap::run_mask(self.first_unit, self.units))
    }

    /// Guest channel id of host channel `host_chid`, if it belongs to this vGPU.
    pub fn channel_from_host(&self, host_chid: u32) -> Option<u32> {
        host_chid.checked_sub(self.first_channel).filter(|&c| c < self.channels)
    }
}

/// Which units are taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnitMap(u8);

const _: () = assert!(UNITS == u8::BITS);

impl UnitMap {
    /// Units needed by a vGPU of type `gpuvm-share`; `None` for an unknown share.
    pub fn units_for(share: u32) -> Option<u32> {
        SHARES.contains(&share).then(|| UNITS / share)
    }

    fn run_mask(first: u32, units: u32) -> u8 {
        let ones = if units >= 8 { u8::MAX } else { (1u8 << units) - 1 };
        ones << first
    }

    /// Aligned runs of `units` free units, lowest first.
    fn free_runs(&self, units: u32) -> impl Iterator<Item = u32> + '_ {
        (0..UNITS)
            .step_by(units.max(1) as usize)
            .filter(move |&first| units > 0 && self.0 & Self::run_mask(first, units) == 0)
    }

    /// How many more vGPUs of `share` fit (`available_instances`).
    pub fn available(&self, share: u32) -> u32 {
        Self::units_for(share).map_or(0, |u| self.free_runs(u).count() as u32)
    }

    /// Takes the lowest free aligned run for a vGPU of `share`; returns its first unit.
    pub fn alloc(&mut self, share: u32) -> Option<u32> {
        let units = Self::units_for(share)?;
        let first = self.free_runs(units).next()?;
        self.0 |= Self::run_mask(first, units);
        Some(first)
    }

    /// Gives back a run taken by [`UnitMap::alloc`]. Returns false (and changes nothing) if
    /// the run was not fully taken: a double free is a caller bug worth reporting.
    pub fn free(&mut self, first: u32, units: u32) -> bool {
        if first + units > UNITS {
            return false;
        }
        let mask = Self::run_mask(first, units);
        if self.0 & mask != mask {
            return false;
        }
        self.0 &= !mask;
        true
    }

    /// Number of free units.
    pub fn free_units(&self) -> u32 {
        UNITS - self.0.count_ones()
    }
}
