"""The checkout service on plain Starlette: the same settings as the FastAPI example,
pinned per request by canaryconf's middleware (``request.state.canaryconf``).

Run it from the project root (see README.md)::

    PODINFO_DIR=/tmp/podinfo python -m uvicorn examples.starlette.app:app --workers 2
"""

import logging
import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from canaryconf import Change
from canaryconf.starlette import CanaryConfMiddleware, canaryconf_lifespan, canaryconf_routes

from ..fastapi.settings import CheckoutSettings, settings

logger = logging.getLogger("checkout")


@settings.on_promoted
def promoted(change: Change[CheckoutSettings]) -> None:
    logger.warning("pod %d is stable now (generation %s)", os.getpid(), change.generation)


async def checkout(request: Request) -> JSONResponse:
    # One snapshot for the whole request: a reload that lands meanwhile cannot mix two
    # versions into one response.
    pinned = request.state.canaryconf
    snap: CheckoutSettings = pinned.settings
    return JSONResponse(
        {
            "generation": pinned.generation,
            "db_url": snap.db_url,
            "new_checkout": snap.new_checkout,
            "role": snap.rollout.role,
            "flow": "new" if snap.new_checkout else "classic",
            "pid": os.getpid(),
        }
    )


app = Starlette(
    routes=[
        Route("/checkout", checkout),
        # GET /-/canaryconf/ and POST /-/canaryconf/reload: opt-in, keep them internal.
        Mount("/-/canaryconf", routes=canaryconf_routes(settings)),
    ],
    middleware=[Middleware(CanaryConfMiddleware, settings=settings)],
    # The lifespan watches the volume in each worker's event loop while the worker runs.
    lifespan=canaryconf_lifespan(settings),
)
