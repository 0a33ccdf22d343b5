//! A first-fit range allocator with alignment, used for VRAM and for GPU virtual address space.

#[derive(Debug)]
pub struct RangeAlloc {
    /// Free ranges [start, end), sorted and coalesced.
    free: Vec<(u64, u64)>,
}

impl RangeAlloc {
    pub fn new(start: u64, end: u64) -> Self {
        RangeAlloc { free: vec![(start, end)] }
    }

    /// Allocate `size` bytes aligned to `align` (a power of two).
    pub fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        assert!(align.is_power_of_two() && size > 0);
        for i in 0..self.free.len() {
            let (s, e) = self.free[i];
            let a = s.next_multiple_of(align);
            if a + size > e {
                continue;
            }
            self.free.remove(i);
            let mut at = i;
            if a > s {
                self.free.insert(at, (s, a));
                at += 1;
            }
            if a + size < e {
                self.free.insert(at, (a + size, e));
            }
            return Some(a);
        }
        None
    }

    pub fn free(&mut self, start: u64, size: u64) {
        let end = start + size;
        let i = self.free.partition_point(|r| r.0 < start);
        assert!(i == 0 || self.free[i - 1].1 <= start, "double free at {start:#x}");
        assert!(i == self.free.len() || end <= self.free[i].0, "double free at {start:#x}");
        self.free.insert(i, (start, end));
        // Coalesce with the neighbours.
        if i + 1 < self.free.len() && self.free[i].1 == self.free[i + 1].0 {
            self.free[i].1 = self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].1 == self.free[i].0 {
            self.free[i - 1].1 = self.free[i].1;
            self.free.remove(i);
        }
    }

    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|r| r.1 - r.0).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_align_free_coalesce() {
        let mut a = RangeAlloc::new(0x1000, 0x100000);
        let x = a.alloc(0x1000, 0x1000).unwrap();
        let y = a.alloc(0x20000, 0x20000).unwrap();
        assert_eq!(x, 0x1000);
        assert_eq!(y, 0x20000);
        let z = a.alloc(0x1000, 0x1000).unwrap();
        assert_eq!(z, 0x2000, "the gap before the aligned block is reused");
        a.free(y, 0x20000);
        a.free(x, 0x1000);
        a.free(z, 0x1000);
        assert_eq!(a.free, vec![(0x1000, 0x100000)]);
        assert!(a.alloc(0x200000, 0x1000).is_none());
    }
}
