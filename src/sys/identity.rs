//! Who and where a run happens: this machine's host name and the user's name.

/// Returns this machine's host name, or `unknown-host` if it cannot be read.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len() - 1` bytes; the last byte stays 0, so the
    // name is NUL-terminated even if the kernel truncated it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "unknown-host".to_string();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..len]).into_owned();
    if name.is_empty() {
        "unknown-host".to_string()
    } else {
        name
    }
}

/// Returns the user running this process: `$USER`, else `$LOGNAME`, else the numeric uid.
pub fn username() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                return v;
            }
        }
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    uid.to_string()
}

/// True when deployer runs as root (Chromium then needs `--no-sandbox`).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no failure mode and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_user_are_not_empty() {
        assert!(!hostname().is_empty());
        assert!(!hostname().contains('\0'));
        assert!(!username().is_empty());
    }
}
