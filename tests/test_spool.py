"""core.run.spool: a generator's outputs held in memory, then on disk, and given back in order."""

from __future__ import annotations

import threading

import pytest

from core.base.errors import ItemError
from core.run.spool import CHUNK, Spool


def test_a_small_spool_stays_in_memory_and_gives_its_outputs_in_one_chunk():
    checked = []
    spool = Spool(checked.append, memory_outputs=10)
    for n in range(10):
        spool.add(n)

    assert spool.in_memory and list(spool.chunks()) == [list(range(10))]
    assert checked == []  # the one emit that sends them checks them


def test_past_its_memory_a_spool_holds_one_chunk_in_memory_and_gives_everything_back_in_order():
    checked = []
    spool = Spool(checked.append, memory_outputs=10)
    for n in range(1000):
        spool.add(n)
        assert len(spool._outputs) <= max(CHUNK, 11)  # noqa: SLF001 - what it holds in memory

    chunks = list(spool.chunks())
    assert not spool.in_memory and [n for chunk in chunks for n in chunk] == list(range(1000))
    assert all(len(chunk) <= CHUNK for chunk in chunks)
    assert [n for chunk in checked for n in chunk] == [n for chunk in chunks[:-1] for n in chunk]
    spool.close()


def test_an_output_that_cannot_go_to_disk_is_its_items_error():
    spool = Spool(lambda outputs: None, memory_outputs=2)
    with pytest.raises(ItemError, match="cannot be pickled"):
        for output in [1, 2, 3, threading.Lock(), *range(CHUNK)]:
            spool.add(output)
    spool.close()


def test_the_check_refusing_an_output_fails_the_item_as_it_spills():
    def refuse(outputs):
        if "bad" in outputs:
            raise ItemError("cannot be written to a Redis queue")

    spool = Spool(refuse, memory_outputs=3)
    with pytest.raises(ItemError, match="Redis"):
        for output in [1, "bad", 3, 4]:
            spool.add(output)
