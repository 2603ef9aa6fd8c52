//! The run's figures as one JSON document (`echopilot bench --json`), so runs can be
//! compared.

use serde_json::{Map, Value, json};

use super::Figures;
use super::status::StatusFigures;

impl Figures {
    pub(super) fn figures_json(&mut self, disk: f64) -> Value {
        let rate = self.jobs as f64 / self.secs.max(1e-9);
        let mut lat = Map::new();
        for (call, l) in self.lat.iter_mut() {
            if !l.0.is_empty() {
                lat.insert(
                    (*call).to_string(),
                    json!({"p50_ms": l.pct(0.50), "p99_ms": l.pct(0.99), "calls": l.0.len()}),
                );
            }
        }
        json!({
            "name": self.name,
            "jobs": self.jobs,
            "secs": self.secs,
            "jobs_per_s": rate.round(),
            "x_disk_sync_rate": rate / disk,
            "syncs_per_job": self.syncs as f64 / self.jobs.max(1) as f64,
            "latency": lat,
        })
    }
}

/// Everything one run measured.
pub(super) fn document(
    cores: usize,
    disk_before: f64,
    disk_after: f64,
    all: &mut [Figures],
    status: Option<&StatusFigures>,
) -> Value {
    let workloads: Vec<Value> = all
        .iter_mut()
        .map(|f| f.figures_json(disk_before))
        .collect();
    json!({
        "version": crate::build_info::VERSION,
        "commit": crate::build_info::commit_label(),
        "cores": cores,
        "disk_fdatasync_per_s": {"before": disk_before.round(), "after": disk_after.round()},
        "workloads": workloads,
        "status_routes": status.map(StatusFigures::to_json),
    })
}
