//! The pipeline registry, read by the CLI as sigma-dataflow reads it: which entity an upload
//! belongs to, and which uploads are an entity's between two batch dates.
//!
//! The registry names decrypted objects; an upload is that name plus `.encrypted`. Matching
//! is the service's own [`Registry::select`], so the CLI can never disagree with the service
//! about an entity.

use std::path::Path;

use anyhow::{Context, bail};
use sigma_dataflow::naming::{EntityName, FechaLote};
use sigma_dataflow::registry::Registry;
use sigma_shared::ObjectRef;

use crate::run::Upload;

/// What sigma-decrypt removes from an upload's name.
pub const ENCRYPTED_SUFFIX: &str = ".encrypted";

/// Reads a registry file (`--pipelines`); a `gs://` one must be copied first.
pub fn load(path: &Path) -> anyhow::Result<Registry> {
    let source = path.display().to_string();
    if source.starts_with("gs://") {
        bail!(
            "--pipelines must be a local file: the CLI reads it offline (copy it with `gcloud storage cp`)"
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {source}"))?;
    Registry::parse(&text).with_context(|| source)
}

/// The entity and batch date of an upload, as the service would select them.
pub fn select<'r>(
    registry: &'r Registry,
    upload: &ObjectRef,
) -> Option<(&'r EntityName, FechaLote)> {
    let decrypted = ObjectRef::new(
        upload.bucket.clone(),
        upload.name.strip_suffix(ENCRYPTED_SUFFIX)?,
    );
    registry
        .select(&decrypted)
        .ok()
        .map(|(pipeline, fecha_lote)| (&pipeline.entity, fecha_lote))
}

pub fn entity_of<'r>(registry: &'r Registry, upload: &Upload) -> Option<&'r EntityName> {
    select(registry, &upload.object).map(|(entity, _)| entity)
}

/// Where an entity's uploads are in the trigger bucket: the literal start of its pattern
/// (before the first placeholder or `*`), the narrowest prefix to list.
pub fn listing_prefix(registry: &Registry, entity: &EntityName) -> anyhow::Result<String> {
    let Some(pipeline) = registry.pipelines().iter().find(|p| p.entity == *entity) else {
        let known: Vec<&str> = registry
            .pipelines()
            .iter()
            .map(|p| p.entity.as_str())
            .collect();
        bail!(
            "no pipeline {entity} in the registry (it has {})",
            known.join(", ")
        );
    };
    let pattern = pipeline.pattern.as_str();
    let literal = pattern.find(['{', '*']).unwrap_or(pattern.len());
    Ok(pattern[..literal].to_owned())
}

/// The uploads among `listed` that are `entity`'s, with a batch date from `from` to `to`.
pub fn uploads_between(
    registry: &Registry,
    entity: &EntityName,
    from: FechaLote,
    to: FechaLote,
    listed: impl IntoIterator<Item = Upload>,
) -> Vec<Upload> {
    listed
        .into_iter()
        .filter(|upload| {
            select(registry, &upload.object).is_some_and(|(selected, fecha_lote)| {
                selected == entity && (from..=to).contains(&fecha_lote)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use sigma_shared::GsUri;

    use super::*;

    const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/pipelines.yaml");

    fn upload(name: &str) -> Upload {
        Upload {
            object: format!("gs://company_trigger_bucket/{name}")
                .parse::<GsUri>()
                .unwrap()
                .0,
            generation: "5".parse().unwrap(),
        }
    }

    fn day(s: &str) -> FechaLote {
        s.parse().unwrap()
    }

    #[test]
    fn an_upload_is_its_decrypted_name_with_the_registrys_entity() {
        let registry = load(Path::new(EXAMPLE)).unwrap();

        let entity = entity_of(&registry, &upload("data/20240115/lkp_fechas.gz.encrypted"));
        let decrypted = entity_of(&registry, &upload("data/20240115/lkp_fechas.gz"));
        let unknown = entity_of(&registry, &upload("data/20240115/nothing.gz.encrypted"));

        assert_eq!(entity.map(EntityName::as_str), Some("lkp_fechas"));
        assert_eq!(decrypted, None, "only .encrypted names are uploads");
        assert_eq!(unknown, None);
    }

    #[test]
    fn backfill_keeps_the_entitys_uploads_within_the_dates() {
        let registry = load(Path::new(EXAMPLE)).unwrap();
        let entity: EntityName = "lkp_fechas".parse().unwrap();
        let listed = [
            "data/20231231/lkp_fechas.gz.encrypted",
            "data/20240101/lkp_fechas.gz.encrypted",
            "data/20240115/lkp_fechas.gz.encrypted",
            "data/20240115/poliza_detalle.gz.encrypted",
            "data/20240115/lkp_fechas.gz",
            "data/20240131/lkp_fechas.gz.encrypted",
            "data/20240201/lkp_fechas.gz.encrypted",
        ]
        .map(upload);

        let chosen = uploads_between(
            &registry,
            &entity,
            day("2024-01-01"),
            day("2024-01-31"),
            listed,
        );

        let names: Vec<&str> = chosen.iter().map(|u| u.object.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "data/20240101/lkp_fechas.gz.encrypted",
                "data/20240115/lkp_fechas.gz.encrypted",
                "data/20240131/lkp_fechas.gz.encrypted"
            ]
        );
        assert_eq!(listing_prefix(&registry, &entity).unwrap(), "data/");
        assert!(listing_prefix(&registry, &"nada".parse().unwrap()).is_err());
    }

    #[test]
    fn a_registry_in_cloud_storage_must_be_copied_first() {
        let error = load(Path::new("gs://bucket/pipelines.yaml")).unwrap_err();

        assert!(error.to_string().contains("local file"), "{error}");
    }
}
