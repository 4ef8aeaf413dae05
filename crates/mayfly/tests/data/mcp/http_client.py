"""The official MCP Python SDK's streamable-HTTP client through Mayfly's MCP
gate, with a Mayfly access token: lists tools and calls two. Prints one
JSON object with what it saw.

Usage: http_client.py URL TOKEN
"""

import asyncio
import json
import sys

from mcp import ClientSession

url, token = sys.argv[1], sys.argv[2]
headers = {"Authorization": f"Bearer {token}"}


def transport():
    try:  # mcp 2.x
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        return streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers))
    except ImportError:  # mcp 1.x
        from mcp.client.streamable_http import streamablehttp_client

        return streamablehttp_client(url, headers=headers)


async def call(session, name, arguments):
    try:
        result = await session.call_tool(name, arguments)
        return {"text": "".join(getattr(c, "text", "") for c in result.content)}
    except Exception as e:  # the client's own exception for a JSON-RPC error
        return {"error": f"{type(e).__name__}: {e}"}


async def main():
    async with transport() as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            out = {"tools": sorted(t.name for t in tools.tools)}
            out["search_issues"] = await call(session, "search_issues", {"query": "bug"})
            out["delete_repository"] = await call(session, "delete_repository", {"name": "web"})
            print(json.dumps(out))


asyncio.run(main())
