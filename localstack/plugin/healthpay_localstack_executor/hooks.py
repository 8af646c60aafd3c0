"""Start hook: hand out helper-process ports from a fixed loopback range.

LocalStack starts DynamoDB Local (Java) and kinesis-mock (Node) on ports it
picks with ``localstack.utils.net.get_free_tcp_port``, which asks the kernel for
a random ephemeral port.  Random ports are hard to firewall, to document and to
find in ``ss`` output, so when ``LOCAL_PORT_RANGE=<low>-<high>`` is set this hook
replaces the helper with one that returns the first port in that range that
can be bound on 127.0.0.1 and was not handed out recently.

The port only says *where* the helpers listen; making them listen on loopback
*only* is done by the Java agent (DynamoDB Local) and the Node preload
(kinesis-mock) that start.sh wires in.

The same hook moves S3's object store, which LocalStack hard-codes to
``/tmp/localstack-s3-storage``, to ``LOCAL_S3_STORAGE_DIR`` when that is set,
so that everything LocalStack writes stays in one folder.
"""

import importlib.abc
import importlib.util
import logging
import os
import socket
import sys
import threading
import time

from localstack.runtime import hooks

LOG = logging.getLogger(__name__)

RANGE_ENV = "LOCAL_PORT_RANGE"
# a port handed out is kept back this long, so that two callers asking in
# quick succession (e.g. kinesis-mock's plain and TLS ports) never get the
# same one before the first has been bound
RESERVE_SECONDS = 30.0

_lock = threading.Lock()
_handed_out: dict[int, float] = {}


def _parse_range(spec: str) -> tuple[int, int]:
    low, _, high = spec.partition("-")
    low_port, high_port = int(low), int(high or low)
    if not 0 < low_port <= high_port < 65536:
        raise ValueError(f"invalid port range {spec!r}")
    return low_port, high_port


def _bindable_on_loopback(port: int) -> bool:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # servers set SO_REUSEADDR, so a port with only TIME_WAIT leftovers is
        # usable for them; a port with a live listener still fails here
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def make_port_allocator(low: int, high: int):
    def get_free_tcp_port(blocklist: list[int] | None = None) -> int:
        blocked = set(blocklist or [])
        with _lock:
            now = time.monotonic()
            for port in range(low, high + 1):
                if port in blocked:
                    continue
                if now - _handed_out.get(port, -RESERVE_SECONDS) < RESERVE_SECONDS:
                    continue
                if _bindable_on_loopback(port):
                    _handed_out[port] = now
                    return port
        raise Exception(f"no free TCP port left in {RANGE_ENV}={low}-{high}")

    get_free_tcp_port.healthpay_patched = True
    return get_free_tcp_port


def install_port_patch(spec: str) -> None:
    from localstack.utils import net

    original = net.get_free_tcp_port
    if getattr(original, "healthpay_patched", False):
        return
    low, high = _parse_range(spec)
    patched = make_port_allocator(low, high)
    net.get_free_tcp_port = patched
    # modules that did `from localstack.utils.net import get_free_tcp_port`
    # (localstack.utils.common re-exports it) hold their own reference
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if namespace and namespace.get("get_free_tcp_port") is original:
            namespace["get_free_tcp_port"] = patched
    LOG.info("helper processes get ports from 127.0.0.1:%s-%s", low, high)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a callback right after one module has been executed.

    Lets the hook adjust a module-level constant without importing that
    (large) module at start-up, before anything used it.
    """

    def __init__(self, name: str, callback):
        self.name = name
        self.callback = callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original_exec = loader.exec_module
        callback = self.callback

        def exec_module(module):
            original_exec(module)
            callback(module)

        loader.exec_module = exec_module
        return spec


def redirect_s3_storage(directory: str) -> None:
    def patch(module):
        module.DEFAULT_S3_TMP_DIR = directory
        LOG.debug("S3 object store in %s", directory)

    name = "localstack.services.s3.provider"
    if name in sys.modules:
        patch(sys.modules[name])
    else:
        sys.meta_path.insert(0, _AfterImport(name, patch))


@hooks.on_infra_start(priority=100)
def healthpay_loopback_ports():
    spec = os.environ.get(RANGE_ENV, "").strip()
    if spec:
        install_port_patch(spec)
    s3_dir = os.environ.get("LOCAL_S3_STORAGE_DIR", "").strip()
    if s3_dir:
        redirect_s3_storage(s3_dir)
