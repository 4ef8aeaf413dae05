"""An MCP client as Claude Desktop or Cursor runs a configured server: it
reads the client's configuration file, starts the server exactly as the
entry says (command, args, env over the SDK's default environment), lists
its tools and calls one. Prints one JSON object.

Usage: stdio_client.py CONFIG SERVERS_KEY NAME TOOL ARGUMENTS_JSON
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

config, section, name, tool, arguments = sys.argv[1:6]
with open(config) as f:
    entry = json.load(f)[section][name]
params = StdioServerParameters(
    command=entry["command"], args=entry.get("args", []), env=entry.get("env")
)


async def main():
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            try:
                result = await session.call_tool(tool, json.loads(arguments))
                text = "".join(getattr(c, "text", "") for c in result.content)
                failed = getattr(result, "is_error", getattr(result, "isError", False))
            except Exception as e:  # the SDK's exception for a JSON-RPC error
                text, failed = f"{type(e).__name__}: {e}", True
            print(json.dumps({
                "tools": sorted(t.name for t in tools.tools),
                "result": text,
                "error": bool(failed),
            }))


asyncio.run(main())
