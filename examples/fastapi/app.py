"""A small checkout service whose settings follow an Argo Rollouts canary release.

Run it from the project root (see README.md)::

    PODINFO_DIR=/tmp/podinfo python -m uvicorn examples.fastapi.app:app --workers 2
"""

import logging
import os
from typing import Annotated

from fastapi import Depends, FastAPI

from canaryconf import Change
from canaryconf.fastapi import (
    PinnedSettings,
    canaryconf_lifespan,
    canaryconf_router,
    current_settings,
    pinned_settings,
)

from .settings import CheckoutSettings, settings

logger = logging.getLogger("checkout")

# The snapshot pinned for this request; both dependencies give the same one.
SettingsDep = Annotated[CheckoutSettings, Depends(current_settings(settings))]
PinnedDep = Annotated[PinnedSettings[CheckoutSettings], Depends(pinned_settings(settings))]

# The lifespan watches the volume in each worker's event loop while the worker runs.
app = FastAPI(title="checkout", lifespan=canaryconf_lifespan(settings))
# GET /-/canaryconf and POST /-/canaryconf/reload: opt-in, keep them internal.
app.include_router(canaryconf_router(settings))


@settings.on_promoted
def promoted(change: Change[CheckoutSettings]) -> None:
    logger.warning("pod %d is stable now (generation %s)", os.getpid(), change.generation)


@app.get("/checkout")
async def checkout(snap: SettingsDep, pinned: PinnedDep) -> dict[str, object]:
    # Everything comes from the snapshot pinned for this request: a reload that lands
    # meanwhile cannot mix two versions into one response.
    return {
        "generation": pinned.generation,
        "db_url": snap.db_url,
        "new_checkout": snap.new_checkout,
        "role": snap.rollout.role,
        "flow": "new" if snap.new_checkout else "classic",
        "pid": os.getpid(),
    }
