"""Plants N distinct secrets, one line each, in the formats of the rules that
have a verifier, for `bench/run_validate.sh`.

Each rule's first example is found with the real binary, then its secret is
varied (characters in the middle third replaced by others of the same
class) until N distinct secrets are found again by `mayfly scan`. Writes:
  OUT/secrets/<rule>.txt      the planted lines
  OUT/fake.json               the fake providers' config (two in three live)
  OUT/expected.json           value -> expected verdict
  OUT/endpoints.txt           MAYFLY_PROVIDER_ENDPOINTS for the fake's port
"""

import argparse
import json
import random
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def scan(mayfly: str, path: Path) -> list[dict]:
    out = subprocess.run([mayfly, "scan", str(path), "--format", "json", "--show-secrets", "--no-copies",
                          "--no-progress"], capture_output=True, text=True, env={"MAYFLY_HOME": str(path.parent / "home"),
                                                                                 "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout)["secrets"]


def vary(secret: str, rng: random.Random) -> str:
    chars = list(secret)
    lo, hi = len(chars) // 3, 2 * len(chars) // 3
    for i in range(lo, hi):
        c = chars[i]
        if c.isdigit():
            chars[i] = rng.choice("0123456789")
        elif c.islower() and c in "abcdef" and all(x in "0123456789abcdef" for x in secret[lo:hi]):
            chars[i] = rng.choice("abcdef")
        elif c.islower():
            chars[i] = rng.choice("abcdefghijklmnopqrstuvwxyz")
        elif c.isupper():
            chars[i] = rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    return "".join(chars)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mayfly", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", default="mayfly-validate-bench")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    out: Path = args.out
    (out / "home").mkdir(parents=True, exist_ok=True)
    rules_dir = ROOT / "crates/mayfly-scan/rules"
    examples: dict[str, str] = {}
    for f in sorted(rules_dir.glob("*.toml")):
        for rule in tomllib.loads(f.read_text())["rules"]:
            if rule.get("verify") and rule.get("verify") != "aws-sts":
                examples[rule["id"]] = rule["examples"][0]
    probe = out / "probe"
    probe.mkdir(exist_ok=True)
    for rid, text in examples.items():
        (probe / f"{rid}.txt").write_text(text + "\n")
    base: dict[str, str] = {}
    for s in scan(args.mayfly, probe):
        base.setdefault(s["rule"]["id"], s["secret"])
    # Candidates: many variants of every base secret, then keep what is found.
    per_rule = args.count // max(1, len(base)) * 2 + 4
    cand = out / "candidates"
    cand.mkdir(exist_ok=True)
    for rid, secret in base.items():
        lines = set()
        while len(lines) < per_rule:
            lines.add(examples[rid].replace(secret, vary(secret, rng)))
        (cand / f"{rid}.txt").write_text("\n".join(sorted(lines)) + "\n")
    found = scan(args.mayfly, cand)
    by_rule: dict[str, list[str]] = {}
    for s in found:
        by_rule.setdefault(s["rule"]["id"], []).append(s["secret"])
    # Round-robin over the rules until N.
    chosen: list[tuple[str, str]] = []
    queues = {r: sorted(v) for r, v in by_rule.items() if r in base}
    while len(chosen) < args.count and any(queues.values()):
        for r in sorted(queues):
            if queues[r] and len(chosen) < args.count:
                chosen.append((r, queues[r].pop()))
    if len(chosen) < args.count:
        print(f"plant: only {len(chosen)} distinct secrets found", file=sys.stderr)
        return 1
    secrets_dir = out / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    planted: dict[str, list[str]] = {}
    for rid, value in chosen:
        planted.setdefault(rid, []).append(examples[rid].replace(base[rid], value))
    for rid, lines in planted.items():
        (secrets_dir / f"{rid}.txt").write_text("\n".join(lines) + "\n")
    expected = {value: ("dead" if i % 3 == 2 else "live") for i, (_, value) in enumerate(chosen)}
    (out / "expected.json").write_text(json.dumps(expected))
    (out / "fake.json").write_text(json.dumps({"log": str(out / "requests.jsonl"),
                                               "live": [v for v, e in expected.items() if e == "live"]}))
    verifiers = tomllib.loads((ROOT / "crates/mayfly-providers/verifiers.toml").read_text())["verifiers"]
    origins = sorted({v["request"].split(" ", 1)[1].split("/")[2] for v in verifiers})
    (out / "endpoints.txt").write_text(",".join(f"https://{h}=http://127.0.0.1:PORT/{h}" for h in origins))
    print(f"plant: {len(chosen)} distinct secrets of {len(planted)} rules, {len(set(r for r, _ in chosen))} rules used")
    return 0


if __name__ == "__main__":
    sys.exit(main())
