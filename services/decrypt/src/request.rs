//! The HTTP contract: what `POST /decrypt` accepts and answers.
//!
//! The body may be a person's `{"bucket", "name"}` or the `data` of a Cloud Storage
//! object-finalize CloudEvent (many more fields, numbers as strings), so an Eventarc trigger
//! can call the service directly. Any other field is refused: a misspelt or invented option
//! (`"dryRun": true`) silently ignored would do real work the caller did not ask for.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use sigma_shared::storage::StorageError;
use sigma_shared::{Attempt, BucketName, Generation, ObjectName, ObjectRef};
use utoipa::{PartialSchema, ToSchema};

use crate::config::Config;
use crate::error::Error;

/// What marks an object as encrypted; the output name is the input name without it.
pub const ENCRYPTED_SUFFIX: &str = ".encrypted";

/// The fields of the Cloud Storage object resource (storage v1 `Object`, which an
/// object-finalize event's `data` is) that the service accepts and does not use. Listed
/// explicitly: a field outside this list and the request's own is refused.
pub const OBJECT_EVENT_FIELDS: &[&str] = &[
    "kind",
    "id",
    "selfLink",
    "mediaLink",
    "metageneration",
    "contentType",
    "contentEncoding",
    "contentDisposition",
    "contentLanguage",
    "cacheControl",
    "timeCreated",
    "updated",
    "timeDeleted",
    "timeStorageClassUpdated",
    "softDeleteTime",
    "hardDeleteTime",
    "customTime",
    "retentionExpirationTime",
    "retention",
    "storageClass",
    "md5Hash",
    "crc32c",
    "componentCount",
    "etag",
    "metadata",
    "acl",
    "owner",
    "customerEncryption",
    "kmsKeyName",
    "eventBasedHold",
    "temporaryHold",
];

#[derive(Debug, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct DecryptRequest {
    pub bucket: String,
    pub name: String,
    /// Pins the read to this upload; without it the current generation is read.
    pub generation: Option<Generation>,
    /// The uploader's claim about the size; only used to refuse early.
    pub size: Option<u64>,
    /// Which run of the upload's chain sent this (logged: decryption is idempotent, so a
    /// re-run finds the output verified and present and skips it).
    pub attempt: Attempt,
}

/// The request's own fields, once the event's fields are set aside; anything else left is
/// an unknown field.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OwnFields {
    /// Source bucket; one of `TRIGGER_BUCKETS` when that is set.
    #[schema(value_type = BucketName)]
    bucket: String,
    /// Source object; must end in `.encrypted`. The output name is the same without it.
    #[schema(value_type = ObjectName)]
    name: String,
    /// Pins the read to this upload; without it the current generation is read, then
    /// pinned for every pass.
    #[serde(default)]
    generation: Option<Generation>,
    #[serde(default, deserialize_with = "size")]
    #[schema(schema_with = size_schema)]
    size: Option<u64>,
    /// Only logged: a re-run of an upload already decrypted answers `"skipped": true`.
    #[serde(default)]
    attempt: Attempt,
}

fn size_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    sigma_shared::openapi::schema(serde_json::json!({
        "description": "The announced size in bytes, only used to refuse early with 413: a number, or a decimal string as Cloud Storage events carry it.",
        "oneOf": [
            {"type": "integer", "minimum": 0, "maximum": u64::MAX},
            {"type": "string", "pattern": "^[0-9]{1,20}$"},
            {"type": "null"},
        ],
    }))
}

/// The request's own fields, and each field of the object resource as an accepted, unused
/// property: the document names what is accepted, as the service does.
impl PartialSchema for DecryptRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(mut object)) =
            OwnFields::schema()
        else {
            unreachable!("a derived struct schema is an object")
        };
        for field in OBJECT_EVENT_FIELDS {
            object.properties.insert(
                (*field).to_owned(),
                utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(
                    utoipa::openapi::schema::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
                        .description(Some("A field of the Cloud Storage object resource (an object-finalize event's `data`): accepted and not used."))
                        .build(),
                )),
            );
        }
        object.description = Some(
            "A person's `{\"bucket\", \"name\"}`, or the `data` of a Cloud Storage object-finalize CloudEvent. Any other field is refused with 400 `invalid_request`.".into(),
        );
        utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(object))
    }
}

impl ToSchema for DecryptRequest {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        OwnFields::schemas(schemas);
    }
}

impl TryFrom<Map<String, Value>> for DecryptRequest {
    type Error = serde_json::Error;

    fn try_from(mut body: Map<String, Value>) -> Result<Self, Self::Error> {
        body.retain(|field, _| !OBJECT_EVENT_FIELDS.contains(&field.as_str()));
        let own = OwnFields::deserialize(Value::Object(body))?;
        Ok(Self {
            bucket: own.bucket,
            name: own.name,
            generation: own.generation,
            size: own.size,
            attempt: own.attempt,
        })
    }
}

/// A request that passed every check that needs no Cloud Storage call.
#[derive(Debug, Clone)]
pub struct Job {
    pub source: ObjectRef,
    pub generation: Option<Generation>,
    pub output: ObjectRef,
}

impl DecryptRequest {
    /// Every check, in order; see [`Self::source`] and [`Self::job`].
    pub fn validate(self, config: &Config) -> Result<Job, Error> {
        let source = self.source(config)?;
        self.job(source, config)
    }

    /// The source object, if its names are valid and its bucket is one the service may read.
    /// Failing here refuses the request itself: there is no file to speak of.
    pub fn source(&self, config: &Config) -> Result<ObjectRef, Error> {
        let bucket: BucketName = self.bucket.parse().map_err(Error::InvalidName)?;
        let name: ObjectName = self.name.parse().map_err(Error::InvalidName)?;
        if !config.trigger_buckets.is_empty() && !config.trigger_buckets.contains(&bucket) {
            return Err(Error::BucketNotAllowed(bucket));
        }
        Ok(ObjectRef::new(bucket, name))
    }

    /// The job for `source`. Failing here refuses the file (its name or announced size), as
    /// a bad token would, so it is reported as a rejection.
    pub fn job(self, source: ObjectRef, config: &Config) -> Result<Job, Error> {
        let output_name = source
            .name
            .strip_suffix(ENCRYPTED_SUFFIX)
            .ok_or_else(|| Error::NotEncrypted(source.clone()))?;
        if let (Some(size), Some(limit)) = (self.size, config.max_object_bytes)
            && size > limit
        {
            return Err(StorageError::TooLarge {
                object: source,
                limit,
            }
            .into());
        }
        Ok(Job {
            output: ObjectRef::new(config.output_bucket.clone(), output_name),
            source,
            generation: self.generation,
        })
    }
}

/// CloudEvents carry sizes as decimal strings, people type numbers: accept both.
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        Some(Raw::Text(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("size {s:?} is not a byte count"))),
    }
}

/// The decrypted object, and the exact upload it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecryptResponse {
    /// The output bucket (`OUTPUT_BUCKET`).
    pub bucket: BucketName,
    /// The output object: the source name without `.encrypted`.
    pub name: ObjectName,
    /// The output's size in bytes.
    pub size: u64,
    /// The output's generation.
    pub generation: Generation,
    pub source: Source,
    /// True when this source generation had already been decrypted and nothing was written.
    pub skipped: bool,
}

/// The upload that was decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = DecryptedSource)]
pub struct Source {
    pub bucket: BucketName,
    pub name: ObjectName,
    pub generation: Generation,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fernet::{Key, KeyRing};
    use crate::keys::KeySource;

    fn config(trigger_buckets: &[&str], max_object_bytes: Option<u64>) -> Config {
        Config {
            output_bucket: "company_output_bucket".parse().unwrap(),
            trigger_buckets: trigger_buckets.iter().map(|b| b.parse().unwrap()).collect(),
            keys: KeySource::Keys(KeyRing::new(vec![Key::generate()]).unwrap()),
            ttl: None,
            max_object_bytes,
            verify_gzip: false,
            upload: Default::default(),
            keys_refresh: crate::config::DEFAULT_KEYS_REFRESH,
        }
    }

    fn request(json: serde_json::Value) -> DecryptRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_output_name_drops_the_encrypted_suffix_in_the_output_bucket() {
        let job = request(serde_json::json!({"bucket": "company_trigger_bucket", "name": "data/20240115/lkp_fechas.gz.encrypted"}))
            .validate(&config(&[], None))
            .unwrap();
        assert_eq!(
            job.output.to_string(),
            "gs://company_output_bucket/data/20240115/lkp_fechas.gz"
        );
        assert_eq!(
            job.source.to_string(),
            "gs://company_trigger_bucket/data/20240115/lkp_fechas.gz.encrypted"
        );
        assert_eq!(job.generation, None);
    }

    #[test]
    fn cloud_event_data_is_accepted_with_its_extra_fields_and_string_numbers() {
        let job = request(serde_json::json!({
            "kind": "storage#object", "bucket": "trig", "name": "a.gz.encrypted",
            "generation": "1705312800123456", "size": "2048", "contentType": "application/octet-stream",
            "metadata": {"x": "y"}
        }))
        .validate(&config(&["trig"], Some(4096)))
        .unwrap();
        assert_eq!(job.generation.unwrap().get(), 1705312800123456);
    }

    #[test]
    fn every_field_of_an_object_finalize_event_is_accepted() {
        let mut event = serde_json::Map::new();
        for field in OBJECT_EVENT_FIELDS {
            event.insert((*field).to_owned(), serde_json::json!("x"));
        }
        event.insert("bucket".into(), serde_json::json!("trig"));
        event.insert("name".into(), serde_json::json!("a.gz.encrypted"));
        assert!(serde_json::from_value::<DecryptRequest>(event.into()).is_ok());
    }

    #[test]
    fn unknown_fields_are_refused_naming_the_field() {
        for field in ["dryRun", "bucket_name", "Name"] {
            let error = serde_json::from_value::<DecryptRequest>(serde_json::json!({
                "bucket": "trig", "name": "a.gz.encrypted", field: true
            }))
            .unwrap_err();
            assert!(error.to_string().contains(field), "{error}");
        }
    }

    #[test]
    fn requests_are_refused_with_the_documented_errors() {
        let cases = [
            (
                serde_json::json!({"bucket": "trig", "name": "../x.encrypted"}),
                "invalid_name",
            ),
            (
                serde_json::json!({"bucket": "trig", "name": "/x.encrypted"}),
                "invalid_name",
            ),
            (
                serde_json::json!({"bucket": "trig", "name": "a\u{1}b.encrypted"}),
                "invalid_name",
            ),
            (
                serde_json::json!({"bucket": "Bad Bucket", "name": "x.encrypted"}),
                "invalid_name",
            ),
            (
                serde_json::json!({"bucket": "other", "name": "x.encrypted"}),
                "bucket_not_allowed",
            ),
            (
                serde_json::json!({"bucket": "trig", "name": "x.gz"}),
                "not_encrypted",
            ),
            (
                serde_json::json!({"bucket": "trig", "name": "dir/.encrypted"}),
                "not_encrypted",
            ),
            (
                serde_json::json!({"bucket": "trig", "name": "x.encrypted", "size": 4097}),
                "object_too_large",
            ),
        ];
        for (json, code) in cases {
            let error = request(json.clone())
                .validate(&config(&["trig"], Some(4096)))
                .unwrap_err();
            assert_eq!(sigma_shared::HttpError::code(&error), code, "{json}");
        }
    }

    #[test]
    fn sizes_must_be_byte_counts() {
        assert!(
            serde_json::from_value::<DecryptRequest>(
                serde_json::json!({"bucket": "b", "name": "n", "size": "lots"})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<DecryptRequest>(
                serde_json::json!({"bucket": "b", "name": "n", "size": -1})
            )
            .is_err()
        );
    }
}
