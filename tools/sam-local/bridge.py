#!/usr/bin/env python3
"""A TCP forwarder: LISTEN_HOST:LISTEN_PORT -> TARGET_HOST:TARGET_PORT.

    bridge.py 172.29.0.1 4566 127.0.0.1 4566

sam-local.sh starts it so that functions in SAM's containers reach LocalStack, which
listens on loopback only, at the Docker bridge's gateway address (an address of this
machine that only the bridge's containers and this host can reach). Standard library
only; stops on SIGTERM.
"""

import asyncio
import signal
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except OSError:
            pass


async def main(listen_host, listen_port, target_host, target_port):
    async def serve(client_reader, client_writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(target_host, target_port)
        except OSError as e:
            print(f"bridge: cannot reach {target_host}:{target_port}: {e}", file=sys.stderr, flush=True)
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    server = await asyncio.start_server(serve, listen_host, listen_port, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"bridge: {listen_host}:{listen_port} -> {target_host}:{target_port}", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
