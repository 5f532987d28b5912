//! A throwaway network namespace for asking a firewall tool what it would store: one short-lived
//! thread calls `unshare(CLONE_NEWNET)`, so the commands it runs (as argv) inherit that thread's
//! empty namespace, which disappears with them. The host's own firewall is never involved. Used by
//! the iptables and nftables kinds to canonicalise desired rules.

/// Run `f` on a thread of its own inside a new, empty network namespace. `Err` when the namespace
/// cannot be made (no CAP_SYS_ADMIN, a seccomp filter): the caller decides what to fall back to.
pub fn scoped<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare on the calling thread only; it has no memory-safety preconditions.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(format!("cannot create a network namespace: {e}"));
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err("the namespace thread panicked".into()))
    })
}
