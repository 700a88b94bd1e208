"""jaxmm.api authentication, scopes, rate limit, CORS, local mode and settings.

Requests go through the real ASGI app (httpx ``ASGITransport``) built over the real market
maker; nothing is mocked. Token expiry and the rate limit use the real clocks with margins of
an hour and a burst that cannot refill in the test's lifetime.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
import jwt
import pytest
from pydantic import ValidationError

from jaxmm.api import (
    LOCAL_MODE_HEADER,
    ApiSettings,
    Scope,
    TokenBucketLimiter,
    create_app,
    decode_token,
    mint_token,
)
from jaxmm.engine import MarketMakerConfig, OptionsMarketMaker, UnderlyingConfig

SECRET = "test-secret-" + "0123456789abcdef" * 2
V1 = "/api/v1"

CONFIG = MarketMakerConfig(
    underlyings=[
        UnderlyingConfig(
            symbol="XYZ",
            spot=100.0,
            strikes=[95.0, 100.0, 105.0],
            expiries=[30 / 365],
            hedge_band=5.0,
        )
    ]
)


def _app(**settings):
    kw = {"jwt_secret": SECRET, **settings}
    return create_app(OptionsMarketMaker(CONFIG), settings=ApiSettings(**kw))


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------- tokens


def test_mint_and_decode_round_trip_and_claims():
    now = time.time()
    tok = mint_token("desk-1", ["read", "admin"], 120, SECRET, now=now)
    p = decode_token(tok, SECRET)
    assert p.subject == "desk-1"
    assert p.scopes == frozenset({Scope.READ, Scope.ADMIN})
    claims = jwt.decode(tok, SECRET, algorithms=["HS256"], issuer="jaxmm")
    assert claims["exp"] - claims["iat"] in (120, 121)  # ceil of the fractional issue time
    assert claims["scope"] == "read admin"
    assert jwt.get_unverified_header(tok)["alg"] == "HS256"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subject": ""}, "subject"),
        ({"scopes": []}, "scopes"),
        ({"scopes": ["read", "sudo"]}, "scopes: unknown scope 'sudo'"),
        ({"ttl_s": 0}, "ttl_s"),
        ({"ttl_s": float("nan")}, "ttl_s"),
        ({"secret": "short"}, "secret: must be a string of at least 32"),
    ],
)
def test_mint_token_rejects_bad_arguments(kwargs, match):
    args = {"subject": "a", "scopes": ["read"], "ttl_s": 60, "secret": SECRET, **kwargs}
    with pytest.raises(ValueError, match=match):
        mint_token(**args)


def test_decode_rejects_other_secret_issuer_and_expiry():
    tok = mint_token("a", "read", 60, SECRET)
    with pytest.raises(jwt.InvalidSignatureError):
        decode_token(tok, "x" * 40)
    with pytest.raises(jwt.InvalidIssuerError):
        decode_token(tok, SECRET, issuer="other")
    old = mint_token("a", "read", 60, SECRET, now=time.time() - 3600)
    with pytest.raises(jwt.ExpiredSignatureError):
        decode_token(old, SECRET)
    forged = jwt.encode(
        {"sub": "a", "scope": "god", "iss": "jaxmm", "iat": 1, "exp": 2**40},
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(jwt.InvalidTokenError, match="unknown scope 'god'"):
        decode_token(forged, SECRET)


# ---------------------------------------------------------------- 401 / 403


def test_no_token_invalid_token_expired_token_are_401():
    async def main():
        app = _app()
        async with _client(app) as c:
            r = await c.get(f"{V1}/mm/quotes")
            assert r.status_code == 401
            assert r.json()["error"]["rule"] == "missing_token"
            assert r.headers["www-authenticate"].startswith("Bearer")

            r = await c.get(f"{V1}/mm/quotes", headers=_bearer("not.a.jwt"))
            assert r.status_code == 401 and r.json()["error"]["rule"] == "invalid_token"

            other = mint_token("a", "read", 60, "y" * 40)
            r = await c.get(f"{V1}/mm/quotes", headers=_bearer(other))
            assert r.status_code == 401 and r.json()["error"]["rule"] == "invalid_token"

            expired = mint_token("a", "read", 60, SECRET, now=time.time() - 3600)
            r = await c.get(f"{V1}/mm/quotes", headers=_bearer(expired))
            assert r.status_code == 401
            assert r.json()["error"] == {
                "field": "authorization",
                "rule": "expired_token",
                "message": "the token has expired",
            }

            r = await c.get(f"{V1}/mm/quotes", headers={"Authorization": "Basic YTpi"})
            assert r.status_code == 401

            # /health needs no token
            r = await c.get(f"{V1}/health")
            assert r.status_code == 200 and r.json()["auth"] == "enabled"

    _run(main())


def test_a_remembered_token_still_expires_and_binds_to_its_secret(monkeypatch):
    """Verified tokens are remembered (jaxmm.api._auth._verified_principal) so later requests
    skip the signature check; the token must still be refused from its expiry on, and a
    server with another secret must not accept it from that memory."""
    from jaxmm.api import _auth

    async def main():
        app, other = _app(), _app(jwt_secret="z" * 40)
        t0 = time.time()
        token = mint_token("carol", "read", 3600, SECRET, now=t0 - 3590)  # 10 s left
        async with _client(app) as c, _client(other) as c2:
            for _ in range(2):  # verified, then served from memory
                assert (
                    await c.get(f"{V1}/mm/positions", headers=_bearer(token))
                ).status_code == 200
            assert any(k[0] == token for k in _auth._verified)
            r = await c2.get(f"{V1}/mm/positions", headers=_bearer(token))
            assert r.status_code == 401 and r.json()["error"]["rule"] == "invalid_token"
            monkeypatch.setattr(_auth.time, "time", lambda: t0 + 11)  # past its exp
            r = await c.get(f"{V1}/mm/positions", headers=_bearer(token))
            assert r.status_code == 401 and r.json()["error"]["rule"] == "expired_token"
            assert not any(k[0] == token for k in _auth._verified)

    _run(main())


@pytest.mark.parametrize(
    ("method", "path", "body", "needed"),
    [
        ("GET", "/mm/positions", None, "read"),
        ("POST", "/orders", {"symbol": "XYZ", "side": "buy", "quantity": 1, "price": 1}, "trade"),
        ("DELETE", "/orders/api-1", None, "trade"),
        ("POST", "/orders/cancel-all", {}, "trade"),
        ("PUT", "/mm/controls", {"spread_multiplier": 2.0}, "admin"),
        ("PUT", "/mm/config", {}, "admin"),
        ("POST", "/mm/kill", None, "admin"),
        ("POST", "/mm/price", {"underlying": "XYZ", "price": 101.0}, "admin"),
    ],
)
def test_wrong_scope_is_403_and_changes_nothing(method, path, body, needed):
    others = [s.value for s in Scope if s.value != needed]

    async def main():
        app = _app()
        engine = app.state.engine
        before = engine.config
        async with _client(app) as c:
            tok = mint_token("bob", others, 60, SECRET)
            r = await c.request(method, V1 + path, json=body, headers=_bearer(tok))
            assert r.status_code == 403, r.text
            err = r.json()["error"]
            assert err["rule"] == "insufficient_scope" and repr(needed) in err["message"]
            # the right scope gets past auth (any answer but 401/403)
            tok = mint_token("bob", [needed], 60, SECRET)
            r = await c.request(method, V1 + path, json=body, headers=_bearer(tok))
            assert r.status_code not in (401, 403), r.text
        if method == "GET":
            assert engine.config == before

    _run(main())


# ---------------------------------------------------------------- rate limit


def test_rate_limit_per_subject_is_429_with_retry_after():
    async def main():
        # 3 requests at once, then one per 1000 s: the 4th is refused for ~1000 s
        app = _app(rate_limit_per_s=1e-3, rate_limit_burst=3)
        alice = _bearer(mint_token("alice", "read", 600, SECRET))
        bob = _bearer(mint_token("bob", "read", 600, SECRET))
        async with _client(app) as c:
            codes = [(await c.get(f"{V1}/version", headers=alice)).status_code for _ in range(3)]
            assert codes == [200, 200, 200]
            r = await c.get(f"{V1}/version", headers=alice)
            assert r.status_code == 429
            assert r.json()["error"]["rule"] == "rate_limited"
            retry = int(r.headers["retry-after"])
            assert 990 <= retry <= 1000
            # another subject has its own bucket
            assert (await c.get(f"{V1}/version", headers=bob)).status_code == 200

    _run(main())


def test_token_bucket_refills_at_the_rate():
    t = [100.0]
    lim = TokenBucketLimiter(rate=2.0, burst=4, clock=lambda: t[0])
    assert [lim.acquire("k") for _ in range(4)] == [0.0] * 4
    assert lim.acquire("k") == pytest.approx(0.5)  # 1 token at 2/s
    t[0] += 0.25  # half a token back
    assert lim.acquire("k") == pytest.approx(0.25)
    t[0] += 0.25
    assert lim.acquire("k") == 0.0
    t[0] += 100.0  # never above the burst
    assert [lim.acquire("k") for _ in range(5)][-1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="rate"):
        TokenBucketLimiter(rate=0.0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        TokenBucketLimiter(rate=1.0, burst=0)


# ---------------------------------------------------------------- CORS, local mode


def test_cors_closed_by_default_and_open_for_configured_origins():
    pre = {
        "Origin": "https://desk.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }

    async def main():
        async with _client(_app()) as c:
            r = await c.options(f"{V1}/mm/quotes", headers=pre)
            assert "access-control-allow-origin" not in r.headers
            r = await c.get(f"{V1}/health", headers={"Origin": "https://desk.example"})
            assert "access-control-allow-origin" not in r.headers
        async with _client(_app(cors_origins=["https://desk.example"])) as c:
            r = await c.options(f"{V1}/mm/quotes", headers=pre)
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == "https://desk.example"
            r = await c.options(f"{V1}/mm/quotes", headers={**pre, "Origin": "https://evil"})
            assert "access-control-allow-origin" not in r.headers

    _run(main())


def test_local_mode_warns_loudly_and_marks_every_response(caplog):
    async def main():
        with caplog.at_level(logging.WARNING, logger="jaxmm.api"):
            app = create_app(OptionsMarketMaker(CONFIG), settings=ApiSettings(auth_disabled=True))
        assert any(
            r.levelno == logging.WARNING and "AUTHENTICATION IS DISABLED" in r.getMessage()
            for r in caplog.records
        )
        async with _client(app) as c:
            r = await c.get(f"{V1}/mm/controls")  # no token needed
            assert r.status_code == 200
            assert r.headers[LOCAL_MODE_HEADER[0]] == LOCAL_MODE_HEADER[1]
            r = await c.get(f"{V1}/no/such/route")
            assert r.status_code == 404 and r.headers[LOCAL_MODE_HEADER[0]] == "disabled"
            assert (await c.get(f"{V1}/health")).json()["auth"] == "disabled"
        async with _client(_app()) as c:
            assert LOCAL_MODE_HEADER[0] not in (await c.get(f"{V1}/health")).headers

    _run(main())


def test_websocket_verifier_is_installed_and_checks_scope():
    app = _app()
    verify = app.state.auth_verify
    assert verify(mint_token("w", "read", 60, SECRET), "read") == "w"
    with pytest.raises(Exception) as e:
        verify(mint_token("w", "trade", 60, SECRET), "read")
    assert e.value.status_code == 403
    with pytest.raises(Exception) as e:
        verify(None, "read")
    assert e.value.status_code == 401


# ---------------------------------------------------------------- settings


def test_settings_from_env_file_and_precedence(tmp_path):
    toml = tmp_path / "api.toml"
    toml.write_text(
        '[api]\njwt_secret = "%s"\ncors_origins = ["https://a"]\nrate_limit_burst = 7\n'
        % ("f" * 32)
    )
    s = ApiSettings.load(toml, env={})
    assert s.jwt_secret.get_secret_value() == "f" * 32
    assert s.cors_origins == ["https://a"] and s.rate_limit_burst == 7
    assert "f" * 32 not in repr(s)  # the secret never shows

    env = {
        "JAXMM_API_SETTINGS": str(toml),
        "JAXMM_RATE_LIMIT_BURST": "9",
        "JAXMM_CORS_ORIGINS": "https://b, https://c",
    }
    s = ApiSettings.load(env=env)
    assert s.rate_limit_burst == 9 and s.cors_origins == ["https://b", "https://c"]
    assert ApiSettings.load(env=env, rate_limit_burst=11).rate_limit_burst == 11

    js = tmp_path / "api.json"
    js.write_text(json.dumps({"auth_disabled": True}))
    s = ApiSettings.load(js, env={})
    assert s.auth_disabled and s.jwt_secret is None
    s = ApiSettings.load(env={"JAXMM_AUTH_DISABLED": "yes"})
    assert s.auth_disabled


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({}, "jwt_secret"),
        ({"JAXMM_JWT_SECRET": "short"}, "jwt_secret: must be at least 32"),
        ({"JAXMM_JWT_SECRET": "s" * 32, "JAXMM_RATE_LIMIT_PER_S": "0"}, "rate_limit_per_s"),
        ({"JAXMM_AUTH_DISABLED": "maybe"}, "auth_disabled"),
        ({"JAXMM_API_SETTINGS": "/nonexistent/x.toml"}, "settings file: cannot read"),
    ],
)
def test_settings_reject_bad_values(env, match):
    with pytest.raises(ValueError, match=match):
        ApiSettings.load(env=env)


def test_settings_file_errors(tmp_path):
    bad = tmp_path / "api.yaml"
    bad.write_text("x: 1")
    with pytest.raises(ValueError, match="suffix must be .toml or .json"):
        ApiSettings.load(bad, env={})
    broken = tmp_path / "api.toml"
    broken.write_text("jwt_secret = ")
    with pytest.raises(ValueError, match="not valid TOML"):
        ApiSettings.load(broken, env={})
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"jwt_secret": "s" * 32, "jwt_secrte": "typo"}))
    with pytest.raises(ValidationError, match="jwt_secrte"):
        ApiSettings.load(extra, env={})


def test_console_page_is_served_at_the_root():
    from pathlib import Path

    import jaxmm.api

    app = _app()  # (the WebSocket route: tests/test_api_ws.py streams through create_app)
    index = Path(jaxmm.api.__file__).parent / "static" / "index.html"

    async def main():
        async with _client(app) as c:
            r = await c.get("/")
            assert r.status_code == 200
            assert r.text == index.read_text()

    _run(main())
