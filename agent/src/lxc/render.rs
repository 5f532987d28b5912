//! Rendering the keys a document manages with handlebars templates, one set per dialect
//! (`templates/modern`, `templates/legacy`), in strict mode so a template that names a missing
//! value fails instead of writing an empty one. The cgroup version picks the `lxc.cgroup.*` or
//! `lxc.cgroup2.*` keys inside each template. The output is parsed back and must be nothing but
//! `lxc.*` key lines: a safety net under validation, which already refuses newlines in values.

use handlebars::Handlebars;
use serde_json::json;

use super::cgroupmap::{shares_to_weight, size_value, swap_only, Version};
use super::config::{Config, Line};
use super::converge::{Class, Cmp, Dialect, Env, Owns, Setting};
use crate::state::lxc::Container;
use crate::state::types::Limit;

const TEMPLATES: [(&str, &str, &str); 14] = [
    ("modern", "memory_limit", include_str!("templates/modern/memory_limit.hbs")),
    ("modern", "memory_swap_limit", include_str!("templates/modern/memory_swap_limit.hbs")),
    ("modern", "cpu_shares", include_str!("templates/modern/cpu_shares.hbs")),
    ("modern", "network", include_str!("templates/modern/network.hbs")),
    ("modern", "cap_drop", include_str!("templates/modern/cap_drop.hbs")),
    ("modern", "idmap", include_str!("templates/modern/idmap.hbs")),
    ("modern", "config", include_str!("templates/modern/config.hbs")),
    ("legacy", "memory_limit", include_str!("templates/legacy/memory_limit.hbs")),
    ("legacy", "memory_swap_limit", include_str!("templates/legacy/memory_swap_limit.hbs")),
    ("legacy", "cpu_shares", include_str!("templates/legacy/cpu_shares.hbs")),
    ("legacy", "network", include_str!("templates/legacy/network.hbs")),
    ("legacy", "cap_drop", include_str!("templates/legacy/cap_drop.hbs")),
    ("legacy", "idmap", include_str!("templates/legacy/idmap.hbs")),
    ("legacy", "config", include_str!("templates/legacy/config.hbs")),
];

#[derive(Debug, thiserror::Error)]
#[error("rendering the {template} template ({dialect} dialect) for container {container}: {reason}")]
pub struct RenderError {
    pub container: String,
    pub dialect: &'static str,
    pub template: String,
    pub reason: String,
}

pub struct Renderer {
    hb: Handlebars<'static>,
    env: Env,
}

/// What to leave out because the host cannot take it (reported as failed by the caller).
#[derive(Debug, Clone, Copy, Default)]
pub struct Omit {
    pub memory_swap: bool,
}

impl Renderer {
    pub fn new(env: Env) -> Renderer {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        for (dialect, name, text) in TEMPLATES {
            if dialect == env.dialect.name() {
                hb.register_template_string(name, text).expect("the built-in templates parse");
            }
        }
        Renderer { hb, env }
    }

    fn render(&self, container: &str, template: &str, ctx: &serde_json::Value) -> Result<Vec<Line>, RenderError> {
        let err = |reason: String| RenderError {
            container: container.to_string(),
            dialect: self.env.dialect.name(),
            template: template.to_string(),
            reason,
        };
        let text = self.hb.render(template, ctx).map_err(|e| err(e.to_string()))?;
        let mut lines = Vec::new();
        for line in Config::parse(&text).lines {
            if line.raw.trim().is_empty() {
                continue;
            }
            let Some(e) = &line.entry else {
                return Err(err(format!("produced {:?}, which is not a key line", line.shown())));
            };
            lines.push(Line::new(&e.key, &e.value));
        }
        Ok(lines)
    }

    /// Every setting the document names for one container, rendered.
    pub fn settings(&self, c: &Container, omit: Omit) -> Result<Vec<Setting>, RenderError> {
        let v = self.env.cgroup;
        let name = c.name.as_str();
        let base = json!({ "cgroup": v.number() });
        let with = |extra: serde_json::Value| {
            let mut ctx = base.clone();
            for (k, val) in extra.as_object().expect("an object").iter() {
                ctx[k] = val.clone();
            }
            ctx
        };
        let mut out = Vec::new();
        let mut push = |setting: &str, template: &str, ctx: serde_json::Value, owns: Owns, cmp: Cmp, class: Class| {
            let lines = self.render(name, template, &ctx)?;
            out.push(Setting { name: setting.to_string(), owns, lines, cmp, class });
            Ok::<(), RenderError>(())
        };
        let keys = |ks: &[&str]| Owns::Keys(ks.iter().map(|k| k.to_string()).collect());
        if let Some(m) = c.limits.memory {
            push(
                "memory_limit",
                "memory_limit",
                with(json!({ "memory_limit": size_value(m, v) })),
                keys(&["lxc.cgroup.memory.limit_in_bytes", "lxc.cgroup2.memory.max"]),
                Cmp::Size,
                Class::Limit,
            )?;
        }
        if let (Some(s), false) = (c.limits.memory_swap, omit.memory_swap) {
            let value = match v {
                Version::V1 => size_value(s, v),
                Version::V2 => size_value(swap_only(s, c.limits.memory.unwrap_or(Limit::Max)), v),
            };
            push(
                "memory_swap_limit",
                "memory_swap_limit",
                with(json!({ "memory_swap_limit": value })),
                keys(&["lxc.cgroup.memory.memsw.limit_in_bytes", "lxc.cgroup2.memory.swap.max"]),
                Cmp::Size,
                Class::Limit,
            )?;
        }
        if let Some(shares) = c.limits.cpu_shares {
            push(
                "cpu_shares",
                "cpu_shares",
                with(json!({ "cpu_shares": shares, "cpu_weight": shares_to_weight(shares) })),
                keys(&["lxc.cgroup.cpu.shares", "lxc.cgroup2.cpu.weight"]),
                Cmp::Number,
                Class::Limit,
            )?;
        }
        if let Some(nets) = &c.network {
            let nets: Vec<serde_json::Value> = nets
                .iter()
                .map(|n| n.entries.iter().map(|(k, val)| json!({ "key": k, "value": val })).collect())
                .collect();
            let cmp = match self.env.dialect {
                Dialect::Modern => Cmp::Multiset,
                Dialect::Legacy => Cmp::Interfaces,
            };
            push("network", "network", with(json!({ "network": nets })), Owns::Network, cmp, Class::Restart)?;
        }
        if let Some(caps) = &c.cap_drop {
            push(
                "cap_drop",
                "cap_drop",
                with(json!({ "cap_drop": caps.join(" ") })),
                keys(&["lxc.cap.drop"]),
                Cmp::Tokens,
                Class::Restart,
            )?;
        }
        if let Some(maps) = &c.idmap {
            let maps: Vec<String> = maps.iter().map(|m| m.to_string()).collect();
            push(
                "idmap",
                "idmap",
                with(json!({ "idmap": maps })),
                keys(&["lxc.idmap", "lxc.id_map"]),
                Cmp::Seq,
                Class::Restart,
            )?;
        }
        for (k, val) in &c.config {
            push(
                &format!("config[{:?}]", k.as_str()),
                "config",
                with(json!({ "key": k.as_str(), "value": val })),
                keys(&[k.as_str()]),
                Cmp::Text,
                Class::Config,
            )?;
        }
        Ok(out)
    }
}

/// The managed lines of a container as one text, for golden files: every setting's lines in
/// the order `settings` renders them.
pub fn render_text(r: &Renderer, c: &Container) -> Result<String, RenderError> {
    let mut out = String::new();
    for s in r.settings(c, Omit::default())? {
        for l in s.lines {
            out.push_str(&l.raw);
        }
    }
    Ok(out)
}
