//! The built-in normaliser: rewrites a rule's arguments into the form iptables-save prints, for
//! the spellings that are common in real documents. It is the fallback when iptables itself cannot
//! canonicalise (no privilege to create a network namespace), and the fast path: a rule the
//! normaliser already renders exactly as the host prints it needs no namespace at all.
//!
//! Every rewrite here preserves meaning; a spelling it does not know is left as written, which at
//! worst shows as drift, never hides any.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use crate::state::iptables::Family;

/// Long spellings of the options iptables-save prints short.
fn short_option(a: &str) -> Option<&'static str> {
    Some(match a {
        "--jump" => "-j",
        "--goto" => "-g",
        "--protocol" => "-p",
        "--source" | "--src" => "-s",
        "--destination" | "--dst" => "-d",
        "--in-interface" => "-i",
        "--out-interface" => "-o",
        "--match" => "-m",
        "--fragment" => "-f",
        "--destination-port" => "--dport",
        "--source-port" => "--sport",
        "--destination-ports" => "--dports",
        "--source-ports" => "--sports",
        _ => return None,
    })
}

/// Basic matches, in the order iptables-save prints them, and whether each takes a value.
const BASIC: &[(&str, bool)] = &[("-s", true), ("-d", true), ("-i", true), ("-o", true), ("-p", true), ("-f", false)];

/// Protocols whose options load their match implicitly (`-p tcp --dport 22` is `-m tcp`).
const IMPLICIT: &[&str] = &["tcp", "udp", "icmp", "icmp6", "ipv6-icmp", "sctp", "udplite", "dccp"];

#[derive(Debug, Default)]
struct Section {
    /// `-m NAME` (or the target `-j NAME`); `None` for options before any `-m`.
    head: Option<(&'static str, String)>,
    opts: Vec<Vec<String>>,
}

impl Section {
    fn name(&self) -> Option<&str> {
        self.head.as_ref().map(|(_, n)| n.as_str())
    }
}

/// Rewrite `args` into iptables-save's form as far as this normaliser knows it.
pub fn normalize(args: &[String], family: Family) -> Vec<String> {
    normalize_fixed(&negations_first(args), family)
}

/// `normalize` of arguments that already went through `negations_first`.
pub fn normalize_fixed(args: &[String], family: Family) -> Vec<String> {
    // One slot per basic match, in BASIC's order: negated, and the value.
    let mut basic: [Option<(bool, Option<String>)>; 6] = Default::default();
    let mut matches: Vec<Section> = Vec::new();
    let mut target: Option<Section> = None;
    let mut i = 0;
    let mut neg = false;
    let mut in_target = false;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "!" {
            neg = true;
            i += 1;
            continue;
        }
        let opt = short_option(a).unwrap_or(a);
        if let Some((slot, &(name, takes))) = BASIC.iter().enumerate().find(|(_, (n, _))| *n == opt) {
            let mut value = None;
            if takes {
                value = args.get(i + 1).map(|val| basic_value(name, val, family));
                i += 1;
            }
            basic[slot] = Some((neg, value));
            neg = false;
            i += 1;
            continue;
        }
        if let Some(head) = ["-m", "-j", "-g"].into_iter().find(|h| *h == opt) {
            let name = args.get(i + 1).cloned().unwrap_or_default();
            let s = Section { head: Some((head, name)), opts: Vec::new() };
            in_target = head != "-m";
            if in_target {
                target = Some(s);
            } else {
                matches.push(s);
            }
            neg = false;
            i += 2;
            continue;
        }
        // An option of the current match or target, with the values that follow it.
        let mut o = Vec::new();
        if neg {
            o.push("!".to_string());
        }
        o.push(opt.to_string());
        let mut j = i + 1;
        while j < args.len() && !args[j].starts_with('-') && args[j] != "!" {
            o.push(args[j].clone());
            j += 1;
        }
        // A negative number is a value, not an option (`--log-level -1` is not real, but be safe).
        neg = false;
        i = j;
        if let (true, Some(t)) = (in_target, target.as_mut()) {
            t.opts.push(o);
            continue;
        }
        let proto = basic[4].as_ref().and_then(|(_, v)| v.as_deref());
        let implicit = proto.filter(|p| IMPLICIT.contains(p) && is_proto_option(&o));
        if let Some(p) = implicit {
            let in_last = matches.last().is_some_and(|m| section_has_option(m, &o));
            if !in_last {
                let want = match_name(p);
                match matches.iter_mut().find(|m| m.name() == Some(want)) {
                    Some(m) => m.opts.push(o),
                    None => matches.push(Section { head: Some(("-m", want.to_string())), opts: vec![o] }),
                }
                continue;
            }
        }
        match matches.last_mut() {
            Some(m) => m.opts.push(o),
            None => matches.push(Section { head: None, opts: vec![o] }),
        }
    }
    // The sections' strings move into the result: one allocation per argument, not two.
    let mut out = Vec::with_capacity(args.len() + 2);
    for (slot, b) in basic.into_iter().enumerate() {
        let Some((neg, value)) = b else { continue };
        if neg {
            out.push("!".to_string());
        }
        out.push(BASIC[slot].0.to_string());
        out.extend(value);
    }
    let head = |out: &mut Vec<String>, head: Option<(&str, String)>| {
        if let Some((opt, name)) = head {
            out.push(opt.to_string());
            out.push(name);
        }
    };
    for m in matches {
        let mname = rewritten_match(m.name());
        head(&mut out, m.head);
        for o in m.opts {
            option_values(mname, o, &mut out);
        }
    }
    if let Some(t) = target {
        head(&mut out, t.head);
        for o in t.opts {
            out.extend(o);
        }
    }
    out
}

/// `--dport ! 22` and `-s ! 10.0.0.0/8` (the pre-1.4.3 spelling, refused by iptables now) become
/// `! --dport 22` and `! -s 10.0.0.0/8`.
/// Borrowed when there is nothing to move (almost always: a copy of every argument of every rule
/// was a twelfth of an in-sync plan).
pub fn negations_first(args: &[String]) -> Cow<'_, [String]> {
    let late = |w: &[String]| w[0].starts_with('-') && w[0].len() > 1 && w[1] == "!";
    if !args.windows(2).any(late) {
        return Cow::Borrowed(args);
    }
    let mut out: Vec<String> = args.to_vec();
    let mut i = 0;
    while i + 1 < out.len() {
        if out[i].starts_with('-') && out[i].len() > 1 && out[i + 1] == "!" {
            out.swap(i, i + 1);
            i += 2;
        } else {
            i += 1;
        }
    }
    Cow::Owned(out)
}

fn match_name(proto: &str) -> &str {
    match proto {
        "ipv6-icmp" | "icmp6" | "icmpv6" => "icmp6",
        p => p,
    }
}

/// A match whose option values `option_values` rewrites, by a name that outlives its section
/// (the section's strings move into the result); `""` for every other match.
fn rewritten_match(name: Option<&str>) -> &'static str {
    match name {
        Some("tcp") => "tcp",
        Some("udp") => "udp",
        Some("sctp") => "sctp",
        Some("udplite") => "udplite",
        Some("dccp") => "dccp",
        Some("multiport") => "multiport",
        Some("state") => "state",
        Some("conntrack") => "conntrack",
        _ => "",
    }
}

fn is_proto_option(o: &[String]) -> bool {
    let name = o.iter().find(|a| *a != "!").map(String::as_str).unwrap_or("");
    matches!(
        name,
        "--dport" | "--sport" | "--tcp-flags" | "--syn" | "--tcp-option" | "--icmp-type" | "--icmpv6-type" | "--chunk-types"
    )
}

fn section_has_option(m: &Section, o: &[String]) -> bool {
    // An explicit `-m tcp` followed by its options: keep them together.
    m.name().is_some_and(|n| IMPLICIT.contains(&n) && is_proto_option(o))
}

fn basic_value(name: &str, val: &str, family: Family) -> String {
    match name {
        "-s" | "-d" => address(val, family).unwrap_or_else(|| val.to_string()),
        "-p" => protocol(val, family),
        _ => val.to_string(),
    }
}

/// `10.1.2.3/8` -> `10.0.0.0/8`; `10.1.2.3` -> `10.1.2.3/32`; `255.0.0.0` masks -> prefix length;
/// IPv6 in its compressed form. `None` for names and lists, which are left as written.
pub fn address(val: &str, family: Family) -> Option<String> {
    let (addr, mask) = match val.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (val, None),
    };
    match family {
        Family::V4 => {
            let ip: Ipv4Addr = addr.parse().ok()?;
            let len: u32 = match mask {
                None => 32,
                Some(m) => match m.parse::<u32>() {
                    Ok(n) if n <= 32 => n,
                    Ok(_) => return None,
                    Err(_) => {
                        let bits = u32::from(m.parse::<Ipv4Addr>().ok()?);
                        if bits.leading_ones() + bits.trailing_zeros() != 32 {
                            return None;
                        }
                        bits.leading_ones()
                    }
                },
            };
            let netmask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let net = u32::from(ip) & netmask;
            // `addr` parsed, so it is dotted decimal without leading zeros: already the printed
            // form when no host bits are set and the mask is a plain prefix length.
            let plain_len = mask.is_none_or(|m| m.bytes().all(|b| b.is_ascii_digit()) && (m == "0" || !m.starts_with('0')));
            if net == u32::from(ip) && plain_len {
                return Some(if mask.is_some() { val.to_string() } else { format!("{val}/32") });
            }
            Some(format!("{}/{len}", Ipv4Addr::from(net)))
        }
        Family::V6 => {
            let ip: Ipv6Addr = addr.parse().ok()?;
            let len: u32 = match mask {
                None => 128,
                Some(m) => m.parse().ok().filter(|n| *n <= 128)?,
            };
            let netmask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            Some(format!("{}/{len}", Ipv6Addr::from(u128::from(ip) & netmask)))
        }
    }
}

fn protocol(val: &str, family: Family) -> String {
    let v = val.to_ascii_lowercase();
    match (v.as_str(), family) {
        ("6", _) => "tcp".into(),
        ("17", _) => "udp".into(),
        ("1", _) => "icmp".into(),
        ("132", _) => "sctp".into(),
        ("58" | "icmpv6" | "icmp6", Family::V6) => "ipv6-icmp".into(),
        ("0", _) => "all".into(),
        _ => v,
    }
}

/// Option values in printed form, added to `out`: ports as numbers, state lists in the kernel's
/// bit order.
fn option_values(mname: &str, mut o: Vec<String>, out: &mut Vec<String>) {
    let neg = o.first().is_some_and(|a| a == "!");
    let at = usize::from(neg);
    let Some(name) = o.get(at) else { return out.extend(o) };
    let vals = at + 1;
    match (mname, name.as_str()) {
        (_, "--syn") if o.len() == vals => {
            o.truncate(at);
            out.extend(o);
            out.extend(["--tcp-flags", "FIN,SYN,RST,ACK", "SYN"].map(String::from));
            return;
        }
        ("tcp" | "udp" | "sctp" | "udplite" | "dccp", "--dport" | "--sport") | ("multiport", "--dports" | "--sports" | "--ports") => {
            for v in &mut o[vals..] {
                if let Some(p) = ports(v, mname) {
                    *v = p;
                }
            }
        }
        ("state", "--state") | ("conntrack", "--ctstate") => {
            for v in &mut o[vals..] {
                *v = states(v);
            }
        }
        _ => {}
    }
    out.extend(o);
}

/// `ssh` -> `22`, `http:https` -> `80:443`, `ssh,80` -> `22,80`; `None` when `v` is already
/// in that form (a port number as iptables prints it: digits without a leading zero).
fn ports(v: &str, mname: &str) -> Option<String> {
    let plain = |p: &str| p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || (!p.is_empty() && !p.starts_with('0')) ) && p.len() <= 5;
    if v.split([',', ':']).all(plain) {
        return None;
    }
    let proto = if mname == "udp" { "udp" } else { "tcp" };
    let out = v.split(',')
        .map(|part| part.split(':').map(|p| port(p, proto)).collect::<Vec<_>>().join(":"))
        .collect::<Vec<_>>()
        .join(",");
    Some(out)
}

fn port(p: &str, proto: &str) -> String {
    if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
        return p.parse::<u32>().map(|n| n.to_string()).unwrap_or_else(|_| p.to_string());
    }
    services().get(&(p.to_string(), proto.to_string())).map(|n| n.to_string()).unwrap_or_else(|| p.to_string())
}

/// `/etc/services`, read once: how iptables resolves `--dport ssh` (through getservbyname).
fn services() -> &'static HashMap<(String, String), u16> {
    static S: OnceLock<HashMap<(String, String), u16>> = OnceLock::new();
    S.get_or_init(|| {
        let mut m = HashMap::new();
        // The real host's file, not `--root`'s, and not through `Host`, on purpose: the iptables
        // binary that resolves the name runs on the real host and reads this very file.
        let text = std::fs::read_to_string("/etc/services").unwrap_or_default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let (Some(name), Some(pp)) = (words.next(), words.next()) else { continue };
            let Some((num, proto)) = pp.split_once('/') else { continue };
            let Ok(num) = num.parse::<u16>() else { continue };
            for n in std::iter::once(name).chain(words) {
                m.entry((n.to_string(), proto.to_string())).or_insert(num);
            }
        }
        m
    })
}

/// `ESTABLISHED,related` -> `RELATED,ESTABLISHED`: the order the kernel's bits print in.
fn states(v: &str) -> String {
    const ORDER: &[&str] = &["INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT"];
    let mut parts: Vec<String> = v.split(',').map(|s| s.trim().to_ascii_uppercase()).collect();
    if parts.iter().any(|p| !ORDER.contains(&p.as_str())) {
        return v.to_string();
    }
    parts.sort_by_key(|p| ORDER.iter().position(|o| o == p));
    parts.dedup();
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize(&shlex::split(s).unwrap(), Family::V4).join(" ")
    }

    #[test]
    fn spellings_reach_the_saved_form() {
        assert_eq!(n("-p tcp --dport 22 -j ACCEPT"), "-p tcp -m tcp --dport 22 -j ACCEPT");
        assert_eq!(n("-p tcp --dport ssh -j ACCEPT"), "-p tcp -m tcp --dport 22 -j ACCEPT");
        assert_eq!(n("-s 10.1.2.3/8 -j ACCEPT"), "-s 10.0.0.0/8 -j ACCEPT");
        assert_eq!(n("-s 10.1.2.3 -j ACCEPT"), "-s 10.1.2.3/32 -j ACCEPT");
        assert_eq!(n("-s 10.0.0.0/255.0.0.0 -j ACCEPT"), "-s 10.0.0.0/8 -j ACCEPT");
        assert_eq!(
            n("-m state --state ESTABLISHED,RELATED --jump ACCEPT"),
            "-m state --state RELATED,ESTABLISHED -j ACCEPT"
        );
        assert_eq!(n("-s ! 10.0.0.0/8 -j DROP"), "! -s 10.0.0.0/8 -j DROP");
        assert_eq!(n("! -s 10.0.0.0/8 -j DROP"), "! -s 10.0.0.0/8 -j DROP");
        assert_eq!(n("-i eth+ -j ACCEPT"), "-i eth+ -j ACCEPT");
        assert_eq!(n("-j ACCEPT -o eth0 -i docker0"), "-i docker0 -o eth0 -j ACCEPT");
        assert_eq!(n("-p TCP --syn -j DROP"), "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j DROP");
        assert_eq!(
            n("-p tcp -m state --state NEW --dport 22 -i lo -j ACCEPT"),
            "-i lo -p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT"
        );
        assert_eq!(n("-p tcp -m tcp --dport 0022 -j ACCEPT"), "-p tcp -m tcp --dport 22 -j ACCEPT");
        assert_eq!(
            n("-p tcp -m multiport --dports http,https -j ACCEPT"),
            "-p tcp -m multiport --dports 80,443 -j ACCEPT"
        );
    }

    /// The fast paths (an address or port already in printed form is kept as written) rest on
    /// Rust's parser refusing leading zeros; the slow path's results are the reference.
    #[test]
    fn printed_forms_are_kept_and_others_rewritten() {
        assert!("010.1.2.3".parse::<Ipv4Addr>().is_err());
        for (a, want) in [("10.1.2.3", "10.1.2.3/32"), ("10.0.0.0/8", "10.0.0.0/8"), ("10.0.0.0/08", "10.0.0.0/8"),
                          ("0.0.0.0/0", "0.0.0.0/0"), ("10.0.0.1/32", "10.0.0.1/32"), ("10.0.0.1/24", "10.0.0.0/24"),
                          ("10.0.0.0/255.0.0.0", "10.0.0.0/8"), ("10.0.0.0/+8", "10.0.0.0/8")] {
            assert_eq!(address(a, Family::V4).as_deref(), Some(want), "{a}");
        }
        assert_eq!(address("10.0.0.0/33", Family::V4), None);
        assert_eq!(n("-p tcp -m tcp --dport 00 -j ACCEPT"), "-p tcp -m tcp --dport 0 -j ACCEPT");
        assert_eq!(n("-p tcp -m multiport --dports 22,80:0443 -j ACCEPT"), "-p tcp -m multiport --dports 22,80:443 -j ACCEPT");
        assert_eq!(n("-p tcp -m multiport --dports 22,80:443 -j ACCEPT"), "-p tcp -m multiport --dports 22,80:443 -j ACCEPT");
        assert_eq!(n("-p tcp ! --syn -j DROP"), "-p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -j DROP");
        assert_eq!(n("-p udp --sport 123456 -j DROP"), "-p udp -m udp --sport 123456 -j DROP");
    }

    /// The section shapes: a match without a name, options before any match, a basic match
    /// without its value, negations, implicit protocol matches joining an explicit one.
    #[test]
    fn sections_keep_their_shape() {
        let v6 = |s: &str| normalize(&shlex::split(s).unwrap(), Family::V6).join(" ");
        assert_eq!(n("-j ACCEPT -m"), "-m  -j ACCEPT");
        assert_eq!(n("--foo 1 -j X"), "--foo 1 -j X");
        assert_eq!(n("-j X -p"), "-p -j X");
        assert_eq!(n("! -p udp ! --dport 53 -j X"), "! -p udp -m udp ! --dport 53 -j X");
        assert_eq!(n("-p tcp -m tcp --sport 1 --dport 2 -j X"), "-p tcp -m tcp --sport 1 --dport 2 -j X");
        assert_eq!(n("-p tcp --dport 1 -m state --state NEW --sport 2 -j X"), "-p tcp -m tcp --dport 1 --sport 2 -m state --state NEW -j X");
        assert_eq!(n("-m conntrack --ctstate established,new -j X"), "-m conntrack --ctstate NEW,ESTABLISHED -j X");
        assert_eq!(n("-p udp -m multiport --sports domain -j X"), "-p udp -m multiport --sports 53 -j X");
        assert_eq!(v6("-p icmpv6 --icmpv6-type 128 -j X"), "-p ipv6-icmp -m icmp6 --icmpv6-type 128 -j X");
        assert_eq!(n("-p tcp -j X --dport 22"), "-p tcp -j X --dport 22");
        assert_eq!(n("-f -p tcp -s 10.0.0.1 -g X"), "-s 10.0.0.1/32 -p tcp -f -g X");
    }

    /// Borrowed unless a negation comes after its option; `-` alone and a leading `!` stay.
    #[test]
    fn negations_move_first_and_nothing_is_copied_otherwise() {
        let args = |s: &str| shlex::split(s).unwrap();
        for plain in ["-s 10.0.0.0/8 -j DROP", "! -s 10.0.0.0/8 -j DROP", "-m comment --comment - ! -j X", "", "!"] {
            let a = args(plain);
            assert!(matches!(negations_first(&a), Cow::Borrowed(_)), "{plain:?}");
        }
        for (late, first) in [("-s ! 10.0.0.0/8 -j DROP", "! -s 10.0.0.0/8 -j DROP"),
                              ("-p tcp --dport ! 22 -s ! 10.0.0.1 -j X", "-p tcp ! --dport 22 ! -s 10.0.0.1 -j X"),
                              ("-j X --foo !", "-j X ! --foo")] {
            let a = args(late);
            let moved = negations_first(&a);
            assert!(matches!(moved, Cow::Owned(_)), "{late:?}");
            assert_eq!(moved.join(" "), first);
        }
    }

    #[test]
    fn ipv6_addresses_are_compressed() {
        assert_eq!(address("2001:db8:0:0::1/64", Family::V6).unwrap(), "2001:db8::/64");
        assert_eq!(address("::1", Family::V6).unwrap(), "::1/128");
        assert_eq!(protocol("58", Family::V6), "ipv6-icmp");
    }

    #[test]
    fn unknown_spellings_are_left_alone() {
        assert_eq!(n("-s host.example -j X --foo bar"), "-s host.example -j X --foo bar");
        assert_eq!(n("-m recent --name ssh --update --seconds 60 -j DROP"), "-m recent --name ssh --update --seconds 60 -j DROP");
    }
}
