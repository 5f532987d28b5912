//! What every resource kind shares with the run: the host, the options, and the `Resources`
//! trait a kind's `plan` returns. A leaf module, so the engine can name the kinds and the kinds
//! can name this without either naming the other.

use std::time::Duration;

use crate::error::Result;
use crate::host::Host;
use crate::report::ResourceReport;

/// Run-wide settings that modules may consult.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Apply a ruleset even when it would drop the SSH session the command runs from.
    pub force: bool,
    /// `apply --confirm SECONDS`: roll firewall changes back unless `hostguard confirm` runs.
    pub confirm: Option<u64>,
    /// `--confirm-probe TARGET`: confirm by itself when TARGET answers after the change.
    pub confirm_probe: Option<crate::probe::Probe>,
    /// How long to wait for another run's lock.
    pub lock_timeout: Duration,
}

/// What a module needs from the run: the host and the options.
pub struct Ctx<'a> {
    pub host: &'a Host,
    pub opts: &'a Options,
}

/// The planned state of one resource kind.
pub trait Resources {
    /// What `plan` reports: every resource once, `in_sync` or `drift`.
    fn reports(&self) -> Vec<ResourceReport>;
    /// Before anything is applied: refuse the whole run (exit 1, nothing touched) when applying
    /// this plan would be unsafe (the iptables SSH lockout guard).
    fn preflight(&self, _ctx: &Ctx) -> Result<()> {
        Ok(())
    }
    /// Make the planned changes and read them back: every resource once, `in_sync`, `changed`
    /// or `failed`. A write that did not take is `failed`, never `changed`.
    fn apply(self: Box<Self>, ctx: &Ctx) -> Vec<ResourceReport>;
}
