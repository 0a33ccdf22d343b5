//! Prints the scheduler's simulated figures per policy and vGPU count (`make bench-sched`).
//! Arguments: simulated seconds per scenario (default 10), seed (default 1).
fn main() {
    let mut args = std::env::args().skip(1);
    let secs = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    print!("{}", gpuvm_sched_tests::bench::table(secs, seed));
}
