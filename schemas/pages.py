"""What every list page carries beyond the spec's `total`."""

from typing import Any

from pydantic import Field


def next_after() -> Any:
    """The cursor of the next page, present only when more follows: a last page (and so
    every body the spec shows) keeps exactly the spec's fields."""
    return Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Present when more items follow: pass it as `after` for the next page "
        "(cursor pages cost the same at any depth; `offset` pages grow with the offset).",
    )
