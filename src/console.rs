//! The server's own log: what `tracing` prints on the console (stderr), also written to
//! `logs/echopilot.log` (plain text, escaped, size-rotated) once a server knows its home.
//!
//! The subscriber is process-wide (tracing's own design), so the file it writes to is
//! too: [`attach_file`] hands it over after the configuration is read. Until then, and
//! in processes that never attach one (the CLI, tests), lines go to the console only.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::OnceLock;

use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::clock::Clock;
use crate::logfile::{Appender, RotatingFile};

/// Events with this target go to the file only: the start-up banner, which the console
/// already shows once on stdout.
pub const FILE_ONLY: &str = "echopilot::serve";

static FILE: OnceLock<Appender> = OnceLock::new();

/// Colour only for a person at a terminal: never into a pipe or a file, nor with
/// `NO_COLOR` set.
pub fn use_colour(to_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    to_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Install the subscriber: `RUST_LOG` (default `info`) filters both outputs.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    subscriber(filter, colour).init();
}

fn subscriber(
    filter: tracing_subscriber::EnvFilter,
    colour: bool,
) -> impl tracing::Subscriber + Send + Sync {
    // Both outputs declare the filter's most verbose level: without it the layered
    // subscriber reports no maximum, and the `log` bridge then forwards every
    // `trace!` of sled's hot paths (each insert) to be filtered out one by one.
    let level = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_filter(filter_fn(|m| m.target() != FILE_ONLY).with_max_level_hint(level));
    let file = tracing_subscriber::fmt::layer()
        .with_writer(FileSink)
        .with_ansi(false)
        .with_filter(filter_fn(|_| true).with_max_level_hint(level));
    tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(file)
}

/// Start writing `logs/echopilot.log` under `logs_dir` (once per process).
pub fn attach_file(logs_dir: &Path, max_bytes: u64, clock: Clock) -> std::io::Result<()> {
    if FILE.get().is_some() {
        return Ok(());
    }
    let appender = Appender::start(
        "echopilot",
        RotatingFile::new(
            logs_dir.join("echopilot.log"),
            logs_dir.join("archive"),
            max_bytes,
            clock,
        ),
    )?;
    let _ = FILE.set(appender);
    Ok(())
}

/// The file's writer, when one is attached (to flush or rotate it).
pub fn file() -> Option<&'static Appender> {
    FILE.get()
}

/// Hands each formatted event to the file's writer thread as one escaped line.
struct FileSink;

/// One event's bytes; sent when the formatter drops it.
struct EventBuf(Vec<u8>);

impl<'a> MakeWriter<'a> for FileSink {
    type Writer = EventBuf;
    fn make_writer(&'a self) -> EventBuf {
        EventBuf(Vec::new())
    }
}

impl Write for EventBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if FILE.get().is_some() {
            self.0.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuf {
    fn drop(&mut self) {
        let Some(file) = FILE.get() else { return };
        if self.0.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.0);
        let line = text.strip_suffix('\n').unwrap_or(&text);
        file.append(crate::logfile::escape(line).into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscriber_declares_the_filters_level_so_the_log_bridge_skips_the_rest() {
        use tracing::Subscriber;
        for (filter, level) in [
            ("info", LevelFilter::INFO),
            ("warn", LevelFilter::WARN),
            ("echopilot=debug,info", LevelFilter::DEBUG),
        ] {
            let s = subscriber(tracing_subscriber::EnvFilter::new(filter), false);
            assert_eq!(s.max_level_hint(), Some(level), "{filter}");
        }
    }

    #[test]
    fn colour_only_at_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(!use_colour(false, None));
        assert!(!use_colour(true, Some(std::ffi::OsStr::new("1"))));
        assert!(use_colour(true, Some(std::ffi::OsStr::new(""))));
    }
}
