"""Access tokens: JWT, HS256, signed with the secret of the API key named in ``iss``.

Claims (``PROTOCOL.md``): ``iss`` (API key), ``sub`` (identity), ``exp``, ``nbf``, optional
``name``, ``room`` (required unless ``grants.admin``), ``grants`` (a map of five bools,
missing = false) and optional ``shipment``.

:func:`mint_token` makes one; :class:`TokenVerifier` checks one and returns its
:class:`Claims`, or raises :class:`~signalling.errors.Unauthorized` saying why. Only
HS256 is accepted: ``none`` and every other algorithm are refused before any key is
looked up. Neither tokens nor secrets are ever logged or put in an error message.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import jwt

from .errors import Unauthorized

__all__ = ["ALGORITHM", "Grants", "Claims", "mint_token", "TokenVerifier"]

ALGORITHM = "HS256"
# Far above any real token; bounds the work done on garbage.
_MAX_TOKEN_CHARS = 8192


@dataclass(frozen=True)
class Grants:
    """What a token allows, beyond joining its room."""

    publish: bool = False
    subscribe: bool = False
    message: bool = False
    record: bool = False
    admin: bool = False

    @classmethod
    def from_names(cls, names: Iterable[str]) -> Grants:
        """``Grants.from_names(["publish", "subscribe"])``; unknown names: ``ValueError``."""
        names = set(names)
        unknown = names - set(cls.names_all())
        if unknown:
            raise ValueError(f"unknown grants: {', '.join(sorted(unknown))}")
        return cls(**{n: True for n in names})

    @classmethod
    def from_claim(cls, claim: Any) -> Grants:
        """The ``grants`` claim of a token (a map of bools; missing = false)."""
        if claim is None:
            return cls()
        if not isinstance(claim, Mapping):
            raise Unauthorized("token claim 'grants' must be a map")
        values = {}
        for name in cls.names_all():
            value = claim.get(name, False)
            if not isinstance(value, bool):
                raise Unauthorized(f"token claim 'grants.{name}' must be a boolean")
            values[name] = value
        return cls(**values)

    @staticmethod
    def names_all() -> tuple[str, ...]:
        return tuple(f.name for f in fields(Grants))

    def names(self) -> tuple[str, ...]:
        """The names of the grants given, in the order of ``PROTOCOL.md``."""
        return tuple(n for n in self.names_all() if getattr(self, n))

    def allows(self, name: str) -> bool:
        return bool(getattr(self, name, False))

    def to_dict(self) -> dict[str, bool]:
        return {n: getattr(self, n) for n in self.names_all()}


@dataclass(frozen=True)
class Claims:
    """A verified token. ``exp`` and ``nbf`` are Unix times in seconds (``nbf`` is
    ``None`` when the token has none); ``issuer`` is the API key that signed it."""

    identity: str
    name: str | None
    room: str | None
    grants: Grants
    shipment: str | None
    exp: float
    nbf: float | None
    issuer: str

    def expired(self, now: float, leeway: float = 0.0) -> bool:
        return now > self.exp + leeway


def mint_token(
    api_key: str,
    api_secret: str,
    identity: str,
    room: str | None = None,
    grants: Iterable[str] | Grants = (),
    ttl: float = 3600,
    name: str | None = None,
    shipment: str | None = None,
    now: float | None = None,
) -> str:
    """A signed access token valid from ``now`` (default: the current time) for ``ttl``
    seconds. A token without ``room`` must carry the ``admin`` grant."""
    if not isinstance(grants, Grants):
        grants = Grants.from_names(grants)
    if not identity:
        raise ValueError("a token needs an identity")
    if room is None and not grants.admin:
        raise ValueError("a token without a room needs the admin grant")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl),
        "grants": grants.to_dict(),
    }
    for key, value in (("name", name), ("room", room), ("shipment", shipment)):
        if value is not None:
            claims[key] = value
    return jwt.encode(claims, api_secret, algorithm=ALGORITHM)


class TokenVerifier:
    """Verifies tokens against ``keys`` (API key -> secret; several keys at once let
    secrets rotate without downtime), allowing ``leeway`` seconds of clock skew on
    ``exp`` and ``nbf``.

    ``max_ttl`` (seconds, ``None``: no limit) refuses tokens that live longer: their
    lifetime is ``exp`` minus ``iat``, else ``nbf``, else the time of the check (and never
    less than ``exp`` minus that time, so an ``iat`` in the future does not help). An
    empty secret is refused here (``ValueError``), as PyJWT refuses it.
    """

    def __init__(self, keys: Mapping[str, str], leeway: float = 10.0, max_ttl: float | None = None):
        self._keys = dict(keys)
        empty = sorted(str(k) for k, secret in self._keys.items() if not secret)
        if empty:
            raise ValueError(f"empty API secret for API key(s) {', '.join(empty)}")
        self.leeway = leeway
        self.max_ttl = max_ttl

    def __repr__(self) -> str:  # never show the secrets
        return f"TokenVerifier(api_keys={sorted(self._keys)!r}, leeway={self.leeway}, max_ttl={self.max_ttl})"

    def verify(self, token: Any, now: float | None = None) -> Claims:
        """The claims of ``token``, or ``Unauthorized`` saying what is wrong with it."""
        if now is None:
            now = time.time()
        if not isinstance(token, str) or not token:
            raise Unauthorized("missing token")
        if len(token) > _MAX_TOKEN_CHARS:
            raise Unauthorized("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise Unauthorized(f"token algorithm must be {ALGORITHM}")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Unauthorized("malformed token") from None
        issuer = unverified.get("iss")
        secret = self._keys.get(issuer) if isinstance(issuer, str) else None
        if secret is None:
            raise Unauthorized("unknown API key in token claim 'iss'")
        try:
            # exp/nbf are checked below against `now`, which PyJWT cannot be given.
            payload = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.InvalidSignatureError:
            raise Unauthorized("bad token signature") from None
        except jwt.PyJWTError:
            raise Unauthorized("malformed token") from None
        return self._claims(payload, issuer, now)

    def _claims(self, payload: dict[str, Any], issuer: str, now: float) -> Claims:
        exp = payload.get("exp")
        if not _is_time(exp):
            raise Unauthorized("token claim 'exp' missing or not a number")
        if now > exp + self.leeway:
            raise Unauthorized("token expired")
        nbf = payload.get("nbf")
        if nbf is not None:
            if not _is_time(nbf):
                raise Unauthorized("token claim 'nbf' must be a number")
            if now < nbf - self.leeway:
                raise Unauthorized("token not valid yet (nbf is in the future)")
        iat = payload.get("iat")
        if iat is not None and not _is_time(iat):
            raise Unauthorized("token claim 'iat' must be a number")
        if self.max_ttl is not None:
            start = iat if iat is not None else nbf if nbf is not None else now
            lifetime = exp - min(start, now)
            if lifetime > self.max_ttl:
                raise Unauthorized(
                    f"token lifetime of {lifetime:.0f} s is over this node's limit of {self.max_ttl:.0f} s"
                )
        identity = payload.get("sub")
        if not isinstance(identity, str) or not identity:
            raise Unauthorized("token claim 'sub' (identity) missing")
        grants = Grants.from_claim(payload.get("grants"))
        room = _optional_str(payload, "room")
        if room is None and not grants.admin:
            raise Unauthorized("token claim 'room' missing (only admin tokens may omit it)")
        return Claims(
            identity=identity,
            name=_optional_str(payload, "name"),
            room=room,
            grants=grants,
            shipment=_optional_str(payload, "shipment"),
            exp=exp,
            nbf=nbf,
            issuer=issuer,
        )


def _is_time(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _optional_str(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise Unauthorized(f"token claim '{key}' must be a non-empty string")
    return value
