"""The request body limit, a pure ASGI middleware: 413 `payload_too_large` before the body is
parsed, at once when Content-Length says too much, else as soon as the streamed (chunked)
bytes pass the limit. Reading stops there: the app sees a disconnect and its own answer is
dropped."""

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phoenix_coupons.api.errors import payload_too_large


class BodyLimit:
    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], int]) -> None:
        """`limit_for(scope)`: the most body bytes this request may send."""
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = Headers(scope=scope).get("content-length", "")
        # isascii: str.isdigit() also takes digits int() refuses, such as "²".
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            await payload_too_large(limit)(scope, receive, send)
            return
        received = 0
        refused = False
        started = False

        async def counted() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await payload_too_large(limit)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the app's answer to the body it could not read
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, guarded)
