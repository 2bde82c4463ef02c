from __future__ import annotations

import time

import jwt
import pytest

from signalling.errors import Unauthorized
from signalling.tokens import Claims, Grants, TokenVerifier, mint_token

KEY = "key-1"
SECRET = "secret-" + "s" * 60
NOW = 1_700_000_000


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier({KEY: SECRET, "key-2": "other-" + "o" * 40}, leeway=5)


def raw(claims: dict, secret: str | None = SECRET, algorithm: str = "HS256", **kwargs) -> str:
    base = {"iss": KEY, "sub": "alice", "room": "dock-1", "nbf": NOW, "exp": NOW + 60}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, secret, algorithm=algorithm, **kwargs)


def test_mint_and_verify_every_claim(verifier):
    token = mint_token(
        KEY, SECRET, "alice", room="dock-1", grants=["publish", "message"], ttl=60, name="Alice", shipment="SH-1", now=NOW
    )
    claims = verifier.verify(token, now=NOW + 1)
    assert claims == Claims(
        identity="alice",
        name="Alice",
        room="dock-1",
        grants=Grants(publish=True, message=True),
        shipment="SH-1",
        exp=NOW + 60,
        nbf=NOW,
        issuer=KEY,
    )
    assert claims.grants.names() == ("publish", "message")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_admin_token_needs_no_room(verifier):
    claims = verifier.verify(mint_token(KEY, SECRET, "ops", grants=["admin"], now=NOW), now=NOW)
    assert claims.room is None and claims.grants.admin


def test_any_jwt_library_token_is_accepted(verifier):
    # No nbf, grants partly given, a second key.
    token = raw({"iss": "key-2", "nbf": None, "grants": {"subscribe": True}}, secret="other-" + "o" * 40)
    claims = verifier.verify(token, now=NOW)
    assert claims.grants == Grants(subscribe=True) and claims.nbf is None and claims.issuer == "key-2"


REFUSED = {
    "wrong secret": (lambda: raw({}, secret="not-the-" + "s" * 40), "bad token signature"),
    "expired": (lambda: raw({"exp": NOW - 6}), "token expired"),
    "not yet valid": (lambda: raw({"nbf": NOW + 6}), "not valid yet"),
    "alg none": (lambda: raw({}, secret=None, algorithm="none"), "algorithm must be HS256"),
    "alg HS512": (lambda: raw({}, algorithm="HS512"), "algorithm must be HS256"),
    "unknown iss": (lambda: raw({"iss": "key-9"}), "unknown API key"),
    "no iss": (lambda: raw({"iss": None}), "unknown API key"),
    "no sub": (lambda: raw({"sub": None}), "'sub'"),
    "empty sub": (lambda: raw({"sub": ""}), "'sub'"),
    "no room": (lambda: raw({"room": None}), "'room' missing"),
    "no exp": (lambda: raw({"exp": None}), "'exp'"),
    "exp not a number": (lambda: raw({"exp": "tomorrow"}), "malformed token|'exp'"),
    "grants not a map": (lambda: raw({"grants": ["admin"]}), "'grants' must be a map"),
    "grant not a bool": (lambda: raw({"grants": {"admin": "yes"}}), "'grants.admin' must be a boolean"),
    "room not a string": (lambda: raw({"room": 5}), "'room' must be"),
    "garbage": (lambda: "not.a.jwt", "malformed"),
    "empty": (lambda: "", "missing token"),
    "huge": (lambda: "a" * 10000, "too long"),
    "not a string": (lambda: 12, "missing token"),
    "tampered payload": (lambda: _tamper(raw({})), "bad token signature|malformed"),
}


def _tamper(token: str) -> str:
    header, _, signature = token.split(".")
    other = raw({"grants": {"admin": True}}).split(".")[1]
    return f"{header}.{other}.{signature}"


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_tokens_say_why(verifier, case):
    make, text = REFUSED[case]
    token = make()
    with pytest.raises(Unauthorized, match=text) as info:
        verifier.verify(token, now=NOW)
    assert info.value.code == "unauthorized"
    # Never echo the token or a secret.
    assert SECRET not in info.value.message
    if isinstance(token, str) and len(token) > 10:
        assert token not in info.value.message


def test_leeway_allows_small_clock_skew(verifier):
    assert verifier.verify(raw({"exp": NOW - 4}), now=NOW)
    assert verifier.verify(raw({"nbf": NOW + 4}), now=NOW)


def test_default_now_is_the_current_time(verifier):
    assert verifier.verify(mint_token(KEY, SECRET, "alice", "dock-1")).identity == "alice"
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(mint_token(KEY, SECRET, "alice", "dock-1", ttl=60, now=time.time() - 120))


def test_claims_expiry():
    claims = TokenVerifier({KEY: SECRET}).verify(raw({}), now=NOW)
    assert not claims.expired(NOW + 60)
    assert claims.expired(NOW + 61)
    assert not claims.expired(NOW + 61, leeway=5)


def test_mint_refuses_what_verify_would_refuse():
    with pytest.raises(ValueError, match="admin"):
        mint_token(KEY, SECRET, "alice")
    with pytest.raises(ValueError, match="unknown grants: fly"):
        mint_token(KEY, SECRET, "alice", "dock-1", grants=["fly"])
    with pytest.raises(ValueError, match="identity"):
        mint_token(KEY, SECRET, "", "dock-1")


def test_grants_helpers():
    grants = Grants.from_names(["admin", "record"])
    assert grants.to_dict() == {"publish": False, "subscribe": False, "message": False, "record": True, "admin": True}
    assert grants.allows("record") and not grants.allows("publish") and not grants.allows("fly")
    assert mint_token(KEY, SECRET, "a", grants=grants, now=NOW)


def test_verifier_repr_hides_secrets(verifier):
    assert SECRET not in repr(verifier) and KEY in repr(verifier)


# ---- the longest lifetime a node accepts ------------------------------------------------


def test_max_ttl_refuses_tokens_that_live_too_long():
    verifier = TokenVerifier({KEY: SECRET}, leeway=5, max_ttl=3600)
    assert verifier.max_ttl == 3600
    # mint_token sets iat = nbf = now: exp - iat is the lifetime
    assert verifier.verify(mint_token(KEY, SECRET, "a", "dock-1", ttl=3600, now=NOW), now=NOW)
    with pytest.raises(Unauthorized, match="lifetime"):
        verifier.verify(mint_token(KEY, SECRET, "a", "dock-1", ttl=3601, now=NOW), now=NOW)


@pytest.mark.parametrize("claims, ok", [
    ({"nbf": NOW, "exp": NOW + 100}, True),                       # exp - nbf
    ({"nbf": NOW - 50, "exp": NOW + 60}, False),                  # exp - nbf = 110
    ({"nbf": None, "exp": NOW + 100}, True),                      # no iat, no nbf: exp - now
    ({"nbf": None, "exp": NOW + 101}, False),
    ({"iat": NOW - 200, "nbf": NOW, "exp": NOW + 50}, False),     # iat first: exp - iat = 250
    ({"iat": NOW + 500, "nbf": None, "exp": NOW + 550}, False),   # an iat in the future: exp - now
], ids=["nbf", "old nbf", "none", "none over", "old iat", "future iat"])
def test_max_ttl_measures_from_iat_else_nbf_else_now(claims, ok):
    verifier = TokenVerifier({KEY: SECRET}, leeway=5, max_ttl=100)
    token = raw(claims)
    if ok:
        assert verifier.verify(token, now=NOW)
    else:
        with pytest.raises(Unauthorized, match="lifetime"):
            verifier.verify(token, now=NOW)


def test_iat_must_be_a_number():
    with pytest.raises(Unauthorized, match="'iat'"):
        TokenVerifier({KEY: SECRET}).verify(raw({"iat": "yesterday"}), now=NOW)


def test_no_max_ttl_by_default(verifier):
    assert verifier.max_ttl is None
    assert verifier.verify(mint_token(KEY, SECRET, "a", "dock-1", ttl=10 * 365 * 86400, now=NOW), now=NOW)


# ---- empty keys -------------------------------------------------------------------------


def test_an_empty_secret_is_refused_by_the_verifier_and_by_pyjwt():
    with pytest.raises(ValueError, match="empty API secret for API key"):
        TokenVerifier({KEY: SECRET, "blank": ""})
    # the pinned PyJWT (requirements.txt) refuses empty HMAC keys both ways
    with pytest.raises(jwt.InvalidKeyError):
        jwt.encode({"sub": "a"}, "", algorithm="HS256")
    with pytest.raises(jwt.PyJWTError):
        jwt.decode(raw({}), "", algorithms=["HS256"])


def test_requirements_pin_a_pyjwt_that_refuses_empty_keys():
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "requirements.txt").read_text()
    (line,) = [x for x in text.splitlines() if x.lower().startswith("pyjwt")]
    low = re.search(r">=\s*([0-9.]+)", line).group(1)
    assert tuple(int(p) for p in low.split(".")) >= (2, 13), line  # 2.13.0: empty HMAC keys refused
