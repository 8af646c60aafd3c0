"""LocalStack ``RuntimeExecutor`` that runs a function's ``bootstrap`` on the host.

LocalStack's free edition runs Lambda code only in Docker containers (its
``docker`` executor starts a container with the AWS runtime interface emulator).
This executor does the same job without Docker, for custom runtimes
(``provided.al2023`` / ``provided.al2``): the function's ``bootstrap`` (a Rust
binary built by ``cargo lambda``, a shell script, ...) runs as a child process
of LocalStack, talking to a Runtime API server of its own on 127.0.0.1.

One executor instance == one LocalStack execution environment == one process.
LocalStack never sends a second invocation to an environment before the first
returned, so the executor handles one invocation at a time.

Configuration (environment of the LocalStack process):

``LOCAL_LAMBDA_STATE_DIR``
    Folder for per-function log files (``lambda-logs/<function>.log``) and pid
    files of running function processes (``run/lambda/<pid>``, read by stop.sh).
    Defaults to ``<tmp>/local-lambda``.
``LOCAL_LAMBDA_PASS_ENV``
    Comma-separated names of extra host variables to pass to functions (PATH,
    HOME, LANG, TMPDIR, ... always are).
``LOCAL_LAMBDA_ECHO_LOGS``
    ``1`` (default) also writes each function output line to LocalStack's log.
"""

import logging
import os
import select
import signal
import subprocess
import threading
import time
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from pathlib import Path

from localstack import config
from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)
from localstack.utils.strings import to_bytes

from healthpay_localstack_executor.runtime_api import (
    Invocation,
    Outcome,
    RuntimeApi,
    deadline_ms,
    error_body,
)

LOG = logging.getLogger(__name__)
# function output goes to a logger of its own so it can be filtered
FUNCTION_LOG = logging.getLogger("localstack.services.lambda_.function_output")

# host variables every function process gets (a Lambda sandbox has these too)
BASE_PASS_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
# the executor's output buffer per environment (get_logs); older output is dropped
MAX_ENV_LOG_BYTES = 256 * 1024
# after a response arrives, wait at most this long for output still in the pipe
LOG_DRAIN_SECONDS = 0.2
# SIGTERM grace before SIGKILL when stopping a process
STOP_GRACE_SECONDS = 2.0
SUPPORTED_RUNTIME_PREFIX = "provided"


def _state_dir() -> Path:
    configured = os.environ.get("LOCAL_LAMBDA_STATE_DIR", "").strip()
    if configured:
        return Path(configured)
    return Path(config.dirs.tmp or "/tmp") / "local-lambda"


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class _ProcessOutput:
    """Reads a process's combined stdout/stderr on a thread of its own.

    Every line goes to the per-function log file, to the environment's buffer
    (``get_logs``) and, while an invocation runs, to that invocation's buffer
    (the logs LocalStack stores in CloudWatch Logs and returns for
    ``LogType=Tail``).
    """

    def __init__(self, fd: int, process: subprocess.Popen, executor: "LocalProcessRuntimeExecutor"):
        self.fd = fd
        self.process = process
        self.executor = executor
        # held from the moment a chunk was read until it is in the buffers, so
        # drain() cannot miss a chunk that is read but not yet recorded
        self.busy = threading.Lock()
        self.eof = threading.Event()
        self._partial = b""
        self.thread = threading.Thread(
            target=self._run, name=f"lambda-output-{executor.id[:8]}", daemon=True
        )
        self.thread.start()

    def _run(self):
        try:
            while True:
                chunk = os.read(self.fd, 65536)
                with self.busy:
                    if not chunk:
                        if self._partial:
                            self.executor._record_output(self._partial + b"\n")
                            self._partial = b""
                        break
                    data = self._partial + chunk
                    cut = data.rfind(b"\n") + 1
                    self._partial = data[cut:]
                    if cut:
                        self.executor._record_output(data[:cut])
        except OSError:
            pass
        finally:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.eof.set()
            self.executor._on_process_output_closed(self.process)

    def drain(self, max_wait: float) -> None:
        """Wait until output the process wrote so far has been recorded."""
        end = time.monotonic() + max_wait
        while not self.eof.is_set() and time.monotonic() < end:
            try:
                readable, _, _ = select.select([self.fd], [], [], 0)
            except (OSError, ValueError):
                return
            if not readable:
                break
            time.sleep(0.002)
        # a chunk the reader took just before the select() above is recorded
        # under `busy`; the short sleep lets the reader reach that lock first
        time.sleep(0.001)
        with self.busy:
            if self._partial:
                self.executor._record_output(self._partial + b"\n")
                self._partial = b""


class LocalProcessRuntimeExecutor(RuntimeExecutor):
    """Runs ``<code folder>/bootstrap`` as a host process with its own Runtime API."""

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self.function_name = function_version.id.function_name
        self._lock = threading.RLock()
        self._api: RuntimeApi | None = None
        self._process: subprocess.Popen | None = None
        self._output: _ProcessOutput | None = None
        self._env: dict[str, str] = {}
        self._bootstrap_stamp: tuple | None = None
        self._stopped = threading.Event()
        # pid of a process this executor is killing on purpose (timeout, restart,
        # stop): its exit is expected and must not fail an invocation
        self._killing_pid: int | None = None
        self._log_lock = threading.Lock()
        self._env_logs = bytearray()
        self._invocation_logs: bytearray | None = None
        state = _state_dir()
        self._log_path = state / "lambda-logs" / f"{_safe_name(self.function_name)}.log"
        self._pid_dir = state / "run" / "lambda"
        self._echo_logs = os.environ.get("LOCAL_LAMBDA_ECHO_LOGS", "1") not in ("0", "false")

    # --- paths -------------------------------------------------------------------------

    @property
    def code_dir(self) -> Path:
        code = self.function_version.config.code
        if code is None:
            raise LambdaRuntimeException(
                "container image functions are not supported by the local-process executor"
            )
        return Path(code.get_unzipped_code_location())

    @property
    def bootstrap_path(self) -> Path:
        # provided.* runtimes start <task root>/bootstrap; the handler string is
        # only passed on as _HANDLER
        return self.code_dir / "bootstrap"

    # --- RuntimeExecutor interface -------------------------------------------------------

    def start(self, env_vars: dict[str, str]) -> None:
        problem = self._unsupported_reason(self.function_version)
        if problem:
            self._write_marker(problem)
            raise StatusErrorException(
                problem, payload=error_body("Runtime.Unsupported", problem)
            )
        self._env = self._build_env(env_vars)
        self._api = RuntimeApi(name=f"{self.function_name}-{self.id[:8]}")
        self._env["AWS_LAMBDA_RUNTIME_API"] = self._api.address
        self._spawn_and_wait_ready(timeout=config.LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT)

    def stop(self) -> None:
        self._stopped.set()
        # closing the API first cancels an invocation in flight, so invoke()
        # returns and releases the lock (stop must not wait for a long invoke)
        if self._api is not None:
            self._api.close()
        with self._lock:
            self._kill_process()

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        # the function runs on the same host: it reaches LocalStack where the
        # gateway listens (a wildcard bind is reachable on loopback)
        host = config.GATEWAY_LISTEN[0].host
        if host in ("", "0.0.0.0", "::", "[::]"):
            return "127.0.0.1"
        return host

    def get_runtime_endpoint(self) -> str:
        # only used for LOCALSTACK_RUNTIME_ENDPOINT (the Docker init's callback
        # URL); kept in the same form for parity, this executor does not use it
        port = config.GATEWAY_LISTEN[0].port
        return f"http://{self.get_endpoint_from_executor()}:{port}/_localstack_lambda/{self.id}"

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        request_id = payload["invoke-id"]
        with self._lock:
            self._restart_if_needed()
            timeout = float(self.function_version.config.timeout or 3)
            invocation = Invocation(
                request_id=request_id,
                payload=to_bytes(payload.get("payload") or ""),
                invoked_function_arn=payload.get("invoked-function-arn")
                or self.function_version.qualified_arn,
                trace_id=payload.get("trace-id") or "",
                deadline_ms=deadline_ms(timeout),
            )
            with self._log_lock:
                self._invocation_logs = bytearray()
            self._write_marker(
                f"START RequestId: {request_id} Version: {self.function_version.id.qualifier}"
            )
            started = time.perf_counter()
            future = self._api.submit(invocation)
            process = self._process
            if process is None or process.poll() is not None:
                # died between the restart check and now: its exit callback
                # saw no invocation in flight, so fail this one here
                self._api.abandon(self._exit_outcome(request_id, process))
            try:
                outcome: Outcome = future.result(timeout=timeout)
            except FutureTimeout:
                outcome = self._on_timeout(request_id, timeout)
            except CancelledError:
                # stop() during the invocation (function deleted/updated, shutdown)
                outcome = Outcome(
                    is_error=True,
                    payload=error_body(
                        "Runtime.Stopped", f"RequestId: {request_id} Error: environment stopped"
                    ),
                )
            duration_ms = (time.perf_counter() - started) * 1000
            if self._output is not None:
                self._output.drain(LOG_DRAIN_SECONDS)
            self._write_marker(f"END RequestId: {request_id}")
            self._write_marker(self._report_line(request_id, duration_ms))
            with self._log_lock:
                logs = bytes(self._invocation_logs or b"").decode("utf-8", "replace")
                self._invocation_logs = None
        return InvocationResult(
            request_id=request_id,
            payload=outcome.payload,
            is_error=outcome.is_error,
            logs=logs,
        )

    def get_logs(self) -> str:
        with self._log_lock:
            return bytes(self._env_logs).decode("utf-8", "replace")

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        # Unsupported functions are not failed here: LocalStack 2026.3.0 cannot
        # delete a version whose preparation raised ("Unable to find version
        # manager"), which would also wedge CloudFormation stacks.  They become
        # Active and each invocation returns a clear error (see start()).
        problem = cls._unsupported_reason(function_version)
        if problem:
            LOG.warning("%s: %s", function_version.qualified_arn, problem)
            if function_version.config.code is None:
                return
        # unzips S3 code to LocalStack's tmp folder; nothing to do for hot-reload
        function_version.config.code.prepare_for_execution()
        bootstrap = Path(function_version.config.code.get_unzipped_code_location()) / "bootstrap"
        if not problem and not bootstrap.exists():
            # not fatal: a hot-reload folder may be filled by a later build
            LOG.warning(
                "function %s has no bootstrap at %s yet; invocations fail until it exists",
                function_version.qualified_arn,
                bootstrap,
            )

    @staticmethod
    def _unsupported_reason(function_version: FunctionVersion) -> str | None:
        if function_version.config.code is None:
            return (
                "container image functions are not supported by the local-process "
                "Lambda executor (zip or hot-reload code only)"
            )
        runtime = function_version.config.runtime or ""
        if not runtime.startswith(SUPPORTED_RUNTIME_PREFIX):
            # the host has no Lambda base images: only custom runtimes (a
            # bootstrap executable) can run
            return (
                f"runtime {runtime} is not supported by the local-process Lambda executor "
                "(use provided.al2023 / provided.al2 with a bootstrap executable)"
            )
        return None

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        # LocalStack deletes the unzipped code itself; processes are stopped
        # through stop() of each environment
        pass

    @classmethod
    def validate_environment(cls) -> bool:
        return True

    # --- process management --------------------------------------------------------------

    def _build_env(self, env_vars: dict[str, str]) -> dict[str, str]:
        names = list(BASE_PASS_ENV)
        names += [n.strip() for n in os.environ.get("LOCAL_LAMBDA_PASS_ENV", "").split(",")]
        env = {name: os.environ[name] for name in names if name and name in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.setdefault("LANG", "C.UTF-8")
        # LocalStack's variables, with the function's own Environment applied last
        env.update({key: str(value) for key, value in env_vars.items() if value is not None})
        # paths inside a Lambda sandbox that mean the code folder here
        env["LAMBDA_TASK_ROOT"] = str(self.code_dir)
        return env

    def _bootstrap_signature(self) -> tuple | None:
        try:
            st = self.bootstrap_path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _spawn_and_wait_ready(self, timeout: float) -> None:
        """Start the bootstrap and wait for its first GET /next (= init done)."""
        assert self._api is not None
        self._api.reset_for_new_process()
        bootstrap = self.bootstrap_path
        self._bootstrap_stamp = self._bootstrap_signature()
        self._write_marker(f"INIT_START Runtime: {self.function_version.config.runtime}")
        read_fd, write_fd = os.pipe()
        try:
            self._process = subprocess.Popen(
                [str(bootstrap)],
                cwd=str(self.code_dir),
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                close_fds=True,
                # own process group: a timeout kills the bootstrap and its children
                process_group=0,
            )
        except OSError as e:
            os.close(read_fd)
            os.close(write_fd)
            message = f"Error: fork/exec {bootstrap}: {e.strerror or e}"
            self._write_marker(message)
            raise StatusErrorException(
                message, payload=error_body("Runtime.InvalidEntrypoint", message)
            ) from e
        os.close(write_fd)
        self._write_pid_file(self._process.pid)
        self._output = _ProcessOutput(read_fd, self._process, self)
        LOG.debug(
            "started %s (pid %s) for %s with runtime API %s",
            bootstrap,
            self._process.pid,
            self.function_version.qualified_arn,
            self._api.address,
        )

        end = time.monotonic() + timeout
        while True:
            if self._api.ready.wait(0.02):
                return
            if self._api.init_failed.is_set():
                payload = self._api.init_error_payload
                self._kill_process()
                raise StatusErrorException("runtime reported an init error", payload=payload)
            if self._stopped.is_set():
                self._kill_process()
                raise LambdaRuntimeException("environment stopped during startup")
            if self._process.poll() is not None:
                code = self._process.returncode
                self._kill_process()
                message = f"Runtime exited with error: {self._exit_description(code)}"
                self._write_marker(message)
                raise StatusErrorException(
                    message, payload=error_body("Runtime.ExitError", message)
                )
            if time.monotonic() > end:
                self._kill_process()
                message = f"Runtime did not become ready within {timeout:.0f} seconds"
                self._write_marker(message)
                raise StatusErrorException(
                    message, payload=error_body("Runtime.InitTimeout", message)
                )

    def _restart_if_needed(self) -> None:
        """Before an invocation: bring the process back after a timeout/crash or a rebuild."""
        if self._stopped.is_set() or self._api is None:
            raise LambdaRuntimeException("environment is stopped")
        alive = self._process is not None and self._process.poll() is None
        changed = (
            self.function_version.config.code.is_hot_reloading()
            and self._bootstrap_signature() != self._bootstrap_stamp
        )
        if alive and not changed:
            return
        if changed and alive:
            LOG.info("bootstrap of %s changed on disk, restarting it", self.function_name)
        self._kill_process()
        self._spawn_and_wait_ready(timeout=config.LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT)

    def _on_timeout(self, request_id: str, timeout: float) -> Outcome:
        message = f"Task timed out after {timeout:.2f} seconds"
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        self._write_marker(f"{stamp} {request_id} {message}")
        # like Lambda: the sandbox is reset at once (SIGKILL), the next
        # invocation starts a fresh process
        self._kill_process(grace=0)
        outcome = Outcome(
            is_error=True,
            payload=error_body("Sandbox.Timedout", f"RequestId: {request_id} Error: {message}"),
        )
        self._api.abandon()
        return outcome

    def _on_process_output_closed(self, process: subprocess.Popen) -> None:
        """Output reader hit EOF: the process (and children holding its pipe) ended."""
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            return
        self._remove_pid_file(process.pid)
        if (
            self._stopped.is_set()
            or self._api is None
            or process is not self._process
            or process.pid == self._killing_pid
        ):
            return
        # the runtime died on its own: fail the invocation in flight, if any;
        # the next invocation starts a new process
        request_id = self._api.in_flight_request_id()
        if request_id is None:
            return
        self._api.abandon(self._exit_outcome(request_id, process))

    def _exit_outcome(self, request_id: str, process: subprocess.Popen | None) -> Outcome:
        code = process.poll() if process is not None else None
        message = f"RequestId: {request_id} Error: Runtime exited with error: {self._exit_description(code)}"
        self._write_marker(message)
        return Outcome(is_error=True, payload=error_body("Runtime.ExitError", message))

    @staticmethod
    def _exit_description(code: int | None) -> str:
        if code is None:
            return "unknown status"
        if code < 0:
            try:
                return f"signal: {signal.Signals(-code).name.lower().removeprefix('sig')}"
            except ValueError:
                return f"signal: {-code}"
        return f"exit status {code}"

    def _kill_process(self, grace: float = STOP_GRACE_SECONDS) -> None:
        process = self._process
        if process is None:
            return
        self._killing_pid = process.pid
        if process.poll() is None:
            steps = [(signal.SIGKILL, 5.0)]
            if grace > 0:
                steps.insert(0, (signal.SIGTERM, grace))
            for sig, wait in steps:
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        else:
            # the bootstrap is gone but children it left in its group may not be
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._output is not None:
            self._output.eof.wait(1.0)
        self._remove_pid_file(process.pid)

    # --- pid files (read by stop.sh to leave no process behind) ---------------------

    def _write_pid_file(self, pid: int) -> None:
        try:
            self._pid_dir.mkdir(parents=True, exist_ok=True)
            (self._pid_dir / str(pid)).write_text(f"{self.function_name}\n")
        except OSError as e:
            LOG.debug("cannot write pid file for %s: %s", pid, e)

    def _remove_pid_file(self, pid: int) -> None:
        try:
            (self._pid_dir / str(pid)).unlink()
        except OSError:
            pass

    # --- logs ------------------------------------------------------------------------

    def _record_output(self, data: bytes) -> None:
        self._append_logs(data)
        if self._echo_logs:
            for line in data.decode("utf-8", "replace").splitlines():
                FUNCTION_LOG.info("[%s] %s", self.function_name, line)

    def _write_marker(self, line: str) -> None:
        """Lines the platform writes into the function's log (START, END, REPORT, errors)."""
        self._append_logs(line.encode() + b"\n")

    def _append_logs(self, data: bytes) -> None:
        # called from the invoking thread (markers) and the output reader thread
        with self._log_lock:
            self._env_logs += data
            if len(self._env_logs) > MAX_ENV_LOG_BYTES:
                del self._env_logs[: len(self._env_logs) - MAX_ENV_LOG_BYTES]
            if self._invocation_logs is not None:
                self._invocation_logs += data
        try:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            prefix = f"{stamp} [{self.id[:8]}] ".encode()
            with self._log_path.open("ab") as f:
                for line in data.splitlines():
                    f.write(prefix + line + b"\n")
        except OSError as e:
            LOG.debug("cannot write %s: %s", self._log_path, e)

    def _report_line(self, request_id: str, duration_ms: float) -> str:
        memory = self.function_version.config.memory_size
        used = self._max_memory_mb()
        parts = [
            f"REPORT RequestId: {request_id}",
            f"Duration: {duration_ms:.2f} ms",
            f"Billed Duration: {max(1, int(duration_ms + 0.999))} ms",
            f"Memory Size: {memory} MB",
        ]
        if used is not None:
            parts.append(f"Max Memory Used: {used} MB")
        return "\t".join(parts)

    def _max_memory_mb(self) -> int | None:
        process = self._process
        if process is None:
            return None
        try:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return max(1, int(line.split()[1]) // 1024)
        except (OSError, ValueError, IndexError):
            pass
        return None

