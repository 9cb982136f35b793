"""An MCP client on the official MCP SDK (the `mcp` package from PyPI), driven by a test.

    python3 client.py stdio COMMAND ARGS...        # start the server (the gateway) over stdio
    python3 client.py http URL [TOKEN [PERSON]]    # reach it over Streamable HTTP

It initializes, prints {"init": ...}, then reads one JSON command a line from stdin and prints
one JSON answer a line on stdout (progress notifications as {"progress": ...} lines before
the answer):

    {"op": "list_tools"}
    {"op": "call", "tool": NAME, "args": {...}, "progress": true, "timeout": SECONDS}
    {"op": "bench", "tool": NAME, "args": {...}, "n": N}   # seconds per call
    {"op": "list_prompts"} | {"op": "get_prompt", "name": NAME, "args": {...}}
    {"op": "list_resources"} | {"op": "read_resource", "uri": URI}

A JSON-RPC error is answered as {"error": {"code": ..., "message": ...}}.
"""

import asyncio
import json
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


def emit(value):
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def texts(content):
    return [c.text for c in content if getattr(c, "text", None) is not None]


async def answer(session, command):
    op = command["op"]
    if op == "list_tools":
        tools = (await session.list_tools()).tools
        return {"tools": [{"name": t.name, "description": t.description} for t in tools]}
    if op == "call":
        async def progress(done, total, message):
            emit({"progress": done, "total": total, "message": message})

        result = await session.call_tool(
            command["tool"],
            command.get("args", {}),
            read_timeout_seconds=command.get("timeout"),
            progress_callback=progress if command.get("progress") else None,
        )
        return {
            "is_error": bool(result.is_error),
            "text": texts(result.content),
            "structured": result.structured_content,
        }
    if op == "bench":
        # Latency of n identical calls, one after another, as this client sees it.
        took = []
        for _ in range(command["n"]):
            start = time.perf_counter()
            result = await session.call_tool(command["tool"], command.get("args", {}))
            took.append(time.perf_counter() - start)
            if result.is_error:
                return {"failed": texts(result.content)}
        return {"seconds": took}
    if op == "list_prompts":
        return {"prompts": [p.name for p in (await session.list_prompts()).prompts]}
    if op == "get_prompt":
        result = await session.get_prompt(command["name"], command.get("args", {}))
        return {"messages": [m.content.text for m in result.messages if hasattr(m.content, "text")]}
    if op == "list_resources":
        return {"resources": [str(r.uri) for r in (await session.list_resources()).resources]}
    if op == "read_resource":
        result = await session.read_resource(command["uri"])
        return {"contents": [getattr(c, "text", None) for c in result.contents]}
    raise ValueError(f"unknown op {op}")


async def drive(session):
    init = await session.initialize()
    emit({"init": {"protocol_version": init.protocol_version, "server": init.server_info.name}})
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        try:
            emit(await answer(session, json.loads(line)))
        except MCPError as e:
            emit({"error": {"code": e.code, "message": e.message}})


async def main():
    mode = sys.argv[1]
    if mode == "stdio":
        params = StdioServerParameters(command=sys.argv[2], args=sys.argv[3:])
        async with stdio_client(params) as (r, w):
            async with ClientSession(r, w) as session:
                await drive(session)
    elif mode == "http":
        headers = {}
        if len(sys.argv) > 3:
            headers["Authorization"] = f"Bearer {sys.argv[3]}"
        if len(sys.argv) > 4:
            headers["X-Approvals-On-Behalf-Of"] = sys.argv[4]
        async with create_mcp_http_client(headers=headers) as http:
            async with streamable_http_client(sys.argv[2], http_client=http) as streams:
                r, w = streams[0], streams[1]
                async with ClientSession(r, w) as session:
                    await drive(session)
    else:
        raise SystemExit(f"unknown mode {mode}")


asyncio.run(main())
