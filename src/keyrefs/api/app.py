"""The FastAPI application factory.

The app keeps no state of its own besides the service and its metrics, so
several instances can serve one PostgreSQL database.
"""

from __future__ import annotations

from fastapi import FastAPI, Response

from keyrefs.api.errors import install_error_handlers
from keyrefs.api.metrics import Metrics
from keyrefs.api.middleware import BodyLimitMiddleware, MetricsMiddleware
from keyrefs.api.routes import router
from keyrefs.api.schemas import HealthResponse
from keyrefs.service import KeyrefsService


def create_app(service: KeyrefsService) -> FastAPI:
    """Build the HTTP app over a service whose schema is already migrated."""
    app = FastAPI(
        title="keyrefs",
        summary="Split connector secrets out of configs and hydrate them back.",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    metrics = Metrics()
    service.metrics.register_on(metrics.registry)
    app.state.service = service
    app.state.metrics = metrics

    install_error_handlers(app, metrics)
    app.include_router(router)

    @app.get("/healthz")
    def healthz() -> HealthResponse:
        return HealthResponse(status="ok")

    @app.get("/metrics", include_in_schema=False)
    def metrics_text() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    # The middleware added last runs first, so the metrics count the 413 and
    # 422 responses of the body limit too.
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
