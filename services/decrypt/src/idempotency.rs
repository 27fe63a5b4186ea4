//! Deciding, from the output object alone, whether a request has been served before.
//!
//! Eventarc delivers at least once and people re-run curl, so every output object records
//! the exact upload it was decrypted from in its custom metadata. A request for the same
//! upload writes nothing; a newer upload replaces the output; an older one must not
//! overwrite newer data. The write itself is conditional on the generation seen here, so
//! two requests racing past this check cannot both commit. Within one instance, requests
//! for the same output also wait for each other, so a duplicate finds the first one's
//! result instead of decrypting the same file again only to lose the race at commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use google_cloud_storage::model_ext::ObjectHighlights;
use sigma_shared::storage::Precondition;
use sigma_shared::{Generation, ObjectRef};

pub const SOURCE_BUCKET: &str = "sigma-source-bucket";
pub const SOURCE_NAME: &str = "sigma-source-name";
pub const SOURCE_GENERATION: &str = "sigma-source-generation";

/// The custom metadata that ties an output object to its source upload.
pub fn source_metadata(source: &ObjectRef, generation: Generation) -> HashMap<String, String> {
    HashMap::from([
        (SOURCE_BUCKET.to_owned(), source.bucket.to_string()),
        (SOURCE_NAME.to_owned(), source.name.to_string()),
        (SOURCE_GENERATION.to_owned(), generation.to_string()),
    ])
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// This upload was decrypted already; here is the result.
    Done(Box<ObjectHighlights>),
    /// A newer upload of the same source was decrypted already.
    Superseded(Generation),
    /// Write, on the condition that the output is still what was seen.
    Write(Precondition),
}

/// What to do given the output as it is now (`None`: it does not exist).
pub fn decide(
    existing: Option<ObjectHighlights>,
    source: &ObjectRef,
    generation: Generation,
) -> Decision {
    let Some(existing) = existing else {
        return Decision::Write(Precondition::DoesNotExist);
    };
    let recorded = recorded_generation(&existing.metadata, source);
    match recorded {
        Some(recorded) if recorded == generation => Decision::Done(Box::new(existing)),
        Some(recorded) if recorded > generation => Decision::Superseded(recorded),
        // Decrypted from an older upload, from another source, or written by hand.
        _ => Decision::Write(Precondition::replacing(Some(&existing))),
    }
}

/// The source generation recorded in the output's metadata, if it came from `source`;
/// generations of different objects are not comparable.
fn recorded_generation(
    metadata: &HashMap<String, String>,
    source: &ObjectRef,
) -> Option<Generation> {
    let same_source = metadata
        .get(SOURCE_BUCKET)
        .is_some_and(|b| b == source.bucket.as_str())
        && metadata
            .get(SOURCE_NAME)
            .is_some_and(|n| n == source.name.as_str());
    if !same_source {
        return None;
    }
    metadata.get(SOURCE_GENERATION)?.parse().ok()
}

/// One lock per output object being written by this instance.
#[derive(Default)]
pub struct OutputLocks {
    held: Arc<Mutex<HashMap<ObjectRef, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Held while a request decides about and writes one output; forgotten when the last
/// request for that output lets go, so the map only holds outputs in progress.
pub struct OutputGuard {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    output: ObjectRef,
    held: Arc<Mutex<HashMap<ObjectRef, Arc<tokio::sync::Mutex<()>>>>>,
}

impl OutputLocks {
    pub async fn lock(&self, output: &ObjectRef) -> OutputGuard {
        let lock = self
            .held
            .lock()
            .expect("the lock map is never poisoned")
            .entry(output.clone())
            .or_default()
            .clone();
        OutputGuard {
            guard: Some(lock.lock_owned().await),
            output: output.clone(),
            held: self.held.clone(),
        }
    }
}

impl Drop for OutputGuard {
    fn drop(&mut self) {
        self.guard = None;
        let mut held = self.held.lock().expect("the lock map is never poisoned");
        if held
            .get(&self.output)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            held.remove(&self.output);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> ObjectRef {
        ObjectRef::new("trig".parse().unwrap(), "a.gz.encrypted".parse().unwrap())
    }

    fn output(generation: i64, metadata: HashMap<String, String>) -> ObjectHighlights {
        let mut highlights = ObjectHighlights::default();
        highlights.generation = generation;
        highlights.metadata = metadata;
        highlights
    }

    fn generation(g: i64) -> Generation {
        Generation::new(g).unwrap()
    }

    #[test]
    fn a_missing_output_is_written_only_if_it_still_does_not_exist() {
        assert_eq!(
            decide(None, &source(), generation(5)),
            Decision::Write(Precondition::DoesNotExist)
        );
    }

    #[test]
    fn the_same_source_generation_is_done_already() {
        let existing = output(100, source_metadata(&source(), generation(5)));
        assert_eq!(
            decide(Some(existing.clone()), &source(), generation(5)),
            Decision::Done(Box::new(existing))
        );
    }

    #[test]
    fn a_newer_source_generation_replaces_the_output_it_saw() {
        let existing = output(100, source_metadata(&source(), generation(5)));
        assert_eq!(
            decide(Some(existing), &source(), generation(6)),
            Decision::Write(Precondition::GenerationMatch(generation(100)))
        );
    }

    #[test]
    fn an_older_source_generation_never_overwrites_newer_output() {
        let existing = output(100, source_metadata(&source(), generation(7)));
        assert_eq!(
            decide(Some(existing), &source(), generation(6)),
            Decision::Superseded(generation(7))
        );
    }

    #[test]
    fn outputs_of_other_sources_or_without_metadata_are_replaced_conditionally() {
        let other = ObjectRef::new("other".parse().unwrap(), "a.gz.encrypted".parse().unwrap());
        let from_other = output(100, source_metadata(&other, generation(9)));
        assert_eq!(
            decide(Some(from_other), &source(), generation(6)),
            Decision::Write(Precondition::GenerationMatch(generation(100)))
        );
        assert_eq!(
            decide(Some(output(100, HashMap::new())), &source(), generation(6)),
            Decision::Write(Precondition::GenerationMatch(generation(100)))
        );
    }

    #[tokio::test]
    async fn output_locks_serialize_requests_for_one_output_and_are_forgotten_after() {
        let locks = OutputLocks::default();
        let first = locks.lock(&source()).await;
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock(&source())).await;
        assert!(
            waiting.is_err(),
            "a second request got the lock while the first held it"
        );
        let other = ObjectRef::new("trig".parse().unwrap(), "b.gz.encrypted".parse().unwrap());
        drop(locks.lock(&other).await);
        drop(first);
        drop(locks.lock(&source()).await);
        assert!(locks.held.lock().unwrap().is_empty());
    }
}
