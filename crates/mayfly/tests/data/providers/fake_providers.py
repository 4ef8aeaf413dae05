"""Local stand-ins for the providers' identity endpoints, as each provider
documents them, for `mayfly scan --validate` tests.

One HTTP server on 127.0.0.1 answers for every provider: the first path
segment names the provider's host (`/api.github.com/user`), so a test points
each origin at it with `--provider-endpoint https://api.github.com=http://127.0.0.1:PORT/api.github.com`.

Each endpoint reads the credential where that provider expects it (header
and scheme, basic auth, query parameter, path) and answers as documented:
live for a credential in the `live` list, the provider's refusal otherwise.
Credentials in `rate_limited`, `slow`, `garbage`, `server_error` and `flaky`
lists exercise the failure paths. Every request is logged (host, credential,
start and end time) so the test can check that each secret was asked once
and that per-host limits held.

Usage: fake_providers.py CONFIG.json   (prints the port on stdout)
"""

import base64
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

# A marker in every body: it must never reach Mayfly's output.
MARKER = "provider-body-marker-7f3a"


def bearer(prefix="Bearer "):
    def read(handler, _query, _path):
        value = handler.headers.get("Authorization", "")
        return value[len(prefix):] if value.startswith(prefix) else None
    return read


def header(name, prefix=""):
    def read(handler, _query, _path):
        value = handler.headers.get(name)
        if value is None or not value.startswith(prefix):
            return None
        return value[len(prefix):]
    return read


def basic(user):
    def read(handler, _query, _path):
        value = handler.headers.get("Authorization", "")
        if not value.startswith("Basic "):
            return None
        try:
            decoded = base64.b64decode(value[6:]).decode()
        except Exception:
            return None
        given_user, _, password = decoded.partition(":")
        return password if given_user == user else None
    return read


def query(name):
    def read(_handler, q, _path):
        return q.get(name, [None])[0]
    return read


def path_token(prefix, suffix):
    def read(_handler, _query, path):
        if path.startswith(prefix) and path.endswith(suffix):
            return path[len(prefix):len(path) - len(suffix)]
        return None
    return read


def requires(name, value=None):
    """A header the provider requires besides the credential."""
    return (name, value)


OK = {"ok": True}
# (host, method, path) -> (credential reader, live body, dead status, dead body, required headers, live status)
ROUTES = {
    ("api.github.com", "GET", "/user"): (header("Authorization", "token "), {"login": "octocat"}, 401, {"message": "Bad credentials"}, [requires("Accept", "application/vnd.github+json")], 200),
    ("gitlab.com", "GET", "/api/v4/personal_access_tokens/self"): (header("PRIVATE-TOKEN"), {"id": 4, "active": True}, 401, {"message": "401 Unauthorized"}, [], 200),
    ("api.openai.com", "GET", "/v1/models"): (bearer(), {"object": "list", "data": []}, 401, {"error": {"code": "invalid_api_key"}}, [], 200),
    ("api.openai.com", "GET", "/v1/organization/admin_api_keys"): (bearer(), {"object": "list", "data": []}, 401, {"error": {"code": "invalid_api_key"}}, [], 200),
    ("api.anthropic.com", "GET", "/v1/models"): (header("x-api-key"), {"data": []}, 401, {"type": "error", "error": {"type": "authentication_error"}}, [requires("anthropic-version")], 200),
    ("generativelanguage.googleapis.com", "GET", "/v1beta/models"): (query("key"), {"models": []}, 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "details": [{"reason": "API_KEY_INVALID"}]}}, [], 200),
    ("api.mistral.ai", "GET", "/v1/models"): (bearer(), {"data": []}, 401, {"message": "Unauthorized"}, [], 200),
    ("api.cohere.com", "POST", "/v1/check-api-key"): (bearer(), {"valid": True, "organization_id": "o"}, 401, {"message": "invalid api token"}, [], 200),
    ("api.groq.com", "GET", "/openai/v1/models"): (bearer(), {"data": []}, 401, {"error": {"code": "invalid_api_key"}}, [], 200),
    ("huggingface.co", "GET", "/api/whoami-v2"): (bearer(), {"type": "user", "name": "u"}, 401, {"error": "Invalid credentials in Authorization header"}, [], 200),
    ("api.replicate.com", "GET", "/v1/account"): (bearer(), {"type": "user", "username": "u"}, 401, {"detail": "Invalid token."}, [], 200),
    ("api.x.ai", "GET", "/v1/api-key"): (bearer(), {"api_key_id": "k", "api_key_blocked": False}, 400, {"error": "Incorrect API key provided"}, [], 200),
    ("api.deepseek.com", "GET", "/user/balance"): (bearer(), {"is_available": True}, 401, {"error": {"type": "authentication_error"}}, [], 200),
    ("api.together.xyz", "GET", "/v1/models"): (bearer(), [], 401, {"error": {"code": "invalid_api_key"}}, [], 200),
    ("api.fireworks.ai", "GET", "/inference/v1/models"): (bearer(), {"data": []}, 401, {"error": "unauthorized"}, [], 200),
    ("api.elevenlabs.io", "GET", "/v1/user"): (header("xi-api-key"), {"user_id": "u"}, 401, {"detail": {"status": "invalid_api_key"}}, [], 200),
    ("openrouter.ai", "GET", "/api/v1/key"): (bearer(), {"data": {"label": "k"}}, 401, {"error": {"code": 401}}, [], 200),
    ("api.pinecone.io", "GET", "/indexes"): (header("Api-Key"), {"indexes": []}, 401, {"error": {"code": "UNAUTHENTICATED"}}, [], 200),
    ("api.digitalocean.com", "GET", "/v2/account"): (bearer(), {"account": {"status": "active"}}, 401, {"id": "Unauthorized"}, [], 200),
    ("api.cloudflare.com", "GET", "/client/v4/user/tokens/verify"): (bearer(), {"success": True, "result": {"status": "active"}}, 401, {"success": False, "errors": [{"code": 1000}]}, [], 200),
    ("api.heroku.com", "GET", "/account"): (bearer(), {"email": "u@example.invalid"}, 401, {"id": "unauthorized"}, [requires("Accept", "application/vnd.heroku+json; version=3")], 200),
    ("api.vercel.com", "GET", "/v2/user"): (bearer(), {"user": {"id": "u"}}, 403, {"error": {"code": "forbidden", "invalidToken": True}}, [], 200),
    ("api.netlify.com", "GET", "/api/v1/user"): (bearer(), {"id": "u"}, 401, {"code": 401, "message": "Access Denied"}, [], 200),
    ("api.supabase.com", "GET", "/v1/projects"): (bearer(), [], 401, {"message": "Unauthorized"}, [], 200),
    ("registry.npmjs.org", "GET", "/-/whoami"): (bearer(), {"username": "u"}, 401, {"error": "Unauthorized"}, [], 200),
    ("slack.com", "POST", "/api/auth.test"): (bearer(), {"ok": True, "team": "t"}, 200, {"ok": False, "error": "invalid_auth"}, [], 200),
    ("discord.com", "GET", "/api/v10/users/@me"): (header("Authorization", "Bot "), {"id": "1", "bot": True}, 401, {"message": "401: Unauthorized", "code": 0}, [], 200),
    ("api.telegram.org", "GET", "TOKEN_IN_PATH"): (path_token("/bot", "/getMe"), {"ok": True, "result": {"is_bot": True}}, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}, [], 200),
    ("api.stripe.com", "GET", "/v1/balance"): (bearer(), {"object": "balance"}, 401, {"error": {"type": "invalid_request_error"}}, [], 200),
    ("api.sendgrid.com", "GET", "/v3/scopes"): (bearer(), {"scopes": []}, 401, {"errors": [{"message": "authorization required"}]}, [], 200),
    ("api.mailgun.net", "GET", "/v3/domains"): (basic("api"), {"items": []}, 401, {"message": "Invalid private key"}, [], 200),
    ("api.notion.com", "GET", "/v1/users/me"): (bearer(), {"object": "user", "type": "bot"}, 401, {"object": "error", "code": "unauthorized"}, [requires("Notion-Version")], 200),
    ("api.linear.app", "POST", "/graphql"): (header("Authorization"), {"data": {"viewer": {"id": "u"}}}, 400, {"errors": [{"message": "Authentication required, not authenticated"}]}, [], 200),
    ("api.figma.com", "GET", "/v1/me"): (header("X-Figma-Token"), {"id": "u"}, 403, {"status": 403, "err": "Invalid token"}, [], 200),
    ("api.getpostman.com", "GET", "/me"): (header("X-Api-Key"), {"user": {"id": 1}}, 401, {"error": {"name": "AuthenticationError"}}, [], 200),
    ("api.datadoghq.com", "GET", "/api/v1/validate"): (header("DD-API-KEY"), {"valid": True}, 403, {"errors": ["Forbidden"]}, [], 200),
    ("api.pagerduty.com", "GET", "/abilities"): (header("Authorization", "Token token="), {"abilities": []}, 401, {"error": {"code": 2006}}, [], 200),
    ("api.doppler.com", "GET", "/v3/me"): (bearer(), {"workplace": {"name": "w"}}, 401, {"messages": ["Invalid Auth token"], "success": False}, [], 200),
    ("app.terraform.io", "GET", "/api/v2/account/details"): (bearer(), {"data": {"id": "user-1"}}, 401, {"errors": [{"status": "401", "title": "unauthorized"}]}, [], 200),
    ("api.pulumi.com", "GET", "/api/user"): (header("Authorization", "token "), {"githubLogin": "u"}, 401, {"code": 401, "message": "Unauthorized: No credentials provided or are invalid."}, [], 200),
}


def sigv4_check(handler, host, path, body, keys):
    """AWS Signature Version 4, as STS checks it: (key id, verdict) where
    verdict is None for a good signature, else the AWS error code."""
    auth = handler.headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return None, "MissingAuthenticationToken"
    fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    key_id, date, region, service, _ = fields["Credential"].split("/")
    signed = fields["SignedHeaders"].split(";")
    amz_date = handler.headers.get("X-Amz-Date", "")
    if key_id not in keys:
        return key_id, "InvalidClientTokenId"
    values = {"host": host}
    for name in signed:
        if name != "host":
            values[name] = handler.headers.get(name, "")
    canonical = "\n".join([
        handler.command, path, "",
        "".join(f"{n}:{values[n].strip()}\n" for n in signed),
        ";".join(signed), hashlib.sha256(body).hexdigest(),
    ])
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + keys[key_id]).encode()
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    return key_id, None if hmac.compare_digest(expected, fields["Signature"]) else "SignatureDoesNotMatch"


def token_id(credential):
    return hashlib.sha256(credential.encode()).hexdigest()[:32]


def revoke_route(fake, handler, host, method, path, query, body):
    """The documented revocation endpoints: (credential, status, body), or
    None when the request is not one of them. A revoked credential stops
    being live for every endpoint."""
    auth = handler.headers.get("Authorization", "")
    bearer_token = auth[7:] if auth.startswith("Bearer ") else None
    form = parse_qs(body.decode(errors="replace"))

    def revoke(credential, ok_status, ok_body, dead_status, dead_body, check=True):
        if credential is not None and credential in fake.config.get("deny_revoke", []):
            return credential, 403, {"error": "insufficient scope", "marker": MARKER}
        if credential is not None and check and fake.is_live(credential):
            fake.revoked.add(credential)
            return credential, ok_status, ok_body
        return credential, dead_status, dead_body

    if (host, method, path) == ("api.github.com", "POST", "/credentials/revoke"):
        strings = json.loads(body or b"{}").get("credential_strings", [])
        for c in strings:
            if fake.is_live(c):
                fake.revoked.add(c)
        return (strings[0] if strings else None), 202, {}
    if (host, method, path) == ("gitlab.com", "DELETE", "/api/v4/personal_access_tokens/self"):
        return revoke(handler.headers.get("PRIVATE-TOKEN"), 204, b"", 401, {"message": "401 Unauthorized"})
    if (host, method, path) == ("gitlab.com", "DELETE", "/api/v4/runners"):
        return revoke(query.get("token", [None])[0], 204, b"", 403, {"message": "403 Forbidden"})
    if (host, method, path) == ("slack.com", "POST", "/api/auth.revoke"):
        return revoke(bearer_token, 200, {"ok": True, "revoked": True}, 200, {"ok": False, "error": "invalid_auth"})
    if (host, method, path) == ("api.doppler.com", "POST", "/v3/auth/revoke"):
        given = json.loads(body or b"{}").get("token")
        return revoke(given, 200, {"success": True}, 401, {"success": False}, check=given == bearer_token)
    if (host, method, path) == ("api.vercel.com", "DELETE", "/v3/user/tokens/current"):
        return revoke(bearer_token, 200, {"tokenId": "t"}, 403, {"error": {"code": "forbidden", "invalidToken": True}})
    if (host, method, path) == ("cloud.digitalocean.com", "POST", "/v1/oauth/revoke"):
        given = form.get("token", [None])[0]
        return revoke(given, 200, {}, 401, {"id": "unauthorized"}, check=given == bearer_token)
    if host == "api.sendgrid.com" and method == "DELETE" and path.startswith("/v3/api_keys/"):
        key_id = path.rsplit("/", 1)[1]
        ok = bearer_token is not None and bearer_token.split(".")[1:2] == [key_id]
        return revoke(bearer_token, 204, b"", 401, {"errors": [{"message": "authorization required"}]}, check=ok)
    if host == "api.cloudflare.com" and method == "DELETE" and path.startswith("/client/v4/user/tokens/"):
        ok = bearer_token is not None and path.rsplit("/", 1)[1] == token_id(bearer_token)
        return revoke(bearer_token, 200, {"success": True, "result": {"id": token_id(bearer_token or "")}}, 404, {"success": False}, check=ok)
    if host == "registry.npmjs.org" and method == "DELETE" and path.startswith("/-/npm/v1/tokens/token/"):
        ok = bearer_token is not None and path.rsplit("/", 1)[1] == hashlib.sha512(bearer_token.encode()).hexdigest()
        return revoke(bearer_token, 204, b"", 401, {"error": "Unauthorized"}, check=ok)
    if (host, method, path) == ("api.linear.app", "POST", "/oauth/revoke"):
        return revoke(bearer_token, 200, {}, 400, {"error": "invalid_token"})
    return None


class Fake:
    def __init__(self, config):
        self.config = config
        self.lock = threading.Lock()
        self.flaky_seen = set()
        self.log = open(config["log"], "a", buffering=1)
        self.revoked = set()

    def is_live(self, credential):
        return credential is not None and credential not in self.revoked and (
            credential in self.config.get("live", []) or credential in self.config.get("flaky", []))

    def route(self, host, method, path):
        if host == "api.telegram.org":
            return ROUTES.get((host, method, "TOKEN_IN_PATH"))
        return ROUTES.get((host, method, path))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake = None

    def log_message(self, *args):
        pass

    def answer(self, status, body, extra=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Marker", MARKER)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self, method):
        started = time.time()
        fake = self.fake
        parts = urlsplit(self.path)
        segments = parts.path.split("/", 2)
        host = segments[1] if len(segments) > 1 else ""
        path = unquote("/" + (segments[2] if len(segments) > 2 else ""))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        route = fake.route(host, method, path)
        credential = None
        status = 404
        revocation = revoke_route(fake, self, host, method, path, parse_qs(parts.query), body)
        if revocation is not None and revocation[0] in fake.config.get("rate_limited", []):
            credential, status = revocation[0], 429
            self.answer(429, {"error": "rate limited", "marker": MARKER}, {"Retry-After": "0"})
        elif revocation is not None:
            credential, status, answer = revocation
            if isinstance(answer, dict):
                answer = dict(answer, marker=MARKER)
            self.answer(status, answer)
        elif host == "sts.amazonaws.com" and method == "POST" and path == "/":
            credential, error = sigv4_check(self, host, path, body, fake.config.get("aws", {}))
            if error is None and b"Action=GetCallerIdentity" in body:
                status = 200
                xml = f"<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/{MARKER}</Arn></GetCallerIdentityResult></GetCallerIdentityResponse>"
                self.answer(200, xml.encode())
            else:
                status = 403
                self.answer(403, f"<ErrorResponse><Error><Code>{error}</Code><Message>{MARKER}</Message></Error></ErrorResponse>".encode())
        elif route is None:
            self.answer(404, {"error": "no such endpoint", "marker": MARKER})
        else:
            reader, live_body, dead_status, dead_body, required, live_status = route
            credential = reader(self, parse_qs(parts.query), path)
            missing = [n for n, v in required if self.headers.get(n) is None or (v is not None and self.headers.get(n) != v)]
            cfg = fake.config
            if missing:
                status = 400
                self.answer(400, {"error": f"missing header {missing[0]}", "marker": MARKER})
            elif credential in cfg.get("slow", []):
                time.sleep(cfg.get("slow_seconds", 3))
                status = 200
                self.answer(200, live_body)
            elif credential in cfg.get("rate_limited", []):
                status = 429
                self.answer(429, {"error": "rate limited", "marker": MARKER}, {"Retry-After": "0"})
            elif credential in cfg.get("server_error", []):
                status = 503
                self.answer(503, {"error": "unavailable", "marker": MARKER})
            elif credential in cfg.get("garbage", []):
                status = 200
                self.answer(200, b"<html>" + MARKER.encode() + b"</html>")
            elif credential in cfg.get("flaky", []) and credential not in fake.flaky_seen:
                with fake.lock:
                    fake.flaky_seen.add(credential)
                status = 429
                self.answer(429, {"error": "slow down", "marker": MARKER}, {"Retry-After": "0"})
            elif fake.is_live(credential):
                status = live_status
                body = dict(live_body, marker=MARKER) if isinstance(live_body, dict) else live_body
                if host == "api.cloudflare.com":
                    body = dict(body, result={"id": token_id(credential), "status": "active"})
                self.answer(live_status, body)
            else:
                status = dead_status
                self.answer(dead_status, dict(dead_body, marker=MARKER))
        fake.log.write(json.dumps({
            "host": host, "method": method, "path": path if host != "api.telegram.org" else "/bot…/getMe",
            "credential": credential, "status": status, "start": started, "end": time.time(),
        }) + "\n")

    def do_GET(self):
        self.guarded("GET")

    def do_POST(self):
        self.guarded("POST")

    def do_DELETE(self):
        self.guarded("DELETE")

    def guarded(self, method):
        try:
            self.handle_any(method)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout under test)


def main():
    config = json.load(open(sys.argv[1]))
    Handler.fake = Fake(config)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A client that gives up mid-answer (a timeout under test) is expected.
    server.handle_error = lambda request, address: None
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
