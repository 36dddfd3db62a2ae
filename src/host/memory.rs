//! A bound on the memory a script can make deployer use. Rhai's own limits (string length,
//! array and map sizes) are checked per value and miss aggregates: `m[k] = big_string` in a
//! loop builds a map of gigabytes until the allocator fails and the process aborts. The
//! binary counts the bytes it has allocated ([`CountingAlloc`]); the engine stops a script
//! with an error once the count passes [`limit`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Bytes currently allocated through [`CountingAlloc`] (0 when it is not the allocator).
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// The environment variable that sets the bound, e.g. `DEPLOYER_MAX_MEMORY=4GiB`.
pub const ENV_VAR: &str = "DEPLOYER_MAX_MEMORY";

/// The default bound: 2 GiB, or half of the machine's memory when that is less.
const DEFAULT_MAX: usize = 2 * 1024 * 1024 * 1024;

/// The system allocator, counting the bytes in use. Installed by the `deployer` binary.
pub struct CountingAlloc;

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is kept.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                IN_USE.fetch_add(new_size - layout.size(), Ordering::Relaxed);
            } else {
                IN_USE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// Returns the bytes the process has allocated and not freed.
pub fn in_use() -> usize {
    IN_USE.load(Ordering::Relaxed)
}

/// Returns the bound: `DEPLOYER_MAX_MEMORY` if set and valid, else the default.
pub fn limit() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var(ENV_VAR)
            .ok()
            .and_then(|v| parse_size(&v))
            .unwrap_or_else(default_limit)
    })
}

fn default_limit() -> usize {
    // SAFETY: sysconf only reads system configuration.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    match (usize::try_from(pages), usize::try_from(page)) {
        (Ok(n), Ok(p)) if n > 0 && p > 0 => DEFAULT_MAX.min(n.saturating_mul(p) / 2),
        _ => DEFAULT_MAX,
    }
}

/// Reads a size such as `512MiB`, `2GiB`, `64MB`, `1048576` (bytes).
pub fn parse_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult).filter(|n| *n > 0)
}

/// The message a script stopped by the bound ends with.
pub fn exceeded_message() -> String {
    format!(
        "the script made deployer use more than {} MiB of memory (a very large string, array or map), so it was stopped; keep large data in files, or raise the bound with {ENV_VAR}=4GiB",
        limit() / (1024 * 1024)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sizes() {
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("64 mb"), Some(64 << 20));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("5TB"), None);
    }
}
