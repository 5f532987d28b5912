//! The `nftables` section (SPEC section 3b): whole tables that hostguard owns, validated into
//! typed values (`NftFamily`, `NftName`, `BaseChain`, `NftText`) so that nothing the kind later
//! writes into an `nft -f` batch can be more than the rule, element or type it stands for.
//!
//! What a rule may hold is checked here, not by nft: a newline, a `;` outside quotes, unbalanced
//! braces, a `#` comment or a command keyword (`table`, `chain`, `flush`, `delete`, `include`…)
//! would let one document string become a second statement of the batch — one that could flush a
//! neighbour's table. Anything else is nft's to judge, in a throwaway namespace, at plan time.

use std::fmt;

use super::types::{control_char_problem, name_problem, First, NameRule};
use super::{key_path, UniqueMap, ValidationErrors};

/// Whole nftables tables owned by hostguard; tables not named are never read for changes nor
/// written.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Nftables")]
pub struct RawNftables {
    /// Tables keyed `"FAMILY NAME"` (`"inet hostguard"`; families inet, ip, ip6, arp, bridge,
    /// netdev), each owned whole: its chains, sets and maps are exactly what the document says.
    #[serde(default)]
    pub tables: UniqueMap<RawTable>,
}

/// One owned table.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NftTable")]
pub struct RawTable {
    /// Chains by name: base chains (with type, hook and priority) and regular chains.
    #[serde(default)]
    pub chains: UniqueMap<RawChain>,
    /// Named sets (`@name` in rules).
    #[serde(default)]
    pub sets: UniqueMap<RawSet>,
    /// Named maps, whose type is `KEY : VALUE` (`ipv4_addr : verdict`).
    #[serde(default)]
    pub maps: UniqueMap<RawSet>,
}

/// One chain. A base chain names type, hook and priority; a regular chain names none of them.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NftChain")]
pub struct RawChain {
    /// Base chain type.
    #[serde(default, rename = "type")]
    #[schemars(schema_with = "chain_type_schema")]
    pub kind: Option<String>,
    /// Base chain hook: prerouting, input, forward, output, postrouting, ingress, egress (as the
    /// family has them).
    #[serde(default)]
    #[schemars(schema_with = "hook_schema")]
    pub hook: Option<String>,
    /// A number, or nft's name with an optional offset (`"filter"`, `"filter + 10"`, `"mangle"`).
    #[serde(default)]
    #[schemars(schema_with = "priority_schema")]
    pub priority: Option<serde_json::Value>,
    /// Base chain policy.
    #[serde(default)]
    #[schemars(schema_with = "policy_schema")]
    pub policy: Option<String>,
    /// The interface of an ingress or egress chain.
    #[serde(default)]
    pub device: Option<String>,
    /// Rules in nft's own syntax, one statement each (`ct state established,related accept`);
    /// compared in the form nft lists them.
    #[serde(default)]
    pub rules: Vec<String>,
}

/// A named set or map.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "NftSet")]
pub struct RawSet {
    /// `ipv4_addr`, `ipv4_addr . inet_service`; for a map `ipv4_addr : verdict`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Set flags.
    #[serde(default)]
    #[schemars(schema_with = "set_flags_schema")]
    pub flags: Vec<String>,
    /// Default timeout of elements (`1h`, `30m`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Maximum number of elements.
    #[serde(default)]
    pub size: Option<u32>,
    /// One element per string (`192.0.2.0/24`, `10.0.0.1 : accept`). Absent: for a `dynamic` or
    /// `timeout` set, whatever the kernel added at run time is kept and never drift; for any other
    /// set, no elements.
    #[serde(default)]
    pub elements: Option<Vec<String>>,
}

fn chain_type_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "enum": ["filter", "nat", "route"] })
}
fn hook_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "enum": ["prerouting", "input", "forward", "output", "postrouting", "ingress", "egress"] })
}
fn priority_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "oneOf": [ { "type": "integer" }, { "type": "string" } ], "examples": [0, "filter", "filter + 10", -150] })
}
fn policy_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "enum": ["accept", "drop"] })
}
fn set_flags_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "array", "items": { "enum": ["constant", "interval", "timeout", "dynamic"] } })
}

/// The address families nft knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NftFamily {
    Inet,
    Ip,
    Ip6,
    Arp,
    Bridge,
    Netdev,
}

impl NftFamily {
    pub const ALL: [NftFamily; 6] =
        [NftFamily::Inet, NftFamily::Ip, NftFamily::Ip6, NftFamily::Arp, NftFamily::Bridge, NftFamily::Netdev];

    pub fn parse(s: &str) -> Option<NftFamily> {
        NftFamily::ALL.into_iter().find(|f| f.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            NftFamily::Inet => "inet",
            NftFamily::Ip => "ip",
            NftFamily::Ip6 => "ip6",
            NftFamily::Arp => "arp",
            NftFamily::Bridge => "bridge",
            NftFamily::Netdev => "netdev",
        }
    }

    /// The hooks a base chain of this family may use.
    pub fn hooks(self) -> &'static [&'static str] {
        match self {
            NftFamily::Ip | NftFamily::Ip6 => &["prerouting", "input", "forward", "output", "postrouting"],
            NftFamily::Inet => &["prerouting", "input", "forward", "output", "postrouting", "ingress"],
            NftFamily::Arp => &["input", "output"],
            NftFamily::Bridge => &["prerouting", "input", "forward", "output", "postrouting"],
            NftFamily::Netdev => &["ingress", "egress"],
        }
    }

    /// nft's priority names and the numbers they stand for (nft(8), "CHAINS"). The bridge family
    /// has its own table.
    pub fn priority_names(self) -> &'static [(&'static str, i32)] {
        match self {
            NftFamily::Bridge => &[("dstnat", -300), ("filter", -200), ("out", 100), ("srcnat", 300)],
            _ => &[("raw", -300), ("mangle", -150), ("dstnat", -100), ("filter", 0), ("security", 50), ("srcnat", 100)],
        }
    }
}

impl fmt::Display for NftFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A table, chain or set name nft takes unquoted: a letter or `_` first, then letters, digits and
/// `_ - . /`, at most 255 bytes (NFT_NAME_MAXLEN less the NUL).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NftName(String);

/// Words that would turn a name into a verdict or a statement where nft expects an identifier.
const RESERVED_NAMES: &[&str] = &[
    "accept", "drop", "reject", "queue", "continue", "return", "jump", "goto", "table", "chain", "set", "map",
    "flush", "delete", "add", "include", "define", "ruleset", "element",
];

const NFT_NAME: NameRule = NameRule {
    what: "a name",
    max: 255,
    limit: "nft's limit",
    extra: &['_', '-', '.', '/'],
    first: First::LetterOrUnderscore,
    reserved: RESERVED_NAMES,
    reserved_is: "an nft keyword, not a name",
};

impl NftName {
    pub fn parse(s: &str) -> Result<NftName, String> {
        match name_problem(s, &NFT_NAME) {
            Some(p) => Err(p),
            None => Ok(NftName(s.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NftName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A piece of nft syntax from the document (a rule, an element, a set type) that stays one
/// statement: a single line, no `;` or `#` outside quotes, balanced braces, no command keyword.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NftText(String);

/// Words that begin an nft command rather than a rule (nft(8), "COMMANDS", and the script
/// keywords): at the start of a rule they would make it a statement of the batch of its own.
const COMMAND_WORDS: &[&str] = &[
    "table", "chain", "flush", "delete", "destroy", "add", "create", "insert", "replace", "rename", "list",
    "reset", "include", "define", "redefine", "undefine", "monitor", "describe", "import", "export", "set",
    "map", "element", "flowtable", "ruleset",
];

impl NftText {
    /// A rule: a statement that may not begin with a command word.
    pub fn rule(s: &str) -> Result<NftText, String> {
        let t = NftText::fragment(s, "rule")?;
        let first = t.0.split_whitespace().next().unwrap_or("");
        if COMMAND_WORDS.contains(&first) {
            return Err(format!(
                "{s:?} starts with {first:?}, an nft command: a rule names no table, chain or command; list it under its chain"
            ));
        }
        Ok(t)
    }

    /// One element of a set or map: may not hold a top-level `,` (it would be two elements).
    pub fn element(s: &str) -> Result<NftText, String> {
        let t = NftText::fragment(s, "element")?;
        if split_top_level(&t.0, ',').len() > 1 {
            return Err(format!("{s:?} holds a ',': list each element as its own string"));
        }
        Ok(t)
    }

    /// A set's type, flags, timeout: plain words only.
    pub fn word(s: &str, what: &str) -> Result<NftText, String> {
        let t = NftText::fragment(s, what)?;
        if let Some(c) = t.0.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | ' '))) {
            return Err(format!("{s:?} contains {c:?}; a {what} holds letters, digits, spaces and _ - . :"));
        }
        Ok(t)
    }

    fn fragment(s: &str, what: &str) -> Result<NftText, String> {
        if let Some(p) = control_char_problem(s) {
            return Err(format!("the {what} {p}"));
        }
        let t = s.trim();
        if t.is_empty() {
            return Err(format!("the {what} is empty"));
        }
        let mut depth = 0i32;
        let mut quoted = false;
        for c in t.chars() {
            match c {
                '"' => quoted = !quoted,
                _ if quoted => {}
                ';' => return Err(format!("{s:?} holds ';' outside quotes: one {what} is one statement")),
                '#' => return Err(format!("{s:?} holds '#' outside quotes, which would comment out the rest of the line")),
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth < 0 {
                        return Err(format!("{s:?} closes a '}}' it did not open"));
                    }
                }
                _ => {}
            }
        }
        if quoted {
            return Err(format!("{s:?} has an unclosed '\"'"));
        }
        if depth != 0 {
            return Err(format!("{s:?} leaves a '{{' open"));
        }
        if t.split(|c: char| c.is_whitespace() || c == '{' || c == '}').any(|w| w == "include") {
            return Err(format!("{s:?} holds `include`: a document may not make nft read files"));
        }
        Ok(NftText(t.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `s` split at `sep` outside quotes and braces.
pub fn split_top_level(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            _ if quoted => {}
            '{' => depth += 1,
            '}' => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// A base chain's hook: type, hook, priority (as the document wrote it, checked), policy, device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    pub kind: &'static str,
    pub hook: &'static str,
    /// `0`, `-150`, `filter`, `filter + 10`, as nft takes it.
    pub priority: String,
    /// The number it stands for, for ordering chains at one hook (the audit and the SSH guard).
    pub priority_value: i32,
    pub policy: Option<&'static str>,
    pub device: Option<NftName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSpec {
    pub name: NftName,
    pub base: Option<BaseChain>,
    pub rules: Vec<NftText>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    pub name: NftName,
    pub is_map: bool,
    pub kind: NftText,
    pub flags: Vec<&'static str>,
    pub timeout: Option<NftText>,
    pub size: Option<u32>,
    pub elements: Option<Vec<NftText>>,
}

impl SetSpec {
    /// Elements the kernel adds at run time (`update @set`, `add @set`) are not the document's.
    pub fn runtime_elements(&self) -> bool {
        self.flags.iter().any(|f| matches!(*f, "dynamic" | "timeout"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub family: NftFamily,
    pub name: NftName,
    /// Sorted by name, as the report lists them.
    pub chains: Vec<ChainSpec>,
    /// Sets and maps, sorted by name.
    pub sets: Vec<SetSpec>,
}

impl TableSpec {
    /// `inet hostguard`, as the document keys it and nft names it.
    pub fn key(&self) -> String {
        format!("{} {}", self.family, self.name)
    }
    pub fn doc_path(&self) -> String {
        key_path("nftables.tables", &self.key())
    }
}

#[derive(Debug, Clone, Default)]
pub struct NftablesState {
    /// Sorted by family and name: the order of the report.
    pub tables: Vec<std::sync::Arc<TableSpec>>,
}

const SET_FLAGS: &[&str] = &["constant", "interval", "timeout", "dynamic"];

pub fn validate(raw: RawNftables, errs: &mut ValidationErrors) -> NftablesState {
    let mut tables = Vec::new();
    for (key, t) in raw.tables.iter() {
        let path = key_path("nftables.tables", key);
        let mut words = key.split(' ').filter(|w| !w.is_empty());
        let (Some(fam), Some(name), None) = (words.next(), words.next(), words.next()) else {
            errs.push(&path, format!("{key:?} is not \"FAMILY NAME\" (e.g. \"inet hostguard\")"));
            continue;
        };
        let before = errs.0.len();
        let family = NftFamily::parse(fam);
        if family.is_none() {
            errs.push(&path, format!("{fam:?} is not a family: use inet, ip, ip6, arp, bridge or netdev"));
        }
        let name = NftName::parse(name).map_err(|m| errs.push(&path, m)).ok();
        let family = family.unwrap_or(NftFamily::Inet);
        let mut chains = Vec::new();
        for (cname, c) in t.chains.iter() {
            if let Some(c) = validate_chain(family, cname, c, &key_path(&format!("{path}.chains"), cname), errs) {
                chains.push(c);
            }
        }
        let mut sets = Vec::new();
        for (is_map, group, field) in [(false, &t.sets, "sets"), (true, &t.maps, "maps")] {
            for (sname, s) in group.iter() {
                let spath = key_path(&format!("{path}.{field}"), sname);
                if t.sets.0.contains_key(sname) && t.maps.0.contains_key(sname) && is_map {
                    errs.push(&spath, format!("{sname:?} is also a set of this table; sets and maps share one namespace"));
                }
                if let Some(s) = validate_set(is_map, sname, s, &spath, errs) {
                    sets.push(s);
                }
            }
        }
        sets.sort_by(|a, b| a.name.cmp(&b.name));
        if errs.0.len() == before {
            if let Some(name) = name {
                tables.push(TableSpec { family, name, chains, sets });
            }
        }
    }
    tables.sort_by(|a, b| (a.family, &a.name).cmp(&(b.family, &b.name)));
    NftablesState { tables: tables.into_iter().map(std::sync::Arc::new).collect() }
}

fn validate_chain(family: NftFamily, name: &str, raw: &RawChain, path: &str, errs: &mut ValidationErrors) -> Option<ChainSpec> {
    let before = errs.0.len();
    let cname = NftName::parse(name).map_err(|m| errs.push(path, m)).ok();
    let any_base = raw.kind.is_some() || raw.hook.is_some() || raw.priority.is_some() || raw.policy.is_some() || raw.device.is_some();
    let base = if any_base { validate_base(family, raw, path, errs) } else { None };
    let mut rules = Vec::new();
    for (i, r) in raw.rules.iter().enumerate() {
        match NftText::rule(r) {
            Ok(r) => rules.push(r),
            Err(m) => errs.push(format!("{path}.rules[{i}]"), m),
        }
    }
    (errs.0.len() == before).then_some(())?;
    Some(ChainSpec { name: cname?, base, rules })
}

fn validate_base(family: NftFamily, raw: &RawChain, path: &str, errs: &mut ValidationErrors) -> Option<BaseChain> {
    let before = errs.0.len();
    let (Some(kind), Some(hook), Some(priority)) = (&raw.kind, &raw.hook, &raw.priority) else {
        errs.push(path, "a base chain names its type, hook and priority (all three); a regular chain names none of type, hook, priority, policy or device");
        return None;
    };
    let kind = match kind.as_str() {
        "filter" => "filter",
        "nat" => "nat",
        "route" => "route",
        other => {
            errs.push(format!("{path}.type"), format!("{other:?} is not a chain type: use filter, nat or route"));
            "filter"
        }
    };
    let hook = match family.hooks().iter().find(|h| **h == hook.as_str()) {
        Some(h) => *h,
        None => {
            errs.push(
                format!("{path}.hook"),
                format!("{hook:?} is not a hook of the {family} family: use {}", family.hooks().join(", ")),
            );
            "input"
        }
    };
    let (priority, priority_value) = match parse_priority(family, priority) {
        Ok(p) => p,
        Err(m) => {
            errs.push(format!("{path}.priority"), m);
            (String::new(), 0)
        }
    };
    let policy = match raw.policy.as_deref() {
        None => None,
        Some("accept") => Some("accept"),
        Some("drop") => Some("drop"),
        Some(other) => {
            errs.push(format!("{path}.policy"), format!("{other:?} is not a policy: use \"accept\" or \"drop\""));
            None
        }
    };
    let needs_device = hook == "egress" || (hook == "ingress" && family == NftFamily::Netdev);
    let device = match &raw.device {
        Some(d) if d.len() > 15 => {
            errs.push(format!("{path}.device"), format!("{d:?} is longer than 15 bytes, the kernel's limit for an interface name"));
            None
        }
        Some(d) => NftName::parse(d).map_err(|m| errs.push(format!("{path}.device"), m)).ok(),
        None if needs_device => {
            errs.push(format!("{path}.device"), format!("a {hook} chain of the {family} family names its device"));
            None
        }
        None => None,
    };
    if raw.device.is_some() && !matches!(hook, "ingress" | "egress") {
        errs.push(format!("{path}.device"), "only ingress and egress chains have a device");
    }
    (errs.0.len() == before).then_some(())?;
    Some(BaseChain { kind, hook, priority, priority_value, policy, device })
}

/// A priority as nft takes it: a number, or a name with an optional `+ N` / `- N`.
fn parse_priority(family: NftFamily, v: &serde_json::Value) -> Result<(String, i32), String> {
    let bad = || format!("{v} is not a priority: use a number, or one of {} with an optional \"+ N\" or \"- N\"",
        family.priority_names().iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "));
    if let Some(n) = v.as_i64() {
        let n = i32::try_from(n).map_err(|_| bad())?;
        return Ok((n.to_string(), n));
    }
    let s = v.as_str().ok_or_else(bad)?;
    let words: Vec<&str> = s.split_whitespace().collect();
    let number = |w: &str| w.parse::<i32>().ok();
    let value = match words.as_slice() {
        [n] if number(n).is_some() => number(n),
        [name] => lookup(family, name),
        [name, op @ ("+" | "-"), n] => match (lookup(family, name), n.parse::<u16>().ok()) {
            (Some(b), Some(n)) => Some(if *op == "+" { b + i32::from(n) } else { b - i32::from(n) }),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok((words.join(" "), value))
}

fn lookup(family: NftFamily, name: &str) -> Option<i32> {
    family.priority_names().iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn validate_set(is_map: bool, name: &str, raw: &RawSet, path: &str, errs: &mut ValidationErrors) -> Option<SetSpec> {
    let before = errs.0.len();
    let sname = NftName::parse(name).map_err(|m| errs.push(path, m)).ok();
    let kind = NftText::word(&raw.kind, "type").map_err(|m| errs.push(format!("{path}.type"), m)).ok();
    if let Some(k) = &kind {
        if is_map != k.as_str().contains(':') {
            errs.push(
                format!("{path}.type"),
                if is_map { "a map's type is \"KEY : VALUE\" (e.g. \"ipv4_addr : verdict\")" } else { "a set's type has no ':'; a key with a value is a map (under \"maps\")" },
            );
        }
    }
    let mut flags = Vec::new();
    for (i, f) in raw.flags.iter().enumerate() {
        match SET_FLAGS.iter().find(|k| **k == f.as_str()) {
            Some(k) if !flags.contains(k) => flags.push(*k),
            Some(_) => errs.push(format!("{path}.flags[{i}]"), format!("{f:?} is listed twice")),
            None => errs.push(format!("{path}.flags[{i}]"), format!("{f:?} is not a set flag: use {}", SET_FLAGS.join(", "))),
        }
    }
    let timeout = raw.timeout.as_deref().and_then(|t| NftText::word(t, "timeout").map_err(|m| errs.push(format!("{path}.timeout"), m)).ok());
    let elements = raw.elements.as_ref().map(|els| {
        els.iter()
            .enumerate()
            .filter_map(|(i, e)| NftText::element(e).map_err(|m| errs.push(format!("{path}.elements[{i}]"), m)).ok())
            .collect()
    });
    (errs.0.len() == before).then_some(())?;
    Some(SetSpec { name: sname?, is_map, kind: kind?, flags, timeout, size: raw.size, elements })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: serde_json::Value) -> (NftablesState, Vec<String>) {
        let raw: RawNftables = serde_json::from_value(v).unwrap();
        let mut errs = ValidationErrors::default();
        let s = validate(raw, &mut errs);
        (s, errs.0.iter().map(|e| format!("{}: {}", e.path, e.message)).collect())
    }

    #[test]
    fn the_spec_example_is_valid() {
        let (s, errs) = run(json!({ "tables": { "inet hostguard": {
            "chains": { "forward": { "type": "filter", "hook": "forward", "priority": 0, "policy": "drop",
                "rules": ["iifname \"lxcbr0\" oifname \"eth0\" accept", "ct state established,related accept",
                          "iifname \"lxcbr0\" oifname \"lxcbr0\" drop", "tcp dport { 22, 80 } accept"] },
                        "helper": { "rules": ["meta comment \"a;b#c\" counter"] } },
            "sets": { "blocked": { "type": "ipv4_addr", "flags": ["interval"], "elements": ["192.0.2.0/24"] } },
            "maps": { "verdicts": { "type": "ipv4_addr : verdict", "elements": ["10.0.0.1 : accept"] } } } } }));
        assert!(errs.is_empty(), "{errs:?}");
        let t = &s.tables[0];
        assert_eq!(t.key(), "inet hostguard");
        assert_eq!(t.chains[0].name.as_str(), "forward");
        assert_eq!(t.chains[0].base.as_ref().unwrap().priority, "0");
        assert!(t.chains[1].base.is_none());
        assert_eq!(t.sets.len(), 2);
    }

    #[test]
    fn priorities_take_numbers_and_names() {
        for (v, want) in [(json!(0), 0), (json!(-150), -150), (json!("filter"), 0), (json!("filter + 10"), 10),
                          (json!("mangle - 5"), -155), (json!("-300"), -300)] {
            assert_eq!(parse_priority(NftFamily::Inet, &v).unwrap().1, want, "{v}");
        }
        assert_eq!(parse_priority(NftFamily::Bridge, &json!("filter")).unwrap().1, -200);
        for bad in [json!("filtre"), json!("filter +"), json!(1.5), json!(true), json!("filter * 2"), json!(1i64 << 40)] {
            assert!(parse_priority(NftFamily::Inet, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rule_that_would_be_a_second_statement_is_refused() {
        for bad in ["accept\nflush ruleset", "accept; flush ruleset", "accept } } table ip x { chain y {", "flush ruleset",
                    "delete table ip filter", "table ip x", "chain x", "include \"/etc/passwd\"", "accept # x",
                    "tcp dport { 22 accept", "comment \"x", "", "  ", "accept\r", "add rule ip filter INPUT drop",
                    "meta mark set 1 } include \"x\" {"] {
            assert!(NftText::rule(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["ct state established,related accept", "tcp dport { 22, 80 } accept", "meta comment \"a;b\" accept",
                     "ip saddr @blocked drop", "counter", "meta mark set 1", "iifname \"lxc*\" jump lxc"] {
            assert!(NftText::rule(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn errors_name_their_paths() {
        let (s, errs) = run(json!({ "tables": {
            "inet": {},
            "inte x": {},
            "ip 9bad": {},
            "ip ok": {
                "chains": {
                    "input": { "type": "filter", "hook": "forwrd", "priority": "fast", "policy": "reject" },
                    "half": { "hook": "input" },
                    "drop": {},
                    "rules": { "rules": ["accept", "accept; flush ruleset", "table ip filter"] }
                },
                "sets": { "s": { "type": "ipv4_addr : verdict", "flags": ["intervals"], "elements": ["1.2.3.4, 5.6.7.8"] } },
                "maps": { "m": { "type": "ipv4_addr" } }
            },
            "netdev edge": { "chains": { "in": { "type": "filter", "hook": "ingress", "priority": 0 } } }
        } }));
        assert!(s.tables.is_empty());
        let want = [
            r#"nftables.tables["inet"]: "#,
            r#"nftables.tables["inte x"]: "inte" is not a family"#,
            r#"nftables.tables["ip 9bad"]: "#,
            r#"nftables.tables["ip ok"].chains["input"].hook: "#,
            r#"nftables.tables["ip ok"].chains["input"].priority: "#,
            r#"nftables.tables["ip ok"].chains["input"].policy: "#,
            r#"nftables.tables["ip ok"].chains["half"]: "#,
            r#"nftables.tables["ip ok"].chains["drop"]: "#,
            r#"nftables.tables["ip ok"].chains["rules"].rules[1]: "#,
            r#"nftables.tables["ip ok"].chains["rules"].rules[2]: "#,
            r#"nftables.tables["ip ok"].sets["s"].type: "#,
            r#"nftables.tables["ip ok"].sets["s"].flags[0]: "#,
            r#"nftables.tables["ip ok"].sets["s"].elements[0]: "#,
            r#"nftables.tables["ip ok"].maps["m"].type: "#,
            r#"nftables.tables["netdev edge"].chains["in"].device: "#,
        ];
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
        for w in want {
            assert!(errs.iter().any(|e| e.starts_with(w)), "no error at {w}: {errs:#?}");
        }
    }

    #[test]
    fn names() {
        for good in ["hostguard", "nat_lxc", "docker-bridges", "f2b.sshd", "_x", "a/b"] {
            assert!(NftName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "9x", "-x", "a b", "a;b", "a\"b", "accept", "table", &"x".repeat(256)] {
            assert!(NftName::parse(bad).is_err(), "{bad}");
        }
    }
}
