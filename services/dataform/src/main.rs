use std::sync::Arc;

use sigma_dataform::config::Config;
use sigma_dataform::{AppState, app};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sigma_shared::telemetry::init();
    let config = Config::from_env()?;
    let state = AppState::new(config).await?;
    // Load (or compile) once before serving, so a broken graph stops the revision at start-up.
    state.source.current().await?;
    let listener = sigma_shared::server::bind_from_env().await?;
    sigma_shared::server::serve(listener, app(Arc::new(state))).await?;
    Ok(())
}
