"""The settings of the shop service that ``canaryconf demo`` plays a canary release for.

What a real service would declare: a database URL that canary pods override through an
Argo Rollouts ``canaryMetadata`` annotation, feature flags in one JSON annotation, the
pod's rollout role, a password from a Secret volume, and a worker count that only a
restart can change.

>>> from canaryconf.demo_settings import ShopSettings
>>> sorted(ShopSettings.model_fields)
['db_password', 'db_url', 'flags', 'rollout', 'workers']
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr

from canaryconf import (
    CanaryConfigDict,
    CanarySettings,
    RolloutInfo,
    annotation,
    secret,
)

__all__ = ["Flags", "ShopSettings"]


class Flags(BaseModel):
    """Feature flags, from the JSON annotation ``canary.example.com/flags``. Unknown flags
    are ignored, so an older pod accepts a newer revision's annotation."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    new_checkout: bool = False
    express_pay: bool = False


class ShopSettings(CanarySettings):
    """Settings of the demo shop service, as mounted in its pods
    (see ``examples/kubernetes/rollout.yaml``)."""

    model_config: ClassVar[CanaryConfigDict] = CanaryConfigDict(
        downward_api_dir="/etc/podinfo",
        configmap_dirs=["/etc/shop/config"],
        secrets_dirs=["/etc/shop/secrets"],
        annotation_prefix="canary.example.com/",
        env_prefix="SHOP_",
    )

    db_url: str = annotation("db-url", default="postgres://stable-db:5432/shop")
    flags: Flags = annotation("flags", default_factory=Flags)
    rollout: RolloutInfo = RolloutInfo()
    db_password: SecretStr = secret("db-password", default=SecretStr(""))
    workers: int = annotation("workers", default=4, restart_required=True, ge=1, le=64)
    # From the shop-config ConfigMap (a file per key), unless an annotation overrides them.
    log_level: str = "info"
    rate_limit_per_minute: int = 600
    banner: str = ""

    @property
    def new_checkout(self) -> bool:
        """Whether this pod serves the new checkout."""
        return self.flags.new_checkout
