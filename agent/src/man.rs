//! Manual pages and shell completions, generated from the clap definitions (`hostguard man`,
//! `hostguard completions`): what the Debian package installs, and what someone who installs
//! the bare binary can print. Neither reads the host.

use std::io::Write;
use std::path::Path;

use clap::ValueEnum;
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;

/// The shells completions are generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    /// Where Debian's packages of each shell look for completions of a command named `bin`.
    pub fn debian_path(self, bin: &str) -> String {
        match self {
            Shell::Bash => format!("/usr/share/bash-completion/completions/{bin}"),
            Shell::Zsh => format!("/usr/share/zsh/vendor-completions/_{bin}"),
            Shell::Fish => format!("/usr/share/fish/vendor_completions.d/{bin}.fish"),
        }
    }
}

/// The completion script for `shell`, offering no hidden command (clap_complete would).
pub fn completions(cmd: clap::Command, shell: Shell) -> Vec<u8> {
    let name = cmd.get_name().to_string();
    let visible: Vec<clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned().collect();
    let mut cmd = cmd.disable_help_subcommand(true);
    let hidden: Vec<String> =
        cmd.get_subcommands().filter(|s| s.is_hide_set()).map(|s| s.get_name().to_string()).collect();
    if !hidden.is_empty() {
        let args: Vec<clap::Arg> = cmd.get_arguments().cloned().collect();
        // clap has no way to remove a subcommand: rebuild the command around the visible ones.
        let mut shown = clap::Command::new("hostguard").version(env!("CARGO_PKG_VERSION")).disable_help_subcommand(true);
        if let Some(a) = cmd.get_about() {
            shown = shown.about(a.clone());
        }
        cmd = shown.args(args).subcommands(visible);
    }
    let mut out = Vec::new();
    match shell {
        Shell::Bash => clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, name, &mut out),
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, name, &mut out),
        Shell::Fish => clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, name, &mut out),
    }
    out
}

/// The exit codes, as the README states them and `Report::exit_code` returns them.
const EXIT_CODES: &[(&str, &str)] = &[
    ("0", "plan: in sync; validate: valid; audit: no finding at or above --fail-on; apply: converged, nothing needed changing."),
    ("2", "plan: drift found; audit: findings; apply: changes were made, all succeeded."),
    ("4", "plan: some resources cannot converge as the host stands (failed already in plan); apply: some changes failed."),
    ("6", "plan: drift, and some resources cannot converge; apply: some changes made, some failed."),
    ("1", "the document or the host could not be read, or the command line was wrong; nothing was touched. \
           A usage error exits 1, not 2, so that a wrapper never mistakes a typo for drift."),
];

const FILES: &[(&str, &str)] = &[
    ("/etc/hostguard/state.json", "the state document read when no STATE is given."),
    ("/etc/hostguard/state.json.example", "a commented example installed by the package."),
    ("/run/hostguard.lock", "the lock that serialises runs (under --root)."),
    ("/var/lib/prometheus/node-exporter/hostguard.prom", "where the packaged systemd units write --metrics."),
];

/// Every page: `hostguard.1`, then one `hostguard-COMMAND.1` per visible subcommand, as
/// (file name, roff text).
pub fn pages(cmd: clap::Command) -> Vec<(String, String)> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = vec![(format!("{}.1", cmd.get_name()), main_page(&cmd))];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = Man::new(sub.clone()).source(source(&cmd)).manual("hostguard manual");
        let mut text = Vec::new();
        man.render(&mut text).expect("rendering to memory cannot fail");
        let mut text = String::from_utf8(text).expect("roff is UTF-8");
        text.push_str(&see_also(&[(cmd.get_name(), "1")]));
        out.push((man.get_filename(), text));
    }
    out
}

/// Write every page into `dir` (created if missing); returns the paths written.
pub fn write_pages(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, text) in pages(cmd) {
        let path = dir.join(name);
        std::fs::File::create(&path)?.write_all(text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

fn source(cmd: &clap::Command) -> String {
    format!("hostguard {}", cmd.get_version().unwrap_or_default())
}

fn main_page(cmd: &clap::Command) -> String {
    let man = Man::new(cmd.clone()).source(source(cmd)).manual("hostguard manual");
    let mut buf = Vec::new();
    // The clap-derived sections, then ours in place of clap_mangen's "EXTRA" (the --help
    // examples) so the page reads as man pages do.
    man.render_title(&mut buf).unwrap();
    man.render_name_section(&mut buf).unwrap();
    man.render_synopsis_section(&mut buf).unwrap();
    man.render_description_section(&mut buf).unwrap();
    man.render_options_section(&mut buf).unwrap();
    man.render_subcommands_section(&mut buf).unwrap();
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_CODES {
        roff.control("TP", []).text([bold(*code)]).text([roman(*meaning)]);
    }
    state_document_section(&mut roff);
    roff.control("SH", ["EXAMPLES"]);
    if let Some(examples) = cmd.get_after_help() {
        let text = examples.to_string();
        let examples = text.split("\n\nExit codes").next().unwrap_or(&text);
        roff.control("nf", []);
        for line in examples.lines().skip_while(|l| l.starts_with("Examples")) {
            roff.text([roman(line)]);
        }
        roff.control("fi", []);
    }
    roff.control("SH", ["FILES"]);
    for (path, what) in FILES {
        roff.control("TP", []).text([italic(*path)]).text([roman(*what)]);
    }
    buf.extend_from_slice(roff.render().as_bytes());
    man.render_version_section(&mut buf).unwrap();
    let mut text = String::from_utf8(buf).expect("roff is UTF-8");
    let mut refs: Vec<(String, &str)> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| (format!("{}-{}", cmd.get_name(), s.get_name()), "1"))
        .collect();
    refs.extend([("iptables-save".into(), "8"), ("nft".into(), "8"), ("lxc.container.conf".into(), "5"),
                 ("sysctl.d".into(), "5"), ("systemd.timer".into(), "5")]);
    let refs: Vec<(&str, &str)> = refs.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    text.push_str(&see_also(&refs));
    text
}

/// The document's sections and fields, from the JSON Schema: its descriptions are the doc
/// comments of the state types, so a section added to the document appears here by itself.
fn state_document_section(roff: &mut Roff) {
    let schema = crate::state::schema::document_schema();
    roff.control("SH", ["STATE DOCUMENT"]);
    roff.text([roman(
        "A JSON object with \"version\": 1 and any of the sections below. Unknown fields and duplicate keys \
         are errors, and every value is validated before anything on the host is touched. \
         \"hostguard schema\" prints the JSON Schema of the document; a \"$schema\" key is accepted and ignored.",
    )]);
    let Some(props) = schema["properties"].as_object() else { return };
    for (name, prop) in props {
        if name == "$schema" || name == "version" {
            continue;
        }
        let def = resolve(&schema, prop);
        roff.control("SS", [name.as_str()]);
        if let Some(d) = def["description"].as_str() {
            roff.text([roman(d)]);
        }
        fields(roff, &schema, def, 0);
    }
}

/// The fields of `def`, and those of the objects its maps hold (a group's limits, a chain's
/// rules, a container's keys), indented one level each.
fn fields(roff: &mut Roff, root: &serde_json::Value, def: &serde_json::Value, depth: usize) {
    let Some(props) = def["properties"].as_object() else { return };
    for (field, fschema) in props {
        let d = fschema["description"].as_str().or_else(|| resolve(root, fschema)["description"].as_str());
        roff.control("TP", []).text([bold(field.as_str())]).text([roman(d.unwrap_or(""))]);
        // A map of named things (groups, containers, tables of chains): describe one of them.
        let mut inner = &fschema["additionalProperties"];
        while inner.is_object() && inner["$ref"].is_null() && inner["properties"].is_null() {
            inner = &inner["additionalProperties"];
        }
        let inner = resolve(root, inner);
        if depth < 2 && inner["properties"].is_object() {
            roff.control("RS", []);
            if let Some(d) = inner["description"].as_str() {
                roff.text([italic(d)]);
            }
            fields(roff, root, inner, depth + 1);
            roff.control("RE", []);
        }
    }
}

/// The schema a `$ref` (possibly inside `anyOf` with null, for an optional section) points to.
fn resolve<'a>(root: &'a serde_json::Value, s: &'a serde_json::Value) -> &'a serde_json::Value {
    let target = s["$ref"].as_str().or_else(|| {
        s["anyOf"].as_array()?.iter().find_map(|v| v["$ref"].as_str())
    });
    match target.and_then(|r| r.strip_prefix("#/definitions/")) {
        Some(name) => &root["definitions"][name],
        None => s,
    }
}

fn see_also(refs: &[(&str, &str)]) -> String {
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]);
    let mut line = Vec::new();
    for (i, (name, section)) in refs.iter().enumerate() {
        line.push(bold(*name));
        line.push(roman(format!("({section}){}", if i + 1 < refs.len() { ", " } else { "" })));
    }
    roff.text(line);
    roff.render()
}
