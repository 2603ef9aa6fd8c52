use std::sync::{Mutex, mpsc};

use super::store::{Each, SnapshotView};
use super::*;
use crate::error::{Classify, ErrorKind};
use crate::store::SledTarget;

/// A store whose snapshot says when it started and waits to be told to go on.
struct Slow {
    started: Mutex<mpsc::Sender<()>>,
    go: Mutex<mpsc::Receiver<()>>,
}

struct Empty;

impl SnapshotView for Empty {
    fn trees(&self) -> Vec<String> {
        Vec::new()
    }
    fn records(&self, _: &str, _: &mut Each<'_>) -> Result<u64, BackupError> {
        Ok(0)
    }
}

impl SnapshotSource for Slow {
    fn read_snapshot(
        &self,
        read: &mut dyn FnMut(&dyn SnapshotView) -> Result<(), BackupError>,
    ) -> Result<(), BackupError> {
        let _ = self.started.lock().unwrap().send(());
        let _ = self.go.lock().unwrap().recv();
        read(&Empty)
    }
    fn schema_version(&self) -> Result<u32, BackupError> {
        Ok(1)
    }
    fn backend(&self) -> &'static str {
        "test"
    }
}

fn backups(dir: &Path, source: Option<Arc<dyn SnapshotSource>>) -> Backups {
    Backups::new(
        Settings {
            dir: dir.to_path_buf(),
            keep: 5,
            copy_command: None,
        },
        source,
        Arc::new(SledTarget),
        Clock::system(),
        "test",
        "test",
    )
}

#[test]
fn a_second_snapshot_while_one_is_taken_is_refused_as_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (started_tx, started) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let slow = Slow {
        started: Mutex::new(started_tx),
        go: Mutex::new(go_rx),
    };
    let b = backups(dir.path(), Some(Arc::new(slow)));
    let first = {
        let b = b.clone();
        std::thread::spawn(move || b.take(None))
    };
    started.recv().unwrap();
    let busy = b.take(None).unwrap_err();
    assert!(matches!(busy, BackupError::Busy(_)), "{busy}");
    assert_eq!(busy.kind(), ErrorKind::Conflict);
    go.send(()).unwrap();
    first.join().unwrap().unwrap();
    // Once it is done the next one runs.
    go.send(()).unwrap();
    b.take(None).unwrap();
    assert_eq!(b.list().unwrap().len(), 2);
}

#[test]
fn each_failure_is_classified_for_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let b = backups(dir.path(), None);
    assert_eq!(
        b.path_of("../etc/passwd").unwrap_err().kind(),
        ErrorKind::Invalid
    );
    assert_eq!(
        b.path_of("echopilot-20200101T000000Z.snap")
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let damaged = dir.path().join("echopilot-20200101T000000Z.snap");
    std::fs::write(&damaged, b"ECHOSNAP").unwrap();
    let e = b.verify(&damaged, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unprocessable, "{e}");
    assert!(e.public_message().contains("truncated"), "{e}");

    let full = BackupError::io(&damaged, std::io::Error::from_raw_os_error(28));
    assert_eq!(full.kind(), ErrorKind::Unavailable, "{full}");
    // The client is told what to do, not where.
    assert!(!full.public_message().contains(damaged.to_str().unwrap()));
    let other = BackupError::io(&damaged, std::io::Error::from_raw_os_error(13));
    assert_eq!(other.kind(), ErrorKind::Internal);
    assert_eq!(other.public_message(), "internal error");
}

#[test]
fn snapshot_work_runs_below_the_callers_priority_and_leaves_it_alone() {
    let before = rustix::process::getpriority_process(None).unwrap();
    let (inside, thread) = super::in_background(|| {
        (
            rustix::process::getpriority_process(None).unwrap(),
            std::thread::current().name().map(String::from),
        )
    });
    // Under an already nicer parent, the work stays at least as nice.
    if before <= super::BACKGROUND_NICE {
        assert_eq!(inside, super::BACKGROUND_NICE);
    } else {
        assert!(inside >= super::BACKGROUND_NICE);
    }
    assert_eq!(thread.as_deref(), Some("backup"));
    assert_eq!(rustix::process::getpriority_process(None).unwrap(), before);
}
