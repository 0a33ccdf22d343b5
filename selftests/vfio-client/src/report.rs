//! Check bookkeeping: every check counts, every failure prints one line naming what failed
//! (prefixed "FAIL"), and a run ends with "NAME: N checks, M failed".

use crate::errno::Errno;
use std::fmt::{Debug, LowerHex};

pub struct Report {
    name: String,
    checks: usize,
    fails: Vec<String>,
    quiet: bool,
}

impl Report {
    pub fn new(name: impl Into<String>) -> Report {
        Report { name: name.into(), checks: 0, fails: Vec::new(), quiet: false }
    }

    /// A report that does not print (the host unit tests inspect `failures()` instead).
    pub fn quiet(name: impl Into<String>) -> Report {
        Report { quiet: true, ..Report::new(name) }
    }

    pub fn fail(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        if !self.quiet {
            println!("FAIL {}: {msg}", self.name);
        }
        self.checks += 1;
        self.fails.push(msg);
    }

    pub fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) -> bool {
        if ok {
            self.checks += 1;
        } else {
            self.fail(msg());
        }
        ok
    }

    pub fn eq<T: PartialEq + Debug>(&mut self, what: &str, got: T, want: T) -> bool {
        let ok = got == want;
        self.check(ok, || format!("{what}: got {got:?}, want {want:?}"))
    }

    pub fn hex<T: PartialEq + LowerHex>(&mut self, what: &str, got: T, want: T) -> bool {
        let ok = got == want;
        self.check(ok, || format!("{what}: got {got:#x}, want {want:#x}"))
    }

    /// A step that must succeed; its value, or None after recording the failure.
    pub fn ok<T, E: std::fmt::Display>(&mut self, what: &str, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => {
                self.checks += 1;
                Some(v)
            }
            Err(e) => {
                self.fail(format!("{what}: {e}"));
                None
            }
        }
    }

    /// A call that must fail with exactly `want`.
    pub fn errno<T: Debug>(&mut self, what: &str, got: Result<T, Errno>, want: Errno) -> bool {
        match got {
            Err(e) if e == want => self.check(true, String::new),
            Err(e) => self.check(false, || format!("{what}: failed with {e}, want {want}")),
            Ok(v) => self.check(false, || format!("{what}: succeeded ({v:?}), want {want}")),
        }
    }

    pub fn failures(&self) -> &[String] {
        &self.fails
    }

    pub fn checks(&self) -> usize {
        self.checks
    }

    /// Prints the summary line; Err when anything failed.
    pub fn finish(self) -> Result<(), String> {
        let line = format!("{}: {} checks, {} failed", self.name, self.checks, self.fails.len());
        if !self.quiet {
            println!("{line}");
        }
        if self.fails.is_empty() {
            Ok(())
        } else {
            Err(format!("{line}; first: {}", self.fails[0]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_fails() {
        let mut r = Report::quiet("t");
        r.eq("a", 1, 1);
        r.hex("b", 0x10u32, 0x11);
        r.errno::<()>("c", Err(Errno::EINVAL), Errno::EINVAL);
        r.errno("d", Ok(3), Errno::EINVAL);
        r.errno::<()>("e", Err(Errno::ENOTTY), Errno::EINVAL);
        assert_eq!(r.ok::<u8, String>("f", Err("boom".into())), None);
        assert_eq!(r.checks(), 6);
        assert_eq!(r.failures().len(), 4);
        assert_eq!(r.failures()[0], "b: got 0x10, want 0x11");
        assert!(r.failures()[1].contains("succeeded (3)"));
        assert!(r.failures()[2].starts_with("e: failed with ENOTTY"));
        assert!(r.finish().unwrap_err().contains("6 checks, 4 failed"));
    }
}
