"""The WSGI app gunicorn serves (the image's CMD): the app of wsgi.py behind the API's own
health endpoint.

GET and HEAD of the health path (API_HEALTH_PATH) are answered here, never by the app: the
image's HEALTHCHECK, the deploy's health gates and gunicorn's start check ask it, so they hold
whatever routes the app has, and replacing the app (rest_api/, wsgi.py) changes none of them.
Importing this module imports the app, so a release whose app can't be imported still never
becomes healthy. Every other request goes to the app unchanged.
"""

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from wsgi import app as wrapped_app

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# The image sets it (service/Dockerfile), the Pulumi program too (infra/contract.py).
HEALTH_PATH = os.environ.get("API_HEALTH_PATH", "/healthz")

_JSON = ("Content-Type", "application/json")
# Nothing between a checker and the instance may answer for it from a cache.
_NO_STORE = ("Cache-Control", "no-store")
_OK = b'{"status":"ok"}\n'
_NOT_ALLOWED = b'{"message":"The method is not allowed for the requested URL."}\n'


def with_health_endpoint(app: "WSGIApplication", path: str) -> "WSGIApplication":
    """`app`, with GET and HEAD of `path` answered 200 without calling it (other methods: 405)."""

    def serve(environ: "WSGIEnvironment", start_response: "StartResponse") -> Iterable[bytes]:
        if environ.get("PATH_INFO") != path:
            return app(environ, start_response)
        method = environ.get("REQUEST_METHOD")
        if method not in {"GET", "HEAD"}:
            length = str(len(_NOT_ALLOWED))
            headers = [_JSON, _NO_STORE, ("Allow", "GET, HEAD"), ("Content-Length", length)]
            start_response("405 Method Not Allowed", headers)
            return [_NOT_ALLOWED]
        start_response("200 OK", [_JSON, _NO_STORE, ("Content-Length", str(len(_OK)))])
        return [] if method == "HEAD" else [_OK]

    return serve


app = with_health_endpoint(wrapped_app, HEALTH_PATH)
