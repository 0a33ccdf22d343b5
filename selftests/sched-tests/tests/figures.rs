//! The simulated figures (`cargo test -p gpuvm-sched-tests --test figures -- --nocapture`
//! prints them; `cargo run --release -p gpuvm-sched-tests --example sched_table` prints the
//! 10 s version that `make bench-sched` will show).
use gpuvm_sched_tests::bench::table;

#[test]
fn table_covers_every_policy_and_vgpu_count() {
    let t = table(2, 1);
    println!("{t}");
    assert_eq!(t.lines().count(), 2 + 3 * 4);
    for name in ["fifo", "credit", "band"] {
        assert_eq!(t.lines().filter(|l| l.starts_with(&format!("| {name} |"))).count(), 4);
    }
}
