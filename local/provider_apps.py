"""Wiring the provider sandboxes to a local stack the way an operator wires the real providers.

An operator registers one app per provider at the provider's developer portal, stores its client id and
secret in Secrets Manager at `<stack-name>/apps/<provider>` and adds `<ApiBaseUrl>/oauth/<provider>/callback`
to the app's redirect URIs. Locally the "developer portal" is the SandboxFleet, and the stack's
`ProviderBaseUrls` parameter points the connectors at the sandboxes.
"""

import json
import os

from local.sandboxes.fleet import PROVIDERS, SandboxFleet, gateway_redirect_uris
from local.stack import LocalStack


def sandbox_parameters(fleet: SandboxFleet) -> dict[str, str]:
    """The stack parameters that point every connector at its sandbox (the fleet must be started)."""
    return {"ProviderBaseUrls": fleet.provider_base_urls_json()}


def allow_plain_http_oauth() -> None:
    """oauthlib refuses OAuth over plain http; the sandboxes serve http on loopback only.

    The functions run in this process and read it from the process environment.
    """
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"


def app_secret_name(stack: LocalStack, provider: str) -> str:
    return f"{stack.stack_name}/apps/{provider}"


def register_provider_apps(stack: LocalStack, fleet: SandboxFleet) -> None:
    """Store each sandbox app's credentials where the functions read them, and register the gateway's
    callback URLs with the apps (the gateway's URL is only known once the stack runs)."""
    fleet.register_apps(gateway_redirect_uris(stack.api_url))
    secrets = stack.client("secretsmanager")
    for provider in PROVIDERS:
        app = fleet.credentials[provider]
        secrets.create_secret(
            Name=app_secret_name(stack, provider),
            KmsKeyId=stack.outputs["StackKeyArn"],
            Description=f"PayEdge Connect {provider} app (client id and secret)",
            SecretString=json.dumps(
                {"clientId": app.client_id, "clientSecret": app.client_secret, "webhookKey": app.webhook_key}
            ),
        )
