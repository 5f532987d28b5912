//! The `iptables` section: owned chains per family and table. (Validation is completed by issue 3.)

use super::{UniqueMap, ValidationErrors};

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIptables {
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub ipv4: UniqueMap<UniqueMap<RawChain>>,
    #[serde(default)]
    pub ipv6: UniqueMap<UniqueMap<RawChain>>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChain {
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub purge: bool,
    #[serde(default)]
    pub ignore: Vec<String>,
    #[serde(default)]
    pub rules: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct IptablesState {
    pub raw: RawIptables,
}

pub fn validate(raw: RawIptables, _errs: &mut ValidationErrors) -> IptablesState {
    IptablesState { raw }
}
