//! `logs/scheduler.log`: a line per tick and per job outcome; failures as `ERROR` lines
//! (the runbook greps for `ERROR`). The file is opened per write, so moving it away
//! (rotation) simply starts a new one; past its size limit it is moved into
//! `logs/archive/YYYYMMDD/` like the other logs. Every line is escaped
//! ([`crate::logfile::escape`]): a job's error cannot forge a line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::clock::{Clock, rfc3339};
use crate::jobs::{JobEvent, Outcome};

/// Cheap to clone.
#[derive(Clone)]
pub struct SchedLog {
    path: PathBuf,
    archive: PathBuf,
    max_bytes: u64,
    clock: Clock,
    lock: Arc<Mutex<()>>,
}

impl SchedLog {
    pub fn new(logs_dir: &Path, clock: Clock) -> Self {
        Self {
            path: logs_dir.join("scheduler.log"),
            archive: logs_dir.join("archive"),
            max_bytes: crate::audit::DEFAULT_MAX_BYTES,
            clock,
            lock: Arc::default(),
        }
    }

    /// Rotate the file past `max_bytes` (`LOG_MAX_BYTES`).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Move the file into the archive now (`logs rotate`); `None` when empty or absent.
    pub fn rotate(&self) -> std::io::Result<Option<PathBuf>> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        crate::logfile::archive_file(&self.path, &self.archive, self.clock.now())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn info(&self, msg: &str) {
        self.write_lines(&[format!("{} INFO {msg}", rfc3339(self.clock.now()))]);
    }

    pub fn error(&self, msg: &str) {
        tracing::error!(target: "scheduler", "{msg}");
        self.write_lines(&[format!("{} ERROR {msg}", rfc3339(self.clock.now()))]);
    }

    /// The line for a job outcome.
    pub fn outcome_line(e: &JobEvent) -> String {
        let level = match e.outcome {
            Outcome::Succeeded | Outcome::Cancelled => "INFO",
            Outcome::Failed | Outcome::Dead | Outcome::Stuck => "ERROR",
        };
        let mut line = format!(
            "{} {level} job {} ({}/{}) {} attempt={}",
            rfc3339(e.at),
            e.id,
            e.queue,
            e.kind,
            e.outcome.as_str(),
            e.attempts
        );
        if matches!(e.outcome, Outcome::Failed | Outcome::Dead)
            && let Some(err) = &e.error
        {
            line.push_str(": ");
            line.push_str(err);
        }
        line
    }

    /// Append lines in one write.
    pub fn write_lines(&self, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        let mut buf = String::new();
        for l in lines {
            buf.push_str(&crate::logfile::escape(l));
            buf.push('\n');
        }
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let r = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(buf.as_bytes())?;
                f.metadata()
            });
        match r {
            Ok(m) if m.len() >= self.max_bytes => {
                if let Err(e) =
                    crate::logfile::archive_file(&self.path, &self.archive, self.clock.now())
                {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot rotate the scheduler log");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot write the scheduler log")
            }
        }
    }
}

/// Write job outcomes to the log as they happen, in batches (a supervised task).
pub async fn follow_outcomes(
    log: SchedLog,
    mut rx: tokio::sync::broadcast::Receiver<JobEvent>,
    token: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    loop {
        let first = tokio::select! {
            _ = token.cancelled() => return Ok(()),
            r = rx.recv() => r,
        };
        let mut lines = Vec::new();
        let mut push = |r: Result<JobEvent, String>| match r {
            Ok(e) => lines.push(SchedLog::outcome_line(&e)),
            Err(msg) => lines.push(msg),
        };
        match first {
            Ok(e) => push(Ok(e)),
            Err(RecvError::Lagged(n)) => push(Err(format!(
                "{} INFO {n} job outcomes not logged (the log fell behind)",
                rfc3339(log.clock.now())
            ))),
            Err(RecvError::Closed) => return Ok(()),
        }
        for _ in 0..1000 {
            match rx.try_recv() {
                Ok(e) => push(Ok(e)),
                Err(TryRecvError::Lagged(n)) => push(Err(format!(
                    "{} INFO {n} job outcomes not logged (the log fell behind)",
                    rfc3339(log.clock.now())
                ))),
                Err(_) => break,
            }
        }
        log.write_lines(&lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_escaped_and_the_file_rotates_past_its_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let log = SchedLog::new(tmp.path(), Clock::system()).with_max_bytes(300);
        log.error("job failed: boom\r\n2026-01-01T00:00:00Z INFO forged\u{1b}[2K\u{2028}x");
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(text.contains("boom\\r\\n2026"), "{text:?}");
        assert!(
            !text
                .trim_end()
                .chars()
                .any(|c| c.is_control() || c == '\u{2028}')
        );
        for i in 0..10 {
            log.info(&format!("tick {i} ......................................"));
        }
        let archived: Vec<_> = std::fs::read_dir(tmp.path().join("archive"))
            .unwrap()
            .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .collect();
        assert!(!archived.is_empty(), "scheduler.log was never rotated");
        assert!(std::fs::metadata(log.path()).map(|m| m.len()).unwrap_or(0) < 300);
        std::fs::write(log.path(), "x\n").unwrap();
        assert!(log.rotate().unwrap().is_some());
        assert!(!log.path().exists());
    }
}
