"""Settings of the checkout service, read from the pod's downwardAPI volume.

The volume directory comes from ``PODINFO_DIR`` (default ``/etc/podinfo``, where the
Deployment mounts it). ``model_config`` is evaluated when the class is created, so the
variable is read at import time. ``settings.CANARYCONF`` names this class; the
``canaryconf.django`` app makes it live when Django is ready.
"""

from __future__ import annotations

import os

from pydantic import SecretStr

from canaryconf import CanaryConfigDict, CanarySettings, RolloutInfo, annotation


class CheckoutSettings(CanarySettings):
    model_config = CanaryConfigDict(
        downward_api_dir=os.environ.get("PODINFO_DIR", "/etc/podinfo"),
        annotation_prefix="checkout.example.com/",
    )

    #: annotation ``checkout.example.com/db-url``
    db_url: str = annotation("db-url", default="postgres://stable-db/checkout")
    #: annotation ``checkout.example.com/new-checkout`` ("true" / "false")
    new_checkout: bool = annotation("new-checkout", default=False)
    #: annotation ``checkout.example.com/payments-token``: redacted wherever shown
    payments_token: SecretStr = annotation("payments-token", default=SecretStr(""), secret=True)
    #: the ``role`` and ``rollouts-pod-template-hash`` labels
    rollout: RolloutInfo = RolloutInfo()
