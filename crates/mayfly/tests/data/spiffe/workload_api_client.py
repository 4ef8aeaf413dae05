"""The PyPI `spiffe` client (and grpcio underneath it) against Mayfly's
SPIFFE Workload API on its local socket.

Usage: workload_api_client.py SOCKET AUDIENCE SVID_OUT

Fetches a JWT-SVID for AUDIENCE and the trust bundle, validates the SVID on
the server and locally against the bundle, writes the SVID to SVID_OUT and
prints one JSON object with what it saw, including the errors bad calls got.
"""

import json
import sys

import grpc
from spiffe import JwtSvid, SpiffeId, TrustDomain, WorkloadApiClient

socket, audience, svid_out = sys.argv[1], sys.argv[2], sys.argv[3]
client = WorkloadApiClient(f"unix://{socket}", default_timeout=10.0)
out = {"errors": {}}


def error(name, call):
    try:
        call()
        out["errors"][name] = None
    except Exception as e:  # what the client raises is what we check
        out["errors"][name] = f"{type(e).__name__}: {e}"


svid = client.fetch_jwt_svid({audience})
out["spiffe_id"] = str(svid.spiffe_id)
out["audience"] = sorted(svid.audience)
bundles = client.fetch_jwt_bundles()
bundle = bundles.get_bundle_for_trust_domain(TrustDomain("mayfly.local"))
out["bundle_keys"] = len(bundle.jwt_authorities)
checked = JwtSvid.parse_and_validate(svid.token, bundle, {audience})
out["locally_validated"] = str(checked.spiffe_id)
client.validate_jwt_svid(svid.token, audience)
out["server_validated"] = True

head, payload, signature = svid.token.split(".")
forged = ".".join([head, payload, signature[:-6] + ("AAAAAA" if not signature.endswith("AAAAAA") else "BBBBBB")])
error("forged", lambda: client.validate_jwt_svid(forged, audience))
error("wrong_audience", lambda: client.validate_jwt_svid(svid.token, "someone-else"))
error(
    "other_subject",
    lambda: client.fetch_jwt_svid({audience}, subject=SpiffeId("spiffe://mayfly.local/not/me")),
)
error("x509", lambda: client.fetch_x509_svid())

# Below the SDK: malformed frames and a missing security header.
channel = grpc.insecure_channel(f"unix:{socket}")
raw = channel.unary_unary("/SpiffeWorkloadAPI/FetchJWTSVID")
header = [("workload.spiffe.io", "true")]


def code_of(call):
    try:
        call()
        return "OK"
    except grpc.RpcError as e:
        return f"{e.code().name}: {e.details()}"


out["garbage_frame"] = code_of(lambda: raw(b"\xff\xff\xff\xff", metadata=header, timeout=10))
out["no_security_header"] = code_of(lambda: raw(b"\x0a\x01a", timeout=10))
# The server keeps serving after both.
again = client.fetch_jwt_svid({audience})
out["after_bad_input"] = str(again.spiffe_id)

with open(svid_out, "w") as f:
    f.write(svid.token)
print(json.dumps(out))
