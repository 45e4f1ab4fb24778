"""Who is calling: authenticators that turn a gRPC caller into a SPIFFE identity.

Tried in order; the first that succeeds wins (as in Istio). Each returns the identity, returns
None ("not my kind of credential"), or raises :class:`AuthenticationError` with a detailed
reason that is logged, never sent to the caller.

* :class:`ClientCertAuthenticator`: a client certificate issued by this CA (renewal).
* :class:`JwtAuthenticator`: ``authorization: Bearer <JWT>`` checked against configured issuers'
  JWKS (a file or an https URL), audience in ``TOKEN_AUDIENCES``.
* :class:`TokenReviewAuthenticator`: the same bearer token sent to Kubernetes TokenReview.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import jwt
from cryptography import x509

from meshplane.citadel.ca.authority import CertificateAuthority
from meshplane.citadel.ca.errors import AuthenticationError

SA_PREFIX = "system:serviceaccount:"

if TYPE_CHECKING:
    from meshplane.citadel.trustdomain import TrustDomain


@dataclass(frozen=True, slots=True)
class Caller:
    """What the transport tells us about a caller."""

    metadata: Mapping[str, str]
    #: PEM of the TLS client certificate, if the caller presented one (read lazily: it is costly).
    peer_cert: Callable[[], bytes | None] = lambda: None


class Authenticator(Protocol):
    async def authenticate(self, caller: Caller) -> str | None: ...


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def identity_from_username(trust_domain: str, username: str) -> str:
    """``system:serviceaccount:NS:SA`` → SPIFFE ID; anything else is refused."""
    parts = username.removeprefix(SA_PREFIX).split(":") if username.startswith(SA_PREFIX) else []
    if len(parts) != 2 or not all(parts):
        raise AuthenticationError(f"subject {username!r} is not system:serviceaccount:<ns>:<sa>")
    return spiffe_id(trust_domain, parts[0], parts[1])


def bearer_token(metadata: Mapping[str, str]) -> str | None:
    value = metadata.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("authorization metadata is not 'Bearer <token>'")
    return token.strip()


class ClientCertAuthenticator:
    """A client certificate chaining to this CA; identity = its SPIFFE URI SAN."""

    def __init__(self, authority: CertificateAuthority) -> None:
        self._authority = authority

    async def authenticate(self, caller: Caller) -> str | None:
        peer_cert_pem = caller.peer_cert()
        if not peer_cert_pem:
            return None
        bundle = self._authority.bundle
        try:
            cert = x509.load_pem_x509_certificate(peer_cert_pem)
        except ValueError as exc:
            raise AuthenticationError(f"unparseable client certificate: {exc}") from exc
        issuers = [bundle.cert, *bundle.roots]
        if not any(_issued_by(cert, issuer) for issuer in issuers):
            raise AuthenticationError("client certificate was not issued by this CA")
        now = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise AuthenticationError("client certificate is expired or not yet valid")
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound as exc:
            raise AuthenticationError("client certificate has no SAN") from exc
        uris = [
            u for u in sans.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("spiffe://")
        ]
        if len(uris) != 1:
            raise AuthenticationError(f"client certificate must carry one SPIFFE URI, has {uris}")
        return uris[0]


#: Renewal by certificate never extends the identity: a certificate obtained by presenting a
#: certificate expires no later than the one presented (a second earlier, for clock rounding).
#: So the chain of renewals ends when the certificate first issued for a token does, and a
#: stolen token is worth at most one certificate lifetime. Istio's CA does not bound this (its
#: client-certificate authenticator accepts any unexpired certificate it issued, and signs the
#: requested TTL); this is deliberately stricter (issue 14, item 5).
RENEWAL_MARGIN = dt.timedelta(seconds=1)


def renewal_ttl(requested: int, presented_not_after: dt.datetime, now: dt.datetime) -> int:
    """The TTL (seconds) to sign for a caller authenticated by a certificate expiring at
    ``presented_not_after``: the request (0 = as long as allowed) capped to that expiry."""
    remaining = int((presented_not_after - RENEWAL_MARGIN - now).total_seconds())
    if remaining < 1:
        raise AuthenticationError("the client certificate expires too soon to be renewed")
    return remaining if requested <= 0 else min(requested, remaining)


def certificate_not_after(caller: Caller) -> dt.datetime | None:
    """The expiry of the caller's client certificate, if it presented a parseable one."""
    pem = caller.peer_cert()
    if not pem:
        return None
    try:
        return x509.load_pem_x509_certificate(pem).not_valid_after_utc
    except ValueError:
        return None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception):  # InvalidSignature is not a ValueError
        return False
    return True


class _VerifiedTokens:
    """Tokens already verified, until their ``exp`` (bounded; like Istio's TokenReview cache).

    Keyed by the whole token, so only an identical token hits the cache.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max = max_entries
        self._entries: dict[str, tuple[str, float]] = {}

    def get(self, token: str) -> str | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if entry[1] <= time.time():
            del self._entries[token]
            return None
        return entry[0]

    def put(self, token: str, identity: str, expires: float) -> None:
        if len(self._entries) >= self._max:
            now = time.time()
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            if len(self._entries) >= self._max:
                self._entries.pop(next(iter(self._entries)))
        self._entries[token] = (identity, expires)


class _JwksFile:
    """A JWKS file, re-read only when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mtime = -1
        self._keys: jwt.PyJWKSet | None = None

    def key(self, kid: str | None) -> Any:
        mtime = self._path.stat().st_mtime_ns
        if self._keys is None or mtime != self._mtime:
            self._keys = jwt.PyJWKSet.from_dict(json.loads(self._path.read_text()))
            self._mtime = mtime
        for key in self._keys.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise AuthenticationError(f"JWKS {self._path} has no key {kid!r}")


class JwtAuthenticator:
    """Bearer JWTs from configured issuers, verified against each issuer's JWKS."""

    def __init__(
        self, issuers: Mapping[str, str], audiences: Sequence[str], trust_domain: str | TrustDomain
    ) -> None:
        """``issuers`` maps issuer (``iss``) → JWKS location: a file path or an https URL."""
        self._issuers = dict(issuers)
        self._audiences = list(audiences)
        self._trust_domain = trust_domain
        self._clients = {
            iss: jwt.PyJWKClient(loc, lifespan=60)
            for iss, loc in self._issuers.items()
            if loc.startswith(("https://", "http://"))
        }
        self._files = {
            iss: _JwksFile(Path(loc)) for iss, loc in self._issuers.items() if iss not in self._clients
        }
        self._verified = _VerifiedTokens()

    def _key_for(self, issuer: str, token: str) -> Any:
        if issuer in self._clients:
            return self._clients[issuer].get_signing_key_from_jwt(token).key
        return self._files[issuer].key(jwt.get_unverified_header(token).get("kid"))

    async def authenticate(self, caller: Caller) -> str | None:
        token = bearer_token(caller.metadata)
        if token is None:
            return None
        cached = self._verified.get(token)
        if cached is not None:
            return cached
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"bearer token is not a JWT: {exc}") from exc
        if not isinstance(issuer, str) or issuer not in self._issuers:
            return None  # not ours: maybe a Kubernetes token for TokenReview
        try:
            if issuer in self._clients:  # may fetch the JWKS over the network
                key = await asyncio.to_thread(self._key_for, issuer, token)
            else:
                key = self._key_for(issuer, token)
            claims = jwt.decode(
                token,
                key,
                algorithms=["ES256", "ES384", "RS256", "RS384", "RS512", "PS256"],
                audience=self._audiences,
                issuer=issuer,
                options={"require": ["exp", "iss", "sub", "aud"]},
            )
        except (jwt.PyJWTError, OSError, ValueError) as exc:
            raise AuthenticationError(f"JWT from {issuer!r} rejected: {exc}") from exc
        identity = identity_from_username(str(self._trust_domain), str(claims["sub"]))
        self._verified.put(token, identity, float(claims["exp"]))
        return identity


#: how long a TokenReview verdict is reused for the same token (never past the token's ``exp``):
#: the API server's own success cache for token authentication (10 s), so a revoked token (its
#: pod or ServiceAccount deleted) is accepted here no longer than the API server itself would
REVIEW_CACHE_SECONDS = 10.0
#: TokenReviews per second (and burst) allowed per claimed identity; the rest are refused
REVIEW_RATE, REVIEW_BURST = 5.0, 20


class _Bucket:
    def __init__(self, now: float) -> None:
        self.tokens, self.stamp = float(REVIEW_BURST), now

    def take(self, now: float) -> bool:
        self.tokens = min(REVIEW_BURST, self.tokens + (now - self.stamp) * REVIEW_RATE)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def _unverified_claims(token: str) -> dict[str, Any]:
    try:
        return dict(jwt.decode(token, options={"verify_signature": False}))
    except jwt.PyJWTError:
        return {}  # not a JWT: the API server will say so


class TokenReviewAuthenticator:
    """Kubernetes TokenReview (authentication.k8s.io/v1) with audience ``istio-ca``.

    Accepted tokens are cached by their SHA-256 for ``REVIEW_CACHE_SECONDS`` (at most until the
    token's ``exp``), concurrent requests with one token share one review, and reviews are
    rate-limited per claimed subject, so a workload renewing many certificates with one token
    costs the API server one review. Refusals are not cached.
    """

    def __init__(
        self,
        api: Any,
        audiences: Sequence[str],
        trust_domain: str | TrustDomain,
        on_review: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``api`` is a ``kubernetes.client.AuthenticationV1Api``; ``on_review`` counts reviews made."""
        self._api = api
        self._audiences = list(audiences)
        self._trust_domain = trust_domain
        self._on_review = on_review
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}
        self._inflight: dict[str, asyncio.Future[str]] = {}
        self._buckets: dict[str, _Bucket] = {}

    def _review(self, token: str) -> Any:
        from kubernetes import client

        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=self._audiences))
        return self._api.create_token_review(body)

    async def authenticate(self, caller: Caller) -> str | None:
        token = bearer_token(caller.metadata)
        if token is None:
            return None
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        claims = _unverified_claims(token)
        subject = str(claims.get("sub", ""))
        bucket = self._buckets.setdefault(subject, _Bucket(now))
        if not bucket.take(now):
            raise AuthenticationError(f"TokenReview rate limit reached for subject {subject!r}")
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            identity = await self._authenticate(token)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waited
            raise
        finally:
            del self._inflight[key]
        future.set_result(identity)
        expires = now + REVIEW_CACHE_SECONDS
        if isinstance(claims.get("exp"), int | float):
            expires = min(expires, float(claims["exp"]))
        self._remember(key, identity, expires, now)
        return identity

    def _remember(self, key: str, identity: str, expires: float, now: float) -> None:
        if len(self._cache) >= 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
        if len(self._buckets) >= 10_000:
            self._buckets.clear()
        self._cache[key] = (identity, expires)

    async def _authenticate(self, token: str) -> str:
        self._on_review()
        try:
            review = await asyncio.to_thread(self._review, token)
        except Exception as exc:  # the client raises ApiException, urllib3 errors, ...
            raise AuthenticationError(f"TokenReview call failed: {exc}") from exc
        status = review.status
        if status is None or not status.authenticated:
            raise AuthenticationError(f"TokenReview: not authenticated ({getattr(status, 'error', None)})")
        if status.audiences and not set(status.audiences) & set(self._audiences):
            raise AuthenticationError(f"TokenReview: audiences {status.audiences} exclude {self._audiences}")
        user = status.user
        if user is None or "system:serviceaccounts" not in (user.groups or []):
            raise AuthenticationError("TokenReview: caller is not a service account")
        return identity_from_username(str(self._trust_domain), str(user.username))
