"""One HTTP endpoint's shared state, without I/O: when its next request may start (the pacer) and whether
it may be sent at all (the circuit breaker). core.http.policy keeps one per endpoint name per group."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)


class Refused(Exception):
    """The endpoint's circuit refuses requests now; the message says why and until when."""


class Endpoint:
    """One endpoint's state, shared by the group's instances: the spacing of request starts (the pacer,
    which a Retry-After or a 429 pushes back for everyone) and its circuit breaker.

    Closed: requests go out; breaker_failures failed requests in a row open it (a request counts as failed
    at its first failed try: see core.http.policy.RequestPlan._record). Open: nothing is sent for the
    cooldown (or the Retry-After asked for). Then half-open: exactly one request (the probe) is sent, the
    others are refused until it succeeds (closed again) or fails (open for another cooldown).
    """

    def __init__(
        self,
        name: str,
        *,
        requests_per_second: float = 0.0,
        breaker_failures: int = 5,
        breaker_cooldown_s: float = 30.0,
    ) -> None:
        self.name = name
        self._failures_max = breaker_failures
        self._cooldown_s = breaker_cooldown_s
        self._interval_s = 1.0 / requests_per_second if requests_per_second > 0 else 0.0
        self._lock = threading.Lock()
        self._next_s = 0.0
        self._failures = 0
        self._tripped = False
        self._open_until_s = 0.0
        self._why = ""
        self._probe = 0  # the token of the probe in flight, 0 when none
        self._tokens = 0

    def reserve(self, now_s: float, latest_s: float) -> tuple[float, int] | None:
        """Claim the next start slot: (seconds to wait for it, probe token or 0); None when the slot would
        come after `latest_s` (nothing claimed); Refused while the circuit refuses requests."""
        with self._lock:
            probe = 0
            if self._tripped:
                if now_s < self._open_until_s:
                    raise Refused(
                        f"not sent to {self.name}: {self._why}; sending again in {self._open_until_s - now_s:.0f}s"
                    )
                if self._probe:
                    raise Refused(f"not sent to {self.name}: {self._why}; one request is testing it again")
            slot_s = max(now_s, self._next_s)
            if slot_s >= latest_s:
                return None
            self._next_s = slot_s + self._interval_s
            if self._tripped:
                self._tokens += 1
                probe = self._probe = self._tokens
            return slot_s - now_s, probe

    @property
    def next_start_s(self) -> float:
        """The earliest moment (on the policy's clock) the next request may start."""
        return self._next_s

    def refuses(self, now_s: float) -> bool:
        """True while a request would be refused (open, or half-open with its probe in flight)."""
        with self._lock:
            return self._tripped and (now_s < self._open_until_s or bool(self._probe))

    def hold(self, now_s: float, seconds: float) -> None:
        """The server asked for a pause: no request to this endpoint starts before it ends."""
        with self._lock:
            self._next_s = max(self._next_s, now_s + seconds)

    def open(self, now_s: float, seconds: float, why: str) -> None:
        """Send nothing for `seconds`; requests meanwhile are refused with `why`."""
        with self._lock:
            self._tripped = True
            self._open_until_s = max(self._open_until_s, now_s + seconds)
            self._why = why
            self._probe = 0  # a probe in flight no longer decides: this pause does
        logger.warning("%s: sending nothing for %.0fs: %s", self.name, seconds, why)

    def record(self, ok: bool | None, what: str, *, probe: int, now_s: float) -> None:
        """Count a finished try: ok, failed, or None when it says nothing about the server (cut short by
        the item's deadline, not sent, or refused by us)."""
        with self._lock:
            is_probe = bool(probe) and probe == self._probe
            if is_probe:
                self._probe = 0
            if ok is None:
                return
            if ok:
                self._failures = 0
                if is_probe:
                    self._tripped = False
                return
            self._failures += 1
            if self._tripped and not is_probe:
                return  # tries in flight when it opened say nothing new
            failures = self._failures
        if is_probe or failures >= self._failures_max:
            self.open(now_s, self._cooldown_s, f"{failures} requests in a row failed (last: {what})")
