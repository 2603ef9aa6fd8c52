//! Subcommands: `serve` and the operator's tools (`db check`, `db stats`, `keygen`,
//! `audit verify`, `logs rotate`, `bench`).

pub mod backup;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::app::{self, AppState};
use crate::build_info;
use crate::config::{AuditAction, BenchArgs, Config, DbAction, HomeArg, LogsAction, ServeArgs};
use crate::store::{Store, StoreError, meta};

/// `echopilot serve`: check the build and the configuration, open the store, serve
/// until SIGINT or SIGTERM.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    build_info::check_dirty(build_info::DIRTY, config.allow_dirty).map_err(anyhow::Error::msg)?;
    if std::env::var_os("DATABASE_URL").is_some() {
        tracing::warn!("DATABASE_URL is set but ignored: this build stores everything in sled");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    runtime.block_on(async move {
        let bind = config.bind;
        let home = config.home.clone();
        let state = AppState::open(config)?;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("while binding {bind}"))?;
        let addr = listener.local_addr()?;
        // Printed on stdout so scripts (and our tests) can find a port chosen by the OS.
        println!(
            "echopilot {} listening on http://{addr} (home {})",
            build_info::VERSION_LINE,
            home.display()
        );
        tracing::info!(%addr, home = %home.display(), commit = %build_info::commit_label(), "serving");
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            app::shutdown_signal().await;
            tracing::info!("signal received");
            signal.cancel();
        });
        app::serve(listener, state, shutdown).await
    })
}

/// `echopilot db check|stats`. While the server holds the store, ask it over HTTP
/// instead (the address from `PORT` / `echopilot.toml`; stats need a viewer key in
/// `DASHBOARD_KEY` or `ECHOPILOT_KEY`).
pub fn db(home: HomeArg, action: DbAction) -> anyhow::Result<()> {
    let store = match Store::open(&home_dir(&home)) {
        Ok(s) => s,
        Err(StoreError::AlreadyRunning { .. }) => return db_via_server(home, action),
        Err(e) => return Err(e.into()),
    };
    match action {
        DbAction::Check { deep } => {
            store.probe()?;
            if deep {
                return backup::deep_check(&store);
            }
            println!(
                "ok: store {} answers (schema version {})",
                store.path().display(),
                meta::schema_version(&store)?
            );
        }
        DbAction::Stats => {
            println!("store: {}", store.path().display());
            println!("size_on_disk_bytes: {}", store.size_on_disk());
            println!("schema_version: {}", meta::schema_version(&store)?);
            for (tree, count) in store.tree_counts() {
                println!("tree {tree}: {count} records");
            }
            backup::print_stats_extra(&store, &home_dir(&home))?;
        }
        DbAction::Compact => {
            drop(store);
            return backup::compact(&home_dir(&home));
        }
    }
    Ok(())
}

/// The running server's base URL (from `PORT` / `echopilot.toml`) and the key to send
/// (`ECHOPILOT_KEY`, else `DASHBOARD_KEY`).
pub(crate) fn server(home: HomeArg) -> anyhow::Result<(String, Option<String>)> {
    let config = Config::load(&ServeArgs { home, bind: None })?;
    let base = format!("http://{}", config.bind);
    let key = std::env::var("ECHOPILOT_KEY").ok().or_else(|| {
        config
            .dashboard_key
            .as_ref()
            .map(|k| k.expose().to_string())
    });
    Ok((base, key))
}

fn db_via_server(home: HomeArg, action: DbAction) -> anyhow::Result<()> {
    let (base, key) = server(home)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        match action {
            DbAction::Check { deep: true } | DbAction::Compact => {
                anyhow::bail!(
                    "a server holds the store on this home: stop it first (db check --deep and \
                     db compact read or rewrite the whole store)"
                );
            }
            DbAction::Check { deep: false } => {
                let url = format!("{base}/api/status/summary");
                let v: serde_json::Value = client
                    .get(&url)
                    .send()
                    .await
                    .with_context(|| format!("the server holds the store, but {url} does not answer"))?
                    .json()
                    .await?;
                let store = &v["components"]["store"];
                if store["status"] != "healthy" {
                    anyhow::bail!("the server's store probe failed: {store}");
                }
                println!(
                    "ok: the running server's store answers (schema version {}; via {url})",
                    store["schema_version"]
                );
            }
            DbAction::Stats => {
                let url = format!("{base}/api/db/stats");
                let mut req = client.get(&url);
                if let Some(k) = &key {
                    req = req.header(crate::auth::KEY_HEADER, k);
                }
                let resp = req
                    .send()
                    .await
                    .with_context(|| format!("the server holds the store, but {url} does not answer"))?;
                let status = resp.status();
                let v: serde_json::Value = resp.json().await?;
                if !status.is_success() {
                    anyhow::bail!(
                        "{url} answered {status}: {} (set DASHBOARD_KEY or ECHOPILOT_KEY to a viewer key)",
                        v["error"]
                    );
                }
                println!("store: {}", v["path"].as_str().unwrap_or_default());
                println!("size_on_disk_bytes: {}", v["size_on_disk_bytes"]);
                println!("schema_version: {}", v["schema_version"]);
                if let Some(trees) = v["trees"].as_object() {
                    for (tree, count) in trees {
                        println!("tree {tree}: {count} records");
                    }
                }
                backup::print_remote_stats_extra(&v);
            }
        }
        Ok(())
    })
}

/// `echopilot keygen`: a fresh key for `DASHBOARD_KEY` or `ROLES_JSON`.
pub fn keygen() -> anyhow::Result<()> {
    println!("{}", crate::auth::generate_key());
    Ok(())
}

pub(crate) fn home_dir(home: &HomeArg) -> std::path::PathBuf {
    home.home.clone().unwrap_or_else(|| ".".into())
}

/// `echopilot audit verify`: the chain over the files, and over the store when this
/// process can open it (not while the server holds it).
pub fn audit(home: HomeArg, action: AuditAction) -> anyhow::Result<()> {
    match action {
        AuditAction::Verify => {
            let dir = home_dir(&home);
            let logs = dir.join("logs");
            let audit = match Store::open(&dir) {
                Ok(store) => Some(
                    crate::audit::Audit::open_for_verify(
                        std::sync::Arc::new(crate::store::sled_impl::audit::SledAudit::open(
                            &store,
                        )?),
                        &logs,
                    )
                    .context("while opening the audit trail")?,
                ),
                Err(StoreError::AlreadyRunning { .. }) => {
                    println!(
                        "note: the server holds the store; verifying the files only \
                         (stop it to compare them with the store too)"
                    );
                    None
                }
                Err(e) => return Err(e.into()),
            };
            let report =
                crate::audit::verify(&logs, audit.as_ref()).map_err(|b| anyhow::anyhow!("{b}"))?;
            println!(
                "ok: audit chain intact: {} events in {} files (seq {}..{})",
                report.file_events,
                report.files.len(),
                report.first_seq.unwrap_or(0),
                report.last_seq.unwrap_or(0)
            );
            if let Some(n) = report.store_events {
                println!("ok: store chain intact: {n} events; every file line matches the store");
            }
            if report.pruned_through > 0 {
                println!(
                    "note: seq 1..{} were pruned by log retention",
                    report.pruned_through
                );
            }
        }
    }
    Ok(())
}

/// `echopilot logs rotate`: rename the files into the archive. Safe beside a running
/// server: it sees the path name another file and opens a fresh one.
pub fn logs(home: HomeArg, action: LogsAction) -> anyhow::Result<()> {
    match action {
        LogsAction::Rotate => {
            let logs = home_dir(&home).join("logs");
            let archive = logs.join("archive");
            let now = chrono::Utc::now();
            let mut n = 0;
            for f in [
                logs.join("ndjson").join("audit.ndjson"),
                logs.join("app.log"),
            ] {
                match crate::logfile::archive_file(&f, &archive, now)
                    .with_context(|| format!("while rotating {}", f.display()))?
                {
                    Some(to) => {
                        println!("rotated {} -> {}", f.display(), to.display());
                        n += 1;
                    }
                    None => println!("skipped {} (empty or absent)", f.display()),
                }
            }
            println!("ok: {n} files rotated");
        }
        LogsAction::Prune => backup::prune_logs(&home)?,
    }
    Ok(())
}

/// `echopilot bench`: the job queue's figures (see `bench`).
pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    runtime.block_on(crate::bench::run(crate::bench::BenchOptions {
        home: args.home,
        jobs: args.jobs,
        max_secs: args.max_secs,
        only: args.only,
    }))
}
