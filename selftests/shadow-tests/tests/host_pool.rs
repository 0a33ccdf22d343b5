use gpuvm_shadow_tests::host_pool::{HostPool, PAGE};
use proptest::prelude::*;

#[test]
fn first_fit_and_free() {
    let mut p = HostPool::new(0xa0000, 0xa0000 + 16 * PAGE);
    let a = p.alloc(1).unwrap();
    let b = p.alloc(3 * PAGE).unwrap();
    assert_eq!(a, 0xa0000);
    assert_eq!(b, 0xa0000 + PAGE);
    assert_eq!(p.free_bytes(), 12 * PAGE);
    assert!(p.free(a, 1));
    assert!(!p.free(a, 1), "double free refused");
    assert!(!p.free(b + 8, PAGE), "unaligned free refused");
    assert!(!p.free(0, PAGE), "free below the pool refused");
    assert_eq!(p.alloc(PAGE), Some(a), "hole reused");
    assert_eq!(p.alloc(13 * PAGE), None);
    assert_eq!(p.alloc(12 * PAGE), Some(0xa0000 + 4 * PAGE));
    assert_eq!(p.alloc(1), None);
}

proptest! {
    #[test]
    fn runs_never_overlap(ops in proptest::collection::vec((1u64..70_000, any::<bool>()), 1..80)) {
        let mut p = HostPool::new(0x12345, 0x12345 + 64 * PAGE);
        let mut live: Vec<(u64, u64)> = Vec::new();
        for (bytes, remove) in ops {
            if remove && !live.is_empty() {
                let (a, n) = live.remove(bytes as usize % live.len());
                prop_assert!(p.free(a, n));
                continue;
            }
            if let Some(a) = p.alloc(bytes) {
                prop_assert_eq!(a % PAGE, 0);
                let end = a + bytes.div_ceil(PAGE) * PAGE;
                prop_assert!(a >= 0x13000 && end <= 0x12345 + 64 * PAGE);
                for &(b, n) in &live {
                    prop_assert!(end <= b || b + n.div_ceil(PAGE) * PAGE <= a);
                }
                live.push((a, bytes));
            }
            let used: u64 = live.iter().map(|&(_, n)| n.div_ceil(PAGE) * PAGE).sum();
            prop_assert_eq!(p.free_bytes() + used, (0x12345 + 64 * PAGE - 0x13000) / PAGE * PAGE);
        }
    }
}
