"""A small checkout service whose settings follow an Argo Rollouts canary release.

Run it from the project root (see README.md)::

    PODINFO_DIR=/tmp/podinfo python -m uvicorn examples.fastapi.app:app --workers 2
"""

import logging
import os
from typing import Annotated

from fastapi import Depends, FastAPI
from openfeature import api
from openfeature.evaluation_context import EvaluationContext

from canaryconf import Change
from canaryconf.fastapi import (
    PinnedSettings,
    canaryconf_lifespan,
    canaryconf_router,
    current_settings,
    pinned_settings,
)
from canaryconf.openfeature import CanaryConfProvider

from .settings import CheckoutSettings, settings

logger = logging.getLogger("checkout")

# The snapshot pinned for this request; both dependencies give the same one.
SettingsDep = Annotated[CheckoutSettings, Depends(current_settings(settings))]
PinnedDep = Annotated[PinnedSettings[CheckoutSettings], Depends(pinned_settings(settings))]

# The lifespan watches the volume in each worker's event loop while the worker runs.
app = FastAPI(title="checkout", lifespan=canaryconf_lifespan(settings))
# GET /-/canaryconf and POST /-/canaryconf/reload: opt-in, keep them internal.
app.include_router(canaryconf_router(settings))

# Flags through OpenFeature: the typed fields and the flagd document of the settings. The
# provider follows every change the lifespan's watcher applies.
api.set_provider_and_wait(CanaryConfProvider(settings))
flags = api.get_client("checkout")


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


@app.get("/checkout/flow")
async def checkout_flow(user: str) -> dict[str, object]:
    # The flagd flag "checkout-flow" decides per user (its targeting can read the pod's
    # role as $canaryconf.role); without one, "classic" for everybody.
    details = await flags.get_string_details_async(
        "checkout-flow", "classic", EvaluationContext(targeting_key=user)
    )
    return {
        "user": user,
        "flow": details.value,
        "variant": details.variant,
        "reason": details.reason,
        "error": details.error_code,
        "pid": os.getpid(),
    }
