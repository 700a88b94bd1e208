"""Bearer-token authentication (JWT, HS256), scopes and a per-subject rate limit.

Tokens are JWTs signed with HS256 (RFC 7519 / RFC 7518) carrying ``sub`` (the subject: who
acts; it is recorded as the author of configuration changes), ``scope`` (space-separated, as
in RFC 8693: ``read``, ``trade``, ``admin``), ``iss``, ``iat``, ``exp`` and a random ``jti``.
Scopes do not imply one another: a token gets exactly the scopes it lists (mint
``read trade admin`` for full access).

Route protection (:func:`require`): no token, a malformed, badly signed or wrongly issued
token, or an expired one -> 401 (with ``WWW-Authenticate: Bearer``); a valid token without the
route's scope -> 403; more requests than the subject's token bucket allows -> 429 with
``Retry-After`` (whole seconds until one request is allowed again).

Rate limit: a token bucket per subject holding at most ``burst`` requests, refilled at
``rate`` requests per second; each request takes one token (Turner 1986's leaky-bucket
policing, in its token-bucket form).
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ._models import ApiError
from ._settings import MIN_SECRET_LENGTH

__all__ = [
    "Scope",
    "Principal",
    "mint_token",
    "decode_token",
    "TokenBucketLimiter",
    "require",
    "verifier",
    "LOCAL_SUBJECT",
]

ALGORITHM = "HS256"
LOCAL_SUBJECT = "local"
"""The subject every request acts as in local mode (``auth_disabled``)."""


class Scope(StrEnum):
    """What a token may do: ``read`` (GET routes), ``trade`` (order entry), ``admin``
    (controls, configuration, start/stop/kill)."""

    READ = "read"
    TRADE = "trade"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: subject and scopes."""

    subject: str
    scopes: frozenset[Scope]


def _scopes(scopes: Iterable[str] | str) -> list[Scope]:
    items = scopes.split() if isinstance(scopes, str) else list(scopes)
    out = []
    for s in items:
        try:
            out.append(Scope(s))
        except ValueError:
            raise ValueError(
                f"scopes: unknown scope {s!r} (allowed: {', '.join(m.value for m in Scope)})"
            ) from None
    return out


def mint_token(
    subject: str,
    scopes: Iterable[str] | str,
    ttl_s: float,
    secret: str,
    *,
    issuer: str = "jaxmm",
    now: float | None = None,
) -> str:
    """A signed HS256 JWT for ``subject`` with ``scopes``, valid for ``ttl_s`` seconds.

    Args:
        subject: who acts (1-64 characters).
        scopes: iterable of ``"read"``, ``"trade"``, ``"admin"`` or one space-separated string.
        ttl_s: lifetime in seconds (> 0, at most one year).
        secret: the signing secret (>= 32 characters).
        issuer: the ``iss`` claim (must match the server's ``jwt_issuer``).
        now: issue time, Unix seconds (default: the current time).

    Example:
        >>> secret = "s" * 32
        >>> tok = mint_token("alice", ["read", "trade"], 60, secret, now=1e9)
        >>> claims = decode_token(tok, secret, now=1e9 + 30)
        >>> claims.subject, sorted(s.value for s in claims.scopes)
        ('alice', ['read', 'trade'])
        >>> mint_token("alice", ["root"], 60, secret)
        Traceback (most recent call last):
        ...
        ValueError: scopes: unknown scope 'root' (allowed: read, trade, admin)
    """
    if not isinstance(subject, str) or not 0 < len(subject) <= 64:
        raise ValueError("subject: must be a non-empty string of at most 64 characters")
    scope_list = _scopes(scopes)
    if not scope_list:
        raise ValueError("scopes: at least one scope is required")
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not 0 < ttl_s <= 3.2e7:
        raise ValueError(f"ttl_s: must be in (0, 3.2e7] seconds, got {ttl_s!r}")
    _check_secret(secret)
    iat = time.time() if now is None else float(now)
    claims = {
        "sub": subject,
        "scope": " ".join(dict.fromkeys(s.value for s in scope_list)),
        "iss": issuer,
        "iat": int(iat),
        "exp": int(math.ceil(iat + ttl_s)),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _check_secret(secret: Any) -> None:
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"secret: must be a string of at least {MIN_SECRET_LENGTH} characters")


def decode_token(
    token: str, secret: str, *, issuer: str = "jaxmm", now: float | None = None
) -> Principal:
    """Verify ``token`` (signature, issuer, expiry) and return its :class:`Principal`.

    Raises ``jwt.ExpiredSignatureError`` for an expired token and ``jwt.InvalidTokenError``
    (its base class) for every other failure, including unknown scopes.
    """
    return _decode(token, secret, issuer, now)[0]


def _decode(token: str, secret: str, issuer: str, now: float | None) -> tuple[Principal, float]:
    """:func:`decode_token` and the token's ``exp`` (Unix seconds)."""
    _check_secret(secret)
    opts = {"require": ["sub", "exp", "iat", "iss", "scope"], "verify_exp": now is None}
    claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=issuer, options=opts)
    if now is not None and now >= claims["exp"]:
        raise jwt.ExpiredSignatureError("Signature has expired")
    sub, scope = claims["sub"], claims["scope"]
    if not isinstance(sub, str) or not 0 < len(sub) <= 64 or not isinstance(scope, str):
        raise jwt.InvalidTokenError("sub/scope: malformed claims")
    try:
        return Principal(sub, frozenset(_scopes(scope))), float(claims["exp"])
    except ValueError as exc:
        raise jwt.InvalidTokenError(str(exc)) from None


VERIFIED_CACHE_SIZE = 4096
"""Tokens kept verified (per secret and issuer) so a client's next request skips the JWT
signature check; each is still refused from the moment it expires."""

_verified: dict[tuple[str, str, str], tuple[Principal, float]] = {}
_verified_lock = threading.Lock()


def _verified_principal(token: str, secret: str, issuer: str) -> Principal:
    """:func:`decode_token` at the current time, remembering tokens that verified: a hit
    costs one dict lookup and the expiry check instead of base64, JSON and an HMAC."""
    key = (token, secret, issuer)
    hit = _verified.get(key)
    now = time.time()
    if hit is not None:
        if now < hit[1]:
            return hit[0]
        _verified.pop(key, None)
        raise jwt.ExpiredSignatureError("Signature has expired")
    principal, exp = _decode(token, secret, issuer, now)
    with _verified_lock:  # the API may serve from two threads (jaxmm.api._threaded)
        if len(_verified) >= VERIFIED_CACHE_SIZE:
            del _verified[next(iter(_verified))]  # the oldest entry
        _verified[key] = (principal, exp)
    return principal


class TokenBucketLimiter:
    """Per-key token buckets: ``burst`` requests at once, refilled at ``rate`` per second.

    Args:
        rate: refill rate, requests per second (> 0).
        burst: bucket capacity (>= 1).
        clock: monotonic seconds (default ``time.monotonic``).
        max_keys: buckets kept; the least recently used (full ones first) are dropped beyond
            it, which only ever makes a limit more lenient.

    Example:
        >>> t = [0.0]
        >>> lim = TokenBucketLimiter(rate=1.0, burst=2, clock=lambda: t[0])
        >>> [lim.acquire("a") for _ in range(3)]
        [0.0, 0.0, 1.0]
        >>> t[0] = 1.0
        >>> lim.acquire("a"), lim.acquire("b")
        (0.0, 0.0)
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf:
            raise ValueError(f"rate: must be a finite number > 0 (requests/s), got {rate!r}")
        if type(burst) is not int or burst < 1:
            raise ValueError(f"burst: must be an int >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take one token for ``key``: 0.0 if allowed, else the seconds to wait (> 0) and
        nothing is taken."""
        with self._lock:  # one bucket update at a time, from any thread
            return self._acquire(key)

    def _acquire(self, key: str) -> float:
        now = self._clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        if len(self._buckets) > self._max_keys:
            del self._buckets[next(iter(self._buckets))]  # least recently used
        return wait


def verifier(settings: Any) -> Callable[[str | None, str], str]:
    """``verify(token, scope) -> subject`` for transports other than REST (the WebSocket
    handshake): raises :class:`~jaxmm.api.ApiError` with ``status_code`` 401 (no, invalid or
    expired token) or 403 (scope missing). In local mode every token (or none) passes as
    :data:`LOCAL_SUBJECT`.

    Example:
        >>> from jaxmm.api import ApiSettings
        >>> verify = verifier(ApiSettings(jwt_secret="k" * 32))
        >>> verify(mint_token("bob", "read", 60, "k" * 32), "read")
        'bob'
        >>> verify(mint_token("bob", "read", 60, "k" * 32), "admin")
        Traceback (most recent call last):
        ...
        jaxmm.api._models.ApiError: this route needs scope 'admin'; the token has ['read']
    """

    def verify(token: str | None, scope: str) -> str:
        return _authenticate(settings, token, Scope(scope)).subject

    return verify


def _authenticate(settings: Any, token: str | None, needed: Scope) -> Principal:
    if settings.auth_disabled:
        return Principal(LOCAL_SUBJECT, frozenset(Scope))
    if not token:
        raise _unauthorized("a bearer token is required", "missing_token")
    try:
        principal = _verified_principal(
            token, settings.jwt_secret.get_secret_value(), settings.jwt_issuer
        )
    except jwt.ExpiredSignatureError:
        raise _unauthorized("the token has expired", "expired_token") from None
    except jwt.InvalidTokenError as exc:
        raise _unauthorized(f"invalid token ({exc})", "invalid_token") from None
    if needed not in principal.scopes:
        raise ApiError(
            403,
            "scope",
            "insufficient_scope",
            f"this route needs scope {needed.value!r}; the token has "
            f"{sorted(s.value for s in principal.scopes)}",
        )
    return principal


_bearer = HTTPBearer(auto_error=False, description="JWT from `jaxmm token` (HS256)")


def _unauthorized(message: str, rule: str) -> ApiError:
    return ApiError(
        401, "authorization", rule, message, headers={"WWW-Authenticate": 'Bearer realm="jaxmm"'}
    )


RATE_COUNTED = "jaxmm.rate_counted"
"""ASGI scope key: set (by the server, never from a request) on a request whose rate limit was
already taken by the process that accepted it (:mod:`jaxmm.api._process`); :func:`require`
then does not count it again."""


def rate_limited(settings: Any, wait: float) -> ApiError:
    """The 429 answer for a subject whose bucket is empty; ``wait``: seconds until one request
    is allowed again (``Retry-After`` in whole seconds, at least 1)."""
    return ApiError(
        429,
        "rate_limit",
        "rate_limited",
        f"rate limit of {settings.rate_limit_per_s:g} requests/s "
        f"(burst {settings.rate_limit_burst}) exceeded; retry in {wait:.3f} s",
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


def subject_of(settings: Any, authorization: str | None) -> str | None:
    """The subject of a request's ``Authorization`` header value when it holds a valid bearer
    token (whatever its scopes; :data:`LOCAL_SUBJECT` in local mode), else None: what a rate
    limit is counted against before the route (and its scope) is known.

    Example:
        >>> from jaxmm.api import ApiSettings
        >>> s = ApiSettings(jwt_secret="k" * 32)
        >>> subject_of(s, "Bearer " + mint_token("bob", "read", 60, "k" * 32)), subject_of(s, None)
        ('bob', None)
    """
    if settings.auth_disabled:
        return LOCAL_SUBJECT
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        secret = settings.jwt_secret.get_secret_value()
        return _verified_principal(token.strip(), secret, settings.jwt_issuer).subject
    except (jwt.InvalidTokenError, ValueError):
        return None


def require(scope: Scope | str) -> Callable[..., Any]:
    """A FastAPI dependency: authenticate the bearer token, check ``scope``, apply the
    subject's rate limit; returns the :class:`Principal`.

    Reads the app's settings and limiter from ``request.app.state`` (set by ``create_app``).
    """
    needed = Scope(scope)

    async def dependency(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        state = request.app.state
        settings = state.settings
        token = None
        if creds is not None and creds.scheme.lower() == "bearer":
            token = creds.credentials
        principal = _authenticate(settings, token, needed)
        if not request.scope.get(RATE_COUNTED):  # else counted where the request came in
            wait = state.limiter.acquire(principal.subject)
            if wait > 0:
                raise rate_limited(settings, wait)
        request.state.principal = principal
        return principal

    dependency.__name__ = f"require_{needed.value}"
    return dependency
