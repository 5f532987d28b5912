//! The command line: clap types, then `run`, which maps every outcome to an exit code.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::audit::{self, Severity};
use crate::deliver::Delivery;
use crate::engine::{self, Options, ShowOptions};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::kind::Session;
use crate::http::HttpOptions;
use crate::report::{Command, Exit, Report};
use crate::source::{self, SourceOptions};
use crate::{metrics, state};

/// Where the document is read from when no STATE is given.
pub const DEFAULT_STATE: &str = "/etc/hostguard/state.json";

const EXAMPLES: &str = "\
Examples:
  hostguard validate examples/host.json      check a document, touch nothing
  hostguard plan examples/host.json          show drift (exit 2 when there is some)
  hostguard apply --format json state.json   converge and print the JSON report
  cat state.json | hostguard plan -          read the document from standard input
  hostguard apply --sha256 HEX https://cfg.example/hosts/web.json
                                             fetch a pinned document over HTTPS
  hostguard plan --report-url https://drift.example/r --metrics /var/lib/node_exporter/hostguard.prom
                                             also POST the report and write Prometheus metrics
  hostguard show --sysctl net.ipv4           current values as a state document

Exit codes: 0 in sync / converged, 2 drift found / changes made, 4 some resources failed
(plan: apply would certainly fail them), 6 drift or changes and some failed, 1 the document or the
host could not be read.";

#[derive(Debug, Parser)]
#[command(name = "hostguard", version, about = "Converge a Linux container host to a desired state and report drift",
          after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Output format; human on a terminal, json otherwise.
    #[arg(long, global = true, value_enum)]
    pub format: Option<Format>,
    /// Prefix every host path (/proc/sys, /sys/fs/cgroup, /etc, /var/lib/lxc, /run) with DIR.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Seconds to wait for another hostguard run to finish.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60)]
    pub lock_timeout: u64,
    /// In human output, list resources that are in sync too.
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Read the host, print drift, change nothing (exit 0 in sync, 2 drift, 4 cannot converge, 6 both).
    #[command(after_help = "Example:\n  hostguard plan examples/host.json")]
    Plan(RunArgs),
    /// Converge the host; print what changed (exit 0, 2, 4 or 6).
    #[command(after_help = "Example:\n  hostguard apply --backup-dir /var/backups/hostguard state.json")]
    Apply(ApplyArgs),
    /// Hardening findings for the host, each with the state fragment that fixes it (exit 0 none, 2 findings; --emit-state 0).
    #[command(after_help = "Examples:\n  hostguard audit --fail-on medium\n  hostguard audit state.json                 also: does applying state.json close each finding?\n  hostguard audit --emit-state > fix.json && hostguard apply fix.json\n\nFindings with \"fix\": null cannot be closed by a document; their \"remedy\" says what to do by hand.\nChecks, ids and sources: the Audit section of the README.")]
    Audit(AuditArgs),
    /// The host's current state, as a state document.
    #[command(after_help = "Example:\n  hostguard show --sysctl net.ipv4 --sysctl vm")]
    Show(ShowArgs),
    /// Check a document, touch nothing (exit 0 valid, 1 invalid).
    #[command(after_help = "Example:\n  hostguard validate state.json")]
    Validate(SourceArgs),
    /// Keep a change made with `apply --confirm` (exit 1 when nothing is waiting or it is too late).
    #[command(after_help = "Example:\n  hostguard apply --confirm 60 state.json && hostguard confirm")]
    Confirm,
    /// Print the JSON Schema of the state document (for editors and CI); reads nothing.
    #[command(after_help = "Example:\n  hostguard schema > state.schema.json\n\nIn a document, \"$schema\": \"./state.schema.json\" lets an editor check it as you type; hostguard ignores the key.")]
    Schema,
    /// Print a shell completion script (bash, zsh or fish); reads nothing.
    #[command(after_help = "Examples:\n  hostguard completions bash > /etc/bash_completion.d/hostguard\n  hostguard completions zsh > ~/.zfunc/_hostguard\n  hostguard completions fish > ~/.config/fish/completions/hostguard.fish")]
    Completions {
        #[arg(value_enum, value_name = "SHELL")]
        shell: crate::man::Shell,
    },
    /// Print the manual page (roff), or write every page into DIR; reads nothing.
    #[command(after_help = "Examples:\n  hostguard man | man -l -\n  hostguard man --dir /usr/local/share/man/man1")]
    Man {
        /// Write hostguard.1 and one hostguard-COMMAND.1 per command into DIR instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// The detached rollback timer of `apply --confirm` (internal).
    #[command(name = "__confirm-watchdog", hide = true)]
    ConfirmWatchdog,
}

#[derive(Debug, Args)]
pub struct SourceArgs {
    /// The state document: a path, - for standard input, or an https:// URL.
    #[arg(value_name = "STATE", default_value = DEFAULT_STATE)]
    pub state: String,
    #[command(flatten)]
    pub fetch: FetchArgs,
}

/// How a document is fetched and checked, wherever it comes from.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Refuse the document unless its SHA-256 is HEX.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Allow a plain http:// URL (STATE, --report-url, and redirects).
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// PEM file of a private CA to trust, besides the system's, for an https:// STATE and --report-url.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Give up on a URL after SECONDS (connecting, redirects and the whole body; per attempt for --report-url).
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Also POST the JSON report to URL.
    #[arg(long, value_name = "URL")]
    pub report_url: Option<String>,
    /// An extra header for --report-url, as 'Name: value' (repeatable).
    #[arg(long, value_name = "HEADER", requires = "report_url")]
    pub report_header: Vec<String>,
    /// Also write the report as Prometheus text to FILE (node_exporter textfile collector).
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Restore the previous firewall rules unless `hostguard confirm` runs within SECONDS.
    #[arg(long, value_name = "SECONDS")]
    pub confirm: Option<u64>,
    /// With --confirm: probe TARGET (HOST:PORT by TCP connect, or an https:// URL answered 2xx,
    /// checked with --ca-file) after the change, a few tries within SECONDS; keep the change on
    /// the first answer, roll back this apply's own edits when none comes (exit 4 or 6).
    #[arg(long, value_name = "TARGET", requires = "confirm")]
    pub confirm_probe: Option<String>,
    /// Apply even a ruleset that would drop the SSH session this runs from.
    #[arg(long)]
    pub force: bool,
    /// Keep the replaced version of every file rewritten, in DIR.
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Save the document, once it is valid, to FILE (a real path, not under --root) before
    /// converging; replaced atomically, and only when its content differs. What the wrappers
    /// use, so `hostguard plan FILE` by hand sees what was applied.
    #[arg(long, value_name = "FILE")]
    pub save_state: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Optional document: also tells whether applying it closes each finding.
    #[arg(value_name = "STATE")]
    pub state: Option<String>,
    /// Exit 2 when a finding at or above this severity remains [default: low; with --emit-state,
    /// only when given].
    #[arg(long, value_enum)]
    pub fail_on: Option<Severity>,
    /// Print the fixes merged into one state document (merged with STATE when given); exits 0
    /// when the document was printed, so `--emit-state > fix.json && hostguard apply fix.json` works
    /// (with an explicit --fail-on, findings at or above it still exit 2 after printing).
    #[arg(long)]
    pub emit_state: bool,
    /// Where LXC containers live.
    #[arg(long, value_name = "DIR")]
    pub lxcpath: Option<String>,
    #[command(flatten)]
    pub fetch: FetchArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Only sysctl keys under this prefix (repeatable), e.g. net.ipv4; all writable keys by default.
    #[arg(long = "sysctl", value_name = "PREFIX")]
    pub sysctl_prefixes: Vec<String>,
    /// Show limits of cgroups under this path (repeatable), e.g. hostguard.
    #[arg(long = "cgroup", value_name = "PREFIX")]
    pub cgroup_prefixes: Vec<String>,
    /// Where LXC containers live.
    #[arg(long, value_name = "DIR")]
    pub lxcpath: Option<String>,
    /// Every sysctl key that can be read, also read-only, self-changing and trigger keys (a
    /// document for a person to read; `plan` of it is not expected to be in sync).
    #[arg(long)]
    pub all: bool,
}

/// Parse `args`, run the command, and return the process exit code.
pub fn run<I: IntoIterator<Item = OsString>>(args: I) -> Exit {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // clap's own usage-error code is 2, which here means drift: usage errors exit 1.
            return if e.use_stderr() { Exit::Error } else { Exit::Ok };
        }
    };
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hostguard: error: {e}");
            Exit::Error
        }
    }
}

fn format(global: &Global) -> Format {
    global.format.unwrap_or_else(|| {
        // SAFETY: isatty only inspects a file descriptor.
        if unsafe { libc::isatty(1) } == 1 { Format::Human } else { Format::Json }
    })
}

fn options(global: &Global) -> Options {
    Options {
        lock_timeout: Duration::from_secs(global.lock_timeout),
        // Read here once: the guards take the session as an input, not from the environment.
        ssh_session: std::env::var("SSH_CONNECTION").ok().and_then(|v| Session::parse(&v)),
        ..Options::default()
    }
}

fn http_options(args: &FetchArgs) -> HttpOptions {
    HttpOptions {
        allow_insecure_http: args.allow_insecure_http,
        ca_file: args.ca_file.clone(),
        timeout: Some(Duration::from_secs(args.timeout)),
    }
}

fn load(args: &SourceArgs) -> Result<state::Document> {
    let bytes = read_state(&args.state, &args.fetch)?;
    state::load(&bytes, &args.state)
}

fn read_state(spec: &str, fetch: &FetchArgs) -> Result<Vec<u8>> {
    let opts = SourceOptions {
        sha256: fetch.sha256.clone(),
        http: http_options(fetch),
    };
    source::read(spec, &opts)
}

fn dispatch(cli: &Cli) -> Result<Exit> {
    let g = &cli.global;
    match &cli.command {
        Cmd::Validate(src) => {
            let doc = load(src)?;
            match format(g) {
                Format::Json => print(&serde_json::json!({ "valid": true, "state_sha256": doc.sha256 }).to_string()),
                Format::Human => print(&format!("{}: valid (sha256 {})", src.state, doc.sha256)),
            }
            Ok(Exit::Ok)
        }
        Cmd::Plan(args) => converge(g, args, Options { ..options(g) }, None, None, Command::Plan),
        Cmd::Apply(a) => {
            let fetch = &a.run.source.fetch;
            let confirm_probe = match &a.confirm_probe {
                Some(t) => Some(crate::probe::Probe::new(t, fetch.ca_file.clone(), fetch.allow_insecure_http)?),
                None => None,
            };
            let opts = Options {
                force: a.force,
                confirm: a.confirm,
                confirm_probe,
                ..options(g)
            };
            converge(g, &a.run, opts, a.backup_dir.clone(), a.save_state.as_deref(), Command::Apply)
        }
        Cmd::Show(s) => {
            let host = Host::new(&g.root);
            let doc = engine::show(
                &host,
                &options(g),
                &ShowOptions {
                    sysctl_prefixes: s.sysctl_prefixes.clone(),
                    all_sysctl: s.all,
                    cgroup_prefixes: s.cgroup_prefixes.clone(),
                    lxcpath: s.lxcpath.clone(),
                },
            )?;
            print(&serde_json::to_string_pretty(&doc).expect("a document always serialises"));
            Ok(Exit::Ok)
        }
        Cmd::Audit(a) => run_audit(g, a),
        Cmd::Confirm => {
            let host = Host::new(&g.root);
            let _lock = host.lock(Duration::from_secs(g.lock_timeout))?;
            print(&crate::iptables::confirm::confirm(&host)?);
            Ok(Exit::Ok)
        }
        Cmd::Schema => {
            print(state::schema::document_schema_text().trim_end());
            Ok(Exit::Ok)
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&crate::man::completions(Cli::command(), *shell));
            Ok(Exit::Ok)
        }
        Cmd::Man { dir } => {
            use clap::CommandFactory;
            match dir {
                Some(dir) => {
                    let written = crate::man::write_pages(Cli::command(), dir)
                        .map_err(|e| Error::Load(format!("{}: cannot write the manual pages: {e}", dir.display())))?;
                    for p in written {
                        print(&p.display().to_string());
                    }
                }
                None => {
                    let pages = crate::man::pages(Cli::command());
                    print(pages[0].1.trim_end());
                }
            }
            Ok(Exit::Ok)
        }
        Cmd::ConfirmWatchdog => crate::iptables::confirm::watchdog(&Host::new(&g.root)),
    }
}

/// Run, then publish: metrics (also for a run that failed, so an alert sees it) and the POST.
/// Neither can change the exit code: monitoring trouble is a warning on stderr.
fn converge(g: &Global, args: &RunArgs, opts: Options, backup_dir: Option<PathBuf>, save_state: Option<&Path>, command: Command) -> Result<Exit> {
    let (started_at, started) = (SystemTime::now(), Instant::now());
    let result = converge_and_print(g, args, opts, backup_dir, save_state, command);
    if let Some(path) = &args.report.metrics {
        let text = match &result {
            Ok((report, _)) => metrics::render(report),
            Err(_) => metrics::render_failure(command, started_at, started.elapsed()),
        };
        if let Err(e) = metrics::write(path, &text) {
            eprintln!("hostguard: warning: --metrics: {e}; the run's exit code is unaffected");
        }
    }
    let (report, delivery) = result?;
    if let Some(d) = delivery {
        if let Err(why) = d.send(&report.to_json()) {
            eprintln!("hostguard: warning: the report was not delivered to {}: {why}; the run's exit code is unaffected", d.url());
        }
    }
    Ok(report.exit_code())
}

fn converge_and_print(
    g: &Global,
    args: &RunArgs,
    opts: Options,
    backup_dir: Option<PathBuf>,
    save_state: Option<&Path>,
    command: Command,
) -> Result<(Report, Option<Delivery>)> {
    // The collector's URL and headers are checked before anything is read or touched.
    let delivery = match &args.report.report_url {
        Some(url) => Some(Delivery::new(url, &args.report.report_header, &http_options(&args.source.fetch))?),
        None => None,
    };
    let bytes = read_state(&args.source.state, &args.source.fetch)?;
    let doc = state::load(&bytes, &args.source.state)?;
    if let Some(file) = save_state {
        Host::write_real_file(file, &bytes).map_err(|e| Error::Load(format!("--save-state: {e}")))?;
    }
    let host = Host::new(&g.root).with_backup_dir(backup_dir);
    let report = engine::converge(&host, &opts, &doc, command)?;
    match format(g) {
        Format::Json => print(&report.to_json()),
        Format::Human => print(report.to_human(g.verbose).trim_end()),
    }
    Ok((report, delivery))
}

fn run_audit(g: &Global, a: &AuditArgs) -> Result<Exit> {
    let (doc, raw) = match &a.state {
        Some(spec) => {
            let bytes = read_state(spec, &a.fetch)?;
            let doc = state::load(&bytes, spec)?;
            // Validated above, so it is JSON.
            (Some(doc), serde_json::from_slice(&bytes).ok())
        }
        None => (None, None),
    };
    let host = Host::new(&g.root);
    let _lock = host.lock(Duration::from_secs(g.lock_timeout))?;
    let report = audit::audit(&host, a.lxcpath.as_deref(), doc.as_ref())?;
    if a.emit_state {
        let fixed = report.emit_state(raw);
        let text = serde_json::to_string_pretty(&fixed).expect("a document always serialises");
        // What we print must be a document hostguard itself accepts.
        state::load(text.as_bytes(), "the emitted state").map_err(|e| Error::Load(format!("internal error, the merged fixes are not a valid document: {e}")))?;
        print(&text);
        // SPEC section 8: `audit --emit-state > fix.json && hostguard apply fix.json` works as
        // written, so printing the document is success; what it leaves open goes to stderr.
        let s = report.summary;
        let by_hand = report.findings.iter().filter(|f| f.fix.is_null()).count();
        eprintln!(
            "audit: {} high, {} medium, {} low; {by_hand} without a fix need a remedy by hand (`hostguard audit` shows them)",
            s.high, s.medium, s.low
        );
        // Only an explicit --fail-on turns the findings into a failure here (a wrapper that asks
        // for the document and for a gate on high findings gets both).
        return Ok(a.fail_on.map_or(Exit::Ok, |level| report.exit_code(level)));
    }
    match format(g) {
        Format::Json => print(&serde_json::to_string_pretty(&report).expect("a report always serialises")),
        Format::Human => print(report.to_human().trim_end()),
    }
    Ok(report.exit_code(a.fail_on.unwrap_or(Severity::Low)))
}

fn print(s: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`hostguard plan | head`) is not an error worth a panic.
    let _ = writeln!(out, "{s}");
}
