"""A local stand-in for the OpenAI and Anthropic APIs, over TLS.

It speaks the parts of their HTTP APIs the official SDKs use for a chat
call (OpenAI: POST /v1/chat/completions; Anthropic: POST /v1/messages),
plain and streamed as server-sent events in each provider's event format.
It accepts only the real keys it is given, and records for each request
which key it carried (never the key itself) in a JSON-lines log.

usage: fake_provider_api.py CERT KEY LOG OPENAI_KEY ANTHROPIC_KEY
Prints the port it listens on (127.0.0.1), then serves until killed.
"""

import json
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CERT, KEY, LOG, OPENAI_KEY, ANTHROPIC_KEY = sys.argv[1:6]


def record(entry):
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_events(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def event(self, text):
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_events(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        headers = {k.lower(): v for k, v in self.headers.items()}
        everything = json.dumps(headers)
        if self.path.startswith("/v1/chat/completions"):
            ok = headers.get("authorization") == "Bearer " + OPENAI_KEY
            provider = "openai"
        elif self.path.startswith("/v1/messages"):
            ok = headers.get("x-api-key") == ANTHROPIC_KEY
            provider = "anthropic"
        else:
            self.send_json(404, {"error": {"message": "no such path"}})
            return
        record({
            "provider": provider,
            "path": self.path,
            "real_key": ok,
            "stream": bool(body.get("stream")),
            # What must never arrive here: a Mayfly token or the relay's key.
            "saw_mayfly_credential": "mayfly-relay-" in everything or "eyJ" in everything,
        })
        if not ok:
            self.send_json(401, {"error": {"type": "authentication_error", "message": "invalid key"}})
            return
        if provider == "openai":
            self.openai(body)
        else:
            self.anthropic(body)

    def openai(self, body):
        words = ["Hello", " from", " the", " real", " key"]
        if not body.get("stream"):
            self.send_json(200, {
                "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "gpt-4o-mini"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "".join(words)}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
            })
            return
        self.start_events()
        for word in words:
            chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": body.get("model", "gpt-4o-mini"),
                     "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            self.event("data: " + json.dumps(chunk) + "\n\n")
            time.sleep(0.05)
        self.event("data: [DONE]\n\n")
        self.end_events()

    def anthropic(self, body):
        words = ["Hello", " from", " Claude's", " real", " key"]
        message = {"id": "msg_1", "type": "message", "role": "assistant",
                   "model": body.get("model", "claude-sonnet-4-5"), "content": [],
                   "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 3, "output_tokens": 0}}
        if not body.get("stream"):
            message["content"] = [{"type": "text", "text": "".join(words)}]
            message["stop_reason"] = "end_turn"
            message["usage"]["output_tokens"] = 5
            self.send_json(200, message)
            return
        self.start_events()

        def send(kind, data):
            data["type"] = kind
            self.event("event: %s\ndata: %s\n\n" % (kind, json.dumps(data)))

        send("message_start", {"message": message})
        send("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        for word in words:
            send("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": word}})
            time.sleep(0.05)
        send("content_block_stop", {"index": 0})
        send("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": 5}})
        send("message_stop", {})
        self.end_events()


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
