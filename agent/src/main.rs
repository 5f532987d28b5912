//! Parse arguments, run, exit with the run's code — nothing else.

fn main() -> std::process::ExitCode {
    hostguard::cli::run(std::env::args_os()).into()
}
