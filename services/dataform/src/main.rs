use std::sync::Arc;

use sigma_dataform::config::Config;
use sigma_dataform::{Invoker, app};
use sigma_shared::HttpError;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sigma_shared::telemetry::init();
    let config = Config::from_env()?;
    let events = sigma_shared::events::Events::from_env().await?;
    let invoker = Invoker::new(config).await?.with_events(events.clone());
    // Load (or compile) once before serving, so that a broken graph or project stops the
    // revision at start-up; a transient failure only delays loading to the first request.
    if let Err(error) = invoker.source.current().await {
        if !error.retryable() {
            return Err(error.into());
        }
        tracing::warn!("the graph could not be loaded yet: {error}");
    }
    let listener = sigma_shared::server::bind_from_env().await?;
    sigma_shared::server::serve(listener, app(Arc::new(invoker))).await?;
    events.flush().await;
    Ok(())
}
