"""The reference for bench/redis_hop.py: one Redis hop written plainly with redis-py, in one process.

    python bench/redis_plain.py --mode script|multi|single --items 100000 [--batch 100] [--prefill] [--redis-url URL]

A producer thread writes N items (JSON, fields `d` and `n` as core/transport/redis/writer.py writes them) with XADD in
pipelined batches of --batch; the main thread reads them as one consumer of a consumer group with
XREADGROUP COUNT --batch, decodes each, and settles each batch the way the runner does, by one of:

- script: one server-side Lua script per batch: XPENDING for this consumer (the ownership check), then
  XACK and XDEL of the entries it owns (core/transport/redis/scripts.py SETTLE without outputs);
- multi: XPENDING for this consumer (a round trip), then XACK and XDEL in one MULTI/EXEC;
- single: XREADGROUP COUNT 1 and the script above for each item: one item at a time.

The stream is not bounded (the producer never waits). With --prefill the producer writes every item first
and only the consumer is timed (settling a stream that is already full). Prints one JSON line: items,
duration_s (from before the producer starts, or with --prefill before the first read, to the last settlement). Its keys (bench:redis_plain:<uuid>:...) are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid

import redis

SETTLE = """
local mine = {}
for _, entry in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1000000, ARGV[2])) do
  mine[entry[1]] = true
end
local settled = {}
for i = 3, #ARGV do
  if mine[ARGV[i]] then table.insert(settled, ARGV[i]) end
end
if #settled > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(settled))
  redis.call('XDEL', KEYS[1], unpack(settled))
end
return #settled
"""
GROUP, CONSUMER = "readers", "consumer-1"


def produce(client: redis.Redis, key: str, items: int, batch: int) -> None:
    """XADD every item, `batch` to a pipeline round trip."""
    for start in range(0, items, batch):
        with client.pipeline(transaction=False) as pipe:
            for n in range(start, min(start + batch, items)):
                pipe.xadd(key, {"d": json.dumps(n), "n": 0})
            pipe.execute()


def consume(client: redis.Redis, key: str, items: int, batch: int, mode: str) -> int:
    """Read and settle until `items` are settled; return how many were settled."""
    settle = client.register_script(SETTLE)
    count = 1 if mode == "single" else batch
    settled = 0
    while settled < items:
        reply = client.xreadgroup(GROUP, CONSUMER, {key: ">"}, count=count, block=500)
        if not reply:
            continue
        entries = reply[0][1]
        ids = []
        for entry_id, fields in entries:
            json.loads(fields[b"d"])  # the runner decodes every item it takes
            ids.append(entry_id)
        if mode == "multi":
            pending = client.xpending_range(key, GROUP, "-", "+", 1_000_000, CONSUMER)
            mine = {entry["message_id"] for entry in pending}
            owned = [entry_id for entry_id in ids if entry_id in mine]
            with client.pipeline(transaction=True) as pipe:
                pipe.xack(key, GROUP, *owned)
                pipe.xdel(key, *owned)
                pipe.execute()
            settled += len(owned)
        else:
            settled += settle(keys=[key], args=[GROUP, CONSUMER, *ids])
    return settled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["script", "multi", "single"], default="script")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--prefill", action="store_true", help="write every item first, time the consumer only")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    key = f"bench:redis_plain:{uuid.uuid4().hex[:10]}:q"
    producer_client = redis.Redis.from_url(args.redis_url)
    consumer_client = redis.Redis.from_url(args.redis_url)
    consumer_client.xgroup_create(key, GROUP, id="0", mkstream=True)
    try:
        producer = threading.Thread(target=produce, args=(producer_client, key, args.items, args.batch), daemon=True)
        if args.prefill:
            producer.run()
        started = time.perf_counter()
        if not args.prefill:
            producer.start()
        settled = consume(consumer_client, key, args.items, args.batch, args.mode)
        duration_s = time.perf_counter() - started
        if not args.prefill:
            producer.join()
    finally:
        consumer_client.delete(key)
    print(json.dumps({"mode": args.mode, "prefill": args.prefill, "items": settled, "duration_s": duration_s}))


if __name__ == "__main__":
    main()
