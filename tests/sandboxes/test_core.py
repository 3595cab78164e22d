"""Behaviour of the shared sandbox core, through a tiny provider that keeps notes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from local.sandboxes.core import (
    AuthorizationCodes,
    Clock,
    ConcurrencyLimiter,
    Faults,
    ProviderSandbox,
    SlidingWindowLimiter,
    json_dumps,
    json_response,
    pkce_matches,
    random_token,
    render_consent_page,
)

RFC7636_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC7636_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


class NotesSandbox(ProviderSandbox):
    """A minimal provider: notes per tenant, a 3-per-minute limit and one call at a time on /slow."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.notes: list[str] = []
        self.per_minute = SlidingWindowLimiter(3, 60, self.clock)
        self.one_at_a_time = ConcurrencyLimiter(1)
        self.release_slow = threading.Event()

    def routes(self) -> list[Rule]:
        return [
            Rule("/notes", methods=["POST"], endpoint="create_note"),
            Rule("/notes", methods=["GET"], endpoint="list_notes"),
            Rule("/notes/<int:index>", methods=["GET"], endpoint="get_note"),
            Rule("/limited", methods=["GET"], endpoint="limited"),
            Rule("/slow", methods=["GET"], endpoint="slow"),
            Rule("/broken", methods=["GET"], endpoint="broken"),
        ]

    def error_response(self, request: Request, status: int, message: str) -> Response:
        return json_response({"Fault": {"status": status, "message": message}}, status)

    def throttled_response(self, request: Request) -> Response:
        return json_response({"Fault": {"status": 429, "message": "Too many"}}, 429, {"Retry-After": "7"})

    def tenant_of(self, request: Request) -> str | None:
        return request.headers.get("X-Tenant")

    def check_rate_limit(self, request: Request, endpoint: str) -> Response | None:
        if "X-Explode" in request.headers:
            raise RuntimeError("limit bug")
        key = self.tenant_of(request) or "-"
        if endpoint == "limited":
            decision = self.per_minute.hit(key)
            if not decision.allowed:
                return json_response({"limited": True}, 429, {"Retry-After": str(decision.retry_after)})
        if endpoint == "slow":
            if not self.one_at_a_time.acquire(key):
                return self.throttled_response(request)
            self.on_request_finished(request, lambda: self.one_at_a_time.release(key))
        return None

    def create_note(self, request: Request) -> Response:
        self.add_note(request.get_json()["text"])
        return json_response({"index": len(self.notes) - 1}, 201)

    def list_notes(self, request: Request) -> Response:
        return json_response({"notes": self.notes})

    def get_note(self, request: Request, index: int) -> Response:
        return json_response({"note": self.notes[index]})

    def limited(self, request: Request) -> Response:
        return json_response({"ok": True})

    def slow(self, request: Request) -> Response:
        self.release_slow.wait(10)
        return json_response({"ok": True})

    def broken(self, request: Request) -> Response:
        raise RuntimeError("sandbox bug")

    def add_note(self, text: str) -> None:
        self.notes.append(text)

    def admin(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        if command == "add_note":
            text = args["text"]
            if not isinstance(text, str):
                raise TypeError("text must be a string")
            self.add_note(text)
            return {"count": len(self.notes)}
        return super().admin(command, args)


@pytest.fixture
def sandbox() -> Iterator[NotesSandbox]:
    with NotesSandbox(seed=7) as running:
        yield running
        running.release_slow.set()


def post_note(sandbox: NotesSandbox, text: str, **kwargs: Any) -> requests.Response:
    return requests.post(f"{sandbox.base_url}/notes", json={"text": text}, timeout=5, **kwargs)


def admin(sandbox: NotesSandbox, command: str, **args: Any) -> requests.Response:
    return requests.post(f"{sandbox.base_url}/_admin/{command}", json=args, timeout=5)


# ---- clock -----------------------------------------------------------------------------------------


def test_clock_starts_at_real_time_in_utc() -> None:
    # Given a new clock
    clock = Clock()
    # When read
    now = clock.now()
    # Then it is aware UTC and agrees with the real clock
    assert now.tzinfo is UTC
    assert abs(clock.timestamp() - time.time()) < 5


def test_advancing_the_clock_shifts_it() -> None:
    clock = Clock()
    before = clock.now()
    # When advanced by an hour
    clock.advance(3600)
    # Then it reads (at least) an hour later, and not a day later
    shifted = clock.now() - before
    assert timedelta(hours=1) <= shifted < timedelta(hours=2)


# ---- routing and the request log -----------------------------------------------------------------


def test_a_route_is_served_and_logged_with_tenant_and_status(sandbox: NotesSandbox) -> None:
    # When a note is created for tenant T1 and then read
    created = post_note(sandbox, "hello", headers={"X-Tenant": "T1"})
    read = requests.get(f"{sandbox.base_url}/notes/0", timeout=5)
    # Then both answer and both are logged by endpoint name
    assert created.status_code == 201
    assert read.json() == {"note": "hello"}
    entries = sandbox.requests.entries()
    assert [(e.method, e.path, e.endpoint, e.tenant, e.status) for e in entries] == [
        ("POST", "/notes", "create_note", "T1", 201),
        ("GET", "/notes/0", "get_note", None, 200),
    ]
    assert sandbox.requests.counts() == {"create_note": 1, "get_note": 1}
    assert sandbox.requests.count("create_note") == 1
    assert sandbox.requests.total() == 2


def test_resetting_the_log_forgets_requests(sandbox: NotesSandbox) -> None:
    post_note(sandbox, "a")
    sandbox.requests.reset()
    assert sandbox.requests.total() == 0
    assert sandbox.requests.counts() == {}


def test_unknown_path_gets_the_providers_404(sandbox: NotesSandbox) -> None:
    response = requests.get(f"{sandbox.base_url}/nowhere", timeout=5)
    assert response.status_code == 404
    assert response.json()["Fault"]["status"] == 404
    assert sandbox.requests.counts() == {"unmatched": 1}


def test_wrong_method_gets_the_providers_405(sandbox: NotesSandbox) -> None:
    response = requests.delete(f"{sandbox.base_url}/notes", timeout=5)
    assert response.status_code == 405
    assert response.json()["Fault"]["status"] == 405


def test_a_failing_handler_answers_500_and_is_kept_for_the_test(sandbox: NotesSandbox) -> None:
    response = requests.get(f"{sandbox.base_url}/broken", timeout=5)
    assert response.status_code == 500
    assert response.json()["Fault"]["status"] == 500
    assert [str(error) for error in sandbox.handler_errors] == ["sandbox bug"]


def test_a_failure_outside_the_handler_answers_500_and_is_kept(sandbox: NotesSandbox) -> None:
    # Given the sandbox's own limit check is broken for this request
    response = requests.get(f"{sandbox.base_url}/notes", headers={"X-Explode": "1"}, timeout=5)
    # Then the client gets a 500, the log has it and the test can see the error
    assert response.status_code == 500
    assert [str(error) for error in sandbox.handler_errors] == ["limit bug"]
    assert [(e.endpoint, e.status) for e in sandbox.requests.entries()] == [("list_notes", 500)]


# ---- faults --------------------------------------------------------------------------------------


def test_failure_fault_answers_with_the_provider_error_for_count_calls(sandbox: NotesSandbox) -> None:
    # Given two injected 503s on create_note
    sandbox.faults.fail("create_note", 503, count=2)
    # When three notes are posted
    statuses = [post_note(sandbox, f"n{i}").status_code for i in range(3)]
    # Then the first two fail with the provider's body and only the third reaches the handler
    assert statuses == [503, 503, 201]
    assert sandbox.notes == ["n2"]
    assert [e.status for e in sandbox.requests.entries()] == [503, 503, 201]


def test_failure_fault_on_star_hits_every_endpoint(sandbox: NotesSandbox) -> None:
    sandbox.faults.fail("*", 500)
    assert post_note(sandbox, "x").status_code == 500
    assert requests.get(f"{sandbox.base_url}/notes", timeout=5).status_code == 500


def test_failure_share_is_deterministic_for_a_seed() -> None:
    # Given two fault plans with the same seed failing half of the calls
    first, second = Faults(seed=3), Faults(seed=3)
    first.fail("e", 500, share=0.5)
    second.fail("e", 500, share=0.5)
    # When forty calls are checked against each
    pattern_a = [first.take_action("e") is not None for _ in range(40)]
    pattern_b = [second.take_action("e") is not None for _ in range(40)]
    # Then both fail the same calls, and some but not all
    assert pattern_a == pattern_b
    assert 0 < sum(pattern_a) < 40


def test_timeout_wins_over_failure_which_wins_over_throttle() -> None:
    # Given one of each fault on the same endpoint
    faults = Faults()
    faults.throttle("e")
    faults.fail("e", 503, count=1)
    faults.timeout("e", seconds=0.5)
    # When four calls are checked
    actions = [faults.take_action("e") for _ in range(4)]
    # Then each fault applies once, in that order, and then none
    assert [(a.kind, a.status, a.seconds) if a else None for a in actions] == [
        ("timeout", 0, 0.5),
        ("fail", 503, 0.0),
        ("throttle", 429, 0.0),
        None,
    ]


def test_throttle_gives_the_providers_429_to_the_next_calls(sandbox: NotesSandbox) -> None:
    sandbox.faults.throttle(count=2)
    responses = [requests.get(f"{sandbox.base_url}/notes", timeout=5) for _ in range(3)]
    assert [r.status_code for r in responses] == [429, 429, 200]
    assert responses[0].headers["Retry-After"] == "7"


def test_latency_delays_the_answer(sandbox: NotesSandbox) -> None:
    # Given half a second of latency on list_notes
    sandbox.faults.add_latency(0.5, "list_notes")
    # When a client waits only a tenth of a second
    # Then it times out, while other endpoints answer at once
    with pytest.raises(requests.Timeout):
        requests.get(f"{sandbox.base_url}/notes", timeout=0.1)
    assert post_note(sandbox, "fast").status_code == 201


def test_latency_adds_up_and_star_applies_everywhere() -> None:
    faults = Faults()
    faults.add_latency(0.2)
    faults.add_latency(0.3, "a")
    faults.add_latency(0.1, "a")
    assert faults.latency("a") == pytest.approx(0.6)
    assert faults.latency("b") == pytest.approx(0.2)
    faults.clear()
    assert faults.latency("a") == 0


def test_timeout_closes_the_connection_without_running_the_handler(sandbox: NotesSandbox) -> None:
    # Given a timeout fault that holds create_note for 0.2 s
    sandbox.faults.timeout("create_note", seconds=0.2)
    # When a note is posted
    # Then the client sees the connection closed with no response and nothing was stored
    with pytest.raises(requests.ConnectionError):
        post_note(sandbox, "lost")
    assert sandbox.notes == []
    assert [e.status for e in sandbox.requests.entries()] == [0]
    # And the next call is served normally
    assert post_note(sandbox, "kept").status_code == 201


def test_dropped_response_after_commit_keeps_the_write(sandbox: NotesSandbox) -> None:
    # Given the next create_note response is lost after the handler committed
    sandbox.faults.drop_response_after_commit("create_note")
    # When a note is posted
    # Then the client gets a connection error...
    with pytest.raises(requests.ConnectionError):
        post_note(sandbox, "committed")
    # ...but the note was stored and a later read shows it
    assert requests.get(f"{sandbox.base_url}/notes", timeout=5).json() == {"notes": ["committed"]}
    assert [(e.endpoint, e.status) for e in sandbox.requests.entries()] == [
        ("create_note", 0),
        ("list_notes", 200),
    ]


def test_clearing_faults_restores_normal_service(sandbox: NotesSandbox) -> None:
    sandbox.faults.fail("*", 500)
    sandbox.faults.clear()
    assert post_note(sandbox, "x").status_code == 201


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("fail", {"endpoint": "e", "status": 200}),
        ("fail", {"endpoint": "e", "status": 500, "share": 0}),
        ("throttle", {"count": 0}),
        ("add_latency", {"seconds": -1}),
    ],
)
def test_nonsense_faults_are_refused(method: str, args: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        getattr(Faults(), method)(**args)


# ---- limits --------------------------------------------------------------------------------------


def test_sliding_window_allows_limit_calls_then_says_when_to_retry() -> None:
    # Given 3 calls per 60 s
    clock = Clock()
    limiter = SlidingWindowLimiter(3, 60, clock)
    # When four calls arrive ten seconds apart (at 0, 10, 20 and 30 s)
    decisions = [limiter.hit("t")]
    for _ in range(3):
        clock.advance(10)
        decisions.append(limiter.hit("t"))
    # Then the fourth is refused until the first call leaves the window, 30 s later
    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 2), (True, 1), (True, 0), (False, 0)]
    assert decisions[3].retry_after == 30
    clock.advance(29)
    assert not limiter.hit("t").allowed
    clock.advance(1)
    assert limiter.hit("t").allowed


def test_sliding_window_keeps_keys_apart() -> None:
    limiter = SlidingWindowLimiter(1, 60, Clock())
    assert limiter.hit("a").allowed
    assert not limiter.hit("a").allowed
    assert limiter.hit("b").allowed
    assert limiter.remaining("b") == 0
    assert limiter.remaining("c") == 1


def test_rate_limit_check_answers_before_the_handler(sandbox: NotesSandbox) -> None:
    statuses = [
        requests.get(f"{sandbox.base_url}/limited", headers={"X-Tenant": "T"}, timeout=5).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    other_tenant = requests.get(f"{sandbox.base_url}/limited", headers={"X-Tenant": "U"}, timeout=5)
    assert other_tenant.status_code == 200
    # When the sandbox clock moves past the window, the tenant may call again
    sandbox.clock.advance(61)
    again = requests.get(f"{sandbox.base_url}/limited", headers={"X-Tenant": "T"}, timeout=5)
    assert again.status_code == 200


def test_concurrency_limiter_counts_in_flight_calls() -> None:
    limiter = ConcurrencyLimiter(2)
    assert limiter.acquire("k")
    assert limiter.acquire("k")
    assert not limiter.acquire("k")
    limiter.release("k")
    assert limiter.acquire("k")
    assert limiter.in_flight("k") == 2
    with pytest.raises(RuntimeError):
        limiter.release("other")


def test_a_second_concurrent_call_is_refused_and_the_slot_comes_back(sandbox: NotesSandbox) -> None:
    # Given one call to /slow in flight
    first: dict[str, int] = {}
    thread = threading.Thread(
        target=lambda: first.update(status=requests.get(f"{sandbox.base_url}/slow", timeout=10).status_code)
    )
    thread.start()
    deadline = time.monotonic() + 5
    while sandbox.one_at_a_time.in_flight("-") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    # When a second call arrives
    second = requests.get(f"{sandbox.base_url}/slow", timeout=5)
    # Then it is throttled; once the first finishes its slot is free again
    assert second.status_code == 429
    sandbox.release_slow.set()
    thread.join(10)
    assert first["status"] == 200
    assert sandbox.one_at_a_time.in_flight("-") == 0
    assert requests.get(f"{sandbox.base_url}/slow", timeout=5).status_code == 200


# ---- admin surface -------------------------------------------------------------------------------


def test_admin_fault_commands_change_behaviour(sandbox: NotesSandbox) -> None:
    assert admin(sandbox, "fail", endpoint="create_note", status=502, count=1).json() == {"ok": True}
    assert post_note(sandbox, "x").status_code == 502
    assert admin(sandbox, "throttle", endpoint="list_notes").status_code == 200
    assert requests.get(f"{sandbox.base_url}/notes", timeout=5).status_code == 429
    assert admin(sandbox, "drop_response_after_commit", endpoint="create_note").status_code == 200
    with pytest.raises(requests.ConnectionError):
        post_note(sandbox, "y")
    assert admin(sandbox, "timeout", endpoint="create_note", seconds=0.1).status_code == 200
    with pytest.raises(requests.ConnectionError):
        post_note(sandbox, "z")
    assert admin(sandbox, "latency", seconds=0.5).status_code == 200
    with pytest.raises(requests.Timeout):
        requests.get(f"{sandbox.base_url}/notes", timeout=0.1)
    assert admin(sandbox, "clear_faults").status_code == 200
    assert post_note(sandbox, "w").status_code == 201
    assert sandbox.notes == ["y", "w"]


def test_admin_requests_reports_counts_and_is_not_counted(sandbox: NotesSandbox) -> None:
    post_note(sandbox, "a")
    post_note(sandbox, "b")
    report = requests.get(f"{sandbox.base_url}/_admin/requests", timeout=5).json()
    assert report == {"counts": {"create_note": 2}, "total": 2}
    assert admin(sandbox, "reset_requests").status_code == 200
    assert requests.get(f"{sandbox.base_url}/_admin/requests", timeout=5).json() == {"counts": {}, "total": 0}


def test_admin_advance_clock_moves_the_sandbox_clock(sandbox: NotesSandbox) -> None:
    before = sandbox.clock.now()
    response = admin(sandbox, "advance_clock", seconds=86400)
    assert response.status_code == 200
    assert sandbox.clock.now() - before >= timedelta(days=1)


def test_admin_subclass_commands_reach_the_python_method(sandbox: NotesSandbox) -> None:
    assert admin(sandbox, "add_note", text="from admin").json() == {"count": 1}
    assert sandbox.notes == ["from admin"]


def test_admin_unknown_command_is_404(sandbox: NotesSandbox) -> None:
    response = admin(sandbox, "make_coffee")
    assert response.status_code == 404
    assert "make_coffee" in response.json()["error"]


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("latency", {"seconds": "slow"}),
        ("latency", {}),
        ("fail", {"endpoint": "create_note", "status": 200}),
        ("fail", {"endpoint": "create_note", "status": 500, "count": "two"}),
        ("throttle", {"count": True}),
        ("add_note", {}),
        ("add_note", {"text": 5}),
    ],
)
def test_admin_bad_arguments_are_400(sandbox: NotesSandbox, command: str, args: dict[str, Any]) -> None:
    response = admin(sandbox, command, **args)
    assert response.status_code == 400
    assert response.json()["error"]


def test_admin_body_must_be_a_json_object(sandbox: NotesSandbox) -> None:
    response = requests.post(f"{sandbox.base_url}/_admin/throttle", data="[1]", timeout=5)
    assert response.status_code == 400


# ---- server lifecycle and webhooks ---------------------------------------------------------------


def test_stop_closes_the_port() -> None:
    sandbox = NotesSandbox()
    base_url = sandbox.start()
    assert requests.get(f"{base_url}/notes", timeout=5).status_code == 200
    sandbox.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base_url}/notes", timeout=5)
    with pytest.raises(RuntimeError):
        _ = sandbox.base_url


def test_webhook_deliveries_are_recorded(sandbox: NotesSandbox) -> None:
    # Given a receiver and a closed port
    with NotesSandbox() as receiver:
        closed = NotesSandbox()
        closed_url = closed.start()
        closed.stop()
        # When the sandbox posts one webhook to each
        sandbox.post_webhook(f"{receiver.base_url}/notes", b'{"text": "event"}', {"Content-Type": "application/json"})
        sandbox.post_webhook(f"{closed_url}/notes", b"{}", {})
        sandbox.wait_for_webhooks()
        # Then the receiver got it and both outcomes are recorded
        assert receiver.notes == ["event"]
    outcomes = {(d.url.rsplit(":", 1)[0], d.status, d.error is not None) for d in sandbox.webhook_deliveries()}
    assert outcomes == {("http://127.0.0.1", 201, False), ("http://127.0.0.1", None, True)}
    listed = requests.get(f"{sandbox.base_url}/_admin/webhooks", timeout=5).json()["deliveries"]
    assert sorted(str(d["status"]) for d in listed) == ["201", "None"]


# ---- JSON, tokens, PKCE --------------------------------------------------------------------------


def test_decimals_are_written_with_their_exact_digits() -> None:
    payload = {"Amount": Decimal("2400.10"), "Rate": Decimal("0.3"), "Big": Decimal("12345678901234567.89")}
    assert json_dumps(payload) == '{"Amount":2400.10,"Rate":0.3,"Big":12345678901234567.89}'


def test_json_response_keeps_unicode_and_headers() -> None:
    response = json_response({"Name": "Café 東京 🚀", "n": [1, None, True]}, 201, {"X-Id": "7"})
    assert response.status_code == 201
    assert response.headers["X-Id"] == "7"
    assert response.mimetype == "application/json"
    assert response.get_data(as_text=True) == '{"Name":"Café 東京 🚀","n":[1,null,true]}'


@pytest.mark.parametrize("bad", [Decimal("NaN"), float("inf"), object(), {1: "x"}])
def test_values_json_cannot_hold_are_refused(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        json_dumps({"v": bad})


def test_random_tokens_are_url_safe_and_distinct() -> None:
    tokens = {random_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) >= 43 and all(c.isalnum() or c in "-_" for c in t) for t in tokens)


def test_pkce_s256_matches_the_rfc_example() -> None:
    assert pkce_matches(RFC7636_VERIFIER, RFC7636_CHALLENGE, "S256")


def test_pkce_plain_compares_verbatim() -> None:
    assert pkce_matches(RFC7636_VERIFIER, RFC7636_VERIFIER, "plain")
    assert not pkce_matches(RFC7636_VERIFIER, RFC7636_CHALLENGE, "plain")


@pytest.mark.parametrize(
    ("verifier", "method"),
    [
        (RFC7636_VERIFIER[:-1] + "Y", "S256"),  # another verifier
        (RFC7636_VERIFIER, "s256"),  # methods are case-sensitive
        (RFC7636_VERIFIER, "SHA1"),
        ("short", "S256"),  # RFC 7636 needs 43 to 128 characters
    ],
)
def test_pkce_mismatch_is_rejected(verifier: str, method: str) -> None:
    assert not pkce_matches(verifier, RFC7636_CHALLENGE, method)


# ---- authorization codes -------------------------------------------------------------------------


def issue_code(codes: AuthorizationCodes, **overrides: Any) -> str:
    args: dict[str, Any] = {
        "client_id": "app",
        "redirect_uri": "https://app.example/cb",
        "tenants": ["realm-1"],
        "scopes": ["accounting"],
        "subject": "user-1",
    }
    args.update(overrides)
    return codes.issue(**args)


def test_code_redeems_once_with_its_grant() -> None:
    codes = AuthorizationCodes(Clock(), 60)
    code = issue_code(codes)
    grant = codes.redeem(code, "app", "https://app.example/cb", None)
    assert grant is not None
    assert (grant.tenants, grant.scopes, grant.subject) == (("realm-1",), ("accounting",), "user-1")


def test_reused_code_is_rejected() -> None:
    codes = AuthorizationCodes(Clock(), 60)
    code = issue_code(codes)
    assert codes.redeem(code, "app", "https://app.example/cb", None) is not None
    assert codes.redeem(code, "app", "https://app.example/cb", None) is None


def test_expired_code_is_rejected() -> None:
    clock = Clock()
    codes = AuthorizationCodes(clock, 60)
    code = issue_code(codes)
    clock.advance(61)
    assert codes.redeem(code, "app", "https://app.example/cb", None) is None


def test_unknown_code_is_rejected() -> None:
    assert AuthorizationCodes(Clock(), 60).redeem("nope", "app", "https://app.example/cb", None) is None


@pytest.mark.parametrize(
    ("client_id", "redirect_uri"),
    [("other-app", "https://app.example/cb"), ("app", "https://app.example/cb/")],
)
def test_code_for_another_client_or_redirect_is_rejected_and_consumed(client_id: str, redirect_uri: str) -> None:
    codes = AuthorizationCodes(Clock(), 60)
    code = issue_code(codes)
    assert codes.redeem(code, client_id, redirect_uri, None) is None
    # The failed attempt consumed the code
    assert codes.redeem(code, "app", "https://app.example/cb", None) is None


def test_pkce_code_needs_the_matching_verifier() -> None:
    codes = AuthorizationCodes(Clock(), 60)
    good = issue_code(codes, code_challenge=RFC7636_CHALLENGE, code_challenge_method="S256")
    missing = issue_code(codes, code_challenge=RFC7636_CHALLENGE, code_challenge_method="S256")
    wrong = issue_code(codes, code_challenge=RFC7636_CHALLENGE, code_challenge_method="S256")
    assert codes.redeem(good, "app", "https://app.example/cb", RFC7636_VERIFIER) is not None
    assert codes.redeem(missing, "app", "https://app.example/cb", None) is None
    assert codes.redeem(wrong, "app", "https://app.example/cb", "x" * 43) is None


def test_pkce_challenge_without_method_is_plain() -> None:
    codes = AuthorizationCodes(Clock(), 60)
    code = issue_code(codes, code_challenge=RFC7636_VERIFIER)
    assert codes.redeem(code, "app", "https://app.example/cb", RFC7636_VERIFIER) is not None


# ---- consent page --------------------------------------------------------------------------------


class FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str | None]] = []
        self.inputs: list[dict[str, str | None]] = []
        self.buttons: list[dict[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        {"form": self.forms, "input": self.inputs, "button": self.buttons}.get(tag, []).append(dict(attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_consent(multi_select: bool) -> FormParser:
    page = render_consent_page(
        provider="Xero",
        app_name='Pay <b>"Edge"</b>',
        scopes=["offline_access", "accounting.invoices.read"],
        tenants=[("t-1", "Café & Co"), ("t-2", "<script>alert(1)</script>")],
        multi_select=multi_select,
        hidden={"state": 'a"b', "redirect_uri": "https://app.example/cb?x=1&y=2"},
        action="/authorize?flow=1&x=2",
    )
    parser = FormParser()
    parser.feed(page)
    assert "<script>" not in page
    return parser


def test_consent_page_is_a_form_posting_back_with_decision_and_hidden_fields() -> None:
    parser = parse_consent(multi_select=False)
    assert parser.forms == [{"method": "post", "action": "/authorize?flow=1&x=2"}]
    hidden = {i["name"]: i["value"] for i in parser.inputs if i["type"] == "hidden"}
    assert hidden == {"state": 'a"b', "redirect_uri": "https://app.example/cb?x=1&y=2"}
    assert {(b["name"], b["value"]) for b in parser.buttons} == {
        ("decision", "approve"),
        ("decision", "deny"),
    }
    text = "".join(parser.text)
    assert 'Pay <b>"Edge"</b>' in text
    assert "<script>alert(1)</script>" in text  # shown as text, not run
    assert "accounting.invoices.read" in text


def test_consent_page_offers_one_tenant_as_radio_buttons() -> None:
    tenants = [i for i in parse_consent(multi_select=False).inputs if i.get("name") == "tenant"]
    assert [(i["type"], i["value"], "checked" in i) for i in tenants] == [
        ("radio", "t-1", True),
        ("radio", "t-2", False),
    ]


def test_consent_page_offers_several_tenants_as_checkboxes() -> None:
    tenants = [i for i in parse_consent(multi_select=True).inputs if i.get("name") == "tenant"]
    assert [(i["type"], i["value"]) for i in tenants] == [("checkbox", "t-1"), ("checkbox", "t-2")]
