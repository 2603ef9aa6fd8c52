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
    crate::console::attach_file(
        &config.logs_dir(),
        config.log_max_bytes,
        crate::clock::Clock::system(),
    )
    .with_context(|| {
        format!(
            "while opening {}",
            config.logs_dir().join("echopilot.log").display()
        )
    })?;
    let result = serve_with(config);
    if let Err(e) = &result {
        // Also in `logs/echopilot.log`, where an operator looks after a failed start.
        tracing::error!(target: crate::console::FILE_ONLY, "{e:#}");
    }
    if let Some(file) = crate::console::file() {
        let _ = file.flush_blocking();
    }
    result
}

fn serve_with(config: Config) -> anyhow::Result<()> {
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
        state.keys.log_loaded();
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("while binding {bind}"))?;
        let addr = listener.local_addr()?;
        // Listening before the banner: a script may signal as soon as it sees it.
        let signalled = app::shutdown_signal();
        // Removed again when serving ends (the guard drops at the end of this block).
        let _recorded = crate::server_addr::record(&home, addr).with_context(|| {
            format!(
                "while writing {}",
                crate::server_addr::path(&home).display()
            )
        })?;
        // The banner, once: on stdout, so scripts (and our tests) can find a port chosen
        // by the OS; the same line goes to `logs/echopilot.log` only.
        let banner = format!(
            "echopilot {} listening on http://{addr} (home {})",
            build_info::VERSION_LINE,
            home.display()
        );
        println!("{banner}");
        tracing::info!(target: crate::console::FILE_ONLY, "{banner}");
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            let name = signalled.await;
            tracing::info!("{name} received: shutting down");
            signal.cancel();
        });
        app::serve(listener, state, shutdown).await
    })
}

/// Where the server running on `home` listens (`data/echopilot.addr`, counted only
/// while the home's lock is held). Every command that talks to a running server finds
/// it this way.
pub fn running_server(home: &std::path::Path) -> Option<std::net::SocketAddr> {
    crate::server_addr::running(home)
}

/// The key a command sends to the running server: `ECHOPILOT_KEY`, else `DASHBOARD_KEY`.
fn server_key() -> Option<String> {
    ["ECHOPILOT_KEY", "DASHBOARD_KEY"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .map(|k| k.trim().to_string())
        .find(|k| !k.is_empty())
}

/// Send `req` to the running server with the command's key ([`server_key`]): the
/// answer's JSON, or an error naming the URL, the status and the key the route needs.
pub(crate) async fn ask_server(
    req: reqwest::RequestBuilder,
    url: &str,
    needs: &str,
) -> anyhow::Result<serde_json::Value> {
    let req = match server_key() {
        Some(k) => req.header(crate::auth::KEY_HEADER, k),
        None => req,
    };
    let resp = req
        .send()
        .await
        .with_context(|| format!("the server holds the store, but {url} does not answer"))?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await?;
    if !status.is_success() {
        anyhow::bail!(
            "{url} answered {status}: {} (set ECHOPILOT_KEY or DASHBOARD_KEY to {needs} key)",
            v["error"]
        );
    }
    Ok(v)
}

/// The running server's base URL, or an error saying why there is none.
fn server_base(home: &std::path::Path) -> anyhow::Result<String> {
    match running_server(home) {
        Some(addr) => Ok(format!("http://{addr}")),
        None => anyhow::bail!(
            "a server holds the store under {} but has not recorded its address in {} \
             (still starting, or an older version): try again, or stop it",
            home.display(),
            crate::server_addr::path(home).display()
        ),
    }
}

/// `echopilot db check|stats`. While the server holds the store, ask it over HTTP
/// instead (found by [`running_server`]; stats need a viewer key in `ECHOPILOT_KEY` or
/// `DASHBOARD_KEY`).
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

/// The running server's base URL (from its home's address record) and the key to send
/// (`ECHOPILOT_KEY`, else `DASHBOARD_KEY`).
pub(crate) fn server(home: HomeArg) -> anyhow::Result<(String, Option<String>)> {
    Ok((server_base(&home_dir(&home))?, server_key()))
}

fn db_via_server(home: HomeArg, action: DbAction) -> anyhow::Result<()> {
    let base = server_base(&home_dir(&home))?;
    small_runtime()?.block_on(async move {
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
                    .with_context(|| {
                        format!("the server holds the store, but {url} does not answer")
                    })?
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
                let v = ask_server(client.get(&url), &url, "a viewer").await?;
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

/// A runtime for a command's few requests or store calls.
fn small_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")
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

/// `echopilot logs rotate`: move the logs into the archive and write a `logs.rotate`
/// audit event, as `POST /api/logs/rotate` does. While a server runs, that is what this
/// asks it to do (an admin key in `ECHOPILOT_KEY` or `DASHBOARD_KEY`), so the server's
/// writers and its audit chain stay in order; otherwise it opens the home itself.
pub fn logs(home: HomeArg, action: LogsAction) -> anyhow::Result<()> {
    match action {
        LogsAction::Rotate => {
            let dir = home_dir(&home);
            let archived = match Store::open(&dir) {
                Ok(store) => rotate_offline(&dir, store)?,
                Err(StoreError::AlreadyRunning { .. }) => rotate_via_server(&dir)?,
                Err(e) => return Err(e.into()),
            };
            for f in &archived {
                println!("rotated {f}");
            }
            println!("ok: {} files rotated", archived.len());
        }
        LogsAction::Prune => backup::prune_logs(&home)?,
    }
    Ok(())
}

fn rotate_offline(home: &std::path::Path, store: Store) -> anyhow::Result<Vec<String>> {
    let logs = home.join("logs");
    let clock = crate::clock::Clock::system();
    let now = clock.now();
    let audit_store = crate::store::sled_impl::audit::SledAudit::open(&store)?;
    let audit = crate::audit::Audit::open(std::sync::Arc::new(audit_store), &logs, clock)
        .context("while opening the audit trail")?;
    small_runtime()?.block_on(async move {
        let mut files = Vec::new();
        let rotated: std::io::Result<()> = async {
            files.extend(audit.rotate().await?);
            // No server holds these writers: moving the files is their rotation.
            for name in ["app.log", "stripe_webhooks.log"] {
                files.extend(crate::logfile::archive_file(
                    &logs.join(name),
                    &logs.join("archive"),
                    now,
                )?);
            }
            files.extend(crate::logfile::archive_reopened(&logs, now)?);
            Ok(())
        }
        .await;
        let shown: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(home).unwrap_or(p).display().to_string())
            .collect();
        let error = rotated.as_ref().err().map(|e| e.to_string());
        audit
            .record(crate::audit::NewEvent {
                actor_id: Some("cli".into()),
                action: "logs.rotate".into(),
                target: shown.join(","),
                ok: error.is_none(),
                status: if error.is_none() { 200 } else { 500 },
                error,
                ..Default::default()
            })
            .await
            .context("while writing the audit event")?;
        audit
            .flush()
            .await
            .context("while writing the audit file")?;
        rotated.context("while rotating the logs")?;
        Ok(shown)
    })
}

fn rotate_via_server(home: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let url = format!("{}/api/logs/rotate", server_base(home)?);
    small_runtime()?.block_on(async move {
        let v = ask_server(reqwest::Client::new().post(&url), &url, "an admin").await?;
        Ok(v["archived"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    })
}

/// `echopilot bench`: the job queue's figures (see `bench`).
pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    if args.seed_jobs.is_some() || args.seed_audit.is_some() {
        let home = args
            .home
            .context("--seed-jobs / --seed-audit need --home DIR (the home to build)")?;
        return runtime.block_on(crate::bench::seed::run(crate::bench::seed::SeedOptions {
            home,
            jobs: args.seed_jobs.unwrap_or(0),
            audit: args.seed_audit.unwrap_or(0),
        }));
    }
    runtime.block_on(crate::bench::run(crate::bench::BenchOptions {
        home: args.home,
        jobs: args.jobs,
        max_secs: args.max_secs,
        only: args.only,
        json: args.json,
    }))
}
