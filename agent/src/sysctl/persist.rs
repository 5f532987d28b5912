//! The persisted sysctl file, and the boot-time precedence that can silently undo it.
//!
//! At boot, systemd-sysctl and `sysctl --system` read `*.conf` from these directories, a file in
//! an earlier directory hiding a same-named one in a later directory, all of them in file-name
//! order, and `/etc/sysctl.conf` last. A later file that sets one of our keys to another value
//! wins, and the value reverts on reboot: that is reported as drift naming the file.

use crate::error::HostError;
use crate::host::{limits, Host};
use crate::report::{ResourceReport, Status};
use crate::state::sysctl::{values_equal, SysctlState};

const DIRS: [&str; 5] = ["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"];
const SYSCTL_CONF: &str = "/etc/sysctl.conf";

const HEADER: &str = "# Managed by hostguard: rewritten on every apply, local edits are lost.\n\
# Put settings of your own in a file that sorts before this one.\n";

/// The persisted file's content: a header, then `key = value` lines sorted by key. Keys that
/// may be absent carry sysctl's `-` prefix, so boot does not fail on a host without them.
pub fn render(desired: &SysctlState) -> String {
    let mut lines: Vec<String> = desired
        .values
        .iter()
        .map(|(k, v)| {
            let line = format!("{}{} = {}", if desired.ignore_missing { "-" } else { "" }, k.conf_name(), v.normalized());
            // An empty value is `key =`: systemd-sysctl and sysctl -p write it as the empty string.
            line.trim_end().to_string()
        })
        .collect();
    lines.sort();
    let mut out = String::from(HEADER);
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// A line in another file that wins over ours at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOverride {
    pub key: String,
    pub file: String,
    pub line: usize,
    pub value: String,
    pub ours: String,
}

impl std::fmt::Display for BootOverride {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} would revert at boot: {}:{} sets {} (read after the persisted file, so it wins over {})",
            self.key, self.file, self.line, self.value, self.ours
        )
    }
}

#[derive(Debug)]
pub struct Plan {
    path: String,
    content: String,
    current: Option<String>,
    overrides: Vec<BootOverride>,
    /// A file that must be read to plan this one is not a file hostguard reads (a FIFO, a
    /// device, an oversized file): the resource is failed, and apply does not write.
    unreadable: Option<HostError>,
}

pub fn plan(host: &Host, path: &str, desired: &SysctlState) -> Result<Plan, HostError> {
    let content = render(desired);
    let mut plan = Plan { path: path.to_string(), content, current: None, overrides: Vec::new(), unreadable: None };
    let read = if host.is_symlink(path) {
        // Reported as drift; apply refuses to write through it.
        Ok(Some(String::new()))
    } else {
        host.read_optional_bounded(path, limits::SYSCTL_FILE)
    };
    let found = read.and_then(|current| {
        plan.current = current;
        find_overrides(host, path, desired)
    });
    match found {
        Ok(overrides) => plan.overrides = overrides,
        Err(e) if e.is_unreadable_kind() => plan.unreadable = Some(e),
        Err(e) => return Err(e),
    }
    Ok(plan)
}

/// Every file systemd-sysctl and `sysctl --system` read at boot, in the order they read them (so
/// the last line setting a key wins). Used by `audit` to find settings that a later file undoes.
pub fn boot_files(host: &Host) -> Result<Vec<String>, HostError> {
    later_files(host, "")
}

/// Files read after `ours` at boot, in the order they are read.
fn later_files(host: &Host, ours: &str) -> Result<Vec<String>, HostError> {
    let our_name = ours.rsplit('/').next().unwrap_or(ours);
    let mut by_name = std::collections::BTreeMap::new();
    for dir in DIRS {
        for name in host.list_dir(dir)? {
            if name.ends_with(".conf") {
                by_name.entry(name.clone()).or_insert_with(|| format!("{dir}/{name}"));
            }
        }
    }
    let mut files: Vec<String> = by_name
        .into_iter()
        .filter(|(name, _)| name.as_str() > our_name)
        .map(|(_, path)| path)
        .collect();
    files.push(SYSCTL_CONF.to_string());
    Ok(files)
}

/// The lines after ours that decide a key at boot, by systemd-sysctl's rule: a file's
/// assignment of a key replaces any earlier one, so only the last explicit line for a key counts
/// (a later file that differs is undone by a still later one that sets our value back), and a
/// glob (`net.ipv4.conf.*.rp_filter`) never sets a key that some file names explicitly, as ours
/// does. So a key reverts at boot exactly when the last later line naming it holds another value.
fn find_overrides(host: &Host, ours: &str, desired: &SysctlState) -> Result<Vec<BootOverride>, HostError> {
    let mut last: std::collections::BTreeMap<&str, BootOverride> = std::collections::BTreeMap::new();
    for file in later_files(host, ours)? {
        let text = match host.read_bounded(&file, limits::SYSCTL_FILE) {
            Ok(t) => t,
            Err(e) if e.is_not_found() => continue,
            // A later file we cannot read could hold anything: say so rather than guess.
            Err(e) => return Err(e),
        };
        for (n, line) in text.lines().enumerate() {
            let Some((pattern, value)) = parse_line(line) else { continue };
            for (key, want) in &desired.values {
                if pattern == key.rel_path() {
                    let line = BootOverride { key: key.name().to_string(), file: file.clone(), line: n + 1, value: value.clone(), ours: want.normalized() };
                    last.insert(key.name(), line);
                }
            }
        }
    }
    Ok(last.into_values().filter(|o| !values_equal(&o.value, &o.ours)).collect())
}

/// `[-]key = value` -> (key as a `/` path, value). Comments (`#`, `;`) and blanks are None.
pub fn parse_line(line: &str) -> Option<(String, String)> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
        return None;
    }
    let (k, v) = t.split_once('=')?;
    let k = k.trim().trim_start_matches('-').trim();
    let path = if k.contains('/') { k.trim_matches('/').to_string() } else { k.replace('.', "/") };
    Some((path, v.trim().to_string()))
}

/// systemd-sysctl's globs: `*` stands for any run of characters within one component.
/// Component by component, each with the two-pointer wildcard match that backtracks only to the
/// last `*`: time O(pattern x path). (A recursive match was exponential in the number of stars;
/// the fuzzer found a sysctl.d line that hung a run.)
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let (p, s): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == s.len() && p.iter().zip(&s).all(|(p, s)| component_match(p.as_bytes(), s.as_bytes()))
}

fn component_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    // Where the last `*` was, and where in `s` its match now ends.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            star = Some((sp, ss + 1));
            pi = sp + 1;
            si = ss + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl Plan {
    fn id(&self) -> String {
        format!("sysctl-file{}", self.path)
    }

    fn file_in_sync(&self) -> bool {
        self.current.as_deref() == Some(self.content.as_str())
    }

    pub fn report(&self) -> ResourceReport {
        if let Some(e) = &self.unreadable {
            return ResourceReport::new(super::KIND, self.id(), Status::Failed).message(format!(
                "{e}; {} is not checked or written until it is",
                self.path
            ));
        }
        let mut diff = line_diff(self.current.as_deref().unwrap_or(""), &self.content);
        diff.extend(self.overrides.iter().map(|o| format!("! {o}")));
        let (status, message) = match (self.file_in_sync(), self.overrides.is_empty()) {
            (true, true) => (Status::InSync, String::new()),
            (false, true) if self.current.is_none() => (Status::Drift, format!("{} does not exist", self.path)),
            (false, true) => (Status::Drift, format!("{} differs from the document", self.path)),
            // Apply writes the file and fails it all the same, so plan says failed already, with
            // apply's message (SPEC §2: a plan is honest); the diff shows what apply writes.
            (_, false) => (Status::Failed, overridden(&self.overrides)),
        };
        ResourceReport::new(super::KIND, self.id(), status).message(message).with_diff(diff)
    }

    pub fn apply(self, host: &Host) -> ResourceReport {
        let before = self.report();
        if before.status == Status::InSync {
            // The sweep a write does, for a file that needs none (after a power cut mid-write).
            host.remove_stale_temps_beside(&self.path);
        }
        if before.status == Status::InSync || self.unreadable.is_some() {
            return before;
        }
        let wrote = match host.write_file(&self.path, self.content.as_bytes()) {
            Ok(w) => w,
            Err(e) => return before.after(Status::Failed, format!("could not write {}: {e}", self.path)),
        };
        match host.read_optional_bounded(&self.path, limits::SYSCTL_FILE) {
            Ok(Some(now)) if now == self.content => {}
            Ok(_) => return before.after(Status::Failed, format!("wrote {} but it does not read back as written", self.path)),
            Err(e) => return before.after(Status::Failed, format!("wrote {} but could not read it back: {e}", self.path)),
        }
        if !self.overrides.is_empty() {
            // hostguard does not edit files it does not own: the operator decides which wins.
            return before.after(Status::Failed, overridden(&self.overrides));
        }
        let msg = if wrote { format!("wrote {}", self.path) } else { String::new() };
        before.after(Status::Changed, msg)
    }
}

/// Why a persisted file whose keys later boot files override is failed, in plan and apply alike.
fn overridden(overrides: &[BootOverride]) -> String {
    let lines = overrides.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    format!("{lines}; change or remove those lines, hostguard does not edit files it does not own")
}

/// `- line` for lines only in `old`, `+ line` for lines only in `new` (both sets are small).
fn line_diff(old: &str, new: &str) -> Vec<String> {
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.lines().collect();
    let mut out: Vec<String> = old_lines.iter().filter(|l| !new_lines.contains(l)).map(|l| format!("- {l}")).collect();
    out.extend(new_lines.iter().filter(|l| !old_lines.contains(l)).map(|l| format!("+ {l}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::sysctl::{SysctlKey, SysctlValue};

    fn state(pairs: &[(&str, &str)], ignore_missing: bool) -> SysctlState {
        SysctlState {
            persist: Some("/etc/sysctl.d/60-hostguard.conf".into()),
            ignore_missing,
            values: pairs
                .iter()
                .map(|(k, v)| (SysctlKey::parse(k).unwrap(), SysctlValue::from_json(&serde_json::json!(v)).unwrap()))
                .collect(),
        }
    }

    #[test]
    fn render_is_sorted_with_a_managed_header() {
        let s = state(&[("vm.swappiness", "10"), ("net.ipv4.ip_local_port_range", "32768   60999")], false);
        let text = render(&s);
        assert!(text.starts_with("# Managed by hostguard"));
        assert!(text.ends_with("net.ipv4.ip_local_port_range = 32768 60999\nvm.swappiness = 10\n"), "{text}");
    }

    #[test]
    fn ignore_missing_keys_are_rendered_with_a_dash() {
        let text = render(&state(&[("vm.swappiness", "10")], true));
        assert!(text.contains("\n-vm.swappiness = 10\n"), "{text}");
    }

    #[test]
    fn parse_line_handles_both_separators_and_comments() {
        assert_eq!(parse_line(" -vm.swappiness=60 "), Some(("vm/swappiness".into(), "60".into())));
        assert_eq!(parse_line("net/ipv4/conf/eth0.100/forwarding = 1"), Some(("net/ipv4/conf/eth0.100/forwarding".into(), "1".into())));
        assert_eq!(parse_line("# vm.swappiness = 1"), None);
        assert_eq!(parse_line("; x = 1"), None);
        assert_eq!(parse_line("garbage"), None);
    }

    #[test]
    fn globs_stay_within_a_component() {
        assert!(glob_match("net/ipv4/conf/*/rp_filter", "net/ipv4/conf/all/rp_filter"));
        assert!(!glob_match("net/ipv4/conf/*/rp_filter", "net/ipv4/conf/a/b/rp_filter"));
        assert!(glob_match("vm/swappiness", "vm/swappiness"));
    }

    #[test]
    fn only_later_files_and_sysctl_conf_override() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        h.write_file("/etc/sysctl.d/10-early.conf", b"vm.swappiness = 60\n").unwrap();
        h.write_file("/usr/lib/sysctl.d/70-later.conf", b"vm.swappiness = 30\n").unwrap();
        // Same name in /etc hides the /usr/lib file.
        h.write_file("/usr/lib/sysctl.d/80-hidden.conf", b"vm.swappiness = 1\n").unwrap();
        h.write_file("/etc/sysctl.d/80-hidden.conf", b"# nothing\n").unwrap();
        h.write_file("/etc/sysctl.conf", b"vm.swappiness=10\nnet.ipv4.ip_forward = 0\n").unwrap();
        let s = state(&[("vm.swappiness", "10"), ("net.ipv4.ip_forward", "1")], false);
        let found = find_overrides(&h, "/etc/sysctl.d/60-hostguard.conf", &s).unwrap();
        let files: Vec<_> = found.iter().map(|o| (o.file.as_str(), o.key.as_str())).collect();
        // 70-later.conf's swappiness = 30 is undone by /etc/sysctl.conf's 10, read last.
        assert_eq!(files, vec![("/etc/sysctl.conf", "net.ipv4.ip_forward")]);
    }

    /// Issue 14: a later file's differing line was flagged even when a still later line put our
    /// value back, which is what boot ends with.
    #[test]
    fn a_later_line_that_puts_our_value_back_is_not_an_override() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        h.write_file("/usr/lib/sysctl.d/70-vendor.conf", b"vm.swappiness = 30\nnet.ipv4.ip_forward = 0\n").unwrap();
        h.write_file("/etc/sysctl.d/80-site.conf", b"vm.swappiness=10\n").unwrap();
        h.write_file("/etc/sysctl.d/90-later.conf", b"net.ipv4.ip_forward = 0\nnet.ipv4.ip_forward = 1\n").unwrap();
        let s = state(&[("vm.swappiness", "10"), ("net.ipv4.ip_forward", "1")], false);
        assert_eq!(find_overrides(&h, "/etc/sysctl.d/60-hostguard.conf", &s).unwrap(), vec![]);
        // The last one decides, in the other direction too.
        h.write_file("/etc/sysctl.conf", b"vm.swappiness = 0x3c\n").unwrap();
        let found = find_overrides(&h, "/etc/sysctl.d/60-hostguard.conf", &s).unwrap();
        assert_eq!(found.iter().map(|o| (o.file.as_str(), o.line)).collect::<Vec<_>>(), vec![("/etc/sysctl.conf", 1)]);
        // The same number in another base is the same value, as the kernel reads it.
        h.write_file("/etc/sysctl.conf", b"vm.swappiness = 0xa\n").unwrap();
        assert_eq!(find_overrides(&h, "/etc/sysctl.d/60-hostguard.conf", &s).unwrap(), vec![]);
    }

    /// systemd-sysctl: a glob does not set a key some file names explicitly (ours does).
    #[test]
    fn a_later_glob_does_not_override_our_explicit_key() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        h.write_file("/usr/lib/sysctl.d/99-glob.conf", b"net.ipv4.conf.*.rp_filter = 2\n").unwrap();
        let s = state(&[("net.ipv4.conf.all.rp_filter", "1")], false);
        assert_eq!(find_overrides(&h, "/etc/sysctl.d/60-hostguard.conf", &s).unwrap(), vec![]);
    }
}
