//! The `iptables` resource kind: read, diff, apply.

use crate::engine::{Ctx, Resources};
use crate::error::{Error, Result};
use crate::report::ResourceReport;
use crate::state::iptables::IptablesState;

pub struct Plan;

impl Resources for Plan {
    fn reports(&self) -> Vec<ResourceReport> {
        Vec::new()
    }
    fn apply(self: Box<Self>, _ctx: &Ctx) -> Vec<ResourceReport> {
        Vec::new()
    }
}

pub fn plan(_ctx: &Ctx, _desired: &IptablesState) -> Result<Plan> {
    Err(Error::Unsupported("the iptables section is not implemented yet".into()))
}

pub fn show(_ctx: &Ctx) -> Result<Option<serde_json::Value>> {
    Ok(None)
}
