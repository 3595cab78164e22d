"""The embedded local stack: the service's AWS resources created from template.yaml itself, on loopback.

`LocalStack` (a context manager) does, in order:

1. starts moto's server on 127.0.0.1 (port configurable, a free one by default);
2. translates the SAM template with the SAM translator - code folders uploaded as zips the way
   `sam package` does - and creates the result as a CloudFormation stack in moto, so every table,
   index, queue, bucket, key and role comes from the template and nothing else: code that needs a
   resource the template lacks fails here too;
3. applies the two table properties moto's CloudFormation ignores (TimeToLiveSpecification and
   PointInTimeRecoverySpecification), read from the same template;
4. emulates what moto skips or would run in Docker: the HTTP API (`local.gateway`), the SQS event
   source mappings (`local.event_sources`) and the schedules (`local.schedules`); the functions run
   in this process (`local.functions`) with the environment CloudFormation resolved for them.

Template parameters without a default get local values (`local_parameters`: the local issuer and
audience, the gateway as ApiBaseUrl, ...); `parameters=` overrides any of them. As CloudFormation and
Lambda would, the stack refuses unresolved references, parameter values outside AllowedValues or
AllowedPattern, and log levels Lambda does not accept.

While it runs, this process's AWS settings point at moto (AWS_ENDPOINT_URL, fake credentials, the
region), because the handlers call plain `boto3.client(...)`; everything is restored on exit, and moto's
state is reset so the next stack in the same process starts clean. moto's state is process-wide, so one
stack runs per process at a time.
"""

import http.client
import io
import json
import logging
import os
import re
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from local.event_sources import SqsEventSource, SqsMapping
from local.functions import FunctionRuntime, FunctionSpec, clear_settings_cache
from local.gateway import LOOPBACK, HttpApiDefinition, LocalGateway
from local.identity import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIdentityProvider
from local.schedules import LocalScheduler, Schedule
from local.template import (
    code_folders,
    condition_holds,
    function_of,
    load_sam_template,
    resolve_parameters,
    translate,
    unresolved_references,
)

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_STACK_NAME = "payedge-local"
DEFAULT_REGION = "us-east-1"
FAKE_ACCESS_KEY_ID = "testing"
FAKE_SECRET_ACCESS_KEY = "testing"
_STACK_TIMEOUT_SECONDS = 60
_APPLICATION_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
# What the local stack does instead of a resource moto's CloudFormation does not create.
_EMULATED = {
    "AWS::ApiGatewayV2::Api": "local gateway (local/gateway.py)",
    "AWS::ApiGatewayV2::Stage": "local gateway, $default stage",
    "AWS::Scheduler::Schedule": "local scheduler (local/schedules.py)",
}


class StackCreationError(RuntimeError):
    """CloudFormation (moto) could not create the stack from the template."""


@dataclass(frozen=True)
class StackResource:
    logical_id: str
    type: str
    physical_id: str


@dataclass(frozen=True)
class SkippedResource:
    logical_id: str
    type: str
    emulated_by: str | None  # None: not emulated locally (alarms, policies, ...)


class LocalStack:
    """One running local stack; only one can run in a process at a time (moto's state is process-wide)."""

    _running: ClassVar["LocalStack | None"] = None

    def __init__(
        self,
        template: Path = DEFAULT_TEMPLATE,
        *,
        parameters: Mapping[str, str] | None = None,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str = DEFAULT_REGION,
        moto_port: int = 0,
        gateway_port: int = 0,
        poll_queues: bool = True,
        run_schedules: bool = False,
    ) -> None:
        self.template_path = template.resolve()
        self.stack_name = stack_name
        self.region = region
        self._requested_parameters = dict(parameters or {})
        self._moto_port = moto_port
        self._gateway_port = gateway_port
        self._poll_queues = poll_queues
        self._run_schedules = run_schedules
        self._exit = ExitStack()
        self._started = False
        self.identity = LocalIdentityProvider()
        self.parameters: dict[str, str] = {}
        self.outputs: dict[str, str] = {}
        self.resources: list[StackResource] = []
        self.skipped: list[SkippedResource] = []
        self.runtime = FunctionRuntime({}, region=region)
        self.gateway: LocalGateway | None = None
        self.scheduler = LocalScheduler({}, self.runtime)
        self.event_sources: dict[str, SqsEventSource] = {}
        self._endpoint = ""
        self._session: boto3.Session | None = None  # made in start(), once the process's AWS profile is set aside

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> Self:
        if self._started:
            return self
        if LocalStack._running is not None:
            raise RuntimeError("another LocalStack is running in this process; moto's state is process-wide")
        LocalStack._running = self
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop pollers, schedules and gateway, reset and stop moto, restore the process's settings."""
        if self._started:
            self._started = False
            try:
                self._exit.close()
            finally:
                self._exit = ExitStack()
                LocalStack._running = None

    def _start(self) -> None:
        self._exit.enter_context(_quiet_moto())
        server = MotoServer(LOOPBACK, self._moto_port)
        server.start()
        self._exit.callback(server.stop)
        host, port = server.get_host_and_port()
        self._endpoint = f"http://{host}:{port}"
        _reset_moto(self._endpoint)
        self._exit.callback(_reset_moto, self._endpoint)
        self._exit.enter_context(_aws_environment(self._endpoint, self.region))
        self._session = boto3.Session(
            region_name=self.region, aws_access_key_id=FAKE_ACCESS_KEY_ID, aws_secret_access_key=FAKE_SECRET_ACCESS_KEY
        )
        self._exit.callback(clear_settings_cache)
        clear_settings_cache()

        sam_template = load_sam_template(self.template_path)
        # The gateway's socket is opened first: its URL is the HTTP API's URL the template is given.
        gateway = LocalGateway(
            runtime=self.runtime,
            keys=self._trusted_keys,
            account_id=self._account_id(),
            port=self._gateway_port,
        )
        gateway.bind()
        self._exit.callback(gateway.stop)
        self.parameters = self._stack_parameters(sam_template, gateway.url)
        # Tokens are issued for whatever issuer and audience the stack was given.
        self.identity.issuer = self.parameters.get("JwtIssuer", self.identity.issuer)
        self.identity.audience = self.parameters.get("JwtAudience", self.identity.audience).split(",")[0]
        code_uris = self._upload_code(sam_template)
        cfn_template = translate(
            sam_template,
            parameters=self.parameters,
            region=self.region,
            code_uris=code_uris,
            iam_client=self.client("iam"),
            session=self._boto3_session(),
        )
        self._create_stack(cfn_template)
        self._read_resources(cfn_template)
        self._complete_tables(cfn_template)

        resolved = _resolvable_parameters(sam_template, self.parameters)
        gateway.api = self._http_api(cfn_template, resolved)
        self.gateway = gateway if gateway.api is not None else None
        folders = {
            logical_id: (self.template_path.parent / folder).resolve()
            for logical_id, folder in code_folders(sam_template).items()
        }
        self.runtime = FunctionRuntime(self._function_specs(cfn_template, folders), region=self.region)
        self.outputs = {name: self._localise(value) for name, value in self._raw_outputs().items()}
        if self.gateway is not None:
            self.gateway.runtime = self.runtime
            self.gateway.start()
        self.event_sources = self._make_event_sources(cfn_template)
        if self._poll_queues:
            for source in self.event_sources.values():
                source.start()
                self._exit.callback(source.stop)
        self.scheduler = LocalScheduler(self._schedules(sam_template, cfn_template, resolved), self.runtime)
        if self._run_schedules:
            self.scheduler.start()
            self._exit.callback(self.scheduler.stop)

    # ------------------------------------------------------------------ what callers use

    @property
    def endpoint_url(self) -> str:
        """moto's URL (every AWS service of the stack)."""
        return self._endpoint

    def client(self, service: str) -> Any:
        """A boto3 client for `service` at the local stack, with explicit endpoint and credentials."""
        return self._boto3_session().client(service, endpoint_url=self._endpoint)  # type: ignore[call-overload]

    def resource(self, service: str) -> Any:
        return self._boto3_session().resource(service, endpoint_url=self._endpoint)  # type: ignore[call-overload]

    def _boto3_session(self) -> boto3.Session:
        if self._session is None:
            raise RuntimeError("the local stack is not running")
        return self._session

    def physical_id(self, logical_id: str) -> str:
        for resource in self.resources:
            if resource.logical_id == logical_id:
                return resource.physical_id
        raise KeyError(f"the stack has no resource {logical_id!r}")

    def function_environment(self, logical_id: str) -> Mapping[str, str]:
        """The environment variables CloudFormation resolved for a function."""
        return self.runtime.spec(logical_id).environment

    def invoke(self, function: str, event: Any) -> Any:
        """Invoke a function of the stack in-process (e.g. with a console event)."""
        return self.runtime.invoke(function, event)

    def issue_token(self, claims: Mapping[str, Any] | None = None, **options: Any) -> str:
        """A user JWT the gateway's JWT authorizer accepts (see LocalIdentityProvider.issue_token)."""
        return self.identity.issue_token(claims, **options)

    def _trusted_keys(self) -> Mapping[str, Any]:
        return self.identity.public_keys()

    @property
    def api_url(self) -> str:
        if self.gateway is None:
            raise RuntimeError("the template has no HTTP API")
        return self.gateway.url

    # ------------------------------------------------------------------ creation steps

    def _stack_parameters(self, sam_template: Mapping[str, Any], api_url: str) -> dict[str, str]:
        declared = sam_template.get("Parameters", {})
        unknown = set(self._requested_parameters) - set(declared)
        if unknown:
            raise ValueError(f"the template has no parameters {sorted(unknown)}")
        values = {name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec}
        values.update({name: value for name, value in local_parameters(api_url).items() if name in declared})
        values.update(self._requested_parameters)
        missing = set(declared) - set(values)
        if missing:
            raise ValueError(f"parameters without a value: {sorted(missing)}")
        for name, value in values.items():
            # CloudFormation checks these before creating anything; moto does not.
            allowed = declared[name].get("AllowedValues")
            pattern = declared[name].get("AllowedPattern")
            if allowed is not None and value not in [str(item) for item in allowed]:
                raise ValueError(f"parameter {name}={value!r} is not one of {allowed}")
            if pattern is not None and not re.fullmatch(pattern, value):
                raise ValueError(f"parameter {name}={value!r} does not match {pattern}")
        return values

    def _upload_code(self, sam_template: Mapping[str, Any]) -> dict[str, str]:
        """Zip each local CodeUri/ContentUri folder into an artifacts bucket; logical id -> s3 URI."""
        s3 = self.client("s3")
        bucket = f"{self.stack_name}-artifacts"
        s3.create_bucket(Bucket=bucket)
        uris: dict[str, str] = {}
        for logical_id, folder in code_folders(sam_template).items():
            path = (self.template_path.parent / folder).resolve()
            if not path.is_dir():
                raise StackCreationError(f"{logical_id}: code folder {path} does not exist")
            s3.put_object(Bucket=bucket, Key=f"{logical_id}.zip", Body=_zip_folder(path))
            uris[logical_id] = f"s3://{bucket}/{logical_id}.zip"
        return uris

    def _create_stack(self, cfn_template: Mapping[str, Any]) -> None:
        unresolved = unresolved_references(cfn_template)
        if unresolved:
            # CloudFormation's own validation message; moto would fail deep inside instead.
            raise StackCreationError(
                f"Template format error: Unresolved resource dependencies {sorted(unresolved)} "
                "in the Resources block of the template"
            )
        cloudformation = self.client("cloudformation")
        try:
            cloudformation.create_stack(
                StackName=self.stack_name,
                TemplateBody=json.dumps(cfn_template),
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in self.parameters.items()],
                Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
            )
        except (ClientError, BotoCoreError) as error:
            raise StackCreationError(f"CloudFormation (moto) could not create the stack: {error}") from error
        deadline = time.monotonic() + _STACK_TIMEOUT_SECONDS
        while True:
            stack = cloudformation.describe_stacks(StackName=self.stack_name)["Stacks"][0]
            status = stack["StackStatus"]
            if status == "CREATE_COMPLETE":
                return
            if not status.endswith("IN_PROGRESS") or time.monotonic() > deadline:
                raise StackCreationError(f"stack {self.stack_name} is {status}: {stack.get('StackStatusReason')}")
            time.sleep(0.1)

    def _complete_tables(self, cfn_template: Mapping[str, Any]) -> None:
        # moto's CloudFormation creates tables without these two properties; set them from the template.
        dynamodb = self.client("dynamodb")
        for logical_id, resource in cfn_template["Resources"].items():
            if resource["Type"] != "AWS::DynamoDB::Table":
                continue
            properties = resolve_parameters(resource.get("Properties", {}), self.parameters)
            table = self.physical_id(logical_id)
            ttl = properties.get("TimeToLiveSpecification")
            if ttl and ttl.get("Enabled"):
                dynamodb.update_time_to_live(
                    TableName=table,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
                )
            pitr = properties.get("PointInTimeRecoverySpecification")
            if pitr and pitr.get("PointInTimeRecoveryEnabled"):
                dynamodb.update_continuous_backups(
                    TableName=table,
                    PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
                )

    def _read_resources(self, cfn_template: Mapping[str, Any]) -> None:
        cloudformation = self.client("cloudformation")
        paginator = cloudformation.get_paginator("list_stack_resources")
        created: list[StackResource] = []
        for page in paginator.paginate(StackName=self.stack_name):
            for summary in page["StackResourceSummaries"]:
                # moto lists the resources it skipped as blank rows.
                if summary.get("LogicalResourceId"):
                    created.append(
                        StackResource(
                            summary["LogicalResourceId"], summary["ResourceType"], summary.get("PhysicalResourceId", "")
                        )
                    )
        self.resources = created
        created_ids = {resource.logical_id for resource in created}
        self.skipped = [
            SkippedResource(logical_id, resource["Type"], _EMULATED.get(resource["Type"]))
            for logical_id, resource in cfn_template["Resources"].items()
            if logical_id not in created_ids
            and ("Condition" not in resource or condition_holds(resource["Condition"], cfn_template, self.parameters))
        ]

    def _raw_outputs(self) -> dict[str, str]:
        stack = self.client("cloudformation").describe_stacks(StackName=self.stack_name)["Stacks"][0]
        return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}

    def _localise(self, value: str) -> str:
        """Point a value at the local gateway where it names the (emulated) HTTP API's AWS URL."""
        if self.gateway is None or self.gateway.api is None:
            return value
        # moto cannot resolve ${Api} (it skipped the API), so the URL arrives with the reference in it.
        for suffix in ("amazonaws.com", "amazonaws.com.cn"):
            value = value.replace(
                f"https://${{{self.gateway.api.logical_id}}}.execute-api.{self.region}.{suffix}", self.gateway.url
            )
        return value

    def _http_api(self, cfn_template: Mapping[str, Any], parameters: Mapping[str, Any]) -> HttpApiDefinition | None:
        apis = {
            logical_id: resource
            for logical_id, resource in cfn_template["Resources"].items()
            if resource["Type"] == "AWS::ApiGatewayV2::Api"
        }
        if not apis:
            return None
        if len(apis) > 1:
            raise StackCreationError(f"the local gateway serves one HTTP API; the template has {sorted(apis)}")
        ((logical_id, resource),) = apis.items()
        return HttpApiDefinition.from_template(logical_id, resource, parameters)

    def _account_id(self) -> str:
        return str(self.client("sts").get_caller_identity()["Account"])

    def _function_specs(self, cfn_template: Mapping[str, Any], folders: Mapping[str, Path]) -> dict[str, FunctionSpec]:
        lambda_client = self.client("lambda")
        specs: dict[str, FunctionSpec] = {}
        for logical_id, resource in cfn_template["Resources"].items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            properties = resource["Properties"]
            code_key = properties.get("Code", {}).get("S3Key", "")
            if code_key.removesuffix(".zip") not in folders:
                raise StackCreationError(f"{logical_id}: only functions with a local CodeUri run locally")
            layer_dirs = tuple(
                folders[layer_key.removesuffix(".zip")]
                for layer in properties.get("Layers", [])
                if isinstance(layer, dict)
                and (layer_key := cfn_template["Resources"][layer["Ref"]]["Properties"]["Content"]["S3Key"])
            )
            config = lambda_client.get_function_configuration(FunctionName=self.physical_id(logical_id))
            # Lambda environment values are strings (CloudFormation turns a Number parameter into one);
            # moto keeps the parameter's own type.
            environment = {
                name: self._localise(str(value))
                for name, value in config.get("Environment", {}).get("Variables", {}).items()
            }
            logging_config = resolve_parameters(properties.get("LoggingConfig", {}), self.parameters)
            level = logging_config.get("ApplicationLogLevel")
            if level is not None and level not in _APPLICATION_LOG_LEVELS:
                # Lambda's API refuses it (moto does not check); so must the local stack.
                raise StackCreationError(
                    f"{logical_id}: LoggingConfig.ApplicationLogLevel {level!r} is not one of "
                    f"{'|'.join(_APPLICATION_LOG_LEVELS)}, which Lambda accepts"
                )
            # What Lambda sets from the function's LoggingConfig (Powertools reads both).
            if level:
                environment.setdefault("AWS_LAMBDA_LOG_LEVEL", level)
            if logging_config.get("LogFormat"):
                environment.setdefault("AWS_LAMBDA_LOG_FORMAT", logging_config["LogFormat"])
            specs[logical_id] = FunctionSpec(
                logical_id=logical_id,
                name=config["FunctionName"],
                arn=config["FunctionArn"],
                handler=config["Handler"],
                code_dir=folders[code_key.removesuffix(".zip")],
                layer_dirs=layer_dirs,
                environment=environment,
                memory_mb=int(config.get("MemorySize", 128)),
                timeout_seconds=int(config.get("Timeout", 3)),
            )
        return specs

    def _make_event_sources(self, cfn_template: Mapping[str, Any]) -> dict[str, SqsEventSource]:
        lambda_client = self.client("lambda")
        sqs = self.client("sqs")
        sources: dict[str, SqsEventSource] = {}
        for logical_id, resource in cfn_template["Resources"].items():
            if resource["Type"] != "AWS::Lambda::EventSourceMapping":
                continue
            uuid = self.physical_id(logical_id)
            mapping = lambda_client.get_event_source_mapping(UUID=uuid)
            queue_arn = mapping["EventSourceArn"]
            if queue_arn.split(":")[2] != "sqs":
                logger.warning("%s: only SQS event sources are emulated; %s is not polled", logical_id, queue_arn)
                continue
            # moto would invoke the function through Docker on every SendMessage; Lambda's part is ours.
            lambda_client.update_event_source_mapping(UUID=uuid, Enabled=False)
            properties = resource["Properties"]
            sources[logical_id] = SqsEventSource(
                mapping=SqsMapping(
                    name=logical_id,
                    function=self.runtime.logical_id_of(mapping["FunctionArn"]),
                    queue_arn=queue_arn,
                    queue_url=sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[1])["QueueUrl"],
                    batch_size=int(mapping.get("BatchSize") or 10),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (mapping.get("FunctionResponseTypes") or []),
                    enabled=bool(properties.get("Enabled", True)),
                ),
                runtime=self.runtime,
                sqs=sqs,
                region=self.region,
            )
        return sources

    def _schedules(
        self, sam_template: Mapping[str, Any], cfn_template: Mapping[str, Any], parameters: Mapping[str, Any]
    ) -> dict[str, Schedule]:
        event_names = {
            f"{function_id}{event_name}": event_name
            for function_id, resource in sam_template["Resources"].items()
            for event_name in (resource.get("Properties") or {}).get("Events", {}) or {}
        }
        account = self._account_id()
        schedules: dict[str, Schedule] = {}
        for logical_id, resource in cfn_template["Resources"].items():
            if resource["Type"] != "AWS::Scheduler::Schedule":
                continue
            properties = resolve_parameters(resource["Properties"], parameters)
            target = properties["Target"]
            function = function_of(target.get("Arn"))
            if function is None or function not in self.runtime.functions:
                logger.warning("%s targets something other than a function; not emulated", logical_id)
                continue
            name = str(properties.get("Name", logical_id))
            group = str(properties.get("GroupName", "default"))
            schedules[name] = Schedule(
                name=name,
                event_name=event_names.get(logical_id, logical_id),
                function=function,
                expression=str(properties["ScheduleExpression"]),
                input=target.get("Input"),
                arn=f"arn:aws:scheduler:{self.region}:{account}:schedule/{group}/{name}",
                enabled=properties.get("State", "ENABLED") == "ENABLED",
            )
        return schedules


# ---------------------------------------------------------------------------------------------- helpers


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class MotoServer:
    """moto's server, as moto's ThreadedMotoServer runs it, but with DynamoDB requests handled one at a
    time: DynamoDB applies a conditional write atomically, moto checks and writes without a lock, and
    concurrent Lambdas (the token-refresh lease) depend on that atomicity. Other services stay concurrent,
    so the queue pollers' long polls do not hold anything up."""

    def __init__(self, host: str, port: int) -> None:
        app = _dynamodb_one_at_a_time(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()

    def get_host_and_port(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)


def _dynamodb_one_at_a_time(app: WsgiApp) -> WsgiApp:
    lock = threading.Lock()

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            return app(environ, start_response)
        with lock:
            # The whole response is produced under the lock: moto may build the body lazily.
            return list(app(environ, start_response))

    return serve


def local_parameters(api_url: str) -> dict[str, str]:
    """Local values of the template's deploy-time parameters (those without a default that a deploy
    passes with --parameter-overrides); a `parameters=` argument overrides any of them."""
    return {
        # Tokens from the local identity provider, which the gateway's JWT authorizer trusts.
        "JwtIssuer": LOCAL_ISSUER,
        "JwtAudience": LOCAL_AUDIENCE,
        # The local gateway is the HTTP API: OAuth redirect URIs point back at it.
        "ApiBaseUrl": api_url,
        # No web app runs locally; the callback's redirect to it is observed, not followed.
        "WebAppUrl": "http://web-app.payedge.localhost/settings/integrations",
        "WebAppOrigins": "http://web-app.payedge.localhost",
        "FundingSources": json.dumps(
            [
                {"id": "cad-operating", "name": "CAD operating account", "currency": "CAD"},
                {"id": "usd-operating", "name": "USD operating account", "currency": "USD"},
            ]
        ),
    }


def _resolvable_parameters(sam_template: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """Parameter values as intrinsics see them: list types split on commas."""
    declared = sam_template.get("Parameters", {})
    resolved: dict[str, Any] = {}
    for name, value in values.items():
        kind = str(declared.get(name, {}).get("Type", "String"))
        resolved[name] = value.split(",") if kind == "CommaDelimitedList" or kind.startswith("List<") else value
    return resolved


def _zip_folder(path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                archive.write(file, file.relative_to(path).as_posix())
    return buffer.getvalue()


def _reset_moto(endpoint: str) -> None:
    # moto's documented reset endpoint: its backends are process-global and outlive the server.
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/moto-api/reset")
        connection.getresponse().read()
    finally:
        connection.close()


_AWS_VARIABLES_CLEARED = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")


@contextmanager
def _aws_environment(endpoint: str, region: str) -> Iterator[None]:
    """Point plain `boto3.client(...)` calls in this process at moto, and put everything back after."""
    variables = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }
    saved = {name: os.environ.get(name) for name in (*variables, *_AWS_VARIABLES_CLEARED)}
    os.environ.update(variables)
    for name in _AWS_VARIABLES_CLEARED:
        os.environ.pop(name, None)
    # boto3's default session caches credentials once resolved; start and end with a fresh one.
    boto3.DEFAULT_SESSION = None
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        boto3.DEFAULT_SESSION = None


@contextmanager
def _quiet_moto() -> Iterator[None]:
    """Silence moto's request log and its per-resource "not supported" warnings; the stack reports
    skipped resources itself (LocalStack.skipped)."""
    loggers = {name: logging.getLogger(name) for name in ("werkzeug", "moto")}
    levels = {name: item.level for name, item in loggers.items()}
    loggers["werkzeug"].setLevel(logging.WARNING)
    loggers["moto"].setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Tried to parse .* not supported by moto", category=UserWarning)
            yield
    finally:
        for name, item in loggers.items():
            item.setLevel(levels[name])
