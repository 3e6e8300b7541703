"""Every side effect on the host: files, /proc, the state store, waiting, nginx, health checks, ports."""
