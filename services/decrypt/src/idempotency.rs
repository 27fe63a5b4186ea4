//! Deciding, from the output object alone, whether a request has been served before.
//!
//! Eventarc delivers at least once and people re-run curl, so every output object records
//! the exact upload it was decrypted from in its custom metadata. A request for the same
//! upload writes nothing; a newer upload replaces the output; an older one must not
//! overwrite newer data, and neither may an upload of the same name in another trigger
//! bucket (generations of different objects say nothing about which is newer). The write
//! itself is conditional on the generation seen here, so two requests racing past this
//! check cannot both commit. Within one instance, requests for the same output also wait
//! for each other, so a duplicate finds the first one's result instead of decrypting the
//! same file again only to lose the race at commit.
//!
//! Metadata values are percent-encoded (UTF-8, every byte but RFC 3986's unreserved
//! characters and `/`): Cloud Storage returns custom metadata as HTTP headers, and the
//! client drops header values that are not ASCII, which would make the record of an upload
//! named `año.gz.encrypted` vanish and its duplicates decrypt again. ASCII names without
//! reserved characters encode to themselves, so values written before the encoding was
//! introduced still match.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use google_cloud_storage::model_ext::ObjectHighlights;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sigma_shared::storage::Precondition;
use sigma_shared::{BucketName, Generation, ObjectRef};

pub const SOURCE_BUCKET: &str = "sigma-source-bucket";
pub const SOURCE_NAME: &str = "sigma-source-name";
pub const SOURCE_GENERATION: &str = "sigma-source-generation";

/// Bytes kept as they are in metadata values: RFC 3986's unreserved set, and `/`, so the
/// common object name stays readable.
const KEPT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// A metadata value as it is stored: ASCII whatever `value` holds.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, KEPT).to_string()
}

/// The custom metadata that ties an output object to its source upload.
pub fn source_metadata(source: &ObjectRef, generation: Generation) -> HashMap<String, String> {
    HashMap::from([
        (SOURCE_BUCKET.to_owned(), encode(source.bucket.as_str())),
        (SOURCE_NAME.to_owned(), encode(source.name.as_str())),
        (SOURCE_GENERATION.to_owned(), generation.to_string()),
    ])
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// This upload was decrypted already; here is the result.
    Done(Box<ObjectHighlights>),
    /// A newer upload of the same source was decrypted already.
    Superseded(Generation),
    /// The output was decrypted from an object of the same name in another bucket.
    OtherBucket(BucketName),
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
    match recorded_source(&existing.metadata, source) {
        Recorded::OtherBucket(bucket) => Decision::OtherBucket(bucket),
        Recorded::Same(recorded) if recorded == generation => Decision::Done(Box::new(existing)),
        Recorded::Same(recorded) if recorded > generation => Decision::Superseded(recorded),
        // Decrypted from an older upload, or written by hand.
        _ => Decision::Write(Precondition::replacing(Some(&existing))),
    }
}

enum Recorded {
    /// Decrypted from this very source, at this generation.
    Same(Generation),
    OtherBucket(BucketName),
    /// No usable record: not written by sigma, or by hand.
    Unknown,
}

/// Whose decryption the output's metadata says it is. Values are compared in their stored
/// (encoded) form, and also as they are, for records written before values were encoded.
fn recorded_source(metadata: &HashMap<String, String>, source: &ObjectRef) -> Recorded {
    let matches = |key: &str, value: &str| {
        metadata
            .get(key)
            .is_some_and(|stored| *stored == encode(value) || stored == value)
    };
    let Some(bucket) = metadata.get(SOURCE_BUCKET) else {
        return Recorded::Unknown;
    };
    if !matches(SOURCE_BUCKET, source.bucket.as_str()) {
        // Bucket names are plain ASCII, so a stored bucket name is the name itself.
        return bucket
            .parse()
            .map_or(Recorded::Unknown, Recorded::OtherBucket);
    }
    if !matches(SOURCE_NAME, source.name.as_str()) {
        return Recorded::Unknown;
    }
    metadata
        .get(SOURCE_GENERATION)
        .and_then(|g| g.parse().ok())
        .map_or(Recorded::Unknown, Recorded::Same)
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
    fn an_output_decrypted_from_another_bucket_is_never_overwritten() {
        let other = ObjectRef::new("other".parse().unwrap(), "a.gz.encrypted".parse().unwrap());
        for (theirs, ours) in [(9, 6), (6, 9), (6, 6)] {
            let from_other = output(100, source_metadata(&other, generation(theirs)));
            assert_eq!(
                decide(Some(from_other), &source(), generation(ours)),
                Decision::OtherBucket("other".parse().unwrap())
            );
        }
    }

    #[test]
    fn metadata_values_are_ascii_and_names_beyond_ascii_are_recognised() {
        let name = "datos/año 2024/#1?x=50%+más.gz.encrypted";
        let source = ObjectRef::new("trig".parse().unwrap(), name.parse().unwrap());
        let metadata = source_metadata(&source, generation(5));
        assert!(metadata.values().all(|v| v.is_ascii()), "{metadata:?}");
        assert_eq!(
            metadata[SOURCE_NAME],
            "datos/a%C3%B1o%202024/%231%3Fx%3D50%25%2Bm%C3%A1s.gz.encrypted"
        );
        let existing = output(100, metadata);
        assert_eq!(
            decide(Some(existing.clone()), &source, generation(5)),
            Decision::Done(Box::new(existing))
        );
    }

    #[test]
    fn records_written_before_values_were_encoded_still_match() {
        let source = ObjectRef::new(
            "trig".parse().unwrap(),
            "50%_off.gz.encrypted".parse().unwrap(),
        );
        let plain = HashMap::from([
            (SOURCE_BUCKET.to_owned(), "trig".to_owned()),
            (SOURCE_NAME.to_owned(), "50%_off.gz.encrypted".to_owned()),
            (SOURCE_GENERATION.to_owned(), "5".to_owned()),
        ]);
        let existing = output(100, plain);
        assert_eq!(
            decide(Some(existing.clone()), &source, generation(5)),
            Decision::Done(Box::new(existing))
        );
    }

    #[test]
    fn outputs_without_metadata_are_replaced_conditionally() {
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
