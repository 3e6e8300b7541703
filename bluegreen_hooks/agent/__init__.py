"""The CodeDeploy agent's side: ``bluegreen-hooks local``, which runs a revision as the agent does (the appspec
parser it reads is config/appspec.py).

    scripts.py   running one hook script: process group, timeout, output capture, scripts.log
    unpack.py    a folder or zip bundle into the deployment archive; the appspec's ``files:`` copy
    permissions.py  the appspec's ``permissions:`` applied as the agent applies them (never through a link)
    local.py     the Runner: the agent's folders, event order, ApplicationStop from the previous revision
    dry_run.py   ``local --dry-run``: what the Runner would do
    plan.py      the dry-run plans: what each lifecycle event would do, with the same decide() as the events
    commands.py  the ``local`` command's parser
"""
