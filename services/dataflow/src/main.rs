use std::sync::Arc;

use sigma_dataflow::config::Config;
use sigma_dataflow::dataflow::{self, Dataflow};
use sigma_dataflow::live_registry::{LiveRegistry, Watched};
use sigma_dataflow::{Launcher, app};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sigma_shared::telemetry::init();
    let storage = sigma_shared::storage::client().await?;
    let config = Config::from_env(&storage).await?;
    let credentials = google_cloud_auth::credentials::Builder::default()
        .with_scopes([dataflow::SCOPE])
        .build_access_token_credentials()?;
    let events = sigma_shared::events::Events::from_env().await?;
    let registry = Arc::new(match config.registry_version {
        Some((object, generation)) => LiveRegistry::watching(
            config.registry,
            Watched::new(
                object,
                generation,
                storage.clone(),
                config.overrides,
                config.site.clone(),
                events.clone(),
            ),
        ),
        None => LiveRegistry::fixed(config.registry),
    });
    registry.clone().refresh_every(config.registry_refresh);
    let launcher = Launcher {
        registry,
        site: config.site,
        storage,
        dataflow: Dataflow::new(
            &config.dataflow_endpoint,
            credentials,
            config.dataflow_timeout,
        ),
        events: events.clone(),
    };
    let listener = sigma_shared::server::bind_from_env().await?;
    sigma_shared::server::serve(listener, app(launcher)).await?;
    events.flush().await;
    Ok(())
}
