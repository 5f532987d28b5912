//! Parse arguments, run, exit with the run's code — nothing else.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hostguard::cli::run(std::env::args_os()).into()
}
