//! The snapshot file:
//!
//! ```text
//! "ECHOSNAP"  u16 format version  u32 header length  header (JSON)
//! body: zlib stream of frames   T <u16 len><tree name>
//!                               R <u32 len><key><u32 len><value>
//!                               E                      (end)
//! SHA-256 of every byte before it (32 bytes)
//! ```
//!
//! The header says what to expect (counts per tree, body length), so a truncated file
//! is named as truncated and a changed byte as a checksum mismatch, before anything is
//! decompressed. Lengths are big-endian.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::store::{SnapshotSink, SnapshotSource};
use super::{BackupError, load};

pub const MAGIC: &[u8; 8] = b"ECHOSNAP";
pub const FORMAT_VERSION: u16 = 1;
const DIGEST_LEN: u64 = 32;
/// A header larger than this is not one of ours.
const MAX_HEADER: u32 = 16 << 20;

/// Records of one tree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TreeCount {
    pub name: String,
    pub records: u64,
}

/// The manifest at the front of every snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub format_version: u16,
    pub app_version: String,
    pub commit: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub backend: String,
    pub schema_version: u32,
    pub trees: Vec<TreeCount>,
    pub records: u64,
    /// Length of the compressed body.
    pub body_bytes: u64,
}

/// What the app says about itself in a new snapshot.
#[derive(Debug, Clone)]
pub struct Origin {
    pub app_version: String,
    pub commit: String,
    pub created_at: String,
}

/// A progress report: `done` records of `total` (0 when not known yet).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::io(path, e)
}

/// A sibling of `dest` that `ls` does not show: `.name.suffix`.
fn hidden(dest: &Path, suffix: &str) -> PathBuf {
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("snapshot");
    dest.with_file_name(format!(".{name}.{suffix}"))
}

/// A file readable and writable by its owner only.
pub(super) fn create_private(path: &Path) -> std::io::Result<File> {
    let mut o = File::options();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// Write a snapshot of `source` to `dest` (through hidden temporary files; `dest`
/// appears only complete). Returns its header and checksum.
pub fn write(
    source: &dyn SnapshotSource,
    origin: &Origin,
    dest: &Path,
    progress: Progress<'_>,
) -> Result<(Header, String), BackupError> {
    let body_path = hidden(dest, "body");
    let result = write_inner(source, origin, dest, &body_path, progress);
    let _ = std::fs::remove_file(&body_path);
    if result.is_err() {
        let _ = std::fs::remove_file(hidden(dest, "partial"));
    }
    result
}

fn write_inner(
    source: &dyn SnapshotSource,
    origin: &Origin,
    dest: &Path,
    body_path: &Path,
    progress: Progress<'_>,
) -> Result<(Header, String), BackupError> {
    let schema_version = source.schema_version()?;
    let body = create_private(body_path).map_err(io(body_path))?;
    let werr = io(body_path);
    let mut trees = Vec::new();
    let mut done = 0u64;
    // Reading (sled and the capture) and compressing run on two threads.
    let compressed = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        // Both run at the caller's priority: `Backups::take` runs them below the
        // requests (measured: a lower p99 beside 32 producers than with the reader at
        // the requests' priority, though writers wait on the capture's lock it holds).
        let compressor = scope.spawn(move || -> std::io::Result<File> {
            let mut z =
                ZlibEncoder::new(BufWriter::with_capacity(1 << 20, body), Compression::fast());
            for chunk in rx {
                z.write_all(&chunk)?;
            }
            z.finish()?.into_inner().map_err(|e| e.into_error())
        });
        let mut enc = Chunks {
            buf: Vec::with_capacity(CHUNK + 4096),
            tx,
        };
        let read = source.read_snapshot(&mut |view| {
            for name in view.trees() {
                let n = u16::try_from(name.len())
                    .map_err(|_| BackupError::Io(format!("tree name too long: {name}")))?;
                enc.write_all(b"T").map_err(&werr)?;
                enc.write_all(&n.to_be_bytes()).map_err(&werr)?;
                enc.write_all(name.as_bytes()).map_err(&werr)?;
                let records = view.records(&name, &mut |k, v| {
                    enc.write_all(b"R").map_err(&werr)?;
                    enc.write_all(&(k.len() as u32).to_be_bytes())
                        .map_err(&werr)?;
                    enc.write_all(k).map_err(&werr)?;
                    enc.write_all(&(v.len() as u32).to_be_bytes())
                        .map_err(&werr)?;
                    enc.write_all(v).map_err(&werr)?;
                    done += 1;
                    if done.is_multiple_of(50_000) {
                        progress(done, 0);
                    }
                    Ok(())
                })?;
                trees.push(TreeCount { name, records });
            }
            Ok(())
        });
        let ended = read.and_then(|()| {
            enc.write_all(b"E").map_err(&werr)?;
            enc.flush().map_err(&werr)
        });
        // Ends the compressor's input, whatever happened.
        drop(enc);
        let file = compressor
            .join()
            .map_err(|_| BackupError::Io("the snapshot compressor panicked".into()))?;
        // The compressor's own error (a full disk) explains a failed send.
        let file = file.map_err(&werr)?;
        ended.map(|()| file)
    })?;
    drop(compressed);
    let body_bytes = std::fs::metadata(body_path).map_err(&werr)?.len();
    progress(done, done);

    let header = Header {
        format_version: FORMAT_VERSION,
        app_version: origin.app_version.clone(),
        commit: origin.commit.clone(),
        created_at: origin.created_at.clone(),
        backend: source.backend().to_string(),
        schema_version,
        records: trees.iter().map(|t| t.records).sum(),
        trees,
        body_bytes,
    };
    let header_json =
        serde_json::to_vec(&header).map_err(|e| BackupError::Io(format!("header: {e}")))?;
    let partial = hidden(dest, "partial");
    let perr = io(&partial);
    let out = create_private(&partial).map_err(&perr)?;
    let mut out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, out),
        hash: Sha256::new(),
    };
    out.write_all(MAGIC).map_err(&perr)?;
    out.write_all(&FORMAT_VERSION.to_be_bytes())
        .map_err(&perr)?;
    out.write_all(&(header_json.len() as u32).to_be_bytes())
        .map_err(&perr)?;
    out.write_all(&header_json).map_err(&perr)?;
    let mut body = File::open(body_path).map_err(&werr)?;
    copy_in_steps(&mut body, &mut out).map_err(&perr)?;
    let digest = out.hash.finalize();
    let mut file = out.inner.into_inner().map_err(|e| perr(e.into_error()))?;
    file.write_all(digest.as_slice()).map_err(&perr)?;
    file.sync_all().map_err(&perr)?;
    drop(file);
    std::fs::rename(&partial, dest).map_err(io(dest))?;
    if let Some(dir) = dest.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok((header, hex::encode(digest)))
}

/// Written before each sync of the snapshot file.
const SYNC_STEP: usize = 8 << 20;

/// Copy `body` into the snapshot file, syncing every [`SYNC_STEP`]: the disk takes the
/// file in short writes between the store's syncs, not in one burst at the end that
/// the requests served meanwhile would wait behind.
fn copy_in_steps(body: &mut File, out: &mut HashingWriter<BufWriter<File>>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut unsynced = 0;
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
        unsynced += n;
        if unsynced >= SYNC_STEP {
            out.flush()?;
            out.inner.get_ref().sync_data()?;
            unsynced = 0;
        }
    }
}

/// Frames are handed to the compressor in chunks of this size.
const CHUNK: usize = 1 << 20;

/// A writer that sends full chunks to the compressor thread.
struct Chunks {
    buf: Vec<u8>,
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl Write for Chunks {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + 4096));
            self.tx
                .send(full)
                .map_err(|_| std::io::Error::other("the snapshot compressor stopped"))?;
        }
        Ok(())
    }
}

struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Read only the header (for listings); no checksum.
pub fn read_header(path: &Path) -> Result<(Header, u64), BackupError> {
    let mut f = File::open(path).map_err(io(path))?;
    let len = f.metadata().map_err(io(path))?.len();
    let mut fixed = [0u8; 14];
    if len < fixed.len() as u64 {
        return Err(BackupError::Corrupt(format!(
            "{}: truncated: {len} bytes, shorter than the snapshot header",
            path.display()
        )));
    }
    f.read_exact(&mut fixed).map_err(io(path))?;
    if &fixed[..8] != MAGIC {
        return Err(BackupError::Corrupt(format!(
            "{}: not an echopilot snapshot (bad magic bytes)",
            path.display()
        )));
    }
    let version = u16::from_be_bytes([fixed[8], fixed[9]]);
    if version != FORMAT_VERSION {
        return Err(BackupError::Corrupt(format!(
            "{}: snapshot format version {version}, this binary reads version {FORMAT_VERSION}",
            path.display()
        )));
    }
    let hlen = u32::from_be_bytes([fixed[10], fixed[11], fixed[12], fixed[13]]);
    if hlen > MAX_HEADER || 14 + hlen as u64 > len {
        return Err(BackupError::Corrupt(format!(
            "{}: truncated: the header claims {hlen} bytes but the file has {len}",
            path.display()
        )));
    }
    let mut h = vec![0u8; hlen as usize];
    f.read_exact(&mut h).map_err(io(path))?;
    let header: Header = serde_json::from_slice(&h)
        .map_err(|e| BackupError::Corrupt(format!("{}: unreadable header: {e}", path.display())))?;
    Ok((header, 14 + hlen as u64))
}

/// Check the length and the SHA-256 of the whole file. Returns the header, where the
/// body starts, and the checksum.
pub fn check(path: &Path) -> Result<(Header, u64, String), BackupError> {
    let (header, body_at) = read_header(path)?;
    let len = std::fs::metadata(path).map_err(io(path))?.len();
    let want = body_at + header.body_bytes + DIGEST_LEN;
    if len < want {
        return Err(BackupError::Corrupt(format!(
            "{}: truncated: {len} bytes, the header promises {want} ({} bytes missing)",
            path.display(),
            want - len
        )));
    }
    if len > want {
        return Err(BackupError::Corrupt(format!(
            "{}: {} unexpected bytes after the checksum",
            path.display(),
            len - want
        )));
    }
    let mut f = BufReader::with_capacity(1 << 20, File::open(path).map_err(io(path))?);
    let mut hash = Sha256::new();
    let mut left = len - DIGEST_LEN;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = (buf.len() as u64).min(left) as usize;
        f.read_exact(&mut buf[..n]).map_err(io(path))?;
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    let mut stored = [0u8; DIGEST_LEN as usize];
    f.read_exact(&mut stored).map_err(io(path))?;
    let digest = hash.finalize();
    if digest.as_slice() != stored {
        return Err(BackupError::Corrupt(format!(
            "{}: checksum mismatch: the file was changed or damaged after it was written \
             (SHA-256 {} expected, {} found)",
            path.display(),
            hex::encode(stored),
            hex::encode(digest)
        )));
    }
    Ok((header, body_at, hex::encode(digest)))
}

/// Decompress the body into `sink` and compare what it holds with the header. Call
/// [`check`] first. This thread decodes; writer threads insert beside it.
pub fn restore(
    path: &Path,
    header: &Header,
    body_at: u64,
    sink: &dyn SnapshotSink,
    progress: Progress<'_>,
) -> Result<Vec<(String, u64)>, BackupError> {
    let seen = load::fill(sink, header.records, progress, |feed| {
        decode(path, header.body_bytes, body_at, feed)
    })?;
    let corrupt = |what: String| BackupError::Corrupt(format!("{}: {what}", path.display()));
    let counts = sink.finish()?;
    for want in &header.trees {
        let got = counts
            .iter()
            .find(|(n, _)| *n == want.name)
            .map(|(_, c)| *c)
            .unwrap_or(0);
        if got != want.records {
            return Err(corrupt(format!(
                "tree {}: the header lists {} records, the restored store holds {got}",
                want.name, want.records
            )));
        }
    }
    if seen != header.trees.len() {
        return Err(corrupt(format!(
            "the body holds {seen} trees, the header lists {}",
            header.trees.len()
        )));
    }
    Ok(counts)
}

/// Read the body's frames into `feed` in batches; returns how many trees it held.
fn decode(
    path: &Path,
    body_bytes: u64,
    body_at: u64,
    feed: &mut load::Feed<'_>,
) -> Result<usize, BackupError> {
    let corrupt = |what: String| BackupError::Corrupt(format!("{}: {what}", path.display()));
    let mut f = File::open(path).map_err(io(path))?;
    f.seek(SeekFrom::Start(body_at)).map_err(io(path))?;
    let body = BufReader::with_capacity(1 << 20, f.take(body_bytes));
    let mut r = BufReader::with_capacity(1 << 20, ZlibDecoder::new(body));
    let bad = |e: std::io::Error| corrupt(format!("damaged body: {e}"));
    let mut in_tree = false;
    let mut batch: load::Batch = Vec::with_capacity(load::BATCH);
    let mut trees = 0;
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag).map_err(bad)?;
        match tag[0] {
            b'T' | b'E' => {
                feed.records(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(load::BATCH),
                ))?;
                if tag[0] == b'E' {
                    break;
                }
                let mut n = [0u8; 2];
                r.read_exact(&mut n).map_err(bad)?;
                let mut name = vec![0u8; u16::from_be_bytes(n) as usize];
                r.read_exact(&mut name).map_err(bad)?;
                let name = String::from_utf8(name)
                    .map_err(|_| corrupt("a tree name is not UTF-8".into()))?;
                feed.tree(&name)?;
                in_tree = true;
                trees += 1;
            }
            b'R' => {
                if !in_tree {
                    return Err(corrupt("a record before any tree".into()));
                }
                let k = read_chunk(&mut r).map_err(bad)?;
                let v = read_chunk(&mut r).map_err(bad)?;
                batch.push((k, v));
                if batch.len() >= load::BATCH {
                    feed.records(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(load::BATCH),
                    ))?;
                }
            }
            other => return Err(corrupt(format!("unknown frame {other:#04x} in the body"))),
        }
    }
    let mut rest = [0u8; 1];
    if r.read(&mut rest).map_err(bad)? != 0 {
        return Err(corrupt("data after the end of the body".into()));
    }
    Ok(trees)
}

fn read_chunk(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut n = [0u8; 4];
    r.read_exact(&mut n)?;
    let n = u32::from_be_bytes(n) as usize;
    if n > 64 << 20 {
        return Err(std::io::Error::other(format!("a record of {n} bytes")));
    }
    let mut v = vec![0u8; n];
    r.read_exact(&mut v)?;
    Ok(v)
}
