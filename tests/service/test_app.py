"""The Flask-Rebar app through Flask's test client: routes, the Swagger spec and error bodies."""

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from rest_api import app as rest_app

pytestmark = pytest.mark.unit


@pytest.fixture
def app() -> Flask:
    return rest_app


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as test_client:
        yield test_client


def test_root_says_hello(client: FlaskClient) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert response.is_json
    assert response.get_json() == {"message": "Hello, Being!"}


def test_debug_is_off_by_default(app: Flask) -> None:
    assert app.debug is False


def test_swagger_spec_describes_root(client: FlaskClient) -> None:
    response = client.get("/swagger")

    assert response.status_code == 200
    spec = response.get_json()
    assert spec["swagger"] == "2.0"
    assert "get" in spec["paths"]["/"]


@pytest.mark.parametrize("path", ["/swagger/ui", "/swagger/ui/"])
def test_swagger_ui_is_html(client: FlaskClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "<html" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no-such-path", 404),
        ("GET", "/swagger/", 404),
        ("POST", "/", 405),
        ("DELETE", "/", 405),
    ],
)
def test_errors_are_json(client: FlaskClient, method: str, path: str, status: int) -> None:
    response = client.open(path, method=method)

    assert response.status_code == status
    assert response.is_json
    assert response.get_json()["message"]
