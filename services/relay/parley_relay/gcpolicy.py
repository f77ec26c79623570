"""The relay's garbage-collector settings (issue 14: pauses at 10,000 connections).

CPython starts a full collection after `threshold2` young (generation-1) collections, once
the long-lived heap has grown by a quarter since the last one, and a full collection stops
the whole process while it walks every tracked object. At 10,000 idle connections the heap
holds about 470,000 of them (some 47 per connection: bound methods, closures, libev
watchers) and one full collection takes 250-400 ms on the 2-core bench machine. While
clients connect (a storm, a replica restart) the heap grows all the time, so the stock
threshold (10) ran 14-15 of them in one 10,000-connection `bench/idle.py` run (3.0 s in
all, one of them during the live pairs: p99 260 ms); after 100 young collections instead,
two (0.4-0.5 s). Cycles that outlive the young generations wait longer for their
collection; young garbage is collected as before.

The startup heap (modules, settings, clients: about 50,000 objects, never garbage) is
frozen out of every later collection. The connections' own objects are not frozen: their
cycles would never be collected once the connection closed.

`apply()` is called once from `server.run()`, after the app is built and before serving.
"""

from __future__ import annotations

import gc

# Young (generation-1) collections between two full collections (CPython's default: 10).
FULL_COLLECTION_AFTER = 100


def apply() -> None:
    """Collect and freeze the startup heap, then space full collections out."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)
