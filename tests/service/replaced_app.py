"""An adopter's own app in place of the post's: a copy of service/ whose routes are replaced by
one that serves /items and nothing at /, the post's only route."""

import shutil
from pathlib import Path

SERVICE_DIR = Path(__file__).resolve().parents[2] / "service"

ROUTES = """from flask_rebar import Rebar, response

rebar = Rebar()
registry = rebar.create_handler_registry()


@registry.handles(rule="/items", method="GET")
def items():
    return response(data={"items": []}, status_code=200)
"""
ITEMS: dict[str, list[object]] = {"items": []}


def service_with_replaced_app(into: Path) -> Path:
    """A copy of service/ in `into`, its app replaced (GET /items only); the copy's path."""
    service = into / "service"
    shutil.copytree(SERVICE_DIR, service, ignore=shutil.ignore_patterns("__pycache__"))
    (service / "rest_api" / "routes.py").write_text(ROUTES)
    return service
