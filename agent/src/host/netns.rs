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

/// Every interface of every network namespace a process is in, by its ifindex: whether IPv6 is on
/// for it (its own `net.ipv6.conf.IF.disable_ipv6` is 0). A host port of a bridge that is one end
/// of a veth pair names the other end by ifindex (`/sys/class/net/PORT/iflink`); the other end is a
/// container's `eth0`, inside the container's namespace. That namespace is entered by a thread of
/// its own (`setns`), which reads `/proc/thread-self/net/dev_mcast` and `igmp` (ifindex and name
/// of every interface that is up) and `/proc/sys/net/ipv6/conf/IF/disable_ipv6`, both of which the
/// kernel answers for the reading thread's namespace. Several namespaces may use one ifindex: each
/// is listed. `None` when the namespaces cannot be read (no `/proc`, no CAP_SYS_ADMIN).
///
/// Only for the real root: under `--root` the host's processes are not the planted tree's.
pub fn ipv6_by_ifindex() -> Option<std::collections::HashMap<u32, Vec<bool>>> {
    use std::collections::{HashMap, HashSet};
    use std::os::fd::AsRawFd;
    let mut seen = HashSet::new();
    let mut out: HashMap<u32, Vec<bool>> = HashMap::new();
    let mut entered = 0usize;
    for entry in std::fs::read_dir("/proc").ok()? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|s| s.bytes().all(|b| b.is_ascii_digit())) else { continue };
        let ns = format!("/proc/{pid}/ns/net");
        let Ok(id) = std::fs::read_link(&ns) else { continue };
        if !seen.insert(id) {
            continue;
        }
        let Ok(file) = std::fs::File::open(&ns) else { continue };
        let fd = file.as_raw_fd();
        let found = std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on the calling thread only, with an fd that `file` keeps open.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                    return None;
                }
                Some(interfaces_here())
            })
            .join()
            .ok()
            .flatten()
        });
        let Some(found) = found else { continue };
        entered += 1;
        for (index, v6) in found {
            out.entry(index).or_default().push(v6);
        }
    }
    (entered > 0).then_some(out)
}

/// The interfaces of the calling thread's network namespace that are up, with IPv6 on or off.
fn interfaces_here() -> Vec<(u32, bool)> {
    let mut names: std::collections::BTreeMap<u32, String> = std::collections::BTreeMap::new();
    // dev_mcast: "IDX NAME USERS GLOBAL ADDR"; igmp: "IDX\tNAME ..." lines starting with a digit.
    for file in ["/proc/thread-self/net/dev_mcast", "/proc/thread-self/net/igmp"] {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(idx), Some(name)) = (f.next(), f.next()) else { continue };
            if let Ok(idx) = idx.parse::<u32>() {
                names.entry(idx).or_insert_with(|| name.trim_end_matches(':').to_string());
            }
        }
    }
    names
        .into_iter()
        .filter(|(_, n)| !n.contains('/') && n != "." && n != "..")
        .map(|(idx, n)| {
            let v6 = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{n}/disable_ipv6")).is_ok_and(|v| v.trim() == "0");
            (idx, v6)
        })
        .collect()
}
