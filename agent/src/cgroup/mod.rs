//! The `cgroup` resource kind: read, diff, apply.

use crate::engine::{Ctx, Resources};
use crate::error::{Error, Result};
use crate::report::ResourceReport;
use crate::state::cgroup::CgroupsState;

pub struct Plan;

impl Resources for Plan {
    fn reports(&self) -> Vec<ResourceReport> {
        Vec::new()
    }
    fn apply(self: Box<Self>, _ctx: &Ctx) -> Vec<ResourceReport> {
        Vec::new()
    }
}

pub fn plan(_ctx: &Ctx, _desired: &CgroupsState) -> Result<Plan> {
    Err(Error::Unsupported("the cgroup section is not implemented yet".into()))
}

pub fn show(_ctx: &Ctx, _prefixes: &[String]) -> Result<Option<serde_json::Value>> {
    Ok(None)
}
