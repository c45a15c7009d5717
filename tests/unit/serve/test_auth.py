"""SigV4 verification against requests signed by botocore itself, and key files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lensflow.errors import ServeError
from lensflow.serve.auth import (
    Authenticator,
    AuthError,
    SignedRequest,
    canonical_uri,
    load_api_keys,
    load_sigv4_keys,
    verify_sigv4,
)

KEYS = {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}


def botocore_signed(
    url: str, body: bytes, secret: str = KEYS["AKIDEXAMPLE"], service: str = "sagemaker"
):
    """A request exactly as botocore signs it, turned into what the server sees."""
    from urllib.parse import urlsplit

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/x-image"}
    )
    SigV4Auth(Credentials("AKIDEXAMPLE", secret), service, "us-east-1").add_auth(req)
    parts = urlsplit(url)
    headers = {k.lower(): [v] for k, v in req.headers.items()}
    headers["host"] = [parts.netloc]
    signed = SignedRequest("POST", parts.path, parts.query, headers, body)
    return signed, req.headers["Authorization"]


def test_botocore_signature_verifies():
    req, auth = botocore_signed(
        "http://127.0.0.1:8080/endpoints/my-model/invocations", b"\xff\xd8image"
    )
    assert verify_sigv4(req, auth, KEYS) == "AKIDEXAMPLE"


def test_query_strings_and_odd_paths_verify():
    req, auth = botocore_signed(
        "http://localhost:9/endpoints/a-b/invocations?b=2&a=1&verbose=true", b"x"
    )
    assert verify_sigv4(req, auth, KEYS) == "AKIDEXAMPLE"
    assert canonical_uri("/a/./b/../c//d/") == "/a/c/d/"
    assert canonical_uri("/a%20b") == "/a%2520b"  # botocore quotes the encoded path once more


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda r: SignedRequest(r.method, r.raw_path, r.query, r.headers, r.body + b"!"),
            "payload hash|signature",
        ),
        (
            lambda r: SignedRequest(
                r.method, "/endpoints/other/invocations", r.query, r.headers, r.body
            ),
            "signature",
        ),
        (lambda r: SignedRequest("PUT", r.raw_path, r.query, r.headers, r.body), "signature"),
    ],
)
def test_tampering_is_rejected(mutate, match):
    req, auth = botocore_signed("http://127.0.0.1:8080/endpoints/m/invocations", b"body")
    with pytest.raises(AuthError, match=match) as err:
        verify_sigv4(mutate(req), auth, KEYS)
    assert err.value.status == 403


def test_wrong_secret_service_and_expired_signatures_are_403():
    url = "http://127.0.0.1:8080/invocations"
    req, auth = botocore_signed(url, b"x", secret="not-the-secret")
    with pytest.raises(AuthError, match="does not match") as err:
        verify_sigv4(req, auth, KEYS)
    assert err.value.error_type == "InvalidSignatureException"
    req, auth = botocore_signed(url, b"x", service="s3")
    with pytest.raises(AuthError, match="service must be 'sagemaker'"):
        verify_sigv4(req, auth, KEYS)
    req, auth = botocore_signed(url, b"x")
    with pytest.raises(AuthError, match="expired"):
        verify_sigv4(req, auth, KEYS, now=datetime.now(UTC) + timedelta(minutes=16))
    with pytest.raises(AuthError, match="malformed"):
        verify_sigv4(req, "AWS4-HMAC-SHA256 Credential=garbage", KEYS)


def test_authenticator_missing_and_unsupported_schemes():
    auth = Authenticator(sigv4_keys=KEYS, api_keys=["x" * 20])
    req = SignedRequest("POST", "/invocations", "", {}, b"")
    with pytest.raises(AuthError) as err:
        auth.check(req)
    assert err.value.status == 401
    basic = SignedRequest(
        "POST", "/invocations", "", {"authorization": ["Basic dXNlcjpwdw=="]}, b""
    )
    with pytest.raises(AuthError, match="unsupported Authorization scheme"):
        auth.check(basic)
    ok = SignedRequest("POST", "/invocations", "", {"authorization": ["Bearer " + "x" * 20]}, b"")
    assert auth.check(ok) == "bearer"
    assert Authenticator({}, []).check(req) == "anonymous"


def test_key_files(tmp_path):
    f = tmp_path / "k.txt"
    f.write_text("# comment\nAKID1 secret1\n\nAKID2 secret2\n")
    assert load_sigv4_keys(f) == {"AKID1": "secret1", "AKID2": "secret2"}
    f.write_text("AKID1\n")
    with pytest.raises(ServeError, match=r"k.txt:1: expected 'ACCESS_KEY_ID SECRET_ACCESS_KEY'"):
        load_sigv4_keys(f)
    f.write_text("short\n")
    with pytest.raises(ServeError, match="at least 16"):
        load_api_keys(f)
    f.write_text("# nothing\n")
    with pytest.raises(ServeError, match="no keys"):
        load_api_keys(f)
    with pytest.raises(ServeError, match="cannot read"):
        load_api_keys(tmp_path / "missing.txt")
