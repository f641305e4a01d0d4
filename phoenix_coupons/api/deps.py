"""The services routes depend on, each a typed dependency: a route names what it uses, and
the composition root (bootstrap.Container) stays out of the routes."""

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from phoenix_coupons.adapters.lookup_limiter import MongoLookupLimiter
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.services.api_keys import ApiKeyService
from phoenix_coupons.services.code_export import CodeExport
from phoenix_coupons.services.coupon_queries import CouponQueries
from phoenix_coupons.services.definitions import DefinitionService
from phoenix_coupons.services.generation import GenerationService
from phoenix_coupons.services.jobs import JobService
from phoenix_coupons.services.redemptions import RedemptionService
from phoenix_coupons.services.reservations import ReservationService
from phoenix_coupons.services.rewards import RewardService

T = TypeVar("T")


def _of_container(part: Callable[[Container], T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency answering `part` of the app's container (create_app puts it in the state)."""

    # Async: FastAPI runs a plain `def` dependency in its thread pool, two thread hops a
    # request for what is an attribute read (BENCHMARKS.md, scenario (r)).
    async def dependency(request: Request) -> T:
        container: Container = request.app.state.container
        return part(container)

    return dependency


ApiKeys = Annotated[ApiKeyService, Depends(_of_container(lambda c: c.api_keys))]
Rewards = Annotated[RewardService, Depends(_of_container(lambda c: c.rewards))]
Definitions = Annotated[DefinitionService, Depends(_of_container(lambda c: c.definitions))]
Generation = Annotated[GenerationService, Depends(_of_container(lambda c: c.generation))]
Jobs = Annotated[JobService, Depends(_of_container(lambda c: c.jobs))]
Redemptions = Annotated[RedemptionService, Depends(_of_container(lambda c: c.redemptions))]
Reservations = Annotated[ReservationService, Depends(_of_container(lambda c: c.reservations))]
Coupons = Annotated[CouponQueries, Depends(_of_container(lambda c: c.coupon_queries))]
Exports = Annotated[CodeExport, Depends(_of_container(lambda c: c.code_export))]
LookupLimit = Annotated[MongoLookupLimiter, Depends(_of_container(lambda c: c.lookup_limiter))]
