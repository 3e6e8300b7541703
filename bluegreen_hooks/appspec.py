"""Moved to :mod:`bluegreen_hooks.agent.appspec`; these names stay importable from here until the
delivery code imports them from there."""
from __future__ import annotations

from bluegreen_hooks.agent.appspec import (
    FILE_EXISTS,
    AppSpec,
    Script,
    bad_relpath,
    check_bundle,
    near,
    norm,
    parse,
    parse_yaml_subset,
)

__all__ = ["FILE_EXISTS", "AppSpec", "Script", "bad_relpath", "check_bundle", "near", "norm", "parse",
           "parse_yaml_subset"]
