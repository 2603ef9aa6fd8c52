//! Append-only log files that survive operators: the audit NDJSON and the request log.
//!
//! One writer thread per file owns the handle and is fed lines through a channel, so a
//! request never waits on the disk and lines land in the order they were sent. Before
//! each batch the writer checks that the path still names the file it holds (same
//! device and inode): when an operator has moved it away (`mv logs/ndjson/*.ndjson
//! logs/archive/...`) the next batch opens a fresh file — no restart. Past `max_bytes`
//! the file is moved into `logs/archive/YYYYMMDD/` under a unique name. Rotation goes
//! through the same channel as the lines, so no line is lost or written twice across it.
//!
//! A thread rather than a supervised task: it must also run where no runtime exists
//! (the CLI) and it must never be restarted with its queue of lines dropped.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;

/// Make one value safe for a text log line: every control character (C0, DEL, C1: `\r`,
/// `\n`, ESC...) and the Unicode line and paragraph separators become visible escapes
/// (`\n`, `\r`, `\t`, `\u{1b}`), so a value can neither start a forged line nor drive
/// the terminal of whoever runs `tail`. Every text log (`app.log`, `scheduler.log`,
/// `echopilot.log`) goes through this one function; the NDJSON audit is JSON-escaped.
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    fn special(c: char) -> bool {
        c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
    }
    if !s.chars().any(special) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if special(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Where rotated files go: `<logs>/archive/YYYYMMDD/<stem>-<HHMMSS.mmm>[-n].<ext>`.
/// Link-then-unlink never overwrites an existing archive, and when two rotations race
/// on the same file only one of them keeps its copy.
pub(crate) fn archive_file(
    path: &Path,
    archive_root: &Path,
    now: DateTime<Utc>,
) -> io::Result<Option<PathBuf>> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => return Ok(None),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let dir = archive_root.join(now.format("%Y%m%d").to_string());
    std::fs::create_dir_all(&dir)?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("log")
        .to_string();
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("log");
    let base = format!("{stem}-{}", now.format("%H%M%S%.3f"));
    for n in 0u32..10_000 {
        let name = if n == 0 {
            format!("{base}.{ext}")
        } else {
            format!("{base}-{n}.{ext}")
        };
        let target = dir.join(name);
        match std::fs::hard_link(path, &target) {
            Ok(()) => {
                return match std::fs::remove_file(path) {
                    Ok(()) => Ok(Some(target)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        // Another rotation took the file between our link and unlink.
                        let _ = std::fs::remove_file(&target);
                        Ok(None)
                    }
                    Err(e) => Err(e),
                };
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "no free archive name for {} in {}",
        path.display(),
        dir.display()
    )))
}

/// Logs whose writers reopen the path on their next line, so rotating them is a move
/// into the archive: the scheduler's and the server's own. `audit.ndjson`, `app.log`
/// and `stripe_webhooks.log` rotate through their writer.
pub(crate) const REOPENED_LOGS: &[&str] = &["scheduler.log", "echopilot.log"];

/// Move every [`REOPENED_LOGS`] file of `logs_dir` that has lines into the archive.
pub(crate) fn archive_reopened(logs_dir: &Path, now: DateTime<Utc>) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for name in REOPENED_LOGS {
        out.extend(archive_file(
            &logs_dir.join(name),
            &logs_dir.join("archive"),
            now,
        )?);
    }
    Ok(out)
}

/// An open append handle and the identity of the file it writes.
struct Open {
    file: File,
    id: (u64, u64),
    len: u64,
}

#[cfg(unix)]
fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn file_id(_m: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// Names a file that an operator moved away, from its content (the audit trail uses
/// the seq range it holds); `None` leaves the name as the operator gave it.
pub(crate) type MovedName = fn(&Path) -> Option<String>;

/// A file appended to by one owner, reopened when moved and rotated when too big.
pub struct RotatingFile {
    path: PathBuf,
    archive_root: PathBuf,
    max_bytes: u64,
    clock: Clock,
    open: Option<Open>,
    moved_name: Option<MovedName>,
}

impl RotatingFile {
    pub fn new(path: PathBuf, archive_root: PathBuf, max_bytes: u64, clock: Clock) -> Self {
        Self {
            path,
            archive_root,
            max_bytes,
            clock,
            open: None,
            moved_name: None,
        }
    }

    /// When an operator moves the file away (`mv logs/ndjson/*.ndjson logs/archive/…/`),
    /// rename it where it landed to `name(file)`, so that a second `mv` of the next file
    /// into the same folder cannot overwrite it.
    pub fn rename_when_moved(mut self, name: MovedName) -> Self {
        self.moved_name = Some(name);
        self
    }

    /// The file we held was moved: give it its unique name in its new folder. Only
    /// Linux says where an open file went (`/proc/self/fd`); elsewhere it keeps the
    /// operator's name.
    fn name_moved(&self, old: &Open) {
        let Some(name) = self.moved_name else { return };
        let Some(now_at) = open_file_path(&old.file) else {
            return;
        };
        if now_at == self.path {
            return;
        }
        let (Some(dir), Some(unique)) = (now_at.parent(), name(&now_at)) else {
            return;
        };
        let target = dir.join(unique);
        if target == now_at {
            return;
        }
        // Link then unlink: never overwrites a file already there.
        match std::fs::hard_link(&now_at, &target) {
            Ok(()) => {
                let _ = std::fs::remove_file(&now_at);
                tracing::info!(from = %now_at.display(), to = %target.display(), "renamed a moved log file");
            }
            Err(e) => tracing::warn!(
                file = %now_at.display(),
                error = %e,
                "cannot give a moved log file its unique name"
            ),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The handle, reopened when the path no longer names the file we hold.
    fn current(&mut self) -> io::Result<&mut Open> {
        let on_disk = match std::fs::metadata(&self.path) {
            Ok(m) => Some(file_id(&m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let stale = match (&self.open, on_disk) {
            (Some(o), Some(id)) => o.id != id,
            _ => true,
        };
        if stale {
            if let Some(old) = self.open.take() {
                self.name_moved(&old);
            }
            if let Some(parent) = self.path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            let m = file.metadata()?;
            self.open = Some(Open {
                id: file_id(&m),
                len: m.len(),
                file,
            });
        }
        self.open
            .as_mut()
            .ok_or_else(|| io::Error::other("log file not open"))
    }

    /// Append `bytes` (whole lines) in one write; rotate when past the limit.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let open = self.current()?;
        open.file.write_all(bytes)?;
        open.len += bytes.len() as u64;
        if open.len >= self.max_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// Move the file into the archive now; `None` when there was nothing to move.
    pub fn rotate(&mut self) -> io::Result<Option<PathBuf>> {
        if let Some(o) = &self.open {
            o.file.sync_data()?;
        }
        self.open = None;
        archive_file(&self.path, &self.archive_root, self.clock.now())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        match &self.open {
            Some(o) => o.file.sync_data(),
            None => Ok(()),
        }
    }
}

#[cfg(target_os = "linux")]
fn open_file_path(f: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    let p = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).ok()?;
    // A removed file reads as "<path> (deleted)".
    (!p.to_string_lossy().ends_with(" (deleted)")).then_some(p)
}

#[cfg(not(target_os = "linux"))]
fn open_file_path(_f: &File) -> Option<PathBuf> {
    None
}

type Reply<T> = tokio::sync::oneshot::Sender<io::Result<T>>;

enum Msg {
    Line(String),
    Flush(Reply<()>),
    Rotate(Reply<Option<PathBuf>>),
}

/// The sending side of a writer thread; cheap to clone. The thread ends when the last
/// clone is dropped, after writing everything sent.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<Msg>,
    path: PathBuf,
    /// Set while writes fail (disk full, permissions); cleared by the next good write.
    failing: Arc<AtomicBool>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender")
            .field("path", &self.path)
            .finish()
    }
}

/// Most lines written in one batch.
const BATCH: usize = 4096;

/// How long the writer lets lines gather after the first one wakes it: one wake-up
/// and one write per few milliseconds under load, instead of one per line (a wake-up
/// costs the request that sends the line a futex call and the machine a context switch).
const GATHER: Duration = Duration::from_millis(2);

impl Appender {
    /// Start the writer thread for `file`.
    pub fn start(name: &str, file: RotatingFile) -> io::Result<Appender> {
        let (tx, rx) = mpsc::channel();
        let path = file.path().to_path_buf();
        let failing = Arc::new(AtomicBool::new(false));
        let flag = failing.clone();
        std::thread::Builder::new()
            .name(format!("log-{name}"))
            .spawn(move || writer(file, rx, flag))?;
        Ok(Appender { tx, path, failing })
    }

    /// Did the last write fail?
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queue one line (without its newline). Never blocks.
    pub fn append(&self, line: String) {
        if self.tx.send(Msg::Line(line)).is_err() {
            tracing::error!(path = %self.path.display(), "log writer has stopped; line dropped");
        }
    }

    /// Wait until every line queued before this call is written (and fdatasync'ed).
    pub async fn flush(&self) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Msg::Flush(tx))
            .map_err(|_| io::Error::other("log writer has stopped"))?;
        rx.await
            .map_err(|_| io::Error::other("log writer has stopped"))?
    }

    /// As [`Appender::flush`], for code outside a runtime.
    pub fn flush_blocking(&self) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Msg::Flush(tx))
            .map_err(|_| io::Error::other("log writer has stopped"))?;
        rx.blocking_recv()
            .map_err(|_| io::Error::other("log writer has stopped"))?
    }

    /// Archive the file after every line queued before this call; the next line opens
    /// a fresh one. `None` when the file was empty or absent.
    pub async fn rotate(&self) -> io::Result<Option<PathBuf>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Msg::Rotate(tx))
            .map_err(|_| io::Error::other("log writer has stopped"))?;
        rx.await
            .map_err(|_| io::Error::other("log writer has stopped"))?
    }
}

fn writer(mut file: RotatingFile, rx: mpsc::Receiver<Msg>, failing: Arc<AtomicBool>) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    // Lines whose write failed wait here and go out with the next batch.
    let mut pending = false;
    loop {
        let first = if pending {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = file.append(&buf);
                    return;
                }
            }
        } else {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        };
        if matches!(first, Some(Msg::Line(_))) {
            std::thread::sleep(GATHER);
        }
        let mut control = Vec::new();
        let mut next = first;
        let mut n = 0;
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(l) => {
                    buf.extend_from_slice(l.as_bytes());
                    buf.push(b'\n');
                    n += 1;
                }
                // A control message ends the batch: what came before it is written first.
                other => {
                    control.push(other);
                    break;
                }
            }
            if n >= BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        let written = file.append(&buf);
        failing.store(written.is_err(), Ordering::Relaxed);
        match &written {
            Ok(()) => {
                buf.clear();
                pending = false;
            }
            Err(e) => {
                tracing::error!(path = %file.path().display(), error = %e, "cannot write log file; will retry");
                pending = true;
            }
        }
        for msg in control {
            match msg {
                Msg::Flush(reply) => {
                    let r = match &written {
                        Ok(()) => file.sync(),
                        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                    };
                    let _ = reply.send(r);
                }
                Msg::Rotate(reply) => {
                    let r = match &written {
                        Ok(()) => file.rotate(),
                        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                    };
                    let _ = reply.send(r);
                }
                Msg::Line(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_control_character() {
        assert!(matches!(escape("plain text é"), Cow::Borrowed(_)));
        let forged =
            "boom\r\n2026-01-01T00:00:00Z ERROR x\u{1b}[2K\u{2028}y\u{2029}\t\u{85}\u{7f}\0";
        let e = escape(forged);
        assert_eq!(
            e,
            "boom\\r\\n2026-01-01T00:00:00Z ERROR x\\u{1b}[2K\\u{2028}y\\u{2029}\\t\\u{85}\\u{7f}\\u{0}"
        );
        assert!(
            !e.chars()
                .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
        );
    }

    fn lines_in(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let text = std::fs::read_to_string(&p).unwrap();
                    out.extend(text.lines().map(str::to_string));
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn moved_file_is_recreated_and_rotation_keeps_every_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("logs/app.log");
        let archive = tmp.path().join("logs/archive");
        let a = Appender::start(
            "test",
            RotatingFile::new(path.clone(), archive.clone(), 200, Clock::system()),
        )
        .unwrap();
        a.append("one".into());
        a.flush().await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n");
        // An operator moves the file away: the next line makes a fresh one.
        std::fs::create_dir_all(tmp.path().join("moved")).unwrap();
        std::fs::rename(&path, tmp.path().join("moved/app.log")).unwrap();
        a.append("two".into());
        a.flush().await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        // Past 200 bytes the file is archived by itself.
        for i in 0..20 {
            a.append(format!("line {i:03} ........................"));
            a.flush().await.unwrap();
        }
        a.append("last".into());
        assert!(a.rotate().await.unwrap().is_some());
        assert!(
            a.rotate().await.unwrap().is_none(),
            "nothing left to rotate"
        );
        assert!(!path.exists());
        let all = lines_in(tmp.path());
        assert_eq!(all.len(), 23);
        let day = std::fs::read_dir(&archive)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert!(std::fs::read_dir(day.path()).unwrap().count() >= 3);
    }
}
