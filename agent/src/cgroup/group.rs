//! One group's limits: read, diff, apply with the kernel's ordering rule, read back.

use crate::error::HostError;
use crate::host::Host;
use crate::report::{ResourceReport, Status};
use crate::state::cgroup::Limits;
use crate::state::types::Limit;

use super::backend::{Backend, Controller, Native, Setting, Target};
use super::files::{GroupFiles, Presence};

/// What one setting's file holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Current {
    Value(Native),
    /// The group does not exist (in this setting's hierarchy).
    NoGroup,
    /// v2: the group exists but its parent does not pass this setting's controller down.
    NotEnabled,
    /// The host cannot hold the setting; the message says why and what to do. Failed in plan
    /// and apply.
    Unavailable(String),
    /// A file this setting is read from is not one hostguard reads (a FIFO, a device, an
    /// oversized file): failed in plan and apply, naming the path and what it is, and not written.
    Unreadable(String),
}

#[derive(Debug, Clone)]
struct Item {
    target: Target,
    current: Current,
}

/// The plan for one group: every setting the document names, with what the host holds. The
/// group's files are reached through a `GroupFiles` door, the same rules for both doors.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    /// The group as messages name it (`GroupFiles::name`).
    group: String,
    limits: Limits,
    kind: &'static str,
    id_prefix: String,
    /// Whether a missing group is created (a `cgroups` group) or is a failure (a running
    /// container's live cgroup, which LXC owns).
    create: bool,
    items: Vec<Item>,
}

fn read_current(host: &Host, b: &dyn Backend, files: &dyn GroupFiles, target: &Target) -> Result<Current, HostError> {
    if let Some(why) = b.unavailable(host, target.setting)? {
        return Ok(Current::Unavailable(why));
    }
    let controller = target.setting.controller();
    match files.presence(controller)? {
        Presence::Missing => return Ok(Current::NoGroup),
        Presence::NotEnabled => return Ok(Current::NotEnabled),
        Presence::Ready => {}
    }
    let shown = || files.describe(controller, target.file);
    match files.read(controller, target.file)? {
        None => Ok(Current::Unavailable(b.missing_file(target.setting, &shown()).unwrap_or_else(|| format!(
            "{} does not exist: the {} controller is not enabled for {}",
            shown(),
            controller.name(),
            files.name()
        )))),
        Some(text) => match target.value.parse_like(&text, b.version()) {
            Some(v) => Ok(Current::Value(v)),
            None => Err(HostError::Other(format!("{}: unexpected content {:?}", shown(), text.trim()))),
        },
    }
}

impl GroupPlan {
    /// Read what the host holds for every setting `limits` names.
    pub fn read(
        host: &Host,
        b: &dyn Backend,
        files: &dyn GroupFiles,
        limits: &Limits,
        kind: &'static str,
        id_prefix: &str,
    ) -> Result<GroupPlan, HostError> {
        let mut items = Vec::new();
        let group = files.name();
        for setting in Setting::named_by(limits) {
            let target = b.target(setting, limits);
            let current = match read_current(host, b, files, &target) {
                Err(e) if e.is_unreadable_kind() => {
                    Current::Unreadable(format!("{e}; {group} {} is not checked or written until it is", setting.name()))
                }
                other => other?,
            };
            items.push(Item { target, current });
        }
        Ok(GroupPlan { group, limits: *limits, kind, id_prefix: id_prefix.to_string(), create: files.can_create(), items })
    }

    /// Each setting's control file and the value it should hold, in report order.
    pub fn targets(&self) -> Vec<(&'static str, String)> {
        self.items.iter().map(|i| (i.target.file, i.target.value.to_string())).collect()
    }

    fn id(&self, s: Setting) -> String {
        format!("{}/{}", self.id_prefix, s.name())
    }

    fn desired_text(&self, t: &Target) -> String {
        let abstract_value = match t.setting {
            Setting::Memory => self.limits.memory.map(|l| l.to_string()),
            Setting::MemorySwap => self.limits.memory_swap.map(|l| l.to_string()),
            Setting::CpuShares => self.limits.cpu_shares.map(|n| n.to_string()),
            Setting::PidsMax => self.limits.pids_max.map(|p| p.to_string()),
        }
        .unwrap_or_default();
        if t.converted {
            format!("{abstract_value} ({} {})", t.file, t.value)
        } else {
            abstract_value
        }
    }

    fn current_text(t: &Target, v: Native) -> String {
        if t.converted {
            format!("{} {v}", t.file)
        } else {
            v.to_string()
        }
    }

    fn report(&self, item: &Item) -> ResourceReport {
        let t = &item.target;
        let r = ResourceReport::new(self.kind, self.id(t.setting), Status::InSync);
        let desired = Some(self.desired_text(t));
        match &item.current {
            Current::Value(v) if v.satisfies(t.value) => r.values(Some(Self::current_text(t, *v)), desired),
            Current::Value(v) => ResourceReport { status: Status::Drift, ..r }.values(Some(Self::current_text(t, *v)), desired),
            Current::NoGroup => ResourceReport { status: Status::Drift, ..r }.values(None, desired).message(if self.create {
                format!("{} does not exist; apply creates it", self.group)
            } else {
                format!("{} does not exist", self.group)
            }),
            Current::NotEnabled => ResourceReport { status: Status::Drift, ..r }.values(None, desired).message(format!(
                "the {} controller is not enabled for {}{}",
                t.setting.controller().name(),
                self.group,
                if self.create { "; apply enables it in the parents' cgroup.subtree_control" } else { "" }
            )),
            // Apply would certainly fail both (SPEC section 2, an honest plan): failed already here.
            Current::Unavailable(why) | Current::Unreadable(why) => {
                ResourceReport { status: Status::Failed, ..r }.values(None, desired).message(why.clone())
            }
        }
    }

    /// Every setting once: `in_sync`, `drift`, or `failed` when the host cannot hold it or a file
    /// cannot be read.
    pub fn reports(&self) -> Vec<ResourceReport> {
        self.items.iter().map(|i| self.report(i)).collect()
    }

    /// Make the planned changes; every setting once: `in_sync`, `changed` or `failed`.
    pub fn apply(mut self, host: &Host, b: &dyn Backend, files: &dyn GroupFiles) -> Vec<ResourceReport> {
        let before: Vec<ResourceReport> = self.reports();
        if before.iter().all(|r| r.status != Status::Drift) {
            return before;
        }
        let mut out: Vec<Option<ResourceReport>> = vec![None; self.items.len()];
        // Settings the host cannot hold fail on their own; the others go ahead.
        for (i, item) in self.items.iter().enumerate() {
            if matches!(item.current, Current::Unavailable(_) | Current::Unreadable(_)) {
                out[i] = Some(before[i].clone());
            }
        }
        let missing: Vec<Controller> = {
            let mut c: Vec<Controller> = self
                .items
                .iter()
                .filter(|i| matches!(i.current, Current::NoGroup | Current::NotEnabled))
                .map(|i| i.target.setting.controller())
                .collect();
            c.sort();
            c.dedup();
            c
        };
        let was_missing: Vec<bool> =
            self.items.iter().map(|i| matches!(i.current, Current::NoGroup | Current::NotEnabled)).collect();
        let mut setup: Option<String> = None;
        if !missing.is_empty() {
            let result = files.create(&missing).map_err(|e| if self.create { format!("could not create {}: {e}", self.group) } else { e.to_string() });
            if let Err(why) = result {
                for (i, item) in self.items.iter().enumerate() {
                    if matches!(item.current, Current::NoGroup | Current::NotEnabled) {
                        out[i] = Some(before[i].after(Status::Failed, why.clone()));
                    }
                }
            } else {
                setup = Some(if self.items.iter().any(|i| i.current == Current::NoGroup) {
                    format!("created {}", self.group)
                } else {
                    let names: Vec<&str> = missing.iter().map(|c| c.name()).collect();
                    format!("enabled {} for {}", names.join(" "), self.group)
                });
                for item in self.items.iter_mut().filter(|i| matches!(i.current, Current::NoGroup | Current::NotEnabled)) {
                    item.current = match read_current(host, b, files, &item.target) {
                        Ok(c) => c,
                        Err(e) => Current::Unavailable(format!("created {} but cannot read it: {e}", self.group)),
                    };
                }
            }
        }
        for i in self.write_order() {
            if out[i].is_some() {
                continue;
            }
            let setup = setup.as_deref().filter(|_| was_missing[i]);
            out[i] = Some(self.apply_item(host, b, files, i, &before[i], setup));
        }
        out.into_iter().map(|r| r.expect("every setting is reported")).collect()
    }

    /// The kernel keeps v1 `memory.limit_in_bytes <= memory.memsw.limit_in_bytes` at every moment:
    /// when the new memsw is below the current memory limit (lowering), memory goes first;
    /// otherwise (raising) memsw goes first. v2's two files are independent.
    fn write_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.items.len()).collect();
        let pos = |s: Setting| self.items.iter().position(|i| i.target.setting == s);
        if let (Some(m), Some(s)) = (pos(Setting::Memory), pos(Setting::MemorySwap)) {
            let current_memory = match self.items[m].current {
                Current::Value(Native::Bytes(l)) => l,
                _ => Limit::Max,
            };
            let new_memsw = match self.items[s].target.value {
                Native::Bytes(l) => l,
                _ => Limit::Max,
            };
            if new_memsw >= current_memory {
                order.swap(m, s);
            }
        }
        order
    }

    fn apply_item(&self, host: &Host, b: &dyn Backend, files: &dyn GroupFiles, i: usize, before: &ResourceReport, setup: Option<&str>) -> ResourceReport {
        let item = &self.items[i];
        let t = &item.target;
        let old = match &item.current {
            Current::Value(v) => *v,
            Current::Unavailable(why) | Current::Unreadable(why) => return before.after(Status::Failed, why.clone()),
            Current::NoGroup | Current::NotEnabled => {
                return before.after(Status::Failed, format!("{} still lacks the {} controller", self.group, t.setting.controller().name()))
            }
        };
        let controller = t.setting.controller();
        let shown = files.describe(controller, t.file);
        if old.satisfies(t.value) {
            let mut r = before.after(Status::Changed, format!("{}; {} is {old}", setup.unwrap_or_default(), t.file));
            r.current = Some(Self::current_text(t, old));
            if setup.is_none() {
                r.status = Status::InSync;
                r.message.clear();
            }
            return r;
        }
        let events_before = oom_kills(b, files);
        if let Err(e) = files.write(controller, t.file, &t.value.render(b.version())) {
            return before.after(Status::Failed, self.refusal(b, files, t, &e));
        }
        let now = match read_current(host, b, files, t) {
            Ok(Current::Value(v)) => v,
            Ok(other) => return before.after(Status::Failed, format!("wrote {shown} but cannot read it back: {other:?}")),
            Err(e) => return before.after(Status::Failed, format!("wrote {shown} but cannot read it back: {e}")),
        };
        let mut r = if now.satisfies(t.value) {
            let mut msg = format!("set {} {} -> {}", t.file, old, now);
            if let Some(setup) = setup {
                msg = format!("{setup}; {msg}");
            }
            before.after(Status::Changed, msg)
        } else {
            before.after(
                Status::Failed,
                format!("wrote {} = {} but the kernel holds {now}; the limit did not take", shown, t.value),
            )
        };
        r.current = Some(Self::current_text(t, now));
        // A version that takes a limit below the usage (v2) reclaims or OOM-kills to meet it; a
        // read-back of the limit file alone would hide a group still above its limit.
        if r.status == Status::Changed && b.takes_limits_below_usage() && t.setting == Setting::Memory {
            let usage_file = b.usage_file(Setting::Memory);
            if let (Native::Bytes(Limit::Bytes(limit)), Some(usage)) = (now, read_u64(files, Controller::Memory, usage_file)) {
                if usage > limit {
                    r.status = Status::Failed;
                    r.message = format!(
                        "{} is now {now} but the group still uses {} ({usage_file}): the kernel could not reclaim \
                         or OOM-kill enough (tmpfs or unkillable tasks hold it); free memory in {} or set a higher limit",
                        t.file,
                        Limit::Bytes(usage),
                        self.group
                    );
                }
            }
            let killed = oom_kills(b, files).saturating_sub(events_before);
            if killed > 0 {
                r.message.push_str(&format!(
                    "; the kernel OOM-killed {killed} process(es) in {} to bring its usage under the new limit (memory.events oom_kill)",
                    self.group
                ));
            }
        }
        r
    }

    /// Why the kernel refused a write, and what to do about it.
    fn refusal(&self, b: &dyn Backend, files: &dyn GroupFiles, t: &Target, e: &HostError) -> String {
        let errno = match e {
            HostError::Io { source, .. } => source.raw_os_error(),
            // lxc-cgroup prints the kernel's strerror.
            HostError::Command { stderr, .. } if stderr.contains("Device or resource busy") => Some(libc::EBUSY),
            HostError::Command { stderr, .. } if stderr.contains("Invalid argument") => Some(libc::EINVAL),
            _ => None,
        };
        let reason = match e {
            HostError::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        let file = files.describe(t.setting.controller(), t.file);
        let usage = || {
            read_u64(files, Controller::Memory, b.usage_file(t.setting))
                .map(|u| format!("{} ({})", Limit::Bytes(u), b.usage_file(t.setting)))
                .unwrap_or_else(|| "more".into())
        };
        let rule = if errno == Some(libc::EINVAL) { b.invalid_because(t.setting, &|f| read_u64(files, Controller::Memory, f)) } else { None };
        match (errno, t.setting, rule) {
            (Some(libc::EBUSY), Setting::Memory | Setting::MemorySwap, _) => format!(
                "the kernel refused {file} = {} (EBUSY): the group uses {}, more than the new limit, and the kernel could \
                 not reclaim enough; stop or shrink processes in {}, or set a higher limit, then apply again",
                t.value,
                usage(),
                self.group
            ),
            (_, _, Some(rule)) => format!("the kernel refused {file} = {} (EINVAL): {rule}", t.value),
            _ => format!("the kernel refused {file} = {}: {reason}", t.value),
        }
    }
}

fn read_u64(files: &dyn GroupFiles, controller: Controller, file: &str) -> Option<u64> {
    files.read(controller, file).ok().flatten().and_then(|s| s.trim().parse().ok())
}

/// The group's OOM kill count (`oom_kill` of v2's `memory.events`); 0 where there is none.
fn oom_kills(b: &dyn Backend, files: &dyn GroupFiles) -> u64 {
    let Some(events) = b.oom_events_file() else { return 0 };
    files.read(Controller::Memory, events)
        .ok()
        .flatten()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok()))
        })
        .unwrap_or(0)
}
