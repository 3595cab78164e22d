"""The one way a request body is read: size, encoding, content type and nesting depth, then JSON.

Each step is checked before the next one looks at the bytes, and each refusal is a problem document
naming the problem (413, 415 or 400), so no body can reach a parser that would fail with a 500:
1. size: at most MAX_BODY_BYTES (webhooks: MAX_WEBHOOK_BYTES), measured before base64 is decoded;
2. encoding: base64 when API Gateway marks the body so (payload 2.0 `isBase64Encoded`), then strict UTF-8;
3. content type: application/json (or a +json type), charset utf-8 if one is named;
4. nesting depth: at most MAX_DEPTH arrays/objects, counted on the text before json.loads recurses;
5. JSON: RFC 8259 only (NaN and Infinity, which Python's json accepts, are refused).
Webhooks are signed over the raw bytes: they are size-checked first, verified, and only then parsed.
"""

import base64
import binascii
import json
from typing import Any

from aws_lambda_powertools.event_handler import Response

from payedge_connect.api.problems import problem_response

# The largest body any route takes (a payment, a mapping) is a few kilobytes.
MAX_BODY_BYTES = 64 * 1024
# QuickBooks batches up to ~1,000 CloudEvents per notification; a quarter megabyte holds that.
MAX_WEBHOOK_BYTES = 256 * 1024
MAX_DEPTH = 16


class BodyRefused(Exception):
    """The body cannot be read as a request: answered with `problem()`, the route is never called."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail

    def problem(self) -> Response[str]:
        return problem_response(self.status, self.title, self.detail, [{"field": "body", "message": self.detail}])


def body_bytes(event: dict[str, Any], limit: int = MAX_BODY_BYTES) -> bytes:
    """The body's bytes as the caller sent them, refused when larger than `limit`."""
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise BodyRefused(400, "Malformed request", "the body is not text or base64")
    if event.get("isBase64Encoded"):
        if len(body) // 4 * 3 > limit + 2:
            raise _too_large(limit)
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BodyRefused(400, "Malformed request", "the body is marked base64 but is not") from None
    else:
        raw = body.encode("utf-8", "surrogatepass")
    if len(raw) > limit:
        raise _too_large(limit)
    return raw


def _too_large(limit: int) -> BodyRefused:
    return BodyRefused(413, "Payload too large", f"the body is larger than {limit} bytes")


def check_json_content_type(headers: dict[str, str]) -> None:
    """A body must say it is JSON, in UTF-8 if it names a charset."""
    value = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    media_type, *parameters = (part.strip().lower() for part in value.split(";"))
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        shown = media_type or "none"
        raise BodyRefused(415, "Unsupported media type", f"the body must be application/json (Content-Type: {shown})")
    for parameter in parameters:
        name, _, charset = parameter.partition("=")
        if name.strip() == "charset" and charset.strip().strip('"') not in ("utf-8", "utf8"):
            raise BodyRefused(415, "Unsupported media type", "the body must be UTF-8 (charset=utf-8)")


def json_of(raw: bytes) -> Any:
    """The JSON value of a body, after its encoding and nesting depth are checked."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyRefused(400, "Malformed request", "the body is not valid UTF-8") from None
    if nesting_depth(text) > MAX_DEPTH:
        raise BodyRefused(400, "Malformed request", f"the body nests arrays and objects deeper than {MAX_DEPTH}")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as error:
        raise BodyRefused(400, "Malformed request", f"the body is not valid JSON ({error})") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in `text`, ignoring brackets inside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for character in text:
        if in_string:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character == '"':
                in_string = False
        elif character == '"':
            in_string = True
        elif character in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif character in "]}":
            depth -= 1
    return deepest


def read_request_body(event: dict[str, Any]) -> None:
    """Check an API request's body (when it has one) all the way to JSON; raises BodyRefused."""
    raw = body_bytes(event)
    if raw:
        check_json_content_type(event.get("headers") or {})
        json_of(raw)
