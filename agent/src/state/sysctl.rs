//! The `sysctl` section: kernel parameter keys, their desired values, and the persisted file.

use std::fmt;

use super::types::control_char_problem;
use super::{key_path, UniqueMap, ValidationErrors};

/// Kernel parameters under /proc/sys, and optionally the sysctl.d file that persists them.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Sysctl")]
pub struct RawSysctl {
    /// One file /etc/sysctl.d/NAME.conf written with every value, so they survive a reboot.
    /// Absent: runtime values only, no file is written.
    #[serde(default)]
    pub persist: Option<String>,
    /// A key the kernel does not have is reported as skipped (in sync) instead of drift/failed.
    #[serde(default)]
    pub ignore_missing: bool,
    /// Keys (`vm.swappiness`, or `/`-separated `net/ipv4/conf/eth0.100/forwarding`) to values:
    /// whole numbers or strings, compared token by token as the kernel prints them.
    #[serde(default)]
    #[schemars(schema_with = "sysctl_values")]
    pub values: UniqueMap<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlState {
    /// Absolute host path of the persisted file, always `/etc/sysctl.d/NAME.conf`.
    pub persist: Option<String>,
    pub ignore_missing: bool,
    /// Sorted by the key as written, so reports come in a stable order.
    pub values: Vec<(SysctlKey, SysctlValue)>,
}

/// A kernel parameter name, as sysctl(8) accepts it: `.`-separated (`vm.swappiness`) or
/// `/`-separated, where a component may itself hold dots (`net/ipv4/conf/eth0.100/forwarding`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SysctlKey {
    name: String,
    rel_path: String,
}

impl SysctlKey {
    pub fn parse(name: &str) -> Result<SysctlKey, String> {
        if name.is_empty() {
            return Err("a key may not be empty".into());
        }
        if let Some(p) = control_char_problem(name) {
            return Err(format!("the key {p}"));
        }
        // In a sysctl.d file a leading `-` means "ignore a failure to set this key", so a key
        // spelled with one would be persisted as another key (`-.x` read back as `.x`).
        if name.starts_with('-') {
            return Err(format!("{name:?} starts with '-', which sysctl.d reads as a prefix, not a name; use ignore_missing"));
        }
        let sep = if name.contains('/') { '/' } else { '.' };
        let parts: Vec<&str> = name.split(sep).collect();
        if parts.len() < 2 {
            return Err(format!("{name:?} is not a sysctl key: expected at least two components such as vm.swappiness"));
        }
        for part in &parts {
            if part.is_empty() {
                return Err(format!("{name:?} has an empty component (a leading, trailing or doubled {sep:?})"));
            }
            if *part == "." || *part == ".." {
                return Err(format!("{name:?} has the component {part:?}; keys may not walk out of /proc/sys"));
            }
            if let Some(c) = part
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@' | '+')))
            {
                return Err(format!("{name:?} contains {c:?}; a key holds letters, digits and _ - . : @ +"));
            }
        }
        Ok(SysctlKey {
            name: name.to_string(),
            rel_path: parts.join("/"),
        })
    }

    /// The key as the document wrote it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path below `/proc/sys`, `/`-separated: the key's identity whatever its spelling.
    pub fn rel_path(&self) -> &str {
        &self.rel_path
    }

    /// The key in sysctl.d syntax: the document's own spelling, which sysctl(8) reads back as is.
    pub fn conf_name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for SysctlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A desired value. Compared the way the kernel prints values: whitespace-separated tokens,
/// numbers as numbers. The empty value is a value (SPEC section 5): most hosts hold
/// `net.ipv4.ip_local_reserved_ports = ""`, and a document must be able to say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlValue(String);

impl SysctlValue {
    pub fn from_json(v: &serde_json::Value) -> Result<SysctlValue, String> {
        let s = match v {
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            serde_json::Value::Number(n) => {
                return Err(format!("{n} is not an integer; sysctl numbers are whole numbers"))
            }
            serde_json::Value::String(s) => s.clone(),
            other => {
                return Err(format!("{other} is not a sysctl value: use a number or a string"))
            }
        };
        if let Some(p) = control_char_problem(&s) {
            return Err(format!("the value {p}"));
        }
        Ok(SysctlValue(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Tokens separated by single spaces: the form written to files and shown in reports.
    pub fn normalized(&self) -> String {
        normalize(&self.0)
    }

    /// Whether the kernel's current text means this value.
    pub fn matches(&self, current: &str) -> bool {
        values_equal(&self.0, current)
    }
}

impl fmt::Display for SysctlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized())
    }
}

/// `"32768   60999"` -> `"32768 60999"`.
pub fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Token by token, numbers compared as the kernel reads them (`0x10` = `16`, `010` = `8`: its
/// integer parser takes C's bases), the rest as text.
pub fn values_equal(a: &str, b: &str) -> bool {
    let (ta, tb): (Vec<&str>, Vec<&str>) = (a.split_whitespace().collect(), b.split_whitespace().collect());
    ta.len() == tb.len()
        && ta.iter().zip(&tb).all(|(x, y)| match (kernel_integer(x), kernel_integer(y)) {
            (Some(m), Some(n)) => m == n,
            _ => x == y,
        })
}

/// A token as the kernel's sysctl integer parser (proc_get_long: an optional `-`, then
/// `strtoul` with base 0) reads it: `0x`/`0X` hexadecimal, a leading `0` octal, else decimal,
/// and nothing after the digits. `+1`, `08` and `12abc` are None: the kernel refuses them.
pub fn kernel_integer(t: &str) -> Option<i128> {
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (radix, body) = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => (16, hex),
        None if digits.len() > 1 && digits.starts_with('0') => (8, &digits[1..]),
        None => (10, digits),
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let n = i128::from_str_radix(body, radix).ok()?;
    Some(if neg { -n } else { n })
}

pub fn validate(raw: RawSysctl, errs: &mut ValidationErrors) -> SysctlState {
    let persist = raw.persist.and_then(|p| match persist_problem(&p) {
        None => Some(p),
        Some(msg) => {
            errs.push("sysctl.persist", msg);
            None
        }
    });
    let mut values = Vec::new();
    for (name, value) in raw.values.iter() {
        let path = key_path("sysctl.values", name);
        let key = SysctlKey::parse(name).map_err(|m| errs.push(&path, m));
        let value = SysctlValue::from_json(value).map_err(|m| errs.push(&path, m));
        if let (Ok(k), Ok(v)) = (key, value) {
            values.push((k, v));
        }
    }
    // Two spellings of one key (`a.b.c` and `a/b/c`) would fight each other.
    let mut seen = std::collections::BTreeMap::new();
    for (k, _) in &values {
        if let Some(first) = seen.insert(k.rel_path().to_string(), k.name().to_string()) {
            errs.push(
                key_path("sysctl.values", k.name()),
                format!("names the same kernel parameter as {first:?}; write it once"),
            );
        }
    }
    SysctlState {
        persist,
        ignore_missing: raw.ignore_missing,
        values,
    }
}

fn persist_problem(p: &str) -> Option<String> {
    let name = match p.strip_prefix("/etc/sysctl.d/") {
        Some(n) => n,
        None => return Some(format!("{p:?}: the persisted file must be /etc/sysctl.d/NAME.conf")),
    };
    if !name.ends_with(".conf") || name.len() <= ".conf".len() {
        return Some(format!("{p:?}: the file name must end in .conf, or sysctl --system ignores it"));
    }
    super::types::plain_name_problem(name).map(|m| format!("{p:?}: the file name {m}"))
}

// Field schemas for values the serde layer keeps as `serde_json::Value` or `String`, beside
// their fields; each says what `validate` accepts.

/// `sysctl.values` (`SysctlValue::from_json`): whole numbers or non-blank strings.
fn sysctl_values(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {
            "oneOf": [ { "type": "integer" }, { "type": "string", "pattern": "\\S" } ]
        },
        "examples": [{ "vm.swappiness": 10, "net.ipv4.ip_local_port_range": "32768 60999" }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_and_slashed_keys_name_the_same_path() {
        let a = SysctlKey::parse("net.ipv4.ip_forward").unwrap();
        let b = SysctlKey::parse("net/ipv4/ip_forward").unwrap();
        assert_eq!(a.rel_path(), b.rel_path());
        assert_eq!(a.rel_path(), "net/ipv4/ip_forward");
    }

    #[test]
    fn slashed_keys_keep_dots_inside_interface_names() {
        let k = SysctlKey::parse("net/ipv4/conf/eth0.100/forwarding").unwrap();
        assert_eq!(k.rel_path(), "net/ipv4/conf/eth0.100/forwarding");
    }

    #[test]
    fn escaping_keys_are_refused() {
        for bad in ["kernel..x", "../../etc/shadow", "", "vm", ".vm.swappiness", "vm.swappiness.",
                    "net/ipv4/../../x", "vm.swap piness", "vm.a=b", "vm.\nx", "/proc/sys/vm/swappiness", "-.@", "-vm.swappiness"] {
            assert!(SysctlKey::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn values_compare_as_the_kernel_prints_them() {
        assert!(values_equal("32768 60999", "32768\t60999"));
        assert!(values_equal("  10 ", "10"));
        // The kernel reads C's bases: 010 is eight, 0x10 sixteen; a `+` it refuses.
        assert!(values_equal("010", "8") && !values_equal("010", "10"));
        assert!(values_equal("0x10 0X20", "16 32"));
        assert!(!values_equal("+1", "1"));
        assert!(!values_equal("4096 87380 6291456", "4096 87380"));
        assert!(!values_equal("1", "0"));
        assert!(values_equal("cubic", "cubic"));
    }

    #[test]
    fn integers_are_read_as_the_kernel_reads_them() {
        for (t, n) in [("0", 0), ("60", 60), ("-1", -1), ("0x3c", 60), ("0X3C", 60), ("074", 60), ("00", 0), ("18446744073709551615", 18446744073709551615)] {
            assert_eq!(kernel_integer(t), Some(n), "{t}");
        }
        for t in ["", "-", "+1", "0x", "08", "12abc", "sixty", "1,2", "1-2", " 1"] {
            assert_eq!(kernel_integer(t), None, "{t}");
        }
    }

    #[test]
    fn values_accept_numbers_and_strings_only() {
        assert_eq!(SysctlValue::from_json(&json!(10)).unwrap().as_str(), "10");
        assert_eq!(SysctlValue::from_json(&json!("32768   60999")).unwrap().normalized(), "32768 60999");
        assert_eq!(SysctlValue::from_json(&json!("")).unwrap().normalized(), "", "the empty value is a value");
        for bad in [json!(1.5), json!(true), json!(null), json!([1]), json!("a\nb"), json!("x\u{0}")] {
            assert!(SysctlValue::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_names_every_bad_key_by_path() {
        let raw: RawSysctl = serde_json::from_value(json!({
            "persist": "/etc/shadow",
            "values": { "kernel..x": 1, "vm.swappiness": "a\nb", "vm.ok": 1 }
        }))
        .unwrap();
        let mut errs = ValidationErrors::default();
        let s = validate(raw, &mut errs);
        let paths: Vec<_> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["sysctl.persist", r#"sysctl.values["kernel..x"]"#, r#"sysctl.values["vm.swappiness"]"#]);
        assert_eq!(s.values.len(), 1);
    }

    #[test]
    fn two_spellings_of_one_key_are_refused() {
        let raw: RawSysctl = serde_json::from_value(json!({
            "values": { "vm.swappiness": 1, "vm/swappiness": 1 }
        }))
        .unwrap();
        let mut errs = ValidationErrors::default();
        validate(raw, &mut errs);
        assert_eq!(errs.0.len(), 1);
    }

    #[test]
    fn persist_path_must_be_a_conf_file_in_sysctl_d() {
        for bad in ["/etc/sysctl.d/../shadow.conf", "/etc/sysctl.d/x", "/etc/sysctl.conf", "/etc/sysctl.d/.conf", "/etc/sysctl.d/a/b.conf"] {
            assert!(persist_problem(bad).is_some(), "{bad}");
        }
        assert!(persist_problem("/etc/sysctl.d/60-hostguard.conf").is_none());
    }
}
