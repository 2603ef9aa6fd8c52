//! Subcommands: `serve` and the operator's tools (`db check`, `db stats`, `bench`).

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::app::{self, AppState};
use crate::build_info;
use crate::config::{BenchArgs, Config, DbAction, HomeArg, ServeArgs};
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

fn open_store(home: &HomeArg) -> anyhow::Result<Store> {
    let home = home.home.clone().unwrap_or_else(|| ".".into());
    match Store::open(&home) {
        Ok(s) => Ok(s),
        Err(e @ StoreError::AlreadyRunning { .. }) => Err(anyhow::Error::new(e).context(
            "the server holds the store: ask it instead with `curl http://127.0.0.1:8080/api/status/summary` \
             (its `store` component runs the same probe)",
        )),
        Err(e) => Err(e.into()),
    }
}

/// `echopilot db check|stats`.
pub fn db(home: HomeArg, action: DbAction) -> anyhow::Result<()> {
    let store = open_store(&home)?;
    match action {
        DbAction::Check => {
            store.probe()?;
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
        }
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
