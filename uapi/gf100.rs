//! GF100 (NVC0, Quadro 6000) register and format declarations for the gpuvm subset.
//!
//! Source of truth: `shared/docs/gf100-interface.md` ("§n" below). Where that document lists
//! an uncertainty (§17), the choice gpuvm made is written next to the declaration and marked
//! **Choice**; the GF100 model (`model/`) implements exactly these choices.
//!
//! Conventions: register offsets are BAR0 byte offsets (`u32`); method numbers are byte
//! offsets as in NVIDIA's class headers. A register with fields is a type declared with
//! `register!` (`register.rs`): its offset, fields and typed accessors in one place, checked
//! against envytools' rnndb (cited as "rnndb `file` NAME"). Elsewhere `*_SHIFT`/`*_MASK` pairs
//! describe a field as `(value >> SHIFT) & MASK`. This file (with `register.rs`) depends on
//! `core` only and may be included by path.
//!
//! **Channel errors (model choice).** Each stops only the offending channel (until its CHAN
//! word is written again) and raises one interrupt, all visible through PMC INTR:
//! - MMU fault (pushbuffer/GPFIFO fetch, host semaphore: unit PFIFO; M2MF/compute: PGRAPH;
//!   copy: PCOPY0/1; CPU BAR1/BAR3 access: BAR1/BAR3, which stops no channel):
//!   `pfifo::INTR_VM_FAULT`, record at `pfifo::VmFault*::offset(unit)`, ack via VM_FAULT_UNITS.
//! - Unknown host or class method, method on an empty subchannel, bad header opcode, bad
//!   semaphore, bad GPFIFO control entry, RAMFC signature mismatch, a physical copy on a
//!   channel whose RAMFC keeps the physical-copy gate closed (`ramfc::HCE_CTRL`): PBDMA 0
//!   interrupt (`pfifo::PBDMA_INTR_*`, method/data/chid in the PBDMA registers),
//!   `pfifo::INTR_PBDMA`.
//! - Unknown class (or class on the wrong engine) in SET_OBJECT: `pgraph::INTR_ILLEGAL_CLASS`.
//! - Invalid compute launch or unsupported M2MF/copy request: `pgraph::INTR_DATA_ERROR` with
//!   `pgraph::DATA_ERROR_CODE`.

#[macro_use]
#[path = "register.rs"]
pub mod register;

/// PCI identity and BAR geometry (§1).
pub mod pci {
    pub const VENDOR_NVIDIA: u16 = 0x10de;
    /// Quadro 6000.
    pub const DEVICE_QUADRO_6000: u16 = 0x06d8;
    pub const REVISION: u8 = 0xa3;
    /// Base class 0x03 (display), subclass 0x00 (VGA), prog-if 0.
    pub const CLASS_CODE: u32 = 0x03_00_00;
    pub const SUBSYSTEM_VENDOR: u16 = 0x10de;
    pub const SUBSYSTEM_DEVICE: u16 = 0x076f;

    pub const BAR0_SIZE: u64 = 32 << 20;
    pub const BAR1_SIZE: u64 = 128 << 20;
    pub const BAR3_SIZE: u64 = 64 << 20;

    /// Bytes of conventional PCI configuration space (what a vGPU presents).
    pub const CFG_SIZE_PCI: usize = 0x100;
    /// Bytes of PCIe configuration space (the card's, mirrored in BAR0; ENV `pci.rst`).
    pub const CFG_SIZE_PCIE: usize = 0x1000;

    /// Type-0 header offsets (PCI Local Bus 3.0 §6.1).
    pub const CFG_VENDOR_ID: usize = 0x00;
    pub const CFG_DEVICE_ID: usize = 0x02;
    pub const CFG_REVISION: usize = 0x08;
    /// Three bytes: prog-if, subclass, base class (`CLASS_CODE`).
    pub const CFG_CLASS: usize = 0x09;
    pub const CFG_CLASS_LEN: usize = 3;
    pub const CFG_SUBSYSTEM_VENDOR: usize = 0x2c;
    pub const CFG_SUBSYSTEM_DEVICE: usize = 0x2e;
    pub const CFG_CAP_PTR: usize = 0x34;
    pub const CFG_INTERRUPT_LINE: usize = 0x3c;
    pub const CFG_INTERRUPT_PIN: usize = 0x3d;
    /// The card signals INTA (GPUVM's lspci of the Quadro 6000).
    pub const INTERRUPT_PIN_INTA: u8 = 1;

    /// Config-space offsets of the BAR registers (BAR1 and BAR3 are 64-bit: two registers each).
    pub const CFG_BAR0: usize = 0x10;
    pub const CFG_BAR1_LO: usize = 0x14;
    pub const CFG_BAR1_HI: usize = 0x18;
    pub const CFG_BAR3_LO: usize = 0x1c;
    pub const CFG_BAR3_HI: usize = 0x20;
    /// The low bits of a memory BAR are its read-only type flags.
    pub const BAR_FLAGS_MASK: u32 = 0xf;
    /// Memory BAR type flags: 64-bit (type 2 in bits 2:1) and prefetchable (bit 3).
    pub const BAR_MEM64_PREFETCH: u32 = 0x0000_000c;

    pub const CFG_COMMAND: usize = 0x04;
    pub const CFG_STATUS: usize = 0x06;
    pub const COMMAND_IO: u16 = 1 << 0;
    pub const COMMAND_MEMORY: u16 = 1 << 1;
    /// Bus mastering: **choice** the model reaches system memory only while it is set.
    pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
    pub const COMMAND_PARITY: u16 = 1 << 6;
    pub const COMMAND_SERR: u16 = 1 << 8;
    pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
    /// Status bit 3: the INTx pin is asserted.
    pub const STATUS_INTERRUPT: u16 = 1 << 3;
    /// Status bit 4: CAP_PTR starts a capability list.
    pub const STATUS_CAP_LIST: u16 = 1 << 4;

    /// Capability offsets in config space (the model exposes PM and MSI; see model docs).
    pub const CAP_PM: usize = 0x60;
    pub const CAP_MSI: usize = 0x68;
    /// Every capability starts with its id and the offset of the next one (0 = end).
    pub const CAP_ID: usize = 0;
    pub const CAP_NEXT: usize = 1;
    pub const CAP_ID_PM: u8 = 0x01;
    pub const CAP_ID_MSI: u8 = 0x05;
    /// PM capability (PCI PM 1.2 §3.2): capabilities word (version 3, no D1/D2, no PME),
    /// then control/status whose bits 1:0 are the power state.
    pub const PM_CAPS: usize = 2;
    pub const PM_CAPS_VERSION_3: u16 = 0x0003;
    pub const PM_CTRL: usize = 4;
    pub const PM_CTRL_STATE_MASK: u8 = 0x03;
    /// MSI capability, 64-bit address, one vector, no masking (ENV `pci.rst`: "64-bit
    /// addressing, no mask").
    pub const MSI_CTRL: usize = 2;
    pub const MSI_CTRL_ENABLE: u16 = 1 << 0;
    pub const MSI_CTRL_64BIT: u16 = 1 << 7;
    pub const MSI_ADDRESS_LO: usize = 4;
    /// The message address is dword aligned: bits 1:0 read 0.
    pub const MSI_ADDRESS_LO_MASK: u32 = 0xffff_fffc;
    pub const MSI_ADDRESS_HI: usize = 8;
    pub const MSI_DATA: usize = 12;

    /// The whole 4 KiB config space is mirrored in BAR0 (§1).
    pub const BAR0_CONFIG_MIRROR: u32 = 0x088000;
    pub const BAR0_CONFIG_MIRROR_SIZE: u32 = CFG_SIZE_PCIE as u32;
    /// Writing any value here re-sends an MSI if the interrupt line is still asserted
    /// (nouveau's GF100 "MSI rearm" byte write at config offset 0x704 through the mirror).
    pub const BAR0_MSI_REARM: u32 = 0x088704;
}

/// Error values returned by reads (§2). The model returns these instead of 0 so that driver
/// bugs are visible.
pub mod bad {
    /// Read of a register that does not exist (`0xbad001xx`).
    pub const NO_REGISTER: u32 = 0xbad0_0100;
    /// Read of a unit disabled in PMC_ENABLE (`0xbad0daxx`).
    pub const UNIT_DISABLED: u32 = 0xbad0_da00;
    /// BAR1/BAR3/PRAMIN read whose translation faulted (`0xbad0acxx`).
    pub const VM_FAULT: u32 = 0xbad0_ac00;
}

/// PMC, 0x000000 (§3).
pub mod pmc {
    register! {
        /// BOOT_0: which chip this is (rnndb `bus/pmc.xml` PMC.ID, NV10-; DEVICE_ID is bits
        /// 19:15 on G92:GF119).
        pub Boot0(u32) @ 0x000000 {
            /// Stepping (the PCI revision id).
            7:0   stepping: u32, with_stepping;
            19:15 device_id: u32, with_device_id;
            /// `CHIPSET_GF100` for every GF100.
            28:20 chipset: u32, with_chipset;
            /// 0 = TSMC.
            31:29 foundry: u32, with_foundry;
        }
    }
    pub const CHIPSET_GF100: u32 = 0xc0;
    /// The Quadro 6000's BOOT_0 (0x0c0c00a3): DEVICE_ID is the PCI device id's low 5 bits.
    pub const BOOT_0_QUADRO_6000: u32 = Boot0::from_raw(0)
        .with_stepping(super::pci::REVISION as u32)
        .with_device_id(super::pci::DEVICE_QUADRO_6000 as u32)
        .with_chipset(CHIPSET_GF100)
        .raw();
    /// Endian switch; reads 0 in little-endian mode. Writing a value with bit 24 set toggles.
    pub const ENDIAN: u32 = 0x000004;
    pub const ENDIAN_BIG: u32 = 0x0100_0001;

    pub const INTR_HOST: u32 = 0x000100;
    pub const INTR_NRHOST: u32 = 0x000104;
    pub const INTR_EN_HOST: u32 = 0x000140;
    pub const INTR_EN_NRHOST: u32 = 0x000144;
    /// INTR_EN bit 0: hardware lines; bit 1: the software line (bit 31 of INTR).
    pub const INTR_EN_HW: u32 = 1 << 0;
    pub const INTR_EN_SW: u32 = 1 << 1;
    /// Output line status (1 = asserted).
    pub const INTR_LINE_STATUS: u32 = 0x000160;
    pub const ENABLE: u32 = 0x000200;
    pub const SPOON_ENABLE: u32 = 0x000204;
    /// A bit at 0 forces that input to 0 in INTR_HOST / INTR_NRHOST.
    /// **Choice:** reset value 0xffffffff (all inputs pass).
    pub const INTR_MASK_HOST: u32 = 0x000640;
    pub const INTR_MASK_NRHOST: u32 = 0x000644;

    /// PMC_ENABLE bits (§3.2). A 0->1 transition resets the unit.
    /// **Choice:** reset value of PMC_ENABLE is 0: registers of a disabled unit read
    /// `bad::UNIT_DISABLED` and ignore writes, so the driver must write it (nouveau: 0xffffffff).
    pub const ENABLE_PCOPY0: u32 = 1 << 6;
    pub const ENABLE_PCOPY1: u32 = 1 << 7;
    pub const ENABLE_PFIFO: u32 = 1 << 8;
    pub const ENABLE_PGRAPH: u32 = 1 << 12;
    pub const ENABLE_PTIMER: u32 = 1 << 16;
    pub const ENABLE_ALL: u32 = 0xffff_ffff;

    /// INTR_HOST input bits (§3.3).
    pub const INTR_PCOPY0: u32 = 1 << 5;
    pub const INTR_PCOPY1: u32 = 1 << 6;
    pub const INTR_PFIFO: u32 = 1 << 8;
    pub const INTR_PGRAPH: u32 = 1 << 12;
    pub const INTR_PTIMER: u32 = 1 << 20;
    pub const INTR_PBUS: u32 = 1 << 28;
    pub const INTR_SOFTWARE: u32 = 1 << 31;
}

/// PTIMER, 0x009000 (§4). The 64-bit time `(TIME_HIGH << 32) | TIME_LOW` counts nanoseconds
/// in the model (the rate nouveau programs), with bits 0-4 always 0. **Choice:** the rate is
/// fixed; CLOCK_DIV/CLOCK_MUL/CLOCK_SOURCE are stored but do not change it.
pub mod ptimer {
    /// Register range (gated by `pmc::ENABLE_PTIMER`).
    pub const REGS_START: u32 = 0x009000;
    pub const REGS_END: u32 = 0x00a000;
    pub const INTR: u32 = 0x009100;
    pub const INTR_EN: u32 = 0x009140;
    pub const INTR_ALARM: u32 = 1 << 0;
    pub const CLOCK_DIV: u32 = 0x009200;
    pub const CLOCK_MUL: u32 = 0x009210;
    /// CLOCK_DIV and CLOCK_MUL are 16-bit fields (ENV `ptimer.rst`).
    pub const CLOCK_RATIO_MASK: u32 = 0xffff;
    pub const CLOCK_SOURCE: u32 = 0x009220;
    pub const TIME_LOW: u32 = 0x009400;
    pub const TIME_HIGH: u32 = 0x009410;
    pub const TIME_LOW_MASK: u32 = 0xffff_ffe0;
    pub const TIME_HIGH_MASK: u32 = 0x1fff_ffff;
    /// Interrupt when TIME_LOW bits 5-31 reach ALARM bits 5-31.
    pub const ALARM: u32 = 0x009420;
}

/// PSTRAPS (§3.1): crystal selection.
pub mod pstraps {
    pub const STRAPS: u32 = 0x101000;
    pub const CRYSTAL_MASK: u32 = 0x0040_0040;
    /// The model reports a 27 MHz crystal.
    pub const CRYSTAL_27MHZ: u32 = 0x0040_0000;
}

/// Memory targets ("apertures"). Note PDE and PTE encode VRAM differently (§7.3), and
/// `mmu::InvalidatePdb` has only a VRAM/system-memory bit.
pub mod target {
    /// Instance-block PDB, RAMFC USERD and the `target` fields of registers (rnndb
    /// `g80_defs.xml` g80_mem_target: 1 is invalid, e.g. CHAN_TABLE_ERROR INVALID_TARGET).
    pub const VRAM: u32 = 0;
    pub const SYS_COHERENT: u32 = 2;
    pub const SYS_NONCOHERENT: u32 = 3;
}

/// PBUS host-memory block (§5): PRAMIN window and BAR1/BAR3 VM binding.
pub mod pbus {
    register! {
        /// PRAMIN window base (rnndb `bus/pbus.xml` HOST_MEM.PMEM, GF100-): which 1 MiB of
        /// memory BAR0 `PRAMIN_WINDOW` shows, positioned in 64 KiB steps.
        pub PraminBase(u32) @ 0x001700 {
            23:0  addr: u64 << 16, with_addr;
            /// `target::*`.
            25:24 target: u32, with_target;
        }

        /// BAR1 / BAR3 / peephole VM binding (rnndb `bus/pbus.xml` HOST_MEM.BAR1, BAR3,
        /// PEEPHOLE, GF100-), at `BAR1_INST`, `BAR3_INST`, `PEEPHOLE_INST`.
        /// **Choice (§17.5):** UNK30 is stored and ignored. With MODE = 0 (reset) the BAR is a
        /// direct window onto VRAM (BAR offset = VRAM address).
        pub BarInst(u32) {
            /// Instance block address.
            27:0  addr: u64 << 12, with_addr;
            /// `target::*`.
            29:28 target: u32, with_target;
            30:30 unk30: bool, with_unk30;
            /// MODE: 1 = VM (through the instance block), 0 = direct VRAM.
            31:31 mode_vm: bool, with_mode_vm;
        }
    }
    /// BAR0 range of the 1 MiB window.
    pub const PRAMIN_WINDOW: u32 = 0x700000;
    pub const PRAMIN_WINDOW_SIZE: u32 = 0x100000;

    /// Offsets of the three `BarInst` registers.
    pub const BAR1_INST: u32 = 0x001704;
    pub const BAR3_INST: u32 = 0x001714;
    pub const PEEPHOLE_INST: u32 = 0x001718;

    impl PraminBase {
        /// The base that puts VRAM `addr` in the window, and `addr`'s BAR0 offset there.
        pub const fn window(addr: u64) -> (Self, u32) {
            // The window starts at the 64 KiB step below `addr`; the offset is the low bits
            // `with_addr` drops.
            let step_shift = Self::from_raw(0).with_addr(u64::MAX).addr().trailing_zeros();
            (Self::from_raw(0).with_addr(addr), PRAMIN_WINDOW + (addr & ((1 << step_shift) - 1)) as u32)
        }
    }

    impl BarInst {
        /// VM mode through the instance block at VRAM `inst_addr`.
        pub const fn vm(inst_addr: u64) -> Self {
            Self::from_raw(0).with_addr(inst_addr).with_target(super::target::VRAM).with_mode_vm(true)
        }
    }

    /// Write 1 to flush BAR writes, then poll until `FLUSH_BUSY` reads 0.
    pub const FLUSH: u32 = 0x070000;
    pub const FLUSH_TRIGGER: u32 = 1 << 0;
    pub const FLUSH_BUSY: u32 = 1 << 1;
}

/// PUNITS / PFB: VRAM geometry (§6.1). VRAM MiB = sum over enabled FBPs of PART_MIB(fbp).
pub mod pfb {
    pub const FBP_COUNT: u32 = 0x022438;
    pub const FBP_DISABLED_MASK: u32 = 0x022554;
    /// Old nouveau: number of memory partitions.
    pub const PART_COUNT: u32 = 0x121c74;
    /// Old nouveau: broadcast per-partition MiB.
    pub const PART_MIB_BROADCAST: u32 = 0x10f20c;
    /// MiB attached to FB partition `i`.
    pub const fn part_mib(i: u32) -> u32 {
        0x11020c + i * 0x1000
    }
    /// GF100 has 6 partitions.
    pub const MAX_PARTS: u32 = 6;
}

/// MMU control (§6.2).
pub mod mmu {
    /// Bit 0: big page size (0 = 128 KiB, 1 = 64 KiB). Bits 16-23: flush slots free (nonzero
    /// when a flush may be issued). Bit 15: set when the last flush completed.
    pub const CTRL: u32 = 0x100c80;
    pub const CTRL_BIG_PAGE_64K: u32 = 1 << 0;
    pub const CTRL_FLUSH_DONE: u32 = 1 << 15;
    pub const CTRL_FLUSH_SLOTS_MASK: u32 = 0x00ff_0000;
    pub const CTRL_FLUSH_SLOTS_SHIFT: u32 = 16;
    /// Free flush slots the model always reports (it flushes synchronously).
    pub const CTRL_FLUSH_SLOTS_MODEL: u32 = 0x10;
    pub const SYSMEM_FLUSH_PAGE: u32 = 0x100c10;
    register! {
        /// TLB-invalidate PDB (rnndb `memory/gf100_pffb.xml` PFFB.VM.TLB_FLUSH_VSPACE): the page
        /// directory whose TLB entries `Invalidate` drops, unless it names all of them.
        /// **Choice:** bit 0, which rnndb does not describe, is stored and ignored; nouveau
        /// writes a `target::*` into bits 1:0, whose bit 1 is exactly `sysram`.
        pub InvalidatePdb(u32) @ 0x100cb8 {
            /// The page directory is in system memory (either snooping mode), not VRAM.
            1:1   sysram: bool, with_sysram;
            /// Page directory address.
            31:4  addr: u64 << 12, with_addr;
        }

        /// TLB-invalidate trigger (rnndb `memory/gf100_pffb.xml` PFFB.VM.TLB_FLUSH_TRIGGER).
        pub Invalidate(u32) @ 0x100cbc {
            /// Every page (1), not one (0).
            0:0   page_all: bool, with_page_all;
            /// Every page directory (1; `InvalidatePdb` is unused), not `InvalidatePdb`'s (0).
            1:1   all_pdb: bool, with_all_pdb;
            /// Only the HUB's TLBs (set for BAR1/BAR3 VMs), not the HUB's and the GPCs'.
            2:2   hub_only: bool, with_hub_only;
            /// 1 starts the flush.
            31:31 trigger: bool, with_trigger;
        }
    }

    /// MMU fault reasons (§7.3), reported in `pfifo::VmFaultInfo::reason`.
    pub const FAULT_PT_NOT_PRESENT: u32 = 0x0;
    pub const FAULT_PT_TOO_SHORT: u32 = 0x1;
    pub const FAULT_PAGE_NOT_PRESENT: u32 = 0x2;
    pub const FAULT_VM_LIMIT_EXCEEDED: u32 = 0x3;
    pub const FAULT_NO_CHANNEL: u32 = 0x4;
    pub const FAULT_PAGE_SYSTEM_ONLY: u32 = 0x5;
    pub const FAULT_PAGE_READ_ONLY: u32 = 0x6;
    /// **Model-defined:** the translation named a physical address that does not exist
    /// (beyond VRAM, a peer aperture, or a system address not covered by a DMA map, or bus
    /// mastering is off).
    pub const FAULT_BAD_PHYSICAL: u32 = 0xf;
}

/// GF100 virtual memory formats (§7).
pub mod vm {
    pub const VA_BITS: u32 = 40;
    pub const SMALL_PAGE_SHIFT: u32 = 12;
    pub const SMALL_PAGE_SIZE: u64 = 1 << SMALL_PAGE_SHIFT;
    pub const BIG_PAGE_SHIFT_128K: u32 = 17;
    pub const BIG_PAGE_SHIFT_64K: u32 = 16;
    /// A PDE covers `1 << (big_page_shift + PDE_SPAN_EXTRA_SHIFT)` bytes (128 MiB with
    /// 128 KiB big pages): every big-page table has 1024 entries.
    pub const PDE_SPAN_EXTRA_SHIFT: u32 = 10;
    pub const LPT_ENTRIES: u64 = 1024;
    pub const PDE_SIZE: u64 = 8;
    pub const PTE_SIZE: u64 = 8;
    /// With 128 KiB big pages: 8192 PDEs, 64 KiB page directory.
    pub const PD_ENTRIES_128K: u64 = 8192;
    pub const PD_ENTRIES_64K: u64 = 16384;
    /// Small-page table entries per PDE with 128 KiB big pages (256 KiB table).
    pub const SPT_ENTRIES_128K: u64 = 32768;
    pub const SPT_ENTRIES_64K: u64 = 16384;
    pub const TABLE_ALIGN: u64 = 0x1000;

    /// PDE apertures (both words): 0 = not present, 1 = VRAM, 2/3 = system memory.
    /// **Choice:** the module keeps its shadow page directories and tables in coherent host
    /// memory (PDB target `target::SYS_COHERENT`, PDE aperture 2 plus the table's VOL bit, as
    /// nouveau's `gf100_vmm_pgd_pde` writes a host-memory table), so a shadow update is a CPU
    /// store, not a BAR write; `shadow_tables_sysmem_kib` 0 means they fell back to VRAM.
    pub const PDE_APER_NONE: u64 = 0;
    pub const PDE_APER_VRAM: u64 = 1;
    pub const PDE_APER_SYS_COHERENT: u64 = 2;
    pub const PDE_APER_SYS_NONCOHERENT: u64 = 3;
    pub const PDE_APER_MASK: u64 = 0x3;
    /// Word 0 (bits 31:0) describes the big-page table, word 1 (bits 63:32) the small one.
    pub const PDE_BIG_APER_SHIFT: u32 = 0;
    /// SIZE (bits 3:2): the table covers `full >> SIZE` of its span.
    /// **Choice (§17.6):** SIZE shrinks both the big and the small table; an access beyond
    /// the shrunken table faults with `FAULT_PT_TOO_SHORT`.
    pub const PDE_SIZE_SHIFT: u32 = 2;
    pub const PDE_SIZE_MASK: u64 = 0x3;
    pub const PDE_BIG_ADDR_SHIFT: u32 = 4;
    pub const PDE_SMALL_APER_SHIFT: u32 = 32;
    pub const PDE_VOL_SMALL: u64 = 1 << 34;
    pub const PDE_VOL_BIG: u64 = 1 << 35;
    pub const PDE_SMALL_ADDR_SHIFT: u32 = 36;
    /// Table address >> 12 field: 28 bits in each word.
    pub const PDE_ADDR_MASK: u64 = 0x0fff_ffff;

    /// `pde = (lpt >> 8) | lpt_aper | ((spt >> 8) | spt_aper) << 32`; pass aper 0 to leave
    /// a half absent.
    pub const fn pde(lpt_addr: u64, lpt_aper: u64, spt_addr: u64, spt_aper: u64) -> u64 {
        let big = if lpt_aper == PDE_APER_NONE {
            0
        } else {
            (lpt_addr >> 8) | lpt_aper
        };
        let small = if spt_aper == PDE_APER_NONE {
            0
        } else {
            (spt_addr >> 8) | spt_aper
        };
        (big & 0xffff_ffff) | (small & 0xffff_ffff) << 32
    }

    pub const PTE_VALID: u64 = 1 << 0;
    pub const PTE_PRIVILEGE: u64 = 1 << 1;
    pub const PTE_READ_ONLY: u64 = 1 << 2;
    pub const PTE_ENCRYPTED: u64 = 1 << 3;
    /// Physical address >> 12 in bits 31:4 (always 4 KiB units, also for big pages).
    pub const PTE_ADDR_SHIFT: u32 = 4;
    pub const PTE_ADDR_MASK: u64 = 0x0fff_ffff;
    /// For VRAM only bits 28:4 are address (31:29 are a peer index).
    pub const PTE_VRAM_ADDR_MASK: u64 = 0x01ff_ffff;
    pub const PTE_VOL: u64 = 1 << 32;
    pub const PTE_APER_SHIFT: u32 = 33;
    pub const PTE_APER_MASK: u64 = 0x3;
    /// PTE apertures: VRAM is 0 here (unlike the PDE).
    pub const PTE_APER_VRAM: u64 = 0;
    pub const PTE_APER_PEER: u64 = 1;
    pub const PTE_APER_SYS_COHERENT: u64 = 2;
    pub const PTE_APER_SYS_NONCOHERENT: u64 = 3;
    /// **Choice (§17.7):** LOCK (35) and READ/WRITE_DISABLE (62/63) are ignored by the model.
    pub const PTE_LOCK: u64 = 1 << 35;
    pub const PTE_KIND_SHIFT: u32 = 36;
    pub const PTE_KIND_MASK: u64 = 0xff;
    pub const KIND_PITCH: u64 = 0x00;
    pub const KIND_GENERIC_BLOCKLINEAR: u64 = 0xfe;
    pub const PTE_COMPTAG_SHIFT: u32 = 44;

    /// `pte = (phys >> 8) | VALID | ro | aper << 33 | kind << 36` (+ VOL for coherent sysmem).
    pub const fn pte(phys: u64, aper: u64, read_only: bool, kind: u64) -> u64 {
        let vol = if aper == PTE_APER_SYS_COHERENT {
            PTE_VOL
        } else {
            0
        };
        let ro = if read_only { PTE_READ_ONLY } else { 0 };
        (phys >> 8)
            | PTE_VALID
            | ro
            | vol
            | (aper & PTE_APER_MASK) << PTE_APER_SHIFT
            | (kind & PTE_KIND_MASK) << PTE_KIND_SHIFT
    }
}

/// Instance block ("RAMIN", 4 KiB, 4 KiB aligned) offsets (§7.4). RAMFC is at 0x000.
pub mod inst {
    pub const SIZE: u64 = 0x1000;
    /// Bits 1:0 target (`target::*`), bit 2 VOL, bits 31:12 PD address bits 31:12.
    pub const PDB_LO: u32 = 0x200;
    pub const PDB_TARGET_MASK: u32 = 0x3;
    pub const PDB_VOL: u32 = 1 << 2;
    pub const PDB_ADDR_MASK: u32 = 0xffff_f000;
    /// PD address bits 39:32.
    pub const PDB_HI: u32 = 0x204;
    /// VM limit (inclusive, = size - 1): low word, high 8 bits.
    pub const LIMIT_LO: u32 = 0x208;
    pub const LIMIT_HI: u32 = 0x20c;
    /// Engine context pointers (channel VA | 4). **Choice (§17.15):** the model needs no
    /// engine context; it does not read these.
    pub const GR_CTX_LO: u32 = 0x210;
    pub const GR_CTX_HI: u32 = 0x214;
    pub const PCOPY0_CTX_LO: u32 = 0x230;
    pub const PCOPY0_CTX_HI: u32 = 0x234;
    pub const PCOPY1_CTX_LO: u32 = 0x240;
    pub const PCOPY1_CTX_HI: u32 = 0x244;
    /// Bit 2 of the low word: nouveau's `| 4`. NVIDIA's later layout of the same word (NVDOC
    /// Volta `dev_ram.ref` NV_RAMIN_ENGINE_WFI_*) names it MODE, 1 = VIRTUAL; with 0 the
    /// pointer is PHYSICAL and bits 1:0 are its target.
    pub const CTX_VALID: u32 = 1 << 2;
    /// Low word bits 31:12: address bits 31:12 (the high word holds bits 39:32).
    pub const CTX_ADDR_MASK: u32 = 0xffff_f000;
}

/// RAMFC: the channel's PFIFO state in the first 0x100 bytes of its instance block (§8.6).
/// **Choice (§17.2):** the model reads USERD, SIGNATURE, GP_GET, GP_BASE/GP_BASE_HI (with the
/// order) and HCE_CTRL, and requires nothing else; the other words are the values nouveau
/// writes, listed so drivers need no magic numbers.
pub mod ramfc {
    /// USERD address: bits 1:0 target, bits 31:12 address; high word bits 39:32.
    pub const USERD_LO: u32 = 0x08;
    pub const USERD_HI: u32 = 0x0c;
    pub const USERD_TARGET_MASK: u32 = 0x3;
    pub const USERD_ADDR_MASK: u32 = 0xffff_f000;
    /// Low 16 bits must be 0xface, else the channel faults (PBDMA SIG_MISMATCH).
    /// GP_GET saved in the channel context. **Choice:** the model loads GP_GET from here when
    /// it loads the channel and keeps it up to date after every GPFIFO entry, so rebinding the
    /// same instance block resumes where the channel stopped; a fresh (zeroed) instance block
    /// starts at entry 0. (Offset from the later-generation RAMFC layout, §8.6.)
    pub const GP_GET: u32 = 0x14;
    pub const SIGNATURE: u32 = 0x10;
    pub const SIGNATURE_VALUE: u32 = 0x0000_face;
    pub const SIGNATURE_MASK: u32 = 0xffff;
    pub const ACQUIRE: u32 = 0x30;
    pub const ACQUIRE_VALUE: u32 = 0xffff_f902;
    /// GPFIFO ring VA low.
    pub const GP_BASE: u32 = 0x48;
    /// Bits 7:0 GPFIFO VA 39:32, bits 20:16 log2(number of entries).
    pub const GP_BASE_HI: u32 = 0x4c;
    pub const GP_BASE_HI_ADDR_MASK: u32 = 0xff;
    pub const GP_BASE_HI_ORDER_SHIFT: u32 = 16;
    pub const GP_BASE_HI_ORDER_MASK: u32 = 0x1f;
    /// Largest ring order the model accepts (pscnv rejects > 29).
    pub const GP_ORDER_MAX: u32 = 29;
    pub const UNK54: u32 = 0x54;
    pub const UNK54_VALUE: u32 = 0x0000_0002;
    pub const PB_HEADER: u32 = 0x84;
    pub const PB_HEADER_VALUE: u32 = 0x2040_0000;
    pub const SUBDEVICE: u32 = 0x94;
    pub const SUBDEVICE_VALUE: u32 = 0x3000_0001;
    pub const FORMATS: u32 = 0x9c;
    pub const FORMATS_VALUE: u32 = 0x0000_0100;
    pub const SUBCH_ENGINE_MAP0: u32 = 0xa4;
    pub const SUBCH_ENGINE_MAP1: u32 = 0xa8;
    pub const SUBCH_ENGINE_MAP_VALUE: u32 = 0x1f1f_1f1f;
    pub const CURRENT_ENGINE: u32 = 0xac;
    pub const CURRENT_ENGINE_VALUE: u32 = 0x0000_001f;
    pub const UNKB8: u32 = 0xb8;
    pub const UNKB8_VALUE: u32 = 0xf800_0000;
    pub const UNKF8: u32 = 0xf8;
    pub const UNKF8_VALUE: u32 = 0x1000_3080;
    pub const UNKFC: u32 = 0xfc;
    pub const UNKFC_VALUE: u32 = 0x1000_0010;
    /// HCE_CTRL: per-channel host copy-engine state, restored into PBDMA 0xe4 with the rest
    /// of RAMFC. nouveau's GF100 fill (§8.6) leaves it 0; ENV `gf100_pfifo.xml` has PBDMA
    /// 0xe4 on GF100 (UNK0E4) and, from GK104, bits 2/4/5 that NVDOC Volta `dev_pbdma.ref`
    /// names HCE_RENDER_DISABLED/HCE_SUBCHSW/HCE_PRIV_MODE (NV_RAMFC_HCE_CTRL is RAMFC word 57
    /// in `dev_ram.ref`).
    /// **Choice:** the physical-copy gate is HCE_PRIV_MODE, which NVIDIA documents as
    /// "physical launchDMA copies are allowed"; NVIDIA's nvgpu sets it (with
    /// RAMFC CONFIG AUTH_LEVEL = PRIVILEGED) only for its privileged kernel channels
    /// (`hal/fifo/ramfc_gv11b.c`: "Enable HCE priv mode for phys mode transfer";
    /// `hw_pbdma_gk20a.h`: 0x20 at 0x400e4). Reset (0) is closed. The model reads it when it
    /// loads the channel: a copy-engine LAUNCH_DMA whose ADDRESSING_MODE makes SRC or DST
    /// physical on a channel without it copies nothing and raises PBDMA ILLEGAL_MTHD (NVDOC:
    /// a privileged operation on a NON_PRIVILEGED channel raises NV_PPBDMA_INTR_0_METHOD)
    /// with LAUNCH_DMA and its data in PBDMA METHOD/DATA; the channel stops. A host driver
    /// opens it for its own channel by writing `HCE_CTRL_PRIV_MODE` here before it writes the
    /// channel's CHAN word; gpuvm's shadows of guest channels always hold 0.
    pub const HCE_CTRL: u32 = 0xe4;
    pub const HCE_CTRL_PRIV_MODE: u32 = 1 << 5;

    pub const fn gp_base_hi_value(gpfifo_va: u64, order: u32) -> u32 {
        ((gpfifo_va >> 32) as u32 & GP_BASE_HI_ADDR_MASK)
            | (order & GP_BASE_HI_ORDER_MASK) << GP_BASE_HI_ORDER_SHIFT
    }
}

/// USERD: the per-channel 4 KiB control page (§8.7).
pub mod userd {
    pub const SIZE: u64 = 0x1000;
    pub const PUT: u32 = 0x40;
    /// Written back by PFIFO: low 32 bits of the VA of the next pushbuffer word.
    pub const GET: u32 = 0x44;
    /// Written by SET_REFERENCE.
    pub const REF: u32 = 0x48;
    pub const PUT_HI: u32 = 0x4c;
    pub const REF_THRESHOLD: u32 = 0x50;
    /// Written back by PFIFO: VA of the main-level pushbuffer position; HI bit 31 = valid.
    pub const TOP_LEVEL_GET: u32 = 0x58;
    pub const TOP_LEVEL_GET_HI: u32 = 0x5c;
    pub const TOP_LEVEL_GET_HI_VALID: u32 = 1 << 31;
    pub const GET_HI: u32 = 0x60;
    /// Written back by PFIFO after each GPFIFO entry has been fully executed.
    pub const GP_GET: u32 = 0x88;
    /// Written by the driver; the doorbell (see `pfifo::UserdPollBase`).
    pub const GP_PUT: u32 = 0x8c;
}

/// PFIFO, 0x002000 (§8).
pub mod pfifo {
    pub const CHANNELS: u32 = 128;
    /// Register ranges (gated by `pmc::ENABLE_PFIFO`): PFIFO proper and the PBDMAs.
    pub const REGS_START: u32 = 0x002000;
    pub const REGS_END: u32 = 0x004000;
    pub const PBDMA_REGS_START: u32 = 0x040000;
    pub const PBDMA_STRIDE: u32 = 0x2000;
    pub const PBDMA_REGS_END: u32 = PBDMA_REGS_START + PBDMA_STRIDE * PBDMA_COUNT;
    /// Fault units: bits of `VM_FAULT_UNITS`, records `VmFault*::offset(unit)` (rnndb
    /// `fifo/gf100_pfifo.xml` VM_FAULT, length 32).
    pub const VM_FAULT_UNITS_MAX: u32 = 32;
    /// `engine_intr(n)` registers, n < this: rnndb `fifo/gf100_pfifo.xml` ENGINE_INTR, 0x25a8,
    /// length 16 (GF100:GK104). **Choice (§17.13):** the model raises every channel's
    /// non-stall interrupt in n = 0; the other 15 exist, read 0 and ack like it.
    pub const ENGINE_INTR_COUNT: u32 = 16;

    pub const INTR: u32 = 0x002100;
    pub const INTR_EN: u32 = 0x002140;
    pub const INTR_CHAN_TABLE_ERROR: u32 = 1 << 0;
    pub const INTR_BYPASS_ERROR: u32 = 1 << 4;
    pub const INTR_SCHED_ERROR: u32 = 1 << 8;
    pub const INTR_VM_FAULT: u32 = 1 << 28;
    pub const INTR_PBDMA: u32 = 1 << 29;
    pub const INTR_RUNLIST: u32 = 1 << 30;
    pub const INTR_ENGINE: u32 = 1 << 31;

    pub const CTRL: u32 = 0x002200;
    pub const CTRL_ENABLE: u32 = 1 << 0;
    /// Write all-ones and count the bits that stick (3 PBDMAs).
    pub const SUBFIFO_ENABLE: u32 = 0x002204;
    pub const PBDMA_COUNT: u32 = 3;
    /// ENG_SUBFIFO_MASK[e] for e = 0..5.
    pub const fn eng_subfifo_mask(engine: u32) -> u32 {
        0x002208 + 4 * engine
    }
    pub const ENG_SUBFIFO_MASK_COUNT: u32 = 6;

    register! {
        /// USERD poll area (rnndb `fifo/gf100_pfifo.xml` BAR1_BASE): where in BAR1 the 128
        /// USERD pages are. The doorbell is a BAR1 write of GP_PUT at
        /// `bar1_va + chid * USERD_POLL_STRIDE + userd::GP_PUT`.
        /// **Choice (§17.1):** only that BAR1 write wakes a channel; PFIFO then re-reads GP_PUT
        /// from the channel's USERD memory (RAMFC USERD) and writes GP_GET, GET, TOP_LEVEL_GET
        /// and REF back there. `enable` must be set for doorbells to be recognised.
        pub UserdPollBase(u32) @ 0x002254 {
            /// BAR1 address of channel 0's USERD page.
            27:0  bar1_va: u64 << 12, with_bar1_va;
            /// Doorbells are recognised (rnndb UNK28).
            28:28 enable: bool, with_enable;
        }
    }
    pub const USERD_POLL_STRIDE: u64 = 0x1000;

    register! {
        /// Runlist base (rnndb `fifo/gf100_pfifo.xml` PLAYLIST_WR).
        pub RunlistBase(u32) @ 0x002270 {
            /// Runlist address.
            27:0  addr: u64 << 12, with_addr;
            /// `target::*`.
            29:28 target: u32, with_target;
        }

        /// Runlist submit (rnndb PLAYLIST_WR_LEN): writing it commits the runlist at
        /// `RunlistBase`. **Choice (§17.4):** UNK20 is stored and ignored.
        pub RunlistSubmit(u32) @ 0x002274 {
            /// Entries.
            11:0  count: u32, with_count;
            /// nouveau writes 0x1f (`RunlistSubmit::commit`).
            24:20 unk20: u32, with_unk20;
        }

        /// Runlist status (rnndb PLAYLIST_RD_LEN). The model commits synchronously, so
        /// `pending` reads 0 after the write.
        pub RunlistStatus(u32) @ 0x00227c {
            11:0  count: u32, with_count;
            /// An update is pending (rnndb UNK20, "busy?").
            20:20 pending: bool, with_pending;
        }
    }

    impl RunlistSubmit {
        /// Commits `count` entries, as nouveau writes it.
        pub const fn commit(count: u32) -> Self {
            Self::from_raw(0).with_unk20(0x1f).with_count(count)
        }

        /// The most entries a runlist can have (`count` all ones).
        pub const COUNT_MAX: u32 = Self::from_raw(u32::MAX).count();
    }
    /// Runlist entry: `{ chid, RUNLIST_ENTRY_WORD1 }`. **Choice (§17.4):** word 1 must be 4;
    /// any other value, or a chid >= 128, is a SCHED_ERROR (code `SCHED_ERROR_BAD_RUNLIST`).
    pub const RUNLIST_ENTRY_SIZE: u64 = 8;
    pub const RUNLIST_ENTRY_WORD1: u32 = 0x0000_0004;

    /// INTR bit 0 code.
    pub const CHAN_TABLE_ERROR: u32 = 0x00252c;
    pub const CHAN_TABLE_ERROR_NO_POLL: u32 = 2;
    pub const CHAN_TABLE_ERROR_INVALID_TARGET: u32 = 6;
    /// INTR bit 8 code.
    pub const SCHED_ERROR: u32 = 0x00254c;
    /// **Model-defined** SCHED_ERROR code: a malformed runlist entry (the entry is skipped).
    pub const SCHED_ERROR_BAD_RUNLIST: u32 = 0x20;
    /// INTR bit 28: bit u set = a fault is recorded in `VmFault*::offset(u)`; write back to ack.
    pub const VM_FAULT_UNITS: u32 = 0x00259c;
    /// INTR bit 29: bit i = PBDMA i has an interrupt; write back to ack.
    pub const PBDMA_INTR_UNITS: u32 = 0x0025a0;
    /// INTR bit 31: bit n = ENGINE_INTR[n] pending.
    pub const ENGINE_INTR_UNITS: u32 = 0x0025a4;
    /// ENGINE_INTR[n], n < `ENGINE_INTR_COUNT`: bit 0 NOTIFY (non-stall). Write back to ack.
    /// **Choice (§17.13):** the model uses n = 0 for every channel's non-stall interrupt.
    pub const fn engine_intr(n: u32) -> u32 {
        0x0025a8 + 4 * n
    }
    pub const ENGINE_INTR_NOTIFY: u32 = 1 << 0;
    /// Bit 0 enables NOTIFY to reach INTR bit 31.
    pub const ENGINE_INTR_EN: u32 = 0x002628;
    pub const ENG_FAULT: u32 = 0x00262c;
    pub const ENG_FREEZE: u32 = 0x002630;
    /// Write chid to preempt it: the channel is switched out and restored from RAMFC at its
    /// next timeslice. **Choice (§17.3):** reads return the chid once it is not executing;
    /// while its time slice is still running, reads return `chid | KICK_PENDING`.
    pub const KICK: u32 = 0x002634;
    pub const KICK_PENDING: u32 = 1 << 20;
    pub const fn eng_state(engine: u32) -> u32 {
        EngState::offset(engine)
    }

    register! {
        /// ENG_STATE[e], e = engine id (`ENGINE_PGRAPH`, `ENGINE_PCOPY0`, ...): which channel
        /// engine e is working for. nouveau's GF100 recovery (NVKM `engine/fifo/gf100.c`,
        /// `gf100_fifo_intr_sched_ctxsw`) reads 0x2640 + 4*e for e = 0..5 (0 GR, 4 CE0, 5 CE1),
        /// bit 31 busy, bits 6:0 chid, and recovers the engine found busy on a channel.
        /// **Choice:** the other bits (nouveau's "save"/unknown bits 20, 18, 12) read 0; an
        /// engine reads busy exactly while it executes a method of that channel.
        pub EngState(u32)[ENG_SUBFIFO_MASK_COUNT, stride = 4] @ 0x002640 {
            6:0   chid: u32, with_chid;
            31:31 busy: bool, with_busy;
        }
    }

    /// The engines a host stops a channel's work on, each with its PMC_ENABLE bit: clearing
    /// the bit holds the engine in reset (the work in flight and the channel context it held
    /// are abandoned), setting it again brings it back (nouveau's recovery fini/init of the
    /// engine subdev, NVKM `engine/fifo/gf100.c` `gf100_fifo_recover_work`, resets through
    /// PMC_ENABLE as `subdev/mc` does).
    pub const RESETTABLE_ENGINES: [(u32, u32); 3] = [
        (ENGINE_PGRAPH, super::pmc::ENABLE_PGRAPH),
        (ENGINE_PCOPY0, super::pmc::ENABLE_PCOPY0),
        (ENGINE_PCOPY1, super::pmc::ENABLE_PCOPY1),
    ];
    /// SCHED_ERROR code a GF100 reports when a channel switch does not complete because an
    /// engine stays busy on the channel (nouveau `gf100_fifo_sched_reason`: 0x0a
    /// CTXSW_TIMEOUT; rnndb `fifo/gf100_pfifo.xml` PLAYLIST_INTR 0xa ENGINE_TIMEOUT); the
    /// host raises it in the guest whose channel it had to stop.
    pub const SCHED_ERROR_CTXSW_TIMEOUT: u32 = 0x0a;

    register! {
        /// VM fault record of unit u (§8.1; rnndb `fifo/gf100_pfifo.xml` VM_FAULT[u].CHAN):
        /// the faulting channel's instance block.
        pub VmFaultInst(u32)[VM_FAULT_UNITS_MAX, stride = 0x10] @ 0x002800 {
            27:0  addr: u64 << 12, with_addr;
            /// `target::*`.
            29:28 target: u32, with_target;
        }

        /// Faulting virtual address, bits 31:0 (rnndb VM_FAULT[u].ADDR_LOW).
        pub VmFaultAddrLo(u32)[VM_FAULT_UNITS_MAX, stride = 0x10] @ 0x002804 {
            31:0  va: u64 << 0, with_va;
        }

        /// Faulting virtual address, bits 63:32 (rnndb VM_FAULT[u].ADDR_HIGH).
        pub VmFaultAddrHi(u32)[VM_FAULT_UNITS_MAX, stride = 0x10] @ 0x002808 {
            31:0  va: u64 << 32, with_va;
        }

        /// What faulted, and how (rnndb VM_FAULT[u].FLAGS).
        pub VmFaultInfo(u32)[VM_FAULT_UNITS_MAX, stride = 0x10] @ 0x00280c {
            /// `mmu::FAULT_*`.
            3:0   reason: u32, with_reason;
            /// The fault came from the HUB (1), not a GPC (0).
            6:6   hub: bool, with_hub;
            7:7   write: bool, with_write;
            /// HUB or GPC client id.
            12:8  client: u32, with_client;
            28:24 gpc_id: u32, with_gpc_id;
        }
    }
    /// Fault units (bit index in VM_FAULT_UNITS).
    pub const FAULT_UNIT_PGRAPH: u32 = 0x00;
    pub const FAULT_UNIT_BAR1: u32 = 0x04;
    pub const FAULT_UNIT_BAR3: u32 = 0x05;
    pub const FAULT_UNIT_PFIFO: u32 = 0x07;
    pub const FAULT_UNIT_PCOPY0: u32 = 0x15;
    pub const FAULT_UNIT_PCOPY1: u32 = 0x16;

    /// INTR bit 30 detail: bit 28 = runlist update complete. Write 1 to ack.
    pub const INTR_RUNLIST_STATUS: u32 = 0x002a00;
    pub const INTR_RUNLIST_DONE: u32 = 1 << 28;

    register! {
        /// Channel table (§8.3), CHAN word of channel `chid` (rnndb `fifo/gf100_pfifo.xml`
        /// CHAN_TABLE[chid].CHAN, GF100:GK104).
        /// **Choice:** channel instance blocks must be in VRAM (another target raises
        /// CHAN_TABLE_ERROR `CHAN_TABLE_ERROR_INVALID_TARGET`); writing the word drops PFIFO's
        /// state of the channel (pending methods, bound objects, a stop after an error).
        pub ChanInst(u32)[CHANNELS, stride = 8] @ 0x003000 {
            /// Instance block address.
            27:0  addr: u64 << 12, with_addr;
            /// `target::*`.
            29:28 target: u32, with_target;
            /// Doorbells (GP_PUT writes in the USERD poll area) wake the channel.
            30:30 poll_enable: bool, with_poll_enable;
            31:31 valid: bool, with_valid;
        }

        /// Channel table STATE word of channel `chid` (rnndb CHAN_TABLE[chid].STATE). The
        /// driver writes `runnable` and `engine`; PFIFO maintains the rest.
        pub ChanState(u32)[CHANNELS, stride = 8] @ 0x003004 {
            0:0   runnable: bool, with_runnable;
            4:4   acquire_pending: bool, with_acquire_pending;
            /// Loaded on a PBDMA.
            12:12 loaded: bool, with_loaded;
            /// `ENGINE_*`.
            20:16 engine: u32, with_engine;
            28:28 pending: bool, with_pending;
        }
    }

    impl ChanInst {
        /// Bound to the instance block at VRAM `inst_addr`, doorbells enabled (what nouveau
        /// writes).
        pub const fn bound(inst_addr: u64) -> Self {
            Self::from_raw(0)
                .with_addr(inst_addr)
                .with_target(super::target::VRAM)
                .with_poll_enable(true)
                .with_valid(true)
        }
    }

    impl ChanState {
        /// What nouveau writes when adding a channel: runnable, no engine (0x001f0001).
        pub const INITIAL: Self = Self::from_raw(0).with_runnable(true).with_engine(ENGINE_SW);

        /// Only the fields a driver writes (`runnable`, `engine`); PFIFO keeps the others.
        pub const fn writable(self) -> Self {
            Self::from_raw(0).with_runnable(self.runnable()).with_engine(self.engine())
        }
    }

    /// PBDMA i registers (§8.2).
    pub const fn pbdma_base(i: u32) -> u32 {
        PBDMA_REGS_START + PBDMA_STRIDE * i
    }
    /// Faulting method: bits 13:2 method, bits 18:16 subchannel.
    pub const PBDMA_METHOD: u32 = 0x0c0;
    pub const PBDMA_METHOD_ADDR_MASK: u32 = 0x3ffc;
    pub const PBDMA_METHOD_SUBCH_SHIFT: u32 = 16;
    pub const PBDMA_DATA: u32 = 0x0c4;
    pub const PBDMA_INTR: u32 = 0x108;
    pub const PBDMA_INTR_EN: u32 = 0x10c;
    /// Bits 6:0: the channel loaded on the PBDMA.
    pub const PBDMA_CHID: u32 = 0x120;
    pub const PBDMA_CHID_MASK: u32 = 0x7f;
    pub const PBDMA_INTR_HALT_MASK: u32 = 0x13c;
    pub const PBDMA_INTR_IB_ENTRY_INVALID: u32 = 1 << 15;
    pub const PBDMA_INTR_ILLEGAL_CMD: u32 = 1 << 18;
    pub const PBDMA_INTR_ILLEGAL_MTHD: u32 = 1 << 21;
    /// A method on a subchannel with no object bound.
    pub const PBDMA_INTR_EMPTY_SUBC: u32 = 1 << 23;
    pub const PBDMA_INTR_ILLEGAL_SEM: u32 = 1 << 25;
    pub const PBDMA_INTR_SIG_MISMATCH: u32 = 1 << 31;
    /// nouveau's value to clear the method slot after handling.
    pub const PBDMA_METHOD_CLEAR: u32 = 0x8060_0008;

    /// Engine ids (§8.1). **Choice (§17.9):** rnndb numbering.
    pub const ENGINE_PGRAPH: u32 = 0;
    pub const ENGINE_PPDEC: u32 = 1;
    pub const ENGINE_PPPP: u32 = 2;
    pub const ENGINE_PVLD: u32 = 3;
    pub const ENGINE_PCOPY0: u32 = 4;
    pub const ENGINE_PCOPY1: u32 = 5;
    pub const ENGINE_SW: u32 = 0x1f;
}

/// PGRAPH interrupt registers the model uses (§14 item 3).
pub mod pgraph {
    /// Register range (gated by `pmc::ENABLE_PGRAPH`).
    pub const REGS_START: u32 = 0x400000;
    pub const REGS_END: u32 = 0x600000;
    pub const INTR: u32 = 0x400100;
    pub const INTR_NOTIFY: u32 = 1 << 0;
    pub const INTR_ILLEGAL_MTHD: u32 = 1 << 4;
    pub const INTR_ILLEGAL_CLASS: u32 = 1 << 5;
    pub const INTR_DATA_ERROR: u32 = 1 << 20;
    pub const INTR_TRAP: u32 = 1 << 21;
    /// DATA_ERROR code (see `DATA_ERROR_*`).
    pub const DATA_ERROR_CODE: u32 = 0x400110;
    pub const INTR_EN: u32 = 0x40013c;
    /// Method / data that caused the interrupt.
    pub const TRAPPED_ADDR: u32 = 0x400704;
    pub const TRAPPED_DATA: u32 = 0x400708;
    /// Instance (>> 12, bits 27:0) of the channel that caused the interrupt.
    pub const INTR_CHANNEL_INST: u32 = 0x409b00;
    pub const INTR_CHANNEL_INST_MASK: u32 = 0x0fff_ffff;

    /// **Model-defined** DATA_ERROR codes for compute launches.
    pub const DATA_ERROR_BAD_KERNEL_TAG: u32 = 0x100;
    pub const DATA_ERROR_BAD_LAUNCH_DIMS: u32 = 0x101;
    pub const DATA_ERROR_BAD_PARAMS: u32 = 0x102;
    pub const DATA_ERROR_NO_CONSTANT_BUFFER: u32 = 0x103;
    /// An M2MF/copy request the model does not implement (e.g. block-linear layouts).
    pub const DATA_ERROR_UNSUPPORTED: u32 = 0x104;
}

/// GPFIFO entry (§9.1).
pub mod gpfifo {
    pub const ENTRY_SIZE: u64 = 8;
    /// Word 0: VA bits 31:2; bit 1 NO_CONTEXT_SWITCH; bit 0 FETCH conditional.
    pub const W0_ADDR_MASK: u32 = 0xffff_fffc;
    pub const W0_NO_CONTEXT_SWITCH: u32 = 1 << 1;
    /// Word 1: bits 7:0 VA 39:32, bit 9 LEVEL (1 = subroutine), bits 30:10 length in words.
    /// **Choice (§17.8):** bit 31 is ignored; a zero-length entry is a control entry whose
    /// bits 7:0 are an opcode: NOP is accepted, anything else is IB_ENTRY_INVALID.
    pub const W1_ADDR_HI_MASK: u32 = 0xff;
    pub const W1_PRIV: u32 = 1 << 8;
    pub const W1_LEVEL_SUBROUTINE: u32 = 1 << 9;
    pub const W1_LENGTH_SHIFT: u32 = 10;
    pub const W1_LENGTH_MASK: u32 = 0x1f_ffff;
    pub const W1_SYNC: u32 = 1 << 31;
    pub const CONTROL_OPCODE_NOP: u32 = 0;

    /// Entry for a pushbuffer segment of `words` 32-bit words at `va`.
    pub const fn entry(va: u64, words: u32) -> u64 {
        (va & 0xff_ffff_fffc) | ((words as u64 & W1_LENGTH_MASK as u64) << (32 + W1_LENGTH_SHIFT))
    }
}

/// Pushbuffer method headers (§9.2).
pub mod pushbuf {
    pub const METHOD_SHIFT: u32 = 0;
    /// Method dword address (method byte offset >> 2).
    pub const METHOD_MASK: u32 = 0xfff;
    pub const SUBCH_SHIFT: u32 = 13;
    pub const SUBCH_MASK: u32 = 0x7;
    pub const COUNT_SHIFT: u32 = 16;
    pub const COUNT_MASK: u32 = 0x1fff;
    pub const OPCODE_SHIFT: u32 = 29;
    pub const OPCODE_MASK: u32 = 0x7;
    /// SEC_OP values.
    pub const OP_GRP0: u32 = 0;
    pub const OP_INCREASING: u32 = 1;
    pub const OP_GRP2: u32 = 2;
    pub const OP_NON_INCREASING: u32 = 3;
    pub const OP_IMMEDIATE: u32 = 4;
    pub const OP_INCREASE_ONCE: u32 = 5;
    pub const OP_RESERVED: u32 = 6;
    pub const OP_END_PB_SEGMENT: u32 = 7;
    /// GRP0/GRP2: TERT_OP in bits 17:16. GRP0 TERT 0 = old incrementing, 1..3 = subdevice mask
    /// ops (mask in 15:4; the model has one subdevice and accepts them as no-ops). GRP2 TERT 0 =
    /// old non-incrementing. Old formats: count in 28:18, method in 12:2.
    pub const TERT_SHIFT: u32 = 16;
    pub const TERT_MASK: u32 = 0x3;
    pub const OLD_COUNT_SHIFT: u32 = 18;
    pub const OLD_COUNT_MASK: u32 = 0x7ff;
    pub const OLD_METHOD_MASK: u32 = 0x1ffc;

    pub const fn header(opcode: u32, subch: u32, method: u32, count_or_data: u32) -> u32 {
        (opcode & OPCODE_MASK) << OPCODE_SHIFT
            | (count_or_data & COUNT_MASK) << COUNT_SHIFT
            | (subch & SUBCH_MASK) << SUBCH_SHIFT
            | (method >> 2) & METHOD_MASK
    }
    pub const fn incr(subch: u32, method: u32, count: u32) -> u32 {
        header(OP_INCREASING, subch, method, count)
    }
    pub const fn nonincr(subch: u32, method: u32, count: u32) -> u32 {
        header(OP_NON_INCREASING, subch, method, count)
    }
    pub const fn immd(subch: u32, method: u32, data: u32) -> u32 {
        header(OP_IMMEDIATE, subch, method, data)
    }
    pub const fn incr_once(subch: u32, method: u32, count: u32) -> u32 {
        header(OP_INCREASE_ONCE, subch, method, count)
    }
    /// Methods below this go to the host (PFIFO) itself, on any subchannel.
    pub const HOST_METHOD_END: u32 = 0x100;
    pub const SUBCHANNELS: u32 = 8;
}

/// Class ids and SET_OBJECT encoding (§9.3).
pub mod class {
    pub const CHANNEL_GPFIFO: u32 = 0x906f;
    pub const M2MF: u32 = 0x9039;
    pub const COMPUTE: u32 = 0x90c0;
    pub const COPY0: u32 = 0x90b5;
    pub const COPY1: u32 = 0x90b8;
    /// SET_OBJECT data: class in 15:0, engine in 20:16.
    pub const OBJECT_CLASS_MASK: u32 = 0xffff;
    pub const OBJECT_ENGINE_SHIFT: u32 = 16;
    pub const OBJECT_ENGINE_MASK: u32 = 0x1f;
    pub const fn set_object(class: u32, engine: u32) -> u32 {
        class & OBJECT_CLASS_MASK | (engine & OBJECT_ENGINE_MASK) << OBJECT_ENGINE_SHIFT
    }
}

/// Host class GF100_CHANNEL_GPFIFO (0x906f) methods (§10).
pub mod host {
    pub const SET_OBJECT: u32 = 0x000;
    pub const ILLEGAL: u32 = 0x004;
    pub const NOP: u32 = 0x008;
    pub const SEMAPHORE_A: u32 = 0x010;
    pub const SEMAPHORE_B: u32 = 0x014;
    pub const SEMAPHORE_C: u32 = 0x018;
    pub const SEMAPHORE_D: u32 = 0x01c;
    pub const NON_STALL_INTERRUPT: u32 = 0x020;
    pub const FB_FLUSH: u32 = 0x024;
    pub const MEM_OP_A: u32 = 0x028;
    pub const MEM_OP_B: u32 = 0x02c;
    pub const SET_REFERENCE: u32 = 0x050;
    pub const CRC_CHECK: u32 = 0x07c;
    pub const YIELD: u32 = 0x080;

    pub const SEMAPHORE_A_ADDR_HI_MASK: u32 = 0xff;
    pub const SEMAPHORE_B_ADDR_LO_MASK: u32 = 0xffff_fffc;
    /// SEMAPHORE_D: bits 3:0 operation.
    pub const SEMAPHORE_D_OP_MASK: u32 = 0xf;
    pub const SEM_OP_ACQUIRE: u32 = 1;
    pub const SEM_OP_RELEASE: u32 = 2;
    pub const SEM_OP_ACQ_GEQ: u32 = 4;
    pub const SEM_OP_ACQ_AND: u32 = 8;
    pub const SEMAPHORE_D_ACQUIRE_SWITCH: u32 = 1 << 12;
    /// 1 = do not wait for idle before the release (the model is always idle at that point).
    pub const SEMAPHORE_D_RELEASE_WFI_DIS: u32 = 1 << 20;
    /// 1 = 4-byte release (payload only); 0 = 16 bytes {payload, 0, time_lo, time_hi}.
    pub const SEMAPHORE_D_RELEASE_SIZE_4: u32 = 1 << 24;
    /// nouveau's fence emit / wait values.
    pub const SEMAPHORE_D_FENCE_RELEASE: u32 = 0x0000_0002;
    pub const SEMAPHORE_D_FENCE_WAIT: u32 = 0x0000_1004;

    /// MEM_OP_A for a TLB invalidate: bits 29:2 PDB address >> 12, bits 31:30 target.
    pub const MEM_OP_A_TLB_PDB_SHIFT: u32 = 2;
    pub const MEM_OP_A_TLB_PDB_MASK: u32 = 0x0fff_ffff;
    pub const MEM_OP_A_TLB_TARGET_SHIFT: u32 = 30;
    /// MEM_OP_B: bits 31:27 operation; for TLB invalidate bit 0 = all PDBs.
    pub const MEM_OP_B_OP_SHIFT: u32 = 27;
    pub const MEM_OP_B_OP_MASK: u32 = 0x1f;
    pub const MEM_OP_SYSMEMBAR_FLUSH: u32 = 5;
    pub const MEM_OP_SOFT_FLUSH: u32 = 6;
    pub const MEM_OP_MMU_TLB_INVALIDATE: u32 = 9;
    pub const MEM_OP_L2_PEERMEM_INVALIDATE: u32 = 0xd;
    pub const MEM_OP_L2_SYSMEM_INVALIDATE: u32 = 0xe;
    pub const MEM_OP_L2_CLEAN_COMPTAGS: u32 = 0xf;
    pub const MEM_OP_L2_FLUSH_DIRTY: u32 = 0x10;
    pub const MEM_OP_B_TLB_ALL_PDB: u32 = 1 << 0;
}

/// Shared structure of 4-word semaphore/report releases: {payload, 0, time_lo, time_hi}.
pub mod report {
    pub const PAYLOAD: u64 = 0x0;
    pub const ZERO: u64 = 0x4;
    pub const TIME_LO: u64 = 0x8;
    pub const TIME_HI: u64 = 0xc;
    pub const SIZE_FOUR_WORDS: u64 = 16;
}

/// M2MF, FERMI_MEMORY_TO_MEMORY_FORMAT_A (0x9039) on PGRAPH (§11).
pub mod m2mf {
    pub const NOP: u32 = 0x100;
    pub const SET_NOTIFY_A: u32 = 0x104;
    pub const SET_NOTIFY_B: u32 = 0x108;
    /// 0 = write the notifier, 1 = write it then raise PGRAPH INTR NOTIFY.
    pub const NOTIFY: u32 = 0x10c;
    pub const NOTIFY_WRITE_THEN_AWAKEN: u32 = 1;
    pub const WAIT_FOR_IDLE: u32 = 0x110;
    pub const SET_SRC_BLOCK_SIZE: u32 = 0x204;
    pub const SET_SRC_WIDTH: u32 = 0x208;
    pub const SET_SRC_HEIGHT: u32 = 0x20c;
    pub const SET_SRC_DEPTH: u32 = 0x210;
    pub const SET_SRC_LAYER: u32 = 0x214;
    pub const SET_DST_BLOCK_SIZE: u32 = 0x220;
    pub const SET_DST_WIDTH: u32 = 0x224;
    pub const SET_DST_HEIGHT: u32 = 0x228;
    pub const SET_DST_DEPTH: u32 = 0x22c;
    pub const SET_DST_LAYER: u32 = 0x230;
    pub const OFFSET_OUT_UPPER: u32 = 0x238;
    pub const OFFSET_OUT: u32 = 0x23c;
    pub const LAUNCH_DMA: u32 = 0x300;
    pub const LOAD_INLINE_DATA: u32 = 0x304;
    pub const OFFSET_IN_UPPER: u32 = 0x30c;
    pub const OFFSET_IN: u32 = 0x310;
    pub const PITCH_IN: u32 = 0x314;
    pub const PITCH_OUT: u32 = 0x318;
    pub const LINE_LENGTH_IN: u32 = 0x31c;
    pub const LINE_COUNT: u32 = 0x320;
    pub const SET_SEMAPHORE_A: u32 = 0x32c;
    pub const SET_SEMAPHORE_B: u32 = 0x330;
    pub const SET_SEMAPHORE_C: u32 = 0x334;
    pub const SET_RENDER_ENABLE_A: u32 = 0x338;
    pub const SET_RENDER_ENABLE_B: u32 = 0x33c;
    pub const SET_RENDER_ENABLE_C: u32 = 0x340;
    pub const SET_SRC_ORIGIN_X: u32 = 0x344;
    pub const SET_SRC_ORIGIN_Y: u32 = 0x348;
    pub const SET_DST_ORIGIN_X: u32 = 0x34c;
    pub const SET_DST_ORIGIN_Y: u32 = 0x350;

    /// LAUNCH_DMA fields. The model implements pitch layouts only (block-linear raises
    /// PGRAPH DATA_ERROR `DATA_ERROR_UNSUPPORTED`). Inline uploads: LINE_COUNT lines of
    /// LINE_LENGTH_IN bytes at OFFSET_OUT + line * PITCH_OUT; every line starts with a fresh
    /// LOAD_INLINE_DATA word (the unused bytes of a line's last word are dropped), and any
    /// other method before the upload completes is ILLEGAL_MTHD.
    pub const LAUNCH_SRC_INLINE: u32 = 1 << 0;
    pub const LAUNCH_SRC_PITCH: u32 = 1 << 4;
    pub const LAUNCH_DST_PITCH: u32 = 1 << 8;
    pub const LAUNCH_COMPLETION_SHIFT: u32 = 12;
    pub const LAUNCH_COMPLETION_MASK: u32 = 0x3;
    pub const COMPLETION_FLUSH_DISABLE: u32 = 0;
    pub const COMPLETION_FLUSH_ONLY: u32 = 1;
    pub const COMPLETION_RELEASE_SEMAPHORE: u32 = 2;
    /// INTERRUPT_TYPE (17:16) = 1: **choice** raises PGRAPH INTR NOTIFY after the launch.
    pub const LAUNCH_INTERRUPT_SHIFT: u32 = 16;
    pub const LAUNCH_INTERRUPT_MASK: u32 = 0x3;
    /// 1 = one-word semaphore (payload only), 0 = four words {payload, 0, time}.
    pub const LAUNCH_SEMAPHORE_ONE_WORD: u32 = 1 << 20;
    /// Values used by Gdev / Mesa.
    pub const LAUNCH_COPY_PITCH: u32 = 0x0010_0110;
    pub const LAUNCH_COPY_PITCH_RELEASE: u32 = 0x0010_2110;
    pub const LAUNCH_INLINE_PITCH: u32 = 0x0010_0111;
}

/// Copy engine GF100_DMA_COPY (0x90b5), NVIDIA's published method layout (§13 (a)).
/// **Choice (§17.10):** the NVIDIA layout, not nouveau's own firmware layout.
pub mod copy {
    pub const NOP: u32 = 0x100;
    pub const PM_TRIGGER: u32 = 0x140;
    pub const SET_APPLICATION_ID: u32 = 0x200;
    pub const APPLICATION_ID_NORMAL: u32 = 1;
    pub const SET_WATCHDOG_TIMER: u32 = 0x204;
    pub const SET_SEMAPHORE_A: u32 = 0x240;
    pub const SET_SEMAPHORE_B: u32 = 0x244;
    pub const SET_SEMAPHORE_PAYLOAD: u32 = 0x248;
    pub const ADDRESSING_MODE: u32 = 0x250;
    pub const SET_RENDER_ENABLE_A: u32 = 0x254;
    pub const SET_RENDER_ENABLE_B: u32 = 0x258;
    pub const SET_RENDER_ENABLE_C: u32 = 0x25c;
    pub const LAUNCH_DMA: u32 = 0x300;
    pub const OFFSET_IN_UPPER: u32 = 0x400;
    pub const OFFSET_IN_LOWER: u32 = 0x404;
    pub const OFFSET_OUT_UPPER: u32 = 0x408;
    pub const OFFSET_OUT_LOWER: u32 = 0x40c;
    pub const PITCH_IN: u32 = 0x410;
    pub const PITCH_OUT: u32 = 0x414;
    pub const LINE_LENGTH_IN: u32 = 0x418;
    pub const LINE_COUNT: u32 = 0x41c;
    pub const SET_REMAP_CONST_A: u32 = 0x700;
    pub const SET_REMAP_CONST_B: u32 = 0x704;
    pub const SET_REMAP_COMPONENTS: u32 = 0x708;
    pub const SET_DST_BLOCK_SIZE: u32 = 0x70c;
    pub const SET_DST_WIDTH: u32 = 0x710;
    pub const SET_DST_HEIGHT: u32 = 0x714;
    pub const SET_DST_DEPTH: u32 = 0x718;
    pub const SET_DST_LAYER: u32 = 0x71c;
    pub const SET_DST_ORIGIN: u32 = 0x720;
    pub const SET_SRC_BLOCK_SIZE: u32 = 0x728;
    pub const SET_SRC_WIDTH: u32 = 0x72c;
    pub const SET_SRC_HEIGHT: u32 = 0x730;
    pub const SET_SRC_DEPTH: u32 = 0x734;
    pub const SET_SRC_LAYER: u32 = 0x738;
    pub const SET_SRC_ORIGIN: u32 = 0x73c;
    pub const PM_TRIGGER_END: u32 = 0x1114;

    /// ADDRESSING_MODE: bit 0 SRC physical, bits 5:4 SRC target; bit 8 / 13:12 for DST.
    pub const ADDR_SRC_PHYSICAL: u32 = 1 << 0;
    pub const ADDR_SRC_TARGET_SHIFT: u32 = 4;
    pub const ADDR_DST_PHYSICAL: u32 = 1 << 8;
    pub const ADDR_DST_TARGET_SHIFT: u32 = 12;
    pub const ADDR_TARGET_MASK: u32 = 0x3;
    /// Physical targets in ADDRESSING_MODE.
    pub const PHYS_TARGET_LOCAL_FB: u32 = 0;
    pub const PHYS_TARGET_COHERENT_SYSMEM: u32 = 1;
    pub const PHYS_TARGET_NONCOHERENT_SYSMEM: u32 = 2;

    /// LAUNCH_DMA fields.
    pub const LAUNCH_TRANSFER_SHIFT: u32 = 0;
    pub const LAUNCH_TRANSFER_MASK: u32 = 0x3;
    pub const TRANSFER_NONE: u32 = 0;
    pub const TRANSFER_PIPELINED: u32 = 1;
    pub const TRANSFER_NON_PIPELINED: u32 = 2;
    pub const LAUNCH_FLUSH_ENABLE: u32 = 1 << 2;
    pub const LAUNCH_SEMAPHORE_SHIFT: u32 = 3;
    pub const LAUNCH_SEMAPHORE_MASK: u32 = 0x3;
    pub const SEMAPHORE_NONE: u32 = 0;
    pub const SEMAPHORE_ONE_WORD: u32 = 1;
    pub const SEMAPHORE_FOUR_WORD: u32 = 2;
    /// INTERRUPT_TYPE (6:5): **choice** any nonzero value raises the non-stall interrupt
    /// (PFIFO ENGINE_INTR NOTIFY) after the copy and its semaphore.
    pub const LAUNCH_INTERRUPT_SHIFT: u32 = 5;
    pub const LAUNCH_INTERRUPT_MASK: u32 = 0x3;
    pub const LAUNCH_SRC_PITCH: u32 = 1 << 7;
    pub const LAUNCH_DST_PITCH: u32 = 1 << 8;
    /// 0 = copy one line of LINE_LENGTH_IN bytes (LINE_COUNT, pitches ignored).
    pub const LAUNCH_MULTI_LINE: u32 = 1 << 9;
    /// Remapping is not implemented (DATA_ERROR_UNSUPPORTED).
    pub const LAUNCH_REMAP: u32 = 1 << 10;
    /// nouveau's Kepler-style copy launch: non-pipelined, flush, pitch/pitch, multi-line.
    pub const LAUNCH_COPY_PITCH: u32 = 0x0000_0386;
}

/// Compute, FERMI_COMPUTE_A (0x90c0) methods the model accepts (§12). Any other method on
/// a compute object is ILLEGAL_MTHD. See `kernels` for what LAUNCH executes.
pub mod compute {
    pub const NOP: u32 = 0x100;
    pub const SET_NOTIFY_A: u32 = 0x104;
    pub const SET_NOTIFY_B: u32 = 0x108;
    pub const NOTIFY: u32 = 0x10c;
    pub const WAIT_FOR_IDLE: u32 = 0x110;
    pub const SET_SHADER_LOCAL_MEMORY_LOW_SIZE: u32 = 0x204;
    pub const SET_SHADER_LOCAL_MEMORY_HIGH_SIZE: u32 = 0x208;
    pub const SET_SHADER_LOCAL_MEMORY_CRS_SIZE: u32 = 0x20c;
    pub const SET_SHADER_SHARED_MEMORY_WINDOW: u32 = 0x214;
    pub const INVALIDATE_SHADER_CACHES: u32 = 0x21c;
    /// GRIDDIM_YX = `gy << 16 | gx`.
    pub const SET_CTA_RASTER_SIZE_A: u32 = 0x238;
    /// Field layout of the *_A (YX) and *_B (Z) grid/block dimension methods.
    pub const DIM_X_MASK: u32 = 0xffff;
    pub const DIM_Y_SHIFT: u32 = 16;
    pub const DIM_Z_MASK: u32 = 0xffff;
    /// gz.
    pub const SET_CTA_RASTER_SIZE_B: u32 = 0x23c;
    pub const SET_SHADER_SHARED_MEMORY_SIZE: u32 = 0x24c;
    pub const SET_CTA_THREAD_COUNT: u32 = 0x250;
    pub const SET_CTA_BARRIER_COUNT: u32 = 0x254;
    pub const BEGIN_GRID: u32 = 0x29c;
    pub const SET_WORK_DISTRIBUTION: u32 = 0x2a0;
    pub const SET_CTA_REGISTER_COUNT: u32 = 0x2c0;
    pub const SET_GA_TO_VA_MAPPING_MODE: u32 = 0x2c4;
    pub const LOAD_GA_TO_VA_MAPPING_ENTRY: u32 = 0x2c8;
    pub const SET_L1_CONFIGURATION: u32 = 0x308;
    pub const WAIT_REF_COUNT: u32 = 0x360;
    /// Executes the kernel; Gdev/Mesa write `LAUNCH_VALUE`.
    pub const LAUNCH: u32 = 0x368;
    pub const LAUNCH_VALUE: u32 = 0x1000;
    pub const SET_LAUNCH_ID: u32 = 0x36c;
    /// BLOCKDIM_YX = `by << 16 | bx`.
    pub const SET_CTA_THREAD_DIMENSION_A: u32 = 0x3ac;
    /// bz.
    pub const SET_CTA_THREAD_DIMENSION_B: u32 = 0x3b0;
    /// Offset of the kernel inside the code region.
    pub const SET_CTA_PROGRAM_START: u32 = 0x3b4;
    pub const SET_MAX_SM_COUNT: u32 = 0x758;
    pub const SET_SHADER_LOCAL_MEMORY_WINDOW: u32 = 0x77c;
    pub const SET_GRID_PARAM: u32 = 0x780;
    pub const SET_SHADER_LOCAL_MEMORY_A: u32 = 0x790;
    pub const SET_SHADER_LOCAL_MEMORY_B: u32 = 0x794;
    pub const SET_SHADER_LOCAL_MEMORY_C: u32 = 0x798;
    pub const SET_SHADER_LOCAL_MEMORY_D: u32 = 0x79c;
    pub const SET_SHADER_LOCAL_MEMORY_E: u32 = 0x7a0;
    pub const END_GRID: u32 = 0xa04;
    pub const SET_LAUNCH_SIZE: u32 = 0xa08;
    pub const SET_API_VISIBLE_CALL_LIMIT: u32 = 0xd64;
    /// Code region base VA: A = bits 39:32, B = low.
    pub const SET_PROGRAM_REGION_A: u32 = 0x1608;
    pub const SET_PROGRAM_REGION_B: u32 = 0x160c;
    /// `slot << 8 | BIND_VALID` binds the selected constant buffer.
    pub const BIND_CONSTANT_BUFFER: u32 = 0x1694;
    pub const BIND_VALID: u32 = 1 << 0;
    pub const BIND_SLOT_SHIFT: u32 = 8;
    pub const BIND_SLOT_MASK: u32 = 0x1f;
    pub const CONSTANT_BUFFER_SLOTS: u32 = 16;
    pub const INVALIDATE_SHADER_CACHES_NO_WFI: u32 = 0x1698;
    /// INVALIDATE_SHADER_CACHES(_NO_WFI) bits (§12): instruction (after a code upload), global
    /// data, uniform, constant (after a constant-buffer upload). Gdev/Mesa write
    /// `INVALIDATE_GLOBAL_DATA | INVALIDATE_UNIFORM` before a launch. (Added for the guest
    /// driver; the model may ignore them.)
    pub const INVALIDATE_INSTRUCTION: u32 = 1 << 0;
    pub const INVALIDATE_GLOBAL_DATA: u32 = 1 << 4;
    pub const INVALIDATE_UNIFORM: u32 = 1 << 8;
    pub const INVALIDATE_CONSTANT: u32 = 1 << 12;
    pub const SET_REPORT_SEMAPHORE_A: u32 = 0x1b00;
    pub const SET_REPORT_SEMAPHORE_B: u32 = 0x1b04;
    pub const SET_REPORT_SEMAPHORE_C: u32 = 0x1b08;
    pub const SET_REPORT_SEMAPHORE_D: u32 = 0x1b0c;
    /// REPORT_SEMAPHORE_D: bits 1:0 operation (0 RELEASE, 3 TRAP), bit 20 AWAKEN (raise
    /// PGRAPH NOTIFY), bit 28 one-word structure.
    pub const REPORT_OP_MASK: u32 = 0x3;
    pub const REPORT_OP_RELEASE: u32 = 0;
    pub const REPORT_OP_TRAP: u32 = 3;
    pub const REPORT_FLUSH_DISABLE: u32 = 1 << 2;
    pub const REPORT_AWAKEN: u32 = 1 << 20;
    pub const REPORT_ONE_WORD: u32 = 1 << 28;
    /// Constant buffer selector: A = size (bits 16:0), B = address 39:32, C = address low.
    pub const SET_CONSTANT_BUFFER_SELECTOR_A: u32 = 0x2380;
    pub const SET_CONSTANT_BUFFER_SELECTOR_B: u32 = 0x2384;
    pub const SET_CONSTANT_BUFFER_SELECTOR_C: u32 = 0x2388;
    pub const CB_SIZE_MASK: u32 = 0x1ffff;
    pub const LOAD_CONSTANT_BUFFER_OFFSET: u32 = 0x238c;
    /// LOAD_CONSTANT_BUFFER(i) = 0x2390 + 4 i, i < 16: each data word is written to the
    /// selected buffer at the current offset, which then advances by 4.
    pub const LOAD_CONSTANT_BUFFER: u32 = 0x2390;
    pub const LOAD_CONSTANT_BUFFER_WORDS: u32 = 16;
}
