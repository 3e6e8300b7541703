#!/usr/bin/env python3
"""Build, push and deploy bluegreen-hooks revisions: ``python build.py bundle|push|deploy …``.

A thin wrapper: the logic is in bluegreen_hooks/delivery.py (also ``bluegreen-hooks bundle|push|deploy``).
See docs/delivery.md.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bluegreen_hooks.delivery import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
