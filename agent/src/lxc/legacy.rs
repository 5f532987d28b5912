//! Legacy (LXC 1.x/2.0) keys and their modern names, as `lxc-update-config` translates them.
//! LXC 2.1 and later refuse a config that holds a legacy key, so on a modern LXC each one is
//! drift, and apply renames it in place, keeping the rest of the line (spacing, quoting) as written.

use super::config::{Config, Line};

/// Keys renamed one for one.
const RENAMED: [(&str, &str); 21] = [
    ("lxc.id_map", "lxc.idmap"),
    ("lxc.pts", "lxc.pty.max"),
    ("lxc.tty", "lxc.tty.max"),
    ("lxc.devttydir", "lxc.tty.dir"),
    ("lxc.aa_profile", "lxc.apparmor.profile"),
    ("lxc.aa_allow_incomplete", "lxc.apparmor.allow_incomplete"),
    ("lxc.se_context", "lxc.selinux.context"),
    ("lxc.mount", "lxc.mount.fstab"),
    ("lxc.utsname", "lxc.uts.name"),
    ("lxc.seccomp", "lxc.seccomp.profile"),
    ("lxc.console", "lxc.console.path"),
    ("lxc.haltsignal", "lxc.signal.halt"),
    ("lxc.rebootsignal", "lxc.signal.reboot"),
    ("lxc.stopsignal", "lxc.signal.stop"),
    ("lxc.syslog", "lxc.log.syslog"),
    ("lxc.loglevel", "lxc.log.level"),
    ("lxc.logfile", "lxc.log.file"),
    ("lxc.init_cmd", "lxc.init.cmd"),
    ("lxc.init_uid", "lxc.init.uid"),
    ("lxc.init_gid", "lxc.init.gid"),
    ("lxc.network", "lxc.net"),
];

/// Keys that modern LXC has no use for; `lxc-update-config` drops them.
const DROPPED: [&str; 3] = ["lxc.rootfs.backend", "lxc.pivotdir", "lxc.kmsg"];

/// Whether LXC 2.1 and later refuse this key.
pub fn is_legacy_key(key: &str) -> bool {
    RENAMED.iter().any(|(old, _)| *old == key)
        || DROPPED.contains(&key)
        || key == "lxc.rootfs"
        || key.starts_with("lxc.limit.")
        || key.starts_with("lxc.network.")
}

/// The modern name of a legacy network sub-key: the address keys grew an `.address`.
fn net_subkey(rest: &str) -> String {
    match rest {
        "ipv4" => "ipv4.address".into(),
        "ipv6" => "ipv6.address".into(),
        other => other.into(),
    }
}

/// The line with its key re-spelled and everything else kept.
fn respell(line: &Line, new_key: &str) -> Line {
    let entry = line.entry.as_ref().expect("only entries are re-spelled");
    let (before, after) = line.raw.split_once('=').expect("an entry has '='");
    let lead = &before[..before.len() - before.trim_start().len()];
    let gap = &before.trim_start()[entry.key.len()..];
    let mut e = entry.clone();
    e.key = new_key.to_string();
    Line { raw: format!("{lead}{new_key}{gap}={after}"), entry: Some(e) }
}

/// The config with every legacy key translated, and the lines that changed (`- old`, `+ new`);
/// `None` when there is nothing legacy in it.
pub fn migrate(cfg: &Config) -> Option<(Config, Vec<String>)> {
    if !cfg.entries().any(|(_, e)| is_legacy_key(&e.key)) {
        return None;
    }
    let backend = cfg.last("lxc.rootfs.backend").map(str::to_string);
    let mut out = Config::default();
    let mut diff = Vec::new();
    // Unindexed `lxc.network.*` keys belong to the interface the last `lxc.network.type` began.
    let mut net: Option<usize> = None;
    for line in &cfg.lines {
        let Some(e) = line.entry.as_ref().filter(|e| is_legacy_key(&e.key)) else {
            out.lines.push(line.clone());
            continue;
        };
        let new = if DROPPED.contains(&e.key.as_str()) {
            None
        } else if e.key == "lxc.rootfs" {
            let value = match backend.as_deref() {
                Some(b) if b != "dir" && !e.value.starts_with(&format!("{b}:")) => format!("{b}:{}", e.value),
                _ => e.value.clone(),
            };
            Some(Line::new("lxc.rootfs.path", &value))
        } else if let Some(rest) = e.key.strip_prefix("lxc.limit.") {
            Some(respell(line, &format!("lxc.prlimit.{rest}")))
        } else if let Some(rest) = e.key.strip_prefix("lxc.network.") {
            let (idx, sub) = match rest.split_once('.') {
                Some((n, sub)) if n.bytes().all(|b| b.is_ascii_digit()) => (n.parse().unwrap_or(0), sub.to_string()),
                _ if rest.bytes().all(|b| b.is_ascii_digit()) => (rest.parse().unwrap_or(0), String::new()),
                _ => {
                    if rest == "type" {
                        net = Some(net.map_or(0, |n| n + 1));
                    }
                    (net.unwrap_or(0), rest.to_string())
                }
            };
            let key = if sub.is_empty() { format!("lxc.net.{idx}") } else { format!("lxc.net.{idx}.{}", net_subkey(&sub)) };
            Some(respell(line, &key))
        } else {
            let new = RENAMED.iter().find(|(old, _)| *old == e.key).map(|(_, new)| *new).expect("a renamed key");
            Some(respell(line, new))
        };
        diff.push(format!("- {}", line.shown()));
        if let Some(n) = new {
            diff.push(format!("+ {}", n.shown()));
            out.lines.push(n);
        }
    }
    Some((out, diff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_like_lxc_update_config() {
        let old = "# net\nlxc.network.type = veth\nlxc.network.link = br0\nlxc.network.ipv4 = 10.0.0.2/24\n\
                   lxc.network.ipv4.gateway = 10.0.0.1\nlxc.network.type=empty\nlxc.utsname = \"a\"\n\
                   lxc.rootfs = /srv/a\nlxc.rootfs.backend = dir\nlxc.id_map = u 0 1 2\nlxc.limit.nofile = 10\n";
        let (new, diff) = migrate(&Config::parse(old)).unwrap();
        assert_eq!(
            new.text(),
            "# net\nlxc.net.0.type = veth\nlxc.net.0.link = br0\nlxc.net.0.ipv4.address = 10.0.0.2/24\n\
             lxc.net.0.ipv4.gateway = 10.0.0.1\nlxc.net.1.type=empty\nlxc.uts.name = \"a\"\n\
             lxc.rootfs.path = /srv/a\nlxc.idmap = u 0 1 2\nlxc.prlimit.nofile = 10\n"
        );
        assert!(diff.contains(&"- lxc.rootfs.backend = dir".to_string()), "{diff:?}");
        assert!(migrate(&new).is_none());
    }

    #[test]
    fn modern_keys_that_share_a_prefix_are_not_legacy() {
        for k in ["lxc.tty.max", "lxc.mount.entry", "lxc.console.path", "lxc.rootfs.path", "lxc.net.0.type", "lxc.seccomp.profile"] {
            assert!(!is_legacy_key(k), "{k}");
        }
    }
}
