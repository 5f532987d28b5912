//! Validated newtypes shared by several sections of the document.

use std::fmt;

/// A size limit: bytes, or no limit. Written as a number of bytes, a string with a K/M/G/T suffix
/// (powers of 1024), or `"max"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limit {
    Bytes(u64),
    Max,
}

impl Limit {
    /// Parse a size from the document's JSON value.
    pub fn from_json(v: &serde_json::Value) -> Result<Limit, String> {
        match v {
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(b) => Ok(Limit::Bytes(b)),
                None => Err(format!("{n} is not a size: use a whole number of bytes, a K/M/G/T suffix, or \"max\"")),
            },
            serde_json::Value::String(s) => Limit::parse(s),
            other => Err(format!("{other} is not a size: use a number of bytes, a string like \"512M\", or \"max\"")),
        }
    }

    /// Parse `"512M"`, `"1G"`, `"1048576"`, `"max"`.
    pub fn parse(s: &str) -> Result<Limit, String> {
        if let Some(p) = control_char_problem(s) {
            return Err(format!("{s:?} {p}"));
        }
        let t = s.trim();
        if t == "max" {
            return Ok(Limit::Max);
        }
        let (digits, mult) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => {
                let m: u64 = match c.to_ascii_uppercase() {
                    'K' => 1 << 10,
                    'M' => 1 << 20,
                    'G' => 1 << 30,
                    'T' => 1 << 40,
                    _ => return Err(format!("{s:?}: unknown size suffix {c:?}; use K, M, G or T (powers of 1024), or \"max\"")),
                };
                (&t[..i], m)
            }
            _ => (t, 1),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{s:?} is not a size: use a whole number with an optional K/M/G/T suffix, or \"max\""));
        }
        let n: u64 = digits.parse().map_err(|_| format!("{s:?} is too large"))?;
        n.checked_mul(mult)
            .map(Limit::Bytes)
            .ok_or_else(|| format!("{s:?} is too large"))
    }

    pub fn bytes(self) -> Option<u64> {
        match self {
            Limit::Bytes(b) => Some(b),
            Limit::Max => None,
        }
    }
}

impl fmt::Display for Limit {
    /// The shortest exact spelling: `512M` rather than `536870912`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Limit::Max => f.write_str("max"),
            Limit::Bytes(b) => {
                for (suffix, m) in [("T", 1u64 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
                    if b >= m && b % m == 0 {
                        return write!(f, "{}{suffix}", b / m);
                    }
                }
                write!(f, "{b}")
            }
        }
    }
}

/// Why a string may not go into a host file or command line as it is, if it may not.
/// A newline would inject a line into a config file; NUL and other control characters are never
/// meaningful in the values hostguard manages.
pub fn control_char_problem(s: &str) -> Option<String> {
    s.chars().find(|c| c.is_control() && *c != '\t').map(|c| {
        format!("contains the control character {c:?}; values may not contain newlines, NUL or other control characters")
    })
}

/// What one kind of name may hold: the checks the validated names (an iptables chain, an nft
/// table, chain, set or device) share, each with its own limits.
pub struct NameRule {
    /// `a chain name`, `a name`: how the messages call it.
    pub what: &'static str,
    /// The longest it may be, in bytes, and whose limit that is.
    pub max: usize,
    pub limit: &'static str,
    /// Characters allowed besides ASCII letters and digits.
    pub extra: &'static [char],
    /// How it may start: with a letter or `_` only, or with anything allowed but these.
    pub first: First,
    /// Words it may not be, and what they are.
    pub reserved: &'static [&'static str],
    pub reserved_is: &'static str,
}

pub enum First {
    LetterOrUnderscore,
    Not(&'static [char]),
}

/// Why `s` is not a name under `rule`, or `None`.
pub fn name_problem(s: &str, rule: &NameRule) -> Option<String> {
    let what = rule.what;
    if s.is_empty() {
        return Some(format!("{what} may not be empty"));
    }
    if s.len() > rule.max {
        return Some(format!("{s:?} is longer than {} bytes, {}", rule.max, rule.limit));
    }
    let c0 = s.chars().next().unwrap_or('_');
    match rule.first {
        First::LetterOrUnderscore if !(c0.is_ascii_alphabetic() || c0 == '_') => {
            return Some(format!("{s:?} must start with a letter or '_'"));
        }
        First::Not(bad) if bad.contains(&c0) => {
            let list: Vec<String> = bad.iter().map(|c| format!("{c:?}")).collect();
            return Some(format!("{s:?} may not start with {}", list.join(" or ")));
        }
        _ => {}
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || rule.extra.contains(c))) {
        let extra: Vec<String> = rule.extra.iter().map(char::to_string).collect();
        return Some(format!("{s:?} contains {c:?}; {what} holds letters, digits and {}", extra.join(" ")));
    }
    if rule.reserved.contains(&s) {
        return Some(format!("{s:?} is {}", rule.reserved_is));
    }
    None
}

/// A plain name (container, group component): letters, digits, `.`, `_`, `-`, `:`, `@`, `+`,
/// not `.` or `..`, not starting with `-`.
pub fn plain_name_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    if s == "." || s == ".." {
        return Some(format!("{s:?} is not a name"));
    }
    if s.starts_with('-') {
        return Some(format!("{s:?} may not start with '-'"));
    }
    if s.len() > 255 {
        return Some("is longer than 255 bytes".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@' | '+')))
    {
        return Some(format!("{s:?} contains {c:?}; allowed are letters, digits and . _ - : @ +"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(Limit::parse("512M"), Ok(Limit::Bytes(512 << 20)));
        assert_eq!(Limit::parse("1G"), Ok(Limit::Bytes(1 << 30)));
        assert_eq!(Limit::parse("2k"), Ok(Limit::Bytes(2048)));
        assert_eq!(Limit::parse("1000000"), Ok(Limit::Bytes(1_000_000)));
        assert_eq!(Limit::parse("max"), Ok(Limit::Max));
        assert_eq!(Limit::from_json(&json!(4096)), Ok(Limit::Bytes(4096)));
    }

    #[test]
    fn bad_sizes_are_refused() {
        for bad in ["12Q", "-1", "1.5G", "", "M", "G1", "99999999999999999999", "20000000T", "512M\n", "1\u{0}"] {
            assert!(Limit::parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(Limit::from_json(&json!(-5)).is_err());
        assert!(Limit::from_json(&json!(1.5)).is_err());
        assert!(Limit::from_json(&json!(true)).is_err());
    }

    #[test]
    fn sizes_display_in_their_shortest_exact_form() {
        assert_eq!(Limit::Bytes(512 << 20).to_string(), "512M");
        assert_eq!(Limit::Bytes(1_000_000).to_string(), "1000000");
        assert_eq!(Limit::Max.to_string(), "max");
    }

    #[test]
    fn control_characters_are_found() {
        assert!(control_char_problem("a\nb").is_some());
        assert!(control_char_problem("a\0b").is_some());
        assert!(control_char_problem("32768\t60999").is_none());
    }

    #[test]
    fn plain_names() {
        assert!(plain_name_problem("web1").is_none());
        for bad in ["", ".", "..", "a/b", "../x", "-x", "a b"] {
            assert!(plain_name_problem(bad).is_some(), "{bad}");
        }
    }
}
