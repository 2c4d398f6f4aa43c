"""Deploys the Flask-Rebar REST API behind an nginx reverse proxy on the local Docker engine.

Two images built from service/ and proxy/, a private bridge network on `networkSubnet`,
`apiReplicas` API containers in it (replaced without downtime on later deploys), and one proxy
container publishing `proxyPort` on `proxyBindAddress`: HTTPS by default, with a CA and
certificate made for the stack (`tlsMode`). Exports the proxy URL, image references, network
and container names, and the stack's CA certificate.
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
pulumi.export(contract.EXPORT_API_CONTAINERS, rest_api.api_container_names)
pulumi.export(contract.EXPORT_PROXY_CONTAINER, rest_api.proxy_container_name)
if rest_api.http_redirect_url is not None:
    pulumi.export(contract.EXPORT_HTTP_REDIRECT_URL, rest_api.http_redirect_url)
if rest_api.ca_certificate is not None:
    pulumi.export(contract.EXPORT_CA_CERTIFICATE, rest_api.ca_certificate)
