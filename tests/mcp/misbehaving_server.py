"""An MCP server over stdio that misbehaves on purpose (standard library only).

    python3 misbehaving_server.py CALLS_LOG

Every tools/call it receives is appended to CALLS_LOG (one JSON line each) before it acts, so
a test can count what reached it. Its tools:

- `ok`: answers "ok".
- `crash`: exits at once, without answering.
- `hang`: never answers.
- `garbage`: writes a line that is not JSON-RPC, then never answers.
"""

import json
import sys

calls_log = sys.argv[1]


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


TOOLS = [
    {"name": n, "description": d, "inputSchema": {"type": "object"}}
    for n, d in [
        ("ok", "answers ok"),
        ("crash", "exits without answering"),
        ("hang", "never answers"),
        ("garbage", "answers with garbage"),
    ]
]

for line in sys.stdin:
    message = json.loads(line)
    method = message.get("method")
    if "id" not in message:
        continue
    if method == "initialize":
        send({
            "jsonrpc": "2.0",
            "id": message["id"],
            "result": {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "misbehaving", "version": "1"},
            },
        })
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": message["id"], "result": {"tools": TOOLS}})
    elif method == "tools/call":
        name = message["params"]["name"]
        with open(calls_log, "a") as f:
            f.write(json.dumps({"tool": name}) + "\n")
        if name == "ok":
            send({
                "jsonrpc": "2.0",
                "id": message["id"],
                "result": {"content": [{"type": "text", "text": "ok"}]},
            })
        elif name == "crash":
            sys.exit(3)
        elif name == "garbage":
            sys.stdout.write("this is not JSON-RPC {{{\n")
            sys.stdout.flush()
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": message["id"], "result": {}})
    else:
        send({
            "jsonrpc": "2.0",
            "id": message["id"],
            "error": {"code": -32601, "message": f"no method {method}"},
        })
