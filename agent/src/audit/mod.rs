//! `hostguard audit`: the container-host hardening baseline (SPEC section 8).
//!
//! Facts are read from the whole host (not only what a document names), each check turns facts
//! into findings, and every finding carries the state-document fragment that fixes it. Whether a
//! document closes a finding is decided the same way: overlay the document's desired values on
//! the facts and run the checks again, so the answer cannot drift from the checks themselves.

pub mod checks;
pub mod facts;
pub mod firewall;
pub mod forward;

use serde::Serialize;

use crate::error::Result;
use crate::host::Host;
use crate::report::Exit;
use crate::state::Document;

pub use facts::Facts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

/// One problem on the host, with what was seen and the fragment that fixes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Stable id of the check (`lxc.privileged`), so tooling can track or suppress it.
    pub id: &'static str,
    pub severity: Severity,
    /// What the finding is about: `lxc/web1`, `sysctl/vm.swappiness`, `iptables/ipv4/filter/FORWARD`.
    pub subject: String,
    pub title: String,
    pub evidence: String,
    /// A state-document fragment (`{"version": 1, ...}` without the version) that closes it;
    /// `null` when no document can (loading a kernel module, editing a file hostguard does not
    /// own): then `remedy` says what to do by hand.
    pub fix: serde_json::Value,
    /// What the operator must know or do besides (or instead of) applying `fix`.
    pub remedy: Option<String>,
    /// Where the recommendation comes from.
    pub reference: &'static str,
    /// With a document: whether applying it closes this finding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_by_state: Option<bool>,
}

impl Finding {
    fn key(&self) -> (&str, &str) {
        (self.id, &self.subject)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub version: u32,
    pub command: &'static str,
    pub host: String,
    pub summary: AuditSummary,
    pub findings: Vec<Finding>,
    /// Checks that could not run, and why: a clean audit with skipped checks is not complete.
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct AuditSummary {
    pub high: usize,
    pub medium: usize,
    pub low: usize,
}

/// Audit the host; with a document, say of each finding whether applying it closes it.
pub fn audit(host: &Host, lxcpath: Option<&str>, state: Option<&Document>) -> Result<AuditReport> {
    let facts = Facts::read(host, lxcpath)?;
    let mut findings = checks::run(&facts);
    verify_fixes(host, &facts, &mut findings);
    if let Some(doc) = state {
        let after = checks::run(&facts.overlay(host, doc));
        for f in &mut findings {
            f.closed_by_state = Some(!after.iter().any(|a| a.key() == f.key()));
        }
    }
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.key().cmp(&b.key())));
    let mut summary = AuditSummary::default();
    for f in &findings {
        match f.severity {
            Severity::High => summary.high += 1,
            Severity::Medium => summary.medium += 1,
            Severity::Low => summary.low += 1,
        }
    }
    Ok(AuditReport {
        version: 1,
        command: "audit",
        host: crate::engine::hostname(),
        summary,
        findings,
        skipped: facts.skipped.clone(),
    })
}

/// A fix is only offered when the checks, run on the facts with the fix applied, no longer see
/// the finding: otherwise it is withdrawn (null) and the remedy says why, so `--emit-state` never
/// carries a fragment that looks like a fix and is not one. All fixes are tried together first
/// (what `--emit-state` applies), so a host with many findings costs one overlay, not one per
/// finding; only the findings that survive that are tried alone, to be sure their own fix fails.
fn verify_fixes(host: &Host, facts: &Facts, findings: &mut [Finding]) {
    let mut all = serde_json::json!({});
    for f in findings.iter().filter(|f| !f.fix.is_null()) {
        merge(&mut all, &f.fix);
    }
    let survivors: Vec<(&'static str, String)> = match overlay_doc(&all) {
        Some(doc) => checks::run(&facts.overlay(host, &doc)).iter().map(|a| (a.id, a.subject.clone())).collect(),
        None => findings.iter().map(|f| (f.id, f.subject.clone())).collect(),
    };
    for f in findings.iter_mut().filter(|f| !f.fix.is_null()) {
        if !survivors.iter().any(|(id, subject)| (*id, subject.as_str()) == f.key()) {
            continue;
        }
        let closes = overlay_doc(&f.fix).is_some_and(|d| !checks::run(&facts.overlay(host, &d)).iter().any(|a| a.key() == f.key()));
        if !closes {
            let why = "no state document closes this on this host (the fragment that would be offered leaves it in place)";
            f.remedy = Some(match f.remedy.take() {
                Some(r) => format!("{r}; {why}"),
                None => why.to_string(),
            });
            f.fix = serde_json::Value::Null;
        }
    }
}

/// A fix fragment as a validated document.
fn overlay_doc(fragment: &serde_json::Value) -> Option<Document> {
    let mut doc = fragment.clone();
    doc["version"] = 1.into();
    crate::state::load(doc.to_string().as_bytes(), "the fix").ok()
}

impl AuditReport {
    /// `Changes` (2) when a finding at or above `fail_on` remains, else `Ok`.
    pub fn exit_code(&self, fail_on: Severity) -> Exit {
        if self.findings.iter().any(|f| f.severity >= fail_on) {
            Exit::Changes
        } else {
            Exit::Ok
        }
    }

    pub fn to_human(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let sev = match f.severity {
                Severity::High => "HIGH  ",
                Severity::Medium => "MEDIUM",
                Severity::Low => "LOW   ",
            };
            out.push_str(&format!("{sev} {} [{}] {}\n", f.subject, f.id, f.title));
            out.push_str(&format!("       seen: {}\n", f.evidence));
            if !f.fix.is_null() {
                out.push_str(&format!("       fix:  {}\n", f.fix));
            }
            if let Some(r) = &f.remedy {
                out.push_str(&format!("       note: {r}\n"));
            }
            if let Some(closed) = f.closed_by_state {
                out.push_str(if closed { "       the document closes it\n" } else { "       the document does NOT close it\n" });
            }
        }
        for s in &self.skipped {
            out.push_str(&format!("NOT CHECKED {s}\n"));
        }
        let s = self.summary;
        out.push_str(&format!("audit: {} high, {} medium, {} low\n", s.high, s.medium, s.low));
        out
    }

    /// Every fix merged into one document, merged over `base` (the document given, if any):
    /// where both say something, the fix wins, since the point is to close the finding.
    /// A finding the document already closes adds no fix (two idmaps for one container would
    /// be a broken config, not a stronger one). And a document that persists its sysctl values
    /// in a file of its own keeps that file, rather than have the fixes start a second one.
    pub fn emit_state(&self, base: Option<serde_json::Value>) -> serde_json::Value {
        let mut doc = base.unwrap_or_else(|| serde_json::json!({}));
        let persist = doc.pointer("/sysctl/persist").cloned();
        for f in self.findings.iter().filter(|f| !f.fix.is_null() && f.closed_by_state != Some(true)) {
            merge(&mut doc, &f.fix);
        }
        if let Some(p) = persist {
            doc["sysctl"]["persist"] = p;
        }
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("version".into(), 1.into());
        }
        doc
    }
}

/// Deep merge: objects key by key, arrays as an ordered union, anything else replaced.
pub fn merge(into: &mut serde_json::Value, from: &serde_json::Value) {
    use serde_json::Value;
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for v in b {
                if !a.contains(v) {
                    a.push(v.clone());
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_unions_arrays_and_lets_fixes_win() {
        let mut a = json!({"sysctl": {"values": {"vm.swappiness": 60, "a": 1}}, "lxc": {"containers": {"c": {"cap_drop": ["sys_time"]}}}});
        merge(&mut a, &json!({"sysctl": {"values": {"vm.swappiness": 10}}, "lxc": {"containers": {"c": {"cap_drop": ["sys_time", "sys_module"]}}}}));
        assert_eq!(a["sysctl"]["values"]["vm.swappiness"], 10);
        assert_eq!(a["sysctl"]["values"]["a"], 1);
        assert_eq!(a["lxc"]["containers"]["c"]["cap_drop"], json!(["sys_time", "sys_module"]));
    }
}
