"""An MCP server built with the official MCP Python SDK: two tools of a
code host, one harmless and one destructive. Speaks MCP on stdio, or on
streamable HTTP at http://127.0.0.1:PORT/mcp with `http PORT`."""

try:  # mcp 2.x
    from mcp.server.mcpserver import MCPServer as Server
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as Server

app = Server("github")


@app.tool()
def search_issues(query: str) -> str:
    """Search issues."""
    return f"3 issues match {query}"


@app.tool()
def delete_repository(name: str) -> str:
    """Delete a repository."""
    return f"deleted {name}"


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["http"]:
        app.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        app.run()
