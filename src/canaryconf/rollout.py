"""The pod's place in an Argo Rollouts release, read from its labels."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["CANARY_ROLES", "POD_TEMPLATE_HASH_LABEL", "STABLE_ROLES", "RolloutInfo"]

#: The label Argo Rollouts puts on every pod of a revision.
POD_TEMPLATE_HASH_LABEL = "rollouts-pod-template-hash"
#: Role values that mean "this pod serves the new revision" (canary; blue-green preview).
CANARY_ROLES = frozenset({"canary", "preview"})
#: Role values that mean "this pod serves the promoted revision" (stable; blue-green active).
STABLE_ROLES = frozenset({"stable", "active"})


class RolloutInfo(BaseModel):
    """Rollout identity: a field of this type is filled from the pod's labels.

    ``role`` comes from the label that ``canaryMetadata``/``stableMetadata`` set (key
    ``role`` unless the settings say ``role_label=...``); ``pod_template_hash`` from
    ``rollouts-pod-template-hash``, which changes with each revision.

    >>> info = RolloutInfo(role="canary", pod_template_hash="5d8f7c9b4")
    >>> info.is_canary, info.is_stable
    (True, False)
    """

    model_config = ConfigDict(frozen=True)

    role: str | None = None
    pod_template_hash: str | None = None

    @property
    def is_canary(self) -> bool:
        """True while the pod carries the canary (or blue-green preview) metadata."""
        return self.role in CANARY_ROLES

    @property
    def is_stable(self) -> bool:
        """True once the pod carries the stable (or blue-green active) metadata."""
        return self.role in STABLE_ROLES
