"""Names and ports shared by the Pulumi program, the images and the tests.

The one place these values are written down: the program passes them to the containers
(the proxy learns the API's alias and port from API_UPSTREAM, the API its port from PORT and
its health path from API_HEALTH_PATH), and every test tier imports them from here.
"""

from typing import Final

# The network alias that every API container answers to on the stack's network: the proxy sends
# requests to whatever containers it names (nginx resolves it again every second).
API_ALIAS: Final = "api"
# The API's own health endpoint: service/served.py answers it with 200 without calling the app,
# so health holds whatever routes the app has. The image's HEALTHCHECK asks it (and so the
# health gates wait for it), and gunicorn asks it in-process before it listens.
API_HEALTH_PATH: Final = "/healthz"
# The route each API worker's warm-up asks in-process before it accepts (GUNICORN_WARMUP_PATH,
# with apiRuntime pypy): the app's own hot path, which the JIT then compiles.
API_WARMUP_PATH: Final = "/"
# The port gunicorn listens on inside an API container (never published to the host).
API_PORT: Final = 8000
# The ports nginx listens on inside the proxy container (proxy/entrypoint.sh): HTTPS, and plain
# HTTP (the API when the stack serves no HTTPS, else /healthz and redirects to HTTPS only).
PROXY_HTTPS_PORT: Final = 8443
PROXY_HTTP_PORT: Final = 8080
# The unprivileged uid:gid each image runs as on its own (the USER line of service/ and proxy/
# Dockerfile). The stack runs each role as a uid of its own instead (STACK_UIDS).
API_USER: Final = "10001:10001"
PROXY_USER: Final = "10002:10002"
# Where a stack's uids come from: RLIMIT_NPROC (processLimit) counts every process of a uid on
# the host, so each stack runs its API containers as one uid and its proxy as the next, derived
# from "<project>-<stack>" (instance_specs.stack_users): one stack's processes never count
# against another's limit. Below 65536, so that they map under Docker's user-namespace remapping
# (65536 ids); above the image users and the ids hosts usually give people.
STACK_UIDS: Final = range(20000, 60000)
# The proxy's own liveness endpoint, answered by nginx without the API. The API's path on purpose:
# nginx answers it itself, so the API instances' health endpoint is never reachable from outside.
HEALTHZ_PATH: Final = API_HEALTH_PATH

# Images made on one host only (base-images/build.sh) are named under a registry in the reserved
# top-level domain .invalid, which never resolves (RFC 6761): no registry can serve an image by
# such a name, so a missing one fails the deploy instead of being pulled from a stranger.
# (`localhost/...` would not do: Docker reads it as a registry on this host's port 443 or 80.)
LOCAL_ONLY_REGISTRY_DOMAIN: Final = ".invalid"

# Build contexts of the two images, relative to the repository root.
API_CONTEXT: Final = "service"
PROXY_CONTEXT: Final = "proxy"

# Labels put on every resource, so that a stack's resources can be found (and only they).
LABEL_PROJECT: Final = "pulumi.project"
LABEL_STACK: Final = "pulumi.stack"
LABEL_ROLE: Final = "pulumi.role"
ROLE_API: Final = "api"
ROLE_PROXY: Final = "proxy"
ROLE_NETWORK: Final = "network"

# Stack output keys.
EXPORT_URL: Final = "url"
EXPORT_API_IMAGE: Final = "apiImage"
EXPORT_PROXY_IMAGE: Final = "proxyImage"
EXPORT_NETWORK: Final = "network"
# On one engine, the containers' names; on a swarm, the services'.
EXPORT_API_CONTAINERS: Final = "apiContainers"
EXPORT_PROXY_CONTAINER: Final = "proxyContainer"
EXPORT_API_SERVICE: Final = "apiService"
EXPORT_PROXY_SERVICE: Final = "proxyService"
# The stack's own CA certificate (PEM), with tlsMode self-signed: what clients verify it by.
EXPORT_CA_CERTIFICATE: Final = "caCertificate"
# The plain-HTTP port's URL (httpRedirectPort): it redirects to `url`.
EXPORT_HTTP_REDIRECT_URL: Final = "httpRedirectUrl"
