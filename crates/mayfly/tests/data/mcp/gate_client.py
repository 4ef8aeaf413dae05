"""The official MCP Python SDK's stdio client, starting a server the way an
MCP client's configuration says (command, args, env), then listing tools
and calling two. Prints one JSON object: the tools listed, each call's text
or the error the client raised.

Usage: gate_client.py ENTRY_JSON   ({"command": ..., "args": [...], "env": {...}})
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

entry = json.loads(sys.argv[1])
params = StdioServerParameters(command=entry["command"], args=entry["args"], env=entry.get("env"))


async def call(session, name, arguments):
    try:
        result = await session.call_tool(name, arguments)
        return {"text": "".join(getattr(c, "text", "") for c in result.content)}
    except Exception as e:  # the client's own exception for a JSON-RPC error
        return {"error": f"{type(e).__name__}: {e}"}


async def main():
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            out = {"tools": sorted(t.name for t in tools.tools)}
            out["search_issues"] = await call(session, "search_issues", {"query": "bug"})
            out["delete_repository"] = await call(session, "delete_repository", {"name": "web"})
            out["search_again"] = await call(session, "search_issues", {"query": "flaky"})
            print(json.dumps(out))


asyncio.run(main())
