"""A no-op kube-scheduler extender, the floor of the HTTP-extender protocol (issue 25 item 3): benchmarks only.

`python -m bench.noop_extender --kubeconfig K --listen 127.0.0.1:PORT [--max-seconds S]` serves the four verbs
rayqueue-scheduler's configuration names, answering each as cheaply as this stack allows (asyncio streams,
byte slicing, orjson; no validation, no model of the cluster):

* ``/filter``: every node it was sent passes: the request's ``NodeNames`` array is sliced out of the body
  unparsed and echoed, with empty ``FailedNodes`` and ``FailedAndUnresolvableNodes`` (Go's encoder writes
  ``NodeNames`` after ``Pod``, and a node name holds neither a quote nor a bracket);
* ``/prioritize``: a score of 0 for every node sent (the same shape as rayqueue's answer, one entry a node),
  made by one bytes.replace over the same slice;
* ``/preempt``: the victims it was sent, echoed (as UIDs);
* ``/bind``: POSTs the Binding to the apiserver as rayqueue's extender does (`extender.scheduling`,
  ``_bind_one``: the same body, path and `kubeio.client.KubeClient`), answering ``{"Error": ""}`` or the error.

``GET /readyz`` answers 200. Listens where told (127.0.0.1 in the bench); stops on SIGTERM/SIGINT or after
``--max-seconds`` (default 3600), whichever is first. Requests on one connection are answered in order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any, Final

import aiohttp
import orjson

from kubeio.client import ApiError, KubeClient, load_configuration

__all__ = ["filter_answer", "main", "preempt_answer", "prioritize_answer"]

NAMES_KEY: Final = b'"NodeNames":'
FILTER_TAIL: Final = b',"FailedNodes":{},"FailedAndUnresolvableNodes":{},"Error":""}'
MAX_BODY: Final = 64 << 20


def node_names(body: bytes) -> bytes:
    """The JSON array after the last ``"NodeNames":`` (``[]`` when it is absent or null)."""
    at = body.rfind(NAMES_KEY)
    if at < 0:
        return b"[]"
    start = at + len(NAMES_KEY)
    if body.startswith(b"null", start):
        return b"[]"
    end = body.find(b"]", start)
    return body[start:end + 1] if end > 0 else b"[]"


def filter_answer(body: bytes) -> bytes:
    return b'{"NodeNames":' + node_names(body) + FILTER_TAIL


def prioritize_answer(body: bytes) -> bytes:
    names = node_names(body)
    if names == b"[]":
        return names
    return b'[{"Host":' + names[1:-1].replace(b'","', b'","Score":0},{"Host":"') + b',"Score":0}]'


def preempt_answer(body: bytes) -> bytes:
    args = orjson.loads(body)
    meta = args.get("NodeNameToMetaVictims")
    if meta is None:
        meta = {node: {"Pods": [{"UID": (p.get("metadata") or {}).get("uid", "")} for p in v.get("Pods") or []],
                       "NumPDBViolations": v.get("NumPDBViolations", 0)}
                for node, v in (args.get("NodeNameToVictims") or {}).items()}
    return orjson.dumps({"NodeNameToMetaVictims": meta})


async def bind_answer(client: KubeClient, body: bytes) -> bytes:
    args: dict[str, Any] = orjson.loads(body)
    ns, name = args.get("PodNamespace", ""), args.get("PodName", "")
    binding = {"apiVersion": "v1", "kind": "Binding",
               "metadata": {"name": name, "namespace": ns, "uid": args.get("PodUID", "")},
               "target": {"apiVersion": "v1", "kind": "Node", "name": args.get("Node", "")}}
    try:
        await client.create(f"/api/v1/namespaces/{ns}/pods/{name}/binding", binding)
    except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        return orjson.dumps({"Error": f"binding {ns}/{name} failed: {exc}"})
    return b'{"Error":""}'


def response(status: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


async def read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    """The request body after `head` (the request line and headers): Content-Length or chunked."""
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.find(b"\r\n", at + 2)
        length = int(head[at + 17:end].strip())
        if length > MAX_BODY:
            raise ValueError(f"body of {length} bytes")
        return await reader.readexactly(length)
    if b"\r\ntransfer-encoding: chunked" not in lower:
        return b""
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers from Go's client: the blank line
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


class Server:
    """The four verbs over HTTP/1.1 keep-alive; one request at a time per connection."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.served = 0

    async def answer(self, path: bytes, body: bytes) -> bytes:
        if path.endswith(b"/filter"):
            return response(b"200 OK", filter_answer(body))
        if path.endswith(b"/prioritize"):
            return response(b"200 OK", prioritize_answer(body))
        if path.endswith(b"/bind"):
            return response(b"200 OK", await bind_answer(self.client, body))
        if path.endswith(b"/preempt"):
            return response(b"200 OK", preempt_answer(body))
        if path.endswith(b"/readyz"):
            return response(b"200 OK", b"{}")
        return response(b"404 Not Found", b'{"Error":"no such verb"}')

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line_end = head.find(b"\r\n")
                parts = head[:line_end].split(b" ")
                try:
                    body = await read_body(reader, head)
                    out = await self.answer(parts[1] if len(parts) > 1 else b"/", body)
                except (ValueError, orjson.JSONDecodeError) as exc:
                    out = response(b"400 Bad Request", orjson.dumps({"Error": str(exc)}))
                writer.write(out)
                await writer.drain()
                self.served += 1
                if b"\r\nconnection: close" in head.lower():
                    break
        writer.close()


async def serve(kubeconfig: str, host: str, port: int, max_seconds: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with KubeClient(load_configuration(kubeconfig)) as client:
        server = Server(client)
        listener = await asyncio.start_server(server.connection, host, port, limit=MAX_BODY, backlog=256)
        print(f"noop extender listening on {host}:{port}, stopping after {max_seconds:.0f} s", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max_seconds)
        listener.close()
        print(f"noop extender stopping: {server.served} requests answered", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.noop_extender", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--listen", default="127.0.0.1:8889", help="host:port (default %(default)s)")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this long (default %(default)s)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    host, _, port = args.listen.rpartition(":")
    asyncio.run(serve(args.kubeconfig, host or "127.0.0.1", int(port), args.max_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
