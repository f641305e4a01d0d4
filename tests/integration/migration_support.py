"""What the migration tests share (their own database: the `own_mongo` fixture)."""


class Crash(Exception):
    """The process dies here (raised by a test between two writes of a step)."""
