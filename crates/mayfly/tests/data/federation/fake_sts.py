"""A stand-in for AWS STS's AssumeRoleWithWebIdentity, as documented:
a form POST (Action, Version, RoleArn, RoleSessionName, WebIdentityToken,
DurationSeconds) answered with the XML of temporary credentials. Like STS,
it trusts an OpenID provider by discovery: it reads the issuer's
/.well-known/openid-configuration, fetches its JWKS and verifies the token
with joserfc (RS256, iss, aud = sts.amazonaws.com, exp, nbf), then checks
the role's trust condition on `sub`.

    python3 fake_sts.py ISSUER ROLE_ARN ALLOWED_SUB LOG
prints its port, then serves until killed; LOG gets one JSON line per call.
"""

import json
import sys
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from joserfc import jwt
from joserfc.jwk import KeySet

ISSUER, ROLE_ARN, ALLOWED_SUB, LOG = sys.argv[1:5]


def discover():
    with urllib.request.urlopen(ISSUER + "/.well-known/openid-configuration") as r:
        config = json.load(r)
    assert config["issuer"] == ISSUER, config
    assert "RS256" in config["id_token_signing_alg_values_supported"], config
    with urllib.request.urlopen(config["jwks_uri"]) as r:
        return KeySet.import_key_set(json.load(r))


def error(code, message):
    return 400 if code != "AccessDenied" else 403, (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>"
    )


def assume(form):
    if form.get("Action") != "AssumeRoleWithWebIdentity" or form.get("Version") != "2011-06-15":
        return error("InvalidAction", "unknown action")
    if form.get("RoleArn") != ROLE_ARN:
        return error("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
    try:
        keys = discover()
        token = jwt.decode(form.get("WebIdentityToken", ""), keys, algorithms=["RS256"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": ISSUER},
            aud={"essential": True, "value": "sts.amazonaws.com"},
            sub={"essential": True},
            exp={"essential": True},
        ).validate(token.claims)
    except Exception as e:  # noqa: BLE001: every failure is STS's InvalidIdentityToken
        return error("InvalidIdentityToken", f"{type(e).__name__}: {e}")
    if token.claims["sub"] != ALLOWED_SUB:
        return error("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
    expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + int(form["DurationSeconds"])))
    session = form["RoleSessionName"]
    with open(LOG, "a") as log:
        log.write(json.dumps({"sub": token.claims["sub"], "task": token.claims.get("task"), "session": session,
                              "owner": token.claims.get("owner"), "duration": form["DurationSeconds"]}) + "\n")
    return 200, (
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
        "<AssumeRoleWithWebIdentityResult><Credentials>"
        "<AccessKeyId>ASIAMAYFLYTEST000001</AccessKeyId>"
        "<SecretAccessKey>fake/secret/for/the/test</SecretAccessKey>"
        f"<SessionToken>session-{session}</SessionToken>"
        f"<Expiration>{expiration}</Expiration>"
        f"</Credentials><SubjectFromWebIdentityToken>{token.claims['sub']}</SubjectFromWebIdentityToken>"
        "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
    )


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        status, body = assume(form)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
