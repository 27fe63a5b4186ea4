//! The launch environment of an entry, merged over the defaults and checked.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{RegistryError, invalid};
use crate::labels;
use crate::template::{Placeholder, Template};

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub temp_location: Option<Template>,
    pub staging_location: Option<Template>,
    pub service_account_email: Option<Template>,
    pub network: Option<Template>,
    pub subnetwork: Option<Template>,
    /// `true`: workers get private IPs only (`WORKER_IP_PRIVATE`).
    pub private_ips: Option<bool>,
    pub num_workers: Option<u32>,
    pub max_workers: Option<u32>,
    pub machine_type: Option<String>,
    pub launcher_machine_type: Option<String>,
    pub worker_region: Option<String>,
    pub worker_zone: Option<String>,
    pub disk_size_gb: Option<u32>,
    #[serde(default)]
    pub experiments: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, Template>,
    pub kms_key_name: Option<Template>,
}

impl Environment {
    /// This entry's environment over the defaults: scalar fields replace, labels merge key by
    /// key, experiments add up (a default experiment cannot be silently dropped).
    pub(super) fn over(self, defaults: &Environment) -> Environment {
        let d = defaults.clone();
        let mut experiments = d.experiments;
        for e in self.experiments {
            if !experiments.contains(&e) {
                experiments.push(e);
            }
        }
        let mut labels = d.labels;
        labels.extend(self.labels);
        Environment {
            temp_location: self.temp_location.or(d.temp_location),
            staging_location: self.staging_location.or(d.staging_location),
            service_account_email: self.service_account_email.or(d.service_account_email),
            network: self.network.or(d.network),
            subnetwork: self.subnetwork.or(d.subnetwork),
            private_ips: self.private_ips.or(d.private_ips),
            num_workers: self.num_workers.or(d.num_workers),
            max_workers: self.max_workers.or(d.max_workers),
            machine_type: self.machine_type.or(d.machine_type),
            launcher_machine_type: self.launcher_machine_type.or(d.launcher_machine_type),
            worker_region: self.worker_region.or(d.worker_region),
            worker_zone: self.worker_zone.or(d.worker_zone),
            disk_size_gb: self.disk_size_gb.or(d.disk_size_gb),
            experiments,
            labels,
            kms_key_name: self.kms_key_name.or(d.kms_key_name),
        }
    }

    pub(super) fn check(&self, at: &str) -> Result<(), RegistryError> {
        for (field, value) in [
            ("temp_location", &self.temp_location),
            ("staging_location", &self.staging_location),
        ] {
            if let Some(value) = value
                && !value.to_string().starts_with("gs://")
            {
                return Err(invalid(
                    format!("{at}.environment.{field}"),
                    "must be a gs:// URI",
                ));
            }
        }
        if let (Some(num), Some(max)) = (self.num_workers, self.max_workers)
            && num > max
        {
            return Err(invalid(
                format!("{at}.environment"),
                "num_workers is larger than max_workers",
            ));
        }
        for (field, value) in [
            ("num_workers", self.num_workers),
            ("max_workers", self.max_workers),
        ] {
            if value.is_some_and(|v| !(1..=1000).contains(&v)) {
                return Err(invalid(
                    format!("{at}.environment.{field}"),
                    "must be between 1 and 1000",
                ));
            }
        }
        if self.worker_region.is_some() && self.worker_zone.is_some() {
            return Err(invalid(
                format!("{at}.environment"),
                "worker_region and worker_zone are mutually exclusive",
            ));
        }
        if self.labels.len() > labels::MAX_LABELS {
            return Err(invalid(
                format!("{at}.environment.labels"),
                labels::LabelError::TooMany(self.labels.len()).to_string(),
            ));
        }
        for (key, value) in &self.labels {
            labels::check_key(key)
                .map_err(|e| invalid(format!("{at}.environment.labels.{key}"), e.to_string()))?;
            let label_safe = [
                Placeholder::Entity,
                Placeholder::FechaLote,
                Placeholder::Yyyymmdd,
                Placeholder::JobName,
                Placeholder::Project,
                Placeholder::Region,
            ];
            if let Some(p) = value.placeholders().find(|p| !label_safe.contains(p)) {
                return Err(invalid(
                    format!("{at}.environment.labels.{key}"),
                    format!("{p:?} cannot appear in a label value"),
                ));
            }
            let literal = value.expand(|_| String::new());
            labels::check_value(key, &literal)
                .map_err(|e| invalid(format!("{at}.environment.labels.{key}"), e.to_string()))?;
        }
        Ok(())
    }
}
