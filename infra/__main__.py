"""Deploys the Flask-Rebar REST API behind an nginx reverse proxy on the local Docker engine.

Two images built from service/ and proxy/, a private network on `networkSubnet`, `apiReplicas`
API instances on it (replaced without downtime on later deploys), and the proxy publishing
`proxyPort`: HTTPS by default, with a CA and certificate made for the stack (`tlsMode`). As
containers on one Docker engine, or as services on a Docker Swarm (`orchestrator`); the engine
or the swarm's manager is pulumi-docker's `docker:host`. Exports the proxy URL, image
references, network, container or service names, and the stack's CA certificate.
"""

import pulumi

import contract
from rest_api_stack import RestApiStack, RestApiStackArgs
from settings import load_settings

settings = load_settings()
project, stack = pulumi.get_project(), pulumi.get_stack()

rest_api = RestApiStack(
    # Every resource's logical name starts with it, and so the API containers' Docker names.
    f"{project}-{stack}",
    RestApiStackArgs(
        settings=settings,
        name_prefix=f"{project}-{stack}",
        image_tag=stack,
        labels={contract.LABEL_PROJECT: project, contract.LABEL_STACK: stack},
    ),
    # Its name before rolling deploys: a stack deployed then keeps its resources (children
    # inherit the alias), rather than Pulumi creating all of them anew beside the old ones.
    opts=pulumi.ResourceOptions(aliases=[pulumi.Alias(name="rest-api")]),
)

pulumi.export(contract.EXPORT_URL, rest_api.url)
pulumi.export(contract.EXPORT_API_IMAGE, rest_api.api_image)
pulumi.export(contract.EXPORT_PROXY_IMAGE, rest_api.proxy_image)
pulumi.export(contract.EXPORT_NETWORK, rest_api.network_name)
for key, value in (
    (contract.EXPORT_API_CONTAINERS, rest_api.api_container_names),
    (contract.EXPORT_PROXY_CONTAINER, rest_api.proxy_container_name),
    (contract.EXPORT_API_SERVICE, rest_api.api_service_name),
    (contract.EXPORT_PROXY_SERVICE, rest_api.proxy_service_name),
    (contract.EXPORT_HTTP_REDIRECT_URL, rest_api.http_redirect_url),
    (contract.EXPORT_CA_CERTIFICATE, rest_api.ca_certificate),
):
    if value is not None:  # what the stack's orchestrator and settings have
        pulumi.export(key, value)
