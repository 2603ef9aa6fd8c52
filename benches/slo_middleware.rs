//! What the SLO measuring middleware adds per request. Not a test: prints figures.
//!
//! `cargo bench --bench slo_middleware`
//!
//! 1. `Slo::record_request` alone (the counting: route slot lookup + atomics), one thread
//!    and two threads on the same route (cache-line contention).
//! 2. A minimal router called with `oneshot`, with and without the middleware; the
//!    difference is the middleware's whole cost (timing, `MatchedPath`, counting, the
//!    `from_fn` boxing).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use echopilot::app::AppState;
use echopilot::config::{Config, HomeArg, ServeArgs};
use tower::ServiceExt;

fn state(home: &std::path::Path) -> AppState {
    let args = ServeArgs {
        home: HomeArg {
            home: Some(home.to_path_buf()),
        },
        bind: Some("127.0.0.1:0".into()),
    };
    let config = Config::from_sources(&args, &HashMap::new()).expect("config");
    AppState::open(config).expect("state")
}

fn per_op(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n as f64
}

fn best_of<F: FnMut() -> f64>(runs: usize, mut f: F) -> f64 {
    (0..runs).map(|_| f()).fold(f64::MAX, f64::min)
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let st = state(tmp.path());
    let slo = st.slo.clone();
    let routes = [
        "/api/status/summary",
        "/api/slo/status",
        "/api/job/{id}",
        "/api/jobs",
        "/metrics",
        "unmatched",
    ];

    const N: u64 = 2_000_000;
    let record = best_of(5, || {
        let start = Instant::now();
        for i in 0..N {
            let r = routes[(i % routes.len() as u64) as usize];
            slo.record_request(black_box(r), 200, Duration::from_micros(i % 3000));
        }
        per_op(start.elapsed(), N)
    });
    println!("record_request, 1 thread:              {record:8.1} ns/request");

    let two = best_of(3, || {
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..2 {
                let slo = slo.clone();
                s.spawn(move || {
                    for i in 0..N / 2 {
                        slo.record_request(
                            black_box("/api/status/summary"),
                            200,
                            Duration::from_micros(i % 3000),
                        );
                    }
                });
            }
        });
        per_op(start.elapsed(), N)
    });
    println!("record_request, 2 threads, same route: {two:8.1} ns/request (wall / total)");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let plain: Router = Router::new().route("/api/job/{id}", get(|| async { "ok" }));
    let measured = echopilot::web::measure::layer(plain.clone(), &slo);
    const M: u64 = 300_000;
    let run = |router: &Router| {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..M {
                let resp = router
                    .clone()
                    .oneshot(
                        Request::get("/api/job/42")
                            .body(Body::empty())
                            .expect("request"),
                    )
                    .await
                    .expect("response");
                black_box(resp);
            }
            per_op(start.elapsed(), M)
        })
    };
    // Interleave the two so machine noise hits both alike.
    let mut without = f64::MAX;
    let mut with = f64::MAX;
    for _ in 0..5 {
        without = without.min(run(&plain));
        with = with.min(run(&measured));
    }
    println!("router oneshot without middleware:     {without:8.1} ns/request");
    println!("router oneshot with middleware:        {with:8.1} ns/request");
    println!(
        "middleware adds:                       {:8.1} ns/request (goal < 2000)",
        with - without
    );
}
