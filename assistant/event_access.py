"""Who may open the event stream: the token, the browser's origin, the Host header.

Rules (README, "Event stream and commands"):

- Bound to a loopback address, no token is needed; one that is configured is still checked.
- Bound to any other address, a token is required (ConfigError on `events.token` without
  one): a voice assistant's transcripts and its microphone's commands are not for the LAN.
- The token comes as `Authorization: Bearer <token>` or `?token=<token>` (a browser's
  WebSocket cannot set headers) and is compared in constant time.
- A browser (it sends `Origin`) must come from the device's own page: an origin whose
  host:port is the request's Host. Without a token, the Host must also be a loopback
  name, so a page elsewhere cannot reach the device through DNS rebinding.

Nothing here ever logs a token: refusals name the peer and the path without its query.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from assistant.config import ConfigError
from assistant.settings import Secret

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine only."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_token_off_loopback(host: str, token: Secret) -> None:
    """The start-up rule: any address but loopback needs a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            "events.token",
            "",
            f"events.host = {host!r} is reachable from other machines: set a token "
            "([events] token or VOICE_ASSISTANT_EVENTS_TOKEN), or bind to 127.0.0.1",
            show_value=False,
        )


@dataclass(frozen=True, slots=True)
class Refusal:
    status: HTTPStatus
    reason: str
    """Said to the client and logged: never holds the token."""


def _host_of(authority: str) -> str:
    """`host` of a `host[:port]` (an IPv6 literal keeps its brackets off)."""
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


class Access:
    """Checks one HTTP request (the upgrade, or the page) against the rules above."""

    def __init__(self, token: Secret) -> None:
        self._token = token.reveal().encode()

    def check(self, path: str, headers: dict[str, str]) -> Refusal | None:
        """None if the request may go on; `headers` with lower-case names."""
        host_header = headers.get("host", "")
        if not self._token and not is_loopback(_host_of(host_header)):
            # Without a token only loopback is served: a foreign Host is DNS rebinding.
            return Refusal(HTTPStatus.FORBIDDEN, "host not allowed")
        origin = headers.get("origin")
        if origin is not None and not self._same_origin(origin, host_header):
            return Refusal(HTTPStatus.FORBIDDEN, "origin not allowed")
        if self._token and not self._token_matches(path, headers.get("authorization", "")):
            return Refusal(HTTPStatus.UNAUTHORIZED, "missing or wrong token")
        return None

    @staticmethod
    def _same_origin(origin: str, host_header: str) -> bool:
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.lower()

    def _token_matches(self, path: str, authorization: str) -> bool:
        given = ""
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer":
            given = credentials.strip()
        else:
            given = parse_qs(urlsplit(path).query).get("token", [""])[0]
        # compare_digest: the time taken says nothing about how much of it was right.
        return hmac.compare_digest(given.encode(), self._token)


def path_only(path: str) -> str:
    """The path without its query (which may hold the token): what a log line may show."""
    return urlsplit(path).path


_SECRETS = re.compile(r"(token=)[^&\s\"']+|(bearer\s+)\S+", re.IGNORECASE)


class RedactTokens(logging.Filter):
    """For the websockets library's own logger: its debug lines show request lines and
    headers, which may carry the token."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + "***", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
