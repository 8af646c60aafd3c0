"""A minimal AWS Lambda Runtime API server for one execution environment.

One server per running function process, bound to 127.0.0.1 on a kernel-chosen
port.  It implements the parts of
https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html that custom
runtimes (the Rust ``lambda_runtime`` crate, shell loops, ...) use:

* ``GET  /2018-06-01/runtime/invocation/next``
* ``POST /2018-06-01/runtime/invocation/{id}/response``
* ``POST /2018-06-01/runtime/invocation/{id}/error``
* ``POST /2018-06-01/runtime/init/error``

The executor hands invocations in with :meth:`RuntimeApi.submit` and waits for
the outcome on the returned :class:`concurrent.futures.Future`.
"""

import json
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = logging.getLogger(__name__)

API_PREFIX = "/2018-06-01/runtime"
# how long a blocked GET .../next sleeps before re-checking for shutdown
_POLL_SECONDS = 0.5


@dataclass
class Invocation:
    request_id: str
    payload: bytes
    invoked_function_arn: str
    trace_id: str
    deadline_ms: int
    client_context: str | None = None
    cognito_identity: str | None = None


@dataclass
class Outcome:
    """What the runtime answered for one invocation."""

    is_error: bool
    payload: bytes
    error_type: str | None = None


@dataclass
class _State:
    lock: threading.Condition = field(default_factory=threading.Condition)
    pending: Invocation | None = None
    in_flight: Invocation | None = None
    future: Future | None = None
    closed: bool = False
    # bumped for every (re)started runtime process, so that a GET /next still
    # blocked on behalf of a killed process never takes the next invocation
    generation: int = 0


def error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


class RuntimeApi:
    def __init__(self, name: str):
        self.name = name
        self._state = _State()
        # set when the runtime asks for its first invocation: init is done
        self.ready = threading.Event()
        # set (with init_error_payload) when the runtime reports an init error
        self.init_failed = threading.Event()
        self.init_error_payload: bytes = b""
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"lambda-runtime-api-{name}",
            daemon=True,
        )
        self._thread.start()

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def reset_for_new_process(self) -> None:
        """Forget init status before (re)starting the runtime process."""
        with self._state.lock:
            self._state.generation += 1
            self._state.lock.notify_all()
        self.ready.clear()
        self.init_failed.clear()
        self.init_error_payload = b""

    def submit(self, invocation: Invocation) -> Future:
        future: Future = Future()
        with self._state.lock:
            if self._state.closed:
                raise RuntimeError("runtime API is shut down")
            self._state.pending = invocation
            self._state.in_flight = invocation
            self._state.future = future
            self._state.lock.notify_all()
        return future

    def abandon(self, outcome: Outcome | None = None) -> None:
        """Finish the in-flight invocation (timeout, crash): later posts for it get 400."""
        with self._state.lock:
            future = self._state.future
            self._state.pending = None
            self._state.in_flight = None
            self._state.future = None
        if future is not None and not future.done():
            if outcome is None:
                future.cancel()
            else:
                future.set_result(outcome)

    def in_flight_request_id(self) -> str | None:
        with self._state.lock:
            return self._state.in_flight.request_id if self._state.in_flight else None

    def close(self) -> None:
        with self._state.lock:
            self._state.closed = True
            self._state.lock.notify_all()
        self.abandon()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # called by the handler threads -------------------------------------------------

    def _next(self) -> Invocation | None:
        with self._state.lock:
            generation = self._state.generation
        # the first GET /next means the runtime finished its init phase
        self.ready.set()
        with self._state.lock:
            while not self._state.closed and self._state.generation == generation:
                invocation = self._state.pending
                if invocation is not None:
                    self._state.pending = None
                    return invocation
                self._state.lock.wait(_POLL_SECONDS)
        return None

    def _finish(self, request_id: str, outcome: Outcome) -> bool:
        with self._state.lock:
            in_flight = self._state.in_flight
            if in_flight is None or in_flight.request_id != request_id:
                return False
            future = self._state.future
            self._state.in_flight = None
            self._state.future = None
        if future is not None and not future.done():
            future.set_result(outcome)
        return True

    def _init_error(self, payload: bytes) -> None:
        self.init_error_payload = payload
        self.init_failed.set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: RuntimeApi


class _Handler(BaseHTTPRequestHandler):
    # keep-alive: the Rust runtime (hyper) reuses one connection for all calls
    protocol_version = "HTTP/1.1"
    # small request/response pairs on a kept-alive connection: without
    # TCP_NODELAY, Nagle + delayed ACK add ~40 ms per exchange
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        LOG.debug("runtime-api %s: " + format, self.server.api.name, *args)

    # helpers -------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # streamed responses (Lambda-Runtime-Function-Response-Mode: streaming)
            chunks = []
            while True:
                size_line = self.rfile.readline().strip()
                size = int(size_line.split(b";")[0] or b"0", 16)
                if size == 0:
                    # skip trailers up to the empty line
                    while self.rfile.readline().strip():
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if "Content-Type" not in (headers or {}):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        # status line, headers and body in one write (one segment when small)
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(body)
        self.wfile.write(b"".join(self._headers_buffer))
        self._headers_buffer = []

    def _reply_json(self, status: int, document: dict):
        self._reply(status, json.dumps(document).encode())

    def _not_found(self):
        self._reply_json(404, {"errorType": "NotFound", "errorMessage": f"unknown path {self.path}"})

    # routes ---------------------------------------------------------------------------

    def do_GET(self):  # noqa: N802 - http.server naming
        if self.path.split("?")[0] != f"{API_PREFIX}/invocation/next":
            return self._not_found()
        invocation = self.server.api._next()
        if invocation is None:
            # shutting down: tell the runtime to go away
            self.close_connection = True
            return self._reply_json(
                500, {"errorType": "ServiceException", "errorMessage": "environment stopping"}
            )
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": invocation.invoked_function_arn,
            "Lambda-Runtime-Trace-Id": invocation.trace_id,
        }
        if invocation.client_context:
            headers["Lambda-Runtime-Client-Context"] = invocation.client_context
        if invocation.cognito_identity:
            headers["Lambda-Runtime-Cognito-Identity"] = invocation.cognito_identity
        self._reply(200, invocation.payload, headers)

    def do_POST(self):  # noqa: N802 - http.server naming
        path = self.path.split("?")[0]
        body = self._read_body()
        api = self.server.api
        if path == f"{API_PREFIX}/init/error":
            api._init_error(self._error_payload(body))
            return self._reply_json(202, {"status": "OK"})
        prefix = f"{API_PREFIX}/invocation/"
        if not path.startswith(prefix):
            return self._not_found()
        request_id, _, action = path[len(prefix) :].partition("/")
        if action == "response":
            outcome = Outcome(is_error=False, payload=body)
        elif action == "error":
            error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
            outcome = Outcome(
                is_error=True, payload=self._error_payload(body), error_type=error_type
            )
        else:
            return self._not_found()
        if not api._finish(request_id, outcome):
            return self._reply_json(
                400,
                {
                    "errorType": "InvalidRequestID",
                    "errorMessage": f"request {request_id} is not in flight",
                },
            )
        self._reply_json(202, {"status": "OK"})

    def _error_payload(self, body: bytes) -> bytes:
        """Error documents pass through as sent; a non-JSON body is wrapped like Lambda does."""
        try:
            if isinstance(json.loads(body or b"null"), dict):
                return body
        except ValueError:
            pass
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type") or "Unhandled"
        message = body.decode("utf-8", "replace") if body else error_type
        return error_body(error_type, message)


def deadline_ms(timeout_seconds: float) -> int:
    return int((time.time() + timeout_seconds) * 1000)
