"""Step 4 of a request: the model the client named ─► the tenant's route for it."""

from __future__ import annotations

from gateway.errors import ModelNotAllowed, ModelNotFound, ServiceUnavailable
from gateway.runtime import ModelRoute, Runtime, Tenant


def model_not_found(model: str) -> ModelNotFound:
    return ModelNotFound(f"The model '{model}' does not exist or you do not have access to it.", param="model")


def resolve_route(runtime: Runtime, tenant: Tenant, model: str) -> ModelRoute:
    route = tenant.routes.get(model)
    if route is None:
        if model in runtime.model_names:
            raise ModelNotAllowed(f"This key may not use the model '{model}'.", param="model")
        raise model_not_found(model)
    if not route.deployments:
        raise ServiceUnavailable(
            f"The model '{model}' has no available deployment: {route.unavailable_reason}.", code="model_unavailable"
        )
    return route
