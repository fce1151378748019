"""The signing scheme lives in the Migrator SDK (loom_migrator.signing), which Loom and every Migrator share."""

from loom_migrator.signing import (
    MAX_SKEW_SECONDS,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    SIGNATURE_VERSION,
    TIMESTAMP_HEADER,
    SignatureRejected,
    SignatureVerifier,
    sign,
    signature,
    signing_key,
    token_digest,
)

__all__ = [
    "MAX_SKEW_SECONDS",
    "NONCE_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_VERSION",
    "TIMESTAMP_HEADER",
    "SignatureRejected",
    "SignatureVerifier",
    "sign",
    "signature",
    "signing_key",
    "token_digest",
]
