"""An async stage (asyncio tasks) over Redis queues: its items are settled from the event loop."""

from __future__ import annotations

import fixture_workers
import pytest
from test_executor import assert_accounted, key, mode, pipeline, run, source, stage  # noqa: F401 - fixtures


@pytest.mark.parametrize("mode", ["redis"])
def test_an_async_stage_reading_a_redis_queue_settles_every_item(tmp_path, key):
    """Its items are settled from the event loop (the settler's answer comes back through the loop)."""
    executor, report = run(
        tmp_path,
        pipeline(
            {"Numbers": 5, "Doubled": 5},
            source("Source", range(100), "Numbers"),
            stage("Double", "AsyncDouble", "Numbers", ["Doubled"], instances=8, delay_s=0.001),
            stage("Sink", "Collect", "Doubled", key=key),
        ),
    )

    assert sorted(fixture_workers.collected(key)) == [2 * n for n in range(100)]
    assert executor.groups["Double"].mode == "async"
    assert report.exit_code == 0
    assert_accounted(report)
