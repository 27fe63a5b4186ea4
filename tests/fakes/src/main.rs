//! `sigma-fakes`: every fake Google API in one process, for the local stack and `make demo`.
//!
//! The services under test are separate processes, so the fakes must be reachable over the
//! network and programmable from outside: each one serves its `/_fake/...` control routes next
//! to Google's. Every address is configurable (port 0 picks a free one); once all are
//! listening, the endpoints are written as one JSON object to `--ready-file` (and stdout), so
//! a harness knows both that they are up and where.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use sigma_fakes::{dataflow, dataform, metadata, pubsub};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

#[derive(Parser)]
#[command(about = "Fakes of Dataflow, Dataform, Pub/Sub and the metadata server, in one process")]
struct Args {
    /// Fake Dataflow v1b3 (the value for DATAFLOW_ENDPOINT).
    #[arg(long, default_value = "127.0.0.1:0")]
    dataflow: SocketAddr,
    /// Fake Dataform v1 (the value for DATAFORM_ENDPOINT).
    #[arg(long, default_value = "127.0.0.1:0")]
    dataform: SocketAddr,
    /// The `dataform compile --json` output the fake Dataform compiles to.
    #[arg(long)]
    dataform_graph: PathBuf,
    /// Dataform invocations succeed once read this many times (0: only when told to).
    #[arg(long, default_value_t = 1)]
    dataform_complete_after_gets: u32,
    /// Fake metadata server (the value for GCE_METADATA_HOST).
    #[arg(long, default_value = "127.0.0.1:0")]
    metadata: SocketAddr,
    /// Fake Pub/Sub: gRPC Publisher (PUBSUB_EMULATOR_HOST) and REST publish (Workflows connector).
    #[arg(long, default_value = "127.0.0.1:0")]
    pubsub: SocketAddr,
    /// Topics Pub/Sub knows (`projects/P/topics/T`); publishing elsewhere is NOT_FOUND.
    #[arg(long = "topic", required = true)]
    topics: Vec<String>,
    /// Project the metadata server reports.
    #[arg(long, default_value = "sigma-local")]
    project: String,
    /// Where to write the endpoints once everything listens.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut endpoints = BTreeMap::new();
    let mut servers = JoinSet::new();

    let listener = bind(args.dataflow, "dataflow").await?;
    endpoints.insert("dataflow", format!("http://{}", listener.local_addr()?));
    servers.spawn(async move {
        dataflow::serve(listener, dataflow::Handle::default())
            .await
            .context("dataflow")
    });

    // Serves until dropped, at the end of main.
    let dataform = dataform::serve(args.dataform, &args.dataform_graph).await?;
    dataform
        .handle
        .set_auto_complete_after(Some(args.dataform_complete_after_gets).filter(|gets| *gets > 0));
    endpoints.insert("dataform", dataform.endpoint.clone());

    let listener = bind(args.metadata, "metadata").await?;
    endpoints.insert("metadata", listener.local_addr()?.to_string());
    let tokens = metadata::Handle::new("sigma-fakes-token", &args.project);
    servers.spawn(async move { metadata::serve(listener, tokens).await.context("metadata") });

    let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    let pubsub = pubsub::FakePubsub::serve(bind(args.pubsub, "pubsub").await?, &topics).await?;
    endpoints.insert("pubsub_grpc", pubsub.emulator_host());
    endpoints.insert("pubsub_rest", pubsub.endpoint.clone());
    servers.spawn(async move { pubsub.wait().await.context("pubsub") });

    announce(&endpoints, args.ready_file.as_ref())?;

    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate.recv() => Ok(()),
        Some(ended) = servers.join_next() => ended?.and(Err(anyhow::anyhow!("a fake stopped serving"))),
    }
}

async fn bind(addr: SocketAddr, fake: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{fake}: cannot listen on {addr}"))
}

/// Written to a temporary name and renamed, so a reader never sees half of it.
fn announce(
    endpoints: &BTreeMap<&str, String>,
    ready_file: Option<&PathBuf>,
) -> anyhow::Result<()> {
    let json = serde_json::to_string(endpoints)?;
    println!("{json}");
    if let Some(path) = ready_file {
        let partial = path.with_extension("partial");
        std::fs::write(&partial, &json)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
