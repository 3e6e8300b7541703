"""Every side effect on the host: files, /proc, the state store, waiting, nginx, health checks, ports.

Where things live:

    files            the one way to replace a file, and the one checked open of a path the config names
    config_paths     every config path the hooks open, type-checked in one place (BeforeInstall)
    trust            is a file or folder safe to trust (owner, modes, links)
    store            the state store <state_dir>/<app>.json, under the app's lock
    releases         release records: what each deployment ran, for a rollback
    wait             waiting, the one way (tenacity, bounded by time)
    health           health checks of a colour on its own port
    nginx            render the include, switch it safely, verify through nginx, drain
    nginx_conf       nginx -T parsed with crossplane, then checked
    nginx_effective  nginx -T as files
    nginx_canary     the canary's include, access log and log format
    nginx_watch      the watch window's include (old colour as backup)
    maintenance      the maintenance include (pure rendering) and its check
    include_guard    which file nginx/include may name
    ports            is a colour's port free, who holds it
    procfs           the one place that reads /proc
    sockdiag         TCP sockets by state (sock_diag netlink)
    instance         this instance's hostname and CodeDeploy instance id
    zips             is a zip whole
"""
