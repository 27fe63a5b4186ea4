"""The schema check (tf_schema.py) catches what `terraform validate` would: each case breaks a
copy of infra/ in one way and expects the problem it names. Run by check_infra.sh:

    python tests/static/test_tf_schema.py infra
"""

from __future__ import annotations

import pathlib
import shutil
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import tf_schema  # noqa: E402


def mutate(path: str, old: str, new: str):
    def apply(directory: pathlib.Path) -> None:
        file = directory / path
        text = file.read_text()
        assert text.count(old) >= 1, f"{path} no longer contains {old!r}: update this case"
        file.write_text(text.replace(old, new, 1))

    return apply


def add_file(name: str, text: str):
    return lambda directory: (directory / name).write_text(text)


# (what the case proves, how infra/ is broken, a fragment the problem report must contain)
CASES = [
    (
        "a misspelt argument fails",
        mutate("storage.tf", "uniform_bucket_level_access = true", "uniform_bucket_level_acess = true"),
        "unknown argument or block 'uniform_bucket_level_acess'",
    ),
    (
        "a misspelt argument inside a nested block fails",
        mutate("run.tf", "startup_cpu_boost", "startup_cpu_bost"),
        "template.containers.resources: unknown argument or block 'startup_cpu_bost'",
    ),
    (
        "a misspelt argument inside a dynamic block's content fails",
        mutate("storage.tf", "default_kms_key_name = encryption.value", "default_kms_keyname = encryption.value"),
        "google_storage_bucket.data.encryption: unknown argument or block 'default_kms_keyname'",
    ),
    (
        "a misspelt block fails",
        mutate("storage.tf", "versioning {", "versionning {"),
        "unknown argument or block 'versionning'",
    ),
    (
        "a misspelt dynamic block fails",
        mutate("run.tf", 'dynamic "env" {', 'dynamic "envs" {'),
        "unknown block 'envs' (dynamic)",
    ),
    (
        "a missing required argument fails",
        mutate("kms.tf", "  crypto_key_id = var.kms_key_name\n", ""),
        "google_kms_crypto_key_iam_member.service_agents: missing required argument 'crypto_key_id'",
    ),
    (
        "a missing required nested block fails",
        mutate("storage.tf", 'action {\n        type = "Delete"\n      }', ""),
        "lifecycle_rule: missing required block 'action'",
    ),
    (
        "an unknown resource type fails",
        mutate("pubsub.tf", 'resource "google_pubsub_topic" "events"', 'resource "google_pubsub_topics" "events"'),
        "has no resource type 'google_pubsub_topics'",
    ),
    (
        "an unknown data source fails",
        add_file("extra.tf", 'data "google_projectt" "x" {\n  project_id = "p"\n}\n'),
        "has no data source 'google_projectt'",
    ),
    (
        "a beta-only resource without provider = google-beta fails",
        mutate("kms.tf", "  provider = google-beta\n", ""),
        "hashicorp/google 7.46.1 has no resource type 'google_project_service_identity'",
    ),
    (
        "a misspelt attribute of a resource fails",
        mutate("monitoring.tf", 'google_cloud_run_v2_service.service["decrypt"].name', 'google_cloud_run_v2_service.service["decrypt"].nmae'),
        "google_cloud_run_v2_service.service has no attribute 'nmae'",
    ),
    (
        "a misspelt attribute of a beta-only resource fails",
        mutate("workflow.tf", "depends_on = [google_project_service_identity.eventarc,", "depends_on = [google_project_service_identity.eventarc.emial,"),
        "google_project_service_identity.eventarc has no attribute 'emial'",
    ),
    (
        "a misspelt attribute of a data source fails",
        mutate("kms.tf", "gcs.email_address", "gcs.email_adress"),
        "data.google_storage_project_service_account.gcs has no attribute 'email_adress'",
    ),
    (
        "a reference to an undeclared resource fails",
        mutate("workflow.tf", "time_sleep.eventarc_grants_propagate]", "time_sleep.eventarc_grant_propagate]"),
        "reference to undeclared time_sleep.eventarc_grant_propagate",
    ),
    (
        "a reference to an undeclared variable fails",
        mutate("run.tf", "var.max_instances", "var.max_instance"),
        "reference to undeclared variable var.max_instance",
    ),
    (
        "an unknown provider argument fails",
        mutate("versions.tf", "  region  = var.region\n}", "  regoin  = var.region\n}"),
        "provider google: unknown argument or block 'regoin'",
    ),
    (
        "a provider missing from required_providers fails",
        add_file("extra.tf", 'resource "random_id" "x" {\n  byte_length = 4\n}\n'),
        "provider 'random' is not in required_providers",
    ),
    (
        "a version constraint that excludes the checked schema fails",
        mutate("versions.tf", 'version = ">= 7.46, < 8.0"', 'version = ">= 6.50, < 7.0"'),
        "excludes 7.46.1, the version whose schema is checked",
    ),
]


def main() -> None:
    infra = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "infra")
    problems, schemas = tf_schema.check(infra)
    assert not problems, "infra/ itself must pass before it is broken on purpose:\n" + "\n".join(problems)
    passed = failed = 0
    for name, breaks, expected in CASES:
        with tempfile.TemporaryDirectory() as work:
            copy = pathlib.Path(work) / "infra"
            shutil.copytree(infra, copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
            try:
                breaks(copy)
                problems, _ = tf_schema.check(copy, schemas)
                assert any(expected in p for p in problems), f"expected a problem containing {expected!r}, got {problems}"
            except AssertionError as e:
                failed += 1
                print(f"FAIL {name}: {e}")
            else:
                passed += 1
                print(f"ok   {name}")
    print(f"schema check self-test: {passed} passed, {failed} failed")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
