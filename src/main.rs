//! The `aib-task` binary: captures the environment, then hands over to the library.

use std::process::ExitCode;

use aib_task::agent::Environment;

fn main() -> ExitCode {
    // SAFETY: first thing in main; no other thread exists yet.
    let env = unsafe { Environment::capture_and_scrub() };
    aib_task::cli::main_with(env, std::env::args_os().collect())
}
