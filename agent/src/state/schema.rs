//! The JSON Schema of the state document, generated from the serde types (`hostguard schema`).
//!
//! The schema describes what `validate` accepts as far as JSON Schema can say it: field names
//! (unknown ones are refused, as hostguard refuses them), types, enumerations, size and range
//! forms. Checks that need the host or a parser of their own (a sysctl key walking out of
//! /proc/sys, a rule's quoting, a regular expression) stay in `validate`: a document the schema
//! accepts may still be refused, never the reverse. The descriptions are the doc comments of
//! the `Raw*` types, so the schema and the code cannot drift apart; `docs/state.schema.json` is
//! this output, checked by `agent/tests/schema.rs`.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use super::UniqueMap;

/// Draft-07: the draft that editors' JSON language servers (VS Code, IntelliJ, yaml-language-server)
/// support most completely.
pub fn document_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft07().for_deserialize().into_generator();
    let mut schema = generator.into_root_schema_for::<super::RawDocument>();
    schema.insert("title".into(), "hostguard state document".into());
    let mut value = schema.to_value();
    unwrap_descriptions(&mut value);
    value
}

/// Doc comments are wrapped at 100 columns; an editor's hover and the man page reflow text
/// themselves, so a single line break becomes a space (a blank line stays a paragraph break).
fn unwrap_descriptions(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match child {
                    serde_json::Value::String(s) if k == "description" => {
                        *s = s.split("\n\n").map(|p| p.replace('\n', " ")).collect::<Vec<_>>().join("\n\n");
                    }
                    _ => unwrap_descriptions(child),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// The schema as `hostguard schema` prints it and `docs/state.schema.json` holds it.
pub fn document_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&document_schema()).expect("a schema always serialises");
    text.push('\n');
    text
}

/// A JSON object with any keys (checked by `validate`) and values of `V`.
impl<V: JsonSchema> JsonSchema for UniqueMap<V> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        format!("Map_of_{}", V::schema_name()).into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "object", "additionalProperties": generator.subschema_for::<V>() })
    }
}

// Field schemas for values the serde layer keeps as `serde_json::Value` or `String` so that
// `validate` can give its own messages; each says what `validate` accepts. Those of one section
// stand beside its fields (`state/iptables.rs`…); these are the ones several sections share, so
// that this module names no section but the document.

pub(super) fn version(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "const": 1 })
}

pub(super) fn meta_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string" })
}

pub(super) fn comment(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ] })
}

/// A size (`Limit::from_json`): bytes, a K/M/G/T suffix (powers of 1024), or `max`.
pub(super) fn size(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "oneOf": [
            { "type": "integer", "minimum": 0 },
            { "type": "string", "pattern": "^[ \t]*([0-9]+[KMGTkmgt]?|max)[ \t]*$" }
        ],
        "examples": ["512M", "1G", 1048576, "max"]
    })
}

/// `cgroups.groups.*.cpu_shares` (`parse_cpu_shares`): a number or a string of digits.
pub(super) fn cpu_shares(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "oneOf": [
            { "type": "integer", "minimum": 2, "maximum": 262144 },
            { "type": "string", "pattern": "^[ \t]*[0-9]+[ \t]*$" }
        ]
    })
}

/// `pids_max` (`parse_pids_max`).
pub(super) fn pids_max(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "oneOf": [
            { "type": "integer", "minimum": 1, "maximum": 4194304 },
            { "type": "string", "pattern": "^[ \t]*([0-9]+|max)[ \t]*$" }
        ]
    })
}

pub(super) fn one_of(values: &[&str]) -> Schema {
    json_schema!({ "type": "string", "enum": values })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_at_every_level_of_the_schema() {
        let s = document_schema();
        assert_eq!(s["additionalProperties"], false, "{s}");
        for def in ["Sysctl", "Cgroups", "Group", "Iptables", "Chain", "Lxc", "Container", "Idmap"] {
            assert_eq!(s["definitions"][def]["additionalProperties"], false, "{def}: {}", s["definitions"][def]);
        }
    }

    #[test]
    fn descriptions_come_from_the_doc_comments() {
        let s = document_schema();
        let purge = &s["definitions"]["Chain"]["properties"]["purge"]["description"];
        assert!(purge.as_str().unwrap().contains("removed"), "{purge}");
    }

    #[test]
    fn the_meta_schema_key_is_allowed() {
        assert_eq!(document_schema()["properties"]["$schema"]["type"], "string");
    }
}
