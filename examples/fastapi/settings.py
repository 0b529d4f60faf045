"""Settings of the checkout service, read from the pod's downwardAPI volume.

The volume directory comes from ``PODINFO_DIR`` (default ``/etc/podinfo``, where the
Deployment mounts it). ``model_config`` is evaluated when the class is created, so the
variable is read at import time: in each uvicorn worker, which imports the app itself.
"""

from __future__ import annotations

import os

from canaryconf import CanaryConfigDict, CanarySettings, RolloutInfo, annotation, live
from canaryconf.openfeature import FlagdDefinitions


class CheckoutSettings(CanarySettings):
    model_config = CanaryConfigDict(
        downward_api_dir=os.environ.get("PODINFO_DIR", "/etc/podinfo"),
        annotation_prefix="checkout.example.com/",
    )

    #: annotation ``checkout.example.com/db-url``
    db_url: str = annotation("db-url", default="postgres://stable-db/checkout")
    #: annotation ``checkout.example.com/new-checkout`` ("true" / "false")
    new_checkout: bool = annotation("new-checkout", default=False)
    #: the ``role`` and ``rollouts-pod-template-hash`` labels
    rollout: RolloutInfo = RolloutInfo()
    #: annotation ``checkout.example.com/flags``: a flagd flags document, served through
    #: OpenFeature (see app.py); none by default
    flags: FlagdDefinitions = annotation(
        "flags", default_factory=lambda: FlagdDefinitions(flags={})
    )


settings = live(CheckoutSettings)
