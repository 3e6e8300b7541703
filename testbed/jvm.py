"""The JVM example app: embedded Tomcat 10 on OpenJDK 17, from Debian's packages only.

* The base image is a Debian root filesystem made offline with ``debootstrap --variant=minbase`` from the mirror
  apt uses, plus ``openjdk-17-jre-headless`` and ``libtomcat10-java``, imported with ``docker import``. It is
  tagged ``bluegreen-base:jvm-<key>``: the key hashes the recipe (suite, mirror, packages, the steps below), so a
  change builds a new image and an unchanged one is found at once. About 1.5 min on 2 cores (README).
* The app (example/jvm-app/src/App.java) is compiled with Debian's javac against Debian's Tomcat jars into
  example/jvm-app/build/app.jar (reproducible: fixed timestamps, sorted entries), as CI builds a Spring Boot jar.
* Its compose files are seed-style: docker-compose.blue.yml and docker-compose.green.yml, three JVM services
  (web and api routed, worker not: a Docker HEALTHCHECK), only the ports differ.

    .venv/bin/python -m testbed.jvm     # builds what is missing; prints the base tag and the seconds it took

Needs (scripts/setup --jvm installs them): debootstrap, openjdk-17-jdk-headless, libtomcat10-java.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = ROOT / "example" / "jvm-app"
SOURCE = APP_DIR / "src" / "App.java"
JAR = APP_DIR / "build" / "app.jar"
SUITE = "bookworm"
PACKAGES = ("openjdk-17-jre-headless", "libtomcat10-java")
BASE_REPO = "bluegreen-base"
# what the app needs at run time (the image's) and to compile (the host's, same Debian packages)
TOMCAT_JARS = ("catalina", "coyote", "util", "util-scan", "juli", "api", "servlet-api", "jaspic-api",
               "annotations-api", "el-api")
CLASSPATH = ":".join(f"/usr/share/java/tomcat10-{j}.jar" for j in TOMCAT_JARS)
# Removed from the root filesystem before the import: apt's caches and lists, docs, man pages, locales.
PRUNE = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale")
RECIPE = 1   # bump when the steps below change in a way the key does not see


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt uses for ``SUITE`` (one-line or deb822 sources), e.g. http://deb.debian.org/debian."""
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text(errors="replace")
        for m in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s", text, re.M):
            if m.group(2) == SUITE:
                return m.group(1)
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
            if fields.get("Types", "").split()[:1] == ["deb"] and SUITE in fields.get("Suites", "").split():
                return fields["URIs"].split()[0]
    raise RuntimeError(f"no apt source for Debian {SUITE} in {sources}/sources.list*")


def base_key(mirror: str) -> str:
    recipe = repr((RECIPE, SUITE, mirror, PACKAGES, PRUNE, "minbase"))
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def base_tag(mirror: str | None = None) -> str:
    return f"{BASE_REPO}:jvm-{base_key(mirror or debian_mirror())}"


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
    if not path:
        raise RuntimeError(f"{tool} not found: run scripts/setup --jvm (apt-get install {package})")
    return path


def ensure_base(client, say=print) -> str:
    """The JVM base image's tag, made (debootstrap + docker import, ~1.5 min) unless it exists."""
    import docker.errors

    mirror = debian_mirror()
    tag = base_tag(mirror)
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    debootstrap = _need("debootstrap", "debootstrap")
    t0 = time.monotonic()
    say(f"testbed.jvm: building {tag} (debootstrap {SUITE} from {mirror} + {', '.join(PACKAGES)})")
    with tempfile.TemporaryDirectory(prefix="bluegreen-jvm-base-", dir="/var/tmp") as work:
        rootfs = Path(work) / "rootfs"
        proc = subprocess.run([debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
                               str(rootfs), mirror], capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"debootstrap failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        for p in PRUNE:
            shutil.rmtree(rootfs / p, ignore_errors=True)
            (rootfs / p).mkdir(parents=True, exist_ok=True)
        tar = Path(work) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tar), "."], check=True)
        repo, tag_name = tag.split(":")
        client.api.import_image_from_file(str(tar), repository=repo, tag=tag_name,
                                          changes=[f"LABEL bluegreen.jvm-base={base_key(mirror)}",
                                                   "ENV LANG=C.UTF-8"])
    client.images.get(tag)
    say(f"testbed.jvm: {tag} built in {time.monotonic() - t0:.0f} s")
    return tag


def build_jar() -> Path:
    """example/jvm-app/build/app.jar, compiled from App.java unless the jar of this source exists."""
    digest = hashlib.sha256(SOURCE.read_bytes() + CLASSPATH.encode()).hexdigest()
    stamp = JAR.with_suffix(".sha256")
    if JAR.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return JAR
    javac = _need("javac", "openjdk-17-jdk-headless")
    missing = [p for p in CLASSPATH.split(":") if not os.path.exists(p)]
    if missing:
        raise RuntimeError(f"{missing[0]} not found: run scripts/setup --jvm (apt-get install libtomcat10-java)")
    JAR.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bluegreen-jvm-classes-") as classes:
        subprocess.run([javac, "--release", "17", "-Xlint:all", "-Werror", "-cp", CLASSPATH, "-d", classes,
                        str(SOURCE)], check=True, capture_output=True, text=True)
        tmp = JAR.with_suffix(f".tmp{os.getpid()}")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as jar:
            for f in sorted(Path(classes).rglob("*.class")):
                info = zipfile.ZipInfo(str(f.relative_to(classes)), date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                jar.writestr(info, f.read_bytes())
        os.replace(tmp, JAR)
    stamp.write_text(digest + "\n")
    return JAR


def ensure(client, say=print) -> str:
    """Base image and jar, both built if missing; returns the base tag for the compose files' BASE."""
    build_jar()
    return ensure_base(client, say)


# worker's Docker HEALTHCHECK (in YAML double quotes): bash's /dev/tcp, as the image has no curl
PROBE = ("exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET /actuator/health HTTP/1.0\\\\r\\\\n\\\\r\\\\n' >&3"
         " && grep -q UP <&3")
# Seed-style per-colour file: three JVM services, web and api routed (nginx), worker not (a Docker HEALTHCHECK,
# through bash's /dev/tcp: the image has no curl). Only the ports differ between the colours.
PER_COLOUR = """\
version: "2.4"
x-jvm: &jvm
  image: {image}
  network_mode: host
  stop_grace_period: 30s
services:
  web:
    <<: *jvm
    build:
      context: ./app
      network: host
      args:
        BASE: {base}
    environment:
      HOST: 127.0.0.1
      PORT: "{web}"
      APP_VERSION: "{version}"
{web_env}    labels:
      bluegreen.deployment: "${{BLUEGREEN_DEPLOYMENT}}"
{web_extra}  api:
    <<: *jvm
    depends_on: [web]
    environment:
      HOST: 127.0.0.1
      PORT: "{api}"
      APP_VERSION: "api-{version}"
{env}  worker:
    <<: *jvm
    depends_on: [web]
    environment:
      HOST: 127.0.0.1
      PORT: "{worker}"
      APP_VERSION: "worker-{version}"
{env}    healthcheck:
      test: ["CMD", "bash", "-c", "{probe}"]
      interval: 1s
      timeout: 3s
      retries: 3
"""


def write_per_colour(dest: Path, image: str, version: str, ports: Mapping[str, tuple[int, int]], base: str,
                     start_delay: float = 0, unhealthy: bool = False, alloc_mb: int = 0,
                     mem_limit: str | None = None) -> None:
    """docker-compose.blue.yml and docker-compose.green.yml in ``dest`` for this version of the JVM app.

    ``start_delay``: every service waits this long before listening (a slow Spring context);
    ``unhealthy``: web's /actuator/health answers 503; ``alloc_mb`` + ``mem_limit``: web holds that much
    heap at start inside a container limited to ``mem_limit`` (the kernel OOM-kills it)."""
    env = f'      START_DELAY: "{start_delay}"\n' if start_delay else ""
    web_env = env + ('      UNHEALTHY: "1"\n' if unhealthy else "")
    web_extra = ""
    if alloc_mb:
        web_env += f'      ALLOC_MB: "{alloc_mb}"\n      JAVA_OPTS: "-XX:+UseSerialGC -Xmx{alloc_mb * 2}m"\n'
    if mem_limit:
        web_extra = f"    mem_limit: {mem_limit}\n    memswap_limit: {mem_limit}\n"
    for i, colour in enumerate(("blue", "green")):
        (Path(dest) / f"docker-compose.{colour}.yml").write_text(PER_COLOUR.format(
            image=image, version=version, base=base, env=env, web_env=web_env, web_extra=web_extra,
            probe=PROBE.format(port=ports["worker"][i]), **{svc: p[i] for svc, p in ports.items()}))


def compose_config(ports: Mapping[str, tuple[int, int]], deadline: float = 240) -> dict:
    """The [compose] and [health] tables of a bluegreen.toml for these files (merged into testbed's bed_config)."""
    return {"compose": {"files": {"blue": "docker-compose.blue.yml", "green": "docker-compose.green.yml"},
                        "build": True, "routed": ["web", "api"], "stop_grace_period": 30,
                        "routes": {"api": {"blue": ports["api"][0], "green": ports["api"][1]}}},
            "health": {"path": "/actuator/health", "deadline": deadline, "timeout": 5}}


if __name__ == "__main__":
    from testbed import dockerd

    t = time.monotonic()
    print(build_jar())
    print(ensure_base(dockerd.ensure_daemon().client()), f"({time.monotonic() - t:.0f} s)")
    sys.exit(0)
