from __future__ import annotations

import pytest

from signalling import errors
from signalling.errors import (
    ERROR_CODES,
    BadRequest,
    Internal,
    NotFound,
    SignallingError,
    TooLarge,
    error_code,
    error_message,
)

SUBCLASSES = [
    (errors.BadRequest, "bad_request"),
    (errors.Unauthorized, "unauthorized"),
    (errors.Forbidden, "forbidden"),
    (errors.NotFound, "not_found"),
    (errors.Conflict, "conflict"),
    (errors.TooLarge, "too_large"),
    (errors.RateLimited, "rate_limited"),
    (errors.Unavailable, "unavailable"),
    (errors.Internal, "internal"),
]


@pytest.mark.parametrize("cls, code", SUBCLASSES)
def test_each_error_carries_its_wire_code(cls, code):
    exc = cls("why")
    assert isinstance(exc, SignallingError)
    assert exc.code == cls.code == code
    assert exc.message == "why"
    assert code in ERROR_CODES


def test_every_wire_code_has_one_class_and_the_docstring_draws_them_all():
    assert {code for _, code in SUBCLASSES} == ERROR_CODES
    for cls, code in SUBCLASSES:
        assert f"{cls.__name__:<17}{code}" in errors.__doc__


def test_base_takes_code_and_message():
    exc = SignallingError("not_found", "no such room")
    assert (exc.code, exc.message, str(exc)) == ("not_found", "no such room", "no such room")


def test_error_message_carries_code_text_and_id():
    assert error_message(NotFound("no room 'x'"), 7) == {
        "type": "error",
        "id": 7,
        "code": "not_found",
        "message": "no room 'x'",
    }
    assert "id" not in error_message(BadRequest("bad"))
    assert error_message(TooLarge("big", request_id="r1"))["id"] == "r1"


def test_foreign_exception_with_a_code_maps_to_that_code():
    class SfuLikeError(Exception):
        code = "not_found"

    msg = error_message(SfuLikeError("consumer closed"), 3)
    assert (msg["code"], msg["message"], msg["id"]) == ("not_found", "consumer closed", 3)


@pytest.mark.parametrize(
    "exc", [RuntimeError("password=hunter2"), Internal("db at 10.0.0.3 down"), type("E", (Exception,), {"code": "weird"})()]
)
def test_internal_errors_hide_their_details(exc):
    msg = error_message(exc, 9)
    assert msg["code"] == "internal"
    assert "hunter2" not in msg["message"] and "10.0.0.3" not in msg["message"]
    assert "9" in msg["message"]  # the request id, to find the log line


def test_error_code_of_anything():
    assert error_code(ValueError()) == "internal"
    assert error_code(BadRequest()) == "bad_request"


def test_one_exception_tree_for_the_package_drawn_in_errors_docstring():
    """Every exception class the signalling package defines is a SignallingError with a
    wire code, and errors.py's docstring draws it."""
    import importlib
    import inspect
    import pkgutil

    import signalling
    from signalling import errors

    found = {}
    for info in pkgutil.walk_packages(signalling.__path__, "signalling."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == info.name and not name.startswith("_")):
                found[name] = obj
    assert {"SignallingError", "RoomLogError", "DurableDbError", "PluginError",
            "MembershipError"} <= set(found)
    assert "SessionClosed" in errors.__doc__  # websockets' ConnectionClosed: a close, not an error
    found.pop("SessionClosed")
    for name, cls in found.items():
        assert issubclass(cls, errors.SignallingError), f"{name} is outside the tree"
        assert cls.code in errors.ERROR_CODES, f"{name}.code {cls.code!r} is not a wire code"
        if name != "FixedCodeError":
            assert name in errors.__doc__, f"{name} is not drawn in signalling.errors"
