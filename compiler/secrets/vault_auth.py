"""Logging in to Vault: token, AppRole, Kubernetes and JWT/OIDC (e.g. GitHub Actions).

Credentials come from files or environment variables named in the source config; they are never
logged, echoed in errors or written anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import SourceError
from .vault_config import VaultAuth

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _missing(what: str, hint: str) -> SourceError:
    return SourceError("VaultAuthFailed", f"no {what} for Vault login", hint,
                       source_failure=False)


def _read_file(path: str, root: Path, what: str) -> str:
    full = Path(path).expanduser()
    full = full if full.is_absolute() else root / full
    try:
        value = full.read_text(encoding="utf-8").strip()
    except OSError:
        raise _missing(what, f"cannot read {path}: check the file exists and is readable") \
            from None
    if not value:
        raise _missing(what, f"{path} is empty")
    return value


def _from(env: Mapping[str, str], root: Path, *, file: str | None, var: str | None,
          what: str, hint: str) -> str:
    if file:
        return _read_file(file, root, what)
    if var and env.get(var):
        return env[var].strip()
    raise _missing(what, hint)


def _token(auth: VaultAuth, env: Mapping[str, str], root: Path) -> str:
    if auth.token_file:
        return _read_file(auth.token_file, root, "token")
    if env.get("VAULT_TOKEN"):
        return env["VAULT_TOKEN"].strip()
    helper = Path("~/.vault-token").expanduser()
    if helper.is_file():
        return _read_file(str(helper), root, "token")
    raise _missing("token", "set VAULT_TOKEN, spec.vault.auth.tokenFile or ~/.vault-token")


def login(client: Any, auth: VaultAuth, root: Path, env: Mapping[str, str]) -> None:
    """Authenticate `client` in place; hvac keeps the resulting token on the client."""
    if auth.method == "token":
        client.token = _token(auth, env, root)
        client.auth.token.lookup_self()  # fail early (403) on a bad or expired token
    elif auth.method == "approle":
        role_id = auth.role_id or _from(env, root, file=None, var=auth.role_id_env,
                                        what="AppRole role id", hint="set roleId or roleIdEnv")
        secret_id = _from(env, root, file=auth.secret_id_file, var=auth.secret_id_env,
                          what="AppRole secret id",
                          hint=f"set {auth.secret_id_env} or secretIdFile")
        client.auth.approle.login(role_id=role_id, secret_id=secret_id,
                                  mount_point=auth.mount or "approle")
    elif auth.method == "kubernetes":
        jwt = _from(env, root, file=auth.jwt_file or (None if auth.jwt_env else
                                                       SERVICE_ACCOUNT_TOKEN),
                    var=auth.jwt_env, what="service-account token", hint="set jwtFile")
        client.auth.kubernetes.login(role=_role(auth), jwt=jwt,
                                     mount_point=auth.mount or "kubernetes")
    else:
        jwt = _from(env, root, file=auth.jwt_file, var=auth.jwt_env, what="JWT",
                    hint="set jwtEnv (for GitHub Actions, the OIDC token) or jwtFile")
        client.auth.jwt.jwt_login(role=_role(auth), jwt=jwt, path=auth.mount or "jwt")


def _role(auth: VaultAuth) -> str:
    if not auth.role:
        raise _missing("role", f"set spec.vault.auth.role for {auth.method} login")
    return auth.role
