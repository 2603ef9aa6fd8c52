//! Health of the whole and its parts, for `/api/status/summary`.

use serde::Serialize;
use serde_json::{Map, Value};

/// Ordered from best to worst, so the overall status is the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
}

/// One component's status and what explains it. Keys keep insertion order, so the
/// summary's JSON is stable from one call to the next (the runbook diffs it).
#[derive(Debug, Clone)]
pub struct Component {
    pub status: Health,
    pub detail: Map<String, Value>,
}

impl Component {
    pub fn new(status: Health) -> Self {
        Self {
            status,
            detail: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.detail.insert(key.to_string(), value.into());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "status".into(),
            serde_json::to_value(self.status).unwrap_or_default(),
        );
        m.extend(self.detail.clone());
        Value::Object(m)
    }
}

/// Free space on the home's disk (the runbook's weekly `df -h`): degraded below 10 %
/// or 1 GiB free, unhealthy below 2 % or 256 MiB.
pub fn disk(path: &std::path::Path) -> Component {
    match fs4::statvfs(path) {
        Ok(s) => {
            let total = s.total_space();
            let free = s.available_space();
            let pct = if total == 0 {
                0.0
            } else {
                free as f64 * 100.0 / total as f64
            };
            let status = if pct < 2.0 || free < 256 << 20 {
                Health::Unhealthy
            } else if pct < 10.0 || free < 1 << 30 {
                Health::Degraded
            } else {
                Health::Healthy
            };
            Component::new(status)
                .with("free_bytes", free)
                .with("total_bytes", total)
                .with("free_pct", (pct * 10.0).round() / 10.0)
        }
        Err(e) => Component::new(Health::Unhealthy).with("error", e.to_string()),
    }
}
