"""The package's errors. ``str(error)`` is one line: what failed, the key fact, and what to do next."""
from __future__ import annotations


class HookError(Exception):
    """Base class: an expected failure, reported as one ``ERROR`` line (no traceback)."""

    exit_code = 1


class Interrupted(BaseException):
    """What the hook's SIGTERM handler raises: a BaseException, like KeyboardInterrupt, so that no ``except
    Exception`` on the way (a probe, an optional step) can swallow it. ``as_hook_error`` turns it into the
    Terminated line the event ends with."""


class Terminated(HookError):
    """The hook got SIGTERM (e.g. the CodeDeploy agent's timeout): how it is reported."""


def as_hook_error(exc: BaseException) -> HookError:
    """``exc`` as the HookError to report: itself, or Terminated for an Interrupted."""
    if isinstance(exc, HookError):
        return exc
    return Terminated("stopped by SIGTERM (the CodeDeploy agent's timeout?)")


class ConfigError(HookError):
    """The deploy config (or the appspec) is invalid; the message names the file and the key."""

    exit_code = 2


class StateError(HookError):
    """The state file or its lock could not be used."""


class LockedError(HookError):
    """Another deployment holds the app (the message names it and its age)."""

    exit_code = 3


class DockerUnavailable(HookError):
    """The Docker daemon could not be reached."""


class ContainerStartError(HookError):
    """The image could not be built/pulled, or the container could not be started."""


class HealthCheckFailed(HookError):
    """The target colour did not become healthy (deadline, exit or crash loop)."""


class NginxError(HookError):
    """The nginx include could not be switched: config test, reload or verification failed."""


class ValidationFailed(HookError):
    """ValidateService found the new colour not serving correctly through nginx."""


class DeliveryError(HookError):
    """Building, pushing or deploying a revision failed (build.py); the message names the AWS error code."""


class SetupError(HookError):
    """``setup-host`` cannot do what it was asked (not root, unknown user, a command sudoers cannot hold)."""

    exit_code = 2
