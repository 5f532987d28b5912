//! Rendering the keys a document manages with handlebars templates, one set per dialect
//! (`templates/modern`, `templates/legacy`), in strict mode so a template that names a missing
//! value fails instead of writing an empty one. The output is parsed back and must be nothing but
//! `lxc.*` key lines: a safety net under validation, which already refuses newlines in values.
//! The limits are no template's: their `lxc.cgroup.*` / `lxc.cgroup2.*` keys and values come from
//! the cgroup kind's table of files (`cgroupmap::line`), for the host's cgroup version.

use std::collections::HashMap;
use std::sync::Mutex;

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
    /// Lines already rendered, by template and context: containers of one host mostly share
    /// their settings (`lxc.start.auto = 1`, the same cap_drop list), and rendering was a third
    /// of the instructions of a plan of 1,000 configs. Rendering depends on nothing else.
    done: Mutex<HashMap<(&'static str, String), Vec<Line>>>,
}

/// Rendered contexts kept at most (then forgotten and rendered again): a bound on memory when
/// every container's values differ.
const DONE_KEPT: usize = 4096;

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
        Renderer { hb, env, done: Mutex::new(HashMap::new()) }
    }

    fn render(&self, container: &str, template: &'static str, ctx: &serde_json::Value) -> Result<Vec<Line>, RenderError> {
        let key = (template, ctx.to_string());
        if let Some(lines) = self.done.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(lines.clone());
        }
        let lines = self.render_new(container, template, ctx)?;
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        if done.len() >= DONE_KEPT {
            done.clear();
        }
        done.insert(key, lines.clone());
        Ok(lines)
    }

    fn render_new(&self, container: &str, template: &str, ctx: &serde_json::Value) -> Result<Vec<Line>, RenderError> {
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
        let mut push = |setting: &str, template: &'static str, ctx: serde_json::Value, owns: Owns, cmp: Cmp, class: Class| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lxc::cgroupmap::Version;

    fn container(json: &str) -> Container {
        let doc = format!(r#"{{"version": 1, "lxc": {{"containers": {{"web1": {json}}}}}}}"#);
        crate::state::load(doc.as_bytes(), "test").unwrap().lxc.unwrap().containers.remove(0)
    }

    #[test]
    fn a_context_rendered_before_gives_the_same_lines_and_another_its_own() {
        let env = Env { dialect: Dialect::Modern, cgroup: Version::V2 };
        let a = container(r#"{"cap_drop": ["sys_time"], "network": [{"type": "veth", "ipv4.address": "10.0.3.10/24"}], "config": {"lxc.start.auto": "1"}}"#);
        let b = container(r#"{"cap_drop": ["sys_time"], "network": [{"type": "veth", "ipv4.address": "10.0.3.11/24"}], "config": {"lxc.start.auto": "0"}}"#);
        let shared = Renderer::new(env);
        let first = render_text(&shared, &a).unwrap();
        assert_eq!(render_text(&shared, &b).unwrap(), render_text(&Renderer::new(env), &b).unwrap());
        assert_eq!(render_text(&shared, &a).unwrap(), first);
        assert!(first.contains("10.0.3.10/24") && first.contains("lxc.start.auto = 1"), "{first}");
        let again = render_text(&shared, &b).unwrap();
        assert!(again.contains("10.0.3.11/24") && again.contains("lxc.start.auto = 0") && !again.contains("10.0.3.10"), "{again}");
    }
}
