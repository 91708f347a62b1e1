//! The allocator of Bulkhead's binaries: mimalloc, with its purge delay shortened.
//!
//! Loading and the engine allocate millions of small objects from two threads; glibc's
//! allocator spent a fifth of `check`'s time in malloc and free, hence mimalloc. This crate is
//! the workspace's only unsafe code: one call into mimalloc's C API, which has no safe wrapper.

pub use mimalloc::MiMalloc;
use std::ffi::c_long;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys names only some
/// options; the test below checks the number against the option's default).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the allocator before it goes back to the kernel, in ms.
/// mimalloc v3 waits 1 s. At 100k pods the agent frees the loader's parse trees while it
/// builds its index and compiles, and its peak RSS (what a DaemonSet's memory limit meets)
/// held both: 337-355 MiB with a directory of manifests, 259-264 MiB at 10 ms (mimalloc v2's
/// default), for about 0.7 s more system time (madvise and page faults) on that cold start.
/// The agent tunes it; the one-shot commands keep mimalloc's default, for speed.
pub const PURGE_DELAY_MS: c_long = 10;

/// Shortens the purge delay, unless `MIMALLOC_PURGE_DELAY` in the environment says otherwise
/// (mimalloc read it at start). Call it before starting threads: the option is a plain
/// variable. It takes effect from the call on.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        set_purge_delay(PURGE_DELAY_MS);
    }
}

/// The purge delay in effect, in ms.
pub fn purge_delay() -> c_long {
    #[allow(unsafe_code)]
    // SAFETY: reads a process-wide option of the allocator this process links.
    unsafe {
        libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY)
    }
}

fn set_purge_delay(ms: c_long) {
    #[allow(unsafe_code)]
    // SAFETY: sets a process-wide option with a plain store, so callers set it before they
    // start threads ([`tune`]); mimalloc reads it each time it considers purging.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option is named by its position in mimalloc's enum: a mimalloc that moved it would
    /// silently tune another option. Its v3 default (1000) and its neighbours' pin it.
    #[test]
    fn the_option_tuned_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay(), 1000, "mimalloc v3's default purge delay");
        }
        #[allow(unsafe_code)]
        // SAFETY: reads process-wide options.
        let (numa_nodes, os_tag) = unsafe {
            (
                libmimalloc_sys::mi_option_get(16),
                libmimalloc_sys::mi_option_get(18),
            )
        };
        assert_eq!((numa_nodes, os_tag), (0, 100), "use_numa_nodes and os_tag");
        set_purge_delay(PURGE_DELAY_MS);
        assert_eq!(purge_delay(), PURGE_DELAY_MS);
    }
}
