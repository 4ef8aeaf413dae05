#!/usr/bin/env python3
"""Small helpers for bench/run_broker.sh (standard library only).

  stats.py put FILE KEY VALUE     set KEY (dots nest: "peak.latency") in the JSON
                                  object in FILE to VALUE: a JSON literal, or
                                  @path for a JSON file; FILE is created if missing
  stats.py put --string FILE KEY TEXT   the same with TEXT stored as a JSON string
  stats.py hey FILE               parse hey's text summary into JSON
  stats.py field KEY              print KEY of the JSON object read on stdin
  stats.py summary --results DIR --out FILE
                                  merge DIR/*.json into FILE, print the table
"""
import argparse
import json
import pathlib
import re
import sys


def load(path: pathlib.Path) -> dict:
    return json.loads(path.read_text()) if path.exists() and path.stat().st_size else {}


def dig(obj, key: str):
    for part in key.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def cmd_put(args) -> None:
    path = pathlib.Path(args.file)
    data = load(path)
    if args.string:
        value = args.value
    elif args.value.startswith("@"):
        value = json.loads(pathlib.Path(args.value[1:]).read_text())
    else:
        value = json.loads(args.value)
    node = data
    parts = args.key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    path.write_text(json.dumps(data, indent=2) + "\n")


def emit(value) -> None:
    if value is None:
        sys.exit(1)
    print(value if isinstance(value, str) else json.dumps(value))


def cmd_field(args) -> None:
    emit(dig(json.load(sys.stdin), args.key))


def cmd_hey(args) -> None:
    """hey 0.1.4 prints times in seconds with 4 decimals (0.1 ms resolution)."""
    text = pathlib.Path(args.file).read_text()
    out = {"percentiles_ms": {}, "status_codes": {}, "errors": {}}
    m = re.search(r"Total:\s+([\d.]+) secs", text)
    out["duration_s"] = float(m.group(1)) if m else None
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["requests_per_s"] = float(m.group(1)) if m else None
    for name in ("Slowest", "Fastest", "Average"):
        m = re.search(rf"{name}:\s+([\d.]+) secs", text)
        out[name.lower() + "_ms"] = round(float(m.group(1)) * 1000, 1) if m else None
    for pct, secs in re.findall(r"^\s+(\d+)% in ([\d.]+) secs", text, re.M):
        out["percentiles_ms"]["p" + pct] = round(float(secs) * 1000, 1)
    section = text.split("Status code distribution:", 1)
    if len(section) == 2:
        for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", section[1].split("Error distribution:")[0]):
            out["status_codes"][code] = int(n)
    section = text.split("Error distribution:", 1)
    if len(section) == 2:
        for n, msg in re.findall(r"\[(\d+)\]\s+(.+)", section[1]):
            out["errors"][msg.strip()[:200]] = int(n)
    out["responses"] = sum(out["status_codes"].values())
    out["non_2xx"] = sum(n for c, n in out["status_codes"].items() if not c.startswith("2"))
    out["failed"] = sum(out["errors"].values())
    print(json.dumps(out))


# --- summary ----------------------------------------------------------------
def fmt(value, unit="", digits=1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}{unit}"


def revoke_secs(entry):
    """A revocation entry is {"seconds": s, ...} or {"timed_out_after_s": n, ...}."""
    if not entry:
        return "-"
    if entry.get("timed_out_after_s") is not None:
        return f">{entry['timed_out_after_s']} s (timed out)"
    return fmt(entry.get("seconds"), " s", 3)


def targets_of(peers: dict, may: dict) -> dict:
    """The broker issue's targets, against each OpenBao configuration measured."""
    targets = {}
    may_rps = dig(may, "peak.requests_per_s")
    floor_rps = dig(may, "http_floor.requests_per_s")
    for name, bao in peers.items():
        bao_rps = dig(bao, "peak.requests_per_s")
        if bao_rps and may_rps:
            ratio = may_rps / bao_rps
            targets[f"throughput_ratio_vs_{name}"] = {"value": round(ratio, 2), "target": ">= 20",
                                                      "met": ratio >= 20}
        if bao_rps and floor_rps:
            # Not a target: the most the 20x target could reach on this machine.
            targets[f"http_floor_ratio_vs_{name}"] = {"value": round(floor_rps / bao_rps, 2),
                                                      "target": ">= 20 (bound)", "met": floor_rps / bao_rps >= 20}
    p99 = dig(may, "half_peak.percentiles_ms.p99")
    if p99 is not None:
        targets["mayfly_half_peak_p99_ms"] = {"value": p99, "target": "< 5", "met": p99 < 5}
    cpu, n = dig(may, "peak.server_cpu_s"), dig(may, "peak.requests")
    if cpu is not None and n:
        per = cpu / n * 1e6
        targets["mayfly_server_cpu_us_per_exchange"] = {"value": round(per, 1), "target": "<= 60", "met": per <= 60}
    for key in ("task_end", "admin_revoke"):
        entry = dig(may, f"revocation.{key}")
        if entry:
            secs = entry.get("seconds")
            targets[f"mayfly_{key}_s"] = {"value": secs if secs is not None else revoke_secs(entry),
                                          "target": "< 1", "met": secs is not None and secs < 1}
    return targets


# The columns of the table, in order, and their headings.
COLUMNS = (("openbao", "OpenBao dev (memory)"), ("openbao-raft", "OpenBao raft (disk)"),
           ("mayfly", "Mayfly token exchange"))


def cmd_summary(args) -> None:
    results = {p.stem: json.loads(p.read_text()) for p in sorted(pathlib.Path(args.results).glob("*.json"))}
    meta = results.pop("meta", {})
    may = results.get("mayfly", {})
    peers = {name: results[name] for name in ("openbao", "openbao-raft") if results.get(name)}
    targets = targets_of(peers, may)
    pathlib.Path(args.out).write_text(json.dumps(
        {"meta": meta, **{name: results.get(name, {}) for name, _ in COLUMNS}, "targets": targets},
        indent=2) + "\n")
    columns = [(name, head, results.get(name, {})) for name, head in COLUMNS if results.get(name)]

    def value(key, unit="", digits=1, scale=1.0):
        def of(r):
            v = dig(r, key)
            return fmt(v * scale if isinstance(v, (int, float)) and not isinstance(v, bool) else v, unit, digits)
        return of

    def cores(part):
        def of(r):
            cpu, secs = dig(r, f"{part}.load_generator_cpu_s"), dig(r, f"{part}.duration_s")
            return fmt(cpu / secs, " cores", 2) if cpu is not None and secs else "-"
        return of

    def per_request(part, who="server"):
        def of(r):
            cpu, n = dig(r, f"{part}.{who}_cpu_s"), dig(r, f"{part}.requests")
            return fmt(cpu / n * 1e6, " µs", 0) if cpu is not None and n else "-"
        return of

    def rate(r):
        return (f"{fmt(dig(r, 'half_peak.requests_per_s'), digits=0)} of {fmt(dig(r, 'half_peak.target_rps'), digits=0)}"
                if r.get("half_peak") else "-")

    def workers(r):
        return f"{dig(r, 'half_peak.workers')} x {dig(r, 'half_peak.q_per_worker')}" if r.get("half_peak") else "-"

    def revocation(r):
        # OpenBao's one revocation, or Mayfly's by the end of a task.
        entry = r.get("revocation") or {}
        return revoke_secs(entry.get("task_end", entry))

    def revoked(r):
        return fmt(dig(r, "revocation.tokens") or dig(r, "revocation.task_end.tokens"), digits=0)

    def dead(r):
        found = dig(r, "revocation.token_rejected")
        return fmt(found if found is not None else dig(r, "revocation.task_end.token_inactive"))

    def fsync(r):
        return (" / ".join(fmt(dig(r, f"disk_fsync.{k}"), " ms", 2) for k in ("p50_ms", "p99_ms", "max_ms"))
                if r.get("disk_fsync") else "-")

    rows = [
        ("peak requests/s (wrk)", value("peak.requests_per_s")),
        ("  wrk connections", value("peak.connections", digits=0)),
        *[(f"  latency {label} at peak", value(f"peak.latency_us.{key}", " ms", 2, 1e-3))
          for label, key in (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p99_9"))],
        ("  wrk CPU use", cores("peak")),
        ("  server CPU per request at peak", per_request("peak")),
        ("  wrk CPU per request at peak", per_request("peak", "load_generator")),
        ("half peak: requests/s got of asked (hey)", rate),
        ("  hey workers x rate each", workers),
        ("  hey CPU use", cores("half_peak")),
        ("  latency p50 at half peak", value("half_peak.percentiles_ms.p50", " ms")),
        ("  latency p99 at half peak", value("half_peak.percentiles_ms.p99", " ms")),
        ("bulk revocation (prefix / task end)", revocation),
        ("  tokens revoked", revoked),
        ("  sample token dead afterwards", dead),
        ("bulk revocation (admin, by owner)", lambda r: revoke_secs(dig(r, "revocation.admin_revoke"))),
        ("  tokens revoked", value("revocation.admin_revoke.tokens", digits=0)),
        ("  sample token dead afterwards", value("revocation.admin_revoke.token_inactive")),
        ("expiry: inactive after exp", value("expiry.inactive_after_exp_s", " s", 3)),
        ("HTTP floor: GET jwks.json requests/s (wrk)", value("http_floor.requests_per_s")),
        ("  wrk CPU use", cores("http_floor")),
        ("  server CPU per request", per_request("http_floor")),
        ("  wrk CPU per request", per_request("http_floor", "load_generator")),
        ("one core: Ed25519 signature", value("component_costs.ed25519_sign_us", " µs")),
        ("one core: signed access token", value("component_costs.access_token_ed25519_us", " µs")),
        ("one core: Cedar decision (example policies)", value("component_costs.cedar_decision_examples_us", " µs")),
        ("one core: lease writer, leases/s", value("writer.leases_per_s", digits=0)),
        ("  writer CPU per lease", value("writer.writer_cpu_us_per_lease", " µs", 1)),
        ("disk: fsync of 4 KiB p50 / p99 / max", fsync),
    ]
    table = [("", *[head for _, head, _ in columns])] + [
        (label, *[of(r) for _, _, r in columns]) for label, of in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    print()
    for row in table:
        print("  ".join([f"{row[0]:<{widths[0]}}"] + [f"{cell:>{w}}" for cell, w in zip(row[1:], widths[1:])]))
    print()
    for name, head, r in columns:
        if r.get("note"):
            print(f"{head}: {r['note']}")
    if not may:
        print("Mayfly: not measured" + (f" ({meta['mayfly_skipped']})" if meta.get("mayfly_skipped") else ""))
    for name, t in targets.items():
        print(f"target {name}: {t['value']} (want {t['target']}): {'met' if t['met'] else 'NOT met'}")
    if meta.get("load_before"):
        print(f"load average before / after: {meta['load_before']} / {meta.get('load_after', '?')}")
    print(f"full figures: {args.out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("put"); p.add_argument("--string", action="store_true"); p.add_argument("file"); p.add_argument("key"); p.add_argument("value")
    p.set_defaults(func=cmd_put)
    p = sub.add_parser("field"); p.add_argument("key"); p.set_defaults(func=cmd_field)
    p = sub.add_parser("hey"); p.add_argument("file"); p.set_defaults(func=cmd_hey)
    p = sub.add_parser("summary"); p.add_argument("--results", required=True); p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_summary)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
