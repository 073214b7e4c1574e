"""The blocking client against a real server on 127.0.0.1: what the policy decides is what goes on the wire."""

from __future__ import annotations

import threading
import time

import pytest
from pg_cluster import free_port
from sites import FakeSites, Fault, chart_body

from core.http.client import (
    BodyTooLarge,
    CircuitOpen,
    DeadlineExceeded,
    FetchError,
    HttpClient,
    HttpSettings,
    Stopped,
    endpoint_of,
)
from core.http.policy import HttpPolicy

FAST = HttpSettings(user_agent="http-client-tests", connect_timeout_s=1, read_timeout_s=1, retries=2, backoff_s=0.01)
PATH = "/v8/finance/chart/AAPL"


@pytest.fixture
def client():
    http = HttpClient(FAST)
    yield http
    http.close()


def client_with(**changes) -> HttpClient:
    return HttpClient(HttpSettings(**{**FAST.__dict__, **changes}))


def test_a_503_is_retried_and_the_answer_counts_its_tries(sites: FakeSites, client: HttpClient) -> None:
    sites.script(PATH, Fault(503))
    response = client.get(sites.url(PATH))
    assert response.status_code == 200 and response.attempts == 2
    assert sites.hits[PATH] == 2
    assert b'"regularMarketPrice"' in response.content


def test_a_404_is_returned_at_once(sites: FakeSites, client: HttpClient) -> None:
    response = client.get(sites.url("/nowhere"))
    assert response.status_code == 404 and response.attempts == 1
    assert sites.hits["/nowhere"] == 1


def test_503_on_every_try_hands_back_the_last_answer(sites: FakeSites, client: HttpClient) -> None:
    sites.always(PATH, Fault(503, b"busy"))
    response = client.get(sites.url(PATH))
    assert (response.status_code, response.content, response.attempts) == (503, b"busy", 3)
    assert sites.hits[PATH] == 3


def test_connection_refused_raises_fetch_error_after_every_try(client: HttpClient) -> None:
    with pytest.raises(FetchError, match="ConnectionError") as caught:
        client.get(f"http://127.0.0.1:{free_port()}/x")
    assert caught.value.attempts == FAST.retries + 1


def test_a_bad_scheme_is_not_retried(client: HttpClient) -> None:
    with pytest.raises(FetchError, match="InvalidSchema") as caught:
        client.get("htp://127.0.0.1/x")
    assert caught.value.attempts == 1


@pytest.mark.parametrize("action", ["cut", "close"])
def test_a_broken_answer_is_retried(sites: FakeSites, client: HttpClient, action: str) -> None:
    sites.script(PATH, Fault(200, chart_body("AAPL", 1.5), action=action))
    response = client.get(sites.url(PATH))
    assert response.status_code == 200 and response.attempts == 2
    assert b"AAPL" in response.content


def test_a_hanging_server_costs_each_try_its_read_timeout(sites: FakeSites, client: HttpClient) -> None:
    sites.always(PATH, Fault(action="hang"))
    started = time.monotonic()
    with pytest.raises(FetchError, match="ReadTimeout") as caught:
        client.get(sites.url(PATH))
    took_s = time.monotonic() - started
    assert caught.value.attempts == 3 and sites.hits[PATH] == 3
    assert 3 * FAST.read_timeout_s - 0.1 <= took_s < 3 * FAST.read_timeout_s + 1


def test_a_trickling_body_is_abandoned_after_read_timeout_s(sites: FakeSites) -> None:
    http = client_with(retries=0)
    sites.always(PATH, Fault(200, b"x" * 100, action="trickle", interval_s=0.2))
    started = time.monotonic()
    try:
        with pytest.raises(FetchError, match="ResponseTooSlow"):
            http.get(sites.url(PATH))
    finally:
        http.close()
    assert time.monotonic() - started < FAST.read_timeout_s + 0.5


def test_the_deadline_bounds_every_try_and_wait(sites: FakeSites) -> None:
    http = client_with(read_timeout_s=1, retries=5)
    sites.always(PATH, Fault(action="hang"))
    started = time.monotonic()
    try:
        with pytest.raises(DeadlineExceeded, match="ReadTimeout") as caught:
            http.get(sites.url(PATH), deadline=http.policy.clock() + 1.5)
    finally:
        http.close()
    took_s = time.monotonic() - started
    assert 1.4 <= took_s < 2.0, f"took {took_s:.2f}s for a 1.5 s deadline"
    assert caught.value.attempts == 2  # a full try, then one cut to the 0.5 s left


def test_stop_ends_a_backoff_at_once(sites: FakeSites) -> None:
    stop = threading.Event()
    http = HttpClient(HttpSettings(**{**FAST.__dict__, "backoff_s": 30}), stop=stop)
    sites.script(PATH, Fault(503))
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(Stopped, match="stopping") as caught:
            http.get(sites.url(PATH))
    finally:
        timer.join(5)
        http.close()
    assert time.monotonic() - started < 2
    assert caught.value.attempts == 1 and sites.hits[PATH] == 1


def test_breakers_are_per_endpoint_name(sites: FakeSites) -> None:
    http = client_with(retries=0, breaker_failures=2)
    sites.always(PATH, Fault(503))
    try:
        for _ in range(2):
            assert http.get(sites.url(PATH), endpoint="chart").status_code == 503
        with pytest.raises(CircuitOpen, match="not sent to chart: 2 requests in a row failed") as caught:
            http.get(sites.url(PATH), endpoint="chart")
        assert caught.value.attempts == 0 and sites.hits[PATH] == 2
        assert http.get(sites.url("/quote/AAPL"), endpoint="quote").status_code == 200
    finally:
        http.close()


def test_the_default_endpoint_is_the_host(sites: FakeSites) -> None:
    http = client_with(retries=0, breaker_failures=1)
    sites.always(PATH, Fault(503))
    try:
        http.get(sites.url(PATH))
        with pytest.raises(CircuitOpen, match=f"not sent to {endpoint_of(sites.base)}"):
            http.get(sites.url("/quote/AAPL"))  # same host, same breaker
    finally:
        http.close()
    assert endpoint_of("http://127.0.0.1:8080/a?b") == "127.0.0.1:8080"


def test_a_client_can_share_a_policy(sites: FakeSites) -> None:
    policy = HttpPolicy(FAST)
    first, second = HttpClient(FAST, policy=policy), HttpClient(FAST, policy=policy)
    try:
        assert first.policy is second.policy
        assert second.get(sites.url(PATH)).status_code == 200
    finally:
        first.close()
        second.close()


# --- max_body_bytes -------------------------------------------------------------------------------------------

CAP = 1024 * 1024


def test_a_chunked_body_of_max_body_bytes_is_read_and_one_byte_more_is_not(sites: FakeSites) -> None:
    http = client_with(max_body_bytes=CAP)
    sites.script(PATH, Fault(action="endless", limit_bytes=CAP), Fault(action="endless", limit_bytes=CAP + 64 * 1024))
    try:
        assert len(http.get(sites.url(PATH)).content) == CAP
        with pytest.raises(BodyTooLarge) as caught:
            http.get(sites.url(PATH))
    finally:
        http.close()
    assert str(caught.value) == (
        f"GET {sites.url(PATH)}: the body is larger than max_body_bytes={CAP} (more than {CAP} bytes arrived): "
        "not read on, and not retried (the same URL sends the same body)"
    )
    assert caught.value.attempts == 1 and sites.hits[PATH] == 2


def test_a_content_length_past_max_body_bytes_fails_at_once_without_a_retry(sites: FakeSites) -> None:
    http = client_with(max_body_bytes=CAP)
    sites.always(PATH, Fault(action="oversize", declared_length=CAP + 1, body=b"<p>"))
    started = time.monotonic()
    try:
        with pytest.raises(BodyTooLarge, match=rf"larger than max_body_bytes={CAP} \(Content-Length: {CAP + 1}\)"):
            http.get(sites.url(PATH))
    finally:
        http.close()
    assert time.monotonic() - started < FAST.read_timeout_s / 2  # the body it promised was never waited for
    assert sites.hits[PATH] == 1


def test_a_body_of_max_body_bytes_with_its_content_length_is_read(sites: FakeSites) -> None:
    http = client_with(max_body_bytes=CAP)
    sites.script(PATH, Fault(200, b"x" * CAP))
    try:
        assert len(http.get(sites.url(PATH)).content) == CAP
    finally:
        http.close()
