"""The reference web app (webapp/) served on its own loopback origin, as the platform would host it.

The files are static; the server adds two things a real host would get elsewhere:

- `GET /config.json`: where the HTTP API is (the platform's build would bake this in);
- `POST /dev/login`: a dev-only sign-in that answers a user JWT from the local identity provider
  (the platform's identity provider does this in production). It is same-origin, so it needs no CORS.

The web app's origin differs from the gateway's (another port), so every API call it makes is a real
cross-origin call with a preflight, as from the platform's domain to API Gateway's.
"""

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from local.gateway import LOOPBACK

WEB_APP_DIRECTORY = Path(__file__).resolve().parent.parent / "webapp"
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass
class WebAppServer:
    """webapp/ on http://127.0.0.1:`port` (0 picks a free port); bind() first to learn the origin."""

    issue_token: Callable[[], str]
    port: int = 0
    api_url: str = ""  # set before start()
    directory: Path = WEB_APP_DIRECTORY
    _server: BaseWSGIServer | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def bind(self) -> None:
        if self._server is None:
            self._server = make_server(LOOPBACK, self.port, self._wsgi, threaded=True)

    @property
    def origin(self) -> str:
        if self._server is None:
            raise RuntimeError("the web app server is not bound yet")
        return f"http://{LOOPBACK}:{self._server.server_port}"

    @property
    def url(self) -> str:
        """The integrations page: where the OAuth callback sends the browser back (WebAppUrl)."""
        return f"{self.origin}/"

    def start(self) -> "WebAppServer":
        if not self.api_url:
            raise RuntimeError("the web app needs the HTTP API's URL")
        self.bind()
        assert self._server is not None
        self._thread = threading.Thread(target=self._server.serve_forever, name="web-app", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(timeout=10)
            self._server.server_close()
        self._server, self._thread = None, None

    def __enter__(self) -> "WebAppServer":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.handle(Request(environ))(environ, start_response)

    def handle(self, request: Request) -> Response:
        if request.path == "/config.json" and request.method == "GET":
            return _json({"apiUrl": self.api_url, "devLogin": True})
        if request.path == "/dev/login" and request.method == "POST":
            return _json({"token": self.issue_token()})
        if request.method not in ("GET", "HEAD"):
            return Response("Method Not Allowed", status=405)
        name = "index.html" if request.path == "/" else request.path.lstrip("/")
        file = (self.directory / name).resolve()
        if not file.is_relative_to(self.directory.resolve()) or not file.is_file():
            return Response("Not Found", status=404, content_type="text/plain")
        content_type = _CONTENT_TYPES.get(file.suffix, "application/octet-stream")
        # Always the current files: the page is edited while make dev runs.
        return Response(file.read_bytes(), content_type=content_type, headers={"Cache-Control": "no-store"})


def _json(body: Any) -> Response:
    return Response(json.dumps(body), content_type="application/json", headers={"Cache-Control": "no-store"})
