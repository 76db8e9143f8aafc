#!/usr/bin/env python3
"""Byte-for-byte TCP forwarder with pgfed's command-line contract, to calibrate the harness.

    PGFED_LISTEN=127.0.0.1:PORT PGFED_UPSTREAM=postgres://HOST:PORT/DB conformance/tcp-forwarder.py

Every accepted connection is relayed unchanged to HOST:PORT (the database part of the URL is
ignored: the client's startup packet goes through as is). It does not parse the protocol, so
any test that fails through it but not directly is an artifact of "one more TCP hop" (client
address, timing), not of protocol handling:

    scripts/conformance-pg-regress --pgfed conformance/tcp-forwarder.py
    scripts/conformance-tokio-postgres --pgfed conformance/tcp-forwarder.py

Serves until SIGTERM/SIGINT.
"""
import asyncio
import os
import signal
import sys
from urllib.parse import urlsplit


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main() -> None:
    listen = os.environ["PGFED_LISTEN"]
    upstream = urlsplit(os.environ["PGFED_UPSTREAM"])
    lhost, lport = listen.rsplit(":", 1)
    uhost, uport = upstream.hostname or "127.0.0.1", upstream.port or 5432

    async def handle(creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            ureader, uwriter = await asyncio.open_connection(uhost, uport)
        except OSError as e:
            print(f"tcp-forwarder: upstream {uhost}:{uport}: {e}", file=sys.stderr)
            cwriter.close()
            return
        await asyncio.gather(pipe(creader, uwriter), pipe(ureader, cwriter))

    server = await asyncio.start_server(handle, lhost, int(lport))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"tcp-forwarder: {listen} -> {uhost}:{uport}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
