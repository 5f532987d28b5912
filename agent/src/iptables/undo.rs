//! What a `--confirm` rollback puts back, and how: only the rules this apply edited.
//!
//! The record names, per changed chain, the rule specs hostguard touched (deleted or inserted)
//! and the chain as it was before. The rollback reads the chain as it is then, deletes every
//! copy of a touched spec (all hostguard's: ownership is a property of the spec), and inserts
//! the copies the chain held before, each after the rule that preceded it then. Rules added
//! meanwhile by others (Docker creating a network during the wait) are neither deleted nor
//! moved. A chain this apply created is deleted again when nothing but hostguard's rules was in
//! it and nothing else jumps to it.

use foldhash::HashSet;

use crate::error::HostError;
use crate::host::Host;
use crate::state::iptables::{Family, Table};

use super::backend::Tools;
use super::save::{self, Chain, Rule, TableDump};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TableUndo {
    pub tools: Tools,
    pub family: Family,
    pub table: Table,
    pub chains: Vec<ChainUndo>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChainUndo {
    pub chain: String,
    /// The policy before, for built-in chains whose policy this apply set.
    pub policy: Option<String>,
    /// The chain did not exist before this apply.
    pub created: bool,
    /// The specs this apply deleted or inserted.
    pub touched: Vec<Rule>,
    /// The chain's rules before this apply.
    pub before: Vec<Rule>,
}

impl ChainUndo {
    /// Adds the specs not recorded yet, in order (one hash lookup each: an apply of 10,000
    /// rules touches 10,000 specs).
    pub fn touch<'a>(&mut self, rules: impl IntoIterator<Item = &'a Rule>) {
        let new: Vec<Rule> = {
            let seen: HashSet<&Rule> = self.touched.iter().collect();
            let mut added: HashSet<&Rule> = HashSet::default();
            rules.into_iter().filter(|r| !seen.contains(r) && added.insert(*r)).cloned().collect()
        };
        self.touched.extend(new);
    }
}

/// The restore input that undoes `undo` on the table as it is `now`.
pub fn render(undo: &TableUndo, now: &TableDump) -> String {
    let mut s = format!("*{}\n", undo.table.name());
    // The table after the rollback, for deciding which created chains can go.
    let mut after: Vec<Chain> = now.chains.clone();
    for c in &undo.chains {
        let touched: HashSet<&Rule> = c.touched.iter().collect();
        let Some(cur) = after.iter_mut().find(|x| x.name == c.chain) else { continue };
        if let Some(p) = &c.policy {
            if cur.policy.as_ref() != Some(p) {
                s.push_str(&format!(":{} {p} [0:0]\n", c.chain));
            }
        }
        for r in cur.rules.iter().filter(|r| touched.contains(r)) {
            save::push_restore_line(&mut s, "-D", &c.chain, None, &r.args);
        }
        cur.rules.retain(|r| !touched.contains(r));
        if c.created {
            continue;
        }
        // Walk the chain as it was: a rule that is still there moves the cursor to it; a
        // touched one is put back at the cursor.
        let mut pos = 0;
        for r in &c.before {
            if touched.contains(r) {
                if pos == cur.rules.len() {
                    save::push_restore_line(&mut s, "-A", &c.chain, None, &r.args);
                } else {
                    save::push_restore_line(&mut s, "-I", &c.chain, Some(pos + 1), &r.args);
                }
                cur.rules.insert(pos, r.clone());
                pos += 1;
            } else if let Some(k) = cur.rules[pos..].iter().position(|x| x == r) {
                pos += k + 1;
            }
        }
    }
    for c in undo.chains.iter().filter(|c| c.created) {
        let empty = after.iter().find(|x| x.name == c.chain).is_some_and(|x| x.rules.is_empty());
        let referenced = after.iter().flat_map(|x| &x.rules).any(|r| r.args.windows(2).any(|w| (w[0] == "-j" || w[0] == "-g") && w[1] == c.chain));
        if empty && !referenced {
            s.push_str(&format!("-X {}\n", c.chain));
        }
    }
    s.push_str("COMMIT\n");
    s
}

/// Roll one table back now; retried on a fresh read when a neighbour changed the chain between
/// the read and the restore (the restore is refused whole, so nothing half-done remains).
pub fn rollback(host: &Host, undo: &TableUndo) -> Result<String, String> {
    let mut last = String::new();
    for _ in 0..3 {
        let now = undo.tools.read(host, undo.family, undo.table).map_err(|e: HostError| e.to_string())?;
        let input = render(undo, &now);
        match undo.tools.restore(host, undo.family, &input) {
            Ok(()) => return Ok(format!("rolled back hostguard's edits of the {} {} table", undo.family.key(), undo.table)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> Rule {
        Rule::new(shlex::split(s).unwrap())
    }
    fn chain(name: &str, rs: &[&str]) -> Chain {
        Chain { name: name.into(), policy: Some("ACCEPT".into()), rules: rs.iter().map(|s| rule(s)).collect() }
    }

    #[test]
    fn rollback_undoes_only_its_own_edits_and_keeps_rules_added_meanwhile() {
        let undo = TableUndo {
            tools: Tools::for_tests(),
            family: Family::V4,
            table: Table::Filter,
            chains: vec![ChainUndo {
                chain: "FORWARD".into(),
                policy: Some("ACCEPT".into()),
                created: false,
                touched: vec![rule("-j old"), rule("-j new")],
                before: vec![rule("-j DOCKER-USER"), rule("-j old"), rule("-o docker0 -j DOCKER")],
            }],
        };
        // After apply (old deleted, new appended, policy DROP) Docker added a network's rules.
        let mut now = TableDump { name: "filter".into(), chains: vec![chain("FORWARD", &["-j DOCKER-USER", "-o br-1 -j DOCKER", "-o docker0 -j DOCKER", "-j new"])] };
        now.chains[0].policy = Some("DROP".into());
        let input = render(&undo, &now);
        assert_eq!(input, "*filter\n:FORWARD ACCEPT [0:0]\n-D FORWARD -j new\n-I FORWARD 2 -j old\nCOMMIT\n");
    }

    #[test]
    fn a_created_chain_goes_only_when_nothing_else_is_in_it_or_jumps_to_it() {
        let undo = |touched: &[&str]| TableUndo {
            tools: Tools::for_tests(),
            family: Family::V4,
            table: Table::Filter,
            chains: vec![
                ChainUndo { chain: "MINE".into(), policy: None, created: true, touched: touched.iter().map(|s| rule(s)).collect(), before: vec![] },
                ChainUndo { chain: "INPUT".into(), policy: None, created: false, touched: vec![rule("-j MINE")], before: vec![] },
            ],
        };
        let now = TableDump { name: "filter".into(), chains: vec![chain("INPUT", &["-j MINE"]), chain("MINE", &["-j ACCEPT"])] };
        assert_eq!(render(&undo(&["-j ACCEPT"]), &now), "*filter\n-D MINE -j ACCEPT\n-D INPUT -j MINE\n-X MINE\nCOMMIT\n");
        let now = TableDump { name: "filter".into(), chains: vec![chain("INPUT", &["-j MINE", "-j MINE"]), chain("MINE", &["-j ACCEPT", "-j other"])] };
        assert!(!render(&undo(&["-j ACCEPT"]), &now).contains("-X"));
    }
}
