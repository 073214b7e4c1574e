"""core.base.redact: secrets masked wherever text is shown, in every form they can be printed in, and items kept exact.

Each secret here is registered the way a run registers it (DATABASE_URL, POSTGRES_PASSWORD, REDIS_URL), so the
test sees what a run would print. Secrets stay registered for the rest of the test process: each test uses a
random one, and the short ones are masked only where they are known to be a password, so nothing else changes.
"""

from __future__ import annotations

import json
import logging
import uuid
from urllib.parse import quote

import pytest

from core.base.redact import MASK, RedactingFormatter, redact
from core.pipeline.replay import read_replay
from core.run.ledger import DeadLetters
from core.storage.settings import database_url
from core.storage.url import describe


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


# --- a short password ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {"DATABASE_URL": "postgresql://app:q7@db.example:5432/prices"},
        {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "q7", "POSTGRES_HOST": "db.example"},
    ],
)
def test_a_two_character_password_is_masked_where_it_is_known_to_be_the_password(env):
    url = database_url(env)
    shown = url.render_as_string(hide_password=False)

    assert redact(f"could not connect to {shown}") == f"could not connect to {describe(url)}"
    assert redact("dsn: host=db.example password=q7 user=app") == f"dsn: host=db.example password={MASK} user=app"
    assert redact("connect(password='q7', host='db.example')") == f"connect(password='{MASK}', host='db.example')"
    assert redact('{"password": "q7"}') == f'{{"password": "{MASK}"}}'
    assert redact("POSTGRES_PASSWORD=q7") == f"POSTGRES_PASSWORD={MASK}"
    assert redact("app:q7@db.example") == f"app:{MASK}@db.example"
    # Anywhere else two characters are as likely to be part of a word, a symbol or a number: left as they are.
    assert redact("Q7 is a symbol; q7q7 and the q7 query") == "Q7 is a symbol; q7q7 and the q7 query"


def test_the_password_field_of_any_url_is_masked_whatever_its_length():
    assert redact("redis://:x@cache.example:6379/0") == f"redis://:{MASK}@cache.example:6379/0"
    assert (
        redact("see https://bob:hunter2@example.org/path?q=1 and more")
        == f"see https://bob:{MASK}@example.org/path?q=1 and more"
    )
    # A host and port, an address without a password and an e-mail address are not passwords.
    for text in (
        "redis://127.0.0.1:6379/0",
        "postgresql://app@db.example:5432/db",
        "mail bob@example.org:",
        "http://[::1]:8080/x",
        "ratio 3:2@noon",
    ):
        assert redact(text) == text


# --- every printed form of a longer one --------------------------------------------------------------------


def test_a_redis_password_that_needs_url_encoding_is_masked_in_both_forms(tmp_path, monkeypatch):
    from core.app.executor import YamlPipelineExecutor

    decoded = unique("p@ss/w:rd ")
    encoded = quote(decoded, safe="")
    monkeypatch.setenv("REDIS_URL", f"redis://:{encoded}@127.0.0.1:6379/0")
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "queues:\n  - {name: Q, backend: redis}\nworkers:\n"
        "  - {name: S, location: bench.noop_workers, class: CountSource, input_values: [1], "
        "output_queues: [Q]}\n"
        "  - {name: D, location: bench.noop_workers, class: Discard, input_queue: Q}\n"
    )

    executor = YamlPipelineExecutor(path, dead_letter_path=tmp_path / "dl.jsonl")  # registers the URL's password
    executor.distributed.run.redis.close()

    assert redact(f"AUTH failed for {decoded}") == f"AUTH failed for {MASK}"
    assert redact(f"url redis://:{encoded}@127.0.0.1") == f"url redis://:{MASK}@127.0.0.1"


def test_a_password_is_masked_in_json_and_repr_text_too():
    secret = unique("pa\"ss\\wo'rd-")
    database_url({"POSTGRES_PASSWORD": secret})

    for text in (json.dumps({"error": f"refused {secret}"}), repr(f"refused {secret}"), f"refused {secret}"):
        shown = redact(text)
        assert secret not in shown and json.dumps(secret)[1:-1] not in shown and repr(secret)[1:-1] not in shown, shown
        assert MASK in shown


def test_redact_data_masks_every_string_and_keeps_the_shape():
    from core.base.redact import redact_data

    secret = unique("s3cret-")
    database_url({"POSTGRES_PASSWORD": secret})

    data = {"error": f"refused {secret}", "groups": {"G": {"n": 3, "why": [f"{secret}!", None, 1.5]}}}

    assert redact_data(data) == {"error": f"refused {MASK}", "groups": {"G": {"n": 3, "why": [f"{MASK}!", None, 1.5]}}}


def test_log_lines_are_masked_tracebacks_included():
    secret = unique("tb-secret-")
    database_url({"DATABASE_URL": f"postgresql://app:{secret}@db.example/prices"})
    formatter = RedactingFormatter("%(message)s")
    try:
        raise RuntimeError(f"cannot reach postgresql://app:{secret}@db.example")
    except RuntimeError as exc:
        record = logging.LogRecord(
            "t", logging.ERROR, __file__, 1, "failed with %r", (secret,), (type(exc), exc, exc.__traceback__)
        )

    text = formatter.format(record)

    assert secret not in text and "Traceback" in text and text.count(MASK) >= 2, text


# --- dead letters: the error is text, the item is data --------------------------------------------------------


def test_a_dead_letter_keeps_its_item_exact_and_masks_its_error(tmp_path):
    secret = unique("dl-secret-")
    database_url({"POSTGRES_PASSWORD": secret})
    item = {"symbol": "ABC", "note": f"a value that happens to hold {secret}", "pair": (1, 2)}
    letters = DeadLetters(tmp_path / "dl.jsonl", "pipeline")

    assert letters.write(group="Store", item=item, error=f"could not store with password {secret}")
    letters.close()

    [record] = [json.loads(line) for line in (tmp_path / "dl.jsonl").read_text().splitlines()]
    assert record["error"] == f"could not store with password {MASK}"
    assert read_replay(tmp_path / "dl.jsonl") == {"Store": [item]}  # the replay is the same item


# --- what a run prints at its end ---------------------------------------------------------------------------


def test_the_stats_file_the_html_report_and_the_summary_hold_no_password(tmp_path, capsys):
    import argparse

    from core.app.cli import finish
    from core.run.report import RunReport

    secret = unique('pa"ss\\w-')
    database_url({"POSTGRES_PASSWORD": secret})
    report = RunReport(pipeline="p", finish_reason="failed", duration_s=0.0, error=f"cannot connect with {secret}")
    args = argparse.Namespace(
        stats_json=str(tmp_path / "stats.json"),
        report_html=str(tmp_path / "report.html"),
        pipeline=None,
        check=False,
        graph=False,
    )

    assert finish(args, report) == 1

    text = (tmp_path / "stats.json").read_text()
    printed = capsys.readouterr().out
    page = (tmp_path / "report.html").read_text()
    assert "cannot connect with" in page
    for shown in (text, printed, page):
        assert secret not in shown and json.dumps(secret)[1:-1] not in shown, shown
    assert json.loads(text)["error"] == f"cannot connect with {MASK}"
    assert printed == f"p: failed (cannot connect with {MASK}); nothing was run; exit 1\n"


def test_a_dead_letter_in_redis_keeps_its_item_exact_and_masks_its_error():
    from types import SimpleNamespace

    from core.base import codec
    from core.transport.redis.settle import Settler

    secret = unique("redis-dl-secret-")
    database_url({"POSTGRES_PASSWORD": secret})
    item = {"symbol": "ABC", "note": f"a value that happens to hold {secret}", "pair": (1, 2)}
    queue = SimpleNamespace(group="Store", name="Rows", run=SimpleNamespace(process_id="vm:1", max_bulk_bytes=2**29))

    text = Settler._record(SimpleNamespace(queue=queue), item, f"could not store with password {secret}", "failed", 1)

    record = json.loads(text)
    assert record["error"] == f"could not store with password {MASK}"
    assert codec.decode(record["item"]) == item  # the record's item is the item, as a replay reads it
