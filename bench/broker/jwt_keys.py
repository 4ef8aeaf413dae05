#!/usr/bin/env python3
"""Signing material for the broker benchmark (bench/run_broker.sh).

Writes into --out:
  signing-key.pem   ES256 (P-256) private key, PKCS#8 PEM (kept for re-minting)
  public-key.pem    the public key as PEM (OpenBao jwt_validation_pubkeys)
  jwks.json         the public key as a JWKS {"keys":[{kty,crv,x,y,kid,alg,use}]} (Mayfly)
  workload.jwt      one workload JWT signed with the key (kid in the header)

The key pair is generated on first use and reused afterwards; the JWT is minted
anew on every call (iat = nbf = now, exp = now + --ttl), so a fresh run never
starts with an expired token. Needs `cryptography` and `PyJWT` (bench/work/venv).
"""
import argparse
import base64
import json
import pathlib
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "https://ci.bench.invalid"
AUDIENCE = "mayfly"
SUBJECT = "bench:app:main"


def b64url_uint(n: int, length: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(length, "big")).rstrip(b"=").decode()


def load_or_create_key(path: pathlib.Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
            return key
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return key


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for the key files and the JWT")
    ap.add_argument("--kid", default="bench-es256-1", help="key id (JWKS kid and JWT header kid)")
    ap.add_argument("--ttl", type=int, default=7200, help="JWT lifetime in seconds (default 2 h)")
    args = ap.parse_args()

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = load_or_create_key(out / "signing-key.pem")
    pub = key.public_key()

    (out / "public-key.pem").write_bytes(pub.public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    nums = pub.public_numbers()
    jwks = {"keys": [{
        "kty": "EC", "crv": "P-256",
        "x": b64url_uint(nums.x, 32), "y": b64url_uint(nums.y, 32),
        "kid": args.kid, "alg": "ES256", "use": "sig",
    }]}
    (out / "jwks.json").write_text(json.dumps(jwks, indent=2) + "\n")

    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT,
              "iat": now, "nbf": now, "exp": now + args.ttl}
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": args.kid})
    # Self-check: the token verifies against the public key we just wrote.
    jwt.decode(token, pub, algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER)
    (out / "workload.jwt").write_text(token + "\n")


if __name__ == "__main__":
    main()
