"""The framework reference of `make bench` (bench-only, not one of the product's routes):
the API's server and framework settings (`server_options`, FastAPI, a pydantic body and
answer) serving one endpoint that does one conditional `find_one_and_update`: no auth, no
outbox, no middleware of ours. `GET /ref/hello` answers a constant: the framework alone.

    MONGODB_URI=... PHOENIX_MONGODB_DATABASE=... python -m bench.reference_app --port P

`POST /ref/use` {"code", "user_id"}: one use of the document `user_id` of `ref_uses` (the
bench writes them beforehand with `used` 0); 201 with the document after, 409 when used."""

import argparse

import uvicorn
from fastapi import FastAPI, HTTPException, status
from pydantic import BaseModel
from pymongo import AsyncMongoClient, ReturnDocument

from phoenix_coupons.api.app import server_options
from phoenix_coupons.logging import configure_logging
from phoenix_coupons.runtime import tune_gc
from phoenix_coupons.settings import Settings

COLLECTION = "ref_uses"


class UseBody(BaseModel):
    code: str
    user_id: str


class Used(BaseModel):
    user_id: str
    used: int


def create_reference_app(settings: Settings) -> FastAPI:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(settings.mongodb_uri)
    col = client[settings.mongodb_database][COLLECTION]
    app = FastAPI(title="framework reference")

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        await client.admin.command("ping")
        return {"status": "ready"}

    @app.get("/ref/hello")
    async def hello() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/ref/use", status_code=status.HTTP_201_CREATED)
    async def use(body: UseBody) -> Used:
        doc = await col.find_one_and_update(
            {"_id": body.user_id, "used": {"$lt": 1}},
            {"$inc": {"used": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise HTTPException(status.HTTP_409_CONFLICT, "used")
        return Used(user_id=body.user_id, used=int(str(doc["used"])))

    return app


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.reference_app")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    settings = Settings()
    configure_logging(settings.log_level)
    tune_gc(settings.gc_threshold)
    uvicorn.run(create_reference_app(settings), **server_options(settings, port=args.port))


if __name__ == "__main__":
    main()
