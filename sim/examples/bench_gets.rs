//! Benchmark: simple ARM GETs per second against azure-sim on loopback, throttling off.
//! Run with `make bench-sim` (release build). Prints a Markdown table; not a test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TENANT: &str = "72f988bf-0000-4000-8000-000000000001";
const SUB: &str = "00000000-0000-4000-8000-0000000000aa";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/worlds/demo.yaml"))?;
    let mut world = azure_sim::world::World::from_yaml(&text).map_err(anyhow::Error::msg)?;
    world.settings.throttling = false;
    let tls = azure_sim::server::Tls::generate()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}", listener.local_addr()?);
    let sim = Arc::new(azure_sim::Sim::new(world, url.clone(), None));
    let ca = tls.ca_pem.clone();
    tokio::spawn(async move { azure_sim::server::serve(listener, &tls, sim).await });

    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes())?)
        .http1_only()
        .build()?;
    let token: serde_json::Value = http
        .post(format!("{url}/{TENANT}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "11111111-0000-4000-8000-000000000001"),
            ("client_secret", "demo-operator-secret"),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let target = format!(
        "{url}/subscriptions/{SUB}/resourceGroups/rg-prod/providers/Microsoft.Sql/servers/sql-prod-01?api-version=2021-11-01"
    );

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let start = Instant::now();
    for _ in 0..concurrency {
        let (http, target, token, ok, failed, stop) = (
            http.clone(),
            target.clone(),
            token.clone(),
            ok.clone(),
            failed.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match http.get(&target).bearer_auth(&token).send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                        lat.push(t.elapsed());
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    let rate = ok.load(Ordering::Relaxed) as f64 / elapsed;
    println!("| metric | value |\n|---|---|");
    println!(
        "| ARM GETs per second (throttling off, {concurrency} connections, {secs}s, client in the same process) | {rate:.0} |"
    );
    println!(
        "| latency p50 / p99 | {:.2} ms / {:.2} ms |",
        pct(0.50),
        pct(0.99)
    );
    println!("| failed requests | {} |", failed.load(Ordering::Relaxed));
    println!(
        "| target ≥ 5,000/s | {} |",
        if rate >= 5000.0 { "met" } else { "NOT met" }
    );
    Ok(())
}
