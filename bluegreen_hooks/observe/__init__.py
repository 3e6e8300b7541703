"""What an operator's tools see of each deployment: metrics (Prometheus textfile collector), CloudWatch
Embedded Metric Format lines, and notifications (webhook, Slack, SNS).

* ``metrics``: the figures, computed from the app's State, as prometheus_client text or JSON;
* ``emf``: one CloudWatch EMF JSON line per event (to a file or stdout);
* ``notify``: one message when a deployment ends (``send(cfg, kind, fields, say)``), bounded and retried;
* ``clients``: what clients experienced per colour and per attempt, from nginx's JSON access-log lines
  (the canary and the watch window);
* ``judgement``: a window's verdict from those tallies (Wilson bound on failures, p95/p99 latency), with
  ``stats`` (percentiles, Wilson bounds);
* ``baseline``: the watch window's latency baseline, the old colour's latency just before the switch;
* ``report``: ``after_event``, called by lifecycle/runner.audit after every event, rollback and
  maintenance change; it never raises.

The ``metrics`` and ``maintenance`` commands' parsers live in operator/parsers.py.

This package's ``__init__`` imports nothing: prometheus_client, tenacity and boto3 are imported lazily.
"""
