//! Audit throughput: durable `record` calls from concurrent tasks, and how many real
//! syncs they shared. Prints figures; not a test.
//!
//! `cargo run --release --example audit_bench -- [events] [tasks]`

use std::time::Instant;

use echopilot::app::AppState;
use echopilot::audit::NewEvent;
use echopilot::config::{Config, HomeArg, ServeArgs};

fn disk_probe(dir: &std::path::Path) -> f64 {
    use std::io::Write;
    let p = dir.join("probe.bin");
    let mut f = std::fs::File::create(&p).unwrap();
    let block = vec![7u8; 4096];
    let t = Instant::now();
    for _ in 0..1000 {
        f.write_all(&block).unwrap();
        f.sync_data().unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(p);
    1000.0 / secs
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let tasks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let tmp = tempfile::tempdir()?;
    println!(
        "disk probe: {:.0} write+fdatasync/s (1000 x 4 KiB)",
        disk_probe(tmp.path())
    );
    let args = ServeArgs {
        home: HomeArg {
            home: Some(tmp.path().to_path_buf()),
        },
        bind: None,
    };
    let config = Config::from_sources(&args, &Default::default())?;
    let state = AppState::open(config)?;
    let syncs_before = state.store.syncs();
    let t = Instant::now();
    let mut handles = Vec::new();
    for w in 0..tasks {
        let audit = state.audit.clone();
        let n = events / tasks + usize::from(w < events % tasks);
        handles.push(tokio::spawn(async move {
            for i in 0..n {
                audit
                    .record(NewEvent {
                        action: "bench.write".into(),
                        target: format!("{w}/{i}"),
                        ok: true,
                        status: 200,
                        ..Default::default()
                    })
                    .await
                    .expect("record");
            }
        }));
    }
    for h in handles {
        h.await?;
    }
    let recorded = t.elapsed();
    state.audit.flush().await?;
    let flushed = t.elapsed();
    let syncs = state.store.syncs() - syncs_before;
    println!(
        "{events} durable audit events from {tasks} tasks: {:.0} events/s ({:.2} ms per event per task), {syncs} store syncs ({:.1} events per sync); NDJSON written {:.0} ms after the last ack",
        events as f64 / recorded.as_secs_f64(),
        recorded.as_secs_f64() * 1000.0 * tasks as f64 / events as f64,
        events as f64 / syncs.max(1) as f64,
        (flushed - recorded).as_secs_f64() * 1000.0
    );
    let t = Instant::now();
    let report = echopilot::audit::verify(&tmp.path().join("logs"), Some(&state.audit))
        .map_err(|b| anyhow::anyhow!("{b}"))?;
    println!(
        "verify: {} file events + store in {:.0} ms",
        report.file_events,
        t.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
