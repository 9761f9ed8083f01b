"""When a failed request may be sent again, and how long to wait first.

Only requests that are safe to repeat come here: the upload of one utterance and
the synthesis of one sentence before any of its audio was played. A completion
that has streamed tokens is never repeated (the user would hear the answer twice).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from assistant.providers.base import ServiceError
from assistant.settings import HttpSettings

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Statuses that say "try again", as opposed to "your request is wrong"."""
TRANSIENT_CODES = frozenset({"connect_error", "connection_lost", "pool_timeout"})
"""Transport failures worth one more try. Read and connect timeouts are not: the
service was given its whole limit already, and a retry would only push the turn
towards its stage bound."""
_HTTP_DEFAULTS = HttpSettings()
"""The `[http]` defaults: a policy built without settings (tests, a bare chain) uses them."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = _HTTP_DEFAULTS.retries
    """Extra attempts after the first (per provider, before the fallback)."""
    backoff_s: float = _HTTP_DEFAULTS.retry_backoff_s
    """Base wait; doubles per attempt, half of it random ("equal jitter") so that
    many appliances behind one failed service do not retry in step."""
    max_retry_after_s: float = _HTTP_DEFAULTS.max_retry_after_s
    """A longer Retry-After than this is not waited out: the next provider is asked."""

    @classmethod
    def from_settings(cls, http: HttpSettings) -> RetryPolicy:
        return cls(http.retries, http.retry_backoff_s, http.max_retry_after_s)

    def delay(self, exc: ServiceError, attempt: int) -> float | None:
        """Seconds to wait before attempt `attempt + 1`; None = do not retry."""
        if attempt >= self.retries:
            return None
        transient = exc.status in TRANSIENT_STATUSES or (
            exc.status is None and exc.code in TRANSIENT_CODES
        )
        if not transient:
            return None
        if exc.retry_after is not None:
            return exc.retry_after if exc.retry_after <= self.max_retry_after_s else None
        ceiling = self.backoff_s * 2**attempt
        return ceiling / 2 + random.uniform(0, ceiling / 2)
