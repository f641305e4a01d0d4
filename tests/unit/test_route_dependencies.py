"""Every dependency of every route runs on the event loop: FastAPI runs a plain `def`
dependency in its thread pool, two thread hops a request (9% of the API's CPU on a redeem,
BENCHMARKS.md scenario (r))."""

import inspect
from collections.abc import Iterator

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from phoenix_coupons.api.routes import codes, coupons, jobs, redemptions, reservations, rewards


def _calls(dependant: Dependant) -> Iterator[object]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _runs_on_the_loop(call: object) -> bool:
    if inspect.iscoroutinefunction(call):
        return True
    # A security scheme's instance (APIKeyHeader, HTTPBearer): its class's call method.
    return not inspect.isfunction(call) and inspect.iscoroutinefunction(type(call).__call__)


def test_no_route_dependency_runs_in_the_thread_pool() -> None:
    routers = (codes, coupons, jobs, redemptions, reservations, rewards)
    routes = [r for m in routers for r in m.router.routes if isinstance(r, APIRoute)]
    assert len(routes) > 20
    blocking = {
        f"{route.path}: {getattr(call, '__qualname__', call)}"
        for route in routes
        for call in _calls(route.dependant)
        if not _runs_on_the_loop(call)
    }
    assert not blocking, blocking
