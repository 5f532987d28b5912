//! `show` for LXC: each container's managed settings, read from its config, as the `lxc`
//! section of a state document that `apply` takes back unchanged.

use serde_json::{json, Map, Value};

use super::cgroupmap;
use super::config::Config;
use super::converge::interfaces;
use super::legacy;
use crate::cgroup::Setting as LimitSetting;
use crate::kind::Ctx;
use crate::error::Result;
use crate::host::limits;
use crate::state::lxc::{ContainerName, DEFAULT_LXCPATH, REPEATABLE_NET_KEYS};

pub fn show(ctx: &Ctx, lxcpath: Option<&str>) -> Result<Option<Value>> {
    let lxcpath = lxcpath.unwrap_or(DEFAULT_LXCPATH).trim_end_matches('/');
    let lxcpath = if lxcpath.is_empty() { "/" } else { lxcpath };
    if !ctx.host.is_dir(lxcpath) {
        return Ok(None);
    }
    let mut containers = Map::new();
    for name in ctx.host.list_dir(lxcpath)? {
        if ContainerName::parse(&name).is_err() {
            continue;
        }
        let text = match ctx.host.read_optional_bounded(format!("{lxcpath}/{name}/config"), limits::CONTAINER_CONFIG) {
            Ok(Some(text)) => text,
            Ok(None) => continue,
            // A FIFO or an oversized file is not a config: the container is left out of the
            // document, and said so, rather than the whole show failing or hanging.
            Err(e) if e.is_unreadable_kind() => {
                eprintln!("hostguard: warning: container {name} left out: {e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        containers.insert(name, Value::Object(settings(&Config::parse(&text))));
    }
    Ok(Some(json!({ "lxcpath": lxcpath, "dialect": "auto", "containers": containers })))
}

/// The managed settings a config holds, whichever dialect and cgroup version it is written in.
pub fn settings(cfg: &Config) -> Map<String, Value> {
    let migrated;
    let cfg = match legacy::migrate(cfg) {
        Some((c, _)) => {
            migrated = c;
            &migrated
        }
        None => cfg,
    };
    let mut out = Map::new();
    // The last line of either version's key counts, as LXC reads it; v2's swap and weight are
    // converted back to the document's memory+swap and shares.
    let last = |setting: LimitSetting| {
        let keys = cgroupmap::keys(setting);
        cfg.entries().map(|(_, e)| e).filter(|e| keys.contains(&e.key)).last()
    };
    let read = |setting: LimitSetting, memory| last(setting).and_then(|e| cgroupmap::limits_of(setting, &e.key, &e.value, memory));
    let memory = read(LimitSetting::Memory, None).and_then(|l| l.memory);
    if let Some(m) = memory {
        out.insert("memory_limit".into(), m.to_string().into());
    }
    if let Some(s) = read(LimitSetting::MemorySwap, memory).and_then(|l| l.memory_swap) {
        out.insert("memory_swap_limit".into(), s.to_string().into());
    }
    if let Some(n) = read(LimitSetting::CpuShares, None).and_then(|l| l.cpu_shares) {
        out.insert("cpu_shares".into(), n.into());
    }

    // The interfaces as LXC reads them (a repeated `type` line starts one over).
    let nets: Vec<Value> = interfaces(cfg.entries().map(|(_, e)| e))
        .into_values()
        .map(|net| {
            let keys = net.into_iter().map(|(k, mut values)| {
                let v = if REPEATABLE_NET_KEYS.contains(&k.as_str()) { values.into() } else { values.pop().unwrap_or_default().into() };
                (k, v)
            });
            Value::Object(keys.collect())
        })
        .collect();
    if !nets.is_empty() {
        out.insert("network".into(), Value::Array(nets));
    }

    let caps: std::collections::BTreeSet<String> = cfg
        .entries()
        .filter(|(_, e)| e.key == "lxc.cap.drop")
        .flat_map(|(_, e)| e.value.split_whitespace().map(|t| t.to_ascii_lowercase()).collect::<Vec<_>>())
        .map(|t| t.strip_prefix("cap_").map(str::to_string).unwrap_or(t))
        .collect();
    if !caps.is_empty() {
        out.insert("cap_drop".into(), caps.into_iter().collect::<Vec<_>>().into());
    }

    let maps: Vec<Value> = cfg
        .entries()
        .filter(|(_, e)| e.key == "lxc.idmap")
        .filter_map(|(_, e)| {
            let f: Vec<&str> = e.value.split_whitespace().collect();
            match f.as_slice() {
                [t, c, h, n] => Some(json!({ "type": t, "container": c.parse::<u64>().ok()?,
                                             "host": h.parse::<u64>().ok()?, "count": n.parse::<u64>().ok()? })),
                _ => None,
            }
        })
        .collect();
    if !maps.is_empty() {
        out.insert("idmap".into(), maps.into());
    }
    out
}
