"""The SAM template as the local stack reads it: YAML with CloudFormation's short-form tags, turned into
CloudFormation by the SAM translator (the same transform CloudFormation runs on deploy).

Only what the translator itself needs is adjusted: local `CodeUri`/`ContentUri` folders become S3 URIs
of zips the stack uploads (what `sam package` does), the region comes from the caller, and AWS managed
policy names resolve through the translator's bundled map with IAM as its fallback.
"""

import copy
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import boto3
import yaml
from samtranslator.parser.parser import Parser
from samtranslator.translator.arn_generator import ArnGenerator
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.translator import Translator

# Properties of SAM resources that name a local folder of code.
_CODE_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML loader that reads `!Ref x`, `!GetAtt a.b`, `!Sub ...` as their long JSON forms."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_sam_template(path: Path) -> dict[str, Any]:
    """Read a SAM template written in YAML (short-form intrinsics included)."""
    with path.open(encoding="utf-8") as stream:
        template = yaml.load(stream, Loader=_CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(template, dict) or "Resources" not in template:
        raise ValueError(f"{path} is not a CloudFormation/SAM template")
    return template


def code_folders(sam_template: Mapping[str, Any]) -> dict[str, str]:
    """Logical id -> the local folder its CodeUri/ContentUri names (relative to the template)."""
    folders: dict[str, str] = {}
    for logical_id, resource in sam_template["Resources"].items():
        prop = _CODE_PROPERTIES.get(resource.get("Type", ""))
        value = (resource.get("Properties") or {}).get(prop) if prop else None
        if isinstance(value, str) and not value.startswith("s3://"):
            folders[logical_id] = value
    return folders


def translate(
    sam_template: Mapping[str, Any],
    *,
    parameters: Mapping[str, str],
    region: str,
    code_uris: Mapping[str, str],
    iam_client: Any,
    session: boto3.Session,
) -> dict[str, Any]:
    """The CloudFormation template the SAM transform makes of `sam_template`.

    `code_uris` maps logical ids to the s3:// URI that replaces their local CodeUri/ContentUri.
    """
    template = copy.deepcopy(dict(sam_template))
    for logical_id, uri in code_uris.items():
        resource = template["Resources"][logical_id]
        resource["Properties"][_CODE_PROPERTIES[resource["Type"]]] = uri
    # The translator asks boto3 for the region when building role and X-Ray ARNs; pin it instead of
    # depending on the caller's AWS_DEFAULT_REGION.
    ArnGenerator.BOTO_SESSION_REGION_NAME = region
    loader = ManagedPolicyLoader(iam_client)
    get_managed_policy_map: Callable[[], dict[str, str]] = loader.load
    translator = Translator(None, Parser(), boto_session=session)
    return translator.translate(
        template, parameter_values=dict(parameters), get_managed_policy_map=get_managed_policy_map
    )


def function_of(target: Any) -> str | None:
    """The logical id of the function a translated reference points at.

    Understands the shapes the SAM translator writes: `{"Fn::GetAtt": [Fn, "Arn"]}`, `{"Ref": Fn}`
    and the API integration URI `{"Fn::Sub": "...${Fn.Arn}/invocations"}`.
    """
    if isinstance(target, dict):
        if "Fn::GetAtt" in target:
            return str(target["Fn::GetAtt"][0])
        if "Ref" in target:
            return str(target["Ref"])
        if "Fn::Sub" in target:
            text = target["Fn::Sub"]
            text = text[0] if isinstance(text, list) else text
            start = text.find("/functions/${")
            if start != -1:
                reference = text[start + len("/functions/${") : text.index("}", start)]
                return reference.split(".", 1)[0]
    return None


def resolve_parameters(value: Any, parameters: Mapping[str, Any]) -> Any:
    """`value` with `{"Ref": <parameter>}` replaced by the parameter's value, recursively.

    Enough for the properties of resources the stack emulates (authorizer issuer and audience,
    schedule expressions), which reference parameters only.
    """
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in parameters:
            return parameters[value["Ref"]]
        return {key: resolve_parameters(item, parameters) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_parameters(item, parameters) for item in value]
    return value


def condition_holds(name: str, template: Mapping[str, Any], parameters: Mapping[str, Any]) -> bool:
    """Evaluate a template condition (Fn::Equals / Not / And / Or / Condition over parameters)."""
    return bool(_evaluate(template.get("Conditions", {})[name], template, parameters))


_CONDITION_FUNCTIONS: dict[str, Callable[[list[Any]], bool]] = {
    "Fn::Equals": lambda values: values[0] == values[1],
    "Fn::Not": lambda values: not values[0],
    "Fn::And": all,
    "Fn::Or": any,
}


def _evaluate(expression: Any, template: Mapping[str, Any], parameters: Mapping[str, Any]) -> Any:
    if not isinstance(expression, dict):
        return expression
    (function, argument), *_ = expression.items()
    if function == "Ref":
        return parameters.get(argument, argument)
    if function == "Condition":
        return condition_holds(argument, template, parameters)
    if function not in _CONDITION_FUNCTIONS:
        raise ValueError(f"unsupported condition function {function}")
    return _CONDITION_FUNCTIONS[function]([_evaluate(item, template, parameters) for item in argument])


PSEUDO_PARAMETERS = frozenset(
    {
        "AWS::AccountId",
        "AWS::NotificationARNs",
        "AWS::NoValue",
        "AWS::Partition",
        "AWS::Region",
        "AWS::StackId",
        "AWS::StackName",
        "AWS::URLSuffix",
    }
)
_SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")


def unresolved_references(template: Mapping[str, Any]) -> set[str]:
    """Names that Ref, Fn::GetAtt or Fn::Sub use but the template does not declare.

    CloudFormation refuses such a template before creating anything ("Unresolved resource
    dependencies"); moto does not check, so the local stack does.
    """
    declared = set(template.get("Resources", {})) | set(template.get("Parameters", {})) | PSEUDO_PARAMETERS
    used: set[str] = set()
    _collect_references(
        [template.get("Resources"), template.get("Outputs"), template.get("Conditions")], used, frozenset()
    )
    return used - declared


def _collect_references(value: Any, used: set[str], local_names: frozenset[str]) -> None:
    if isinstance(value, list):
        for item in value:
            _collect_references(item, used, local_names)
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        if key == "Ref" and isinstance(item, str):
            used.add(item)
        elif key == "Fn::GetAtt":
            target = item[0] if isinstance(item, list) else str(item).split(".", 1)[0]
            if isinstance(target, str):
                used.add(target)
        elif key == "Fn::Sub":
            text, variables = (item[0], item[1]) if isinstance(item, list) else (item, {})
            names = local_names | frozenset(variables)
            used.update(
                name.split(".", 1)[0] for name in _SUB_VARIABLE.findall(str(text)) if name.split(".", 1)[0] not in names
            )
            _collect_references(variables, used, local_names)
        else:
            _collect_references(item, used, local_names)
