//! `echopilot.toml`: structured settings (commands, schedules) and the same settings as
//! the environment, in lower case.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, SECRETS, SETTINGS};

/// A command the `command` executor may run: declared in `echopilot.toml` `[commands]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// The program to run (absolute path or a name on `PATH`).
    pub program: String,
    /// Arguments always passed before the job's own.
    #[serde(default)]
    pub args: Vec<String>,
    /// Working folder (default: the home).
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Kill the process after this many seconds (default: the job's timeout).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// A cron schedule declared in `echopilot.toml` `[[schedules]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub name: String,
    pub cron: String,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub queue: Option<String>,
    pub kind: String,
    /// JSON payload as a TOML table or value.
    #[serde(default)]
    pub payload: Option<toml::Value>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// `echopilot.toml`: every key optional; an unknown key is an error (checked by hand,
/// since serde's `deny_unknown_fields` does not combine with `flatten`).
#[derive(Debug, Default, Deserialize)]
pub(super) struct FileConfig {
    pub(super) bind: Option<String>,
    #[serde(flatten)]
    pub(super) settings: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub(super) commands: BTreeMap<String, CommandSpec>,
    #[serde(default)]
    pub(super) schedules: Vec<ScheduleSpec>,
}

pub(super) fn read_file_config(home: &Path) -> Result<FileConfig, ConfigError> {
    let path = home.join("echopilot.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(e) => return Err(ConfigError::new("echopilot.toml", e.to_string())),
    };
    let file: FileConfig = toml::from_str(&text)
        .map_err(|e| ConfigError::new("echopilot.toml", e.message().to_string()))?;
    for key in file.settings.keys() {
        let upper = key.to_ascii_uppercase();
        if SECRETS.contains(&upper.as_str()) {
            return Err(ConfigError::new(
                &format!("echopilot.toml: {key}"),
                "secrets are read only from the environment",
            ));
        }
        if !SETTINGS.iter().any(|(n, _)| *n == upper) {
            return Err(ConfigError::new(
                &format!("echopilot.toml: {key}"),
                "unknown setting",
            ));
        }
    }
    Ok(file)
}
