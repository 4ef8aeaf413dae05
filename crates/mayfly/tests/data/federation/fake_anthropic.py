"""A stand-in for the Claude API's workload identity federation, as
documented: POST /v1/oauth/token takes an RFC 7523 jwt-bearer JSON body
(assertion, federation_rule_id, organization_id, service_account_id) and
answers with a short-lived access token; POST /v1/messages takes that token
as a Bearer. Like Anthropic, it trusts an OpenID issuer by discovery and
verifies the assertion with joserfc (RS256, iss, aud, exp).

    python3 fake_anthropic.py ISSUER ORG RULE ACCOUNT ALLOWED_SUB LOG
prints its port, then serves until killed; LOG gets one JSON line per call.
"""

import json
import secrets
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from joserfc import jwt
from joserfc.jwk import KeySet

ISSUER, ORG, RULE, ACCOUNT, ALLOWED_SUB, LOG = sys.argv[1:7]
TOKENS = set()


def verify(assertion):
    with urllib.request.urlopen(ISSUER + "/.well-known/openid-configuration") as r:
        config = json.load(r)
    with urllib.request.urlopen(config["jwks_uri"]) as r:
        keys = KeySet.import_key_set(json.load(r))
    token = jwt.decode(assertion, keys, algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": "https://api.anthropic.com"},
        exp={"essential": True},
    ).validate(token.claims)
    return token.claims


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if self.path == "/v1/oauth/token":
            if body.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
                return self.answer(400, {"error": "unsupported_grant_type"})
            if (body.get("organization_id"), body.get("federation_rule_id"), body.get("service_account_id")) != (ORG, RULE, ACCOUNT):
                return self.answer(401, {"error": "invalid_grant", "error_description": "no such rule"})
            try:
                claims = verify(body.get("assertion", ""))
            except Exception as e:  # noqa: BLE001: any failure is invalid_grant
                return self.answer(401, {"error": "invalid_grant", "error_description": f"{type(e).__name__}: {e}"})
            if claims["sub"] != ALLOWED_SUB:
                return self.answer(401, {"error": "invalid_grant", "error_description": "the rule does not match"})
            token = "sk-ant-oat01-" + secrets.token_urlsafe(24)
            TOKENS.add(token)
            with open(LOG, "a") as log:
                log.write(json.dumps({"sub": claims["sub"], "task": claims.get("task")}) + "\n")
            return self.answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": 600})
        if self.path == "/v1/messages":
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in TOKENS or self.headers.get("x-api-key"):
                return self.answer(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid token"}})
            return self.answer(200, {
                "id": "msg_mayfly", "type": "message", "role": "assistant", "model": body.get("model", "m"),
                "content": [{"type": "text", "text": "Hello through federation"}],
                "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 3},
            })
        return self.answer(404, {"error": "not_found"})

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
