#!/usr/bin/env python3
"""Scores each scanner's git-history report against the history manifest.

A planted secret counts as found when the tool reports, anywhere in the
history, a finding whose value identifies it (contains the planted value,
or is a large enough piece of it; a PEM key also counts by its first line;
values a tool reports as parts of another finding count too). It is
"found at its commit" when such a finding also names the commit that
introduced the secret and the file it was planted in.

Findings whose values identify no planted secret are "extra": the real
code's own test keys and documentation examples, and false positives. They
are counted as reported (one per finding record) and as distinct values.

For Mayfly it also checks each planted secret's `present_at_head` flag and
introducing commit against the manifest.

Reads <work>/history-manifest.json, <work>/out-git/<tool>.json,
<work>/timings-git/<tool>.<n>.time, <work>/versions-git.json and, if present,
<work>/staged.json (the --staged timing made by run_git.sh). Prints a
Markdown report and writes <work>/results-git.md and
<work>/score-git-details.json.

Usage: bench/score_git.py [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from score import canon, identifies, load_report, timings as timings_in  # noqa: E402

TOOLS = ["mayfly", "kingfisher", "betterleaks", "gitleaks"]


@dataclass
class GitFinding:
    path: str
    commit: str | None
    values: list[str]
    rule: str
    primary: bool = True
    at_head: bool | None = None


def strip_repo(path: str, repo_name: str) -> str:
    path = path.replace("\\", "/")
    for prefix in (f"{repo_name}/", f"./{repo_name}/"):
        if path.startswith(prefix):
            return path[len(prefix):]
    return path


def parse_mayfly(doc, repo) -> list[GitFinding]:
    out = []
    for group in doc.get("secrets", []):
        value = group.get("secret")
        for loc in group.get("locations", []):
            out.append(GitFinding(strip_repo(loc["path"], repo), (loc.get("commit") or {}).get("id"),
                                  [value] if value else [], group.get("rule", {}).get("id", "?"),
                                  at_head=loc.get("present_at_head")))
    return out


def parse_kingfisher(doc, repo) -> list[GitFinding]:
    out = []
    for item in doc.get("findings", []):
        f = item.get("finding", {})
        rule = item.get("rule", {}).get("id", "?")
        gm = f.get("git_metadata") or {}
        commit = (gm.get("commit") or {}).get("id")
        path = strip_repo((gm.get("file") or {}).get("path") or f.get("path", ""), repo)
        out.append(GitFinding(path, commit, [f["snippet"]] if f.get("snippet") else [], rule))
        for name, value in (f.get("dependent_captures") or {}).items():
            if value:
                out.append(GitFinding(path, commit, [value], f"{rule}/{name}", primary=False))
    return out


def parse_betterleaks(doc, repo) -> list[GitFinding]:
    out = []
    items = doc.get("findings", []) if isinstance(doc, dict) else doc

    def one(item, commit, primary):
        match = item.get("match", {})
        loc = item.get("location", {})
        values = [v for v in (match.get("value"), match.get("full")) if v]
        out.append(GitFinding(strip_repo(loc.get("path", ""), repo), commit, values, item.get("rule_id", "?"),
                              primary=primary))

    for item in items:
        commit = (item.get("attributes") or {}).get("git.sha")
        one(item, commit, True)
        for cs in item.get("component_sets") or []:
            for comp in cs.get("components") or []:
                one(comp, commit, False)
    return out


def parse_gitleaks(doc, repo) -> list[GitFinding]:
    out = []
    for item in doc or []:
        values = [v for v in (item.get("Secret"), item.get("Match")) if v and v != "REDACTED"]
        out.append(GitFinding(strip_repo(item.get("File", ""), repo), item.get("Commit"), values,
                              item.get("RuleID", "?")))
    return out


PARSERS = {"mayfly": parse_mayfly, "kingfisher": parse_kingfisher, "betterleaks": parse_betterleaks,
           "gitleaks": parse_gitleaks}


def timings(work: Path, tool: str) -> dict | None:
    return timings_in(work, tool, "timings-git")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=HERE / "work")
    args = ap.parse_args()
    work: Path = args.work

    manifest = json.loads((work / "history-manifest.json").read_text())
    repo_name = Path(manifest["repository"]).name
    planted = manifest["secrets"]
    canon_values = {s["id"]: canon(s["value"]) for s in planted}
    vfile = work / "versions-git.json"
    versions = json.loads(vfile.read_text()) if vfile.exists() else {}

    def planted_ids(f: GitFinding) -> set[str]:
        return {sid for sid, cv in canon_values.items() if any(identifies(v, cv) for v in f.values)}

    rows, details = [], {}
    for tool in TOOLS:
        report = work / "out-git" / f"{tool}.json"
        if not report.exists():
            continue
        findings = PARSERS[tool](load_report(report), repo_name)
        found, at_commit = set(), set()
        extra_records = 0
        extra_values: dict[str, dict] = {}
        for f in findings:
            ids = planted_ids(f)
            found |= ids
            for s in planted:
                if s["id"] in ids and f.commit == s["commit"] and f.path == s["path"]:
                    at_commit.add(s["id"])
            if not ids and f.primary:
                extra_records += 1
                key = canon(f.values[0]) if f.values else f"{f.path}:{f.rule}"
                e = extra_values.setdefault(key, {"rule": f.rule, "paths": set(), "value": (f.values or [""])[0]})
                e["paths"].add(f.path)
        missed = [s for s in planted if s["id"] not in found]
        check = {}
        if tool == "mayfly":
            # present_at_head and the introducing commit, per planted secret
            wrong = []
            for s in planted:
                locs = [f for f in findings if s["id"] in planted_ids(f)]
                if not locs:
                    continue
                heads = {f.at_head for f in locs}
                commits = {f.commit for f in locs}
                paths = {f.path for f in locs}
                if heads != {s["at_head"]} or s["commit"] not in commits or s["path"] not in paths:
                    wrong.append({"secret": s["id"], "manifest": {"commit": s["commit"], "path": s["path"],
                                                                 "at_head": s["at_head"]},
                                  "reported": {"commits": sorted(c or "" for c in commits), "paths": sorted(paths),
                                               "present_at_head": sorted(map(str, heads))}})
            check = {"locations_disagreeing_with_manifest": wrong}
        tm = timings(work, tool)
        rows.append((tool, versions.get(tool, "?"), tm, found, at_commit, extra_records, extra_values,
                     sum(1 for f in findings if f.primary)))
        details[tool] = {
            "version": versions.get(tool, "?"), "timing": tm,
            "findings": sum(1 for f in findings if f.primary),
            "found": len(found), "total": len(planted), "found_at_introducing_commit": len(at_commit),
            "missed": [{"secret": s["id"], "kind": s["kind"], "path": s["path"], "commit": s["commit"],
                        "ref": s["ref"], "at_head": s["at_head"], "how": s["how"]} for s in missed],
            "found_elsewhere_only": sorted(found - at_commit),
            "extra_findings": extra_records,
            "extra_values": sorted(({"rule": e["rule"], "paths": sorted(e["paths"]), "value": e["value"][:80]}
                                    for e in extra_values.values()), key=lambda e: (e["paths"][0], e["rule"])),
            **check,
        }

    sm = manifest["summary"]

    def fmt(x, spec):
        return format(x, spec) if x is not None else "n/a"

    lines = [
        f"History: {sm['commits']} commits ({sm['merges']} merges), {len(sm['refs'])} refs, {sm['blobs']} blobs "
        f"({sm['blob_bytes'] / 1e6:.1f} MB), size-pack {sm['size_pack_kib'] / 1024:.1f} MiB, "
        f"{sm['files_at_head']} files at HEAD; {len(planted)} planted secrets ({sm['secrets_at_head']} still at "
        f"HEAD) (seed {manifest['seed']}).",
        "",
        "| tool | version | wall s | CPU s | max RSS MiB | recall | found / planted | at introducing commit | "
        "extra findings | extra distinct values | total findings |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for tool, version, tm, found, at_commit, extra, extra_values, total in rows:
        lines.append(
            f"| {tool} | {version} | {fmt(tm and tm['wall'], '.2f')} | {fmt(tm and tm['cpu'], '.2f')} | "
            f"{fmt(tm and tm['rss_mib'], '.0f')} | {len(found) / len(planted):.3f} | {len(found)} / {len(planted)} | "
            f"{len(at_commit)} | {extra} | {len(extra_values)} | {total} |")
    lines += ["", "Wall, CPU (user+sys) and RSS are medians over the timed runs (" +
              ", ".join(f"{t}: " + "/".join(f"{w:.2f}" for w in tm["wall_all"]) + " s"
                        for t, _, tm, *_ in rows if tm) + ").", ""]
    timed = [(t, tm["wall"]) for t, _, tm, *_ in rows if tm]
    peers = [(t, w) for t, w in timed if t != "mayfly"]
    may = next((w for t, w in timed if t == "mayfly"), None)
    if peers and may is not None:
        fastest = min(peers, key=lambda x: x[1])
        lines.append(f"Fastest peer: {fastest[0]} ({fastest[1]:.2f} s); Mayfly / fastest peer = "
                     f"{may / fastest[1]:.2f} (target <= 0.5).")
        lines.append("")

    for tool, *_ in rows:
        d = details[tool]
        lines.append(f"{tool}: missed {len(d['missed'])}")
        for m in d["missed"]:
            lines.append(f"- {m['secret']} ({m['kind']}) in {m['path']} @ {m['commit'][:10]} [{m['how']}]")
        if d["found_elsewhere_only"]:
            lines.append(f"{tool}: found, but not at the introducing commit and path: "
                         + ", ".join(d["found_elsewhere_only"]))
        if d.get("locations_disagreeing_with_manifest"):
            lines.append(f"{tool}: locations disagreeing with the manifest:")
            for w in d["locations_disagreeing_with_manifest"]:
                lines.append(f"- {json.dumps(w)}")
        lines.append("")

    staged = work / "staged.json"
    if staged.exists():
        st = json.loads(staged.read_text())
        lines += ["`--staged` (" + st.get("description", "") + "):", "",
                  "| tool | command | runs | mean ms | min ms | max ms | finds the staged secret |",
                  "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
        for r in st["results"]:
            lines.append(f"| {r['tool']} | `{r['command']}` | {r['runs']} | {r['mean_ms']:.1f} | {r['min_ms']:.1f} | "
                         f"{r['max_ms']:.1f} | {r.get('found', '?')} |")
        lines.append("")

    text = "\n".join(lines)
    print(text)
    (work / "results-git.md").write_text(text + "\n")
    (work / "score-git-details.json").write_text(json.dumps(details, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
