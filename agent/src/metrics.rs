//! `--metrics FILE`: the last run in the Prometheus text format, for node_exporter's textfile
//! collector, written atomically so a scrape never sees half a file.
//!
//! Every value describes the last run only, so every metric is a gauge; that is also why none
//! ends in `_total` (Prometheus reserves the suffix for counters that only grow, and promtool
//! flags it on a gauge). Labels are bounded: kinds and statuses are fixed sets, and per-resource
//! series are capped at `MAX_RESOURCE_SERIES` with label values cut to `MAX_LABEL_LEN`, so a huge
//! document cannot blow up the monitoring system's cardinality.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::error::HostError;
use crate::host::Host;
use crate::report::{Command, Report, Status};

/// At most this many `hostguard_resource_drift` series; drifting resources are kept first.
pub const MAX_RESOURCE_SERIES: usize = 500;
/// Longer label values are cut and given a digest suffix, so two long ids stay two series.
pub const MAX_LABEL_LEN: usize = 128;

const STATUSES: [(Status, &str); 4] = [
    (Status::InSync, "in_sync"),
    (Status::Drift, "drift"),
    (Status::Changed, "changed"),
    (Status::Failed, "failed"),
];

/// The metrics of a run that produced a report.
pub fn render(report: &Report) -> String {
    let started = humantime::parse_rfc3339(&report.started_at).unwrap_or(UNIX_EPOCH);
    let mut out = header(started, Duration::from_millis(report.duration_ms), true, i32::from(report.exit_code().code()));
    info(&mut out, report.command, Some(&report.state_sha256));

    let mut per_kind: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
    for r in &report.resources {
        let counts = per_kind.entry(r.kind).or_default();
        let i = STATUSES.iter().position(|(s, _)| *s == r.status).expect("every status is listed");
        counts[i] += 1;
    }
    family(&mut out, "hostguard_resources", "Resources the document names, by kind and by their status after the last run.");
    for (kind, counts) in &per_kind {
        for (i, (_, status)) in STATUSES.iter().enumerate() {
            let _ = writeln!(out, "hostguard_resources{{kind=\"{}\",status=\"{status}\"}} {}", label(kind), counts[i]);
        }
    }

    // A resource drifts when, at the end of the run, the host is not as the document says:
    // drift found by plan, or a change apply could not make. A change that was made is 0.
    let drifting = |s: Status| matches!(s, Status::Drift | Status::Failed);
    let mut chosen: Vec<usize> = (0..report.resources.len()).collect();
    chosen.sort_by_key(|&i| (!drifting(report.resources[i].status), i));
    chosen.truncate(MAX_RESOURCE_SERIES);
    chosen.sort_unstable();
    family(&mut out, "hostguard_resource_drift", "1 when a resource was not as the document says at the end of the last run (drift or failed), else 0.");
    for i in &chosen {
        let r = &report.resources[*i];
        let _ = writeln!(
            out,
            "hostguard_resource_drift{{kind=\"{}\",resource=\"{}\"}} {}",
            label(r.kind),
            label(&r.id),
            u8::from(drifting(r.status))
        );
    }
    family(&mut out, "hostguard_resource_series_omitted", "Resources left out of hostguard_resource_drift to bound its cardinality (they are still counted in hostguard_resources).");
    let _ = writeln!(out, "hostguard_resource_series_omitted {}", report.resources.len() - chosen.len());
    out
}

/// The metrics of a run that ended with exit 1 (document or host unreadable): no resource
/// series, since nothing is known about them, but a failed run an alert can see.
pub fn render_failure(command: Command, started: SystemTime, duration: Duration) -> String {
    let mut out = header(started, duration, false, i32::from(crate::report::Exit::Error.code()));
    info(&mut out, command, None);
    out
}

fn header(started: SystemTime, duration: Duration, success: bool, exit_code: i32) -> String {
    let mut out = String::new();
    let ts = started.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    family(&mut out, "hostguard_last_run_timestamp_seconds", "When the last run started, in seconds since the Unix epoch.");
    let _ = writeln!(out, "hostguard_last_run_timestamp_seconds {ts}");
    family(&mut out, "hostguard_last_run_duration_seconds", "How long the last run took.");
    let _ = writeln!(out, "hostguard_last_run_duration_seconds {:.3}", duration.as_secs_f64());
    family(&mut out, "hostguard_last_run_success", "1 when the last run read the document and the host and produced a report, 0 when it exited 1.");
    let _ = writeln!(out, "hostguard_last_run_success {}", u8::from(success));
    family(&mut out, "hostguard_last_run_exit_code", "Exit code of the last run (0 in sync, 2 drift or changed, 4 failed, 6 drift or changed and failed, 1 error).");
    let _ = writeln!(out, "hostguard_last_run_exit_code {exit_code}");
    out
}

fn info(out: &mut String, command: Command, sha256: Option<&str>) {
    let command = match command {
        Command::Plan => "plan",
        Command::Apply => "apply",
    };
    family(out, "hostguard_last_run_info", "The last run's command, hostguard version and the SHA-256 of the document it used.");
    let _ = writeln!(
        out,
        "hostguard_last_run_info{{command=\"{command}\",state_sha256=\"{}\",version=\"{}\"}} 1",
        label(sha256.unwrap_or("")),
        env!("CARGO_PKG_VERSION")
    );
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
}

/// A label value escaped for the text format, and bounded in length.
fn label(v: &str) -> String {
    let v = if v.len() > MAX_LABEL_LEN {
        let mut cut = MAX_LABEL_LEN - 13;
        while !v.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...{}", &v[..cut], &hex::encode(Sha256::digest(v.as_bytes()))[..10])
    } else {
        v.to_string()
    };
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Replace `path` (a real path, not under `--root`) atomically: temp file beside it, fsync,
/// rename. node_exporter reads only `*.prom`, so it never sees the temp file.
pub fn write(path: &Path, text: &str) -> Result<(), HostError> {
    Host::write_real_file(path, text.as_bytes()).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ResourceReport;

    fn report(command: Command, res: Vec<ResourceReport>) -> Report {
        let mut r = Report::new(command, "h".into(), "ab".repeat(32), UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        r.finish(res, std::time::Instant::now());
        r
    }

    #[test]
    fn counts_every_status_per_kind_and_flags_what_still_drifts() {
        let r = report(
            Command::Apply,
            vec![
                ResourceReport::new("sysctl", "sysctl/vm.swappiness", Status::Changed),
                ResourceReport::new("sysctl", "sysctl/vm.nope", Status::Failed),
                ResourceReport::new("cgroup", "cgroup/web1", Status::InSync),
            ],
        );
        let m = render(&r);
        for line in [
            "hostguard_resources{kind=\"sysctl\",status=\"changed\"} 1",
            "hostguard_resources{kind=\"sysctl\",status=\"failed\"} 1",
            "hostguard_resources{kind=\"sysctl\",status=\"drift\"} 0",
            "hostguard_resources{kind=\"cgroup\",status=\"in_sync\"} 1",
            "hostguard_resource_drift{kind=\"sysctl\",resource=\"sysctl/vm.swappiness\"} 0",
            "hostguard_resource_drift{kind=\"sysctl\",resource=\"sysctl/vm.nope\"} 1",
            "hostguard_last_run_timestamp_seconds 1800000000",
            "hostguard_last_run_success 1",
            "hostguard_last_run_exit_code 6",
            "hostguard_resource_series_omitted 0",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
        assert!(m.contains(&format!("state_sha256=\"{}\"", "ab".repeat(32))), "{m}");
        assert!(!m.contains("_total"), "{m}");
    }

    #[test]
    fn resource_series_are_bounded_and_keep_drift_first() {
        let mut res: Vec<_> = (0..MAX_RESOURCE_SERIES + 20)
            .map(|i| ResourceReport::new("sysctl", format!("sysctl/k{i:04}"), Status::InSync))
            .collect();
        res.last_mut().unwrap().status = Status::Drift;
        let m = render(&report(Command::Plan, res));
        assert_eq!(m.lines().filter(|l| l.starts_with("hostguard_resource_drift{")).count(), MAX_RESOURCE_SERIES);
        assert!(m.contains(&format!("resource=\"sysctl/k{:04}\"}} 1", MAX_RESOURCE_SERIES + 19)), "the drifting one was dropped");
        assert!(m.lines().any(|l| l == "hostguard_resource_series_omitted 20"));
    }

    #[test]
    fn label_values_are_escaped_and_long_ones_stay_distinct() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let a = label(&format!("{}a", "x".repeat(300)));
        let b = label(&format!("{}b", "x".repeat(300)));
        assert!(a.len() <= MAX_LABEL_LEN && a != b, "{a} {b}");
    }

    #[test]
    fn a_failed_run_says_so() {
        let m = render_failure(Command::Plan, UNIX_EPOCH, Duration::from_millis(1500));
        assert!(m.lines().any(|l| l == "hostguard_last_run_success 0"), "{m}");
        assert!(m.lines().any(|l| l == "hostguard_last_run_exit_code 1"), "{m}");
        assert!(m.lines().any(|l| l == "hostguard_last_run_duration_seconds 1.500"), "{m}");
        assert!(!m.contains("hostguard_resources{"), "{m}");
    }

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hostguard.prom");
        write(&p, "a 1\n").unwrap();
        write(&p, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a 2\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
