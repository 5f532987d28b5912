//! The integration tests, one binary (ripgrep's layout): each file below is a module, so the
//! crate and the helpers are compiled and linked once rather than once per file. Run one file's
//! tests with `cargo test --test main FILE::` (`cargo test --test main crash::`).

mod props;
mod remote_support;
mod util;

mod audit;
mod audit_firewall;
mod bad_input;
mod cgroup_v1;
mod concurrency;
mod corpus;
mod corpus_docker;
mod corpus_iptables;
mod corpus_libvirt;
mod corpus_lxc;
mod corpus_nftables;
mod corpus_sysctl;
mod crash;
mod distribution;
mod iptables;
mod lxc;
mod lxc_golden;
mod nftables;
mod properties;
mod remote;
mod remote_report;
mod show_roundtrip;
mod special_files;
mod sysctl;
