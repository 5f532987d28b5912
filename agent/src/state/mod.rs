//! The state document: serde types that only read, then validation into typed values.
//!
//! Loading never touches the host. Every error is collected (not just the first) and names the
//! JSON path it concerns, so an operator can fix a document in one pass.

pub mod cgroup;
pub mod iptables;
pub mod lxc;
pub mod nftables;
pub mod schema;
pub mod sysctl;
pub mod types;

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Documents larger than this are refused before parsing: a state document is a few kilobytes,
/// and an endless stream from a broken URL must not exhaust memory.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// The desired state of one container host. Unknown fields are errors at every level; every
/// value is validated before the host is touched.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDocument {
    /// The JSON Schema this document follows, for editors; hostguard ignores it.
    #[serde(rename = "$schema", default)]
    #[schemars(schema_with = "schema::meta_schema")]
    pub meta_schema: Option<String>,
    /// Notes for the people who read the document (a string, or a list of lines); hostguard
    /// ignores it. JSON has no comments: this is where they go.
    #[serde(rename = "$comment", default)]
    #[schemars(schema_with = "schema::comment")]
    pub comment: Option<serde_json::Value>,
    /// The document format: 1.
    #[schemars(schema_with = "schema::version")]
    pub version: serde_json::Value,
    #[serde(default)]
    pub sysctl: Option<sysctl::RawSysctl>,
    #[serde(default)]
    pub cgroups: Option<cgroup::RawCgroups>,
    #[serde(default)]
    pub iptables: Option<iptables::RawIptables>,
    #[serde(default)]
    pub nftables: Option<nftables::RawNftables>,
    #[serde(default)]
    pub lxc: Option<lxc::RawLxc>,
}

/// A validated document: nothing in it needs checking again.
#[derive(Debug, Clone, Default)]
pub struct Document {
    pub sysctl: Option<sysctl::SysctlState>,
    pub cgroups: Option<cgroup::CgroupsState>,
    pub iptables: Option<iptables::IptablesState>,
    pub nftables: Option<nftables::NftablesState>,
    pub lxc: Option<lxc::LxcState>,
    /// Hex SHA-256 of the bytes the document was read from.
    pub sha256: String,
}

pub use crate::error::{ValidationError, ValidationErrors};

/// A JSON path for messages: `sysctl.values["vm.swappiness"]`.
pub fn key_path(parent: &str, key: &str) -> String {
    let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}"));
    format!("{parent}[{quoted}]")
}

/// A JSON object read into a sorted map that refuses duplicate keys. serde_json's own maps keep
/// the last of two equal keys, which would let a document say two things and mean one silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueMap<V>(pub BTreeMap<String, V>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        UniqueMap(BTreeMap::new())
    }
}

impl<V> UniqueMap<V> {
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V_<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V_<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate key {key:?}: a document must say each thing once"
                        )));
                    }
                    let value = map.next_value()?;
                    out.insert(key, value);
                }
                Ok(UniqueMap(out))
            }
        }
        d.deserialize_map(V_(std::marker::PhantomData))
    }
}

/// Parse and validate a document from its bytes. `source` names where it came from, for messages.
pub fn load(bytes: &[u8], source: &str) -> Result<Document, Error> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::Load(format!(
            "{source}: the document is {} bytes, over the limit of {MAX_DOCUMENT_BYTES} bytes (16 MiB)",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Error::Load(format!(
            "{source}: not valid UTF-8 at byte {}; a state document is UTF-8 JSON",
            e.valid_up_to()
        ))
    })?;
    let raw = parse(text, source)?;
    let sha256 = hex::encode(Sha256::digest(bytes));
    validate(raw, sha256).map_err(Error::Invalid)
}

fn parse(text: &str, source: &str) -> Result<RawDocument, Error> {
    if text.trim().is_empty() {
        return Err(Error::Load(format!("{source}: the document is empty; expected a JSON object with \"version\": 1")));
    }
    // serde reads a struct from an array too (`[1]` is `{"version": 1}`): the document itself
    // must be an object, as the contract says.
    if !text.trim_start().starts_with('{') {
        return Err(Error::Load(format!("{source}: the document is not a JSON object; expected {{\"version\": 1, ...}}")));
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    let raw: RawDocument = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." || path.is_empty() { "document".to_string() } else { path };
        // serde_json's message ends with the position ("at line 1 column 82").
        Error::Load(format!("{source}: {path}: {}", e.into_inner()))
    })?;
    // Anything after the document (a second document, a truncated download's junk) is refused,
    // not ignored.
    de.end().map_err(|e| Error::Load(format!("{source}: {e}: only one JSON document may be given")))?;
    Ok(raw)
}

/// Turn the raw document into typed values, collecting every error.
pub fn validate(raw: RawDocument, sha256: String) -> Result<Document, ValidationErrors> {
    let mut errs = ValidationErrors::default();
    if raw.version != serde_json::json!(1) {
        errs.push(
            "version",
            format!("unsupported version {}; this hostguard reads version 1", raw.version),
        );
    }
    let is_text = |v: &serde_json::Value| v.is_string() || v.as_array().is_some_and(|a| a.iter().all(|l| l.is_string()));
    if let Some(c) = raw.comment.as_ref().filter(|c| !is_text(c)) {
        errs.push("$comment", format!("{c} is not a comment: use a string or a list of strings"));
    }
    let sysctl = raw.sysctl.map(|s| sysctl::validate(s, &mut errs));
    let cgroups = raw.cgroups.map(|c| cgroup::validate(c, &mut errs));
    let iptables = raw.iptables.map(|i| iptables::validate(i, &mut errs));
    let nftables = raw.nftables.map(|n| nftables::validate(n, &mut errs));
    let lxc = raw.lxc.map(|l| lxc::validate(l, &mut errs));
    errs.into_result(Document {
        sysctl,
        cgroups,
        iptables,
        nftables,
        lxc,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(s: &str) -> Result<Document, Error> {
        load(s.as_bytes(), "test.json")
    }

    #[test]
    fn minimal_document_is_valid() {
        let d = load_str(r#"{"version": 1}"#).unwrap();
        assert!(d.sysctl.is_none());
        assert_eq!(d.sha256.len(), 64);
    }

    #[test]
    fn version_two_is_refused_with_its_path() {
        let e = load_str(r#"{"version": 2}"#).unwrap_err().to_string();
        assert!(e.contains("version: unsupported version 2"), "{e}");
    }

    #[test]
    fn unknown_top_level_field_is_refused() {
        let e = load_str(r#"{"version": 1, "sysctls": {}}"#).unwrap_err().to_string();
        assert!(e.contains("unknown field `sysctls`"), "{e}");
    }

    #[test]
    fn unknown_nested_field_names_its_path() {
        let e = load_str(r#"{"version": 1, "sysctl": {"value": {}}}"#).unwrap_err().to_string();
        assert!(e.contains("sysctl"), "{e}");
        assert!(e.contains("unknown field `value`"), "{e}");
    }

    /// The message of a document that cannot be read: the path of the field at fault and the
    /// reader's own error with its position, given once (it used to be given twice).
    #[test]
    fn a_wrong_type_deep_in_the_document_is_named_by_its_whole_path() {
        let doc = r#"{"version": 1, "iptables": {"ipv4": {"filter": {"INPUT": {"rules": ["-j ACCEPT", 7]}}}}}"#;
        let e = load_str(doc).unwrap_err().to_string();
        assert!(
            e.ends_with("iptables.ipv4.filter.INPUT.rules[1]: invalid type: integer `7`, expected a string at line 1 column 82"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_keys_are_refused_not_last_wins() {
        let e = load_str(r#"{"version": 1, "sysctl": {"values": {"vm.swappiness": 1, "vm.swappiness": 2}}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate key \"vm.swappiness\""), "{e}");
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let e = load(b"{\"version\": 1, \"x\": \"\xff\"}", "t").unwrap_err().to_string();
        assert!(e.contains("not valid UTF-8"), "{e}");
    }

    #[test]
    fn oversized_document_is_refused_before_parsing() {
        let big = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        let e = load(&big, "t").unwrap_err().to_string();
        assert!(e.contains("over the limit"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let doc = format!(r#"{{"version": {deep}}}"#);
        assert!(load_str(&doc).is_err());
    }

    #[test]
    fn a_document_that_is_not_an_object_is_refused() {
        for bad in ["[1]", " [1, null]", "1", "\"x\"", "null"] {
            let e = load_str(bad).unwrap_err().to_string();
            assert!(e.contains("not a JSON object"), "{bad}: {e}");
        }
    }

    #[test]
    fn trailing_content_after_the_document_is_refused() {
        let e = load_str(r#"{"version": 1} {"version": 1}"#).unwrap_err().to_string();
        assert!(e.contains("trailing characters"), "{e}");
        load_str("{\"version\": 1}\n\n").unwrap();
    }

    #[test]
    fn schema_and_comment_keys_are_accepted_and_ignored() {
        load_str(r#"{"$schema": "./state.schema.json", "$comment": ["a note", "another"], "version": 1}"#).unwrap();
        load_str(r#"{"$comment": "one line", "version": 1}"#).unwrap();
        let e = load_str(r#"{"$comment": 5, "version": 1}"#).unwrap_err().to_string();
        assert!(e.contains("$comment: 5 is not a comment"), "{e}");
    }

    #[test]
    fn key_path_quotes_keys() {
        assert_eq!(key_path("sysctl.values", "kernel..x"), r#"sysctl.values["kernel..x"]"#);
    }
}
