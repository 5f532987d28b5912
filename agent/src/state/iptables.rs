//! The `iptables` section: owned chains per family and table, validated into typed values
//! (`Backend`, `Family`, `Table`, `ChainName`, `Policy`, `RuleArgs`) so the resource kind never
//! checks strings again.

use std::fmt;

use regex::Regex;

use super::types::{control_char_problem, name_problem, First, NameRule};
use super::{key_path, UniqueMap, ValidationErrors};

/// A program that writes its own rules beside hostguard (`"foreign"`); what each writes is
/// `iptables::neighbours`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Neighbour {
    Docker,
    Libvirt,
    Fail2ban,
    Ufw,
    KubeProxy,
    Firewalld,
}

impl Neighbour {
    pub const ALL: [Neighbour; 6] =
        [Neighbour::Docker, Neighbour::Libvirt, Neighbour::Fail2ban, Neighbour::Ufw, Neighbour::KubeProxy, Neighbour::Firewalld];

    pub fn parse(s: &str) -> Option<Neighbour> {
        Neighbour::ALL.into_iter().find(|n| n.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Neighbour::Docker => "docker",
            Neighbour::Libvirt => "libvirt",
            Neighbour::Fail2ban => "fail2ban",
            Neighbour::Ufw => "ufw",
            Neighbour::KubeProxy => "kube-proxy",
            Neighbour::Firewalld => "firewalld",
        }
    }

    pub fn known() -> String {
        Neighbour::ALL.iter().map(|n| format!("\"{}\"", n.name())).collect::<Vec<_>>().join(", ")
    }
}

/// Chains owned by hostguard, IPv4 and IPv6; chains and tables not listed are never touched.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Iptables")]
pub struct RawIptables {
    /// `auto` runs iptables-save/iptables-restore as installed; `nft` and `legacy` force
    /// iptables-nft-* or iptables-legacy-*.
    #[serde(default)]
    #[schemars(schema_with = "iptables_backend")]
    pub backend: Option<String>,
    /// IPv4 tables (filter, nat, mangle, raw, security) holding chains by name.
    #[serde(default)]
    #[schemars(schema_with = "iptables_tables")]
    pub ipv4: UniqueMap<UniqueMap<RawChain>>,
    /// IPv6 tables, as ipv4.
    #[serde(default)]
    #[schemars(schema_with = "iptables_tables")]
    pub ipv6: UniqueMap<UniqueMap<RawChain>>,
    /// Named neighbours of every listed chain (added to each chain's own `foreign`).
    #[serde(default)]
    #[schemars(schema_with = "iptables_foreign")]
    pub foreign: Vec<String>,
}

/// One owned chain: its policy and rules.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Chain")]
pub struct RawChain {
    /// Policy of a built-in chain (user chains have none).
    #[serde(default)]
    #[schemars(schema_with = "iptables_policy")]
    pub policy: Option<String>,
    /// true: rules not in `rules` are removed (except `ignore` matches). false: the listed rules
    /// are ensured present, in order, and no other rule is ever removed.
    #[serde(default)]
    pub purge: bool,
    /// Regular expressions matched against a rule as iptables-save prints it (`-A CHAIN`
    /// included); matching rules are never removed. Only with purge.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Named neighbours whose rules in this chain are theirs, never drift and never removed:
    /// docker, libvirt, fail2ban, ufw, kube-proxy, firewalld.
    #[serde(default)]
    #[schemars(schema_with = "iptables_foreign")]
    pub foreign: Vec<String>,
    /// Rules as written after `-A CHAIN` (`-i lxcbr0 -o eth0 -j ACCEPT`), split with shell
    /// quoting; compared in the form iptables-save prints. `""` is a counting rule.
    #[serde(default)]
    pub rules: Vec<String>,
}

/// Which iptables implementation hostguard drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Whatever `iptables -V` reports: the plain `iptables-save`/`iptables-restore` names.
    Auto,
    Nft,
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn key(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
    /// The command prefix: `iptables` or `ip6tables`.
    pub fn command(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Table {
    Filter,
    Nat,
    Mangle,
    Raw,
    Security,
}

impl Table {
    pub const ALL: [Table; 5] = [Table::Filter, Table::Nat, Table::Mangle, Table::Raw, Table::Security];

    pub fn parse(s: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
            Table::Mangle => "mangle",
            Table::Raw => "raw",
            Table::Security => "security",
        }
    }

    /// The chains the kernel creates with the table; only these have a policy.
    pub fn builtin_chains(self) -> &'static [&'static str] {
        match self {
            Table::Filter | Table::Security => &["INPUT", "FORWARD", "OUTPUT"],
            Table::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
            Table::Mangle => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
            Table::Raw => &["PREROUTING", "OUTPUT"],
        }
    }

    pub fn is_builtin(self, chain: &str) -> bool {
        self.builtin_chains().contains(&chain)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A chain name iptables accepts and that cannot be mistaken for an option or a verdict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainName(String);

/// Longest chain name the kernel takes (XT_EXTENSION_MAXNAMELEN - 1).
pub const MAX_CHAIN_NAME: usize = 28;

const CHAIN_NAME: NameRule = NameRule {
    what: "a chain name",
    max: MAX_CHAIN_NAME,
    limit: "the kernel's limit",
    extra: &['_', '-', '.', ':', '@', '+'],
    first: First::Not(&['-', '!']),
    reserved: &["ACCEPT", "DROP", "RETURN", "QUEUE", "REJECT", "NFQUEUE"],
    reserved_is: "a verdict, not a chain",
};

impl ChainName {
    pub fn parse(s: &str) -> Result<ChainName, String> {
        match name_problem(s, &CHAIN_NAME) {
            Some(p) => Err(p),
            None => Ok(ChainName(s.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The policy of a built-in chain: the kernel takes only these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    Accept,
    Drop,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "ACCEPT" => Some(Policy::Accept),
            "DROP" => Some(Policy::Drop),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Accept => "ACCEPT",
            Policy::Drop => "DROP",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule as the document wrote it, split into arguments with shell-like quoting
/// (`-m comment --comment "allow ssh"` is four arguments). It names no chain and no command:
/// the chain is where it is listed, and hostguard decides how it is added.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleArgs {
    text: String,
    args: Vec<String>,
}

/// Options that would make a rule an iptables command of its own rather than a rule. A `match`,
/// not a list searched per argument: that search was a tenth of validating 10,000 rules.
fn is_command_option(a: &str) -> bool {
    matches!(
        a,
        "-A" | "--append" | "-I" | "--insert" | "-D" | "--delete" | "-R" | "--replace" | "-N" | "--new-chain" | "--new"
            | "-X" | "--delete-chain" | "-F" | "--flush" | "-Z" | "--zero" | "-P" | "--policy" | "-E" | "--rename-chain"
            | "-L" | "--list" | "-S" | "--list-rules" | "-C" | "--check" | "-t" | "--table" | "-h" | "--help" | "-V"
            | "--version"
            // Counters are not part of a rule: iptables-save prints the rule without them, so it
            // would never match.
            | "-c" | "--set-counters"
    )
}

impl RuleArgs {
    pub fn parse(text: &str) -> Result<RuleArgs, String> {
        if let Some(p) = control_char_problem(text) {
            return Err(format!("the rule {p}"));
        }
        // Without a quote, a backslash or a `#` (a comment where a word starts), shell splitting
        // is splitting at blanks (a newline is a control character, refused above): most rules,
        // split without shlex's character-by-character copy.
        let args = if text.bytes().any(|b| matches!(b, b'\'' | b'"' | b'\\' | b'#')) {
            shlex::split(text).ok_or_else(|| {
                format!("{text:?} cannot be split into arguments: an unclosed quote or a trailing backslash")
            })?
        } else {
            text.split([' ', '\t']).filter(|w| !w.is_empty()).map(str::to_string).collect()
        };
        // No arguments is a rule too: `-A CHAIN`, no match and no target, which counts packets
        // (`show` prints it as ""). Every argument is made of the text's characters, which were
        // checked for control characters above.
        for a in args.iter().filter(|a| a.starts_with('-')) {
            if is_command_option(a) || a.starts_with("--append=") || a.starts_with("--table=") {
                return Err(format!(
                    "{text:?} contains {a:?}: a rule names no chain, table or command; list it under its chain"
                ));
            }
        }
        Ok(RuleArgs { text: text.to_string(), args })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }
}

/// One owned chain.
#[derive(Debug, Clone)]
pub struct ChainSpec {
    pub family: Family,
    pub table: Table,
    pub chain: ChainName,
    /// Only on built-in chains.
    pub policy: Option<Policy>,
    pub purge: bool,
    /// Compiled at validation: a bad pattern is a document error, not a run-time surprise.
    pub ignore: Vec<Regex>,
    /// Named neighbours, the chain's own and the section's, deduplicated.
    pub foreign: Vec<Neighbour>,
    pub rules: Vec<RuleArgs>,
}

impl ChainSpec {
    pub fn builtin(&self) -> bool {
        self.table.is_builtin(self.chain.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct IptablesState {
    pub backend: Backend,
    /// Sorted by family, table, chain: the order of the report. Shared with the plan, which
    /// outlives the borrow of the document, so large rule lists are not copied.
    pub chains: Vec<std::sync::Arc<ChainSpec>>,
}

pub fn validate(raw: RawIptables, errs: &mut ValidationErrors) -> IptablesState {
    let backend = match raw.backend.as_deref() {
        None | Some("auto") => Backend::Auto,
        Some("nft") => Backend::Nft,
        Some("legacy") => Backend::Legacy,
        Some(other) => {
            errs.push("iptables.backend", format!("{other:?} is not a backend: use \"auto\", \"nft\" or \"legacy\""));
            Backend::Auto
        }
    };
    let section_foreign = neighbours(&raw.foreign, "iptables.foreign", errs);
    let mut chains = Vec::new();
    for (family, tables) in [(Family::V4, &raw.ipv4), (Family::V6, &raw.ipv6)] {
        let fpath = format!("iptables.{}", family.key());
        for (tname, tchains) in tables.iter() {
            let tpath = key_path(&fpath, tname);
            let Some(table) = Table::parse(tname) else {
                errs.push(&tpath, format!("{tname:?} is not a table: use filter, nat, mangle, raw or security"));
                continue;
            };
            for (cname, raw_chain) in tchains.iter() {
                let cpath = key_path(&tpath, cname);
                if let Some(mut spec) = validate_chain(family, table, cname, raw_chain, &cpath, errs) {
                    spec.foreign.extend(section_foreign.iter().copied());
                    spec.foreign.sort();
                    spec.foreign.dedup();
                    chains.push(spec);
                }
            }
        }
    }
    chains.sort_by(|a, b| (a.family, a.table, &a.chain).cmp(&(b.family, b.table, &b.chain)));
    IptablesState { backend, chains: chains.into_iter().map(std::sync::Arc::new).collect() }
}

fn validate_chain(
    family: Family,
    table: Table,
    name: &str,
    raw: &RawChain,
    path: &str,
    errs: &mut ValidationErrors,
) -> Option<ChainSpec> {
    let before = errs.0.len();
    let chain = ChainName::parse(name).map_err(|m| errs.push(path, m)).ok();
    let builtin_elsewhere = Table::ALL.iter().any(|t| t.is_builtin(name));
    if chain.is_some() && builtin_elsewhere && !table.is_builtin(name) {
        errs.push(
            path,
            format!(
                "{name} is not a built-in chain of the {table} table ({}); a user chain named like a built-in one is almost certainly a mistake",
                table.builtin_chains().join(", ")
            ),
        );
    }
    let policy = match &raw.policy {
        None => None,
        Some(p) => match Policy::parse(p) {
            None => {
                errs.push(format!("{path}.policy"), format!("{p:?} is not a policy: use \"ACCEPT\" or \"DROP\""));
                None
            }
            Some(_) if !table.is_builtin(name) => {
                errs.push(
                    format!("{path}.policy"),
                    format!(
                        "{name} is not a built-in chain of the {table} table ({}); only built-in chains have a policy",
                        table.builtin_chains().join(", ")
                    ),
                );
                None
            }
            some => some,
        },
    };
    let mut ignore = Vec::new();
    for (i, pat) in raw.ignore.iter().enumerate() {
        match Regex::new(pat) {
            Ok(r) => ignore.push(r),
            Err(e) => errs.push(format!("{path}.ignore[{i}]"), format!("{pat:?} is not a regular expression: {e}")),
        }
    }
    if !raw.purge && !raw.ignore.is_empty() {
        errs.push(
            format!("{path}.ignore"),
            "ignore only has a meaning with \"purge\": true (without purge, unlisted rules are kept anyway)",
        );
    }
    let mut rules = Vec::new();
    for (i, text) in raw.rules.iter().enumerate() {
        match RuleArgs::parse(text) {
            Ok(r) => rules.push(r),
            Err(m) => errs.push(format!("{path}.rules[{i}]"), m),
        }
    }
    let foreign = neighbours(&raw.foreign, &format!("{path}.foreign"), errs);
    if errs.0.len() != before {
        return None;
    }
    Some(ChainSpec {
        family,
        table,
        chain: chain?,
        policy,
        purge: raw.purge,
        ignore,
        foreign,
        rules,
    })
}

/// `foreign` names: a name hostguard does not know is an error listing the ones it knows.
fn neighbours(names: &[String], path: &str, errs: &mut ValidationErrors) -> Vec<Neighbour> {
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        match Neighbour::parse(n) {
            Some(k) => out.push(k),
            None => errs.push(format!("{path}[{i}]"), format!("{n:?} is not a neighbour hostguard knows: use {}", Neighbour::known())),
        }
    }
    out
}

// Field schemas for values the serde layer keeps as `serde_json::Value` or `String`, beside
// their fields; each says what `validate` accepts.

fn iptables_backend(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    super::schema::one_of(&["auto", "nft", "legacy"])
}

fn iptables_policy(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    super::schema::one_of(&["ACCEPT", "DROP"])
}

/// `foreign`: a list of the neighbours hostguard knows.
fn iptables_foreign(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = Neighbour::ALL.iter().map(|n| n.name()).collect();
    schemars::json_schema!({ "type": "array", "items": { "type": "string", "enum": names } })
}

/// `iptables.ipv4` / `ipv6`: tables by name, each holding chains by name.
fn iptables_tables(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let chain = generator.subschema_for::<RawChain>();
    schemars::json_schema!({
        "type": "object",
        "propertyNames": { "enum": ["filter", "nat", "mangle", "raw", "security"] },
        "additionalProperties": {
            "type": "object",
            "description": "Chains of this table by name (built-in such as FORWARD, or user-defined); each one listed is owned by hostguard.",
            "propertyNames": { "maxLength": MAX_CHAIN_NAME, "pattern": "^[A-Za-z0-9_.:@+][A-Za-z0-9_.:@+-]*$" },
            "additionalProperties": chain
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: serde_json::Value) -> (IptablesState, Vec<String>) {
        let raw: RawIptables = serde_json::from_value(v).unwrap();
        let mut errs = ValidationErrors::default();
        let s = validate(raw, &mut errs);
        (s, errs.0.iter().map(|e| format!("{}: {}", e.path, e.message)).collect())
    }

    #[test]
    fn seed_policy_is_valid() {
        let (s, errs) = run(json!({
            "backend": "auto",
            "ipv4": { "filter": { "FORWARD": {
                "policy": "DROP", "purge": true, "ignore": ["-j DOCKER"],
                "rules": ["-i docker0 -o eth0 -j ACCEPT",
                          "-i eth0 -o docker0 -m state --state RELATED,ESTABLISHED -j ACCEPT",
                          "-i docker0 -o docker0 -j DROP"] } } },
            "ipv6": {}
        }));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(s.chains.len(), 1);
        assert_eq!(s.chains[0].policy, Some(Policy::Drop));
        assert_eq!(s.chains[0].rules[1].args().len(), 10);
    }

    #[test]
    fn rules_split_with_shell_quoting() {
        let r = RuleArgs::parse(r#"-m comment --comment "allow ssh" -j ACCEPT"#).unwrap();
        assert_eq!(r.args(), ["-m", "comment", "--comment", "allow ssh", "-j", "ACCEPT"]);
        let r = RuleArgs::parse("-m comment --comment 'a \"b\"' -j ACCEPT").unwrap();
        assert_eq!(r.args()[3], "a \"b\"");
    }

    /// The blank-splitting fast path reads a rule as shell splitting does.
    #[test]
    fn rules_without_quotes_split_as_the_shell_does() {
        for text in ["-p tcp  --dport 22\t-j ACCEPT", " -j DROP ", "", "  ", "-m comment --comment a\u{a0}b -j ACCEPT",
                     "-m comment --comment x$(id);y|z -j ACCEPT", "-s 10.0.0.0/8 -j \u{e9}t\u{e9}"] {
            assert_eq!(RuleArgs::parse(text).unwrap().args(), shlex::split(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn every_command_option_is_refused_and_look_alikes_are_not() {
        for o in ["-A", "--append", "-I", "--insert", "-D", "--delete", "-R", "--replace", "-N", "--new-chain", "--new",
                  "-X", "--delete-chain", "-F", "--flush", "-Z", "--zero", "-P", "--policy", "-E", "--rename-chain",
                  "-L", "--list", "-S", "--list-rules", "-C", "--check", "-t", "--table", "-h", "--help", "-V",
                  "--version", "-c", "--set-counters"] {
            let e = RuleArgs::parse(&format!("-p tcp {o} X -j ACCEPT")).unwrap_err();
            assert!(e.contains("a rule names no chain"), "{o}: {e}");
        }
        for ok in ["-m comment --comment A", "-j LOG --log-prefix x", "-m set --match-set a src", "-i eth0 -j ACCEPT", "-d 10.0.0.1 -g X"] {
            assert!(RuleArgs::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rules_that_cannot_be_split_or_name_a_chain_are_refused() {
        for bad in ["-j ACCEPT \"", "-A FORWARD -j ACCEPT", "-I INPUT 1 -j DROP", "-D X", "-t nat -j MASQUERADE",
                    "-j ACCEPT\n-A INPUT -j DROP", "--append=INPUT -j DROP", "-F", "-P INPUT DROP", "-N X"] {
            assert!(RuleArgs::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn errors_name_their_paths() {
        let (_, errs) = run(json!({
            "backend": "iptables",
            "ipv4": {
                "filtre": {},
                "filter": {
                    "MYCHAIN": { "policy": "DROP", "rules": ["-j ACCEPT"] },
                    "INPUT": { "policy": "REJECT", "purge": true, "ignore": ["("], "rules": ["-A INPUT -j DROP", "-j 'x"] },
                    "BAD NAME": {},
                    "FORWARD": { "ignore": ["x"] }
                }
            },
            "ipv6": { "nat": { "THIS-NAME-IS-LONGER-THAN-28-CHARS": {}, "FORWARD": {} } }
        }));
        let want = [
            "iptables.backend: ",
            r#"iptables.ipv4["filter"]["BAD NAME"]: "#,
            r#"iptables.ipv4["filter"]["FORWARD"].ignore: "#,
            r#"iptables.ipv4["filter"]["INPUT"].policy: "#,
            r#"iptables.ipv4["filter"]["INPUT"].ignore[0]: "#,
            r#"iptables.ipv4["filter"]["INPUT"].rules[0]: "#,
            r#"iptables.ipv4["filter"]["INPUT"].rules[1]: "#,
            r#"iptables.ipv4["filter"]["MYCHAIN"].policy: "#,
            r#"iptables.ipv4["filtre"]: "#,
            r#"iptables.ipv6["nat"]["THIS-NAME-IS-LONGER-THAN-28-CHARS"]: "#,
            r#"iptables.ipv6["nat"]["FORWARD"]: FORWARD is not a built-in chain of the nat table"#,
        ];
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
        for w in want {
            assert!(errs.iter().any(|e| e.starts_with(w)), "no error at {w}: {errs:#?}");
        }
    }

    #[test]
    fn chain_names() {
        for good in ["DOCKER-USER", "DOCKER-ISOLATION-STAGE-1", "f2b-sshd", "INPUT"] {
            assert!(ChainName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "-X", "!x", "a b", "ACCEPT", "x\"y", "a;b"] {
            assert!(ChainName::parse(bad).is_err(), "{bad}");
        }
    }
}
