#!/usr/bin/env python3
"""Scores each scanner's JSON report against the corpus manifest.

Recall counts planted (secret, location) pairs: a location is found when
the tool reports a finding in that file whose reported value identifies the
secret (it contains the planted value, or is a large enough piece of it; a
PEM key also counts by its BEGIN line), or -- for a finding that carries no
value (a redacting report) -- one on the planted line +-1. SQLite
locations have no line: they need the value, or the same table cell.

A decoy is reported when a finding lands on the decoy's line (or database
cell), or reports the decoy's value (decoys of 12 characters or more), and
does not identify a true secret planted in that file.

Reads bench/work/manifest.json, bench/work/out/<tool>.json,
bench/work/timings/<tool>.<n>.time (GNU time -v) and
bench/work/versions.json; prints a Markdown report and writes it to
bench/work/results.md (details in bench/work/score-details.json).

Usage: bench/score.py [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOLS = ["mayfly", "kingfisher", "betterleaks", "gitleaks"]
SURFACE_ORDER = ["code", "env", "mcp-config", "ci", "shared-config", "prompt-log", "notebook",
                 "chat-export", "shell-history", "database"]


@dataclass
class Finding:
    path: str
    line: int | None
    values: list[str]
    rule: str
    cell: tuple | None = None
    primary: bool = True  # False for values a tool reports as part of another finding


def canon(s: str) -> str:
    """Drops whitespace and string escapes, so a PEM key compares across files and JSON."""
    return re.sub(r"\\[nrt]|\\|\s", "", s)


class PathNorm:
    """Maps a reported path to the corpus-relative path of the file it is in.

    Some tools report a member of a container (Kingfisher shows a SQLite
    table as `state.db/connectors.sql`): such a path maps to the container.
    """

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self.prefixes = [root.rstrip("/") + "/", "./corpus/", "corpus/"]
        self.cache: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        if path not in self.cache:
            self.cache[path] = self.resolve(path)
        return self.cache[path]

    def resolve(self, path: str) -> str:
        path = path.replace("\\", "/")
        for prefix in self.prefixes:
            if path.startswith(prefix):
                path = path[len(prefix):]
                break
        else:
            i = path.find("/corpus/")
            if i >= 0:
                path = path[i + len("/corpus/"):]
        parts = path.split("/")
        for n in range(len(parts), 0, -1):
            candidate = "/".join(parts[:n])
            if (self.root / candidate).is_file():
                return candidate
        return path


# --------------------------------------------------------------------------
# Report parsers
# --------------------------------------------------------------------------

def parse_mayfly(doc, norm) -> list[Finding]:
    out = []
    for group in doc.get("secrets", []):
        value = group.get("secret")
        rule = group.get("rule", {}).get("id", "?")
        for loc in group.get("locations", []):
            cell = loc.get("cell")
            out.append(Finding(norm(loc["path"]), loc.get("line"), [value] if value else [], rule,
                               (cell["table"], cell["column"], cell["row"]) if cell else None))
    return out


def parse_kingfisher(doc, norm) -> list[Finding]:
    out = []
    for item in doc.get("findings", []):
        f = item.get("finding", {})
        rule = item.get("rule", {}).get("id", "?")
        path = norm(f.get("path", ""))
        values = [f["snippet"]] if f.get("snippet") else []
        out.append(Finding(path, f.get("line"), values, rule))
        for name, value in (f.get("dependent_captures") or {}).items():
            if value:
                out.append(Finding(path, None, [value], f"{rule}/{name}", primary=False))
    return out


def parse_betterleaks(doc, norm) -> list[Finding]:
    out = []
    items = doc.get("findings", []) if isinstance(doc, dict) else doc

    def one(item, primary: bool) -> None:
        match = item.get("match", {})
        loc = item.get("location", {})
        values = [v for v in (match.get("value"), match.get("full")) if v]
        out.append(Finding(norm(loc.get("path", "")), loc.get("start_line"), values, item.get("rule_id", "?"),
                           primary=primary))

    for item in items:
        one(item, True)
        for cs in item.get("component_sets") or []:
            for comp in cs.get("components") or []:
                one(comp, False)
    return out


def parse_gitleaks(doc, norm) -> list[Finding]:
    out = []
    for item in doc or []:
        values = [v for v in (item.get("Secret"), item.get("Match")) if v and v != "REDACTED"]
        out.append(Finding(norm(item.get("File", "")), item.get("StartLine"), values, item.get("RuleID", "?")))
    return out


PARSERS = {"mayfly": parse_mayfly, "kingfisher": parse_kingfisher, "betterleaks": parse_betterleaks,
           "gitleaks": parse_gitleaks}


def load_report(path: Path):
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    if not text:
        return []
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # JSON Lines
        return [json.loads(line) for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------

@dataclass
class Target:
    sid: str
    value: str
    canon_value: str
    path: str
    line: int | None
    surface: str
    variant: str
    cell: tuple | None


def identifies(reported: str, target_value: str) -> bool:
    r, v = canon(reported), target_value
    if not r:
        return False
    if v in r:
        return True
    if v.startswith("-----BEGIN") and r.startswith("-----BEGIN") and r in v:
        return True  # a key reported by its first line or a prefix of its body
    return len(r) >= max(16, len(v) // 2) and r in v


def finding_hits_target(f: Finding, t: Target) -> bool:
    if f.path != t.path:
        return False
    if f.values:
        return any(identifies(v, t.canon_value) for v in f.values)
    if t.line is None:
        return f.cell is not None and f.cell == t.cell
    return f.line is not None and abs(f.line - t.line) <= 1


@dataclass
class Score:
    tool: str
    findings: int = 0
    found: list[Target] = field(default_factory=list)
    missed: list[Target] = field(default_factory=list)
    decoys_hit: list[dict] = field(default_factory=list)
    unplanted: int = 0


def score(tool: str, findings: list[Finding], targets: list[Target], decoys: list[dict]) -> Score:
    sc = Score(tool, findings=sum(1 for f in findings if f.primary))
    by_path: dict[str, list[Finding]] = {}
    for f in findings:
        by_path.setdefault(f.path, []).append(f)
    attributed: set[int] = set()
    for t in targets:
        hits = [f for f in by_path.get(t.path, []) if finding_hits_target(f, t)]
        (sc.found if hits else sc.missed).append(t)
        attributed.update(id(f) for f in hits)
    true_in_file: dict[str, list[Target]] = {}
    for t in targets:
        true_in_file.setdefault(t.path, []).append(t)
    for d in decoys:
        cell = tuple(d["cell"].values()) if d.get("cell") else None
        hit_by = []
        for f in by_path.get(d["path"], []):
            if any(finding_hits_target(f, t) for t in true_in_file.get(d["path"], []) if f.values):
                continue  # the finding is a true secret on a nearby line
            decoy = canon(d["value"])
            if d.get("line") is not None:
                on_it = f.line == d["line"]
            else:
                on_it = f.cell is not None and f.cell == cell
            # a long decoy also counts by value, whatever line a tool gives
            on_it = on_it or (len(decoy) >= 12 and any(identifies(v, decoy) for v in f.values))
            if on_it:
                hit_by.append(f)
        if hit_by:
            attributed.update(id(f) for f in hit_by)
            sc.decoys_hit.append({**d, "rules": sorted({f.rule for f in hit_by})})
    sc.unplanted = sum(1 for f in findings if f.primary and id(f) not in attributed)
    return sc


# --------------------------------------------------------------------------
# Timings
# --------------------------------------------------------------------------

def parse_time_v(text: str) -> dict:
    def grab(label: str) -> str | None:
        m = re.search(rf"^\s*{re.escape(label)}:\s*(.+)$", text, re.M)
        return m.group(1).strip() if m else None

    wall = grab("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    secs = 0.0
    if wall:
        for part in wall.split(":"):
            secs = secs * 60 + float(part)
    return {
        "wall": secs,
        "cpu": float(grab("User time (seconds)") or 0) + float(grab("System time (seconds)") or 0),
        "rss_kib": int(grab("Maximum resident set size (kbytes)") or 0),
        "exit": int(grab("Exit status") or 0),
    }


def timings(work: Path, tool: str, folder: str = "timings") -> dict | None:
    runs = [parse_time_v(p.read_text()) for p in sorted((work / folder).glob(f"{tool}.*.time"))]
    if not runs:
        return None
    return {
        "runs": len(runs),
        "wall": statistics.median(r["wall"] for r in runs),
        "wall_all": [r["wall"] for r in runs],
        "cpu": statistics.median(r["cpu"] for r in runs),
        "rss_mib": statistics.median(r["rss_kib"] for r in runs) / 1024,
    }


# --------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=HERE / "work")
    args = ap.parse_args()
    work: Path = args.work

    manifest = json.loads((work / "manifest.json").read_text())
    root = Path(manifest["corpus"]["root"])
    if not root.is_absolute() or not root.is_dir():
        root = (work / "corpus").resolve()
    norm = PathNorm(str(root))
    corpus_bytes = manifest["corpus"]["bytes"]
    targets = []
    for sid, s in manifest["secrets"].items():
        for loc in s["locations"]:
            cell = tuple(loc["cell"].values()) if loc.get("cell") else None
            targets.append(Target(sid, s["value"], canon(s["value"]), loc["path"], loc.get("line"), loc["surface"],
                                  loc.get("variant", ""), cell))
    decoys = manifest["decoys"]
    versions = {}
    if (work / "versions.json").exists():
        versions = json.loads((work / "versions.json").read_text())

    rows, details, scores = [], {}, {}
    for tool in TOOLS:
        report = work / "out" / f"{tool}.json"
        if not report.exists():
            continue
        findings = PARSERS[tool](load_report(report), norm)
        sc = score(tool, findings, targets, decoys)
        scores[tool] = sc
        tm = timings(work, tool)
        rows.append((tool, versions.get(tool, "?"), tm, sc))
        details[tool] = {
            "version": versions.get(tool, "?"),
            "timing": tm,
            "findings": sc.findings,
            "found": len(sc.found),
            "total": len(targets),
            "missed": [{"secret": t.sid, "path": t.path, "line": t.line, "surface": t.surface, "variant": t.variant}
                       for t in sc.missed],
            "decoys_reported": sc.decoys_hit,
            "findings_outside_planted_files": sc.unplanted,
        }

    def fmt(x, spec):
        return format(x, spec) if x is not None else "n/a"

    lines = [
        f"Corpus: {manifest['corpus']['files']} files, {corpus_bytes} bytes ({corpus_bytes / 1e6:.1f} MB); "
        f"{manifest['summary']['secrets']} planted secrets in {len(targets)} locations; {len(decoys)} decoys "
        f"(seed {manifest['seed']}).",
        "",
        "| tool | version | wall s | CPU s | max RSS MiB | MB/s | recall | planted found / total | decoys reported | total findings |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for tool, version, tm, sc in rows:
        wall = tm["wall"] if tm else None
        lines.append(
            f"| {tool} | {version} | {fmt(wall, '.2f')} | {fmt(tm and tm['cpu'], '.2f')} | "
            f"{fmt(tm and tm['rss_mib'], '.0f')} | {fmt(wall and corpus_bytes / 1e6 / wall, '.0f')} | "
            f"{len(sc.found) / len(targets):.3f} | {len(sc.found)} / {len(targets)} | {len(sc.decoys_hit)} / {len(decoys)} | "
            f"{sc.findings} |"
        )
    lines += ["", "Wall, CPU (user+sys) and RSS are medians over the timed runs "
                  "(" + ", ".join(f"{t}: {tm['runs']}" for t, _, tm, _ in rows if tm) + ").", ""]

    # Recall by surface.
    surfaces = [s for s in SURFACE_ORDER if any(t.surface == s for t in targets)]
    lines += ["Planted locations found, by surface:", "",
              "| surface | total | " + " | ".join(t for t, *_ in rows) + " |",
              "| --- | ---: | " + " | ".join("---:" for _ in rows) + " |"]
    for s in surfaces:
        total = sum(1 for t in targets if t.surface == s)
        cells = [str(sum(1 for t in sc.found if t.surface == s)) for *_, sc in rows]
        lines.append(f"| {s} | {total} | " + " | ".join(cells) + " |")
    lines.append("")

    lines += ["Findings that are neither a planted secret nor a decoy (the real code's own test keys, "
              "documentation examples and false positives; not scored):", ""]
    lines += [f"- {tool}: {sc.unplanted} of {sc.findings}" for tool, _, _, sc in rows]
    lines.append("")

    for tool, _, _, sc in rows:
        lines.append(f"{tool}: missed {len(sc.missed)}")
        for t in sc.missed:
            where = f"{t.path}:{t.line}" if t.line is not None else f"{t.path}#{'.'.join(map(str, t.cell or ()))}"
            lines.append(f"- {t.sid} @ {where} [{t.surface}{', ' + t.variant if t.variant else ''}]")
        if sc.decoys_hit:
            lines.append(f"{tool}: decoys reported {len(sc.decoys_hit)}")
            for d in sc.decoys_hit:
                lines.append(f"- {d['value']!r} @ {d['path']}:{d.get('line')} [{d['surface']}] by {', '.join(d['rules'])}")
        lines.append("")

    text = "\n".join(lines)
    print(text)
    (work / "results.md").write_text(text + "\n")
    (work / "score-details.json").write_text(json.dumps(details, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
