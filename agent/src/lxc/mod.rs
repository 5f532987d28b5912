//! The `lxc` resource kind: the managed keys of named containers' configs
//! (`<lxcpath>/<name>/config`), and the live cgroup limits of the running ones.
//!
//! Each container is one resource (`lxc/NAME`): its config converges key by key, keeping every
//! line the document does not manage. A container with `live: true` and limits is one more
//! (`lxc-live/NAME`): the limits of its running cgroup. Every config is read, rendered and
//! diffed in `plan`, before `apply` writes any.

mod cgroupmap;
mod config;
mod converge;
mod legacy;
mod live;
mod render;
mod show;

// What the audit and the golden tests use, named here so lxc's internals stay private.
pub use cgroupmap::{file_key as cgroup_file_key, key as cgroup_key, keys as cgroup_keys, limits_of as cgroup_limits_of, parse_size, translate};
pub use converge::{converge, wrong_version_key, Dialect, Env};
pub use legacy::is_legacy_key;
pub use config::{Config, Entry};
pub use live::version;
pub use render::{render_text, Omit, Renderer};

use crate::kind::{Ctx, Resources};
use crate::error::{Error, HostError, Result};
use crate::host::{limits, Host};
use crate::cgroup::{Backend, GroupPlan, LxcCgroup};
use crate::report::{ResourceReport, Status};
use crate::state::cgroup::{Limits, VersionChoice};
use crate::state::lxc::{Container, Dialect as DocDialect, LxcState};

use crate::cgroup::Version;
use converge::{Class, Outcome, Setting};

pub use show::show;

const KIND: &str = "lxc";

/// Whether the kernel accounts swap; LXC refuses to start a container whose config limits
/// memory+swap on a v1 kernel that does not.
pub use crate::cgroup::swap_accounting;

fn resolve_dialect(host: &Host, d: DocDialect) -> Result<Dialect> {
    Ok(match d {
        DocDialect::Modern => Dialect::Modern,
        DocDialect::Legacy => Dialect::Legacy,
        DocDialect::Auto => {
            let (major, minor) = live::version(host).map_err(|e| {
                Error::Host(HostError::Other(format!(
                    "lxc.dialect is \"auto\" but the LXC version could not be read ({e}); install LXC, or set \
                     lxc.dialect to \"modern\" (LXC 2.1 and later) or \"legacy\""
                )))
            })?;
            if (major, minor) >= (2, 1) {
                Dialect::Modern
            } else {
                Dialect::Legacy
            }
        }
    })
}

/// A running container's limits, planned by the `cgroup` kind's rules through `lxc-cgroup`.
#[derive(Debug)]
struct LivePlan {
    /// `None` when not running; the error when the live cgroup could not be read.
    group: Option<std::result::Result<GroupPlan, String>>,
}

impl LivePlan {
    fn stopped() -> LivePlan {
        LivePlan { group: None }
    }
}

/// The limits a running container's cgroup is held to: the document's, without memory+swap on a
/// v1 kernel that does not account swap (the config reports that); `None` when there are none.
fn live_limits(c: &Container, swap_ok: bool) -> Option<Limits> {
    let l = Limits { memory_swap: c.limits.memory_swap.filter(|_| swap_ok), ..c.limits };
    (c.live && !crate::cgroup::Setting::named_by(&l).is_empty()).then_some(l)
}

#[derive(Debug)]
struct Ready {
    before: Config,
    settings: Vec<Setting>,
    outcome: Outcome,
    /// What the host cannot take; the container is `failed` while any remains.
    problems: Vec<String>,
    running: bool,
    live: bool,
}

#[derive(Debug)]
struct ContainerPlan {
    name: String,
    /// Host path of the config file.
    config: String,
    state: std::result::Result<Ready, String>,
    live: Option<LivePlan>,
}

pub struct Plan {
    env: Env,
    /// The cgroup version's rules, for the live limits (`None` when nothing runs live).
    backend: Option<Box<dyn Backend>>,
    /// The real path LXC's own commands are given (the host path under `--root`).
    lxcpath: String,
    containers: Vec<ContainerPlan>,
}

/// The container with the `config` keys the host cannot take left out, and why.
fn host_problems(c: &Container, env: Env, swap_ok: bool) -> (Container, Omit, Vec<String>) {
    let mut problems = Vec::new();
    let mut c = c.clone();
    let omit = Omit { memory_swap: c.limits.memory_swap.is_some() && !swap_ok };
    if omit.memory_swap {
        problems.push(
            "memory_swap_limit: swap accounting is off on this kernel (no memory.memsw.limit_in_bytes under \
             /sys/fs/cgroup/memory) and LXC refuses to start a container whose config sets it; boot with \
             swapaccount=1 or drop memory_swap_limit (it was not written)"
                .to_string(),
        );
    }
    if env.dialect == Dialect::Legacy
        && env.cgroup == Version::V2
        && (c.limits.memory.is_some() || c.limits.cpu_shares.is_some())
    {
        problems.push("LXC 1.x/2.0 (dialect legacy) has no lxc.cgroup2 keys, so limits cannot be set on this cgroup v2 host".into());
    }
    c.config.retain(|(k, _)| {
        if converge::wrong_version_key(k.as_str(), env.cgroup).is_some() {
            problems.push(format!(
                "config[{:?}]: LXC ignores this key on a cgroup v{} host; write it for that version (it was not written)",
                k.as_str(),
                env.cgroup.number()
            ));
            return false;
        }
        if env.dialect == Dialect::Modern && legacy::is_legacy_key(k.as_str()) {
            problems.push(format!(
                "config[{:?}]: a legacy key that LXC 2.1 and later refuse; write its modern name (see lxc-update-config) \
                 (it was not written)",
                k.as_str()
            ));
            return false;
        }
        true
    });
    (c, omit, problems)
}

/// One container's settings rendered for this host, with the keys it cannot take left out and why.
pub struct Rendered {
    settings: Vec<Setting>,
    problems: Vec<String>,
}

pub fn rendered(c: &Container, env: Env, swap_ok: bool, renderer: &Renderer) -> std::result::Result<Rendered, render::RenderError> {
    let (cut, omit, problems) = host_problems(c, env, swap_ok);
    Ok(Rendered { settings: renderer.settings(&cut, omit)?, problems })
}

/// What `apply` makes of a container's config, and the problems that leave the container
/// `failed`. `plan` and the audit's "after the fix" facts both call it, so a rule added here
/// reaches both.
pub struct Prediction {
    settings: Vec<Setting>,
    pub outcome: Outcome,
    pub problems: Vec<String>,
}

pub fn predict(before: &Config, c: &Container, rendered: Rendered, env: Env) -> Prediction {
    let Rendered { mut settings, mut problems } = rendered;
    if c.cap_drop.as_ref().is_some_and(|caps| !caps.is_empty()) && before.last("lxc.cap.keep").is_some() {
        settings.retain(|s| s.name != "cap_drop");
        problems.push(
            "cap_drop: the config sets lxc.cap.keep, and LXC refuses to start a container with both; \
             remove the lxc.cap.keep lines or drop cap_drop from the document (it was not written)"
                .into(),
        );
    }
    let outcome = converge(before, &settings, env);
    Prediction { settings, outcome, problems }
}

pub fn plan(ctx: &Ctx, desired: &LxcState) -> Result<Plan> {
    let host = ctx.host;
    // An empty section asks nothing of LXC, so it does not need LXC installed.
    let dialect = if desired.containers.is_empty() { Dialect::Modern } else { resolve_dialect(host, desired.dialect)? };
    let env = Env { dialect, cgroup: crate::cgroup::host_version(host) };
    let swap_ok = swap_accounting(host, env.cgroup);
    let renderer = Renderer::new(env);
    let lxcpath = host.path(&desired.lxcpath).to_string_lossy().into_owned();
    let mut containers = Vec::new();
    let mut active: Option<std::collections::BTreeSet<String>> = None;
    let mut backend: Option<std::result::Result<Box<dyn Backend>, String>> = None;
    for c in &desired.containers {
        let name = c.name.as_str().to_string();
        let dir = format!("{}/{name}", desired.lxcpath.trim_end_matches('/'));
        let config_path = format!("{dir}/config");
        // Rendered for every container before anything is written; a template failure stops
        // the run with nothing touched.
        let rendered = rendered(c, env, swap_ok, &renderer).map_err(|e| Error::Refused(e.to_string()))?;
        // A config (or container directory) that is a link could point at any file on the host:
        // it is neither read (its content would reach the report) nor written.
        if let Some(link) = [&dir, &config_path].into_iter().find(|p| host.is_symlink(p)) {
            containers.push(ContainerPlan {
                name: name.clone(),
                config: config_path.clone(),
                state: Err(format!(
                    "{link} is a symbolic link; hostguard never reads or writes a container config through a link \
                     (replace the link by the directory or file it points to)"
                )),
                live: None,
            });
            continue;
        }
        let text = if host.is_dir(&dir) { host.read_optional_bounded(&config_path, limits::CONTAINER_CONFIG) } else { Ok(None) };
        let text = match text {
            Err(e) if e.is_unreadable_kind() => {
                // A FIFO, device or oversized file where the config should be: failed, in
                // bounded time, and never written (apply would replace what it cannot read).
                containers.push(ContainerPlan {
                    name: name.clone(),
                    config: config_path,
                    state: Err(format!("{e}; the container's config is not checked or written until it is")),
                    live: live_limits(c, swap_ok).map(|_| LivePlan::stopped()),
                });
                continue;
            }
            other => other?,
        };
        let Some(text) = text else {
            let what = if host.is_dir(&dir) { format!("{config_path} does not exist") } else { format!("{dir} does not exist") };
            containers.push(ContainerPlan {
                name: name.clone(),
                config: config_path,
                state: Err(format!(
                    "{what}: create the container first (lxc-create -n {name} -t TEMPLATE{}); hostguard manages the \
                     config of an existing container and does not build root filesystems",
                    if desired.lxcpath == crate::state::lxc::DEFAULT_LXCPATH { String::new() } else { format!(" -P {}", desired.lxcpath) }
                )),
                // Still one resource, so the report names the same ids whatever the host holds.
                live: live_limits(c, swap_ok).map(|_| LivePlan::stopped()),
            });
            continue;
        };
        let before = Config::parse(&text);
        let Prediction { settings, outcome, problems } = predict(&before, c, rendered, env);
        let running = (c.live || !outcome.changes.is_empty()) && {
            if active.is_none() {
                active = Some(live::active(host, &lxcpath)?);
            }
            active.as_ref().is_some_and(|a| a.contains(&name))
        };
        let live = live_limits(c, swap_ok).map(|limits| {
            if !running {
                return LivePlan::stopped();
            }
            let group = backend_for(host, &mut backend).and_then(|b| {
                let files = LxcCgroup { host, lxcpath: &lxcpath, name: &name };
                GroupPlan::read(host, b, &files, &limits, KIND, &format!("lxc-live/{name}")).map_err(|e| e.to_string())
            });
            LivePlan { group: Some(group) }
        });
        containers.push(ContainerPlan {
            name,
            config: config_path,
            state: Ok(Ready { before, settings, outcome, problems, running, live: c.live }),
            live,
        });
    }
    Ok(Plan { env, backend: backend.and_then(|b| b.ok()), lxcpath, containers })
}

fn joined(lines: impl Iterator<Item = String>) -> Option<String> {
    let v: Vec<String> = lines.collect();
    Some(v.join("; "))
}

impl Ready {
    fn current(&self) -> Option<String> {
        joined(
            self.before
                .lines
                .iter()
                .filter(|l| l.entry.as_ref().is_some_and(|e| self.settings.iter().any(|s| s.owns.matches(&e.key))))
                .map(|l| l.shown().trim().to_string()),
        )
    }

    fn desired(&self) -> Option<String> {
        joined(self.settings.iter().flat_map(|s| s.lines.iter().map(|l| l.shown().to_string())))
    }

    /// Whether the changes only take effect when a running container restarts.
    fn restart_required(&self) -> bool {
        self.running
            && self.outcome.changes.iter().any(|c| match c.class {
                Class::Restart | Class::Config | Class::CgroupVersion => true,
                Class::Limit => !self.live,
                Class::Migration => false,
            })
    }

    fn diff(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.outcome.changes {
            out.push(format!("[{}]", c.what));
            out.extend(c.diff.iter().cloned());
        }
        out
    }

    fn what(&self) -> String {
        self.outcome.changes.iter().map(|c| c.what.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// A config apply is about to write.
struct Pending {
    before: ResourceReport,
    want: String,
    notes: Vec<String>,
}

impl ContainerPlan {
    fn id(&self) -> String {
        format!("lxc/{}", self.name)
    }

    fn report(&self) -> ResourceReport {
        let r = match &self.state {
            Err(msg) => return ResourceReport::new(KIND, self.id(), Status::Failed).message(msg.clone()),
            Ok(r) => r,
        };
        let base = ResourceReport::new(KIND, self.id(), Status::InSync)
            .values(r.current(), r.desired())
            .restart_required(r.restart_required())
            .with_diff(r.diff());
        let mut msg = Vec::new();
        if !r.outcome.changes.is_empty() {
            msg.push(format!("{} differs in: {}", self.config, r.what()));
        }
        if r.outcome.migrated_legacy() {
            msg.push("legacy keys that this LXC refuses: apply renames them and keeps the old file as a backup".into());
        }
        msg.extend(r.problems.iter().cloned());
        let status = match (r.problems.is_empty(), r.outcome.changes.is_empty()) {
            (true, true) => Status::InSync,
            (true, false) => Status::Drift,
            (false, _) => Status::Failed,
        };
        ResourceReport { status, ..base }.message(msg.join("; "))
    }

    /// What apply writes for this container: `Err` holds the final report when nothing is
    /// to be written (in sync, failed in plan, or the legacy backup failed).
    fn prepare(&self, host: &Host) -> std::result::Result<Pending, ResourceReport> {
        let before = self.report();
        let r = match &self.state {
            Ok(r) if !r.outcome.changes.is_empty() => r,
            _ => return Err(before),
        };
        let mut notes = Vec::new();
        if r.outcome.migrated_legacy() {
            match backup(host, &self.config, &r.before.text()) {
                Ok(path) => notes.push(format!("the file with legacy keys is kept as {path}")),
                Err(e) => return Err(before.after(Status::Failed, format!("could not keep a backup before migrating legacy keys: {e}; nothing written"))),
            }
        }
        Ok(Pending { before, want: r.outcome.config.text(), notes })
    }

    /// The report once the config was written (in one batch with the others), read back.
    fn finish(&self, host: &Host, env: Env, p: Pending, written: std::result::Result<bool, HostError>) -> ResourceReport {
        let Pending { before, want, notes } = p;
        let Ok(r) = &self.state else { return before };
        let failed = |m: String| before.after(Status::Failed, m);
        if let Err(e) = written {
            return failed(format!("could not write {}: {e}", self.config));
        }
        // Read back and converge again: what was written must need nothing more.
        match host.read_bounded(&self.config, limits::CONTAINER_CONFIG) {
            Ok(now) if now == want && converge(&Config::parse(&now), &r.settings, env).changes.is_empty() => {}
            Ok(_) => return failed(format!("wrote {} but it reads back different; another writer?", self.config)),
            Err(e) => return failed(format!("wrote {} but could not read it back: {e}", self.config)),
        }
        let mut msg = vec![format!("changed {}: {}", self.config, r.what())];
        msg.extend(notes);
        if r.restart_required() {
            msg.push("the running container keeps its old settings until it restarts".into());
        }
        let mut out = before.after(if r.problems.is_empty() { Status::Changed } else { Status::Failed }, String::new());
        msg.extend(r.problems.iter().cloned());
        out.current = out.desired.clone();
        out.message = msg.join("; ");
        out
    }

    fn live_report(&self) -> Option<ResourceReport> {
        let l = self.live.as_ref()?;
        let id = format!("lxc-live/{}", self.name);
        if self.state.is_err() {
            return Some(ResourceReport::new(KIND, id, Status::Failed).message(format!(
                "no container {} to set limits on (see lxc/{})",
                self.name, self.name
            )));
        }
        match &l.group {
            None => Some(ResourceReport::new(KIND, id, Status::InSync).message(format!(
                "{} is not running; its config holds the limits for its next start",
                self.name
            ))),
            Some(Err(e)) => Some(ResourceReport::new(KIND, id, Status::Failed).message(format!("could not read the live cgroup: {e}"))),
            Some(Ok(g)) => Some(merged(id, g, &g.reports())),
        }
    }

    fn live_apply(&self, host: &Host, lxcpath: &str, backend: Option<&dyn Backend>) -> Option<ResourceReport> {
        let before = self.live_report()?;
        let (Some(Some(Ok(g))), Some(b)) = (self.live.as_ref().map(|l| l.group.as_ref()), backend) else { return Some(before) };
        if before.status != Status::Drift {
            return Some(before);
        }
        let files = LxcCgroup { host, lxcpath, name: &self.name };
        let after = g.clone().apply(host, b, &files);
        Some(merged(before.id, g, &after))
    }
}

/// The cgroup rules for live limits, detected once for the run.
fn backend_for<'a>(host: &Host, slot: &'a mut Option<std::result::Result<Box<dyn Backend>, String>>) -> std::result::Result<&'a dyn Backend, String> {
    let b = slot.get_or_insert_with(|| crate::cgroup::detect(host, VersionChoice::Auto).map_err(|e| e.to_string()));
    b.as_deref().map_err(|e| e.clone())
}

/// A running container's limits as one resource, `lxc-live/NAME`: each control file with its
/// value (`memory.max=128M cpu.weight=59`), the worst status of its settings, and their messages.
fn merged(id: String, g: &GroupPlan, reports: &[ResourceReport]) -> ResourceReport {
    let targets = g.targets();
    let value = |file: &str, r: &ResourceReport| {
        r.current.as_deref().map(|c| c.strip_prefix(&format!("{file} ")).unwrap_or(c).to_string()).unwrap_or_else(|| "?".into())
    };
    let current: Vec<String> = targets.iter().zip(reports).map(|((file, _), r)| format!("{file}={}", value(file, r))).collect();
    let desired: Vec<String> = targets.iter().map(|(file, v)| format!("{file}={v}")).collect();
    let status = [Status::Failed, Status::Drift, Status::Changed]
        .into_iter()
        .find(|s| reports.iter().any(|r| r.status == *s))
        .unwrap_or(Status::InSync);
    let said: Vec<&str> = reports.iter().filter(|r| r.status == status && !r.message.is_empty()).map(|r| r.message.as_str()).collect();
    let lead = match status {
        Status::InSync => "",
        Status::Drift => "the running container's cgroup differs",
        Status::Changed => "set the running container's cgroup",
        Status::Failed => "the running container's cgroup did not take",
    };
    let message = match (lead, said.is_empty()) {
        ("", _) => String::new(),
        (lead, true) => lead.to_string(),
        (lead, false) => format!("{lead}: {}", said.join("; ")),
    };
    ResourceReport::new(KIND, id, status).values(Some(current.join(" ")), Some(desired.join(" "))).message(message)
}

/// Keep the file as it was before a legacy migration: `config.backup` (the name
/// lxc-update-config uses), or `config.backup.SECONDS` when that exists already.
fn backup(host: &Host, config: &str, text: &str) -> std::result::Result<String, HostError> {
    let mut path = format!("{config}.backup");
    if host.exists(&path) {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        path = format!("{config}.backup.{secs}");
    }
    host.write_file(&path, text.as_bytes())?;
    Ok(path)
}

impl Resources for Plan {
    fn reports(&self) -> Vec<ResourceReport> {
        let mut out = Vec::new();
        for c in &self.containers {
            out.push(c.report());
            out.extend(c.live_report());
        }
        out
    }

    fn apply(self: Box<Self>, ctx: &Ctx) -> Vec<ResourceReport> {
        // Every changed config is replaced in one batch (`Host::write_files`: all temp files,
        // made durable together, then the renames): one wait on the disk, not one per file.
        let pending: Vec<_> = self.containers.iter().map(|c| c.prepare(ctx.host)).collect();
        let files: Vec<(&std::path::Path, &[u8])> = self
            .containers
            .iter()
            .zip(&pending)
            .filter_map(|(c, p)| p.as_ref().ok().map(|p| (std::path::Path::new(c.config.as_str()), p.want.as_bytes())))
            .collect();
        let mut written = ctx.host.write_files(&files).into_iter();
        let mut out = Vec::new();
        for (c, p) in self.containers.iter().zip(pending) {
            out.push(match p {
                Ok(p) => c.finish(ctx.host, self.env, p, written.next().expect("one result per written config")),
                Err(report) => {
                    // A config needing no write still gets the sweep a write does (a power cut
                    // can leave temp files beside a config already as the document wants it).
                    if c.state.is_ok() {
                        ctx.host.remove_stale_temps_beside(&c.config);
                    }
                    report
                }
            });
            out.extend(c.live_apply(ctx.host, &self.lxcpath, self.backend.as_deref()));
        }
        // Not freed: the run ends with the report, as after a plan (`engine::converge`); freeing
        // 1,000 parsed and converged configs was 8% of an apply's instructions.
        std::mem::forget(self);
        out
    }
}
