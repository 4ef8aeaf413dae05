#!/usr/bin/env python3
"""Builds Mayfly's benchmark corpus.

The corpus is real source code that nobody on the project wrote -- the
crates of the local cargo registry and a Python installation's library --
hard-linked (or copied) into ``bench/work/corpus``, with realistic fake
credentials planted across every surface Mayfly knows (code, .env, MCP
configs, CI, shared config, agent transcripts, notebooks, chat exports,
shell histories, SQLite databases), some copied into several files, and
with placeholders and documentation examples that a scanner must NOT
report.

Everything planted is recorded in ``bench/work/manifest.json``: for each
true secret its value and every (path, line, surface) where it was planted;
for each decoy its value, path and line.

The fakes are random: the key material comes from a SHA-256 counter-mode
generator keyed by ``--seed``, so a seed gives the same corpus again (given
the same source trees). Without ``--seed`` a fresh seed is drawn with the
``secrets`` module and written into the manifest.

Files planted into are always rewritten as new files (never written through
a hard link), so the source trees are never modified.

Usage: bench/make_corpus.py [--seed N] [--out DIR] [--cargo DIR] [--python DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import re
import secrets
import shutil
import sqlite3
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "work"
DEFAULT_CARGO = Path.home() / ".cargo" / "registry" / "src"
DEFAULT_PYTHON = Path("/root/.pyenv/versions/3.11.7/lib/python3.11")

# Directories and files left out of the copy: byte-code caches are build
# output, not source; symlinks are skipped (loops, targets outside).
SKIP_DIRS = {"__pycache__", ".git"}
SKIP_FILE_PREFIXES = ("_sandboxing",)

UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LOWER = "abcdefghijklmnopqrstuvwxyz"
DIGITS = "0123456789"
ALNUM = UPPER + LOWER + DIGITS
BASE62 = DIGITS + UPPER + LOWER  # GitHub / npm checksum alphabet
URLSAFE = ALNUM + "_-"
HEX = "0123456789abcdef"
B32 = UPPER + "234567"
B64 = ALNUM + "+/"

# The words and shapes that make a value look like a placeholder. A real
# random key never contains them; regenerate the rare draw that does, so
# every planted secret is one any scanner should report.
PLACEHOLDER_WORDS = (
    "example", "sample", "dummy", "placeholder", "changeme", "change_me", "redacted",
    "your", "insert", "replace", "fake", "xxxx", "test", "demo", "token", "secret",
)


def looks_placeholder(value: str) -> bool:
    low = value.lower()
    if any(w in low for w in PLACEHOLDER_WORDS):
        return True
    if re.search(r"(.)\1{5}", value):
        return True
    run_up = run_down = 1
    for a, b in zip(value, value[1:]):
        run_up = run_up + 1 if ord(b) == ord(a) + 1 else 1
        run_down = run_down + 1 if ord(b) == ord(a) - 1 else 1
        if run_up >= 8 or run_down >= 8:
            return True
    return False


class Drbg:
    """Deterministic random bytes: SHA-256 in counter mode over the seed."""

    def __init__(self, seed: str, label: str) -> None:
        self.key = hashlib.sha256(f"mayfly-bench/{label}/{seed}".encode()).digest()
        self.counter = 0
        self.pool = b""

    def bytes(self, n: int) -> bytes:
        while len(self.pool) < n:
            self.pool += hashlib.sha256(self.key + self.counter.to_bytes(8, "big")).digest()
            self.counter += 1
        out, self.pool = self.pool[:n], self.pool[n:]
        return out

    def below(self, n: int) -> int:
        bits = max(1, (n - 1).bit_length())
        nbytes = (bits + 7) // 8
        while True:
            x = int.from_bytes(self.bytes(nbytes), "big") & ((1 << bits) - 1)
            if x < n:
                return x

    def tok(self, alphabet: str, n: int) -> str:
        return "".join(alphabet[self.below(len(alphabet))] for _ in range(n))

    def clean_tok(self, alphabet: str, n: int, edge: str = ALNUM) -> str:
        """A random string with no placeholder look, starting and ending in `edge`."""
        while True:
            s = self.tok(alphabet, n)
            if s[0] in edge and s[-1] in edge and not looks_placeholder(s):
                return s

    def digits(self, n: int) -> str:
        return str(1 + self.below(9)) + self.tok(DIGITS, n - 1)


# --------------------------------------------------------------------------
# Credential formats
# --------------------------------------------------------------------------

def base62_crc32(data: str) -> str:
    value = zlib.crc32(data.encode()) & 0xFFFFFFFF
    out = []
    for _ in range(6):
        out.append(BASE62[value % 62])
        value //= 62
    return "".join(reversed(out))


def checksummed(rng: Drbg, prefix: str) -> str:
    """GitHub / npm style: PREFIX + 30 base62 + 6 base62 digits of their CRC32."""
    while True:
        body = rng.clean_tok(ALNUM, 30)
        token = prefix + body + base62_crc32(body)
        if not looks_placeholder(token[len(prefix):]):
            return token


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(rng: Drbg) -> str:
    header = {"alg": "HS256", "typ": "JWT"}
    iat = 1717000000 + rng.below(20_000_000)
    payload = {
        "sub": "svc-billing-worker",
        "iss": "https://auth.acme-payments.io",
        "aud": "billing-api",
        "scope": "payments:write invoices:read",
        "iat": iat,
        "exp": iat + 31_536_000,
        "jti": rng.tok(HEX, 16),
    }
    signing_input = b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + b64url(
        json.dumps(payload, separators=(",", ":")).encode()
    )
    sig = hmac.new(rng.bytes(32), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


# --- a real RSA key, generated deterministically --------------------------

SMALL_PRIMES = [p for p in range(3, 2000) if all(p % q for q in range(2, int(p ** 0.5) + 1))]


def is_probable_prime(n: int, rng: Drbg, rounds: int = 24) -> bool:
    if n < 2:
        return False
    for p in SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for _ in range(rounds):
        a = 2 + rng.below(n - 4)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def random_prime(rng: Drbg, bits: int) -> int:
    while True:
        n = int.from_bytes(rng.bytes(bits // 8), "big") | (3 << (bits - 2)) | 1
        if is_probable_prime(n, rng):
            return n


def der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def der(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + der_len(len(body)) + body


def der_int(x: int) -> bytes:
    b = x.to_bytes(max(1, (x.bit_length() + 8) // 8), "big")
    return der(0x02, b)


def rsa_der(rng: Drbg, bits: int = 2048) -> bytes:
    e = 65537
    while True:
        p, q = random_prime(rng, bits // 2), random_prime(rng, bits // 2)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e:
            break
    if p < q:
        p, q = q, p
    n, d = p * q, pow(e, -1, (p - 1) * (q - 1))
    fields = [0, n, e, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p)]
    return der(0x30, b"".join(der_int(f) for f in fields))


def pem(label: str, body: bytes) -> str:
    text = base64.b64encode(body).decode()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


def pkcs8(pkcs1: bytes) -> bytes:
    rsa_oid = bytes.fromhex("06092a864886f70d010101") + b"\x05\x00"
    return der(0x30, der_int(0) + der(0x30, rsa_oid) + der(0x04, pkcs1))


# --------------------------------------------------------------------------
# The secrets
# --------------------------------------------------------------------------

@dataclass
class Secret:
    id: str
    kind: str
    value: str
    # other strings that identify the same credential in a report (a URL
    # around a password, a connection string around a key)
    context: list[str] = field(default_factory=list)


def make_secrets(rng: Drbg) -> dict[str, Secret]:
    s: dict[str, Secret] = {}

    def add(id_: str, kind: str, value: str, context: list[str] | None = None) -> None:
        s[id_] = Secret(id_, kind, value, context or [])

    add("github-pat", "GitHub classic PAT", checksummed(rng, "ghp_"))
    add("github-oauth", "GitHub OAuth token", checksummed(rng, "gho_"))
    add("github-fine-grained", "GitHub fine-grained PAT",
        "github_pat_11" + rng.clean_tok(ALNUM, 20) + "_" + rng.clean_tok(ALNUM, 59))
    add("openai-project", "OpenAI project key",
        "sk-proj-" + rng.clean_tok(URLSAFE, 74) + "T3BlbkFJ" + rng.clean_tok(URLSAFE, 74))
    add("openai-svcacct", "OpenAI service-account key",
        "sk-svcacct-" + rng.clean_tok(URLSAFE, 74) + "T3BlbkFJ" + rng.clean_tok(URLSAFE, 74))
    add("anthropic-api", "Anthropic API key", "sk-ant-api03-" + rng.clean_tok(URLSAFE, 93) + "AA")
    add("anthropic-admin", "Anthropic admin key", "sk-ant-admin01-" + rng.clean_tok(URLSAFE, 93) + "AA")
    add("aws-access-key-id", "AWS access key id", "AKIA" + rng.clean_tok(B32, 16, B32))
    while True:
        aws_secret = rng.clean_tok(B64, 40)
        if any(c.isupper() for c in aws_secret) and any(c.islower() for c in aws_secret) and any(
            c.isdigit() for c in aws_secret
        ):
            break
    add("aws-secret-access-key", "AWS secret access key", aws_secret)
    add("slack-bot", "Slack bot token",
        f"xoxb-{rng.digits(12)}-{rng.digits(13)}-{rng.clean_tok(ALNUM, 24)}")
    add("slack-webhook", "Slack incoming webhook",
        "https://hooks.slack.com/services/T" + rng.clean_tok(UPPER + DIGITS, 10)
        + "/B" + rng.clean_tok(UPPER + DIGITS, 10) + "/" + rng.clean_tok(ALNUM, 24))
    add("stripe-live", "Stripe live secret key", "sk_live_51" + rng.clean_tok(ALNUM, 97))
    add("stripe-restricted", "Stripe restricted key", "rk_live_51" + rng.clean_tok(ALNUM, 97))
    add("sendgrid", "SendGrid API key", "SG." + rng.clean_tok(URLSAFE, 22) + "." + rng.clean_tok(URLSAFE, 43))
    add("npm", "npm access token", checksummed(rng, "npm_"))
    add("gitlab-pat", "GitLab PAT", "glpat-" + rng.clean_tok(URLSAFE, 20))
    add("huggingface", "Hugging Face token", "hf_" + rng.clean_tok(UPPER + LOWER, 34, UPPER + LOWER))
    add("google-api", "Google API key", "AIzaSy" + rng.clean_tok(URLSAFE, 33))
    rsa1 = rsa_der(rng)
    add("rsa-private-key", "RSA private key (PKCS#1 PEM)", pem("RSA PRIVATE KEY", rsa1))
    rsa2 = rsa_der(rng)
    add("pkcs8-private-key", "Private key (PKCS#8 PEM)", pem("PRIVATE KEY", pkcs8(rsa2)))
    pg_pw = rng.clean_tok(ALNUM, 24)
    pg_url = f"postgres://svc_billing:{pg_pw}@db-prod-1.internal.acme-payments.io:5432/billing"
    add("postgres-password", "PostgreSQL URL password", pg_pw, [pg_url])
    mongo_pw = rng.clean_tok(ALNUM, 20)
    mongo_url = f"mongodb+srv://analytics:{mongo_pw}@cluster0.q7x2k.mongodb.net/events?retryWrites=true"
    add("mongodb-password", "MongoDB URL password", mongo_pw, [mongo_url])
    add("jwt", "JSON Web Token (HS256)", make_jwt(rng))
    add("twilio-api-key", "Twilio API key", "SK" + rng.clean_tok(HEX, 32, HEX))
    add("mailgun", "Mailgun API key", "key-" + rng.clean_tok(HEX, 32, HEX))
    add("discord-webhook", "Discord webhook",
        f"https://discord.com/api/webhooks/{rng.digits(19)}/" + rng.clean_tok(URLSAFE, 68))
    add("telegram-bot", "Telegram bot token", f"{rng.digits(10)}:AA" + rng.clean_tok(URLSAFE, 33))
    add("shopify", "Shopify access token", "shpat_" + rng.clean_tok(HEX, 32, HEX))
    add("linear", "Linear API key", "lin_api_" + rng.clean_tok(ALNUM, 40))
    add("digitalocean", "DigitalOcean PAT", "dop_v1_" + rng.clean_tok(HEX, 64, HEX))
    add("databricks", "Databricks token", "dapi" + rng.clean_tok(HEX, 32, HEX))
    add("groq", "Groq API key", "gsk_" + rng.clean_tok(ALNUM, 52))
    add("replicate", "Replicate API token", "r8_" + rng.clean_tok(ALNUM, 37))
    add("doppler", "Doppler service token", "dp.st.prd." + rng.clean_tok(ALNUM, 43))
    add("vault", "HashiCorp Vault token", "hvs.CAESI" + rng.clean_tok(URLSAFE, 86))
    add("pypi", "PyPI upload token", "pypi-AgEIcHlwaS5vcmc" + rng.clean_tok(URLSAFE, 150))
    add("dockerhub", "Docker Hub PAT", "dckr_pat_" + rng.clean_tok(URLSAFE, 27))
    azure_key = rng.clean_tok(B64, 86) + "=="
    azure_cs = (f"DefaultEndpointsProtocol=https;AccountName=acmeprodlogs;AccountKey={azure_key};"
                "EndpointSuffix=core.windows.net")
    add("azure-storage", "Azure storage account key", azure_key, [azure_cs])
    add("sentry", "Sentry user auth token", "sntryu_" + rng.clean_tok(HEX, 64, HEX))
    add("grafana", "Grafana service-account token",
        "glsa_" + rng.clean_tok(ALNUM, 32) + "_" + rng.clean_tok(HEX, 8, HEX))
    add("datadog", "Datadog API key", rng.clean_tok(HEX, 32, HEX))
    add("crates-io", "crates.io API token", "cio" + rng.clean_tok(ALNUM, 32))
    add("db-password", "Database password", rng.clean_tok(ALNUM + "!#%^*-_+", 22))
    # Appended last, so the values above stay what they were for a seed.
    add("mistral", "Mistral API key", rng.clean_tok(ALNUM, 32))
    add("cohere", "Cohere API key", rng.clean_tok(ALNUM, 40))
    add("notebook-rsa-key", "RSA private key (in notebook JSON lines)", pem("RSA PRIVATE KEY", rsa_der(rng)))
    return s


# --------------------------------------------------------------------------
# The copy
# --------------------------------------------------------------------------

def link_tree(src: Path, dst: Path) -> tuple[int, int]:
    """Hard-links (or copies) every regular file of `src` into `dst`."""
    files = linked = 0
    can_link = True
    for root, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not (Path(root) / d).is_symlink())
        rel = Path(root).relative_to(src)
        out_dir = dst / rel
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in sorted(names):
            if name.startswith(SKIP_FILE_PREFIXES):
                continue
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            target = out_dir / name
            if can_link:
                try:
                    os.link(path, target)
                    linked += 1
                    files += 1
                    continue
                except OSError:
                    can_link = False
            shutil.copy2(path, target)
            files += 1
    return files, linked


# --------------------------------------------------------------------------
# Planting
# --------------------------------------------------------------------------

@dataclass
class Plant:
    secret: str
    path: str
    needle: str
    surface: str
    variant: str
    cell: dict | None = None


@dataclass
class Decoy:
    kind: str
    value: str
    path: str
    needle: str
    surface: str
    cell: dict | None = None


class Planter:
    def __init__(self, corpus: Path, secrets_: dict[str, Secret], rng: random.Random) -> None:
        self.corpus = corpus
        self.s = secrets_
        self.rng = rng
        self.plants: list[Plant] = []
        self.decoys: list[Decoy] = []

    def v(self, sid: str) -> str:
        return self.s[sid].value

    # -- recording ---------------------------------------------------------
    def true(self, path: str, sid: str, surface: str, variant: str = "plain", needle: str | None = None,
             cell: dict | None = None) -> None:
        self.plants.append(Plant(sid, path, needle if needle is not None else self.v(sid), surface, variant, cell))

    def decoy(self, path: str, kind: str, value: str, surface: str, needle: str | None = None,
              cell: dict | None = None) -> None:
        self.decoys.append(Decoy(kind, value, path, needle if needle is not None else value, surface, cell))

    # -- writing -----------------------------------------------------------
    def write(self, rel: str, text: str) -> None:
        path = self.corpus / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()  # never write through a hard link
        path.write_text(text, encoding="utf-8")

    def insert_lines(self, rel: str, new_lines: list[str], where: str = "random") -> None:
        """Inserts lines into an existing (hard-linked) file, as a new file."""
        path = self.corpus / rel
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
        if where == "end":
            at = len(lines) - (1 if lines and lines[-1] == "" else 0)
        else:
            lo = min(len(lines) - 1, max(1, len(lines) // 5))
            hi = max(lo, len(lines) - 2)
            at = self.rng.randint(lo, hi)
            # keep the surrounding indentation so the line reads as code
            prev = lines[at - 1] if at > 0 else ""
            indent = re.match(r"[ \t]*", prev).group(0)
            if prev.rstrip().endswith((":", "{", "(", "[", ",", "\\")):
                at = min(at + 1, len(lines))
                prev = lines[at - 1]
                indent = re.match(r"[ \t]*", prev).group(0)
            new_lines = [indent + line for line in new_lines]
        lines[at:at] = new_lines
        self.write(rel, "\n".join(lines))

    def append_text(self, rel: str, extra: str) -> None:
        path = self.corpus / rel
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        if text and not text.endswith("\n"):
            text += "\n"
        self.write(rel, text + extra)


def pick_files(corpus: Path, sub: str, exts: tuple[str, ...], rng: random.Random, n: int, *,
               min_depth: int = 4, exclude: tuple[str, ...] = ()) -> list[str]:
    """Chooses `n` text source files at least `min_depth` folders deep."""
    base = corpus / sub
    found = []
    for root, dirs, names in os.walk(base):
        dirs.sort()
        rel_root = Path(root).relative_to(corpus)
        if len(rel_root.parts) < min_depth:
            continue
        for name in sorted(names):
            if not name.endswith(exts):
                continue
            rel = str(rel_root / name)
            if any(x in rel for x in exclude):
                continue
            path = corpus / rel
            size = path.stat().st_size
            if 2_000 <= size <= 150_000:
                try:
                    path.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    continue
                found.append(rel)
    if len(found) < n:
        raise SystemExit(f"not enough candidate files under {sub}")
    return rng.sample(found, n)


def find_crate(corpus: Path, cargo_rel: str, prefix: str, rng: random.Random) -> str:
    """The path of a crate directory whose name starts with `prefix`, else a random crate."""
    base = corpus / cargo_rel
    crates = sorted(p for p in base.glob("*/*") if p.is_dir())
    named = [p for p in crates if p.name.startswith(prefix + "-")]
    chosen = named[0] if named else rng.choice(crates)
    return str(chosen.relative_to(corpus))


# --------------------------------------------------------------------------
# The surfaces
# --------------------------------------------------------------------------

JWT_IO_EXAMPLE = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0Ijox"
                  "NTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
AWS_DOC_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
STRIPE_DOC_TEST = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"


def plant_all(p: Planter, corpus: Path, cargo_rel: str, py_rel: str, drbg: Drbg) -> None:
    v = p.v
    rng = p.rng
    stripe_test = "sk_test_51" + drbg.clean_tok(ALNUM, 97)
    stripe_pk_test = "pk_test_51" + drbg.clean_tok(ALNUM, 97)

    # ---- env ------------------------------------------------------------
    rel = "workspace/billing-api/.env"
    p.write(rel, f"""# billing-api production settings -- do not commit
APP_ENV=production
PORT=8080
DATABASE_URL={p.s['postgres-password'].context[0]}
DB_PASSWORD={v('db-password')}
OPENAI_API_KEY={v('openai-project')}
STRIPE_SECRET_KEY={v('stripe-live')}
SENDGRID_API_KEY={v('sendgrid')}
AWS_ACCESS_KEY_ID={v('aws-access-key-id')}
AWS_SECRET_ACCESS_KEY={v('aws-secret-access-key')}
AWS_REGION=eu-west-1
SENTRY_DSN=
LOG_LEVEL=info
""")
    for sid in ("postgres-password", "db-password", "openai-project", "stripe-live", "sendgrid",
                "aws-access-key-id", "aws-secret-access-key"):
        p.true(rel, sid, "env")

    rel = "workspace/billing-api/.env.example"
    p.write(rel, f"""# Copy to .env and fill in real values.
APP_ENV=development
DATABASE_URL=postgres://postgres:changeme@localhost:5432/billing
OPENAI_API_KEY=your-api-key-here
ANTHROPIC_API_KEY=sk-ant-api03-...
STRIPE_SECRET_KEY={stripe_test}
STRIPE_PUBLISHABLE_KEY={stripe_pk_test}
AWS_ACCESS_KEY_ID={AWS_DOC_ID}
AWS_SECRET_ACCESS_KEY={AWS_DOC_SECRET}
GITHUB_TOKEN=ghp_************************************
""")
    p.decoy(rel, "changeme password in URL", "postgres://postgres:changeme@localhost:5432/billing", "env")
    p.decoy(rel, "your-api-key-here", "your-api-key-here", "env")
    p.decoy(rel, "elided Anthropic key", "sk-ant-api03-...", "env")
    p.decoy(rel, "Stripe test key", stripe_test, "env")
    p.decoy(rel, "Stripe publishable test key", stripe_pk_test, "env")
    p.decoy(rel, "AWS documentation key id", AWS_DOC_ID, "env")
    p.decoy(rel, "AWS documentation secret", AWS_DOC_SECRET, "env")
    p.decoy(rel, "redacted GitHub token", "ghp_************************************", "env")

    crate_env = find_crate(corpus, cargo_rel, "log", rng)
    rel = f"{crate_env}/.env"
    p.write(rel, f"""# local release tooling
GITHUB_TOKEN={v('github-pat')}
HF_TOKEN={v('huggingface')}
CARGO_REGISTRY_TOKEN={v('crates-io')}
""")
    for sid in ("github-pat", "huggingface", "crates-io"):
        p.true(rel, sid, "env", "inside copied tree")

    # ---- MCP configs ----------------------------------------------------
    rel = "workspace/agent-tools/.mcp.json"
    mcp = {
        "mcpServers": {
            "github": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-github"],
                "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": v("github-fine-grained")},
            },
            "linear": {
                "command": "npx",
                "args": ["-y", "linear-mcp-server"],
                "env": {"LINEAR_API_KEY": v("linear")},
            },
            "postgres": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-postgres", p.s["postgres-password"].context[0]],
            },
            "slack": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-slack"],
                "env": {"SLACK_BOT_TOKEN": v("slack-bot"), "SLACK_TEAM_ID": "T04QX8ZL2"},
            },
            "openai": {
                "command": "uvx",
                "args": ["openai-mcp"],
                "env": {"OPENAI_API_KEY": "${OPENAI_API_KEY}"},
            },
            "brave-search": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-brave-search"],
                "env": {"BRAVE_API_KEY": "<TOKEN>"},
            },
        }
    }
    p.write(rel, json.dumps(mcp, indent=2) + "\n")
    for sid in ("github-fine-grained", "linear", "postgres-password", "slack-bot"):
        p.true(rel, sid, "mcp-config")
    p.decoy(rel, "environment reference", "${OPENAI_API_KEY}", "mcp-config")
    p.decoy(rel, "<TOKEN> placeholder", "<TOKEN>", "mcp-config")

    rel = "home/.config/Claude/claude_desktop_config.json"
    desktop = {
        "mcpServers": {
            "github": {
                "command": "docker",
                "args": ["run", "-i", "--rm", "-e", "GITHUB_PERSONAL_ACCESS_TOKEN", "ghcr.io/github/github-mcp-server"],
                "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": v("github-pat")},
            },
            "stripe": {
                "command": "npx",
                "args": ["-y", "@stripe/mcp", "--tools=all", f"--api-key={v('stripe-live')}"],
            },
            "sentry": {
                "command": "npx",
                "args": ["-y", "@sentry/mcp-server"],
                "env": {"SENTRY_AUTH_TOKEN": v("sentry"), "SENTRY_HOST": "sentry.io"},
            },
            "everart": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-everart"],
                "env": {"EVERART_API_KEY": "your-api-key-here"},
            },
        }
    }
    p.write(rel, json.dumps(desktop, indent=2) + "\n")
    for sid in ("github-pat", "stripe-live", "sentry"):
        p.true(rel, sid, "mcp-config")
    p.decoy(rel, "your-api-key-here", "your-api-key-here", "mcp-config")

    # ---- CI -------------------------------------------------------------
    rel = "workspace/billing-api/.github/workflows/deploy.yml"
    p.write(rel, f"""name: deploy
on:
  push:
    branches: [main]
jobs:
  deploy:
    runs-on: ubuntu-latest
    env:
      GH_TOKEN: ${{{{ secrets.GH_TOKEN }}}}
      DOCKERHUB_USERNAME: acmepayments
      DOCKERHUB_TOKEN: {v('dockerhub')}
    steps:
      - uses: actions/checkout@v4
      - uses: aws-actions/configure-aws-credentials@v4
        with:
          aws-access-key-id: {v('aws-access-key-id')}
          aws-secret-access-key: {v('aws-secret-access-key')}
          aws-region: eu-west-1
      - name: publish client
        run: |
          echo "//registry.npmjs.org/:_authToken={v('npm')}" > ~/.npmrc
          npm publish --access public
      - name: notify
        run: curl -X POST -d '{{"text":"deployed"}}' {v('slack-webhook')}
""")
    for sid in ("dockerhub", "aws-access-key-id", "aws-secret-access-key", "npm", "slack-webhook"):
        p.true(rel, sid, "ci")
    p.decoy(rel, "GitHub Actions secret reference", "${{ secrets.GH_TOKEN }}", "ci")

    rel = "workspace/billing-api/.gitlab-ci.yml"
    p.write(rel, f"""stages: [test, release]
variables:
  GITLAB_TOKEN: {v('gitlab-pat')}
  DOPPLER_TOKEN: {v('doppler')}
  POSTGRES_PASSWORD: changeme
test:
  stage: test
  image: python:3.12
  script:
    - pip install -r requirements.txt
    - pytest -q
""")
    for sid in ("gitlab-pat", "doppler"):
        p.true(rel, sid, "ci")
    p.decoy(rel, "changeme password", "changeme", "ci", needle="POSTGRES_PASSWORD: changeme")

    crate_ci = find_crate(corpus, cargo_rel, "strip-ansi-escapes", rng)
    rel = f"{crate_ci}/.github/workflows/release.yml"
    p.write(rel, f"""name: release
on:
  push:
    tags: ['v*']
jobs:
  publish:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: cargo publish --token {v('crates-io')}
        env:
          CARGO_TERM_COLOR: always
""")
    p.true(rel, "crates-io", "ci", "inside copied tree")

    # ---- shared config: compose, Kubernetes, Terraform, credentials files
    rel = "workspace/billing-api/docker-compose.yml"
    p.write(rel, f"""services:
  api:
    build: .
    ports: ["8080:8080"]
    environment:
      DATABASE_URL: {p.s['postgres-password'].context[0]}
      GOOGLE_MAPS_API_KEY: {v('google-api')}
      SENDGRID_API_KEY: {v('sendgrid')}
      MAILGUN_API_KEY: {v('mailgun')}
    depends_on: [db]
  db:
    image: postgres:16
    environment:
      POSTGRES_USER: billing
      POSTGRES_PASSWORD: changeme
""")
    for sid in ("postgres-password", "google-api", "sendgrid", "mailgun"):
        p.true(rel, sid, "shared-config")
    p.decoy(rel, "changeme password", "changeme", "shared-config", needle="POSTGRES_PASSWORD: changeme")

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    rel = "workspace/infra/k8s/billing-secrets.yaml"
    p.write(rel, f"""apiVersion: v1
kind: Secret
metadata:
  name: billing-api
  namespace: payments
type: Opaque
data:
  OPENAI_API_KEY: {b64(v('openai-project'))}
  STRIPE_SECRET_KEY: {b64(v('stripe-live'))}
  ANTHROPIC_API_KEY: {b64(v('anthropic-api'))}
  GITHUB_TOKEN: {b64(v('github-oauth'))}
  PLACEHOLDER_PASSWORD: {b64('changeme')}
""")
    for sid in ("openai-project", "stripe-live", "anthropic-api", "github-oauth"):
        p.true(rel, sid, "shared-config", "base64 (Kubernetes Secret data)", needle=b64(v(sid)))
    p.decoy(rel, "base64 of changeme", "changeme", "shared-config", needle=b64("changeme"))

    rel = "workspace/infra/terraform.tfvars"
    p.write(rel, f"""region            = "fra1"
do_token          = "{v('digitalocean')}"
databricks_token  = "{v('databricks')}"
datadog_api_key   = "{v('datadog')}"
logs_connection   = "{p.s['azure-storage'].context[0]}"
admin_password    = "changeme"
grafana_auth      = "{v('grafana')}"
""")
    for sid in ("digitalocean", "databricks", "datadog", "azure-storage", "grafana"):
        p.true(rel, sid, "shared-config")
    p.decoy(rel, "changeme password", "changeme", "shared-config", needle='admin_password    = "changeme"')

    rel = "home/.aws/credentials"
    p.write(rel, f"""[default]
aws_access_key_id = {v('aws-access-key-id')}
aws_secret_access_key = {v('aws-secret-access-key')}
region = eu-west-1

[docs]
aws_access_key_id = {AWS_DOC_ID}
aws_secret_access_key = {AWS_DOC_SECRET}
""")
    p.true(rel, "aws-access-key-id", "shared-config", needle=f"aws_access_key_id = {v('aws-access-key-id')}")
    p.true(rel, "aws-secret-access-key", "shared-config")
    p.decoy(rel, "AWS documentation key id", AWS_DOC_ID, "shared-config")
    p.decoy(rel, "AWS documentation secret", AWS_DOC_SECRET, "shared-config")

    rel = "home/.npmrc"
    p.write(rel, f"//registry.npmjs.org/:_authToken={v('npm')}\nfund=false\n")
    p.true(rel, "npm", "shared-config")

    rel = "home/.pypirc"
    p.write(rel, f"""[distutils]
index-servers = pypi

[pypi]
username = __token__
password = {v('pypi')}
""")
    p.true(rel, "pypi", "shared-config")

    rel = "home/.git-credentials"
    p.write(rel, f"https://x-access-token:{v('github-oauth')}@github.com\n")
    p.true(rel, "github-oauth", "shared-config")

    # ---- agent transcript (Claude Code JSONL) ---------------------------
    rel = "home/.claude/projects/-home-dev-billing-api/4f1c2a9e-8d7b-4e1a-9c55-0b6f3e2d7a10.jsonl"
    env_dump = (f"OPENAI_API_KEY={v('openai-project')}\nSTRIPE_SECRET_KEY=\"{v('stripe-live')}\"\n"
                f"GROQ_API_KEY={v('groq')}\n")
    key_dump = v("rsa-private-key") + "\n"
    events = [
        {"type": "user", "sessionId": "4f1c2a9e", "message": {"role": "user", "content":
            "the billing worker fails to start, can you look at the env?"}},
        {"type": "assistant", "message": {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "cat .env.local"}}]}},
        {"type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": env_dump}]}},
        {"type": "assistant", "message": {"role": "assistant", "content": [
            {"type": "text", "text": "The keys look fine. Let me check the deploy key."}]}},
        {"type": "assistant", "message": {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_02", "name": "Read", "input": {"file_path": "deploy/id_rsa"}}]}},
        {"type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_02", "content": key_dump}]}},
        {"type": "user", "message": {"role": "user", "content":
            f"use this one instead: export ANTHROPIC_API_KEY=\"{v('anthropic-api')}\""}},
        {"type": "assistant", "message": {"role": "assistant", "content": [
            {"type": "text", "text": "Set it with `export OPENAI_API_KEY=sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxx` "
                                     "in your shell, never in the repo."}]}},
    ]
    p.write(rel, "".join(json.dumps(e) + "\n" for e in events))
    p.true(rel, "openai-project", "prompt-log", "JSON-escaped string")
    p.true(rel, "stripe-live", "prompt-log", "JSON-escaped string")
    p.true(rel, "groq", "prompt-log", "JSON-escaped string")
    p.true(rel, "rsa-private-key", "prompt-log", "JSON-escaped PEM (\\n)", needle=json.dumps(v("rsa-private-key"))[1:-1])
    p.true(rel, "anthropic-api", "prompt-log", "JSON-escaped string")
    p.decoy(rel, "xxxx placeholder", "sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxx", "prompt-log")

    # ---- notebook -------------------------------------------------------
    rel = "workspace/notebooks/eval_llm.ipynb"
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [], "source": [
                "import os\n",
                "from openai import OpenAI\n",
                f"os.environ[\"HF_TOKEN\"] = \"{v('huggingface')}\"\n",
                f"client = OpenAI(api_key=\"{v('openai-svcacct')}\")\n",
            ]},
            {"cell_type": "code", "execution_count": 2, "metadata": {}, "source": [
                "import replicate\n",
                "print(replicate.default_client._api_token)\n",
            ], "outputs": [{"name": "stdout", "output_type": "stream", "text": [f"{v('replicate')}\n"]}]},
            {"cell_type": "code", "execution_count": 3, "metadata": {}, "outputs": [], "source": [
                "# before sharing, set your own key:\n",
                "os.environ[\"OPENAI_API_KEY\"] = \"sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n",
            ]},
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    p.write(rel, json.dumps(nb, indent=1) + "\n")
    for sid in ("huggingface", "openai-svcacct", "replicate"):
        p.true(rel, sid, "notebook", "output" if sid == "replicate" else "source")
    p.decoy(rel, "xxxx placeholder", "sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "notebook")

    # ---- Slack export ---------------------------------------------------
    rel = "home/Downloads/slack-export/devops/2024-03-14.json"
    msgs = [
        {"type": "message", "user": "U04QX9A1B", "text": "who has the gitlab deploy token?", "ts": "1710406801.000100"},
        {"type": "message", "user": "U04R2LL7C", "text": f"here: {v('gitlab-pat')}", "ts": "1710406862.000200"},
        {"type": "message", "user": "U04QX9A1B",
         "text": f"thanks. for the service calls use Authorization: Bearer {v('jwt')}", "ts": "1710406901.000300"},
        {"type": "message", "user": "U04R2LL7C",
         "text": "docs say: curl -H \"Authorization: Bearer <TOKEN>\" https://api.acme-payments.io/v1/ping",
         "ts": "1710406960.000400"},
        {"type": "message", "user": "U04R2LL7C", "text": "old one was ghp_**************************** (revoked)",
         "ts": "1710407021.000500"},
        {"type": "message", "user": "U04QX9A1B", "text": f"alerts go to {v('discord-webhook')}",
         "ts": "1710407080.000600"},
    ]
    p.write(rel, json.dumps(msgs, indent=4) + "\n")
    for sid in ("gitlab-pat", "jwt", "discord-webhook"):
        p.true(rel, sid, "chat-export")
    p.decoy(rel, "<TOKEN> placeholder", "<TOKEN>", "chat-export", needle="Bearer <TOKEN>")
    p.decoy(rel, "redacted GitHub token", "ghp_****************************", "chat-export")

    # ---- prose: keys in sentences, as people paste them -----------------
    rel = "home/.claude/projects/-home-dev-ml-eval/7d2e91c4-3b5a-4f08-a1e6-52c9d0b8f317.jsonl"
    events = [
        {"type": "user", "message": {"role": "user", "content":
            f"here is the MISTRAL_API_KEY I used: {v('mistral')} - can you rerun the eval with it?"}},
        {"type": "assistant", "message": {"role": "assistant", "content": [
            {"type": "text", "text": "Sure. Which Cohere key should the reranker use?"}]}},
        {"type": "user", "message": {"role": "user", "content":
            f"the Cohere key for the eval is {v('cohere')} (expires Friday)"}},
        {"type": "user", "message": {"role": "user", "content":
            f"and for SMS use this for staging: {v('twilio-api-key')}"}},
        {"type": "user", "message": {"role": "user", "content":
            f"my datadog api key is {v('datadog')} if you need metrics"}},
    ]
    p.write(rel, "".join(json.dumps(e) + "\n" for e in events))
    for sid, variant in (("mistral", "sentence (words before a colon)"), ("cohere", "sentence (is)"),
                         ("twilio-api-key", "sentence without the provider's name"),
                         ("datadog", "sentence (api key is)")):
        p.true(rel, sid, "prompt-log", variant)
    p.decoy(rel, "prose without a key", "Which Cohere key should the reranker use?", "prompt-log")

    rel = "home/Downloads/chatgpt-export/conversations.json"
    conversation = [{"title": "Deploy checklist", "mapping": {
        "m1": {"message": {"author": {"role": "user"}, "content": {"content_type": "text", "parts": [
            f"The Mistral key is {v('mistral')}. Also the deploy token is {v('vault')}, keep it safe."]}}},
        "m2": {"message": {"author": {"role": "assistant"}, "content": {"content_type": "text", "parts": [
            "Do not paste keys here. Use MISTRAL_API_KEY=your-mistral-api-key in your .env instead."]}}},
    }}]
    p.write(rel, json.dumps(conversation, indent=2) + "\n")
    p.true(rel, "mistral", "chat-export", "sentence (key is)")
    p.true(rel, "vault", "chat-export", "sentence (token is)")
    p.decoy(rel, "documentation example", "your-mistral-api-key", "chat-export")

    rel = "workspace/notebooks/sms_alerts.ipynb"
    key_lines = [line + "\n" for line in v("notebook-rsa-key").split("\n")]
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [], "source": [
                "import os\n",
                f"os.environ[\"TWILIO_API_KEY\"] = \"{v('twilio-api-key')}\"\n",
                f"os.environ[\"MISTRAL_API_KEY\"] = \"{v('mistral')}\"\n",
            ]},
            {"cell_type": "code", "execution_count": 2, "metadata": {}, "outputs": [], "source": [
                "DEPLOY_KEY = \"\"\"\n", *key_lines, "\"\"\"\n",
            ]},
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    p.write(rel, json.dumps(nb, indent=1) + "\n")
    p.true(rel, "twilio-api-key", "notebook", "escaped quotes in notebook JSON")
    p.true(rel, "mistral", "notebook", "escaped quotes in notebook JSON")
    p.true(rel, "notebook-rsa-key", "notebook", "PEM lines as notebook JSON strings",
           needle="-----BEGIN RSA PRIVATE KEY-----")

    # ---- shell history --------------------------------------------------
    rel = "home/.bash_history"
    p.write(rel, f"""ls -la
cd ~/src/billing-api
export GITHUB_TOKEN={v('github-pat')}
gh repo clone acme/billing-api
curl https://api.anthropic.com/v1/messages -H "x-api-key: {v('anthropic-api')}" -H "anthropic-version: 2023-06-01" -d @req.json
psql "{p.s['postgres-password'].context[0]}" -c 'select count(*) from invoices'
docker login -u acmepayments -p {v('dockerhub')}
huggingface-cli login --token {v('huggingface')}
export VAULT_TOKEN={v('vault')}
export OPENAI_API_KEY=${{OPENAI_API_KEY}}
export STRIPE_KEY=sk_live_****************
git push origin main
""")
    for sid in ("github-pat", "anthropic-api", "postgres-password", "dockerhub", "huggingface", "vault"):
        p.true(rel, sid, "shell-history")
    p.decoy(rel, "environment reference", "${OPENAI_API_KEY}", "shell-history")
    p.decoy(rel, "redacted Stripe key", "sk_live_****************", "shell-history")

    # ---- SQLite ---------------------------------------------------------
    rel = "home/.local/share/connector-hub/state.db"
    db_path = corpus / rel
    db_path.parent.mkdir(parents=True, exist_ok=True)
    if db_path.exists():
        db_path.unlink()
    con = sqlite3.connect(db_path)
    con.execute("CREATE TABLE connectors (id INTEGER PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, "
                "config TEXT NOT NULL, updated_at TEXT)")
    rows = [
        ("warehouse", "mongodb", {"url": p.s["mongodb-password"].context[0], "database": "events"}, "mongodb-password"),
        ("alerts", "slack", {"token": v("slack-bot"), "channel": "#billing-alerts"}, "slack-bot"),
        ("mail", "sendgrid", {"api_key": v("sendgrid"), "from": "billing@acme-payments.io"}, "sendgrid"),
        ("shop", "shopify", {"shop": "acme-store.myshopify.com", "access_token": v("shopify")}, "shopify"),
        ("sms", "twilio", {"account_sid": "AC" + drbg.tok(HEX, 32), "api_key": v("twilio-api-key")}, "twilio-api-key"),
        ("search", "openai", {"api_key": "<TOKEN>", "model": "text-embedding-3-small"}, None),
    ]
    for i, (name, kind, config, sid) in enumerate(rows, start=1):
        text = json.dumps(config)
        con.execute("INSERT INTO connectors (id, name, kind, config, updated_at) VALUES (?, ?, ?, ?, ?)",
                    (i, name, kind, text, f"2024-05-{i:02d}T10:00:00Z"))
        cell = {"table": "connectors", "column": "config", "row": i}
        if sid:
            p.true(rel, sid, "database", "JSON in a TEXT column", cell=cell)
        else:
            p.decoy(rel, "<TOKEN> placeholder", "<TOKEN>", "database", cell=cell)
    con.commit()
    con.close()

    # ---- documentation with examples (decoys only) ----------------------
    rel = "workspace/billing-api/README.md"
    p.write(rel, f"""# billing-api

## Configuration

Set the keys in `.env` (see `.env.example`):

```sh
export OPENAI_API_KEY="sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
export AWS_ACCESS_KEY_ID={AWS_DOC_ID}
export AWS_SECRET_ACCESS_KEY={AWS_DOC_SECRET}
export STRIPE_SECRET_KEY={STRIPE_DOC_TEST}
```

Call the API with a bearer token:

```sh
curl -H "Authorization: Bearer <TOKEN>" https://api.acme-payments.io/v1/invoices
```

A token looks like this (from jwt.io):

```
{JWT_IO_EXAMPLE}
```

Connect to the local database with `postgres://user:password@localhost:5432/billing`.
The Slack bot needs `SLACK_BOT_TOKEN=xoxb-your-bot-token`.
""")
    p.decoy(rel, "xxxx placeholder", "sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "code")
    p.decoy(rel, "AWS documentation key id", AWS_DOC_ID, "code")
    p.decoy(rel, "AWS documentation secret", AWS_DOC_SECRET, "code")
    p.decoy(rel, "Stripe documentation test key", STRIPE_DOC_TEST, "code")
    p.decoy(rel, "<TOKEN> placeholder", "<TOKEN>", "code", needle="Bearer <TOKEN>")
    p.decoy(rel, "jwt.io documentation token", JWT_IO_EXAMPLE, "code")
    p.decoy(rel, "user:password documentation URL", "postgres://user:password@localhost:5432/billing", "code")
    p.decoy(rel, "your-bot-token", "xoxb-your-bot-token", "code")

    # ---- code deep inside the copied trees ------------------------------
    py_files = pick_files(corpus, py_rel, (".py",), rng, 6, min_depth=4, exclude=("/_vendor/", "/vendor/"))
    rs_files = pick_files(corpus, cargo_rel, (".rs",), rng, 5, min_depth=5, exclude=("/vendor/",))

    py_plants = [
        ("stripe-restricted", 'STRIPE_RESTRICTED_KEY = "{}"'),
        ("mailgun", 'MAILGUN_API_KEY = "{}"'),
        ("telegram-bot", 'bot = Bot(token="{}")'),
        ("anthropic-admin", 'admin = anthropic.Anthropic(api_key="{}")'),
        ("discord-webhook", 'ALERT_WEBHOOK_URL = "{}"'),
        ("google-api", 'GOOGLE_API_KEY = "{}"'),
    ]
    for path, (sid, tmpl) in zip(py_files, py_plants):
        p.insert_lines(path, [tmpl.format(v(sid))])
        p.true(path, sid, "code", "inserted into a real source file")

    rs_plants = [
        ("twilio-api-key", 'const TWILIO_API_KEY: &str = "{}";'),
        ("slack-webhook", 'let webhook = "{}";'),
        ("shopify", 'let shopify_token = "{}";'),
        ("linear", 'const LINEAR_KEY: &str = "{}";'),
        ("jwt", 'let bearer = "Bearer {}";'),
    ]
    for path, (sid, tmpl) in zip(rs_files, rs_plants):
        p.insert_lines(path, [tmpl.format(v(sid))])
        p.true(path, sid, "code", "inserted into a real source file")

    # A PEM key file and a decoy PEM in copied trees.
    key_dir = py_files[0].rsplit("/", 1)[0]
    rel = f"{key_dir}/fixtures/service_account_key.pem"
    p.write(rel, v("pkcs8-private-key") + "\n")
    p.true(rel, "pkcs8-private-key", "code", "key file")
    rel = f"{rs_files[0].rsplit('/', 1)[0]}/deploy_key.rs"
    p.write(rel, "/// Deploy key of the release bot.\npub const DEPLOY_KEY: &str = \"" +
            v("rsa-private-key").replace("\n", "\\n") + "\";\n")
    p.true(rel, "rsa-private-key", "code", "PEM in a Rust string (\\n escapes)",
           needle=v("rsa-private-key").replace("\n", "\\n"))
    doc_pem = "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----"
    rel = f"{rs_files[1].rsplit('/', 1)[0]}/KEYS.md"
    p.write(rel, "Paste the deploy key here:\n\n```\n" + doc_pem + "\n```\n\nand set `password = \"changeme\"` "
            "only on a local machine.\n")
    p.decoy(rel, "elided PEM body", doc_pem, "code", needle="-----BEGIN RSA PRIVATE KEY-----")
    p.decoy(rel, "changeme password", "changeme", "code", needle='password = "changeme"')

    # vendor/ folders: a real one in the cargo registry if present, pip's _vendor
    vendor_rs = sorted(str(x.relative_to(corpus)) for x in (corpus / cargo_rel).glob("*/*/src/vendor")
                       if x.is_dir())
    vendor_dir = vendor_rs[0] if vendor_rs else f"{find_crate(corpus, cargo_rel, 'r-efi', rng)}/vendor"
    rel = f"{vendor_dir}/acme_payments.rs"
    p.write(rel, f"""//! Vendored client of the payments gateway.

pub struct Client {{ key: &'static str }}

pub const GATEWAY_KEY: &str = "{v('stripe-restricted')}";
pub const PERPLEXITY_FALLBACK: &str = "{v('groq')}";

impl Client {{
    pub fn new() -> Self {{ Client {{ key: GATEWAY_KEY }} }}
}}
""")
    p.true(rel, "stripe-restricted", "code", "vendor/ folder")
    p.true(rel, "groq", "code", "vendor/ folder")
    pip_vendor = sorted(str(x.relative_to(corpus)) for x in (corpus / py_rel).glob("site-packages/pip/_vendor/*.py"))
    if pip_vendor:
        rel = pip_vendor[len(pip_vendor) // 2]
        p.insert_lines(rel, [f'_TELEMETRY_DSN = "{p.s["mongodb-password"].context[0]}"'], where="end")
        p.true(rel, "mongodb-password", "code", "vendor/ folder (pip/_vendor)")

    # git-ignored files with a .gitignore next to them
    crate_ign = find_crate(corpus, cargo_rel, "autocfg", rng)
    p.append_text(f"{crate_ign}/.gitignore", "secrets.toml\n")
    rel = f"{crate_ign}/secrets.toml"
    p.write(rel, f"""[release]
crates_io_token = "{v('crates-io')}"
openai_api_key = "{v('openai-svcacct')}"
""")
    p.true(rel, "crates-io", "code", "git-ignored file")
    p.true(rel, "openai-svcacct", "code", "git-ignored file")
    ign_dir = py_files[1].rsplit("/", 1)[0]
    p.append_text(f"{ign_dir}/.gitignore", "local_settings.py\n")
    rel = f"{ign_dir}/local_settings.py"
    p.write(rel, f"""# machine-local overrides; ignored by git
DEBUG = False
SENTRY_AUTH_TOKEN = "{v('sentry')}"
DATABASE_PASSWORD = "{v('db-password')}"
DATABRICKS_TOKEN = "{v('databricks')}"
""")
    for sid in ("sentry", "db-password", "databricks"):
        p.true(rel, sid, "code", "git-ignored file")

    # placeholder decoys inside real code
    rel = py_files[2]
    p.insert_lines(rel, ['api_key = "your-api-key-here"  # set via environment'])
    p.decoy(rel, "your-api-key-here", "your-api-key-here", "code", needle='api_key = "your-api-key-here"')
    rel = rs_files[2]
    p.insert_lines(rel, ['let token = "<TOKEN>"; // filled in by the installer'])
    p.decoy(rel, "<TOKEN> placeholder", "<TOKEN>", "code", needle='let token = "<TOKEN>"')
    rel = py_files[3]
    p.insert_lines(rel, [f'STRIPE_TEST_KEY = "{stripe_test}"'])
    p.decoy(rel, "Stripe test key", stripe_test, "code")


# --------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------

def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def locate(corpus: Path, path: str, needle: str) -> list[int]:
    text = (corpus / path).read_text(encoding="utf-8")
    out, start = [], 0
    while True:
        i = text.find(needle, start)
        if i < 0:
            return out
        out.append(line_of(text, i))
        start = i + 1


def corpus_size(corpus: Path) -> tuple[int, int]:
    files = size = 0
    for root, _dirs, names in os.walk(corpus):
        for name in names:
            st = os.lstat(os.path.join(root, name))
            if not os.path.islink(os.path.join(root, name)):
                files += 1
                size += st.st_size
    return files, size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", help="seed for the fakes and their placement (default: a fresh one from `secrets`)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="work folder (default: bench/work)")
    ap.add_argument("--cargo", type=Path, default=DEFAULT_CARGO, help="cargo registry src folder")
    ap.add_argument("--python", type=Path, default=DEFAULT_PYTHON, help="a Python installation's library")
    args = ap.parse_args()

    seed = args.seed if args.seed is not None else str(secrets.randbits(64))
    out: Path = args.out.resolve()
    corpus = out / "corpus"
    if corpus.exists():
        shutil.rmtree(corpus)  # removes links only; the sources are untouched
    corpus.mkdir(parents=True)

    cargo_rel, py_rel = "cargo-registry", "python3.11"
    copied = {}
    for src, rel in ((args.cargo, cargo_rel), (args.python, py_rel)):
        if not src.is_dir():
            print(f"make_corpus: {src} is missing", file=sys.stderr)
            return 2
        files, linked = link_tree(src, corpus / rel)
        copied[rel] = {"source": str(src), "files": files, "hard_linked": linked}
        print(f"make_corpus: {rel}: {files} files from {src} ({linked} hard-linked)")

    drbg = Drbg(seed, "secrets")
    secret_map = make_secrets(drbg)
    planter = Planter(corpus, secret_map, random.Random(f"mayfly-bench/placement/{seed}"))
    plant_all(planter, corpus, cargo_rel, py_rel, Drbg(seed, "decoys"))

    # Resolve every planted copy to its line.
    secrets_out: dict[str, dict] = {
        sid: {"kind": s.kind, "value": s.value, "context": s.context, "locations": []} for sid, s in secret_map.items()
    }
    for plant in planter.plants:
        loc = {"path": plant.path, "surface": plant.surface, "variant": plant.variant}
        if plant.cell is not None:
            loc.update(line=None, cell=plant.cell)
        else:
            lines = locate(corpus, plant.path, plant.needle)
            if len(lines) != 1:
                raise SystemExit(f"{plant.secret} in {plant.path}: needle found {len(lines)} times")
            loc["line"] = lines[0]
        secrets_out[plant.secret]["locations"].append(loc)
    unplanted = [sid for sid, s in secrets_out.items() if not s["locations"]]
    if unplanted:
        raise SystemExit(f"secrets never planted: {unplanted}")
    decoys_out = []
    for d in planter.decoys:
        entry = {"kind": d.kind, "value": d.value, "path": d.path, "surface": d.surface}
        if d.cell is not None:
            entry.update(line=None, cell=d.cell)
        else:
            lines = locate(corpus, d.path, d.needle)
            if not lines:
                raise SystemExit(f"decoy {d.value!r} not found in {d.path}")
            entry["line"] = lines[0]
        decoys_out.append(entry)

    files, size = corpus_size(corpus)
    locations = sum(len(s["locations"]) for s in secrets_out.values())
    by_surface: dict[str, int] = {}
    for s in secrets_out.values():
        for loc in s["locations"]:
            by_surface[loc["surface"]] = by_surface.get(loc["surface"], 0) + 1
    manifest = {
        "schema": "mayfly.bench.manifest/v1",
        "seed": seed,
        "corpus": {"root": str(corpus), "files": files, "bytes": size, "sources": copied},
        "summary": {
            "secrets": len(secrets_out),
            "locations": locations,
            "locations_by_surface": dict(sorted(by_surface.items())),
            "decoys": len(decoys_out),
        },
        "secrets": secrets_out,
        "decoys": decoys_out,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"make_corpus: seed {seed}: {files} files, {size} bytes ({size / 1e6:.1f} MB); "
          f"{len(secrets_out)} secrets in {locations} locations; {len(decoys_out)} decoys")
    print(f"make_corpus: locations by surface: {json.dumps(manifest['summary']['locations_by_surface'])}")
    print(f"make_corpus: manifest {out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
