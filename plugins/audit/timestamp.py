"""RFC 3161 time-stamps on checkpoints: a checkpoint then proves when, not only who.

`TimestampAuthority` asks a time-stamping authority (TSA) over HTTP to sign the SHA-256
of a checkpoint's signed message, and returns the token (DER) that the checkpoint keeps
as ``tst``. The request carries a nonce and asks for the authority's certificate
(certReq), so that a verifier needs only the authority's root CA. Requests are built and
replies read with ``rfc3161-client``; the transport is ``urllib`` (no other HTTP client).

Some authorities send their certificate chain in the order they were given, not in
DER's order for a SET OF (``openssl ts`` with ``certs=``), and rfc3161-client refuses
such a reply; the token's signature does not cover that set, so the client puts it in
DER order first (`sorted_certificates`), which changes nothing the token proves.

A reply is accepted only when its status grants it, its nonce is ours and its token is
over our message (`plugins.audit.verify.check_timestamp`, the verifier's own check); with
``ca_certs`` its signature must also chain to them. Anything else is a `TimestampError`
naming the authority's URL without the credentials it may carry
(``https://user:secret@tsa.example/`` becomes ``https://tsa.example/``; the user and
password go in a Basic ``Authorization`` header). The call blocks for up to
``timeout_s`` per network operation: the node makes it from its audit worker thread, and
`AuditLog.checkpoint` writes the checkpoint without ``tst`` when it fails.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TypeVar

from .verify import (
    AuditError,
    InvalidTimestamp,
    _der,
    _rfc3161,
    check_timestamp,
    load_tsa_certificates,
)

__all__ = ["TimestampAuthority", "TimestampError", "stamp_checkpoint", "sorted_certificates",
           "MAX_REPLY_BYTES"]

logger = logging.getLogger(__name__)
C = TypeVar("C")

#: A reply larger than this is refused (a token with its certificate is a few KiB).
MAX_REPLY_BYTES = 1 << 20


class TimestampError(AuditError):
    """The authority at ``url`` gave no usable token: unreachable, an HTTP error, a reply
    that is not RFC 3161, a refusal, or a token that does not hold. ``url`` has no
    credentials."""

    code = "unavailable"

    def __init__(self, url: str, why: str) -> None:
        super().__init__(f"time-stamping authority {url}: {why}")
        self.url = url


class TimestampAuthority:
    """An RFC 3161 time-stamping authority at ``url`` (http or https).

    ``ca_certs``: PEM of the authority's root CA (and intermediates); when given, every
    token must verify against it before it is accepted. ``TimestampUnavailable`` when
    ``rfc3161-client`` is not installed; ValueError for a URL that is not http(s).
    """

    def __init__(self, url: str, *, timeout_s: float = 10, ca_certs: bytes | None = None) -> None:
        self._rfc3161 = _rfc3161()  # fail at configuration, not at the first checkpoint
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a time-stamping authority URL is http:// or https:// with a host")
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        self._endpoint = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/",
                                                  parts.query, ""))
        #: The URL as logs and errors show it: no user, password or query string.
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/",
                                            "..." if parts.query else "", ""))
        self._headers = {"Content-Type": "application/timestamp-query",
                         "Accept": "application/timestamp-reply"}
        if parts.username is not None:
            user_pass = f"{urllib.parse.unquote(parts.username)}:" \
                        f"{urllib.parse.unquote(parts.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(user_pass.encode()).decode()
        self.timeout_s = timeout_s
        self._trusted = load_tsa_certificates(ca_certs) if ca_certs is not None else None

    def __repr__(self) -> str:
        return f"TimestampAuthority({self.url!r})"

    def stamp(self, message: bytes) -> bytes:
        """The DER time-stamp token of ``message`` (its SHA-256 is what the authority
        signs); TimestampError when the authority gives none that holds."""
        rfc3161 = self._rfc3161
        request = (rfc3161.TimestampRequestBuilder().data(message)
                   .hash_algorithm(rfc3161.HashAlgorithm.SHA256)
                   .nonce(nonce=True).cert_request(cert_request=True).build())
        reply = sorted_certificates(self._post(request.as_bytes()))
        try:
            response = rfc3161.decode_timestamp_response(reply)
            status, texts = response.status, response.status_string
        except ValueError as exc:
            raise TimestampError(self.url, f"the reply is not an RFC 3161 response ({exc})") from None
        if status not in (rfc3161.PKIStatus.GRANTED, rfc3161.PKIStatus.GRANTED_WITH_MODS):
            name = rfc3161.PKIStatus(status).name if status in set(rfc3161.PKIStatus) else status
            raise TimestampError(self.url, f"the request was refused (status {name}"
                                 f"{': ' + '; '.join(texts) if texts else ''})")
        try:
            token = response.time_stamp_token()
            info = check_timestamp(token, message, self._trusted)
        except (InvalidTimestamp, ValueError) as exc:
            raise TimestampError(self.url, f"its token does not hold: {exc}") from None
        if info.nonce != request.nonce:
            raise TimestampError(self.url, f"the token's nonce {info.nonce} is not the request's "
                                 "(a replayed or misrouted reply)")
        return token

    def _post(self, query: bytes) -> bytes:
        request = urllib.request.Request(self._endpoint, data=query, headers=self._headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                body = reply.read(MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise TimestampError(self.url, f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise TimestampError(self.url, f"unreachable ({exc.reason})") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, resets, bad HTTP
            raise TimestampError(self.url, f"unreachable ({exc})") from None
        if len(body) > MAX_REPLY_BYTES:
            raise TimestampError(self.url, f"the reply is larger than {MAX_REPLY_BYTES} bytes")
        return body


def sorted_certificates(reply: bytes) -> bytes:
    """An RFC 3161 response (TimeStampResp) whose token's certificates are in DER's
    SET OF order (ascending bytes), the rest unchanged; bytes that are not a response
    with a token come back as they are."""
    try:
        outer = _der(reply, 0, len(reply))[0]
        token = _der(reply, *outer[2:])[1]  # after the PKIStatusInfo
        content = _der(reply, *_der(reply, *token[2:])[1][2:])  # ContentInfo's [0]
        signed_data = _der(reply, *content[0][2:])
        certificates = next(f for f in signed_data if f[0] == 0xA0)  # [0] IMPLICIT SET OF
        items = sorted(reply[head:end] for _, head, _, end in _der(reply, *certificates[2:]))
    except (IndexError, StopIteration, ValueError):
        return reply
    return reply[:certificates[2]] + b"".join(items) + reply[certificates[3]:]


def stamp_checkpoint(checkpoint: C, tsa: Any, where: object) -> tuple[C, Exception | None]:
    """``checkpoint`` with the token of its signed message as ``tst``, and None; or, when
    the authority fails, ``checkpoint`` unchanged and the error, logged as a warning that
    names the log (``where``) and the authority's URL. Evidence first: nothing the
    authority does may cost the checkpoint."""
    try:
        token = tsa.stamp(checkpoint.signed_message())
    except AuditError as exc:  # TimestampError: its message names the URL
        logger.warning("audit log %s: checkpoint of %d entries written without a time-stamp: %s",
                       where, checkpoint.size, exc)
        return checkpoint, exc
    except Exception as exc:  # a bug in the client must not lose the checkpoint
        logger.exception("audit log %s: checkpoint of %d entries written without a time-stamp: "
                         "time-stamping authority %s failed unexpectedly", where, checkpoint.size,
                         getattr(tsa, "url", "?"))
        return checkpoint, exc
    return dataclasses.replace(checkpoint, tst=token), None
