"""What the API reads: a consistent, immutable view of the Marathon service at one moment.

The service owns its state on one thread; an HTTP handler asks it for a `Snapshot` (cheap: the
root group and instances are values, the snapshot copies only the mappings that hold them) and
renders JSON from it with no further calls. Writes go through the service's operations, which
answer with a `DeploymentResult` or raise `errors.ApiError` / `schema.ValidationError` /
`group.UnknownId`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from meseta.frameworks.marathon.group import Group, empty_root
from meseta.frameworks.marathon.instances import Instance
from meseta.frameworks.marathon.pathid import PathId

__all__ = ["Snapshot", "DeploymentView", "CurrentAction", "QueueEntry", "OfferSummary",
           "DeploymentResult", "LaunchDelay"]


@dataclass(frozen=True)
class DeploymentResult:
    """The answer of every deployment-producing call: body `{"deploymentId","version"}`."""
    deployment_id: str
    version: str

    def to_json(self) -> dict[str, str]:
        return {"deploymentId": self.deployment_id, "version": self.version}


@dataclass(frozen=True)
class CurrentAction:
    """One action of the step being run, and what it waits for (Meseta's addition: `waiting`)."""
    action: str                     # StartApplication, ScaleApplication, ...
    app_id: PathId
    readiness_check_results: tuple[dict[str, Any], ...] = ()
    waiting: str = ""               # e.g. "2 of 5 instances running; no offer fits: InsufficientMemory"


@dataclass(frozen=True)
class DeploymentView:
    plan: Any                       # plan.DeploymentPlan
    current_step: int               # 1-based, as Marathon's `currentStep`
    current_actions: tuple[CurrentAction, ...] = ()


@dataclass(frozen=True)
class LaunchDelay:
    time_left_seconds: float = 0.0

    @property
    def overdue(self) -> bool:
        return self.time_left_seconds <= 0


@dataclass(frozen=True)
class OfferSummary:
    """Marathon's `processedOffersSummary`: what the last offers said about a queued app."""
    processed_offers_count: int = 0
    unused_offers_count: int = 0
    last_unused_offer_at: float | None = None
    last_used_offer_at: float | None = None
    # reason (InsufficientCpus, UnfulfilledConstraint, ...) -> offers declined for it, over the
    # last offers and over all processed offers
    reject_summary_last_offers: Mapping[str, int] = field(default_factory=dict)
    reject_summary_launch_attempt: Mapping[str, int] = field(default_factory=dict)
    last_reasons: tuple[str, ...] = ()   # readable texts of the last refusals (Meseta's addition)


@dataclass(frozen=True)
class QueueEntry:
    app_id: PathId
    count: int                      # instances still to launch
    since: float                    # when it started waiting
    delay: LaunchDelay = LaunchDelay()
    role: str = "*"
    offers: OfferSummary = OfferSummary()


@dataclass(frozen=True)
class Snapshot:
    root: Group = field(default_factory=empty_root)
    instances: Mapping[PathId, tuple[Instance, ...]] = field(default_factory=dict)
    deployments: tuple[DeploymentView, ...] = ()
    queue: Mapping[PathId, QueueEntry] = field(default_factory=dict)
    last_task_failures: Mapping[PathId, dict[str, Any]] = field(default_factory=dict)
    health: Mapping[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)  # instance id -> results
    framework_id: str | None = None
    now: float = 0.0

    def deployment_ids(self, app_id: PathId) -> list[str]:
        """Running deployments that affect the app (AppInfo `deployments`)."""
        return [d.plan.id for d in self.deployments if app_id in d.plan.affected_app_ids]
