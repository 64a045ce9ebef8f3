"""Fixtures of the study tests: moto's S3 server and a fresh bucket (`tests/storage`)."""

from tests.storage.conftest import s3_bucket, s3_endpoint  # noqa: F401
