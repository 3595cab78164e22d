"""The template's functions, run in this process the way Lambda runs them.

Each function's handler (`Handler: app.lambda_handler` in `CodeUri`) is loaded from its own file, its
layers' content is importable (Lambda puts it at /opt/python), and every invocation runs with the
function's environment - the variables CloudFormation resolved for it plus the ones the Lambda runtime
sets - and a Lambda-like context.

Each function also gets its own copy of its handler module and of its layers' packages
(`payedge_connect`), imported inside its environment on first use and kept for the life of the
runtime, like the warm container of one Lambda function: module-level state - the Powertools logger's
service name, cached settings, clients - is never shared between functions or carried into the next
stack. Third-party libraries (pydantic, Powertools, boto3) are shared. Invocations are serialised,
because the environment and the module table are process-wide.
"""

import importlib.util
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

Handler = Callable[[Any, Any], Any]

# One invocation at a time: os.environ and sys.modules are shared by every function in the process.
_INVOKE_LOCK = threading.RLock()


@dataclass(frozen=True)
class FunctionSpec:
    """What the local runtime needs to know about one function of the stack."""

    logical_id: str
    name: str  # the physical name CloudFormation gave it
    arn: str
    handler: str  # "module.function", as in the template
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    environment: Mapping[str, str]
    memory_mb: int = 128
    timeout_seconds: int = 3


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object handlers and Powertools read."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    _deadline: float = field(repr=False)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class FunctionRuntime:
    """Invokes the stack's functions in-process."""

    def __init__(self, functions: Mapping[str, FunctionSpec], *, region: str) -> None:
        self._functions = dict(functions)
        self._region = region
        # Per function: the modules it imported (its handler module and its copy of its layers).
        self._modules: dict[str, dict[str, ModuleType]] = {}

    @property
    def functions(self) -> Mapping[str, FunctionSpec]:
        return self._functions

    def spec(self, logical_id: str) -> FunctionSpec:
        try:
            return self._functions[logical_id]
        except KeyError:
            raise KeyError(f"no function {logical_id!r} in the stack; it has {sorted(self._functions)}") from None

    def logical_id_of(self, name_or_arn: str) -> str:
        """The logical id of the function with this physical name or ARN."""
        for spec in self._functions.values():
            if name_or_arn in (spec.name, spec.arn, spec.logical_id):
                return spec.logical_id
        raise KeyError(f"no function named {name_or_arn!r} in the stack")

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Run the function's handler with `event`; exceptions propagate like a function error."""
        spec = self.spec(logical_id)
        with _INVOKE_LOCK, self._environment(spec), self._own_modules(spec):
            handler = self._handler(spec)
            context = LambdaContext(
                function_name=spec.name,
                function_version="$LATEST",
                invoked_function_arn=spec.arn,
                memory_limit_in_mb=spec.memory_mb,
                aws_request_id=str(uuid.uuid4()),
                log_group_name=f"/aws/lambda/{spec.name}",
                log_stream_name=f"local/[$LATEST]{uuid.uuid4().hex}",
                _deadline=time.monotonic() + spec.timeout_seconds,
            )
            return handler(event, context)

    @contextmanager
    def _environment(self, spec: FunctionSpec) -> Iterator[None]:
        variables = {
            **spec.environment,
            # What the Lambda runtime sets beside the function's own variables.
            "AWS_REGION": self._region,
            "AWS_DEFAULT_REGION": self._region,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "_HANDLER": spec.handler,
        }
        saved = {name: os.environ.get(name) for name in variables}
        os.environ.update(variables)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    @contextmanager
    def _own_modules(self, spec: FunctionSpec) -> Iterator[None]:
        """Swap the function's own copies of its modules into sys.modules for the invocation."""
        for layer_dir in spec.layer_dirs:
            # Lambda extracts layers to /opt, whose python/ folder is on sys.path.
            if str(layer_dir) not in sys.path:
                sys.path.append(str(layer_dir))
        roots = {_handler_module_name(spec), *_top_level_names(spec.layer_dirs)}
        outside = _take_modules(roots)
        sys.modules.update(self._modules.get(spec.logical_id, {}))
        try:
            yield
        finally:
            self._modules[spec.logical_id] = _take_modules(roots)
            sys.modules.update(outside)

    def _handler(self, spec: FunctionSpec) -> Handler:
        module_path, _, function_name = spec.handler.rpartition(".")
        module = sys.modules.get(_handler_module_name(spec))
        if module is None:
            # Imported inside the function's environment, as in Lambda's init phase.
            path = (spec.code_dir / Path(*module_path.split("."))).with_suffix(".py")
            module = _load_module(_handler_module_name(spec), path)
        handler = getattr(module, function_name, None)
        if not callable(handler):
            raise AttributeError(f"{module.__file__} has no handler function {function_name!r}")
        return handler


def _handler_module_name(spec: FunctionSpec) -> str:
    return "local_function_" + re.sub(r"\W", "_", spec.logical_id)


def _top_level_names(folders: tuple[Path, ...]) -> set[str]:
    """The importable top-level packages and modules the layer folders provide."""
    names: set[str] = set()
    for folder in folders:
        for entry in folder.iterdir():
            if entry.is_dir() and (entry / "__init__.py").exists():
                names.add(entry.name)
            elif entry.suffix == ".py":
                names.add(entry.stem)
    return names


def _take_modules(roots: set[str]) -> dict[str, ModuleType]:
    """Remove from sys.modules, and return, the loaded modules of the packages `roots`."""
    taken = {name: module for name, module in sys.modules.items() if name.split(".", 1)[0] in roots}
    for name in taken:
        del sys.modules[name]
    return taken


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a handler from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def clear_settings_cache() -> None:
    """Forget settings cached in this process outside the functions (each function has its own)."""
    settings = sys.modules.get("payedge_connect.settings")
    load_settings = getattr(settings, "load_settings", None)
    if load_settings is not None and hasattr(load_settings, "cache_clear"):
        load_settings.cache_clear()
