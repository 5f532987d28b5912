//! Rendering the keys a document manages with handlebars templates, one set per dialect
//! (`templates/modern`, `templates/legacy`), in strict mode so a template that names a missing
//! value fails instead of writing an empty one. The output is parsed back and must be nothing but
//! `lxc.*` key lines: a safety net under validation, which already refuses newlines in values.
//! The limits are no template's: their `lxc.cgroup.*` / `lxc.cgroup2.*` keys and values come from
//! the cgroup kind's table of files (`cgroupmap::line`), for the host's cgroup version.

use handlebars::Handlebars;
use serde_json::json;

use super::cgroupmap;
use super::config::{Config, Line};
use super::converge::{Class, Cmp, Dialect, Env, Owns, Setting};
use crate::cgroup::Setting as LimitSetting;
use crate::state::lxc::Container;

const TEMPLATES: [(&str, &str, &str); 8] = [
    ("modern", "network", include_str!("templates/modern/network.hbs")),
    ("modern", "cap_drop", include_str!("templates/modern/cap_drop.hbs")),
    ("modern", "idmap", include_str!("templates/modern/idmap.hbs")),
    ("modern", "config", include_str!("templates/modern/config.hbs")),
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
        let mut out = Vec::new();
        // The limits' keys and values are the cgroup kind's own table (`cgroupmap::line`): the
        // files it writes live, and v2's swap and weight converted once, there.
        let limits = [
            (LimitSetting::Memory, c.limits.memory.is_some(), Cmp::Size),
            (LimitSetting::MemorySwap, c.limits.memory_swap.is_some() && !omit.memory_swap, Cmp::Size),
            (LimitSetting::CpuShares, c.limits.cpu_shares.is_some(), Cmp::Number),
        ];
        for (setting, _, cmp) in limits.into_iter().filter(|(_, named, _)| *named) {
            let (key, value) = cgroupmap::line(setting, &c.limits, v);
            out.push(Setting {
                name: setting.name().to_string(),
                owns: Owns::Keys(cgroupmap::keys(setting).to_vec()),
                lines: vec![Line::new(&key, &value)],
                cmp,
                class: Class::Limit,
            });
        }
        let mut push = |setting: &str, template: &str, ctx: serde_json::Value, owns: Owns, cmp: Cmp, class: Class| {
            let lines = self.render(name, template, &ctx)?;
            out.push(Setting { name: setting.to_string(), owns, lines, cmp, class });
            Ok::<(), RenderError>(())
        };
        let keys = |ks: &[&str]| Owns::Keys(ks.iter().map(|k| k.to_string()).collect());
        if let Some(nets) = &c.network {
            let nets: Vec<serde_json::Value> = nets
                .iter()
                .map(|n| n.entries.iter().map(|(k, val)| json!({ "key": k, "value": val })).collect())
                .collect();
            let cmp = match self.env.dialect {
                Dialect::Modern => Cmp::Multiset,
                Dialect::Legacy => Cmp::Interfaces,
            };
            push("network", "network", json!({ "network": nets }), Owns::Network, cmp, Class::Restart)?;
        }
        if let Some(caps) = &c.cap_drop {
            push(
                "cap_drop",
                "cap_drop",
                json!({ "cap_drop": caps.join(" ") }),
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
                json!({ "idmap": maps }),
                keys(&["lxc.idmap", "lxc.id_map"]),
                Cmp::Seq,
                Class::Restart,
            )?;
        }
        for (k, val) in &c.config {
            push(
                &format!("config[{:?}]", k.as_str()),
                "config",
                json!({ "key": k.as_str(), "value": val }),
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
