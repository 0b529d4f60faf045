"""A small checkout service whose settings follow an Argo Rollouts canary release.

Run it from this directory (see README.md): ``flask --app app run --debug`` or
``gunicorn -w 2 -b 127.0.0.1:8000 app:app``, with ``PODINFO_DIR`` naming the volume.
"""

from __future__ import annotations

import logging
import os

from flask import Flask
from settings import CheckoutSettings, settings

from canaryconf.flask import CanaryConf

logging.basicConfig(level=logging.INFO, format="%(process)d %(levelname)s %(message)s")

app = Flask(__name__)
# endpoints=True adds GET /-/canaryconf and POST /-/canaryconf/reload: keep them internal.
canary: CanaryConf[CheckoutSettings] = CanaryConf(app, settings, endpoints=True)


@settings.on_promoted
def promoted(change: object) -> None:
    app.logger.info("this pod is stable now")


@app.get("/checkout")
def checkout() -> dict[str, object]:
    # Everything comes from the snapshot pinned when the request started: a reload that
    # lands meanwhile cannot mix two versions into one response.
    snap = canary.snapshot
    return {
        "generation": canary.generation,
        "db_url": snap.db_url,
        "new_checkout": snap.new_checkout,
        "role": snap.rollout.role,
        "flow": "new" if snap.new_checkout else "classic",
        "pid": os.getpid(),
    }
