//! Keys and roles: who a caller is. Keys arrive in `X-Dash-Key`; we keep only their SHA-256 digests and
//! compare digests in constant time. A caller is named by its key id (the first 8 hex
//! characters of the digest), never by its key.

pub mod key_rules;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

mod role;

pub use role::{Need, Role};

/// The header that carries a key.
pub const KEY_HEADER: &str = "x-dash-key";

/// Who is calling: a key id and its role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Caller {
    pub key_id: String,
    pub role: Role,
}

/// The live keys, as digests. Several may be live at once (key rotation).
#[derive(Debug, Default)]
pub struct Keys {
    keys: Vec<([u8; 32], Role)>,
}

fn digest(key: &str) -> [u8; 32] {
    let d = Sha256::digest(key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_slice());
    out
}

/// The short, loggable id of a key: the first 8 hex characters of its digest.
pub fn key_id(key: &str) -> String {
    hex8(&digest(key))
}

fn hex8(d: &[u8; 32]) -> String {
    hex::encode(&d[..4])
}

impl Keys {
    /// The live keys and their roles (the configuration's `Config::keys`).
    pub fn new<'a>(keys: impl IntoIterator<Item = (&'a str, Role)>) -> Self {
        Keys {
            keys: keys.into_iter().map(|(k, r)| (digest(k), r)).collect(),
        }
    }

    /// Is any key configured at all?
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many live keys hold `role`.
    pub fn count(&self, role: Role) -> usize {
        self.keys.iter().filter(|(_, r)| *r == role).count()
    }

    /// The start-up line: keys per role, or a clear warning when there are none (every
    /// protected route would answer 401 with nothing said).
    pub fn log_loaded(&self) {
        if self.is_empty() {
            tracing::warn!(
                "no keys loaded: every protected route answers 401. Set DASHBOARD_KEY (admin) \
                 or ROLES_JSON; `echopilot keygen` prints a fresh key"
            );
        } else {
            tracing::info!(
                admin = self.count(Role::Admin),
                operator = self.count(Role::Operator),
                viewer = self.count(Role::Viewer),
                worker = self.count(Role::Worker),
                "keys loaded"
            );
        }
    }

    /// The caller holding `key`, if it is live. Every digest is compared, in constant
    /// time, whatever matches first.
    pub fn identify(&self, key: &str) -> Option<Caller> {
        let d = digest(key);
        let mut found: Option<Role> = None;
        for (k, role) in &self.keys {
            if bool::from(k.ct_eq(&d)) && found.is_none() {
                found = Some(*role);
            }
        }
        found.map(|role| Caller {
            key_id: hex8(&d),
            role,
        })
    }
}

impl Keys {
    /// The role of the live key with this id (a dashboard session names its key by id):
    /// `None` once the key has left the configuration.
    pub fn role_of(&self, key_id: &str) -> Option<Role> {
        self.keys
            .iter()
            .find(|(d, _)| hex8(d) == key_id)
            .map(|(_, role)| *role)
    }
}

/// A fresh key: 32 random bytes as URL-safe base64 without padding (43 characters),
/// like Python's `secrets.token_urlsafe(32)`.
pub fn generate_key() -> String {
    use base64::Engine;
    use rand::RngExt;
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn identify_and_key_id() {
        let mut config_keys = Keys::default();
        config_keys
            .keys
            .push((digest("admin-key-aaaaaaaaaaaa"), Role::Admin));
        config_keys
            .keys
            .push((digest("viewer-key-bbbbbbbbbbb"), Role::Viewer));
        let c = config_keys.identify("viewer-key-bbbbbbbbbbb").unwrap();
        assert_eq!(c.role, Role::Viewer);
        assert_eq!(c.key_id.len(), 8);
        assert_eq!(c.key_id, key_id("viewer-key-bbbbbbbbbbb"));
        assert!(config_keys.identify("nope").is_none());
        let _ = Secret::new("x");
    }

    #[test]
    fn generated_keys_are_43_url_safe_chars() {
        let a = generate_key();
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, generate_key());
    }

    #[test]
    fn role_matrix() {
        use Role::*;
        assert!(Need::Viewer.allows(Viewer) && Need::Viewer.allows(Admin));
        assert!(!Need::Viewer.allows(Worker));
        assert!(!Need::Operator.allows(Viewer) && Need::Operator.allows(Operator));
        assert!(!Need::Admin.allows(Operator) && Need::Admin.allows(Admin));
        assert!(Need::Worker.allows(Worker) && Need::Worker.allows(Operator));
        assert!(!Need::Worker.allows(Viewer));
    }
}
