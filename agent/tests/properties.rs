//! Property tests of every parser that reads untrusted text: the state document, sizes, sysctl
//! keys and sysctl.d lines, `iptables-save` and `nft list` output, rule strings and LXC configs. The properties
//! live in `props/`, shared with the libFuzzer targets in `fuzz/`; inputs that once broke them are
//! kept below as regression tests.

use crate::props;

use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() }
}

/// Text that is mostly what a parser expects, now and then anything at all.
fn shaped(pattern: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![4 => proptest::string::string_regex(pattern).unwrap(), 1 => any::<String>()]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_as_a_document(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        props::state_document(&bytes);
    }

    #[test]
    fn document_shaped_text(doc in shaped(r#"\{"version": ?1(, "sysctl": \{("persist": "/etc/sysctl\.d/[a-z0-9./-]{0,12}", )?"values": \{("[a-z0-9_./-]{1,16}": ("[ -~\t]{0,12}"|-?[0-9]{1,22}), ?){0,3}\}\})?\}"#)) {
        props::state_document(doc.as_bytes());
    }

    #[test]
    fn one_sysctl_entry(key in shaped("[a-z0-9_./:@+-]{1,30}"), value in shaped("[ -~\t\u{a0}\u{2003}]{0,20}"), ignore in any::<bool>()) {
        props::sysctl_entry(&key, &value, ignore);
    }

    #[test]
    fn sysctl_keys(s in shaped("[a-z0-9_./ -]{0,30}")) {
        props::sysctl_key(&s);
    }

    #[test]
    fn sysctl_d_lines(line in shaped(r"[ \t]*-?[a-z0-9_./*]{0,24}[ \t]*=?[ \t]*[0-9a-z ]{0,12}|[#;].*"), path in shaped("[a-z0-9_/.*]{0,24}")) {
        props::sysctl_line(&line, &path);
    }

    #[test]
    fn sizes(s in shaped("[ \t]?[0-9]{0,22}[kKmMgGtTxX]?[ \t]?|max")) {
        props::size(&s);
    }

    #[test]
    fn iptables_save_output(lines in proptest::collection::vec(shaped(concat!(
        r"\*(filter|nat|raw)|COMMIT|# .{0,10}|:(INPUT|FORWARD|HG-1) (ACCEPT|DROP|-)( \[[0-9]:[0-9]\])?|",
        r#"(\[[0-9]{1,3}:[0-9]{1,3}\] )?-A (INPUT|FORWARD|HG-1)( (-[a-z]|--[a-z-]{1,8}|[a-z0-9./]{1,8}|"[ -~]{0,8}"|-c [0-9] [0-9])){0,6}"#
    )), 0..12)) {
        props::iptables_save(&lines.join("\n"));
    }

    /// A rule without quotes, backslashes or `#` is split at blanks without shlex: the same words.
    #[test]
    fn plain_rule_strings_split_as_the_shell_does(s in "[ \t]{0,2}([-a-z0-9./:$;|&<>*\u{a0}]{1,8}[ \t]{1,2}){0,8}") {
        let want = shlex::split(&s).expect("no quotes");
        match hostguard::state::iptables::RuleArgs::parse(&s) {
            Ok(r) => prop_assert_eq!(r.args(), &want[..], "{:?}", s),
            // `-c`, `-t`, `-A` and the like: refused as commands, never as unsplittable.
            Err(e) => prop_assert!(e.contains("a rule names no chain"), "{:?}: {}", s, e),
        }
    }

    /// `iptables-save` lines split piece by piece read the same words as character by character.
    #[test]
    fn save_lines_split_as_iptables_restore_does(s in shaped("[ \t\"\\\\a-z\u{e9}\u{2003}]{0,24}")) {
        let got = hostguard::iptables::save::split(&s);
        match split_by_chars(&s) {
            Some(want) => prop_assert_eq!(got, Ok(want), "{:?}", s),
            None => prop_assert!(got.is_err(), "{:?}: {:?}", s, got),
        }
    }

    #[test]
    fn rule_strings(s in shaped(r#"([-a-z0-9./:]{1,8}|;|\$\([a-z ]{0,8}\)|`[a-z ]{0,6}`|'[^']{0,8}'|"[^"\\]{0,8}"|\||&&|>|<|\*|#|\\ )( ([-a-z0-9./:]{1,8}|;|\$\(rm -rf /\)|`id`|'a b'|"c d"|\||#)){0,8}"#)) {
        props::iptables_rule(&s);
    }

    #[test]
    fn nft_listings(lines in proptest::collection::vec(shaped(concat!(
        r#"[ \t]*(table (inet|ip) ("[a-z]{0,3}"|[a-z]{1,4}) \{|chain [a-z"]{1,3} \{|(set|map) [a-z]{1,3} \{|\}|type [a-z_: ]{1,12}|"#,
        r#"flags [a-z,]{1,10}|elements = \{ [a-z0-9 .,:"{}]{0,16}|[a-z0-9 .,:"{}@]{0,16})"#
    )), 0..14)) {
        props::nft_listing(&lines.join("\n"));
    }

    #[test]
    fn nft_rule_strings(s in shaped(r#"([a-z0-9.:@]{1,6}|\{|\}|,|;|#|"[^"\\]{0,6}"|"|\$\([a-z ]{0,6}\)|include|table|flush)( ([a-z0-9.:@]{1,6}|\{|\}|,|;|#|"[^"]{0,4}"|"|table|chain)){0,8}"#)) {
        props::nft_rule(&s);
    }

    #[test]
    fn lxc_configs(lines in proptest::collection::vec(shaped(r#"[ \t]*(#.{0,10}|lxc\.[a-z.0-9]{1,12}[ \t]*=[ \t]*("[^"]{0,6}"|'[^']{0,6}'|[ -~]{0,10})|[a-z =]{0,10})\r?"#), 0..8), end in any::<bool>()) {
        let mut text = lines.join("\n");
        if end {
            text.push('\n');
        }
        props::lxc_config(&text);
    }
}

/// iptables-restore's splitting, one character at a time (what `save::split` did before it
/// copied whole pieces): the reference for `save_lines_split_as_iptables_restore_does`.
fn split_by_chars(line: &str) -> Option<Vec<String>> {
    let (mut out, mut cur) = (Vec::new(), String::new());
    let (mut in_word, mut quoted, mut escaped) = (false, false, false);
    for c in line.chars() {
        if quoted {
            if escaped {
                cur.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                in_word = true;
            }
            ' ' | '\t' => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            _ => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return None;
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

// Regression tests: inputs that broke a property once.

/// A key starting with `-` was accepted and persisted as `-.@ = 0`, which sysctl.d reads as the
/// key `.@` with its ignore-failure prefix.
#[test]
fn a_sysctl_key_starting_with_a_dash_is_refused() {
    props::sysctl_entry("-.@", "0", false);
    props::sysctl_key("-vm.swappiness");
    assert!(hostguard::state::sysctl::SysctlKey::parse("-vm.swappiness").is_err());
}

/// A quoted last argument ending in Unicode whitespace was rendered unquoted, and the line's
/// trim took the whitespace away.
#[test]
fn an_argument_ending_in_unicode_whitespace_reads_back() {
    props::iptables_save("*filter\n:INPUT ACCEPT\n-A INPUT \"x\u{2003}\"\nCOMMIT\n");
    props::iptables_save("*filter\n:INPUT ACCEPT\n-A INPUT -m comment --comment \"a\u{a0}\"\nCOMMIT\n");
}

/// Only the first `-c P B` of a rule was dropped, so a second one was dropped on the next read.
#[test]
fn every_inline_counter_is_dropped() {
    props::iptables_save("*filter\n:INPUT ACCEPT\n-A INPUT -c 1 2 -c 3 4\nCOMMIT\n");
    assert!(hostguard::state::iptables::RuleArgs::parse("-p tcp -c 1 2 -j ACCEPT").is_err());
}

/// A sysctl.d line with many stars hung the run: the glob match was exponential in the stars
/// (found by the sysctl_line fuzz target, as a timeout).
#[test]
fn a_glob_with_many_stars_matches_in_bounded_time() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let pattern = format!("{}v", "*".repeat(40));
        let path = "x".repeat(200);
        let no = hostguard::sysctl::glob_match(&pattern, &path);
        let yes = hostguard::sysctl::glob_match(&format!("net/{}*/rp_filter", "*".repeat(40)), "net/eth0/rp_filter");
        tx.send((no, yes)).unwrap();
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("glob_match did not finish in 5 s");
    assert_eq!(got, (false, true));
    props::sysctl_line(&format!("{} = 1", "*".repeat(40)), &"x".repeat(60));
}

/// Shell metacharacters are literal arguments, on one restore line.
#[test]
fn shell_metacharacters_stay_literal_arguments() {
    for rule in ["-m comment --comment '; rm -rf /'", "-m comment --comment \"$(reboot)\"", "-m comment --comment '`id`'",
                 "-m comment --comment 'a | b && c > /etc/passwd'"] {
        props::iptables_rule(rule);
        let args = hostguard::state::iptables::RuleArgs::parse(rule).unwrap();
        assert_eq!(args.args().len(), 4, "{rule}");
    }
}

/// `expires` inside an element's quoted comment was dropped with the word after it, leaving an
/// unclosed quote: render then parse swallowed the set's closing brace into its elements (found
/// by the nft_listing fuzz target).
#[test]
fn an_nft_element_comment_holding_expires_reads_back() {
    props::nft_listing("table inet x {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.1 comment \"it expires soon\", 10.0.0.2 expires 1s }\n\t}\n}\n");
}

/// An element holding a `}` whose line also closed its set was read as one element; rendered
/// beside others it swallowed them (found by the nft_listing fuzz target; the input is its seed).
#[test]
fn an_nft_element_with_unbalanced_braces_is_not_read() {
    props::nft_listing(include_str!("../../fuzz/seeds/nft_listing/regression-unbalanced-element"));
}
