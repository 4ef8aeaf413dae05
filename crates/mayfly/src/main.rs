//! `mayfly`: the command line. It parses arguments and configuration, wires
//! the libraries together and maps outcomes to exit codes; the work happens
//! in the library crates.

mod cli;
mod cmd;
mod common;
mod config;
mod progress;
mod stdio;

use std::process::ExitCode;

use clap::Parser as _;

/// A scan, a plan or a busy broker makes and drops millions of small
/// values across threads; mimalloc serves them without glibc's
/// consolidation passes over freed memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code: the scan found nothing.
const EXIT_CLEAN: u8 = 0;
/// Exit code: the scan found secrets.
const EXIT_FINDINGS: u8 = 1;
/// Exit code: Mayfly could not do what was asked.
const EXIT_ERROR: u8 = 2;

/// Bounds libgit2's pack mappings before any thread exists.
#[expect(unsafe_code, reason = "libgit2's process-wide settings")]
fn bound_libgit2_memory() {
    // SAFETY: called first in `main`, before any other thread is started
    // and before any libgit2 call. A failure leaves libgit2's defaults,
    // which only cost memory.
    let _ = unsafe { mayfly_scan::git::bound_libgit2_memory() };
}

fn main() -> ExitCode {
    bound_libgit2_memory();
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let code = if err.use_stderr() {
                EXIT_ERROR
            } else {
                EXIT_CLEAN
            };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    match cli::run(args) {
        Ok(code) => ExitCode::from(code),
        // The reader closed the pipe (`mayfly rules list | head -1`): it
        // has what it wanted.
        Err(err)
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::from(EXIT_CLEAN)
        }
        Err(err) => {
            eprintln!("mayfly: error: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
