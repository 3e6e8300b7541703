"""Delivery: build a reproducible revision bundle, push it to S3, register it, deploy it with CodeDeploy.

    python build.py bundle --config bluegreen.toml -o dist/app.zip
    python build.py push dist/app.zip --bucket my-revisions
    python build.py deploy dist/app.zip --bucket my-revisions --group prod

(the same commands are ``bluegreen-hooks bundle|push|deploy``). See docs/delivery.md.

One concern per module, none importing a later one:

    bundle_files  which app files go in: include/exclude rules, never-bundled names, the tree walk
    wheels     the pinned runtime wheels (cache, pip download) and wheels/requirements.txt
    bundle     the bundle's entries, their checks, the reproducible zip; reading a built bundle back
    s3         AWS sessions and one-line errors; upload, read back, register (push)
    deploy     create_deployment, follow it, report a failure
    commands   the argparse commands bundle, push, deploy (added to ``bluegreen-hooks`` by cli.py)
    fleet_report  the live report of a deployment across a fleet, instance by instance

boto3 is imported inside the functions that talk to AWS, and only in this package: the hooks never
import it.
"""
