//! The `cgroups` section: limits of named cgroups. (Validation is completed by issue 4.)

use super::{UniqueMap, ValidationErrors};

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCgroups {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub groups: UniqueMap<RawGroup>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    #[serde(default)]
    pub memory_limit: Option<serde_json::Value>,
    #[serde(default)]
    pub memory_swap_limit: Option<serde_json::Value>,
    #[serde(default)]
    pub cpu_shares: Option<serde_json::Value>,
    #[serde(default)]
    pub pids_max: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct CgroupsState {
    pub raw: RawCgroups,
}

pub fn validate(raw: RawCgroups, _errs: &mut ValidationErrors) -> CgroupsState {
    CgroupsState { raw }
}
