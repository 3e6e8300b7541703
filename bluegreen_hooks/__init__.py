"""bluegreen-hooks: zero-downtime blue/green deployment of a Docker app behind nginx, driven by CodeDeploy."""

__version__ = "0.1.0"
