"""The API's uvicorn settings: uvloop and httptools unless the operator picks the standard
loop and h11 (the bench's framework reference takes the same settings)."""

import pytest

from phoenix_coupons.api.app import server_options
from phoenix_coupons.settings import Settings


def test_defaults_take_the_fast_loop_and_parser_when_installed() -> None:
    options = server_options(Settings(secret_key="s" * 16))
    assert options["loop"] == "auto" and options["http"] == "auto"
    assert options["port"] == 8080 and options["access_log"] is False
    # "auto" means these: they are dependencies of the service.
    import httptools  # noqa: F401
    import uvloop  # noqa: F401


def test_operator_choices_and_the_command_line_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOENIX_API_EVENT_LOOP", "asyncio")
    monkeypatch.setenv("PHOENIX_API_HTTP_PARSER", "h11")
    options = server_options(Settings(secret_key="s" * 16), host="0.0.0.0", port=9000)
    assert (options["loop"], options["http"]) == ("asyncio", "h11")
    assert (options["host"], options["port"]) == ("0.0.0.0", 9000)


def test_an_unknown_loop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOENIX_API_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="api_event_loop"):
        Settings(secret_key="s" * 16)
