# The registry the three-node swarm's images are pushed to and pulled from
# (tests/swarm/cluster.py): the offline base image with Debian's docker-registry.
ARG BASE_IMAGE=offline.invalid/python:3.13-trixie
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        docker-registry \
    && rm -rf /var/lib/apt/lists/*
COPY registry.yml /etc/docker/registry/config.yml
EXPOSE 5000
ENTRYPOINT ["docker-registry", "serve", "/etc/docker/registry/config.yml"]
