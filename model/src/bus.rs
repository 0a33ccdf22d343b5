//! The physical address spaces the GPU reaches: its VRAM and the host's bus addresses
//! (system memory the user registered with DMA maps).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::mem::HostMemory;

/// Which physical space an address lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aperture {
    Vram,
    /// System memory through the bus (coherent and non-coherent are the same to the model).
    Sys,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PhysAddr {
    pub aperture: Aperture,
    pub addr: u64,
}

impl PhysAddr {
    pub fn vram(addr: u64) -> PhysAddr {
        PhysAddr {
            aperture: Aperture::Vram,
            addr,
        }
    }
    pub fn sys(addr: u64) -> PhysAddr {
        PhysAddr {
            aperture: Aperture::Sys,
            addr,
        }
    }
    pub fn offset(self, off: u64) -> PhysAddr {
        PhysAddr {
            aperture: self.aperture,
            addr: self.addr.wrapping_add(off),
        }
    }

    /// Decodes the 2-bit target used by instance blocks, 0x1700, 0x2270, RAMFC USERD and the
    /// channel table: 0 VRAM, 2/3 system memory, 1 invalid.
    pub fn from_target(target: u32, addr: u64) -> Option<PhysAddr> {
        match target & 3 {
            0 => Some(PhysAddr::vram(addr)),
            2 | 3 => Some(PhysAddr::sys(addr)),
            _ => None,
        }
    }
}

/// VRAM plus the DMA-mapped system memory.
pub struct PhysBus {
    pub vram: Arc<HostMemory>,
    dma: RwLock<BTreeMap<u64, Arc<HostMemory>>>,
    bus_master: AtomicBool,
}

impl PhysBus {
    pub fn new(vram: Arc<HostMemory>) -> PhysBus {
        PhysBus {
            vram,
            dma: RwLock::new(BTreeMap::new()),
            bus_master: AtomicBool::new(true),
        }
    }

    /// Registers `mem` at bus address `iova`. Fails if it overlaps an existing map.
    pub fn dma_map(&self, iova: u64, mem: Arc<HostMemory>) -> Result<(), &'static str> {
        let end = iova
            .checked_add(mem.len())
            .ok_or("DMA map wraps the address space")?;
        let mut maps = self.dma.write().unwrap_or_else(|e| e.into_inner());
        if let Some((&base, m)) = maps.range(..end).next_back() {
            if base + m.len() > iova {
                return Err("DMA map overlaps an existing map");
            }
        }
        maps.insert(iova, mem);
        Ok(())
    }

    /// Removes the map starting at `iova`; returns whether there was one.
    pub fn dma_unmap(&self, iova: u64) -> bool {
        self.dma
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&iova)
            .is_some()
    }

    /// Removes every map overlapping `[iova, iova + len)`.
    pub fn dma_unmap_range(&self, iova: u64, len: u64) -> usize {
        let mut maps = self.dma.write().unwrap_or_else(|e| e.into_inner());
        let end = iova.saturating_add(len);
        let doomed: Vec<u64> = maps
            .iter()
            .filter(|(&b, m)| b < end && b + m.len() > iova)
            .map(|(&b, _)| b)
            .collect();
        for b in &doomed {
            maps.remove(b);
        }
        doomed.len()
    }

    pub fn dma_unmap_all(&self) {
        self.dma.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn set_bus_master(&self, on: bool) {
        self.bus_master.store(on, Ordering::Relaxed);
    }

    /// The region and offset holding `[pa, pa + len)`, if that range exists as a whole.
    pub fn resolve(&self, pa: PhysAddr, len: u64) -> Option<(Arc<HostMemory>, u64)> {
        match pa.aperture {
            Aperture::Vram => {
                let end = pa.addr.checked_add(len)?;
                (end <= self.vram.len()).then(|| (self.vram.clone(), pa.addr))
            }
            Aperture::Sys => {
                if !self.bus_master.load(Ordering::Relaxed) {
                    return None;
                }
                let maps = self.dma.read().unwrap_or_else(|e| e.into_inner());
                let (&base, m) = maps.range(..=pa.addr).next_back()?;
                let off = pa.addr - base;
                let end = off.checked_add(len)?;
                (end <= m.len()).then(|| (m.clone(), off))
            }
        }
    }

    pub fn read32(&self, pa: PhysAddr) -> Option<u32> {
        match pa.aperture {
            Aperture::Vram => self.vram.read32(pa.addr),
            Aperture::Sys => {
                let (m, off) = self.resolve(pa, 4)?;
                m.read32(off)
            }
        }
    }

    pub fn read64(&self, pa: PhysAddr) -> Option<u64> {
        match pa.aperture {
            Aperture::Vram => self.vram.read64(pa.addr),
            Aperture::Sys => {
                let (m, off) = self.resolve(pa, 8)?;
                m.read64(off)
            }
        }
    }

    pub fn write32(&self, pa: PhysAddr, v: u32) -> bool {
        match pa.aperture {
            Aperture::Vram => self.vram.write32(pa.addr, v),
            Aperture::Sys => self
                .resolve(pa, 4)
                .is_some_and(|(m, off)| m.write32(off, v)),
        }
    }

    pub fn read(&self, pa: PhysAddr, buf: &mut [u8]) -> bool {
        self.resolve(pa, buf.len() as u64)
            .is_some_and(|(m, off)| m.read(off, buf))
    }

    pub fn write(&self, pa: PhysAddr, buf: &[u8]) -> bool {
        self.resolve(pa, buf.len() as u64)
            .is_some_and(|(m, off)| m.write(off, buf))
    }
}
