//! sigma-decrypt: reads its configuration, loads the keys, serves until SIGTERM.

use sigma_decrypt::app;
use sigma_decrypt::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sigma_shared::telemetry::init();
    let config = Config::from_env()?;
    let storage = sigma_shared::storage::client().await?;
    let events = sigma_shared::events::Events::from_env().await?;
    let router = app::build(config, storage, events.clone()).await?;
    let listener = sigma_shared::server::bind_from_env().await?;
    sigma_shared::server::serve(listener, router).await?;
    events.flush().await;
    Ok(())
}
