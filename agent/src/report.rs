//! The report of a run (SPEC section 4), its human rendering, and exit codes (SPEC section 2).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    InSync,
    Drift,
    Changed,
    Failed,
}

/// One resource the document names: exactly one per resource, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceReport {
    pub id: String,
    pub kind: &'static str,
    pub status: Status,
    pub current: Option<String>,
    pub desired: Option<String>,
    pub message: String,
    pub restart_required: bool,
    /// Line-level detail a person reads like a diff (`+ rule`, `- rule`), when one value is not
    /// enough to say what differs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<String>,
}

impl ResourceReport {
    pub fn new(kind: &'static str, id: impl Into<String>, status: Status) -> Self {
        ResourceReport {
            id: id.into(),
            kind,
            status,
            current: None,
            desired: None,
            message: String::new(),
            restart_required: false,
            diff: Vec::new(),
        }
    }

    pub fn values(mut self, current: Option<String>, desired: Option<String>) -> Self {
        self.current = current;
        self.desired = desired;
        self
    }

    pub fn message(mut self, m: impl Into<String>) -> Self {
        self.message = m.into();
        self
    }

    pub fn with_diff(mut self, diff: Vec<String>) -> Self {
        self.diff = diff;
        self
    }

    pub fn restart_required(mut self, yes: bool) -> Self {
        self.restart_required = yes;
        self
    }

    /// The same resource after apply: `changed` or `failed`, with a new message.
    pub fn after(&self, status: Status, message: impl Into<String>) -> Self {
        ResourceReport {
            status,
            message: message.into(),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub in_sync: usize,
    pub drift: usize,
    pub changed: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Plan,
    Apply,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: u32,
    pub command: Command,
    pub host: String,
    pub state_sha256: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub summary: Summary,
    pub resources: Vec<ResourceReport>,
}

impl Report {
    pub fn new(command: Command, host: String, state_sha256: String, started: std::time::SystemTime) -> Report {
        Report {
            version: 1,
            command,
            host,
            state_sha256,
            started_at: humantime::format_rfc3339_seconds(started).to_string(),
            duration_ms: 0,
            summary: Summary::default(),
            resources: Vec::new(),
        }
    }

    pub fn finish(&mut self, resources: Vec<ResourceReport>, started: std::time::Instant) {
        self.summary = Summary::default();
        for r in &resources {
            match r.status {
                Status::InSync => self.summary.in_sync += 1,
                Status::Drift => self.summary.drift += 1,
                Status::Changed => self.summary.changed += 1,
                Status::Failed => self.summary.failed += 1,
            }
        }
        self.resources = resources;
        self.duration_ms = started.elapsed().as_millis() as u64;
    }

    /// SPEC section 2: plan 0 in sync, 2 drift, 4 some resources cannot converge (`failed`
    /// already in plan: apply would certainly fail them), 6 both; apply 0 nothing to do,
    /// 2 changed, 4 failed, 6 both.
    pub fn exit_code(&self) -> Exit {
        let s = self.summary;
        let changes = match self.command {
            Command::Plan => s.drift + s.changed,
            Command::Apply => s.changed,
        };
        Exit::of(changes > 0, s.failed > 0)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// A diff a person can act on: one line per resource that is not in sync, then a summary.
    pub fn to_human(&self, verbose: bool) -> String {
        let mut out = String::new();
        for r in &self.resources {
            if r.status == Status::InSync && !verbose {
                continue;
            }
            let mark = match r.status {
                Status::InSync => "  ok     ",
                Status::Drift => "~ drift  ",
                Status::Changed => "+ changed",
                Status::Failed => "! FAILED ",
            };
            let what = match (&r.current, &r.desired) {
                (Some(c), Some(d)) if c != d => format!(": {c} -> {d}"),
                (None, Some(d)) => format!(": (absent) -> {d}"),
                _ => String::new(),
            };
            out.push_str(&format!("{mark} {}{what}", r.id));
            if !r.message.is_empty() {
                out.push_str(&format!("\n            {}", r.message));
            }
            if r.restart_required {
                out.push_str("\n            (takes effect after a restart of the container)");
            }
            out.push('\n');
            for line in &r.diff {
                out.push_str(&format!("            {line}\n"));
            }
        }
        let s = self.summary;
        let verb = match self.command {
            Command::Plan => "plan",
            Command::Apply => "apply",
        };
        out.push_str(&format!(
            "{verb}: {} in sync, {} drift, {} changed, {} failed ({} ms)\n",
            s.in_sync, s.drift, s.changed, s.failed, self.duration_ms
        ));
        out
    }
}

/// Every exit code hostguard has (SPEC section 2, README "Exit codes"), the shape of Puppet's
/// `--detailed-exitcodes`; `report`, `audit`, `confirm` and the CLI name them from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Nothing to do, no finding, or a command that succeeded.
    Ok = 0,
    /// The run stopped: a document, host, lock or usage error; nothing converged.
    Error = 1,
    /// Drift (plan), changes made (apply), or findings (audit).
    Changes = 2,
    /// Some resources cannot converge, or a rollback failed.
    Failed = 4,
    /// Changes and failures both.
    Mixed = 6,
}

impl Exit {
    /// The code for a run with changes (or drift) and failures.
    pub fn of(changes: bool, failed: bool) -> Exit {
        match (changes, failed) {
            (false, false) => Exit::Ok,
            (true, false) => Exit::Changes,
            (false, true) => Exit::Failed,
            (true, true) => Exit::Mixed,
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(command: Command, statuses: &[Status]) -> Report {
        let mut r = Report::new(command, "h".into(), "x".into(), std::time::SystemTime::UNIX_EPOCH);
        let res = statuses
            .iter()
            .enumerate()
            .map(|(i, s)| ResourceReport::new("sysctl", format!("sysctl/k{i}"), *s))
            .collect();
        r.finish(res, std::time::Instant::now());
        r
    }

    #[test]
    fn exit_codes_follow_detailed_exitcodes() {
        use Status::*;
        assert_eq!(report(Command::Plan, &[InSync]).exit_code().code(), 0);
        assert_eq!(report(Command::Plan, &[InSync, Drift]).exit_code().code(), 2);
        assert_eq!(report(Command::Plan, &[InSync, Failed]).exit_code().code(), 4);
        assert_eq!(report(Command::Plan, &[Drift, Failed]).exit_code().code(), 6);
        assert_eq!(report(Command::Apply, &[InSync]).exit_code().code(), 0);
        assert_eq!(report(Command::Apply, &[Changed, InSync]).exit_code().code(), 2);
        assert_eq!(report(Command::Apply, &[Failed]).exit_code().code(), 4);
        assert_eq!(report(Command::Apply, &[Changed, Failed]).exit_code().code(), 6);
        assert_eq!(report(Command::Apply, &[]).exit_code().code(), 0);
    }

    #[test]
    fn json_has_the_contract_fields() {
        let r = report(Command::Apply, &[Status::Changed]);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for k in ["version", "command", "host", "state_sha256", "started_at", "duration_ms", "summary", "resources"] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["started_at"], "1970-01-01T00:00:00Z");
        assert_eq!(v["summary"]["changed"], 1);
        let res = &v["resources"][0];
        assert_eq!(res["status"], "changed");
        for k in ["id", "kind", "status", "current", "desired", "message", "restart_required"] {
            assert!(res.get(k).is_some(), "missing resources[0].{k}");
        }
    }

    #[test]
    fn human_plan_reads_like_a_diff() {
        let mut r = Report::new(Command::Plan, "h".into(), "x".into(), std::time::SystemTime::UNIX_EPOCH);
        r.finish(
            vec![ResourceReport::new("sysctl", "sysctl/vm.swappiness", Status::Drift)
                .values(Some("60".into()), Some("10".into()))],
            std::time::Instant::now(),
        );
        let h = r.to_human(false);
        assert!(h.contains("sysctl/vm.swappiness: 60 -> 10"), "{h}");
        assert!(h.contains("plan: 0 in sync, 1 drift, 0 changed, 0 failed"), "{h}");
    }
}
