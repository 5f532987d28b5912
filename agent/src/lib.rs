//! hostguard: converges a Linux container host (sysctl, cgroups, iptables, LXC) to a desired
//! state and reports drift.

pub mod audit;
pub mod cgroup;
pub mod cli;
pub mod deliver;
pub mod engine;
pub mod error;
pub mod host;
pub mod http;
pub mod iptables;
pub mod kind;
pub mod lxc;
pub mod man;
pub mod metrics;
pub mod nftables;
pub mod probe;
pub mod report;
pub mod source;
pub mod state;
pub mod sysctl;
