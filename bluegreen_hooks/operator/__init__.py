"""Operator commands for the host: ``status``, ``history``, ``rollback``, ``doctor``.

They answer "what is live, since when, from which deployment, is it healthy?" and undo a bad release
in one command. They find the app through the state directory: ApplicationStart keeps a copy of the
live ``bluegreen.toml`` as ``<state_dir>/<app>.toml`` (recorded in the state as ``config``), so the
commands need no bundle. ``--state-dir`` (default ``$BLUEGREEN_STATE_DIR``, else
/var/lib/bluegreen-hooks), ``--app NAME`` (default: the only app there) or ``--config PATH``.

Rollback takes the same claim as a deployment (``state.claim``), switches nginx through the same
validated ``nginx.switch`` (write, ``nginx -t``, reload, verify), then drains the old nginx workers and
stops the colour it rolled back from (``--keep-other`` leaves it running). See docs/operator.md.

* ``find_app``: finding the app (its Config) and reading its state without changing anything;
* ``status``, ``history``, ``rollback``, ``doctor`` (with ``doctor_host``), ``maintenance``, ``canary``
  (promote/abort), ``unlock``, ``setup_host``: one command each, taking a Config and plain values;
* ``state_view``: status/history from the state file alone; ``text``: how the commands write times and JSON;
* ``commands``: the argparse parsers and the glue that turns arguments into those values; ``parsers``: the
  same for ``maintenance`` and ``metrics``.

This package's ``__init__`` imports nothing: building the parsers must not import docker.
"""
