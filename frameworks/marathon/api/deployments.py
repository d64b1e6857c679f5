"""Running deployments and the launch queue (reference marathon.md §1.5, §1.6).

    GET    /v2/deployments          [DeploymentStepInfo…]: marathon-python's keys only
    GET    /v2/deployments/{id}     Meseta's addition: the same element, each current action
                                    with `waiting` (why the step is not done yet, in words)
    DELETE /v2/deployments/{id}     roll back (200 + the rollback's deployment result);
                                    `?force=true` only cancels (202, no body)
    GET    /v2/queue                apps waiting for launches; `processedOffersSummary` also
                                    carries `lastRejectReasons` (readable refusals, Meseta's)
    DELETE /v2/queue/{id}/delay     reset the launch backoff (204, as Marathon does)

Marathon has no `GET /v2/deployments/{id}`; the `waiting` texts live there because the
`/v2/deployments` list is read by marathon-python, which rejects any key it does not model.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, request

from meseta.frameworks.marathon.errors import not_found
from meseta.frameworks.marathon.api.common import (deployed, flag, json_response, path_id,
                                                   service)
from meseta.frameworks.marathon.api.render import deployment_json, queue_json

__all__ = ["blueprint"]

blueprint = Blueprint("deployments", __name__)


@blueprint.get("/v2/deployments", strict_slashes=False)
def list_deployments() -> Response:
    return json_response([deployment_json(view) for view in service().snapshot().deployments])


@blueprint.get("/v2/deployments/<deployment_id>")
def show_deployment(deployment_id: str) -> Response:
    for view in service().snapshot().deployments:
        if view.plan.id == deployment_id:
            return json_response(deployment_json(view, waiting=True))
    raise not_found(f"DeploymentPlan {deployment_id} does not exist")


@blueprint.delete("/v2/deployments/<deployment_id>")
def cancel_deployment(deployment_id: str) -> Response:
    result = service().rollback_deployment(deployment_id, force=flag("force"))
    if result is None:
        return Response(status=202)
    return deployed(result)


@blueprint.get("/v2/queue", strict_slashes=False)
def queue() -> Response:
    embed = request.args.getlist("embed")
    return json_response(queue_json(service().snapshot(),
                                    last_unused_offers="lastUnusedOffers" in embed))


@blueprint.delete("/v2/queue/<path:rest>")
def reset_delay(rest: str) -> Response:
    app_path, _, suffix = rest.rstrip("/").rpartition("/")
    if suffix != "delay" or not app_path:
        abort(404)
    service().reset_delay(path_id(app_path))
    return Response(status=204)
