"""template.yaml guards: what a deploy must never lose, checked on the template as CloudFormation sees it."""

import json
from typing import Any

import pytest
from samtranslator.translator.transform import transform

# Actions that read or write the service's data; none may be granted on every resource.
DATA_ACTION_PREFIXES = ("dynamodb:", "s3:", "secretsmanager:", "sqs:", "kms:", "events:", "sns:")


class NoManagedPolicies:
    """The template names no managed policy by name, so the translator never needs to look one up."""

    def load(self) -> dict[str, str]:
        raise AssertionError("template.yaml should not reference managed policies by name")


@pytest.fixture(scope="module")
def translated(template: dict[str, Any]) -> dict[str, Any]:
    plain = json.loads(json.dumps(template))  # cfn-lint's node types -> plain dicts for the translator
    # The translator wants packaged code (what `sam package` would upload); where it lives is irrelevant here.
    for body in plain["Resources"].values():
        for uri in ("CodeUri", "ContentUri"):
            if uri in body.get("Properties", {}):
                body["Properties"][uri] = "s3://packaged-code/artifact.zip"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the translator insists on a region
        return transform(
            plain,
            {"AWS::Region": "us-east-1", "AWS::Partition": "aws", "AWS::AccountId": "123456789012"},
            NoManagedPolicies(),  # type: ignore[arg-type]
        )


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in template["Resources"].items() if body["Type"] == kind}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_work_queue_has_a_dead_letter_queue(translated: dict[str, Any]) -> None:
    queues = resources_of_type(translated, "AWS::SQS::Queue")
    dead_letter_queues = {
        body["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for body in queues.values()
        if "RedrivePolicy" in body.get("Properties", {})
    }
    # Where failed asynchronous invocations land is a queue of last resort too, not a work queue.
    failure_destinations = {
        config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
        for config in resources_of_type(translated, "AWS::Lambda::EventInvokeConfig").values()
    }
    work_queues = set(queues) - dead_letter_queues - failure_destinations
    assert work_queues, "the template should declare work queues"
    for name in work_queues:
        assert "RedrivePolicy" in queues[name]["Properties"], f"{name} has no dead-letter queue"
    assert dead_letter_queues, "no dead-letter queue is declared"


def test_every_dead_letter_queue_has_an_alarm(translated: dict[str, Any]) -> None:
    queues = resources_of_type(translated, "AWS::SQS::Queue")
    dead_letter_queues = {
        body["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for body in queues.values()
        if "RedrivePolicy" in body.get("Properties", {})
    }
    alarmed = {
        dimension["Value"]["Fn::GetAtt"][0]
        for alarm in resources_of_type(translated, "AWS::CloudWatch::Alarm").values()
        for dimension in alarm["Properties"].get("Dimensions", [])
        if dimension["Name"] == "QueueName"
    }
    assert dead_letter_queues <= alarmed


def test_every_function_has_an_errors_alarm(translated: dict[str, Any]) -> None:
    functions = set(resources_of_type(translated, "AWS::Lambda::Function"))
    alarmed = {
        dimension["Value"]["Ref"]
        for alarm in resources_of_type(translated, "AWS::CloudWatch::Alarm").values()
        for dimension in alarm["Properties"].get("Dimensions", [])
        if dimension["Name"] == "FunctionName"
    }
    assert functions and functions <= alarmed


def test_every_table_has_point_in_time_recovery_and_kms_encryption(translated: dict[str, Any]) -> None:
    tables = resources_of_type(translated, "AWS::DynamoDB::Table")
    assert tables
    for name, body in tables.items():
        properties = body["Properties"]
        assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
        sse = properties["SSESpecification"]
        assert sse["SSEEnabled"] is True and sse["SSEType"] == "KMS", name
        assert sse["KMSMasterKeyId"] == {"Ref": "StackKey"}, f"{name} is not encrypted with the stack key"


def test_no_function_gets_a_wildcard_resource_on_a_data_action(translated: dict[str, Any]) -> None:
    roles = resources_of_type(translated, "AWS::IAM::Role")
    assert roles
    checked = 0
    for role_name, role in roles.items():
        for policy in role["Properties"].get("Policies", []):
            for statement in as_list(policy["PolicyDocument"]["Statement"]):
                if statement["Effect"] != "Allow":
                    continue
                actions = as_list(statement["Action"])
                data_actions = [a for a in actions if a.lower().startswith(DATA_ACTION_PREFIXES)]
                for resource in as_list(statement["Resource"]):
                    checked += 1
                    assert not (data_actions and resource == "*"), (
                        f"{role_name}/{policy['PolicyName']} grants {data_actions} on every resource"
                    )
    assert checked > 0


def test_secret_permissions_stay_under_the_stacks_prefix(translated: dict[str, Any]) -> None:
    for role_name, role in resources_of_type(translated, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in as_list(policy["PolicyDocument"]["Statement"]):
                if any(str(a).startswith("secretsmanager:") for a in as_list(statement["Action"])):
                    for resource in as_list(statement["Resource"]):
                        text = json.dumps(resource)
                        assert ":secret:${AWS::StackName}/" in text, f"{role_name} reaches other secrets"


def test_the_layer_is_built_for_arm64_like_the_functions(template: dict[str, Any]) -> None:
    layer = template["Resources"]["SharedLayer"]
    # layers/shared/Makefile installs arm64 wheels (pip --platform); `make check-arch` checks the result.
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert template["Globals"]["Function"]["Architectures"] == ["arm64"]
    assert template["Globals"]["Function"]["Runtime"] == "python3.12"


def test_the_documents_bucket_is_private_encrypted_and_tls_only(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["DocumentsBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert rule["SSEAlgorithm"] == "aws:kms"
    statements = template["Resources"]["DocumentsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false" for s in statements)


def test_the_alarm_topic_is_encrypted_with_the_stack_key_that_cloudwatch_and_eventbridge_may_use(
    template: dict[str, Any],
) -> None:
    topic = template["Resources"]["AlarmTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "StackKey"}
    statements = template["Resources"]["StackKey"]["Properties"]["KeyPolicy"]["Statement"]
    allowed = {
        (service, action)
        for statement in statements
        if statement["Effect"] == "Allow"
        for service in as_list(statement["Principal"].get("Service", []))
        for action in as_list(statement["Action"])
    }
    for service in ("cloudwatch.amazonaws.com", "events.amazonaws.com"):
        assert {(service, "kms:Decrypt"), (service, "kms:GenerateDataKey*")} <= allowed


def test_scheduled_invocations_have_a_failure_destination_with_an_alarm(translated: dict[str, Any]) -> None:
    alarmed = {
        dimension["Value"]["Fn::GetAtt"][0]
        for alarm in resources_of_type(translated, "AWS::CloudWatch::Alarm").values()
        for dimension in alarm["Properties"].get("Dimensions", [])
        if dimension["Name"] == "QueueName"
    }
    schedules = resources_of_type(translated, "AWS::Scheduler::Schedule")
    assert schedules
    for schedule in schedules.values():
        target = schedule["Properties"]["Target"]
        assert target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0] in alarmed
    # The schedule's invocation is asynchronous: what fails after Lambda's retries goes to the same queue.
    configs = resources_of_type(translated, "AWS::Lambda::EventInvokeConfig")
    invoked = {config["Properties"]["FunctionName"]["Ref"] for config in configs.values()}
    assert {"SyncFunction", "WritebackFunction"} <= invoked
    for config in configs.values():
        destination = config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
        assert destination["Fn::GetAtt"][0] in alarmed


def test_the_write_back_queue_has_a_maximum_concurrency(template: dict[str, Any]) -> None:
    source = template["Resources"]["WritebackFunction"]["Properties"]["Events"]["PaymentEvents"]["Properties"]
    assert source["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "WritebackWorkerMaxConcurrency"}


def test_every_function_logs_to_a_group_with_the_retention_parameter(translated: dict[str, Any]) -> None:
    functions = set(resources_of_type(translated, "AWS::Lambda::Function"))
    kept = {
        group["Properties"]["LogGroupName"]["Fn::Sub"]
        for group in resources_of_type(translated, "AWS::Logs::LogGroup").values()
        if group["Properties"].get("RetentionInDays") == {"Ref": "LogRetentionInDays"}
        and "LogGroupName" in group["Properties"]
    }
    assert functions and {f"/aws/lambda/${{{name}}}" for name in functions} <= kept


def test_the_http_api_access_log_holds_no_path_query_or_header(template: dict[str, Any]) -> None:
    settings = template["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["HttpApiAccessLog", "Arn"]}
    logged = settings["Format"]
    assert "$context.routeKey" in logged
    # A path or query string can carry an OAuth code or state; headers carry tokens; the address is personal.
    for leak in ("$context.path", "$request", "$context.identity", "querystring", "authorizer"):
        assert leak.lower() not in logged.lower()
    group = template["Resources"]["HttpApiAccessLog"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionInDays"}


def test_every_function_with_http_routes_has_an_alarm_on_its_5xx_answers(template: dict[str, Any]) -> None:
    services = {
        body["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
        for body in resources_of_type(template, "AWS::Serverless::Function").values()
        if any(event["Type"] == "HttpApi" for event in body["Properties"].get("Events", {}).values())
    }
    alarmed = {
        dimension["Value"]
        for alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == "HttpServerError"
        for dimension in alarm["Properties"]["Dimensions"]
        if dimension["Name"] == "service"
    }
    assert services and services <= alarmed


def test_the_dashboard_shows_syncs_payments_queue_age_and_dead_letters(template: dict[str, Any]) -> None:
    (dashboard,) = resources_of_type(template, "AWS::CloudWatch::Dashboard").values()
    body, names = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(body)["widgets"]  # valid JSON once substituted (the placeholders sit inside strings)
    shown = {metric for widget in widgets for line in widget["properties"]["metrics"] for metric in line}
    assert {"SyncFailed", "PaymentPosted", "PaymentFailed", "ApproximateAgeOfOldestMessage"} <= shown
    assert {"ApproximateNumberOfMessagesVisible", "HttpServerError"} <= shown
    assert {"PaymentReversed", "PaymentReversalNeedsAttention", "Provider429s", "ThrottledWaits"} <= shown
    assert {"quickbooks", "xero", "sage"} <= shown  # the budget's counts, each provider its own line
    (calls,) = [widget for widget in widgets if widget["properties"]["metrics"][0][1] == "ProviderCalls"]
    providers = [line[-1] for line in calls["properties"]["metrics"]]
    assert providers == ["quickbooks", "xero", "sage"]  # every provider's calls, "..." repeating the first line
    assert {"SyncDlqName", "WritebackDlqName", "DispatchFailureName"} <= set(names)
