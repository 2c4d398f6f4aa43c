# A Docker engine in a container, one node of the three-node swarm the tests make
# (tests/swarm/cluster.py): the offline base image with Debian's docker.io.
ARG BASE_IMAGE=offline.invalid/python:3.13-trixie
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        docker.io docker-cli iptables iproute2 \
    && rm -rf /var/lib/apt/lists/*
# Images, containers and the swarm's state: a volume, so overlay2 works on the host's disk.
VOLUME /var/lib/docker
ENTRYPOINT ["dockerd"]
