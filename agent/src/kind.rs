//! What every resource kind shares with the run: the host, the options, and the `Resources`
//! trait a kind's `plan` returns. A leaf module, so the engine can name the kinds and the kinds
//! can name this without either naming the other.

use std::net::IpAddr;
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
    /// The SSH session the run comes from (`SSH_CONNECTION`, read once by the command line),
    /// which the SSH lockout guards keep reachable.
    pub ssh_session: Option<Session>,
}

/// One SSH session's connection, as `SSH_CONNECTION` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub client: IpAddr,
    pub client_port: u16,
    pub server: IpAddr,
    pub server_port: u16,
}

impl Session {
    /// `SSH_CONNECTION="client_ip client_port server_ip server_port"`; IPv4-mapped IPv6
    /// addresses become IPv4 ones (the session's packets are IPv4).
    pub fn parse(v: &str) -> Option<Session> {
        let p: Vec<&str> = v.split_whitespace().collect();
        if p.len() != 4 {
            return None;
        }
        let unmap = |a: IpAddr| match a {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(a),
            v4 => v4,
        };
        Some(Session {
            client: unmap(p[0].parse().ok()?),
            client_port: p[1].parse().ok()?,
            server: unmap(p[2].parse().ok()?),
            server_port: p[3].parse().ok()?,
        })
    }
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
