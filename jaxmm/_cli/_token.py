"""``jaxmm token --subject NAME --scopes read,trade --ttl 3600``: mint an API bearer token.

The signing secret comes from the API settings (:class:`jaxmm.api.ApiSettings`): the file
given with ``--config`` (its ``jwt_secret``, top level or in an ``[api]`` table) or
``JAXMM_API_SETTINGS``, overridden by ``JAXMM_JWT_SECRET``; the issuer from ``jwt_issuer`` /
``JAXMM_JWT_ISSUER``. The token (HS256 JWT, :func:`jaxmm.api._auth.mint_token`) is printed
alone on stdout, so ``TOKEN=$(jaxmm token --subject me --scopes read)`` works.
"""

from __future__ import annotations

import argparse
import os

from ._common import CliError

__all__ = ["mint_from_settings", "run_token"]


def mint_from_settings(
    subject: str, scopes: str, ttl_s: float, config: str | None = None, env=None
) -> str:
    """Mint a token with the secret and issuer of the API settings (file, then environment).

    Raises:
        CliError: the API extra is missing, or no secret is configured.
        ValueError: naming the field (subject, scopes, ttl_s, secret) that is out of bounds.
    """
    try:
        from jaxmm.api._auth import mint_token
        from jaxmm.api._settings import ApiSettings
    except ImportError as exc:
        raise CliError(
            f"token needs jaxmm.api and its extra (pip install 'jaxmm[api]'): {exc}"
        ) from None
    env = dict(os.environ if env is None else env)
    env.pop("JAXMM_AUTH_DISABLED", None)  # minting always needs the secret
    try:
        settings = ApiSettings.load(config, env=env)
    except ValueError as exc:
        if "jwt_secret" in str(exc):
            raise CliError(
                "no signing secret: set JAXMM_JWT_SECRET (>= 32 characters) or give "
                "--config FILE with jwt_secret"
            ) from None
        raise
    scope_list = [s.strip() for s in scopes.replace(" ", ",").split(",") if s.strip()]
    secret = settings.jwt_secret.get_secret_value()
    return mint_token(subject, scope_list, ttl_s, secret, issuer=settings.jwt_issuer)


def run_token(args: argparse.Namespace) -> int:
    """``jaxmm token``: see the module docstring."""
    print(mint_from_settings(args.subject, args.scopes, args.ttl, args.config))
    return 0
