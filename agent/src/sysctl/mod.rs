//! The `sysctl` resource kind: runtime values under `/proc/sys`, and one persisted file.
//!
//! Every key is one resource (`sysctl/vm.swappiness`); the persisted file is one more
//! (`sysctl-file/etc/sysctl.d/60-hostguard.conf`).

mod persist;


use crate::kind::{Ctx, Resources};
use crate::error::{HostError, Result};
use crate::host::Host;
use crate::report::{ResourceReport, Status};
use crate::state::sysctl::{kernel_integer, normalize, SysctlKey, SysctlState, SysctlValue};

pub use persist::{boot_files, glob_match, parse_line, render, BootOverride};

const KIND: &str = "sysctl";

/// What one key holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Current {
    Value(String),
    Missing,
    /// `/proc/sys/KEY` is not a file hostguard reads (a FIFO or a device under a fake root):
    /// failed in plan and apply, naming the path and what it is.
    Unreadable(String),
}

#[derive(Debug)]
struct Key {
    key: SysctlKey,
    desired: SysctlValue,
    current: Current,
    /// Why apply would certainly fail, known before writing (SPEC section 2: an honest plan):
    /// the same message in plan and apply, and apply does not try.
    refused: Option<String>,
}

#[derive(Debug)]
pub struct Plan {
    ignore_missing: bool,
    keys: Vec<Key>,
    persist: Option<persist::Plan>,
}

fn proc_path(key: &SysctlKey) -> String {
    format!("/proc/sys/{}", key.rel_path())
}

fn read_key(host: &Host, key: &SysctlKey) -> Result<Current, HostError> {
    match host.read_to_string(proc_path(key)) {
        Ok(s) => Ok(Current::Value(normalize(&s))),
        Err(e) if e.is_not_found() => Ok(Current::Missing),
        Err(e) if e.is_unreadable_kind() => Ok(Current::Unreadable(format!("{e}; {key} is not checked or written until it is"))),
        Err(e) => Err(e),
    }
}

pub fn plan(ctx: &Ctx, desired: &SysctlState) -> Result<Plan> {
    let mut keys = Vec::new();
    for (key, value) in &desired.values {
        let current = read_key(ctx.host, key)?;
        let refused = refusal(ctx.host, key, value, &current, desired.ignore_missing);
        keys.push(Key { key: key.clone(), desired: value.clone(), current, refused });
    }
    // A key the kernel lacks or would refuse is never persisted: systemd-sysctl would complain
    // about it at every boot, and the file would promise a value the host cannot hold.
    let persisted = SysctlState {
        values: desired
            .values
            .iter()
            .zip(&keys)
            .filter(|(_, k)| k.refused.is_none() && matches!(k.current, Current::Value(_)))
            .map(|(kv, _)| kv.clone())
            .collect(),
        ..desired.clone()
    };
    let persist = match &desired.persist {
        Some(path) => Some(persist::plan(ctx.host, path, &persisted)?),
        None => None,
    };
    Ok(Plan {
        ignore_missing: desired.ignore_missing,
        keys,
        persist,
    })
}

impl Key {
    fn id(&self) -> String {
        format!("sysctl/{}", self.key)
    }

    fn report(&self, ignore_missing: bool) -> ResourceReport {
        let desired = Some(self.desired.normalized());
        if let Some(why) = &self.refused {
            let current = match &self.current {
                Current::Value(v) => Some(v.clone()),
                Current::Missing | Current::Unreadable(_) => None,
            };
            return ResourceReport::new(KIND, self.id(), Status::Failed).values(current, desired).message(why.clone());
        }
        match &self.current {
            Current::Value(v) if self.desired.matches(v) => {
                ResourceReport::new(KIND, self.id(), Status::InSync).values(Some(v.clone()), desired)
            }
            Current::Value(v) => ResourceReport::new(KIND, self.id(), Status::Drift).values(Some(v.clone()), desired),
            Current::Missing if ignore_missing => ResourceReport::new(KIND, self.id(), Status::InSync)
                .values(None, desired)
                .message(format!("{} does not exist on this host; skipped (ignore_missing)", self.key)),
            Current::Missing | Current::Unreadable(_) => unreachable!("refused in plan"),
        }
    }

    fn apply(&self, host: &Host, ignore_missing: bool) -> ResourceReport {
        let before = self.report(ignore_missing);
        if before.status != Status::Drift {
            // In sync, or refused in plan with the message apply would give: nothing to write.
            return before;
        }
        let old = before.current.clone().unwrap_or_default();
        if let Err(e) = host.write_value(proc_path(&self.key), &self.desired.normalized()) {
            return before.after(Status::Failed, format!("the kernel refused {} = {}: {}", self.key, self.desired, io_reason(&e)));
        }
        // Read back: the kernel may accept a write and keep (or clamp to) another value.
        match read_key(host, &self.key) {
            Ok(Current::Value(now)) if self.desired.matches(&now) => {
                let mut r = before.after(Status::Changed, format!("set {} {} -> {}", self.key, old, now));
                r.current = Some(now);
                r
            }
            Ok(Current::Value(now)) => {
                let mut r = before.after(
                    Status::Failed,
                    format!("wrote {} = {} but the kernel holds {}; it did not take the value", self.key, self.desired, now),
                );
                r.current = Some(now);
                r
            }
            Ok(Current::Missing) => before.after(Status::Failed, missing_message(&self.key)),
            Ok(Current::Unreadable(why)) => before.after(Status::Failed, why),
            Err(e) => before.after(Status::Failed, format!("wrote {} but could not read it back: {e}", self.key)),
        }
    }
}

/// Why writing `value` to `key` would certainly fail, when that is known before writing.
///
/// What the kernel prints tells what a key takes (the types Documentation/admin-guide/sysctl and
/// networking/ip-sysctl.rst give: INTEGER, "vector of 3 INTEGERs", STRING), so the rule needs no
/// list of names:
/// - the key does not exist (unless ignore_missing);
/// - a key the kernel prints as whole numbers (every token an integer: proc_dointvec and its kin,
///   `ip_local_port_range`'s two, `tcp_rmem`'s three; on the real /proc/sys, one whose handler
///   prints nothing past offset 0, which a string handler holding digits does) takes exactly that
///   many numbers, each as its integer parser reads them (`kernel_integer`; a port list such as
///   `1,3-5` for the bitmap `ip_local_reserved_ports`; a token of hex digits alone, which may be
///   a CPU mask, is not judged): a word or `+1` is refused with EINVAL before anything is
///   stored, no value is a write of nothing, and another count is refused or leaves the numbers
///   it is not given as they were;
/// - a key the kernel prints as text whose directory holds the list of what it takes, named like
///   it with `available_` (`tcp_available_congestion_control` beside `tcp_congestion_control`,
///   `available_schedulers` beside `scheduler`), is given a name that list lacks and that no
///   installed module of the running kernel could add (ENOENT).
/// Any other text key is its handler's to judge.
fn refusal(host: &Host, key: &SysctlKey, value: &SysctlValue, current: &Current, ignore_missing: bool) -> Option<String> {
    let now = match current {
        Current::Missing if ignore_missing => return None,
        Current::Missing => return Some(missing_message(key)),
        Current::Unreadable(why) => return Some(why.clone()),
        Current::Value(v) => v,
    };
    // A text key can hold digits (a hostname "12345"): on the real /proc/sys, its handler says so.
    let integers = !now.is_empty()
        && now.split_whitespace().all(|t| t.parse::<i128>().is_ok())
        && host.proc_prints_past_start(proc_path(key)) != Some(true);
    if integers {
        integer_refusal(key, value, now)
    } else {
        choice_refusal(host, key, value)
    }
}

fn integer_refusal(key: &SysctlKey, value: &SysctlValue, now: &str) -> Option<String> {
    // A token of hex digits alone may be a CPU mask (`net.core.rps_default_mask` prints "0" and
    // takes "ff"), which the printed value cannot tell from an integer: not judged.
    let mask = |t: &str| t.split(',').all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_hexdigit()));
    let number = |t: &str| kernel_integer(t).is_some() || is_port_list(t) || mask(t);
    if let Some(word) = value.as_str().split_whitespace().find(|t| !number(t)) {
        return Some(format!(
            "the kernel refuses {key} = {value}: {key} holds whole numbers (now {now}) and {word:?} is not one \
             (writing it fails with Invalid argument); nothing was written"
        ));
    }
    let (have, given) = (now.split_whitespace().count(), value.as_str().split_whitespace().count());
    if given == 0 {
        return Some(format!(
            "the kernel cannot set {key} to an empty value: {key} holds whole numbers (now {now}), and writing \
             nothing leaves it as it is; nothing was written"
        ));
    }
    if given != have {
        return Some(format!(
            "the kernel cannot set {key} to {value}: {key} holds {have} whole number{} (now {now}) and the value \
             gives {given}; the kernel reads exactly {have}, refusing more or keeping the ones it is not given, \
             so it would not hold {value}; nothing was written",
            if have == 1 { "" } else { "s" }
        ));
    }
    None
}

/// `1,3-5`: the ranges proc_do_large_bitmap reads (`ip_local_reserved_ports`).
fn is_port_list(t: &str) -> bool {
    let unsigned = |n: &str| !n.starts_with('-') && kernel_integer(n).is_some();
    t.split(',').all(|r| match r.split_once('-') {
        Some((a, b)) => unsigned(a) && unsigned(b),
        None => unsigned(r),
    })
}

fn choice_refusal(host: &Host, key: &SysctlKey, value: &SysctlValue) -> Option<String> {
    let rel = key.rel_path();
    let (dir, name) = rel.rsplit_once('/')?;
    let dir = format!("/proc/sys/{dir}");
    let list = host.list_dir(&dir).ok()?.into_iter().find(|sibling| {
        let named = sibling.replacen("available_", "", 1);
        sibling.contains("available_") && (named == name || named == format!("{name}s"))
    })?;
    let list_path = format!("{dir}/{list}");
    let choices = normalize(&host.read_to_string(&list_path).ok()?);
    let wanted = value.normalized();
    if choices.split(' ').any(|c| c == wanted) || module_may_provide(host, &wanted) {
        return None;
    }
    Some(format!(
        "the kernel refuses {key} = {value}: {list_path} lists {choices:?}, and no module of the running kernel \
         names {wanted:?} (writing it fails with No such file or directory); nothing was written"
    ))
}

/// Whether a module of the running kernel (`/lib/modules/RELEASE/modules.dep`) has `name` in its
/// file name (`tcp_bbr.ko.xz` for `bbr`), so that writing the name could load it. Anything
/// that cannot be read counts as "may": only a certain refusal is reported in plan.
fn module_may_provide(host: &Host, name: &str) -> bool {
    let Ok(release) = host.read_to_string("/proc/sys/kernel/osrelease") else { return true };
    let dep = format!("/lib/modules/{}/modules.dep", release.trim());
    match host.read_bounded(&dep, crate::host::limits::MODULES_DEP) {
        Ok(text) => text
            .lines()
            .filter_map(|l| l.split(':').next())
            .any(|m| m.rsplit('/').next().is_some_and(|file| !name.is_empty() && file.contains(name))),
        // No modules at all for this kernel: nothing can add a choice.
        Err(e) if e.is_not_found() => host.is_dir(format!("/lib/modules/{}", release.trim())),
        Err(_) => true,
    }
}

fn missing_message(key: &SysctlKey) -> String {
    format!(
        "{key} does not exist on this host (no /proc/sys/{}): a module not loaded, or a wrong name; \
         set ignore_missing to skip keys that only some hosts have",
        key.rel_path()
    )
}

/// The OS reason alone ("Invalid argument"), without repeating the path.
fn io_reason(e: &HostError) -> String {
    match e {
        HostError::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

impl Resources for Plan {
    fn reports(&self) -> Vec<ResourceReport> {
        let mut out: Vec<_> = self.keys.iter().map(|k| k.report(self.ignore_missing)).collect();
        out.extend(self.persist.as_ref().map(persist::Plan::report));
        out
    }

    fn apply(self: Box<Self>, ctx: &Ctx) -> Vec<ResourceReport> {
        let mut out: Vec<_> = self.keys.iter().map(|k| k.apply(ctx.host, self.ignore_missing)).collect();
        out.extend(self.persist.map(|p| p.apply(ctx.host)));
        out
    }
}

/// The current values of the keys a document can hold, as the `sysctl` section of a state
/// document that `validate` accepts, `plan` finds in sync and `apply` leaves unchanged (SPEC
/// section 5). The rule, stated once in the README ("What `show` prints"), uses only what the
/// kernel says about each file, never a list of names:
/// 1. a regular file whose mode lets its owner read and write it, and that access(2) lets this
///    process read and write: read-only files are the kernel's state and counters
///    (`fs.file-nr`, `fs.dentry-state`, `kernel.random.uuid`), write-only files are triggers
///    (`vm.drop_caches`, `vm.compact_memory`, `net.ipv4.route.flush`), and a key a namespace or a
///    read-only mount does not let us set is not settable here;
/// 2. reading it prints a value ending in a newline, as every value the kernel stores does
///    (proc_dostring and the integer handlers end with one, empty values too); a file that prints
///    nothing at all has no value to hold: `vm.stat_refresh`, whose handler acts on every read;
/// 3. it reads the same before and after hostguard starts a thread (which takes a pid): a value
///    that moves by itself, such as `kernel.ns_last_pid`, differs;
/// 4. its name and value are ones a document can hold (`SysctlKey`, `SysctlValue`).
/// With `all`, rules 1 to 3 are dropped: every key that can be read is printed.
pub fn show(ctx: &Ctx, prefixes: &[String], all: bool) -> Result<serde_json::Value> {
    let prefixes: Vec<String> = prefixes
        .iter()
        .map(|p| if p.contains('/') { p.trim_matches('/').to_string() } else { p.replace('.', "/") })
        .collect();
    let mut found = walk(ctx.host, &prefixes, all)?;
    if !all {
        // Rule 3: a thread takes a pid in our pid namespace, as any process start does.
        let _ = std::thread::spawn(|| ()).join();
        found.retain(|(rel, text)| read_raw(ctx.host, rel).as_deref() == Some(text.as_str()));
    }
    let mut values = serde_json::Map::new();
    for (rel, text) in found {
        let name = if rel.split('/').any(|c| c.contains('.')) { rel.clone() } else { rel.replace('/', ".") };
        let text = normalize(&text);
        let value = match text.parse::<i64>() {
            Ok(n) => serde_json::Value::from(n),
            Err(_) => serde_json::Value::from(text),
        };
        // Rule 4.
        if SysctlKey::parse(&name).is_err() || SysctlValue::from_json(&value).is_err() {
            continue;
        }
        values.insert(name, value);
    }
    Ok(serde_json::json!({ "values": values }))
}

/// A key's text as the kernel printed it, `None` when it cannot be read.
fn read_raw(host: &Host, rel: &str) -> Option<String> {
    host.read_to_string(format!("/proc/sys/{rel}")).ok()
}

/// The keys under /proc/sys (those under `prefixes`, when given) with the text each prints, by
/// rules 1 and 2.
fn walk(host: &Host, prefixes: &[String], all: bool) -> Result<Vec<(String, String)>> {
    let mut wanted =
        |rel: &str| prefixes.is_empty() || prefixes.iter().any(|p| rel.starts_with(p.as_str()) || p.starts_with(&format!("{rel}/")));
    let mut out = Vec::new();
    for f in host.walk("/proc/sys", &mut wanted)? {
        if f.kind != rustix::fs::FileType::RegularFile {
            continue;
        }
        // Rule 1.
        if !all && (f.mode & 0o600 != 0o600 || !host.may_read_and_write(format!("/proc/sys/{}", f.rel))) {
            continue;
        }
        // Keys the kernel refuses to print (stable_secret before it is set) are left out.
        let Some(text) = read_raw(host, &f.rel) else { continue };
        // Rule 2.
        if !all && !text.ends_with('\n') {
            continue;
        }
        out.push((f.rel, text));
    }
    Ok(out)
}
