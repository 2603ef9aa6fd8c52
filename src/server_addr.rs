//! `data/echopilot.addr`: where the running server listens, written beside its lock.
//!
//! The server writes it once it has bound its socket and removes it at a clean stop;
//! a crashed server leaves it behind, so it counts only while the home's lock is held.
//! Every CLI command that talks to a running server finds it here (through
//! `cli::running_server`), never through `PORT` or `echopilot.toml`, which a server
//! started with `--bind` does not follow.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The file's path under `home`.
pub fn path(home: &Path) -> PathBuf {
    home.join("data").join("echopilot.addr")
}

/// The record of a server that is listening; removes the file when dropped.
#[derive(Debug)]
pub struct Recorded {
    path: PathBuf,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Record `addr` (as a client can reach it: a wildcard bind becomes loopback). Written
/// to a temporary name and renamed, so a reader never sees half an address.
pub fn record(home: &Path, addr: SocketAddr) -> std::io::Result<Recorded> {
    let reachable = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    };
    let path = path(home);
    let tmp = path.with_extension("addr.tmp");
    std::fs::write(&tmp, format!("{reachable}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(Recorded { path })
}

/// Where the server running on `home` listens: `None` when no server holds the home's
/// lock, or it has not recorded an address yet.
pub fn running(home: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(path(home)).ok()?;
    let addr = text.trim().parse().ok()?;
    crate::store::lock_held(home).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_while_the_lock_is_held() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        assert_eq!(running(home), None);
        let store = crate::store::Store::open(home).unwrap();
        let rec = record(home, "0.0.0.0:4321".parse().unwrap()).unwrap();
        assert_eq!(running(home), Some("127.0.0.1:4321".parse().unwrap()));
        // A crashed server leaves the file but not the lock.
        std::mem::forget(rec);
        drop(store);
        assert!(path(home).exists());
        assert_eq!(running(home), None);
        let _store = crate::store::Store::open(home).unwrap();
        drop(record(home, "[::1]:80".parse().unwrap()).unwrap());
        assert!(!path(home).exists(), "a clean stop removes the record");
        assert_eq!(running(home), None);
    }
}
