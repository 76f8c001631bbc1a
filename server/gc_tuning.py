"""The garbage collector's settings for a long-running server process.

CPython's cyclic collector runs a generation-0 pass every 700 net allocations and, every
so often, a full pass over every live object. A server holding thousands of Watch streams
(each a few coroutine frames, protobuf messages and futures) plus everything its imports
built spends a full pass walking objects that never become garbage, on the event loop,
while deliveries wait. Two changes, both standard for asyncio servers:

- what exists once the server is up (modules, ORM mappings, compiled statements) is frozen
  out of every future pass (`gc.freeze`);
- passes run after `gen0_threshold` net allocations instead of 700, so the many short-lived
  objects of a fan-out are freed by reference counting before a pass ever looks at them.

Reference counting still frees almost everything at once; only cycles wait longer.
"""

from __future__ import annotations

import gc

# Python's default is 700; see bench/RESULTS.md (watch_fanout) for what 50,000 bought.
DEFAULT_GEN0_THRESHOLD = 50_000


def tune_collector(gen0_threshold: int = DEFAULT_GEN0_THRESHOLD) -> None:
    """Call once the server is built and listening. 0 leaves Python's defaults alone."""
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
