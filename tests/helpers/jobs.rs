//! One method per jobs, scheduler and schedules endpoint, so tests read like the runbook.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::{OPERATOR_KEY, TestApp, VIEWER_KEY, WORKER_KEY};

impl TestApp {
    /// `POST /api/jobs` as an operator.
    pub async fn enqueue(&self, body: Value) -> (u16, Value) {
        self.post("/api/jobs", Some(OPERATOR_KEY), body).await
    }

    /// Enqueue and return the new job's id (asserting 201).
    pub async fn enqueue_id(&self, body: Value) -> String {
        let (s, v) = self.enqueue(body).await;
        assert_eq!(s, 201, "{v}");
        v["job"]["id"].as_str().unwrap().to_string()
    }

    /// `GET /api/job/{id}` with `key` (or none).
    pub async fn job(&self, id: &str, key: Option<&str>) -> (u16, Value) {
        self.get(&format!("/api/job/{id}"), key).await
    }

    /// The job's full record (viewer key).
    pub async fn job_full(&self, id: &str) -> Value {
        let (s, v) = self.job(id, Some(VIEWER_KEY)).await;
        assert_eq!(s, 200, "{v}");
        v["job"].clone()
    }

    pub async fn jobs_list(&self, query: &str) -> (u16, Value) {
        self.get(&format!("/api/jobs{query}"), Some(VIEWER_KEY))
            .await
    }

    pub async fn jobs_stats(&self) -> Value {
        let (s, v) = self.get("/api/jobs/stats", Some(VIEWER_KEY)).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    pub async fn stuck_jobs(&self) -> Value {
        let (s, v) = self.get("/api/jobs/stuck", Some(VIEWER_KEY)).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// `POST /api/jobs/claim` as a worker.
    pub async fn claim(&self, body: Value) -> (u16, Value) {
        self.post("/api/jobs/claim", Some(WORKER_KEY), body).await
    }

    pub async fn heartbeat(&self, id: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/api/job/{id}/heartbeat"), Some(WORKER_KEY), body)
            .await
    }

    pub async fn complete(&self, id: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/api/job/{id}/complete"), Some(WORKER_KEY), body)
            .await
    }

    pub async fn fail(&self, id: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/api/job/{id}/fail"), Some(WORKER_KEY), body)
            .await
    }

    pub async fn complete_batch(&self, body: Value) -> (u16, Value) {
        self.post("/api/jobs/complete", Some(WORKER_KEY), body)
            .await
    }

    pub async fn retry(&self, id: &str) -> (u16, Value) {
        self.post(
            &format!("/api/job/{id}/retry"),
            Some(OPERATOR_KEY),
            json!({}),
        )
        .await
    }

    pub async fn cancel(&self, id: &str) -> (u16, Value) {
        self.post(
            &format!("/api/job/{id}/cancel"),
            Some(OPERATOR_KEY),
            json!({}),
        )
        .await
    }

    pub async fn retry_bulk(&self, body: Value) -> (u16, Value) {
        self.post("/api/jobs/retry", Some(OPERATOR_KEY), body).await
    }

    pub async fn scheduler_status(&self) -> Value {
        let (s, v) = self.get("/api/scheduler/status", None).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// `POST /api/scheduler/{restart|pause|resume}` as an operator.
    pub async fn scheduler(&self, action: &str) -> (u16, Value) {
        self.post(
            &format!("/api/scheduler/{action}"),
            Some(OPERATOR_KEY),
            json!({}),
        )
        .await
    }

    /// `GET /api/schedules`, without the server's own (`source: builtin`, the nightly
    /// backup), so a test sees the schedules it made.
    pub async fn schedules(&self) -> Value {
        let (s, mut v) = self.get("/api/schedules", Some(VIEWER_KEY)).await;
        assert_eq!(s, 200, "{v}");
        if let Some(list) = v["schedules"].as_array_mut() {
            list.retain(|s| s["source"] != "builtin");
            let n = list.len();
            v["count"] = n.into();
        }
        v
    }

    pub async fn create_schedule(&self, body: Value) -> (u16, Value) {
        self.post("/api/schedules", Some(OPERATOR_KEY), body).await
    }

    /// `POST /api/schedules/{name}/{run|pause|resume}`.
    pub async fn schedule(&self, name: &str, action: &str) -> (u16, Value) {
        self.post(
            &format!("/api/schedules/{name}/{action}"),
            Some(OPERATOR_KEY),
            json!({}),
        )
        .await
    }

    pub async fn delete_schedule(&self, name: &str) -> (u16, Value) {
        self.send(
            Method::DELETE,
            &format!("/api/schedules/{name}"),
            Some(OPERATOR_KEY),
            None,
        )
        .await
    }

    /// Poll a job until its status is `want` (generous: the machine is shared).
    pub async fn wait_status(&self, id: &str, want: &str) -> Value {
        let start = Instant::now();
        loop {
            let j = self.job_full(id).await;
            if j["status"] == want {
                return j;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "job {id} never became {want}: {j}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every job id of `kind` on the server at `base`, read page by page (admin key).
pub async fn all_job_ids(
    client: &reqwest::Client,
    base: &str,
    kind: &str,
) -> std::collections::HashSet<String> {
    let mut found = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/jobs?kind={kind}&limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let v: Value = client
            .get(url)
            .header("X-Dash-Key", super::ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for j in v["jobs"].as_array().unwrap() {
            found.insert(j["id"].as_str().unwrap().to_string());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return found,
        }
    }
}
