//! How a run behaves (SPEC section 5): validate, lock, read everything, diff, then apply.
//!
//! Every resource kind exposes `plan(ctx, desired) -> Result<impl Resources>`: reading and
//! diffing, no writes. `apply` consumes exactly what `plan` produced, so `plan` and `apply` cannot
//! disagree. All kinds are read before any is applied: a host that cannot be read exits 1 with
//! nothing touched.

use std::time::{Instant, SystemTime};

use crate::error::Result;
use crate::host::Host;
pub use crate::kind::{Ctx, Options, Resources};
use crate::report::{Command, Report, ResourceReport};
use crate::state::Document;
use crate::{cgroup, iptables, lxc, nftables, sysctl};

/// Read and diff every kind the document names, in a fixed order.
pub fn plan_all(ctx: &Ctx, doc: &Document) -> Result<Vec<Box<dyn Resources>>> {
    let mut plans: Vec<Box<dyn Resources>> = Vec::new();
    if let Some(s) = &doc.sysctl {
        plans.push(Box::new(sysctl::plan(ctx, s)?));
    }
    if let Some(c) = &doc.cgroups {
        plans.push(Box::new(cgroup::plan(ctx, c)?));
    }
    if let Some(i) = &doc.iptables {
        plans.push(Box::new(iptables::plan(ctx, i)?));
    }
    if let Some(n) = &doc.nftables {
        plans.push(Box::new(nftables::plan(ctx, n)?));
    }
    if let Some(l) = &doc.lxc {
        plans.push(Box::new(lxc::plan(ctx, l)?));
    }
    Ok(plans)
}

/// `plan` or `apply` of a validated document, under the run lock.
pub fn converge(host: &Host, opts: &Options, doc: &Document, command: Command) -> Result<Report> {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let _lock = host.lock(opts.lock_timeout)?;
    let ctx = Ctx { host, opts };
    let plans = plan_all(&ctx, doc)?;
    let resources = match command {
        Command::Plan => {
            let reports = plans.iter().flat_map(|p| p.reports()).collect();
            // Not freed: the run ends right after the report, and freeing the plans of 10,000
            // rules (a few small strings each) costs a tenth of planning them.
            std::mem::forget(plans);
            reports
        }
        Command::Apply => {
            for p in &plans {
                p.preflight(&ctx)?;
            }
            let before: Vec<ResourceReport> = plans.iter().flat_map(|p| p.reports()).collect();
            let after = plans.into_iter().flat_map(|p| p.apply(&ctx)).collect();
            with_old_values(after, &before)
        }
    };
    let mut report = Report::new(command, hostname(), doc.sha256.clone(), started_at);
    report.finish(resources, started);
    Ok(report)
}

/// SPEC section 4: a `changed` resource shows the value it had before (`current`) and the one it
/// has now (`desired`), as "60 -> 10"; a `failed` one keeps what the host holds after the attempt.
/// Done here, once, rather than in every kind's apply.
fn with_old_values(mut after: Vec<ResourceReport>, before: &[ResourceReport]) -> Vec<ResourceReport> {
    for r in after.iter_mut().filter(|r| r.status == crate::report::Status::Changed) {
        if let Some(b) = before.iter().find(|b| b.id == r.id) {
            r.current = b.current.clone();
        }
    }
    after
}

/// What `show` reads besides sysctl: limits the scope of a potentially large dump.
#[derive(Debug, Clone, Default)]
pub struct ShowOptions {
    /// Only sysctl keys starting with one of these (`net.ipv4`); all writable keys when empty.
    pub sysctl_prefixes: Vec<String>,
    /// `show --all`: every readable sysctl key, not only those a document can hold in sync.
    pub all_sysctl: bool,
    /// Cgroups below these paths are shown.
    pub cgroup_prefixes: Vec<String>,
    /// Where LXC containers live.
    pub lxcpath: Option<String>,
}

/// The host's current state as a state document.
pub fn show(host: &Host, opts: &Options, show: &ShowOptions) -> Result<serde_json::Value> {
    let ctx = Ctx { host, opts };
    let mut doc = serde_json::Map::new();
    doc.insert("version".into(), 1.into());
    doc.insert("sysctl".into(), sysctl::show(&ctx, &show.sysctl_prefixes, show.all_sysctl)?);
    if let Some(c) = cgroup::show(&ctx, &show.cgroup_prefixes)? {
        doc.insert("cgroups".into(), c);
    }
    let mut iptables_nft = Vec::new();
    if let Some(i) = iptables::show(&ctx)? {
        iptables_nft = iptables::shown_nft_tables(&ctx, &i);
        doc.insert("iptables".into(), i);
    }
    if let Some(n) = crate::nftables::show::show(&ctx, &iptables_nft)? {
        doc.insert("nftables".into(), n);
    }
    if let Some(l) = lxc::show(&ctx, show.lxcpath.as_deref())? {
        doc.insert("lxc".into(), l);
    }
    Ok(serde_json::Value::Object(doc))
}

/// The name this host reports under.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
