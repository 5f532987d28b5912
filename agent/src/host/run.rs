//! Running a command: argv only, output read bounded, and a timeout that names the command.
//!
//! Three threads per command (stdin writer, stdout and stderr readers) and the caller waiting on
//! a channel: a command that prints without end is killed at the stdout limit, one that never
//! exits (an `iptables-restore --wait` behind a stuck lock holder) at the timeout. The command
//! runs in its own process group, so what it started dies with it.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::bounded::limits;
use super::Output;
use crate::error::HostError;

/// The environment variable that sets the command timeout in seconds (default 120).
pub const TIMEOUT_ENV: &str = "HOSTGUARD_COMMAND_TIMEOUT";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

pub fn timeout_from_env() -> Duration {
    std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs)
}

enum Event {
    /// What the command printed since the last chunk.
    Chunk(Vec<u8>),
    /// The end of standard output; `Err` past the limit.
    StdoutEnd(Result<(), ()>),
    Stderr(Vec<u8>),
    Exited(std::io::Result<std::process::ExitStatus>),
}

/// Run `argv`; more than `stdout_limit` bytes on standard output, or running past `timeout`,
/// kills it and is an error naming the command.
pub fn run(argv: &[&str], stdin: Option<&[u8]>, timeout: Duration, stdout_limit: u64) -> Result<Output, HostError> {
    let mut stdout = Vec::new();
    let mut out = run_streaming(argv, stdin, timeout, stdout_limit, &mut |chunk| stdout.extend_from_slice(chunk))?;
    out.stdout = String::from_utf8_lossy(&stdout).into_owned();
    Ok(out)
}

/// `run`, with standard output given to `on_stdout` piece by piece while the command prints it
/// (`Output::stdout` stays empty): a long output is read while it is still being written.
pub fn run_streaming(
    argv: &[&str],
    stdin: Option<&[u8]>,
    timeout: Duration,
    stdout_limit: u64,
    on_stdout: &mut dyn FnMut(&[u8]),
) -> Result<Output, HostError> {
    let shown = argv.join(" ");
    let (prog, args) = argv.split_first().ok_or_else(|| HostError::Other("empty command".into()))?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        .process_group(0)
        .spawn()
        .map_err(|source| HostError::Spawn { argv: shown.clone(), source })?;
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A writer thread, so a child that fills its stdout before reading all of its stdin
        // cannot deadlock us.
        let input = input.to_vec();
        std::thread::spawn(move || pipe.write_all(&input));
    }
    let mut out = child.stdout.take().expect("stdout was piped");
    let t = tx.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        let mut total: u64 = 0;
        let end = loop {
            match out.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    total += n as u64;
                    if total > stdout_limit {
                        break Err(());
                    }
                    if t.send(Event::Chunk(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break Err(()),
            }
        };
        let _ = t.send(Event::StdoutEnd(end));
    });
    let mut err = child.stderr.take().expect("stderr was piped");
    let t = tx.clone();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let _ = (&mut err).take(limits::COMMAND_STDERR.bytes).read_to_end(&mut kept);
        // Drained past the limit, so the command never blocks writing to a full pipe.
        let _ = std::io::copy(&mut err, &mut std::io::sink());
        let _ = t.send(Event::Stderr(kept));
    });
    std::thread::spawn(move || {
        let _ = tx.send(Event::Exited(child.wait()));
    });

    let deadline = Instant::now() + timeout;
    let (mut stdout_ended, mut stderr, mut status) = (false, None, None);
    let kill = || {
        // SAFETY: signalling the child's own process group; the child is not reaped before the
        // waiter thread reports its exit, so the id cannot have been reused.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    };
    while !stdout_ended || stderr.is_none() || status.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Chunk(c)) => on_stdout(&c),
            Ok(Event::StdoutEnd(Ok(()))) => stdout_ended = true,
            Ok(Event::StdoutEnd(Err(()))) => {
                kill();
                return Err(HostError::OutputTooLarge { argv: shown, limit: stdout_limit });
            }
            Ok(Event::Stderr(b)) => stderr = Some(b),
            Ok(Event::Exited(s)) => status = Some(s.map_err(|source| HostError::Spawn { argv: shown.clone(), source })?),
            Err(_) => {
                kill();
                return Err(HostError::Timeout { argv: shown, secs: timeout.as_secs().max(1) });
            }
        }
    }
    let status = status.expect("loop ends with a status");
    Ok(Output {
        success: status.success(),
        status: status.to_string(),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&stderr.unwrap_or_default()).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_never_ends_is_killed_at_the_timeout_and_named() {
        let started = Instant::now();
        let e = run(&["sleep", "30"], None, Duration::from_secs(1), 1024).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert_eq!(e.to_string(), "`sleep 30` did not finish within 1 s and was killed");
    }

    #[test]
    fn a_command_that_prints_without_end_is_killed_at_the_output_limit() {
        let started = Instant::now();
        let e = run(&["yes"], None, Duration::from_secs(30), 1024 * 1024).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        assert_eq!(e.to_string(), "`yes` printed more than 1 MiB on its standard output and was killed");
    }

    #[test]
    fn what_a_command_started_dies_with_it() {
        // The shell's child keeps the pipe open after the shell is gone: only killing the
        // process group ends the read.
        let started = Instant::now();
        let e = run(&["sh", "-c", "sleep 30 & sleep 30"], None, Duration::from_secs(1), 1024).unwrap_err();
        assert!(matches!(e, HostError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_chatty_stderr_is_kept_bounded_and_never_blocks_the_command() {
        let out = run(&["sh", "-c", "yes error | head -c 10000000 >&2; echo done"], None, Duration::from_secs(30), 1024).unwrap();
        assert!(out.success);
        assert_eq!(out.stdout, "done\n");
        assert_eq!(out.stderr.len() as u64, limits::COMMAND_STDERR.bytes);
    }
}
