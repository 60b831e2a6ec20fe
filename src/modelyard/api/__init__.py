"""The HTTP API (FastAPI): create_app, dependencies, response schemas, one router per resource."""

from modelyard.api.app import create_app

__all__ = ["create_app"]
