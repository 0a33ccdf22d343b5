//! errno values with their names, so that messages say "EINVAL" rather than "22".

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Errno(pub i32);

const NAMES: &[(i32, &str)] = &[
    (libc::EPERM, "EPERM"),
    (libc::ENOENT, "ENOENT"),
    (libc::EINTR, "EINTR"),
    (libc::EIO, "EIO"),
    (libc::ENXIO, "ENXIO"),
    (libc::EBADF, "EBADF"),
    (libc::EAGAIN, "EAGAIN"),
    (libc::ENOMEM, "ENOMEM"),
    (libc::EACCES, "EACCES"),
    (libc::EFAULT, "EFAULT"),
    (libc::EBUSY, "EBUSY"),
    (libc::EEXIST, "EEXIST"),
    (libc::ENODEV, "ENODEV"),
    (libc::EINVAL, "EINVAL"),
    (libc::ENOTTY, "ENOTTY"),
    (libc::ENOSPC, "ENOSPC"),
    (libc::ERANGE, "ERANGE"),
    (libc::ENOSYS, "ENOSYS"),
    (libc::EOPNOTSUPP, "EOPNOTSUPP"),
    (libc::EUSERS, "EUSERS"),
    (libc::ETIMEDOUT, "ETIMEDOUT"),
];

impl Errno {
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const EFAULT: Errno = Errno(libc::EFAULT);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ENODEV: Errno = Errno(libc::ENODEV);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    pub const ENOTTY: Errno = Errno(libc::ENOTTY);

    /// The calling thread's errno.
    pub fn last() -> Errno {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    pub fn name(self) -> Option<&'static str> {
        NAMES.iter().find(|(n, _)| *n == self.0).map(|(_, s)| *s)
    }

    /// Parses "EEXIST" (any case) or a number.
    pub fn parse(s: &str) -> Option<Errno> {
        if let Ok(n) = s.parse::<i32>() {
            return Some(Errno(n));
        }
        NAMES.iter().find(|(_, name)| name.eq_ignore_ascii_case(s)).map(|(n, _)| Errno(*n))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({})", std::io::Error::from_raw_os_error(self.0)),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(Errno::parse("EEXIST"), Some(Errno::EEXIST));
        assert_eq!(Errno::parse("enospc"), Some(Errno::ENOSPC));
        assert_eq!(Errno::parse("22"), Some(Errno::EINVAL));
        assert_eq!(Errno::parse("ENOPE"), None);
        assert!(Errno::ENOTTY.to_string().starts_with("ENOTTY ("));
        assert_eq!(Errno(4095).to_string(), "errno 4095");
    }
}
