//! Docker's daemon settings (`/etc/docker/daemon.json`). hostguard does not manage Docker's
//! config, so these findings carry a remedy and no fix. Flags given on dockerd's command line
//! (a systemd drop-in's `-H tcp://...`) are not seen.

use super::{finding, Facts, Finding, Severity};

const CONFIG: &str = "/etc/docker/daemon.json";

/// The Docker API on TCP without client certificates is a root shell for anyone who reaches the
/// port.
pub fn tcp_without_tls(f: &Facts) -> Vec<Finding> {
    let Some(d) = &f.docker else { return vec![] };
    let tcp: Vec<&str> = d["hosts"].as_array().into_iter().flatten().filter_map(|h| h.as_str()).filter(|h| h.starts_with("tcp://")).collect();
    if tcp.is_empty() || d["tlsverify"] == true {
        return vec![];
    }
    vec![finding(
        "docker.tcp_without_tls",
        Severity::High,
        "docker/daemon".into(),
        "the Docker API listens on TCP without client certificate verification",
        format!("{CONFIG}: hosts {}; tlsverify is not true", tcp.join(", ")),
        None,
        Some(format!(
            "set \"tlsverify\": true with tlscacert, tlscert and tlskey in {CONFIG}, or listen on the unix socket only; \
             hostguard does not manage Docker's config"
        )),
        "Docker docs \"Protect the Docker daemon socket\"; CIS Docker Benchmark 2.6 (configure TLS authentication for the Docker daemon)",
    )]
}

/// Without user namespace remapping, root in a Docker container is root on the host.
pub fn userns_remap(f: &Facts) -> Vec<Finding> {
    let Some(d) = &f.docker else { return vec![] };
    if d["userns-remap"].as_str().is_some_and(|s| !s.is_empty()) {
        return vec![];
    }
    vec![finding(
        "docker.userns_remap",
        Severity::Medium,
        "docker/daemon".into(),
        "Docker containers run without user namespace remapping: their root is the host's root",
        format!("{CONFIG}: no \"userns-remap\""),
        None,
        Some(format!(
            "set \"userns-remap\": \"default\" in {CONFIG} and restart dockerd (images and volumes are re-owned per remapped \
             root; check the containers' volumes first); hostguard does not manage Docker's config"
        )),
        "Docker docs \"Isolate containers with a user namespace\"; CIS Docker Benchmark 2.8 (enable user namespace support)",
    )]
}
