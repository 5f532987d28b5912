//! The `iptables-save` text format: parsing what real hosts print, and rendering restore input.
//!
//! A rule's identity is its argument vector as iptables-restore would read the line, so the
//! tokenizer follows iptables-restore's own quoting (double quotes, backslash escapes inside
//! them; single quotes are ordinary characters), not the shell's.

use std::borrow::Cow;
use std::fmt::Write as _;

/// One rule as the host holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Rule {
    /// Arguments after `-A CHAIN`.
    pub args: Vec<String>,
}

impl Rule {
    pub fn new(args: Vec<String>) -> Rule {
        Rule { args }
    }

    /// The rule as iptables-save prints it, `-A CHAIN` included: what `ignore` patterns match.
    pub fn line(&self, chain: &str) -> String {
        display_line(chain, &self.args)
    }

    /// The rule as a document writes it (shell quoting, so it splits back to the same args).
    pub fn doc_text(&self) -> String {
        shlex::try_join(self.args.iter().map(String::as_str)).unwrap_or_else(|_| self.args.join(" "))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// `None` for user-defined chains (`-` in the save format).
    pub policy: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDump {
    pub name: String,
    pub chains: Vec<Chain>,
}

impl TableDump {
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
}

/// Parse `iptables-save` output: every table it holds. Tolerates comments and warnings (`#`),
/// packet counters (`[p:b]` before a rule, `-c p b` inside it), blank lines and empty chains.
pub fn parse(text: &str) -> Result<Vec<TableDump>, String> {
    let mut p = Parser::default();
    for line in text.lines() {
        p.line(line);
    }
    p.finish()
}

/// `parse`, a line at a time: so the output of `iptables-save` is read while it is printed.
#[derive(Default)]
pub struct Parser {
    tables: Vec<TableDump>,
    current: Option<TableDump>,
    /// The chains of the current table by name: a kube-proxy node has tens of thousands, and a
    /// rule's chain is looked up for every rule. The last one used is tried first (iptables-save
    /// prints each chain's rules together).
    index: foldhash::HashMap<String, usize>,
    last: usize,
    /// Lines seen, for messages.
    n: usize,
    /// The first line that could not be read; the lines after it are not.
    error: Option<String>,
}

impl Parser {
    /// One line, without its newline.
    pub fn line(&mut self, raw: &str) {
        self.n += 1;
        if self.error.is_none() {
            if let Err(e) = self.read(raw) {
                self.error = Some(e);
            }
        }
    }

    /// Every table the lines held, or the first line that could not be read.
    pub fn finish(self) -> Result<Vec<TableDump>, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some(t) = self.current {
            return Err(format!("table {} was not committed (truncated output?)", t.name));
        }
        Ok(self.tables)
    }

    fn read(&mut self, raw: &str) -> Result<(), String> {
        let n = self.n;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        if let Some(name) = line.strip_prefix('*') {
            if let Some(t) = self.current.take() {
                return Err(format!("line {n}: table {name} starts before table {} was committed", t.name));
            }
            self.current = Some(TableDump { name: name.trim().to_string(), chains: Vec::new() });
            self.index.clear();
            self.last = 0;
            return Ok(());
        }
        let Some(table) = self.current.as_mut() else {
            return Err(format!("line {n}: {line:?} outside of a table"));
        };
        if line == "COMMIT" {
            self.tables.push(self.current.take().expect("checked above"));
            return Ok(());
        }
        if let Some(decl) = line.strip_prefix(':') {
            let mut parts = decl.split_whitespace();
            let name = parts.next().ok_or_else(|| format!("line {n}: a chain line without a name"))?;
            let policy = parts.next().filter(|p| *p != "-").map(str::to_string);
            // A chain declared again is the same chain (iptables-restore sets a built-in
            // chain's policy again), never a second chain of that name: its rules go to one place.
            if let Some(&at) = self.index.get(name) {
                if policy.is_some() {
                    table.chains[at].policy = policy;
                }
                return Ok(());
            }
            self.index.insert(name.to_string(), table.chains.len());
            table.chains.push(Chain { name: name.to_string(), policy, rules: Vec::new() });
            return Ok(());
        }
        let rest = strip_counters(line);
        let bad = |e: String| format!("line {n}: {e}");
        let mut pos = 0;
        let op = next_word(rest, &mut pos).map_err(bad)?;
        let chain = next_word(rest, &mut pos).map_err(bad)?;
        let (Some(op), Some(chain)) = (op, chain) else { return Err(format!("line {n}: {line:?} is not a rule (-A CHAIN ...)")) };
        if op != "-A" && op != "--append" {
            return Err(format!("line {n}: {line:?} is not a rule (-A CHAIN ...)"));
        }
        let at = match table.chains.get(self.last) {
            Some(c) if c.name == chain => Some(self.last),
            _ => self.index.get(&*chain).copied(),
        };
        let Some(at) = at else { return Err(format!("line {n}: a rule of chain {chain}, which was not declared")) };
        self.last = at;
        let mut args = Vec::with_capacity(word_bound(&rest[pos..]));
        while let Some(w) = next_word(rest, &mut pos).map_err(bad)? {
            args.push(w.into_owned());
        }
        strip_inline_counters(&mut args);
        table.chains[at].rules.push(Rule::new(args));
        Ok(())
    }
}

/// `[12:3456] -A ...` -> `-A ...`.
fn strip_counters(line: &str) -> &str {
    if line.starts_with('[') {
        if let Some(end) = line.find(']') {
            return line[end + 1..].trim_start();
        }
    }
    line
}

/// `-c 12 3456` inside a rule (iptables-save -c of some versions) carries no meaning for identity.
fn strip_inline_counters(args: &mut Vec<String>) {
    // Every one, so a rule reads the same however often it is rendered and read back.
    while let Some(i) = args.iter().position(|a| a == "-c" || a == "--set-counters") {
        if args.len() < i + 3 {
            break;
        }
        args.drain(i..i + 3);
    }
}

/// Split a line the way iptables-restore does: blanks (space, tab) separate words; inside double
/// quotes a blank is part of the word and a backslash takes the next character literally; a
/// quote may start or end anywhere in a word (`a"b c"d` is `ab cd`), `""` is an empty word.
pub fn split(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(word_bound(line));
    let mut at = 0;
    while let Some(w) = next_word(line, &mut at)? {
        out.push(w.into_owned());
    }
    Ok(out)
}

/// At least as many as the words of `line`: one more than its blanks.
fn word_bound(line: &str) -> usize {
    line.bytes().filter(|&b| b == b' ' || b == b'\t').count() + 1
}

/// The word starting at or after `*at`, which moves past it. A word without quotes is copied
/// once, as it stands in the line; kube-proxy's rules all hold a quoted comment, and building
/// every word character by character was most of the time a 50,000-rule table took to read.
fn next_word<'a>(line: &'a str, at: &mut usize) -> Result<Option<Cow<'a, str>>, String> {
    let b = line.as_bytes();
    let mut i = *at;
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    if i == b.len() {
        *at = i;
        return Ok(None);
    }
    let start = i;
    // Where the word ends, and whether it holds a quote (only then is it built piece by piece).
    let (mut quoted, mut any_quote) = (false, false);
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => {
                quoted = !quoted;
                any_quote = true;
            }
            b' ' | b'\t' if !quoted => break,
            _ => {}
        }
        i += 1;
    }
    if quoted || i > b.len() {
        return Err(format!("unclosed quote in {line:?}"));
    }
    *at = i;
    if !any_quote {
        return Ok(Some(Cow::Borrowed(&line[start..i])));
    }
    // Pieces between the quotes and escapes are copied whole; every cut is at an ASCII byte
    // (a quote or a backslash) or right after one, so on a character boundary.
    let mut w = String::with_capacity(i - start);
    let (mut run, mut k, mut quoted) = (start, start, false);
    while k < i {
        match b[k] {
            b'\\' if quoted => {
                w.push_str(&line[run..k]);
                // The escaped character starts the next piece; skipping its first byte is
                // enough not to read it as a quote or a backslash.
                run = k + 1;
                k += 2;
            }
            b'"' => {
                w.push_str(&line[run..k]);
                quoted = !quoted;
                run = k + 1;
                k += 1;
            }
            _ => k += 1,
        }
    }
    w.push_str(&line[run..i]);
    Ok(Some(Cow::Owned(w)))
}

/// Quote one argument so `split` (and iptables-restore) reads it back unchanged.
pub fn quote(a: &str) -> String {
    // Any whitespace, not only what splits words: `parse` trims a line's Unicode whitespace, so
    // an unquoted last argument ending in one would lose it.
    let needs = a.is_empty() || a.chars().any(|c| c.is_whitespace() || matches!(c, '"' | '\\' | '\'' | '#'));
    if !needs {
        return a.to_string();
    }
    let mut s = String::with_capacity(a.len() + 2);
    s.push('"');
    for c in a.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

// The two renderings of a rule line. Restore input must read back byte for byte, so only
// `quote` applies; a message is read by a person, so it is also kept on one line and free of
// terminal control sequences, whatever a rule read from the host holds.

/// One line of iptables-restore input, `OP CHAIN [POS] ARGS...` and a newline (`-A`, `-I`, `-D`):
/// every argument quoted by `quote`, so iptables-restore reads back the same arguments.
pub fn push_restore_line(out: &mut String, op: &str, chain: &str, at: Option<usize>, args: &[String]) {
    let _ = write!(out, "{op} {chain}");
    if let Some(n) = at {
        let _ = write!(out, " {n}");
    }
    for a in args {
        out.push(' ');
        out.push_str(&quote(a));
    }
    out.push('\n');
}

/// A rule as messages show it, `-A CHAIN ARGS...`: quoted as iptables-save prints it, with
/// control characters escaped (`\n`, `\u{1b}`), so the rule stays on one line of the message.
pub fn display_line(chain: &str, args: &[String]) -> String {
    let mut s = format!("-A {chain}");
    for a in args {
        s.push(' ');
        for c in quote(a).chars() {
            if c.is_control() {
                s.extend(c.escape_default());
            } else {
                s.push(c);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = "\
# Warning: iptables-legacy tables present, use iptables-legacy-save to see them
# Generated by iptables-nft-save v1.8.9 (nf_tables) on Sat Nov 28 20:54:38 2026
*filter
:INPUT ACCEPT [10:2000]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:EMPTY - [0:0]
[5:300] -A FORWARD -j DOCKER
-A FORWARD -i eth+ -m comment --comment \"a \\\"b\\\" c\" -j ACCEPT
-A DOCKER -s 10.0.0.0/8 -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
# Completed on Sat Nov 28 20:54:38 2026

*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o eth0 -j MASQUERADE
COMMIT
";

    #[test]
    fn parses_what_real_hosts_print() {
        let t = parse(REAL).unwrap();
        assert_eq!(t.len(), 2);
        let f = &t[0];
        assert_eq!(f.name, "filter");
        assert_eq!(f.chain("FORWARD").unwrap().policy.as_deref(), Some("DROP"));
        assert_eq!(f.chain("DOCKER").unwrap().policy, None);
        assert!(f.chain("EMPTY").unwrap().rules.is_empty());
        let fw = &f.chain("FORWARD").unwrap().rules;
        assert_eq!(fw[0].args, ["-j", "DOCKER"]);
        assert_eq!(fw[1].args[5], "a \"b\" c");
        assert_eq!(t[1].chain("POSTROUTING").unwrap().rules.len(), 1);
    }

    #[test]
    fn lines_round_trip_through_quote_and_split() {
        let t = parse(REAL).unwrap();
        for table in &t {
            for c in &table.chains {
                for r in &c.rules {
                    let line = r.line(&c.name);
                    let back = split(&line).unwrap();
                    assert_eq!(&back[2..], &r.args[..], "{line}");
                }
            }
        }
        assert_eq!(split("-m comment --comment \"\" -j X").unwrap()[3], "");
        assert_eq!(split(" -s\t10.0.0.1/32  -j a\\b ").unwrap(), ["-s", "10.0.0.1/32", "-j", "a\\b"]);
    }

    /// Quoted words are built from whole pieces: the quote and escape edges.
    #[test]
    fn quoted_words_split_at_their_edges() {
        let words = |s: &str| split(s).unwrap();
        assert_eq!(words(r#"a"b c"d e"#), ["ab cd", "e"]);
        assert_eq!(words(r#""" x """#), ["", "x", ""]);
        assert_eq!(words(r#""a\"b" "\\" "x\y""#), ["a\"b", "\\", "xy"]);
        assert_eq!(words("\"\\\u{e9}t\u{e9}\"\t\"\u{2003}\""), ["\u{e9}t\u{e9}", "\u{2003}"]);
        assert_eq!(words(r#"-j a\"b c""#), ["-j", "a\\b c"]);
        for bad in [r#""a"#, r#""a\"#, r#"x "a\""#, "\"\\"] {
            assert!(split(bad).is_err(), "{bad:?}");
        }
        let t = parse("*nat\n:KUBE-SVC-X - [0:0]\n-A KUBE-SVC-X -m comment --comment \"ns/svc:http -> 10.0.0.1:8080\" -j KUBE-SEP-Y\nCOMMIT\n").unwrap();
        assert_eq!(t[0].chains[0].rules[0].args, ["-m", "comment", "--comment", "ns/svc:http -> 10.0.0.1:8080", "-j", "KUBE-SEP-Y"]);
        assert!(parse("*nat\n:X - [0:0]\n-A X -m comment --comment \"open\nCOMMIT\n").unwrap_err().contains("unclosed quote"));
    }

    /// Restore input keeps every byte (iptables-restore must read back the same argument); a
    /// message escapes control characters, so a rule read from the host cannot break its line.
    #[test]
    fn restore_lines_keep_every_byte_and_messages_escape_control_characters() {
        let args: Vec<String> = ["-m", "comment", "--comment", "a\u{1b}[31m\tb", "-j", "x\"y"].map(String::from).to_vec();
        let mut restore = String::new();
        push_restore_line(&mut restore, "-I", "IN", Some(3), &args);
        assert_eq!(restore, "-I IN 3 -m comment --comment \"a\u{1b}[31m\tb\" -j \"x\\\"y\"\n");
        assert_eq!(split(restore.trim_end()).unwrap()[3..], args[..]);
        assert_eq!(display_line("IN", &args), "-A IN -m comment --comment \"a\\u{1b}[31m\\tb\" -j \"x\\\"y\"");
        assert!(!display_line("IN", &args).chars().any(char::is_control));
    }

    #[test]
    fn truncated_or_garbled_output_is_an_error() {
        assert!(parse("*filter\n:INPUT ACCEPT [0:0]\n").is_err());
        assert!(parse("-A INPUT -j ACCEPT\n").is_err());
        assert!(parse("*filter\n-A NOPE -j ACCEPT\nCOMMIT\n").is_err());
        assert!(parse("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment \"x\nCOMMIT\n").is_err());
    }

    /// Found by the iptables_save fuzz target in CI: a chain declared twice in the second table,
    /// at the position the first table's last rule used, took that table's rules into the
    /// second copy, so the same text read back into a different chain.
    #[test]
    fn a_chain_declared_twice_is_one_chain_in_every_table() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n:X - [0:0]\n-A X -j ACCEPT\nCOMMIT\n\
                    *nat\n:PREROUTING ACCEPT [0:0]\n:X - [0:0]\n:PREROUTING DROP [0:0]\n:X - [0:0]\n\
                    -A X -j RETURN\n-A PREROUTING -j X\nCOMMIT\n";
        let t = parse(text).unwrap();
        let nat = &t[1];
        assert_eq!(nat.chains.len(), 2, "{nat:?}");
        assert_eq!(nat.chain("PREROUTING").unwrap().policy.as_deref(), Some("DROP"));
        assert_eq!(nat.chain("X").unwrap().rules[0].args, ["-j", "RETURN"]);
        assert_eq!(nat.chain("PREROUTING").unwrap().rules[0].args, ["-j", "X"]);
        assert_eq!(t[0].chain("X").unwrap().rules[0].args, ["-j", "ACCEPT"]);
    }

    #[test]
    fn inline_counters_are_dropped() {
        let t = parse("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -c 1 2 -j ACCEPT\nCOMMIT\n").unwrap();
        assert_eq!(t[0].chains[0].rules[0].args, ["-j", "ACCEPT"]);
    }
}
