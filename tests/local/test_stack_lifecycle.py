"""Starting and stopping a local stack: what it does to the process, and what makes it refuse."""

import os
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from local.stack import LocalStack, StackCreationError
from tests.local.conftest import ECHO_TEMPLATE

pytestmark = pytest.mark.integration

ECHO_FUNCTION = ECHO_TEMPLATE.parent / "echo"


def test_the_process_aws_settings_point_at_moto_while_running_and_are_restored_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a process with AWS settings of its own
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "my-real-looking-key")
    monkeypatch.setenv("AWS_PROFILE", "my-profile")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)

    # When a local stack runs
    with LocalStack(ECHO_TEMPLATE, stack_name="echo", poll_queues=False) as stack:
        # Then plain boto3 clients go to its moto server with fake credentials and no profile
        assert os.environ["AWS_ENDPOINT_URL"] == stack.endpoint_url
        assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
        assert "AWS_PROFILE" not in os.environ
        gateway_url = stack.api_url
        assert stack.endpoint_url.startswith("http://127.0.0.1:")
        assert gateway_url.startswith("http://127.0.0.1:")

    # And after it stops everything is as before, and nothing listens any more
    assert os.environ["AWS_ACCESS_KEY_ID"] == "my-real-looking-key"
    assert os.environ["AWS_PROFILE"] == "my-profile"
    assert "AWS_ENDPOINT_URL" not in os.environ
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{gateway_url}/public", timeout=2)


def test_a_second_stack_in_the_same_process_is_refused_while_one_runs() -> None:
    with (
        LocalStack(ECHO_TEMPLATE, stack_name="echo", poll_queues=False),
        pytest.raises(RuntimeError, match="another LocalStack"),
    ):
        LocalStack(ECHO_TEMPLATE, stack_name="other").start()


def _worker_template(tmp_path: Path, **function_properties: Any) -> Path:
    """A one-function template in tmp_path (the echo function's code), with extra properties."""
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Parameters": {"Mode": {"Type": "String", "Default": "fast", "AllowedValues": ["fast", "slow"]}},
        "Resources": {
            "Worker": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "CodeUri": str(ECHO_FUNCTION),
                    "Handler": "app.lambda_handler",
                    "Runtime": "python3.12",
                    **function_properties,
                },
            }
        },
    }
    (tmp_path / "template.yaml").write_text(yaml.safe_dump(template))
    return tmp_path / "template.yaml"


def test_a_resource_missing_from_the_template_fails_locally(tmp_path: Path) -> None:
    # Given a template whose function is configured with a queue the template does not declare
    template = _worker_template(tmp_path, Environment={"Variables": {"QUEUE_URL": {"Ref": "MissingQueue"}}})

    # When a local stack is created from it, then it fails the way CloudFormation would
    with pytest.raises(StackCreationError, match=r"Unresolved resource dependencies \['MissingQueue'\]"):
        LocalStack(template).start()

    # And the failed start left nothing running behind
    with LocalStack(ECHO_TEMPLATE, stack_name="echo", poll_queues=False) as stack:
        assert stack.physical_id("Inbox")


def test_a_log_level_lambda_does_not_accept_fails_locally(tmp_path: Path) -> None:
    # Lambda's LoggingConfig takes WARN, not WARNING; the deploy would fail, so the local stack does.
    template = _worker_template(tmp_path, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARNING"})

    with pytest.raises(StackCreationError, match="WARN"):
        LocalStack(template).start()


def test_a_parameter_value_the_template_does_not_allow_is_refused(tmp_path: Path) -> None:
    template = _worker_template(tmp_path)

    with pytest.raises(ValueError, match="Mode"):
        LocalStack(template, parameters={"Mode": "sideways"}).start()
