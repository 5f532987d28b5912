//! What `nft list` prints, read into tables, chains, sets and maps: the form hostguard compares
//! in, so that two spellings nft stores alike are equal. Lines are taken as nft prints them
//! (trimmed); only structure is recovered here, nothing is re-spelled. A set's elements are sorted,
//! since a hash set lists them in the kernel's hash order, which differs between two tables
//! holding the same elements; `expires` is dropped, since it counts down by itself.

use std::collections::BTreeMap;

use crate::state::nftables::{split_top_level, NftFamily};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub tables: Vec<Table>,
}

impl Ruleset {
    pub fn table(&self, family: &str, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.family == family && t.name == name)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub family: String,
    pub name: String,
    /// Lines of the table itself (`flags dormant`, `comment "…"`).
    pub attrs: Vec<String>,
    pub chains: BTreeMap<String, Chain>,
    pub sets: BTreeMap<String, Set>,
    /// Blocks hostguard does not model (flowtables, named counters and quotas, ct helpers), each
    /// as its lines joined: in an owned table they are drift, since the table is owned whole.
    pub other: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// The chain's own lines: `type filter hook input priority filter; policy accept;`, a comment.
    pub header: Vec<String>,
    pub rules: Vec<String>,
}

impl Chain {
    /// The hook of a base chain, read from its header line.
    pub fn hook(&self, family: &str) -> Option<Hook> {
        let line = self.header.iter().find(|l| l.starts_with("type "))?;
        Hook::parse(line, family)
    }
}

/// Where a base chain sits: at which hook, in which order, with which policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub kind: String,
    pub hook: String,
    pub priority: i32,
    pub policy: String,
    pub device: Option<String>,
}

impl Hook {
    /// `type filter hook input priority filter + 10; policy accept;`
    pub fn parse(line: &str, family: &str) -> Option<Hook> {
        let (spec, rest) = line.split_once(';').unwrap_or((line, ""));
        let words: Vec<&str> = spec.split_whitespace().collect();
        let at = |k: &str| words.iter().position(|w| *w == k);
        let kind = words.get(at("type")? + 1)?.to_string();
        let hook = words.get(at("hook")? + 1)?.to_string();
        let device = at("device").and_then(|i| words.get(i + 1)).map(|d| d.trim_matches('"').to_string());
        let prio = &words[at("priority")? + 1..];
        let family = NftFamily::parse(family).unwrap_or(NftFamily::Inet);
        let named = |n: &str| n.parse::<i32>().ok().or_else(|| family.priority_names().iter().find(|(k, _)| *k == n).map(|(_, v)| *v));
        let priority = match prio {
            [n] => named(n)?,
            [n, "+", d] => named(n)?.checked_add(d.parse().ok()?)?,
            [n, "-", d] => named(n)?.checked_sub(d.parse().ok()?)?,
            _ => return None,
        };
        let policy = rest
            .split(';')
            .find_map(|p| p.trim().strip_prefix("policy "))
            .unwrap_or("accept")
            .trim()
            .to_string();
        Some(Hook { kind, hook, priority, policy, device })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    pub is_map: bool,
    /// `type ipv4_addr`, `flags interval`, `size 65535`, `timeout 1h`, in nft's order.
    pub props: Vec<String>,
    /// Sorted.
    pub elements: Vec<String>,
}

/// Read `nft list ruleset` / `nft list table` output. Fails on text that is not nft's listing, so a
/// changed output format is an error rather than a silently empty table.
pub fn parse(text: &str) -> Result<Ruleset, String> {
    let mut lines = Logical::new(text);
    let mut out = Ruleset::default();
    while let Some((n, line)) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["table", family, name, "{"] = words.as_slice() else {
            return Err(format!("line {n}: expected `table FAMILY NAME {{`, found {line:?}"));
        };
        out.tables.push(parse_table(&mut lines, family, &unquote(name))?);
    }
    Ok(out)
}

fn parse_table(lines: &mut Logical, family: &str, name: &str) -> Result<Table, String> {
    let mut t = Table { family: family.to_string(), name: name.to_string(), ..Table::default() };
    loop {
        let Some((n, line)) = lines.next() else {
            return Err(format!("table {family} {name}: the listing ends inside the table"));
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["}"] => return Ok(t),
            ["chain", cname, "{"] => {
                let c = parse_chain(lines, cname)?;
                t.chains.insert(unquote(cname), c);
            }
            [kind @ ("set" | "map"), sname, "{"] => {
                let s = parse_set(lines, *kind == "map", sname)?;
                t.sets.insert(unquote(sname), s);
            }
            [.., "{"] => {
                let mut block = vec![line.clone()];
                loop {
                    let Some((_, l)) = lines.next() else { return Err(format!("line {n}: the listing ends inside {line:?}")) };
                    let end = l == "}";
                    block.push(l);
                    if end {
                        break;
                    }
                }
                t.other.push(block.join("\n"));
            }
            _ if line.ends_with('{') || line.contains('}') => return Err(format!("line {n}: unexpected {line:?} in table {family} {name}")),
            _ => t.attrs.push(line.clone()),
        }
    }
}

fn parse_chain(lines: &mut Logical, name: &str) -> Result<Chain, String> {
    let mut c = Chain::default();
    loop {
        let Some((_, line)) = lines.next() else { return Err(format!("chain {name}: the listing ends inside the chain")) };
        if line == "}" {
            return Ok(c);
        }
        if line.is_empty() {
            continue;
        }
        let header = c.rules.is_empty()
            && (line.starts_with("type ") || line.starts_with("comment \"") || line.starts_with("devices = ") || line.starts_with("policy "));
        if header {
            c.header.push(line);
        } else {
            c.rules.push(line);
        }
    }
}

fn parse_set(lines: &mut Logical, is_map: bool, name: &str) -> Result<Set, String> {
    let mut s = Set { is_map, ..Set::default() };
    loop {
        let Some((_, line)) = lines.next() else { return Err(format!("set {name}: the listing ends inside the set")) };
        if line == "}" {
            s.elements.sort();
            return Ok(s);
        }
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("elements = ") {
            let inner = rest.trim().strip_prefix('{').and_then(|r| r.strip_suffix('}')).ok_or_else(|| format!("set {name}: elements not in braces: {line:?}"))?;
            for e in split_top_level(inner, ',') {
                // nft never lists an element whose braces or quotes do not balance, nor one with
                // a brace of its own outside quotes (a verdict, a concatenation, counters and a
                // comment have none); read as one, it would render as more (or fewer) elements,
                // or as blocks, than it is.
                if braces(e, false) != (0, false) {
                    return Err(format!("set {name}: element {e:?} leaves a brace or quote unbalanced"));
                }
                if unquoted_brace(e) {
                    return Err(format!("set {name}: element {e:?} holds a brace, which nft never lists in an element"));
                }
                let e = element(e);
                if !e.is_empty() {
                    s.elements.push(e);
                }
            }
        } else {
            s.props.push(line);
        }
    }
}

/// One element as compared: spaces outside quotes collapsed, the run-time `expires …` left out.
/// Quoted text (an element's `comment "…"`, an interface name) is kept as it is, so a word
/// `expires` inside a comment stays and the quotes stay balanced.
pub fn element(e: &str) -> String {
    let words = quoted_words(e);
    let mut out: Vec<&str> = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        if w == "expires" {
            it.next();
            continue;
        }
        out.push(w);
    }
    out.join(" ")
}

/// `s` split at whitespace outside double quotes.
fn quoted_words(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (None, false);
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        }
        if c.is_whitespace() && !quoted {
            if let Some(b) = start.take() {
                out.push(&s[b..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(b) = start {
        out.push(&s[b..]);
    }
    out
}

/// The table as an `nft -f` definition: what a `--confirm` rollback loads to put it back.
pub fn render(t: &Table) -> String {
    let mut s = format!("table {} {} {{\n", t.family, quoted(&t.name));
    for a in &t.attrs {
        s.push_str(&format!("\t{a}\n"));
    }
    for (name, set) in &t.sets {
        s.push_str(&format!("\t{} {} {{\n", if set.is_map { "map" } else { "set" }, quoted(name)));
        for p in &set.props {
            s.push_str(&format!("\t\t{p}\n"));
        }
        if !set.elements.is_empty() {
            s.push_str(&format!("\t\telements = {{ {} }}\n", set.elements.join(", ")));
        }
        s.push_str("\t}\n");
    }
    for (name, c) in &t.chains {
        s.push_str(&format!("\tchain {} {{\n", quoted(name)));
        for l in c.header.iter().chain(&c.rules) {
            s.push_str(&format!("\t\t{l}\n"));
        }
        s.push_str("\t}\n");
    }
    for b in &t.other {
        s.push_str(&format!("\t{b}\n"));
    }
    s.push_str("}\n");
    s
}

/// The table as an `nft -f` script that loads it into an empty table of that name, in two blocks
/// so that a `jump` to a chain listed later resolves: sets, other objects and chains with their
/// headers first, then every chain's rules.
pub fn restore(t: &Table) -> String {
    let mut first = Table { chains: t.chains.iter().map(|(n, c)| (n.clone(), Chain { header: c.header.clone(), rules: Vec::new() })).collect(), ..t.clone() };
    let mut s = render(&first);
    first.attrs.clear();
    first.sets.clear();
    first.other.clear();
    first.chains = t.chains.iter().filter(|(_, c)| !c.rules.is_empty()).map(|(n, c)| (n.clone(), Chain { header: Vec::new(), rules: c.rules.clone() })).collect();
    if !first.chains.is_empty() {
        s.push_str(&render(&first));
    }
    s
}

/// A name as nft takes it: bare when it is an identifier, else in quotes (an empty name, one
/// with a space or brace), so that it reads back as the same one word.
fn quoted(name: &str) -> String {
    let bare = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if bare { name.to_string() } else { format!("\"{name}\"") }
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

/// Lines with surrounding space removed, and a line whose braces do not balance joined with the
/// next ones until they do (nft wraps long element lists).
struct Logical<'a> {
    inner: std::iter::Enumerate<std::str::Lines<'a>>,
}

impl<'a> Logical<'a> {
    fn new(text: &'a str) -> Self {
        Logical { inner: text.lines().enumerate() }
    }

    fn next(&mut self) -> Option<(usize, String)> {
        let (n, first) = self.inner.next()?;
        let mut line = first.trim().to_string();
        // A block opener (`chain x {`) opens on purpose; anything else that leaves a brace open
        // continues on the next line. The depth is counted piece by piece (a set of 10,000
        // elements is one logical line of a few thousand listed ones): rescanning the joined line
        // at each step made reading it quadratic.
        let (mut depth, mut quoted) = braces(&line, false);
        if depth > 0 && opens_block(&line) {
            return Some((n + 1, line));
        }
        while depth > 0 {
            let Some((_, more)) = self.inner.next() else { break };
            let more = more.trim();
            let (d, q) = braces(more, quoted);
            (depth, quoted) = (depth + d, q);
            line.push(' ');
            line.push_str(more);
        }
        Some((n + 1, line))
    }
}

fn opens_block(line: &str) -> bool {
    line.ends_with('{') && open_braces(line) == 1 && !line.starts_with("elements = ") && !line.contains(" = {")
}

fn open_braces(line: &str) -> i32 {
    braces(line, false).0
}

/// Whether `text` holds a brace outside quotes.
fn unquoted_brace(text: &str) -> bool {
    let mut quoted = false;
    text.chars().any(|c| {
        if c == '"' {
            quoted = !quoted;
        }
        !quoted && (c == '{' || c == '}')
    })
}

/// The braces `text` opens (less those it closes) outside quotes, starting inside a quote or
/// not, and whether it ends inside one.
fn braces(text: &str, mut quoted: bool) -> (i32, bool) {
    let mut depth = 0;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            _ => {}
        }
    }
    (depth, quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "table inet hg {
	set blocked {
		type ipv4_addr
		flags interval
		elements = { 192.0.2.0/24, 10.0.0.1,
			     198.51.100.7 }
	}

	set dyn {
		type ipv4_addr
		size 65535
		flags dynamic,timeout
		timeout 1h
		elements = { 1.2.3.4 timeout 1h expires 59m59s996ms }
	}

	map m {
		type ipv4_addr : verdict
		elements = { 10.1.1.1 : accept, 10.2.2.2 : drop }
	}

	chain forward {
		type filter hook forward priority filter + 10; policy drop;
		ct state { established, related } accept
		iifname \"lxcbr0\" oifname \"eth0\" counter accept
		ip daddr vmap { 10.0.0.1 : accept, 10.0.0.2 : drop }
	}

	chain other {
		ip daddr vmap @m
	}

	flowtable f {
		hook ingress priority filter
		devices = { lo }
	}
}
table ip nat {
	chain POSTROUTING {
		type nat hook postrouting priority srcnat; policy accept;
	}
}
";

    #[test]
    fn reads_tables_chains_sets_and_maps() {
        let r = parse(LISTING).unwrap();
        assert_eq!(r.tables.len(), 2);
        let t = r.table("inet", "hg").unwrap();
        assert_eq!(t.sets["blocked"].elements, ["10.0.0.1", "192.0.2.0/24", "198.51.100.7"]);
        assert_eq!(t.sets["dyn"].elements, ["1.2.3.4 timeout 1h"]);
        assert!(t.sets["m"].is_map);
        let f = &t.chains["forward"];
        assert_eq!(f.rules.len(), 3);
        assert_eq!(f.rules[2], "ip daddr vmap { 10.0.0.1 : accept, 10.0.0.2 : drop }");
        let h = f.hook("inet").unwrap();
        assert_eq!((h.hook.as_str(), h.priority, h.policy.as_str()), ("forward", 10, "drop"));
        assert!(t.chains["other"].hook("inet").is_none());
        assert_eq!(t.other.len(), 1);
        let nat = r.table("ip", "nat").unwrap().chains["POSTROUTING"].hook("ip").unwrap();
        assert_eq!(nat.priority, 100);
        // What render writes reads back as the same table.
        let again = parse(&render(t)).unwrap();
        assert_eq!(again.tables[0], *t);
    }

    /// Found by the nft_listing fuzz target: `expires` inside an element's quoted comment was
    /// dropped with the word after it, leaving an unclosed quote, so render then parse swallowed
    /// the set's closing brace into its elements.
    #[test]
    fn an_element_comment_holding_expires_reads_back() {
        let text = "table inet x {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.1 comment \"it  expires soon\", 10.0.0.2 timeout 1h expires 5m }\n\t}\n}\n";
        let t = parse(text).unwrap().tables.remove(0);
        assert_eq!(t.sets["s"].elements, ["10.0.0.1 comment \"it  expires soon\"", "10.0.0.2 timeout 1h"]);
        assert_eq!(parse(&render(&t)).unwrap().tables, [t.clone()]);
        assert_eq!(parse(&restore(&t)).unwrap().tables[0].sets, t.sets);
    }

    /// An empty set, chain or table name (`set "" {`) rendered bare read back as another
    /// block: names that are not identifiers are rendered quoted.
    #[test]
    fn names_that_are_not_identifiers_read_back() {
        let t = parse("table inet \"\" {\n\tset \"\" {\n\t\ttype ipv4_addr\n\t}\n\tchain \"9c\" {\n\t\taccept\n\t}\n}\n").unwrap().tables.remove(0);
        assert_eq!((t.name.as_str(), t.sets.len(), t.chains.len(), t.other.len()), ("", 1, 1, 0));
        assert_eq!(parse(&render(&t)).unwrap().tables, [t.clone()]);
    }

    /// Found by the nft_listing fuzz target: an element holding a `}` (its line also closed the
    /// set) was read as one element, and rendered beside others it swallowed them.
    #[test]
    fn an_element_with_unbalanced_braces_is_not_a_listing() {
        let text = "table ip t {\n\tmap m {\n\t\ttype ifname : verdict\n\t\telements = { \"a\" : accept,\n\t\t\t\"b\" : drop }\u{2}\t}\n\t\telements = { \"c\" : accept }\n\t}\n}\n";
        assert!(parse(text).unwrap_err().contains("unbalanced"), "{:?}", parse(text));
    }

    /// Found by the nft_listing fuzz target in CI: an element holding balanced braces
    /// (`"docker0" : jump x { type ifname : verdict ... }`) swallowed the set's closing brace and
    /// the blocks after it, and rendered it read back as other sets and maps.
    #[test]
    fn an_element_holding_braces_is_not_a_listing() {
        let text = "table ip t {\n\tmap m {\n\t\ttype ifname : verdict\n\t\telements = { \"a\" : jump x { type ifname : verdict elements = { \"b\" : accept } } }\n\t}\n}\n";
        assert!(parse(text).unwrap_err().contains("holds a brace"), "{:?}", parse(text));
        // A brace inside a quoted comment is the comment's.
        let quoted = "table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.1 comment \"{x}\" }\n\t}\n}\n";
        assert_eq!(parse(quoted).unwrap().tables[0].sets["s"].elements, ["10.0.0.1 comment \"{x}\""]);
    }

    #[test]
    fn text_that_is_not_a_listing_is_an_error() {
        for bad in ["garbage", "table inet x {", "table inet x {\n chain y {\n", "table inet x {\n } }\n}"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse("").unwrap(), Ruleset::default());
    }
}
