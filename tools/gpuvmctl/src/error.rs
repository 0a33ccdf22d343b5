//! Errors as the user should see them: what was attempted, on which sysfs path, the errno by
//! name, what it means for that file, and the module's own message from the kernel log.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The sysfs file a write went to; it decides what an errno means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knob {
    Create,
    Remove,
    Weight,
    Policy,
    Period,
    BandWait,
    /// Reading any file.
    Read,
}

#[derive(Debug)]
pub enum Error {
    /// A failed read or write of a sysfs file.
    Io {
        knob: Knob,
        /// "writing '0' to", "reading".
        op: String,
        path: PathBuf,
        err: io::Error,
        /// What gpuvm.ko logged while the write failed (from /dev/kmsg), if anything.
        kernel: Vec<String>,
    },
    /// Anything else that stops a command (no such vGPU, no GPU, ...).
    Msg(String),
    /// Bad command line; exits 2.
    Usage(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn read(path: &Path, err: io::Error) -> Self {
        Error::Io { knob: Knob::Read, op: "reading".into(), path: path.to_owned(), err, kernel: Vec::new() }
    }

    pub fn write(knob: Knob, value: &str, path: &Path, err: io::Error, kernel: Vec<String>) -> Self {
        Error::Io { knob, op: format!("writing '{value}' to"), path: path.to_owned(), err, kernel }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { knob, op, path, err, kernel } => {
                write!(f, "{op} {}: ", path.display())?;
                match err.raw_os_error() {
                    Some(e) => write!(f, "{} ({})", errno_name(e), strerror(err))?,
                    None => write!(f, "{err}")?,
                }
                if let Some(h) = err.raw_os_error().and_then(|e| hint(*knob, e)) {
                    write!(f, ": {h}")?;
                }
                for k in kernel {
                    write!(f, "\n  kernel: {k}")?;
                }
                Ok(())
            }
            Error::Msg(m) | Error::Usage(m) => f.write_str(m),
        }
    }
}

/// The symbolic name of the errnos sysfs writes and reads return.
pub fn errno_name(e: i32) -> String {
    let n = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ERANGE => "ERANGE",
        libc::ENOTSUP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => return format!("errno {e}"),
    };
    n.to_string()
}

/// The C library's text without Rust's " (os error N)" suffix.
fn strerror(err: &io::Error) -> String {
    let s = err.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// What an errno from a gpuvm sysfs file means and what to do (the README's error table).
pub fn hint(knob: Knob, e: i32) -> Option<&'static str> {
    Some(match (knob, e) {
        (_, libc::EACCES | libc::EPERM) => "needs root",
        (Knob::Create, libc::EEXIST) => "a vGPU with this UUID exists already (on this or another GPU); pick another UUID",
        (Knob::Create, libc::ENOSPC) => {
            "no aligned run of free pool units for this type (its available_instances is 0); remove a vGPU or choose a smaller share (larger N)"
        }
        (Knob::Create, libc::EINVAL) => "not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
        (Knob::Create, libc::ENOMEM) => "the kernel could not allocate the vGPU's state or its shadow memory",
        (Knob::Create | Knob::Weight | Knob::Remove, libc::ENOENT) => {
            "no such GPU, type or vGPU: `gpuvmctl list` shows what exists (is gpuvm.ko loaded?)"
        }
        (Knob::Weight, libc::EINVAL) => "a weight is an integer 1..100",
        (Knob::Policy, libc::EINVAL) => "a policy is one of the names sched_policy lists (fifo, credit, band)",
        (Knob::Period | Knob::BandWait, libc::EINVAL) => "not a number in the accepted range (the kernel line below, or uapi/sysfs-gpuvm)",
        (Knob::Policy | Knob::Period | Knob::BandWait, libc::ENOENT) => {
            "this gpuvm.ko has no scheduler knobs (sched_policy, sched_period_us, band_wait_us)"
        }
        (_, libc::EBUSY) => "busy: the device is in use; close the VM that has it open and retry",
        (_, libc::ENODEV) => "the device went away (removed, or its GPU unbound from gpuvm)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_error_names_errno_path_and_meaning() {
        let e = Error::write(
            Knob::Weight,
            "0",
            Path::new("/sys/bus/mdev/devices/u/gpuvm/weight"),
            io::Error::from_raw_os_error(libc::EINVAL),
            vec!["gpuvm 0000:00:04.0: weight: 0 is outside 1..=100 (EINVAL)".into()],
        );
        assert_eq!(
            e.to_string(),
            "writing '0' to /sys/bus/mdev/devices/u/gpuvm/weight: EINVAL (Invalid argument): a weight is an integer 1..100\n  kernel: gpuvm 0000:00:04.0: weight: 0 is outside 1..=100 (EINVAL)"
        );
    }

    #[test]
    fn unknown_errno_has_no_hint() {
        let e = Error::write(Knob::Remove, "1", Path::new("/x"), io::Error::from_raw_os_error(libc::ERANGE), vec![]);
        assert_eq!(e.to_string(), "writing '1' to /x: ERANGE (Numerical result out of range)");
        assert_eq!(errno_name(200), "errno 200");
    }
}
