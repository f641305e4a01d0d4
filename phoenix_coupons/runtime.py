"""Process-wide tuning, applied once by the entry points (CLI, benchmark) after start-up."""

import gc


def tune_gc(gen0_threshold: int) -> None:
    """A batch of 1,000 events makes tens of thousands of short-lived objects. With Python's
    defaults (a young collection every 700 allocations) the worker spent more time in the
    cyclic collector than in its work, most of it re-scanning the long-lived objects of its
    start (modules, schemas, clients). Those are moved out of the collector's sight
    (`gc.freeze`), and young collections run every `gen0_threshold` allocations: garbage
    without cycles is freed at once by reference counting either way. 0 keeps the defaults."""
    if gen0_threshold <= 0:
        return
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
