//! Activity counters, readable from outside (`Gpu::counters`, the server's `--stats` file).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters (atomics, updated by every thread of the model).
        #[derive(Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A point-in-time copy of [`Counters`].
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct CountersSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            pub fn snapshot(&self) -> CountersSnapshot {
                CountersSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl CountersSnapshot {
            /// One flat JSON object, keys = field names.
            pub fn to_json(&self) -> String {
                let fields: Vec<String> = vec![$(format!("\"{}\": {}", stringify!($name), self.$name)),*];
                format!("{{{}}}", fields.join(", "))
            }
        }
    };
}

counters! {
    bar0_reads, bar0_writes, bar1_reads, bar1_writes, bar3_reads, bar3_writes,
    /// Bytes moved by bulk BAR1/BAR3 accesses (both directions).
    bar_bulk_bytes,
    config_reads, config_writes,
    /// Accesses the model rejects: unknown or disabled BAR0 registers (reads return
    /// 0xbad0xxxx), unaligned BAR0 accesses, BAR window accesses beyond the BAR, failed
    /// PRAMIN writes. (Name kept for its users.)
    bar0_unknown,
    /// Pushbuffer methods executed (host and class methods).
    methods,
    gp_entries, doorbells, runlist_commits, kicks,
    /// Bytes written by the copy engine (0x90b5).
    copy_bytes,
    /// Bytes written by M2MF (0x9039), copies and inline uploads.
    m2mf_bytes,
    kernels_launched, semaphore_releases, semaphore_acquires, nonstall_interrupts,
    /// Rising edges of the interrupt line.
    irq_edges,
    /// MMU faults raised (any unit).
    mmu_faults,
    /// Channel errors other than MMU faults (illegal method/class/command, launch errors).
    channel_errors,
    tlb_flushes, tlb_misses, dma_maps,
    /// Nanoseconds each engine spent executing.
    busy_ns_pfifo, busy_ns_pgraph, busy_ns_pcopy0, busy_ns_pcopy1,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}
