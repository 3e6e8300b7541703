#!/usr/bin/env python3
"""Build, push and deploy bluegreen-hooks revisions from a checkout: ``python build.py bundle|push|deploy …``.

The same command line as ``bluegreen-hooks`` (bluegreen_hooks/cli.py), with the same exit codes; the
delivery code is in bluegreen_hooks/delivery/. See docs/delivery.md.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # the checkout's bluegreen_hooks/
    from bluegreen_hooks.cli import main

    raise SystemExit(main(sys.argv[1:], prog="build.py"))
