//! The `echopilot` binary: parse the command line, set up logging, hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use echopilot::cli;
use echopilot::config::{Cli, Command};

/// mimalloc instead of glibc's malloc: the request path allocates many small, short-lived
/// values on several threads, where glibc's arenas spent ~15 % of the server's time
/// (`_int_malloc`, `_int_free`, `malloc_consolidate` under `echopilot bench`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // mimalloc asks the kernel for transparent huge pages; zeroing 2 MiB on each first
    // touch was ~9 % of a restore's CPU (`clear_page_erms` under
    // `do_huge_pmd_anonymous_page`) and rounds RSS up. The flag covers the process.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let args = Cli::parse();
    echopilot::console::init();
    let result = match args.command {
        None => cli::serve(args.serve),
        Some(Command::Serve(serve)) => cli::serve(serve),
        Some(Command::Db { home, action }) => cli::db(home, action),
        Some(Command::Keygen { .. }) => cli::keygen(),
        Some(Command::Audit { home, action }) => cli::audit(home, action),
        Some(Command::Logs { home, action }) => cli::logs(home, action),
        Some(Command::Bench(args)) => cli::bench(args),
        Some(Command::Backup { home, action }) => echopilot::cli::backup::backup(home, action),
        Some(Command::Restore { home, file }) => echopilot::cli::backup::restore(home, &file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echopilot: {e:#}");
            ExitCode::FAILURE
        }
    }
}
