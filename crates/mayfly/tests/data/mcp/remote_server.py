"""A remote MCP server that wants an API key, built with the official MCP
Python SDK: the issues server's tools over streamable HTTP at
http://127.0.0.1:PORT/mcp, or over the 2024-11-05 HTTP+SSE transport at
/sse with `sse`. Any request without `Authorization: Bearer KEY` (or
`?api_key=KEY`) gets 401.
Each request is logged as one JSON line: method, path, whether the key was
right, whether a Mayfly relay key reached it, and its X-MCP-Toolsets header.

Usage: remote_server.py PORT KEY LOG [sse]
"""

import json
import sys
from urllib.parse import parse_qs

import uvicorn

from issues_server import app

port, key, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
legacy = sys.argv[4:5] == ["sse"]


class RequireKey:
    """ASGI middleware: the key, or 401."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode())
        ok = headers.get("authorization") == f"Bearer {key}" or query.get("api_key") == [key]
        with open(log, "a") as f:
            f.write(json.dumps({
                "method": scope["method"],
                "path": scope["path"],
                "key_ok": ok,
                "relay_key_seen": any("mayfly-relay" in v for v in headers.values())
                or "mayfly-relay" in scope.get("query_string", b"").decode(),
                "toolsets": headers.get("x-mcp-toolsets"),
            }) + "\n")
        if not ok:
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"error": "invalid key"}'})
            return
        await self.inner(scope, receive, send)


inner = app.sse_app() if legacy else app.streamable_http_app()
uvicorn.run(RequireKey(inner), host="127.0.0.1", port=port, log_level="warning")
