from bluegreen_hooks.cli import entrypoint

entrypoint()
