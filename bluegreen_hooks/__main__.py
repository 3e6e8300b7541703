import gc
import sys

if sys.argv[1:2] == ["hook"]:   # a hook imports long-lived objects only: see bluegreen_hooks/startup.py
    gc.disable()

from bluegreen_hooks.cli import entrypoint

entrypoint()
