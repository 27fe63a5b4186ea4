//! Benchmark (not a test): a generated 100,000-action project.
//!
//! `cargo run --release -p sigma-dataform --example closure_bench [ACTIONS] [SECONDS]`
//!
//! Reports graph load time (read + parse + build), the time of the largest closure, peak
//! memory (VmHWM), and `/closure` requests per second under concurrent load, with client and
//! server in this one process on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sigma_dataform::closure::closure;
use sigma_dataform::config::{Config, GraphOrigin};
use sigma_dataform::name::{Resolution, TableName};
use sigma_dataform::{Invoker, app};

const DOMAINS: usize = 100;
const DECLARATIONS_PER_DOMAIN: usize = 10;
const CONCURRENCY: usize = 32;

/// A tiny deterministic generator, so every run benchmarks the same graph.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

fn target(schema: &str, name: &str) -> Value {
    json!({"database": "bench-project", "schema": schema, "name": name})
}

/// `actions` actions in 100 domains; inside a domain each action depends on 1-3 earlier
/// ones (mostly recent), and every hundredth action also reads `raw.hub`, whose closure is
/// therefore most of the project. Other declarations have much smaller closures.
fn generate(actions: usize) -> Value {
    let mut rng = Lcg(42);
    let per_domain = actions / DOMAINS;
    let mut tables = Vec::new();
    let mut operations = Vec::new();
    let mut assertions = Vec::new();
    let mut declarations =
        vec![json!({"target": target("raw", "hub"), "canonicalTarget": target("raw", "hub")})];
    for domain in 0..DOMAINS {
        let mut names: Vec<Value> = Vec::new();
        for d in 0..DECLARATIONS_PER_DOMAIN {
            let t = target("raw", &format!("src_{domain}_{d}"));
            declarations.push(json!({"target": t, "canonicalTarget": t}));
            names.push(t);
        }
        for i in 0..per_domain.saturating_sub(DECLARATIONS_PER_DOMAIN) {
            let name = format!("d{domain}_a{i}");
            let schema = format!("domain_{domain}");
            let mut deps = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let window = names.len().min(50);
                let pick = if rng.below(4) == 0 {
                    rng.below(names.len())
                } else {
                    names.len() - 1 - rng.below(window)
                };
                deps.push(names[pick].clone());
            }
            if i % 100 == 0 {
                deps.push(target("raw", "hub"));
            }
            let t = target(&schema, &name);
            let common = json!({
                "target": t, "canonicalTarget": t, "dependencyTargets": deps,
                "fileName": format!("definitions/{schema}/{name}.sqlx"), "tags": ["bench", schema],
                "query": format!("SELECT * FROM `bench-project.{schema}.{name}_input` WHERE x > {i}"),
            });
            let mut action = common;
            match i % 10 {
                0..=5 => {
                    action["type"] = json!(["table", "view", "incremental"][i % 3]);
                    action["disabled"] = json!(i % 97 == 0);
                    tables.push(action);
                }
                6..=8 => assertions.push(action),
                _ => operations.push(action),
            }
            names.push(t);
        }
    }
    json!({
        "tables": tables, "operations": operations, "assertions": assertions, "declarations": declarations,
        "projectConfig": {"warehouse": "bigquery", "defaultDatabase": "bench-project"},
        "dataformCoreVersion": "3.0.0",
    })
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn load(base: &str, table: &str, seconds: u64) -> (f64, u64) {
    let client = reqwest::Client::new();
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, done, failed) = (client.clone(), done.clone(), failed.clone());
            let url = format!("{base}/closure");
            let body = json!({ "table": table });
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let ok = match client.post(&url).json(&body).send().await {
                        Ok(response) if response.status().is_success() => {
                            response.bytes().await.is_ok()
                        }
                        _ => false,
                    };
                    if ok { &done } else { &failed }.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    (
        done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        failed.load(Ordering::Relaxed),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The generator runs as a child process so that its memory does not count in the peak
    // RSS measured here.
    if let [mode, path, actions] = args.as_slice()
        && mode == "generate"
    {
        std::fs::write(path, serde_json::to_vec(&generate(actions.parse()?))?)?;
        return Ok(());
    }
    let actions: usize = args
        .first()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let seconds: u64 = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(5);

    let dir = std::env::temp_dir().join(format!("closure_bench_{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("graph.json");
    let generated = std::process::Command::new(std::env::current_exe()?)
        .args([
            "generate",
            path.to_str().expect("temp paths are UTF-8"),
            &actions.to_string(),
        ])
        .status()?;
    anyhow::ensure!(generated.success(), "generating the graph failed");
    let file_mib = std::fs::metadata(&path)?.len() as f64 / (1 << 20) as f64;
    let rss_before = peak_rss_mib();

    let loads: Vec<Duration> = (0..3)
        .map(|_| {
            let started = Instant::now();
            sigma_dataform::source::load_file(&path).expect("the generated graph loads");
            started.elapsed()
        })
        .collect();
    let graph = sigma_dataform::source::load_file(&path)?;
    let rss_loaded = peak_rss_mib();

    let mut sources: Vec<(usize, String)> = (0..graph.len() as u32)
        .filter(|&node| graph.action(node).target.schema == "raw")
        .map(|node| {
            (
                closure(&graph, node).len(),
                graph.action(node).target.to_string(),
            )
        })
        .collect();
    sources.sort();
    let typical = sources[sources.len() / 2].clone();
    let largest = sources.last().cloned().expect("the graph has declarations");
    let Resolution::Found(hub) = largest.1.parse::<TableName>()?.resolve(&graph) else {
        anyhow::bail!("largest source not found")
    };
    let closure_times: Vec<Duration> = (0..20)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(closure(&graph, hub));
            started.elapsed()
        })
        .collect();

    let config = Config {
        ttl: Duration::from_secs(3600),
        ..Config::new(GraphOrigin::File(path.clone()))
    };
    let invoker = Invoker::new(config).await?;
    invoker.source.current().await?;
    let base = format!(
        "http://{}",
        sigma_shared::server::spawn(app(Arc::new(invoker))).await?
    );
    let (small_rps, small_failed) = load(&base, &typical.1, seconds).await;
    let (large_rps, large_failed) = load(&base, &largest.1, seconds).await;

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| actions (+ declarations) | {} ({} edges) |",
        graph.len(),
        graph.edges()
    );
    println!("| graph file | {file_mib:.1} MiB |");
    println!(
        "| load (read + parse + build), median of 3 | {:.0} ms |",
        median(loads).as_secs_f64() * 1e3
    );
    println!(
        "| largest closure ({}: {} actions), median of 20 | {:.2} ms |",
        largest.1,
        largest.0,
        median(closure_times).as_secs_f64() * 1e3
    );
    println!(
        "| peak RSS before load / after load / after HTTP load | {rss_before:.0} / {rss_loaded:.0} / {:.0} MiB |",
        peak_rss_mib()
    );
    println!(
        "| `/closure` req/s, {CONCURRENCY} concurrent, median declaration {} ({} actions) | {small_rps:.0} ({small_failed} failed) |",
        typical.1, typical.0
    );
    println!(
        "| `/closure` req/s, {CONCURRENCY} concurrent, {} ({} actions) | {large_rps:.1} ({large_failed} failed) |",
        largest.1, largest.0
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
