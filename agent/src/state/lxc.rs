//! The `lxc` section: managed keys of named containers' configs. (Validation is completed by issue 5.)

use super::{UniqueMap, ValidationErrors};

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLxc {
    #[serde(default)]
    pub lxcpath: Option<String>,
    #[serde(default)]
    pub dialect: Option<String>,
    #[serde(default)]
    pub containers: UniqueMap<RawContainer>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContainer {
    #[serde(default)]
    pub memory_limit: Option<serde_json::Value>,
    #[serde(default)]
    pub memory_swap_limit: Option<serde_json::Value>,
    #[serde(default)]
    pub cpu_shares: Option<serde_json::Value>,
    #[serde(default)]
    pub network: Option<Vec<UniqueMap<serde_json::Value>>>,
    #[serde(default)]
    pub cap_drop: Option<Vec<String>>,
    #[serde(default)]
    pub idmap: Option<Vec<RawIdmap>>,
    #[serde(default)]
    pub config: UniqueMap<String>,
    #[serde(default)]
    pub live: bool,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdmap {
    #[serde(rename = "type")]
    pub kind: String,
    pub container: u64,
    pub host: u64,
    pub count: u64,
}

#[derive(Debug, Clone)]
pub struct LxcState {
    pub raw: RawLxc,
}

pub fn validate(raw: RawLxc, _errs: &mut ValidationErrors) -> LxcState {
    LxcState { raw }
}
