"""The CodeDeploy lifecycle: what each hook does, and the steps every traffic move is made of.

Where things live:

    runner              running one event: config, deployment id, reporter, SIGTERM, audit, the last line
    events              the events themselves (BeforeInstall, ApplicationStart, ValidateService, ...), short stories
    steps               the shared steps: gather -> claim -> start checked -> switch -> retire
    early_start         a compose app's new colour started by BeforeInstall, collected by ApplicationStart
    verify              the nginx verify mode, decided once per deployment and recorded
    recovery            a switch nginx made but the state could not record
    during_maintenance  what a deployment does while maintenance mode is on (guard, include, validation)
    canary              the automatic canary in ApplicationStart: shares, judgement, promote or abort
    watch               deploy/watch_seconds: ValidateService watches the new colour and switches back
    memory              the memory preflight (BeforeInstall) and OOM scores
    tasks               release tasks ([[tasks]]) inside the new colour's container
    background          deploy/retire = "background": the old colour's drain and stop in a detached process
    long_lived          long-lived connections at the end of a drain
    traffic             the load balancer's events (WITH_TRAFFIC_CONTROL): accepted, harmless

This package's ``__init__`` imports nothing: a hook imports only the modules its event needs.
"""
