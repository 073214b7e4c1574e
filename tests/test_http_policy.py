"""The HTTP policy without I/O: waits, retries, Retry-After, breakers per endpoint, the deadline, the stop event.

Every test drives RequestPlans by hand on a clock it moves itself, the way a client would.
"""

from __future__ import annotations

import threading
from email.utils import formatdate

import pytest

from core.http.policy import (
    CircuitOpen,
    DeadlineExceeded,
    FetchError,
    HttpPolicy,
    HttpSettings,
    RequestPlan,
    Step,
    Stopped,
    retry_after_s,
)

SETTINGS = HttpSettings(
    user_agent="policy-tests",
    connect_timeout_s=5,
    read_timeout_s=20,
    retries=3,
    backoff_s=0.5,
    retry_after_max_s=30,
    breaker_failures=5,
    breaker_cooldown_s=30,
    item_deadline_s=60,
)
WALL_S = 1_800_000_000.0


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def policy_for(clock: Clock, **changes) -> HttpPolicy:
    settings = HttpSettings(**{**SETTINGS.__dict__, **changes})
    return HttpPolicy(settings, clock=clock, wall_clock=lambda: WALL_S + clock.now_s)


def send(plan: RequestPlan, clock: Clock) -> Step:
    """The next try of `plan`, after waiting (on `clock`) for whatever comes before it."""
    while True:
        step = plan.next_step()
        clock.advance(step.wait_s)
        if step.send:
            return step


def fail_n(policy: HttpPolicy, clock: Clock, endpoint: str, count: int) -> None:
    """`count` requests to `endpoint` that each fail once (no retries used)."""
    for _ in range(count):
        plan = policy.plan("http://x/a", endpoint=endpoint)
        send(plan, clock)
        plan.failed("ConnectionError: refused")


# --- tries, timeouts and backoff ---------------------------------------------------------------------


def test_first_try_goes_at_once_with_the_full_timeouts(clock: Clock) -> None:
    step = policy_for(clock).plan("http://x/a", endpoint="chart").next_step()
    assert step == Step(0.0, True, 5, 20)


def test_5xx_is_retried_with_doubling_backoff_then_handed_back(clock: Clock) -> None:
    plan = policy_for(clock).plan("http://x/a", endpoint="chart")
    waits = []
    send(plan, clock)
    for _ in range(3):
        assert plan.answered(503, None) is False
        step = plan.next_step()
        assert not step.send
        waits.append(step.wait_s)
        clock.advance(step.wait_s)
        assert plan.next_step().send
    assert waits == [0.5, 1.0, 2.0]
    assert plan.answered(503, None) is True  # retries spent: the last answer is the result
    assert plan.tries == 4


@pytest.mark.parametrize("status", [200, 301, 400, 403, 404])
def test_other_statuses_are_answers_not_retried(clock: Clock, status: int) -> None:
    plan = policy_for(clock).plan("http://x/a", endpoint="chart")
    send(plan, clock)
    assert plan.answered(status, None) is True
    assert plan.tries == 1


def test_failed_tries_are_retried_then_raise_fetch_error_with_the_attempts(clock: Clock) -> None:
    plan = policy_for(clock, retries=2).plan("http://x/a", endpoint="chart")
    for _ in range(3):
        send(plan, clock)
        plan.failed("ConnectTimeout: no answer", timed_out=True)
    with pytest.raises(FetchError, match="GET http://x/a: ConnectTimeout: no answer") as caught:
        plan.next_step()
    assert caught.value.attempts == 3


def test_give_up_is_not_retried(clock: Clock) -> None:
    plan = policy_for(clock).plan("htp://x/a", endpoint="chart")
    send(plan, clock)
    error = plan.give_up("InvalidSchema: no adapter")
    assert isinstance(error, FetchError) and error.attempts == 1


def test_requests_per_second_spaces_starts_per_endpoint(clock: Clock) -> None:
    policy = policy_for(clock, requests_per_second=4)
    chart = [policy.plan("http://x/a", endpoint="chart").next_step().wait_s for _ in range(3)]
    quote = [policy.plan("http://x/b", endpoint="quote").next_step().wait_s for _ in range(2)]
    assert chart == [0.0, 0.25, 0.5]
    assert quote == [0.0, 0.25]  # the quote page has a pacer of its own


# --- Retry-After ------------------------------------------------------------------------------------


def test_short_retry_after_holds_the_endpoint_for_every_instance(clock: Clock) -> None:
    policy = policy_for(clock)
    plan = policy.plan("http://x/a", endpoint="chart")
    send(plan, clock)
    assert plan.answered(429, "2") is False
    other = policy.plan("http://x/b", endpoint="chart").next_step()
    assert other.send and other.wait_s == 2.0  # another instance's request waits for the pause too
    assert plan.next_step().wait_s == 2.0  # the retry's slot comes after the pause (and after `other`)
    assert policy.plan("http://x/c", endpoint="quote").next_step().wait_s == 0.0


def test_429_without_retry_after_holds_the_endpoint_for_the_backoff(clock: Clock) -> None:
    policy = policy_for(clock)
    plan = policy.plan("http://x/a", endpoint="chart")
    send(plan, clock)
    assert plan.answered(429, None) is False
    assert policy.plan("http://x/b", endpoint="chart").next_step().wait_s == 0.5


def test_retry_after_as_an_http_date_is_read(clock: Clock) -> None:
    date = formatdate(WALL_S + clock.now_s + 3, usegmt=True)
    assert retry_after_s(date, WALL_S + clock.now_s) == pytest.approx(3.0)
    assert retry_after_s(" 7 ", 0) == 7.0
    assert retry_after_s("soon", 0) is None
    policy = policy_for(clock)
    plan = policy.plan("http://x/a", endpoint="chart")
    send(plan, clock)
    assert plan.answered(503, date) is False
    assert plan.next_step().wait_s == pytest.approx(3.0)


def test_retry_after_beyond_the_cap_opens_that_endpoint_instead_of_sleeping(clock: Clock) -> None:
    policy = policy_for(clock, retry_after_max_s=30)
    plan = policy.plan("http://x/a", endpoint="chart")
    send(plan, clock)
    with pytest.raises(CircuitOpen, match=r"3600s pause \(Retry-After\), longer than retry_after_max_s=30") as caught:
        plan.answered(429, "3600")
    assert caught.value.attempts == 1
    with pytest.raises(CircuitOpen, match="sending again in 3600s") as refused:
        policy.plan("http://x/b", endpoint="chart").next_step()
    assert refused.value.attempts == 0
    assert policy.plan("http://x/c", endpoint="quote").next_step().send  # the fallback is not paused
    clock.advance(3599)
    with pytest.raises(CircuitOpen):
        policy.plan("http://x/b", endpoint="chart").next_step()
    clock.advance(1)
    assert policy.plan("http://x/b", endpoint="chart").next_step().send


# --- the breaker, per endpoint ------------------------------------------------------------------------


def test_breaker_opens_after_failures_in_a_row_only_on_that_endpoint(clock: Clock) -> None:
    policy = policy_for(clock)
    fail_n(policy, clock, "chart", 4)
    ok = policy.plan("http://x/a", endpoint="chart")
    send(ok, clock)
    assert ok.answered(200, None)  # a success resets the count
    fail_n(policy, clock, "chart", 4)
    assert policy.plan("http://x/a", endpoint="chart").next_step().send  # 4 in a row: still closed
    fail_n(policy, clock, "chart", 1)
    with pytest.raises(CircuitOpen, match=r"5 requests in a row failed \(last: ConnectionError: refused\)"):
        policy.plan("http://x/a", endpoint="chart").next_step()
    assert policy.plan("http://x/b", endpoint="quote").next_step().send


def test_the_retries_of_one_request_count_as_one_failure(clock: Clock) -> None:
    policy = policy_for(clock, breaker_failures=2)
    plan = policy.plan("http://x/a", endpoint="chart")
    for _ in range(3):
        send(plan, clock)
        assert plan.answered(503, None) is False
    send(plan, clock)
    assert plan.answered(503, None) is True  # 4 tries, one failed request: still closed
    assert policy.plan("http://x/b", endpoint="chart").next_step().send
    fail_n(policy, clock, "chart", 1)
    with pytest.raises(CircuitOpen, match="2 requests in a row failed"):
        policy.plan("http://x/c", endpoint="chart").next_step()


def test_a_request_counts_as_failed_at_its_first_failed_try(clock: Clock) -> None:
    policy = policy_for(clock, breaker_failures=3)
    hanging = [policy.plan(f"http://x/{n}", endpoint="chart") for n in range(3)]
    for plan in hanging:
        send(plan, clock)
    for plan in hanging:  # three instances' first tries time out together
        plan.failed("ReadTimeout: read timed out", timed_out=True)
    for plan in hanging:  # so none of them spends its retries on the hanging endpoint
        with pytest.raises(CircuitOpen):
            send(plan, clock)


def test_a_retry_that_succeeds_resets_the_count(clock: Clock) -> None:
    policy = policy_for(clock, breaker_failures=3)
    fail_n(policy, clock, "chart", 1)
    plan = policy.plan("http://x/a", endpoint="chart")
    send(plan, clock)
    assert plan.answered(503, None) is False  # two in a row
    send(plan, clock)
    assert plan.answered(200, None) is True  # back to none
    fail_n(policy, clock, "chart", 2)
    assert policy.plan("http://x/b", endpoint="chart").next_step().send
    fail_n(policy, clock, "chart", 1)
    with pytest.raises(CircuitOpen, match="3 requests in a row failed"):
        policy.plan("http://x/b", endpoint="chart").next_step()


def test_quote_successes_do_not_reset_the_chart_breaker(clock: Clock) -> None:
    policy = policy_for(clock)
    for _ in range(5):
        fail_n(policy, clock, "chart", 1)
        quote = policy.plan("http://x/q", endpoint="quote")
        send(quote, clock)
        assert quote.answered(200, None)
    with pytest.raises(CircuitOpen):
        policy.plan("http://x/a", endpoint="chart").next_step()


def test_a_try_in_flight_stops_retrying_once_the_breaker_opens(clock: Clock) -> None:
    policy = policy_for(clock)
    plan = policy.plan("http://x/a", endpoint="chart")
    send(plan, clock)
    fail_n(policy, clock, "chart", 5)  # the other instances' tries open it meanwhile
    assert plan.answered(503, None) is True  # handed back, not retried into an open circuit
    failing = policy.plan("http://x/b", endpoint="chart")
    clock.advance(31)
    send(failing, clock)  # the probe
    failing.failed("ReadTimeout: read timed out", timed_out=True)
    with pytest.raises(CircuitOpen, match=r"\(last try: ReadTimeout") as caught:
        send(failing, clock)
    assert caught.value.attempts == 1


def test_after_the_cooldown_exactly_one_probe_goes_and_its_success_closes_the_circuit(clock: Clock) -> None:
    policy = policy_for(clock)
    fail_n(policy, clock, "chart", 5)
    clock.advance(30)
    probe = policy.plan("http://x/a", endpoint="chart")
    assert probe.next_step().send
    for _ in range(3):  # everyone else still goes to the fallback while the probe is out
        with pytest.raises(CircuitOpen, match="one request is testing it again"):
            policy.plan("http://x/b", endpoint="chart").next_step()
    assert probe.answered(200, None)
    assert all(policy.plan("http://x/b", endpoint="chart").next_step().send for _ in range(3))


def test_a_failed_probe_opens_the_circuit_for_another_cooldown(clock: Clock) -> None:
    policy = policy_for(clock)
    fail_n(policy, clock, "chart", 5)
    clock.advance(30)
    fail_n(policy, clock, "chart", 1)  # the probe fails
    with pytest.raises(CircuitOpen, match="sending again in 30s"):
        policy.plan("http://x/b", endpoint="chart").next_step()
    clock.advance(30)
    assert policy.plan("http://x/b", endpoint="chart").next_step().send


@pytest.mark.parametrize("how", ["abandoned", "stopped", "cut by the deadline"])
def test_a_probe_without_an_outcome_lets_another_request_probe(clock: Clock, how: str) -> None:
    stop = threading.Event()
    policy = policy_for(clock)
    policy.stop = stop
    fail_n(policy, clock, "chart", 5)
    clock.advance(30)
    probe = policy.plan("http://x/a", endpoint="chart", deadline=clock.now_s + 10)
    assert probe.next_step().send
    if how == "abandoned":
        probe.abandon()
    elif how == "stopped":
        stop.set()
        with pytest.raises(Stopped):
            probe.next_step()
        stop.clear()
    else:
        clock.advance(10)
        probe.failed("ReadTimeout: read timed out", timed_out=True)  # its timeout was cut to 10 s
    assert policy.plan("http://x/b", endpoint="chart").next_step().send


# --- the item's deadline and the stop event ------------------------------------------------------------


def test_timeouts_shrink_to_the_time_left_before_the_deadline(clock: Clock) -> None:
    policy = policy_for(clock)
    plan = policy.plan("http://x/a", endpoint="chart", deadline=clock.now_s + 12)
    assert send(plan, clock) == Step(0.0, True, 5, 12)
    clock.advance(9)
    assert plan.body_budget_s() == pytest.approx(3)


def test_no_try_when_the_backoff_would_pass_the_deadline(clock: Clock) -> None:
    policy = policy_for(clock)
    plan = policy.plan("http://x/a", endpoint="chart", deadline=clock.now_s + 20.2)
    send(plan, clock)
    clock.advance(20)
    plan.failed("ReadTimeout: read timed out", timed_out=True)
    with pytest.raises(DeadlineExceeded, match=r"leaves no time for another try \(last try: ReadTimeout") as caught:
        plan.next_step()
    assert caught.value.attempts == 1


def test_a_retry_that_cannot_fit_hands_back_the_answer(clock: Clock) -> None:
    plan = policy_for(clock).plan("http://x/a", endpoint="chart", deadline=clock.now_s + 0.4)
    send(plan, clock)
    assert plan.answered(503, None) is True  # the 0.5 s backoff would end past the deadline


def test_a_deadline_past_before_the_first_try_sends_nothing(clock: Clock) -> None:
    plan = policy_for(clock).plan("http://x/a", endpoint="chart", deadline=clock.now_s)
    with pytest.raises(DeadlineExceeded, match="leaves no time for a try") as caught:
        plan.next_step()
    assert caught.value.attempts == 0


def test_a_pacer_slot_past_the_deadline_is_not_claimed(clock: Clock) -> None:
    policy = policy_for(clock, requests_per_second=1)
    assert policy.plan("http://x/a", endpoint="chart").next_step().wait_s == 0
    with pytest.raises(DeadlineExceeded):
        policy.plan("http://x/b", endpoint="chart", deadline=clock.now_s + 0.5).next_step()
    assert policy.plan("http://x/c", endpoint="chart").next_step().wait_s == 1.0  # the slot is still free


def test_timeouts_cut_by_the_deadline_do_not_count_against_the_server(clock: Clock) -> None:
    policy = policy_for(clock, breaker_failures=1)
    plan = policy.plan("http://x/a", endpoint="chart", deadline=clock.now_s + 3)
    send(plan, clock)
    clock.advance(3)
    plan.failed("ReadTimeout: read timed out", timed_out=True)
    assert policy.plan("http://x/b", endpoint="chart").next_step().send  # breaker_failures=1, yet still closed


def test_default_deadline_is_item_deadline_s_from_now(clock: Clock) -> None:
    policy = policy_for(clock, item_deadline_s=42)
    assert policy.deadline() == clock.now_s + 42
    assert policy.plan("http://x/a", endpoint="chart").deadline == clock.now_s + 42


def test_stop_event_ends_a_plan_before_any_try(clock: Clock) -> None:
    policy = policy_for(clock)
    policy.stop.set()
    with pytest.raises(Stopped, match="the pipeline is stopping") as caught:
        policy.plan("http://x/a", endpoint="chart").next_step()
    assert caught.value.attempts == 0
