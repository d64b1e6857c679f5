"""The errors the Marathon API answers with, in Marathon's shapes (reference marathon.md §1.1).

The service raises these; the HTTP layer turns them into responses. Validation problems are
`schema.ValidationError` (422) and unknown ids `group.UnknownId` (404); everything else is an
`ApiError` with its status and body.
"""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ["ApiError", "app_locked", "not_found", "conflict", "too_many_deployments",
           "no_leader"]


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, **extra}


def app_locked(deployment_ids: Iterable[str]) -> ApiError:
    ids = list(deployment_ids)
    return ApiError(409, "App is locked by one or more deployments. Override with the option "
                         f"'?force=true'. View details at '/v2/deployments/{ids[0]}'.",
                    deployments=[{"id": i} for i in ids])


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def too_many_deployments(limit: int) -> ApiError:
    return ApiError(403, f"Max number ({limit}) of running deployments is achieved. Wait for "
                         "existing deployments to complete or cancel one using force=true on "
                         "any of the deployment endpoints.")


def no_leader() -> ApiError:
    return ApiError(503, "Could not determine the current leader")
