//! Key-level convergence of one config, a pure function of the file and the desired settings:
//! legacy keys are translated (on a modern LXC), cgroup keys of the wrong version translated,
//! then each managed setting is compared with the lines that hold it and, when it differs,
//! those lines alone are replaced. Every other line stays as the operator wrote it.

use std::collections::{BTreeMap, BTreeSet};

use super::cgroupmap::{parse_size, translate, Version};
use super::config::{Config, Entry, Line};
use super::legacy;
use crate::state::lxc::REPEATABLE_NET_KEYS;

/// The key dialect configs are written in, once `auto` is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Modern,
    Legacy,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Modern => "modern",
            Dialect::Legacy => "legacy",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Env {
    pub dialect: Dialect,
    pub cgroup: Version,
}

/// Which lines of a config hold a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owns {
    /// Lines with one of these keys (every spelling of the setting).
    Keys(Vec<String>),
    /// `lxc.net*` and `lxc.network*` lines.
    Network,
}

impl Owns {
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Owns::Keys(keys) => keys.iter().any(|k| k == key),
            Owns::Network => {
                key == "lxc.net" || key == "lxc.network" || key.starts_with("lxc.net.") || key.starts_with("lxc.network.")
            }
        }
    }
}

/// How a setting's lines are compared with the desired ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// One key whose last line wins; the values compare as sizes (`268435456` is `256M`).
    Size,
    /// One key whose last line wins; the values compare as whole numbers.
    Number,
    /// One key whose last line wins; the values compare as text.
    Text,
    /// A list spread over any number of lines, order irrelevant (`lxc.cap.drop`).
    Tokens,
    /// Lines whose order matters (`lxc.idmap`, legacy networks).
    Seq,
    /// Lines whose order does not matter (indexed `lxc.net.N.*`).
    Multiset,
    /// Unindexed legacy interfaces: each `lxc.network.type` line begins one; the interfaces'
    /// order matters, the order of keys within one does not.
    Interfaces,
}

/// What a change needs before it takes effect in a running container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A cgroup limit: live with `live: true`, else at the next start.
    Limit,
    /// Network, idmap, capabilities: only at the next start.
    Restart,
    /// A key of the `config` map: at the next start.
    Config,
    /// A legacy key renamed: the meaning is unchanged.
    Migration,
    /// A cgroup key of the wrong version translated: LXC ignored it until now.
    CgroupVersion,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The document's name for it: `memory_limit`, `network`, `config["lxc.start.auto"]`.
    pub name: String,
    pub owns: Owns,
    /// The rendered lines, in the dialect and cgroup version of the host.
    pub lines: Vec<Line>,
    pub cmp: Cmp,
    pub class: Class,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub what: String,
    pub class: Class,
    /// `- old line` / `+ new line`.
    pub diff: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub config: Config,
    pub changes: Vec<Change>,
}

impl Outcome {
    pub fn migrated_legacy(&self) -> bool {
        self.changes.iter().any(|c| c.class == Class::Migration)
    }
}

pub fn converge(cfg: &Config, settings: &[Setting], env: Env) -> Outcome {
    let mut cur = cfg.clone();
    let mut changes = Vec::new();
    if env.dialect == Dialect::Modern {
        if let Some((c, diff)) = legacy::migrate(&cur) {
            cur = c;
            changes.push(Change { what: "legacy keys (renamed as lxc-update-config does)".into(), class: Class::Migration, diff });
        }
    }
    if let Some((c, diff)) = fix_cgroup_version(&cur, env.cgroup) {
        cur = c;
        changes.push(Change {
            what: format!("cgroup keys of the wrong version (LXC ignores them on a cgroup v{} host)", env.cgroup.number()),
            class: Class::CgroupVersion,
            diff,
        });
    }
    for s in settings {
        let matched: Vec<usize> = cur.entries().filter(|(_, e)| s.owns.matches(&e.key)).map(|(i, _)| i).collect();
        let entries: Vec<&Entry> = matched.iter().map(|&i| cur.lines[i].entry.as_ref().expect("matched entries")).collect();
        if in_sync(s, &entries) {
            continue;
        }
        let diff = edit(&mut cur, s, &matched);
        changes.push(Change { what: s.name.clone(), class: s.class, diff });
    }
    Outcome { config: cur, changes }
}

fn desired_entries(s: &Setting) -> Vec<&Entry> {
    s.lines.iter().filter_map(|l| l.entry.as_ref()).collect()
}

fn collapse(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cap_tokens<'a>(entries: impl Iterator<Item = &'a Entry>) -> BTreeSet<String> {
    entries
        .flat_map(|e| e.value.split_whitespace())
        .map(|t| {
            let t = t.to_ascii_lowercase();
            t.strip_prefix("cap_").map(str::to_string).unwrap_or(t)
        })
        .collect()
}

fn in_sync(s: &Setting, have: &[&Entry]) -> bool {
    let want = desired_entries(s);
    match s.cmp {
        Cmp::Size | Cmp::Number | Cmp::Text => {
            let (Some(h), Some(w)) = (have.last(), want.first()) else { return have.is_empty() && want.is_empty() };
            h.key == w.key
                && match s.cmp {
                    Cmp::Size => parse_size(&h.value).is_some() && parse_size(&h.value) == parse_size(&w.value),
                    Cmp::Number => h.value.trim().parse::<u64>().ok().is_some_and(|n| Some(n) == w.value.parse().ok()),
                    _ => h.value == w.value,
                }
        }
        Cmp::Tokens => cap_tokens(have.iter().copied()) == cap_tokens(want.into_iter()),
        Cmp::Interfaces => {
            let groups = |es: Vec<&Entry>| -> Vec<Vec<(String, String)>> {
                let mut out: Vec<Vec<(String, String)>> = Vec::new();
                for e in es {
                    if e.key.ends_with(".type") || out.is_empty() {
                        out.push(Vec::new());
                    }
                    out.last_mut().expect("a group").push((e.key.clone(), collapse(&e.value)));
                }
                out.iter_mut().for_each(|g| g.sort());
                out
            };
            groups(have.to_vec()) == groups(want)
        }
        Cmp::Multiset => {
            let norm = |es: Vec<&Entry>| {
                let mut nets = interfaces(es);
                for values in nets.values_mut().flat_map(|n| n.values_mut()) {
                    values.iter_mut().for_each(|v| *v = collapse(v));
                    values.sort();
                }
                nets
            };
            norm(have.to_vec()) == norm(want)
        }
        Cmp::Seq => {
            let norm = |es: Vec<&Entry>| -> Vec<(String, String)> { es.iter().map(|e| (e.key.clone(), collapse(&e.value))).collect() };
            norm(have.to_vec()) == norm(want)
        }
    }
}

/// One interface as LXC holds it: each key with its values (one, or several for the keys in
/// `REPEATABLE_NET_KEYS`), in the order the file gives them.
pub type Interface = BTreeMap<String, Vec<String>>;

/// The interfaces LXC builds from indexed `lxc.net.N.*` lines, read in file order as LXC's own
/// parser does: a `type` line starts its interface over (LXC clears the whole netdev, so keys
/// above it are lost), a repeatable key adds a value, any other key replaces its value, and an
/// empty `lxc.net` clears every interface. Comparing line by line instead made a config with a
/// repeated `lxc.net.0.type` (LXC's own lxc-complex example) drift from the document `show`
/// printed for it.
pub fn interfaces<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> BTreeMap<usize, Interface> {
    let mut nets: BTreeMap<usize, Interface> = BTreeMap::new();
    for e in entries {
        if e.key == "lxc.net" && e.value.trim().is_empty() {
            nets.clear();
            continue;
        }
        let Some((idx, sub)) = e.key.strip_prefix("lxc.net.").and_then(|r| r.split_once('.')) else { continue };
        let Ok(idx) = idx.parse::<usize>() else { continue };
        let net = nets.entry(idx).or_default();
        if sub == "type" {
            net.clear();
            if e.value.trim().is_empty() {
                continue;
            }
        }
        let values = net.entry(sub.to_string()).or_default();
        if !REPEATABLE_NET_KEYS.contains(&sub) {
            values.clear();
        }
        values.push(e.value.clone());
    }
    nets.retain(|_, n| !n.is_empty());
    nets
}

/// Replace a setting's lines: a single-valued key in place of its last line; a list in place of
/// its first line, its other lines removed; appended at the end when the file has none.
fn edit(cfg: &mut Config, s: &Setting, matched: &[usize]) -> Vec<String> {
    let mut diff = Vec::new();
    let single = matches!(s.cmp, Cmp::Size | Cmp::Number | Cmp::Text);
    let remove: Vec<usize> = if single { matched.last().copied().into_iter().collect() } else { matched.to_vec() };
    for &i in &remove {
        diff.push(format!("- {}", cfg.lines[i].shown()));
    }
    for l in &s.lines {
        diff.push(format!("+ {}", l.shown()));
    }
    match remove.first().copied() {
        Some(at) => {
            for &i in remove.iter().rev() {
                cfg.lines.remove(i);
            }
            for (n, l) in s.lines.iter().enumerate() {
                cfg.lines.insert(at + n, l.clone());
            }
        }
        None => cfg.append(s.lines.clone()),
    }
    diff
}

/// Controllers whose files can appear below `lxc.cgroup.` / `lxc.cgroup2.`; other keys there
/// (`lxc.cgroup.dir`, `lxc.cgroup.relative`) are LXC's own settings, valid on both versions.
const CONTROLLERS: [&str; 15] = [
    "memory", "cpu", "cpuset", "cpuacct", "pids", "devices", "blkio", "io", "freezer", "hugetlb", "net_cls",
    "net_prio", "perf_event", "rdma", "misc",
];

/// The controller file a cgroup key names, when it is of the version the host does not run.
pub fn wrong_version_key(key: &str, host: Version) -> Option<&str> {
    let prefix = match host {
        Version::V1 => "lxc.cgroup2.",
        Version::V2 => "lxc.cgroup.",
    };
    let rest = key.strip_prefix(prefix)?;
    let controller = rest.split('.').next()?;
    (CONTROLLERS.contains(&controller) && rest.contains('.')).then_some(rest)
}

fn fix_cgroup_version(cfg: &Config, host: Version) -> Option<(Config, Vec<String>)> {
    if !cfg.entries().any(|(_, e)| wrong_version_key(&e.key, host).is_some()) {
        return None;
    }
    let memory_keys = super::cgroupmap::keys(crate::cgroup::Setting::Memory);
    let memory = cfg.entries().filter(|(_, e)| memory_keys.contains(&e.key)).last().and_then(|(_, e)| parse_size(&e.value));
    let n = host.number();
    let mut out = Config::default();
    let mut diff = Vec::new();
    for line in &cfg.lines {
        let Some((e, rest)) = line.entry.as_ref().and_then(|e| wrong_version_key(&e.key, host).map(|r| (e, r))) else {
            out.lines.push(line.clone());
            continue;
        };
        diff.push(format!("- {}", line.shown()));
        let new: Vec<Line> = match translate(rest, &e.value, host, memory) {
            Some(lines) => lines.iter().map(|(k, v)| Line::new(k, v)).collect(),
            None => vec![Line::comment(&format!(
                "hostguard: LXC ignores this on a cgroup v{n} host, and it has no v{n} equivalent: {}",
                line.shown()
            ))],
        };
        for l in new {
            diff.push(format!("+ {}", l.shown()));
            out.lines.push(l);
        }
    }
    Some((out, diff))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_MODERN: Env = Env { dialect: Dialect::Modern, cgroup: Version::V1 };

    fn single(name: &str, key: &str, value: &str, cmp: Cmp) -> Setting {
        Setting {
            name: name.into(),
            owns: Owns::Keys(vec![key.into()]),
            lines: vec![Line::new(key, value)],
            cmp,
            class: Class::Limit,
        }
    }

    #[test]
    fn an_equal_size_in_another_spelling_is_in_sync() {
        let cfg = Config::parse("lxc.cgroup.memory.limit_in_bytes = 268435456\n");
        let s = single("memory_limit", "lxc.cgroup.memory.limit_in_bytes", "256M", Cmp::Size);
        assert!(converge(&cfg, &[s], V1_MODERN).changes.is_empty());
    }

    #[test]
    fn a_changed_value_replaces_its_line_in_place_and_keeps_the_rest() {
        let text = "# mine\nlxc.cgroup.memory.limit_in_bytes = 1G # no\nlxc.uts.name = a\n";
        let cfg = Config::parse(text);
        let s = single("memory_limit", "lxc.cgroup.memory.limit_in_bytes", "256M", Cmp::Size);
        let out = converge(&cfg, &[s], V1_MODERN);
        assert_eq!(out.config.text(), "# mine\nlxc.cgroup.memory.limit_in_bytes = 256M\nlxc.uts.name = a\n");
        assert_eq!(out.changes[0].diff, vec!["- lxc.cgroup.memory.limit_in_bytes = 1G # no", "+ lxc.cgroup.memory.limit_in_bytes = 256M"]);
    }

    #[test]
    fn cap_drop_compares_as_a_set_over_all_its_lines() {
        let cfg = Config::parse("lxc.cap.drop = sys_time MAC_ADMIN\nx\nlxc.cap.drop = cap_sys_module\n");
        let mut s = single("cap_drop", "lxc.cap.drop", "mac_admin sys_module sys_time", Cmp::Tokens);
        s.class = Class::Restart;
        assert!(converge(&cfg, &[s.clone()], V1_MODERN).changes.is_empty());
        s.lines = vec![Line::new("lxc.cap.drop", "sys_rawio")];
        let out = converge(&cfg, &[s], V1_MODERN);
        assert_eq!(out.config.text(), "lxc.cap.drop = sys_rawio\nx\n");
    }

    fn network(lines: &[(&str, &str)]) -> Setting {
        Setting {
            name: "network".into(),
            owns: Owns::Network,
            lines: lines.iter().map(|(k, v)| Line::new(k, v)).collect(),
            cmp: Cmp::Multiset,
            class: Class::Restart,
        }
    }

    #[test]
    fn a_repeated_net_type_line_starts_the_interface_over_as_lxc_reads_it() {
        // LXC's own doc/examples/lxc-complex.conf: three interfaces all written as lxc.net.0.
        let cfg = Config::parse(
            "lxc.net.0.type = veth\nlxc.net.0.link = br0\nlxc.net.0.ipv4.address = 10.2.3.5/24\n\
             lxc.net.0.type = phys\nlxc.net.0.link = random0\nlxc.net.0.ipv4.address = 10.2.3.6/24\n",
        );
        let lxc_reads = network(&[("lxc.net.0.type", "phys"), ("lxc.net.0.link", "random0"), ("lxc.net.0.ipv4.address", "10.2.3.6/24")]);
        assert!(converge(&cfg, &[lxc_reads], V1_MODERN).changes.is_empty());
        let all_lines = network(&[
            ("lxc.net.0.type", "phys"),
            ("lxc.net.0.link", "random0"),
            ("lxc.net.0.ipv4.address", "10.2.3.5/24"),
            ("lxc.net.0.ipv4.address", "10.2.3.6/24"),
        ]);
        assert_eq!(converge(&cfg, &[all_lines], V1_MODERN).changes.len(), 1, "LXC drops the first interface's address");
        // A key above the type line is lost too.
        let cfg = Config::parse("lxc.net.0.link = br0\nlxc.net.0.type = veth\n");
        assert_eq!(interfaces(cfg.entries().map(|(_, e)| e))[&0], Interface::from([("type".to_string(), vec!["veth".to_string()])]));
    }

    #[test]
    fn wrong_version_cgroup_keys_are_translated_or_commented_out() {
        let cfg = Config::parse(
            "lxc.cgroup.dir = x\nlxc.cgroup2.memory.max = 256M\nlxc.cgroup2.memory.swap.max = 256M\nlxc.cgroup2.io.weight = 5\n",
        );
        let out = converge(&cfg, &[], V1_MODERN);
        assert_eq!(
            out.config.text(),
            "lxc.cgroup.dir = x\nlxc.cgroup.memory.limit_in_bytes = 256M\nlxc.cgroup.memory.memsw.limit_in_bytes = 512M\n\
             # hostguard: LXC ignores this on a cgroup v1 host, and it has no v1 equivalent: lxc.cgroup2.io.weight = 5\n"
        );
        assert!(converge(&out.config, &[], V1_MODERN).changes.is_empty());
    }
}
