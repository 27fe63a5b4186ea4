//! Which entry an uploaded object selects, and why it may select none.

use sigma_shared::ObjectRef;

use super::{Pipeline, Registry};
use crate::naming::{EntityName, FechaLote};

/// Why an object selects no pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    #[error("{0} matches no pipeline in the registry")]
    UnknownEntity(ObjectRef),
    #[error("{object} matches more than one pipeline: {}", entities.join(", "))]
    Ambiguous {
        object: ObjectRef,
        entities: Vec<String>,
    },
    #[error("{object} matches pipeline {entity} but {date:?} is not a valid date")]
    InvalidDate {
        object: ObjectRef,
        entity: EntityName,
        date: String,
    },
}

impl Registry {
    /// The one pipeline `object` selects, with its batch date.
    pub fn select(&self, object: &ObjectRef) -> Result<(&Pipeline, FechaLote), MatchError> {
        let mut matches = self.pipelines.iter().filter_map(|p| {
            p.pattern
                .date_in(object.name.as_str())
                .map(|date| (p, date))
        });
        let (pipeline, date) = matches
            .next()
            .ok_or_else(|| MatchError::UnknownEntity(object.clone()))?;
        let others: Vec<String> = matches.map(|(p, _)| p.entity.to_string()).collect();
        if !others.is_empty() {
            return Err(MatchError::Ambiguous {
                object: object.clone(),
                entities: std::iter::once(pipeline.entity.to_string())
                    .chain(others)
                    .collect(),
            });
        }
        let fecha_lote = date.parse().map_err(|_| MatchError::InvalidDate {
            object: object.clone(),
            entity: pipeline.entity.clone(),
            date: date.to_owned(),
        })?;
        Ok((pipeline, fecha_lote))
    }
}
