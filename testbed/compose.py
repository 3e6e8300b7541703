"""Compose stacks for tests and benchmarks: a 3-service stack of the example app (web and api routed,
worker with a Docker HEALTHCHECK), all on the host network, and an nginx site with two routes.

    site = add_site(nginx, "shop", include)          # / -> $service_url, /api/ -> $api_url
    write_per_colour(bundle, image="bgc-shop:v2", version="v2", ports={"web": (8081, 8082), ...})
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path

import docker.errors

from testbed import images
from testbed.nginx import Site

# nginx server block with two routed services: / -> $service_url (web), /api/ -> $api_url (api)
SITE_CONF = """\
server {{
    listen 127.0.0.1:{port};
    set $service_url "";
    set $api_url "";
    set $bluegreen_colour "";
    include {include};
    location / {{
        proxy_pass $service_url;
        add_header X-Bluegreen-Colour $bluegreen_colour always;
    }}
    location /api/ {{
        rewrite ^/api/(.*)$ /$1 break;
        proxy_pass $api_url;
        add_header X-Bluegreen-Colour $bluegreen_colour always;
    }}
}}
"""

# seed-style per-colour file: the same three services, only the ports differ
PER_COLOUR = """\
version: "2.4"
services:
  web:
    build:
      context: ./app
      network: host
    image: {image}
    network_mode: host
    environment:
      HOST: 127.0.0.1
      PORT: "{web}"
      APP_VERSION: "{version}"
    labels:
      bluegreen.deployment: "${{BLUEGREEN_DEPLOYMENT}}"
  api:
    image: {image}
    network_mode: host
    depends_on: [web]
    environment:
      HOST: 127.0.0.1
      PORT: "{api}"
      APP_VERSION: "api-{version}"
  worker:
    image: {image}
    network_mode: host
    depends_on: [web]
    environment:
      HOST: 127.0.0.1
      PORT: "{worker}"
      APP_VERSION: "worker-{version}"
      UNHEALTHY: "{unhealthy}"
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{worker}/health"]
      interval: 1s
      timeout: 2s
      retries: 2
    volumes:
      - data:/data
volumes:
  data: {{}}
"""

# one file for both colours: everything colour-specific comes from the variables bluegreen-hooks sets
ONE_FILE = """\
services:
  web:
    image: ${IMAGE}
    network_mode: host
    environment:
      HOST: 127.0.0.1
      PORT: ${BLUEGREEN_PORT:?}
      APP_VERSION: ${VERSION}-${BLUEGREEN_COLOUR}
      EXIT_CODE: ${WEB_EXIT_CODE:-}
      START_DELAY: ${WEB_START_DELAY:-0}
  api:
    image: ${IMAGE}
    network_mode: host
    environment:
      HOST: 127.0.0.1
      PORT: ${BLUEGREEN_PORT_API:?}
      APP_VERSION: api-${VERSION}-${BLUEGREEN_COLOUR}
      UNHEALTHY: ${API_UNHEALTHY:-0}
  worker:
    image: ${IMAGE}
    network_mode: host
    stop_signal: SIGKILL
    entrypoint: ["/bin/sh", "-c", "touch /tmp/ready; exec sleep 1000000"]
    healthcheck:
      test: ["CMD", "test", "-f", "${READY_FILE}"]
      interval: 1s
      timeout: 2s
      retries: 2
"""


def add_site(nginx, name: str, include: Path) -> Site:
    """A server block with two routes in the test bed's nginx, including ``include`` (created empty)."""
    return nginx.add_site(f"compose-{name}", include, template=SITE_CONF)


def remove_site(nginx, site: Site) -> None:
    nginx.remove_site(site)


def write_per_colour(dest: Path, image: str, version: str, ports: Mapping[str, tuple[int, int]],
                     unhealthy: bool = False) -> None:
    """docker-compose.blue.yml and docker-compose.green.yml in ``dest`` (seed style: only ports differ)."""
    for i, colour in enumerate(("blue", "green")):
        (Path(dest) / f"docker-compose.{colour}.yml").write_text(PER_COLOUR.format(
            image=image, version=version, unhealthy=int(unhealthy), **{svc: p[i] for svc, p in ports.items()}))


def remove_projects(client, app: str, image_repo: str | None = None) -> None:
    """Remove the containers and volumes of ``<app>-blue``/``<app>-green`` (and the images of ``image_repo``)."""
    for colour in ("blue", "green"):
        label = f"com.docker.compose.project={app}-{colour}"
        for c in client.containers.list(all=True, ignore_removed=True, filters={"label": label}):
            c.remove(force=True)
        for v in client.volumes.list(filters={"label": label}):
            v.remove(force=True)
    if image_repo:
        for img in client.images.list(name=image_repo):
            for tag in img.tags:
                if tag.rsplit(":", 1)[0] == image_repo:   # an identical build of another test shares the image
                    with contextlib.suppress(docker.errors.APIError):
                        client.images.remove(tag)
    images.remove_app_images(client, app)   # the per-release tags belong to this app alone
