// SPDX-License-Identifier: GPL-2.0
//! Test-only module for the VM harness self-test: its init triggers one kernel WARN so the
//! harness can prove that its console scan catches warnings. Never loaded outside that test.

use kernel::prelude::*;

module! {
    type: WarnTest,
    name: "gpuvm_warn_test",
    authors: ["gpuvm developers"],
    description: "Triggers one WARN to self-test the gpuvm VM harness",
    license: "GPL",
}

struct WarnTest;

impl kernel::Module for WarnTest {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("gpuvm_warn_test: triggering a WARN on purpose\n");
        kernel::warn_on!(true);
        Ok(WarnTest)
    }
}
