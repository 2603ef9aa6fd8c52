//! What `DASHBOARD_KEY` and `ROLES_JSON` may hold: keys long enough, none listed twice,
//! none in both. Every refusal names the setting and the entry, never the key.

use std::fmt;

use serde::Deserialize;

use super::Role;

/// A refused key setting: which setting, and why (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRuleError {
    pub setting: &'static str,
    pub reason: String,
}

fn config_error(setting: &'static str, reason: impl Into<String>) -> KeyRuleError {
    KeyRuleError {
        setting,
        reason: reason.into(),
    }
}

/// Keys shorter than this are refused (`DASHBOARD_KEY` and every `ROLES_JSON` key).
pub const MIN_KEY_LEN: usize = 16;

/// `ROLES_JSON`: `{"<key>": "viewer"|"operator"|"admin"|"worker"}`. The error never
/// repeats a key.
pub fn parse_roles(json: &str) -> Result<Vec<(String, Role)>, KeyRuleError> {
    let Entries(entries) = serde_json::from_str(json).map_err(|e| {
        config_error(
            "ROLES_JSON",
            format!(
                "expected a JSON object of key to role (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let mut out: Vec<(String, Role)> = Vec::with_capacity(entries.len());
    for (i, (key, role)) in entries.into_iter().enumerate() {
        let key = key.trim();
        if key.chars().count() < MIN_KEY_LEN {
            return Err(config_error(
                "ROLES_JSON",
                format!(
                    "entry {} has a key shorter than {MIN_KEY_LEN} characters",
                    i + 1
                ),
            ));
        }
        let role = role
            .parse::<Role>()
            .map_err(|e| config_error("ROLES_JSON", format!("entry {}: {e}", i + 1)))?;
        // A JSON object that names a key twice would silently keep the last role.
        if let Some(first) = out.iter().position(|(k, _)| k == key) {
            return Err(config_error(
                "ROLES_JSON",
                format!("entries {} and {} have the same key", first + 1, i + 1),
            ));
        }
        out.push((key.to_string(), role));
    }
    Ok(out)
}

/// A JSON object's entries in order, duplicates kept (a map would drop them).
struct Entries(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of key to role")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = m.next_entry()? {
                    v.push(entry);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Refuse keys that are weak or ambiguous, naming the problem but never the key.
pub fn check_keys<'a>(
    dashboard: Option<&str>,
    mut role_keys: impl Iterator<Item = &'a str>,
) -> Result<(), KeyRuleError> {
    let Some(admin) = dashboard else {
        return Ok(());
    };
    if admin.chars().count() < MIN_KEY_LEN {
        return Err(config_error(
            "DASHBOARD_KEY",
            format!(
                "shorter than {MIN_KEY_LEN} characters (`echopilot keygen` prints a strong one)"
            ),
        ));
    }
    // Comparing with `==` is fine here: both sides come from our own configuration
    // and the answer only stops start-up.
    if let Some(i) = role_keys.position(|k| k == admin) {
        return Err(config_error(
            "ROLES_JSON",
            format!("entry {} is the same key as DASHBOARD_KEY", i + 1),
        ));
    }
    Ok(())
}
