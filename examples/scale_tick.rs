//! The scheduler tick on a big home (built by `echopilot bench --seed-jobs N
//! --seed-audit N --home DIR`): how long opening the state takes, then the first tick
//! (it may recover stuck jobs) and steady ticks. Prints figures; not a test.
//!
//! `cargo run --release --example scale_tick -- HOME [ticks]`

use std::time::Instant;

use echopilot::app::AppState;
use echopilot::config::{Config, HomeArg, ServeArgs};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let home = args.next().expect("usage: scale_tick HOME [ticks]");
    let ticks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let env = [("STORE_MIN_FREE_BYTES", "0")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sargs = ServeArgs {
        home: HomeArg {
            home: Some(home.into()),
        },
        bind: Some("127.0.0.1:0".into()),
    };
    let t = Instant::now();
    let state = AppState::open(Config::from_sources(&sargs, &env)?)?;
    println!("open: {:.0} ms", t.elapsed().as_secs_f64() * 1000.0);
    for i in 0..ticks {
        let t = Instant::now();
        let r = echopilot::scheduler::tick(&state.scheduler).await;
        println!(
            "tick {}: {:.1} ms (promoted {}, stuck {}, requeued {}, pruned {}, errors {:?})",
            i + 1,
            t.elapsed().as_secs_f64() * 1000.0,
            r.promoted,
            r.stuck,
            r.requeued,
            r.pruned,
            r.errors
        );
    }
    Ok(())
}
