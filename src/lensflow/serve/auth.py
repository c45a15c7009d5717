"""Authentication: AWS Signature Version 4 (as boto3 signs for `sagemaker-runtime`) and bearer keys.

SigV4 is verified by recomputing the signature from the canonical request exactly as botocore
builds it (method, normalised and quoted path, sorted query, the signed headers trimmed, the
payload's sha256), then the string to sign and the HMAC chain of the secret. Pure functions: the
app passes the request parts in, so the logic is testable without a server.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from lensflow.errors import ServeError

SERVICE = "sagemaker"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW = timedelta(minutes=15)  # what AWS allows before "Signature expired"
_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<sig>[0-9a-f]{64})\s*$"
)


class AuthError(Exception):
    """A request that is not allowed: status 401 (no credentials) or 403 (wrong ones)."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type  # what boto3 shows as the error code
        self.message = message


# -- key files -------------------------------------------------------------------------------------
def _key_lines(path: Path) -> list[tuple[int, list[str]]]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ServeError(f"cannot read keys file {path}: {e}") from e
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((n, line.split()))
    if not out:
        raise ServeError(f"keys file {path} holds no keys")
    return out


def load_sigv4_keys(path: Path) -> dict[str, str]:
    """`ACCESS_KEY_ID SECRET_ACCESS_KEY` per line ('#' comments) -> {access key: secret}."""
    keys: dict[str, str] = {}
    for n, parts in _key_lines(path):
        if len(parts) != 2:
            raise ServeError(
                f"{path}:{n}: expected 'ACCESS_KEY_ID SECRET_ACCESS_KEY', got {len(parts)} fields"
            )
        keys[parts[0]] = parts[1]
    return keys


def load_api_keys(path: Path) -> list[str]:
    """One bearer token per line ('#' comments)."""
    tokens = []
    for n, parts in _key_lines(path):
        if len(parts) != 1:
            raise ServeError(f"{path}:{n}: expected one token per line, got {len(parts)} fields")
        if len(parts[0]) < 16:
            raise ServeError(f"{path}:{n}: API keys must be at least 16 characters long")
        tokens.append(parts[0])
    return tokens


# -- bearer ----------------------------------------------------------------------------------------
def check_bearer(authorization: str, tokens: Sequence[str]) -> None:
    token = authorization[len("Bearer ") :].strip()
    # compare against every key (constant time each) so timing does not reveal which one matched
    ok = False
    for t in tokens:
        ok |= hmac.compare_digest(token.encode(), t.encode())
    if not ok:
        raise AuthError(403, "AccessDeniedException", "invalid API key")


# -- SigV4 -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedRequest:
    method: str
    raw_path: str  # as sent, percent-encoded (ASGI scope["raw_path"])
    query: str  # raw query string, without '?'
    headers: Mapping[str, list[str]]  # lower-case name -> values in order
    body: bytes


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 plus collapsed slashes, as botocore (and AWS) normalise paths."""
    if not path:
        return "/"
    out: list[str] = []
    for seg in path.split("/"):
        if seg == "..":
            if out:
                out.pop()
        elif seg and seg != ".":
            out.append(seg)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and out else ""
    return first + "/".join(out) + last


def canonical_uri(raw_path: str) -> str:
    # botocore quotes the already percent-encoded path once more (safe='/~')
    return quote(remove_dot_segments(raw_path), safe="/~")


def canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = [p.partition("=")[::2] for p in query.split("&")]
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_request(req: SignedRequest, signed: list[str], payload_hash: str) -> str:
    header_lines = []
    for name in signed:
        values = req.headers.get(name)
        if values is None:
            raise AuthError(
                403, "IncompleteSignatureException", f"signed header {name!r} is missing"
            )
        header_lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}")
    return "\n".join(
        [
            req.method.upper(),
            canonical_uri(req.raw_path),
            canonical_query(req.query),
            "\n".join(header_lines) + "\n",
            ";".join(signed),
            payload_hash,
        ]
    )


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def verify_sigv4(
    req: SignedRequest, authorization: str, keys: Mapping[str, str], now: datetime | None = None
) -> str:
    """Check a SigV4 `Authorization` header; return the access key id or raise AuthError (403)."""
    m = _AUTH_RE.match(authorization.strip())
    if not m:
        raise AuthError(
            403, "IncompleteSignatureException", "malformed AWS4-HMAC-SHA256 Authorization header"
        )
    cred = m["cred"].split("/")
    if len(cred) != 5 or cred[4] != "aws4_request":
        raise AuthError(403, "IncompleteSignatureException", "malformed credential scope")
    access_key, date, region, service, _ = cred
    if service != SERVICE:
        raise AuthError(
            403,
            "InvalidSignatureException",
            f"credential scope service must be {SERVICE!r}, not {service!r}",
        )
    secret = keys.get(access_key)
    if secret is None:
        raise AuthError(
            403,
            "UnrecognizedClientException",
            "the security token included in the request is invalid",
        )
    amz_date = (req.headers.get("x-amz-date") or [""])[0]
    try:
        stamp = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise AuthError(
            403, "IncompleteSignatureException", "missing or malformed X-Amz-Date header"
        ) from None
    now = now or datetime.now(UTC)
    if abs(now - stamp) > MAX_CLOCK_SKEW:
        raise AuthError(
            403,
            "InvalidSignatureException",
            "Signature expired: request time is too far from the server time",
        )
    if amz_date[:8] != date:
        raise AuthError(
            403, "InvalidSignatureException", "credential scope date does not match X-Amz-Date"
        )
    signed = m["signed"].split(";")
    if "host" not in signed or signed != sorted(signed):
        raise AuthError(
            403, "IncompleteSignatureException", "SignedHeaders must be sorted and include host"
        )
    body_hash = hashlib.sha256(req.body).hexdigest()
    claimed = (req.headers.get("x-amz-content-sha256") or [body_hash])[0]
    if claimed != body_hash:
        # UNSIGNED-PAYLOAD is only legitimate over TLS, which this server does not terminate.
        raise AuthError(403, "InvalidSignatureException", "payload hash does not match the body")
    creq = canonical_request(req, signed, claimed)
    to_sign = "\n".join(
        [
            ALGORITHM,
            amz_date,
            f"{date}/{region}/{service}/aws4_request",
            hashlib.sha256(creq.encode()).hexdigest(),
        ]
    )
    expected = hmac.new(
        signing_key(secret, date, region, service), to_sign.encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, m["sig"]):
        raise AuthError(
            403,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    return access_key


@dataclass(frozen=True)
class Authenticator:
    """What a request must carry: a SigV4 signature or a bearer token, when any keys exist."""

    sigv4_keys: Mapping[str, str]
    api_keys: Sequence[str]

    @property
    def enabled(self) -> bool:
        return bool(self.sigv4_keys or self.api_keys)

    def check(self, req: SignedRequest) -> str:
        """Return who made the request ("anonymous" when auth is off) or raise AuthError."""
        if not self.enabled:
            return "anonymous"
        auth = (req.headers.get("authorization") or [""])[0]
        if not auth:
            raise AuthError(
                401,
                "MissingAuthenticationTokenException",
                "missing credentials: sign the request (SigV4) or send 'Authorization: Bearer <key>'",
            )
        if auth.startswith("Bearer "):
            if not self.api_keys:
                raise AuthError(
                    403, "AccessDeniedException", "bearer keys are not enabled on this server"
                )
            check_bearer(auth, self.api_keys)
            return "bearer"
        if auth.startswith(ALGORITHM):
            if not self.sigv4_keys:
                raise AuthError(
                    403, "AccessDeniedException", "SigV4 keys are not enabled on this server"
                )
            return verify_sigv4(req, auth, self.sigv4_keys)
        raise AuthError(
            401,
            "MissingAuthenticationTokenException",
            "unsupported Authorization scheme (use AWS4-HMAC-SHA256 or Bearer)",
        )
