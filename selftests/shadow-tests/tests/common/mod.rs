//! Host stand-ins for the kernel's memory, pinning, clock and shadow-table allocator, and a
//! little guest page-table builder.
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Range;

use gpuvm_shadow_tests::gf100::{inst, target, vm};
use gpuvm_shadow_tests::memory::{Clock, SysMem, Vram};
use gpuvm_shadow_tests::partition::Slice;
use gpuvm_shadow_tests::shadow_vm::TableAlloc;

pub const MIB: u64 = 1 << 20;

/// Cases a fuzz property runs: `short` in `cargo test` / `make test`, or the count in the
/// environment variable `GPUVM_FUZZ_CASES` for a long run (README, "Fuzzing").
pub fn fuzz_cases(short: u32) -> u32 {
    match std::env::var("GPUVM_FUZZ_CASES") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("GPUVM_FUZZ_CASES={s:?} is not a number")),
        Err(_) => short,
    }
}
/// Host VRAM layout of the tests: shadow tables below, one 8 MiB guest partition above.
pub const SHADOW_BASE: u64 = 0x1000;
pub const SHADOW_END: u64 = 8 * MIB;
pub const GUEST_BASE: u64 = 8 * MIB;
pub const GUEST_SIZE: u64 = 8 * MIB;
pub const HOST_VRAM: u64 = GUEST_BASE + GUEST_SIZE;

pub fn slice() -> Slice {
    Slice { first_unit: 1, units: 1, vram_base: GUEST_BASE, vram_size: GUEST_SIZE, first_channel: 16, channels: 16 }
}

/// Host VRAM as a byte array. Writes outside `writable` panic: the shadow code must never
/// write into a guest partition (or anywhere but its own tables).
pub struct ByteVram {
    pub bytes: Vec<u8>,
    pub writable: Range<u64>,
    pub writes: Cell<u64>,
}

impl ByteVram {
    pub fn new() -> Self {
        ByteVram { bytes: vec![0; HOST_VRAM as usize], writable: 0..HOST_VRAM, writes: Cell::new(0) }
    }
    /// Test setup writes, anywhere.
    pub fn poke32(&mut self, pa: u64, v: u32) {
        self.bytes[pa as usize..pa as usize + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub fn poke64(&mut self, pa: u64, v: u64) {
        self.poke32(pa, v as u32);
        self.poke32(pa + 4, (v >> 32) as u32);
    }
    /// Guest-side writes (guest VRAM address of the test partition).
    pub fn guest64(&mut self, gpa: u64, v: u64) {
        assert!(gpa + 8 <= GUEST_SIZE);
        self.poke64(GUEST_BASE + gpa, v)
    }
    pub fn guest32(&mut self, gpa: u64, v: u32) {
        assert!(gpa + 4 <= GUEST_SIZE);
        self.poke32(GUEST_BASE + gpa, v)
    }
}

impl Vram for ByteVram {
    fn read32(&self, pa: u64) -> u32 {
        assert!(pa % 4 == 0 && pa + 4 <= HOST_VRAM, "host read out of range: {pa:#x}");
        u32::from_le_bytes(self.bytes[pa as usize..pa as usize + 4].try_into().unwrap())
    }
    fn write32(&mut self, pa: u64, v: u32) {
        assert!(pa % 4 == 0 && self.writable.contains(&pa), "host write outside {:x?}: {pa:#x}", self.writable);
        self.writes.set(self.writes.get() + 1);
        self.poke32(pa, v)
    }
}

/// Host VRAM as a guest-structure parser may see it: reads outside the test partition are
/// counted (a parser reads the guest only through `GuestVram`, so there must be none), and
/// nothing may be written.
pub struct Fenced<'a> {
    pub v: &'a ByteVram,
    pub outside: Cell<u64>,
}

impl<'a> Fenced<'a> {
    pub fn new(v: &'a ByteVram) -> Self {
        Fenced { v, outside: Cell::new(0) }
    }
}

impl Vram for Fenced<'_> {
    fn read32(&self, pa: u64) -> u32 {
        if !(GUEST_BASE..GUEST_BASE + GUEST_SIZE).contains(&pa) {
            self.outside.set(self.outside.get() + 1);
            return 0;
        }
        self.v.read32(pa)
    }
    fn write32(&mut self, pa: u64, _: u32) {
        panic!("a parser wrote host VRAM at {pa:#x}");
    }
}

/// Guest system memory: IOVAs below `size` are mapped, at host bus address `host_base + iova`.
pub struct FakeSys {
    pub host_base: u64,
    pub size: u64,
    pub pins: u64,
}

pub const SYS_HOST_BASE: u64 = 0x40_0000_0000;
pub const SYS_SIZE: u64 = 64 * MIB;

impl FakeSys {
    pub fn new() -> Self {
        FakeSys { host_base: SYS_HOST_BASE, size: SYS_SIZE, pins: 0 }
    }
}

impl SysMem for FakeSys {
    fn pin(&mut self, iova: u64, len: u64) -> Option<u64> {
        self.pins += 1;
        (iova.checked_add(len)? <= self.size).then(|| self.host_base.wrapping_add(iova))
    }
}

pub struct FakeClock(pub Cell<u64>);

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        self.0.get()
    }
}

/// First-fit allocator of shadow tables that checks for double frees and leaks.
pub struct Alloc {
    free: BTreeMap<u64, u64>,
    pub live: BTreeMap<u64, u64>,
    pub fail: bool,
}

impl Alloc {
    pub fn new(range: Range<u64>) -> Self {
        let mut free = BTreeMap::new();
        free.insert(range.start, range.end - range.start);
        Alloc { free, live: BTreeMap::new(), fail: false }
    }
}

impl TableAlloc for Alloc {
    fn alloc(&mut self, bytes: u64) -> Option<u64> {
        assert!(bytes > 0 && bytes % 0x1000 == 0, "table size {bytes:#x}");
        if self.fail {
            return None;
        }
        let (&a, &len) = self.free.iter().find(|(_, &len)| len >= bytes)?;
        self.free.remove(&a);
        if len > bytes {
            self.free.insert(a + bytes, len - bytes);
        }
        self.live.insert(a, bytes);
        Some(a)
    }
    fn free(&mut self, addr: u64, bytes: u64) {
        assert_eq!(self.live.remove(&addr), Some(bytes), "bad free {addr:#x} {bytes:#x}");
        self.free.insert(addr, bytes);
        // Coalesce neighbours.
        let merged: Vec<(u64, u64)> = self.free.iter().map(|(&a, &l)| (a, l)).collect();
        self.free.clear();
        for (a, l) in merged {
            match self.free.iter_mut().next_back() {
                Some((&pa, pl)) if pa + *pl == a => *pl += l,
                _ => {
                    self.free.insert(a, l);
                }
            }
        }
    }
}

/// Writes an instance block's PDB and limit (guest addresses).
pub fn write_inst_vm(v: &mut ByteVram, inst_addr: u64, pd: u64, limit: u64) {
    v.guest32(inst_addr + inst::PDB_LO as u64, (pd as u32 & inst::PDB_ADDR_MASK) | target::VRAM);
    v.guest32(inst_addr + inst::PDB_HI as u64, (pd >> 32) as u32);
    v.guest32(inst_addr + inst::LIMIT_LO as u64, limit as u32);
    v.guest32(inst_addr + inst::LIMIT_HI as u64, (limit >> 32) as u32);
}

pub fn vram_pte(pa: u64, ro: bool) -> u64 {
    vm::pte(pa, vm::PTE_APER_VRAM, ro, vm::KIND_PITCH)
}

pub fn sys_pte(iova: u64) -> u64 {
    vm::pte(iova, vm::PTE_APER_SYS_COHERENT, false, vm::KIND_PITCH)
}
