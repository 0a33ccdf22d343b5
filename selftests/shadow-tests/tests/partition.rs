use gpuvm_shadow_tests::partition::*;
use proptest::prelude::*;

const MIB: u64 = 1 << 20;

#[test]
fn pools_cut_into_aligned_units() {
    let p = Pools::new(1024 * MIB, 64 * MIB, 0, 120).unwrap();
    assert_eq!(p.vram_per_unit, 120 * MIB);
    assert_eq!(p.channels_per_unit, 15);
    assert_eq!(p.vram_per_unit % VRAM_UNIT_ALIGN, 0);
    // 6 GiB like the real Quadro 6000.
    let q = Pools::new(6144 * MIB, 64 * MIB, 0, 120).unwrap();
    assert_eq!(q.vram_per_unit, 760 * MIB);
    assert!(Pools::new(64 * MIB, 64 * MIB, 0, 120).is_none());
    assert!(Pools::new(1024 * MIB, 64 * MIB, 0, 7).is_none());
}

#[test]
fn available_instances_follow_allocations() {
    let mut m = UnitMap::default();
    assert_eq!([1, 2, 4, 8].map(|s| m.available(s)), [1, 2, 4, 8]);
    let a = m.alloc(2).unwrap();
    assert_eq!(a, 0);
    assert_eq!([1, 2, 4, 8].map(|s| m.available(s)), [0, 1, 2, 4]);
    let b = m.alloc(8).unwrap();
    assert_eq!(b, 4);
    assert_eq!([1, 2, 4, 8].map(|s| m.available(s)), [0, 0, 1, 3]);
    assert!(m.free(a, 4));
    assert_eq!([1, 2, 4, 8].map(|s| m.available(s)), [0, 1, 3, 7]);
    assert!(!m.free(a, 4), "double free must be refused");
    assert!(m.free(b, 1));
    assert_eq!(m, UnitMap::default());
    assert_eq!(m.available(3), 0);
    assert!(m.alloc(3).is_none());
}

#[test]
fn full_gpu_refuses_more() {
    let mut m = UnitMap::default();
    assert_eq!(m.alloc(1), Some(0));
    assert_eq!(m.alloc(8), None);
    assert_eq!(m.free_units(), 0);
}

#[test]
fn slice_translation_is_bounded() {
    let p = Pools::new(1024 * MIB, 64 * MIB, 8, 120).unwrap();
    let s = p.slice(2, 2);
    assert_eq!(s.vram_base, 64 * MIB + 2 * 120 * MIB);
    assert_eq!(s.vram_size, 240 * MIB);
    assert_eq!(s.vram_to_host(0, 4096), Some(s.vram_base));
    assert_eq!(s.vram_to_host(240 * MIB - 4, 4), Some(s.vram_base + 240 * MIB - 4));
    assert_eq!(s.vram_to_host(240 * MIB - 4, 8), None);
    assert_eq!(s.vram_to_host(u64::MAX, 2), None);
    assert_eq!(s.first_channel, 8 + 30);
    assert_eq!(s.channel_to_host(29), Some(8 + 59));
    assert_eq!(s.channel_to_host(30), None);
    assert_eq!(s.channel_from_host(8 + 30), Some(0));
    assert_eq!(s.channel_from_host(8 + 29), None);
    assert_eq!(s.channel_from_host(8 + 60), None);
}

proptest! {
    /// Any sequence of allocations and frees keeps slices disjoint, inside the pool, and
    /// `available` consistent with what `alloc` then does.
    #[test]
    fn allocations_never_overlap(ops in proptest::collection::vec((0usize..4, any::<bool>()), 1..64)) {
        let pools = Pools::new(1024 * MIB, 64 * MIB, 0, 120).unwrap();
        let mut m = UnitMap::default();
        let mut live: Vec<Slice> = Vec::new();
        for (share_idx, remove) in ops {
            let share = SHARES[share_idx];
            if remove && !live.is_empty() {
                let s = live.remove(share_idx % live.len());
                prop_assert!(m.free(s.first_unit, s.units));
                continue;
            }
            let avail = m.available(share);
            match m.alloc(share) {
                Some(first) => {
                    prop_assert!(avail > 0);
                    let s = pools.slice(first, UNITS / share);
                    prop_assert!(s.vram_base + s.vram_size <= 1024 * MIB);
                    prop_assert!(s.first_channel + s.channels <= 120);
                    for o in &live {
                        prop_assert!(s.vram_base + s.vram_size <= o.vram_base || o.vram_base + o.vram_size <= s.vram_base);
                        prop_assert!(s.first_channel + s.channels <= o.first_channel || o.first_channel + o.channels <= s.first_channel);
                    }
                    live.push(s);
                }
                None => prop_assert_eq!(avail, 0),
            }
            let used: u32 = live.iter().map(|s| s.units).sum();
            prop_assert_eq!(m.free_units(), UNITS - used);
        }
    }
}
