"""SNS notifications through boto3 against aws-local's moto server (the CodeDeploy emulator also serves SNS): the
message reaches an HTTP subscriber (a threaded http.server on 127.0.0.1) with the deployment's JSON document."""
from __future__ import annotations

import json
from pathlib import Path

import boto3

from bluegreen_hooks import config as config_mod
from bluegreen_hooks.observe import notify
from tests.helpers import wait_for
from tests.test_notify import Receiver


def test_sns_topic_gets_the_document(aws_env, monkeypatch):
    """notify/sns_topic_arn: one Publish; an HTTP subscriber of the topic receives the document as its Message."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", aws_env["AWS_ENDPOINT_URL_CODEDEPLOY"])
    sns = boto3.client("sns", region_name="us-east-1")
    arn = sns.create_topic(Name="bluegreen-notify-test")["TopicArn"]
    receiver = Receiver()
    try:
        sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=receiver.url)
        cfg = config_mod.parse({"app": "shop", "container": {"image": "a:1"},
                                "notify": {"sns_topic_arn": arn, "timeout": 2, "deadline": 5}},
                               Path("/srv/bluegreen.toml"))
        said = []
        assert notify.send(cfg, "deployment_succeeded", {"deployment": "d-SNS1", "live": "green"}, said.append)
        assert said == []
        got = wait_for(lambda: [p["body"] for p in receiver.posts if p["body"].get("Type") == "Notification"],
                       timeout=10, what="the SNS notification")
        doc = json.loads(got[0]["Message"])
        assert (doc["kind"], doc["app"], doc["deployment"], doc["live"]) == ("deployment_succeeded", "shop",
                                                                              "d-SNS1", "green")
        assert got[0]["Subject"].startswith(":white_check_mark: shop: deployment d-SNS1 succeeded")
    finally:
        receiver.close()
        sns.delete_topic(TopicArn=arn)
