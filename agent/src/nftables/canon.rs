//! Canonical forms by nft itself: the desired tables are loaded into a throwaway network
//! namespace (`host::netns`) and listed there with `nft -s`, so what is compared with the host is
//! exactly what nft would print for the document. A table nft refuses is reported with nft's
//! message at the document rule it points at, and the others are loaded without it.

use crate::host::Host;
use crate::state::nftables::TableSpec;

use super::listing::{self, Table};
use super::render::{self, Script};
use super::NFT;

/// Per table, in order: its listing once loaded, or why nft refuses it. `Err` when there is no
/// namespace to load into (the caller compares the document as written).
pub fn canonicalize(host: &Host, specs: &[&TableSpec]) -> Result<Vec<Result<Table, String>>, String> {
    crate::host::netns::scoped(|| {
        // An ingress or egress chain names a device, and nft refuses the chain when no such device
        // exists: the namespace gets one of that name (a dummy, or a veth where the kernel has no
        // dummy driver).
        let mut devices: Vec<&str> = specs
            .iter()
            .flat_map(|s| &s.chains)
            .filter_map(|c| c.base.as_ref()?.device.as_ref().map(|d| d.as_str()))
            .collect();
        devices.sort_unstable();
        devices.dedup();
        for (i, d) in devices.into_iter().enumerate() {
            let dummy = host.run(&["ip", "link", "add", d, "type", "dummy"], None);
            if !dummy.is_ok_and(|o| o.success) {
                let peer = format!("hgpeer{i}");
                let _ = host.run(&["ip", "link", "add", d, "type", "veth", "peer", "name", &peer], None);
            }
        }
        let mut results: Vec<Option<Result<Table, String>>> = vec![None; specs.len()];
        loop {
            let pending: Vec<usize> = (0..specs.len()).filter(|&k| results[k].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            let mut script = Script::new();
            for &k in &pending {
                render::table(&mut script, specs[k]);
            }
            let out = host.run(&[NFT, "-f", "-"], Some(script.text.as_bytes())).map_err(|e| e.to_string())?;
            if out.success {
                let listed = host.run_ok(&[NFT, "-s", "list", "ruleset"], None).map_err(|e| e.to_string())?;
                let ruleset = listing::parse(&listed.stdout)?;
                for &k in &pending {
                    let (f, n) = (specs[k].family.name(), specs[k].name.as_str());
                    results[k] = Some(ruleset.table(f, n).cloned().ok_or_else(|| format!("nft did not list table {f} {n} after loading it")));
                }
                break;
            }
            // The whole batch was refused: blame the tables nft's errors point at, then load the
            // rest again without them.
            let culprits = script.culprits(&out.stderr);
            let mut blamed = false;
            for &k in &pending {
                let path = specs[k].doc_path();
                if culprits.iter().any(|c| c.starts_with(&path)) {
                    results[k] = Some(Err(script.explain_only(&out.stderr, &path)));
                    blamed = true;
                }
            }
            if !blamed {
                let why = script.explain(&out.stderr);
                for &k in &pending {
                    results[k] = Some(Err(why.clone()));
                }
            }
        }
        Ok(results.into_iter().map(|r| r.unwrap_or_else(|| Err("not loaded".into()))).collect())
    })?
}
