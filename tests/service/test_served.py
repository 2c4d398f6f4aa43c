"""The API's own health endpoint (service/served.py, what gunicorn serves): answered without the
app, everything else passed to it; and the post's app itself, left as the seed had it."""

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pytest
from werkzeug.test import Client

import contract
import served
from tests.service.replaced_app import SERVICE_DIR

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

pytestmark = pytest.mark.unit

# The post's app as the seed commit (91b31b4) has it: `git show 91b31b4:service/<path> |
# sha256sum`. The health endpoint lives beside it, so these never change.
SEED_SHA256 = {
    "wsgi.py": "e50220419ef685d96e505aa695dc0d7613f44adcee36338cdc85dd937f588ffb",
    "rest_api/__init__.py": "ef8d473314f47652f2bd15cc1993f7a70b3dab70de3d5129d55f3f19a79a00a9",
    "rest_api/routes.py": "adc3dd55b39641c5e5c636d52b9a85e3ae3d98c676c27e92eb25409b5b480a25",
}


def broken_app(environ: "WSGIEnvironment", start_response: "StartResponse") -> Iterable[bytes]:
    raise RuntimeError(f"the app was called for {environ['PATH_INFO']}")


@pytest.fixture
def broken() -> Client:
    """The health endpoint in front of an app that fails every request it gets."""
    return Client(served.with_health_endpoint(broken_app, contract.API_HEALTH_PATH))


@pytest.mark.parametrize("path", sorted(SEED_SHA256))
def test_the_posts_app_is_the_seeds(path: str) -> None:
    digest = hashlib.sha256((SERVICE_DIR / path).read_bytes()).hexdigest()
    assert digest == SEED_SHA256[path], f"service/{path} differs from the seed's"


def test_the_health_path_answers_without_calling_the_app(broken: Client) -> None:
    response = broken.get(contract.API_HEALTH_PATH)

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_head_of_the_health_path_has_no_body(broken: Client) -> None:
    response = broken.head(contract.API_HEALTH_PATH)

    assert response.status_code == 200
    assert response.data == b""


def test_other_methods_on_the_health_path_are_refused_without_the_app(broken: Client) -> None:
    response = broken.post(contract.API_HEALTH_PATH)

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.is_json


@pytest.mark.parametrize("path", ["/", "/items", f"{contract.API_HEALTH_PATH}/more"])
def test_every_other_path_goes_to_the_app(broken: Client, path: str) -> None:
    with pytest.raises(RuntimeError, match=f"called for {path}$"):
        broken.get(path)


def test_the_served_app_answers_health_and_the_posts_route() -> None:
    """What gunicorn serves: the image's health path (its default, as the program sets it),
    and the post's app behind it."""
    client = Client(served.app)

    assert served.HEALTH_PATH == contract.API_HEALTH_PATH
    assert client.get(contract.API_HEALTH_PATH).get_json() == {"status": "ok"}
    assert client.get("/").get_json() == {"message": "Hello, Being!"}


def test_the_image_sets_the_contracts_health_path() -> None:
    """The image on its own (no API_HEALTH_PATH given) asks and answers the contract's path."""
    dockerfile = (SERVICE_DIR / "Dockerfile").read_text()
    assert f"    API_HEALTH_PATH={contract.API_HEALTH_PATH}\n" in dockerfile
