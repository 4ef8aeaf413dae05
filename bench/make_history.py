#!/usr/bin/env python3
"""Builds the git repository of Mayfly's git-history benchmark.

No git host is reachable from the benchmark machine, so no real project's
history can be cloned. This script builds an honest stand-in: a synthetic
history of about 2,000 commits made only of real code that nobody on the
project wrote -- CPython 3.11.7's standard library (``Lib``, without
site-packages and byte-code caches), libgit2's C sources as shipped in the
``libgit2-sys`` crate, and 38 Rust crates from the local cargo registry
-- with fake credentials planted into it.

* The code is imported progressively over the first half of the history,
  a few directories at a time; the other commits edit files already there
  (insert, delete and replace line ranges, with lines taken from other
  real files of the same language), some delete files. Edits favour a
  skewed set of "hot" files, so many files have tens of versions, like a
  real project.
* Six authors, increasing commit dates over about three years; feature
  branches forked from ``main``, worked on alongside it and merged back
  with merge commits (some branch refs deleted after the merge, as a
  forge does); an unmerged branch; annotated and lightweight release tags;
  a tag whose commits are on no branch.
* About 30 fake credentials (the generators of ``make_corpus.py``, so the
  formats are the ones the directory benchmark uses): some added and
  deleted later (only in history), some still at HEAD, one only on a
  branch that is merged (removed on the branch before the merge), one only
  reachable from a tag, one only on an unmerged branch, one in a file that
  is edited many times after the secret was added, one in a ``.env``, in a
  JSON config, JSON-escaped in a ``.jsonl`` transcript, a PEM key file, a
  PEM key in a Rust string with ``\\n`` escapes...

The history is written with ``git fast-import`` into a bare repository
(``bench/work/history`` by default; bare, so a scanner given the folder
scans the history and nothing else), then repacked. The planted secrets are
listed in ``bench/work/history-manifest.json``: value, kind, introducing
commit, path, the ref it is reachable from, whether it is still in HEAD's
tree, and the commit that deleted it.

With ``--staged-repo DIR`` it instead clones that history into DIR (with a
working tree) and stages 20 modified real source files, one of them with a
fake credential the history does not hold, for timing ``mayfly scan
--staged`` (listed in ``bench/work/staged-manifest.json``).

Usage: bench/make_history.py [--seed N] [--commits 2000] [--out DIR]
       bench/make_history.py --seed N --staged-repo DIR [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_corpus as mc  # noqa: E402  (the secret generators)

DEFAULT_OUT = HERE / "work"
DEFAULT_CARGO = mc.DEFAULT_CARGO
DEFAULT_PYTHON = mc.DEFAULT_PYTHON

# Crates imported under crates/<name>/ (the first version found in the
# registry), besides libgit2's C sources. "name@2" picks a version starting with 2.
CRATES = ["regex-automata", "regex-syntax", "regex", "aho-corasick", "memchr", "syn@2", "serde_json",
          "serde", "clap_builder", "rustix", "winnow@0.7", "git2", "zip", "hashbrown@0.16", "indexmap",
          "rusqlite", "cc", "proptest", "insta", "ignore", "globset", "toml_parser", "flate2", "tar", "libc",
          "libz-sys", "portable-atomic", "zlib-rs", "bstr", "similar", "tempfile", "indicatif", "console",
          "walkdir", "anyhow", "thiserror", "log", "base64"]
MAX_FILE = 1_000_000  # bytes; larger files are left out of the import

AUTHORS = [
    ("Maria Lindqvist", "maria@acme-payments.io", 9),
    ("Tomasz Nowak", "tomasz.nowak@acme-payments.io", 7),
    ("Priya Raghavan", "priya@acme-payments.io", 6),
    ("Daniel Okafor", "dokafor@users.noreply.github.com", 4),
    ("Chen Wei", "chen.wei@acme-payments.io", 4),
    ("Sofia Marquez", "sofia.marquez@gmail.com", 2),
    ("release-bot", "release-bot@acme-payments.io", 1),
]
START_TIME = 1614592800  # 2021-03-01 10:00 UTC

VERBS = ["Fix", "Refactor", "Simplify", "Speed up", "Clean up", "Handle errors in", "Document", "Tidy",
         "Rework", "Add tests for", "Update", "Harden", "Deduplicate code in", "Improve logging in"]


# --------------------------------------------------------------------------
# Source files
# --------------------------------------------------------------------------

def read_text(path: Path) -> str | None:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_FILE:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def collect(src: Path, prefix: str, skip_dirs: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for root, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in skip_dirs and not (Path(root) / d).is_symlink())
        rel_root = Path(root).relative_to(src)
        for name in sorted(names):
            if name in (".cargo-ok", ".cargo_vcs_info.json") or name.startswith(mc.SKIP_FILE_PREFIXES):
                continue
            text = read_text(Path(root) / name)
            if text is None:
                continue
            out[str(Path(prefix) / rel_root / name)] = text
    return out


def load_sources(cargo: Path, python: Path) -> tuple[dict[str, str], list[dict]]:
    files: dict[str, str] = {}
    used: list[dict] = []

    def add(src: Path, prefix: str, skip: set[str]) -> None:
        got = collect(src, prefix, skip)
        files.update(got)
        used.append({"source": str(src), "prefix": prefix, "files": len(got),
                     "bytes": sum(len(t.encode()) for t in got.values())})

    add(python, "cpython/Lib", {"site-packages", "__pycache__", "config-3.11-x86_64-linux-gnu"})
    crates = sorted(p for p in cargo.glob("*/*") if p.is_dir())
    lg2 = [p for p in crates if p.name.startswith("libgit2-sys-") and (p / "libgit2").is_dir()]
    if lg2:
        add(lg2[0] / "libgit2", "libgit2", {".git"})
    for want in CRATES:
        # "regex" matches regex-1.13.2 (not regex-syntax-...); "syn@2" matches syn-2.0.119
        name, _, ver = want.partition("@")
        pat = re.escape(name) + "-" + (re.escape(ver) + r"\." if ver else r"\d")
        match = [p for p in crates if re.match(pat, p.name)]
        if match:
            add(match[0], f"crates/{name}", {".git", "target"})
    return files, used


def probe(value: str) -> str:
    """The longest line of a value: what identifies it in a file (a PEM key by a body line)."""
    return max(value.split("\n"), key=len)


def lang(path: str) -> str:
    ext = path.rsplit(".", 1)[-1] if "." in path.rsplit("/", 1)[-1] else ""
    if ext in ("c", "h"):
        return "c"
    if ext in ("py", "pyi"):
        return "py"
    if ext == "rs":
        return "rs"
    return "text"


# --------------------------------------------------------------------------
# The history model
# --------------------------------------------------------------------------

@dataclass
class Branch:
    name: str
    tip: int | None = None          # mark of the last commit
    files: dict[str, str] = field(default_factory=dict)  # path -> content
    base: dict[str, str] | None = None   # main's files at the fork
    scope: list[str] = field(default_factory=list)       # existing files the branch edits
    pending: list = field(default_factory=list)          # planned commits (callables)
    merge: bool = True
    keep_ref: bool = True
    tag: str | None = None


@dataclass
class Planted:
    id: str
    kind: str
    value: str
    context: list[str]
    path: str
    how: str
    ref: str = "refs/heads/main"
    mark: int | None = None          # introducing commit
    deleted_mark: int | None = None  # commit that removed it (if any)
    at_head: bool = False


class History:
    def __init__(self, stream, rng: random.Random, sources: dict[str, str], secrets: dict[str, mc.Secret]):
        self.out = stream
        self.rng = rng
        self.sources = sources
        self.secret = secrets
        self.mark = 0
        self.now = START_TIME
        self.count = 0                   # commits written
        self.main = Branch("main", files={})
        self.branches: dict[str, Branch] = {}
        self.locked: set[str] = set()    # files a live branch works on
        self.planted: list[Planted] = []
        self.protected: list[str] = []   # markers of lines random edits must keep
        self.changes: dict[str, int] = {}  # path -> commits on main that changed it
        self.hot_boost: dict[str, float] = {}
        # Files holding a key (CPython's test certificates) are never edited nor
        # used as donors: cutting a PEM block would make up new "keys". Nor are
        # git's own files: a mangled .gitattributes makes git print errors.
        keyish = {p for p, t in sources.items() if "PRIVATE KEY-----" in t
                  or p.rsplit("/", 1)[-1] in (".gitattributes", ".gitmodules", ".gitignore", ".mailmap")}
        by_lang: dict[str, list[str]] = {}
        for p in sorted(sources):
            if p not in keyish:
                by_lang.setdefault(lang(p), []).append(p)
        self.donors = by_lang
        order = sorted(p for p in sources if p not in keyish)
        rng.shuffle(order)
        # Zipf-like edit weights over a random order of the files; huge files stay cold.
        self.weight = {p: (i + 30) ** -0.9 if len(sources[p]) < 200_000 else 0.00002
                       for i, p in enumerate(order)}
        self.tags: list[str] = []

    # -- fast-import primitives ------------------------------------------------
    def data(self, payload: bytes) -> None:
        self.out.write(b"data %d\n" % len(payload))
        self.out.write(payload)
        self.out.write(b"\n")

    def blob(self, text: str) -> int:
        self.mark += 1
        self.out.write(b"blob\nmark :%d\n" % self.mark)
        self.data(text.encode("utf-8"))
        return self.mark

    def tick(self) -> int:
        # Working hours mostly; gaps average ~13 hours over three years.
        self.now += int(self.rng.expovariate(1 / 45000)) + 60
        return self.now

    def author(self, name: str | None = None) -> tuple[str, str]:
        if name:
            return next((a[0], a[1]) for a in AUTHORS if a[0] == name)
        a = self.rng.choices(AUTHORS[:-1], weights=[w for *_, w in AUTHORS[:-1]])[0]
        return a[0], a[1]

    def commit(self, br: Branch, message: str, new: dict[str, str | None], *, merge: int | None = None,
               author: tuple[str, str] | None = None, parent: int | None = None) -> int:
        """Writes one commit on `br` changing `new` (path -> text, or None to delete)."""
        marks = {p: self.blob(t) for p, t in sorted(new.items()) if t is not None}
        name, email = author or self.author()
        ts = self.tick()
        self.mark += 1
        m = self.mark
        ref = f"refs/heads/{br.name}"
        self.out.write(f"commit {ref}\nmark :{m}\n".encode())
        self.out.write(f"author {name} <{email}> {ts} +0000\ncommitter {name} <{email}> {ts} +0000\n".encode())
        self.data(message.encode())
        frm = parent if parent is not None else br.tip
        if frm is not None:
            self.out.write(b"from :%d\n" % frm)
        if merge is not None:
            self.out.write(b"merge :%d\n" % merge)
        for p, t in sorted(new.items()):
            if t is None:
                self.out.write(f"D {p}\n".encode())
                br.files.pop(p, None)
            else:
                self.out.write(f"M 100644 :{marks[p]} {p}\n".encode())
                br.files[p] = t
        self.out.write(b"\n")
        br.tip = m
        self.count += 1
        if br is self.main:
            for p in new:
                self.changes[p] = self.changes.get(p, 0) + 1
        return m

    def tag(self, name: str, mark: int, message: str | None) -> None:
        if message is None:  # lightweight
            self.out.write(f"reset refs/tags/{name}\nfrom :{mark}\n\n".encode())
        else:
            ts = self.tick()
            self.out.write(f"tag {name}\nfrom :{mark}\n".encode())
            self.out.write(f"tagger release-bot <release-bot@acme-payments.io> {ts} +0000\n".encode())
            self.data(message.encode())
        self.tags.append(name)

    # -- edits -------------------------------------------------------------------
    def donor_lines(self, path: str, n: int) -> list[str]:
        pool = self.donors.get(lang(path)) or self.donors["text"]
        for _ in range(10):
            src = self.sources[self.rng.choice(pool)].split("\n")
            if len(src) > n + 2:
                at = self.rng.randint(0, len(src) - n)
                return src[at:at + n]
        return src[:n]

    def is_protected(self, line: str) -> bool:
        return any(m in line for m in self.protected)

    def edit(self, path: str, text: str) -> str:
        rng = self.rng
        lines = text.split("\n")
        orig = len(self.sources.get(path, text).split("\n"))
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
            if len(lines) < 10:
                op = "insert"
            elif len(lines) > 2 * orig + 50:
                op = "delete"
            else:
                op = rng.choices(["insert", "delete", "replace"], weights=[4, 3, 5])[0]
            if op == "insert":
                at = rng.randint(0, len(lines) - 1)
                lines[at:at] = self.donor_lines(path, rng.randint(1, 25))
                continue
            n = rng.randint(1, max(1, min(20, len(lines) // 4)))
            at = rng.randint(0, len(lines) - n)
            if any(self.is_protected(x) for x in lines[at:at + n]):
                continue
            lines[at:at + n] = [] if op == "delete" else self.donor_lines(path, rng.randint(1, 25))
        out = "\n".join(lines)
        return out if out != text else out + "\n"

    def pick_edits(self, files: dict[str, str], k: int, exclude: set[str]) -> list[str]:
        cand = [p for p in files if p in self.weight and p not in exclude and p not in self.locked]
        if not cand:
            return []
        w = [self.weight[p] * self.hot_boost.get(p, 1.0) for p in cand]
        picked: list[str] = []
        for _ in range(k * 3):
            p = self.rng.choices(cand, weights=w)[0]
            if p not in picked:
                picked.append(p)
            if len(picked) == k:
                break
        return picked

    def insert_line(self, text: str, line: str) -> str:
        """Inserts `line` at a plausible spot (after a line that does not open a block), indented."""
        lines = text.split("\n")
        lo = min(len(lines) - 1, max(1, len(lines) // 5))
        hi = max(lo, len(lines) - 2)
        at = self.rng.randint(lo, hi)
        for _ in range(50):
            prev = lines[at - 1] if at > 0 else ""
            if not prev.rstrip().endswith((":", "{", "(", "[", ",", "\\", "=")) and not prev.lstrip().startswith(
                    ("@", "#[")):
                break
            at = min(at + 1, len(lines))
        prev = lines[at - 1] if at > 0 else ""
        indent = prev[:len(prev) - len(prev.lstrip())]
        lines[at:at] = [indent + line]
        return "\n".join(lines)

    @staticmethod
    def remove_line(text: str, marker: str, replacement: str | None = None) -> str:
        lines = text.split("\n")
        out = []
        for x in lines:
            if marker in x:
                if replacement is not None:
                    indent = x[:len(x) - len(x.lstrip())]
                    out.append(indent + replacement)
            else:
                out.append(x)
        return "\n".join(out)

    def plant(self, sid: str, path: str, how: str, br: Branch | None = None, **kw) -> Planted:
        s = self.secret[sid]
        p = Planted(sid, s.kind, s.value, s.context, path, how, **kw)
        if br is not None:
            p.ref = f"refs/heads/{br.name}"
        self.planted.append(p)
        self.protected.append(probe(s.value)[:24])
        return p

    def pick_real(self, files: dict[str, str], ext: tuple[str, ...], lo: int = 3_000, hi: int = 60_000,
                  avoid: set[str] = frozenset()) -> str:
        cand = sorted(p for p, t in files.items() if p.endswith(ext) and lo <= len(t) <= hi and p in self.weight
                      and p not in self.locked and p not in avoid and "/test" not in p and "/tests/" not in p)
        return self.rng.choice(cand)


# --------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------

def build(h: History, n_commits: int, large: bool = False) -> dict:
    rng = h.rng
    v = lambda sid: h.secret[sid].value  # noqa: E731
    main = h.main

    # Files to add, grouped by directory, in a shuffled directory order
    # (but the first groups are top-level ones, as a project starts small).
    groups: dict[str, list[str]] = {}
    for p in sorted(h.sources):
        groups.setdefault(p.rsplit("/", 1)[0], []).append(p)
    dirs = sorted(groups)
    rng.shuffle(dirs)
    dirs.sort(key=lambda d: d.count("/") + rng.random() * 3)
    add_queue: list[list[str]] = []
    batch: list[str] = []
    for d in dirs:  # a commit adds one or more small directories, or a slice of a big one
        fs = groups[d]
        for i in range(0, len(fs), 60):
            batch += fs[i:i + 60]
            if len(batch) >= 25:
                add_queue.append(batch)
                batch = []
    if batch:
        add_queue.append(batch)
    n_adds = len(add_queue)
    add_until = int(n_commits * 0.55)

    events: dict[float, list] = {}

    def at(frac: float):
        def deco(fn):
            events.setdefault(frac, []).append(fn)
            return fn
        return deco

    plant_of: dict[str, Planted] = {}

    # ---- main-line plantings ------------------------------------------------------
    @at(0.12)
    def env_added():
        text = (f"# local settings -- do not commit\nAPP_ENV=production\nPORT=8080\n"
                f"DATABASE_URL={h.secret['postgres-password'].context[0]}\n"
                f"OPENAI_API_KEY={v('openai-project')}\nAWS_ACCESS_KEY_ID={v('aws-access-key-id')}\n"
                f"AWS_SECRET_ACCESS_KEY={v('aws-secret-access-key')}\nAWS_REGION=eu-west-1\nLOG_LEVEL=info\n")
        for sid in ("postgres-password", "openai-project", "aws-access-key-id", "aws-secret-access-key"):
            plant_of[sid] = h.plant(sid, ".env", ".env committed, deleted later")
        m = h.commit(main, "Add deployment settings for the billing service\n", {".env": text})
        for sid in ("postgres-password", "openai-project", "aws-access-key-id", "aws-secret-access-key"):
            plant_of[sid].mark = m

    @at(0.16)
    def env_deleted():
        gi = main.files.get(".gitignore", "")
        m = h.commit(main, "Remove .env from the repository and ignore it\n",
                     {".env": None, ".gitignore": gi + ".env\n*.pem\nlocal_settings.py\n"})
        for sid in ("postgres-password", "openai-project", "aws-access-key-id", "aws-secret-access-key"):
            plant_of[sid].deleted_mark = m

    @at(0.18)
    def hot_file():
        # The hottest mid-sized Python file: it will be edited many times after.
        cand = sorted((p for p in main.files if p.endswith(".py") and 8_000 <= len(main.files[p]) <= 60_000
                       and p in h.weight and p not in h.locked and "/test" not in p),
                      key=lambda p: -h.weight[p])
        path = cand[0]
        h.hot_boost[path] = 4.0
        plant_of["github-pat"] = h.plant("github-pat", path, "inserted into a real file that is edited many "
                                         "times afterwards", )
        text = h.insert_line(main.files[path], f'GITHUB_TOKEN = "{v("github-pat")}"')
        plant_of["github-pat"].mark = h.commit(main, f"Add release upload to {path.rsplit('/', 1)[-1]}\n",
                                               {path: text})

    @at(0.20)
    def pem_added():
        p = h.plant("rsa-private-key", "deploy/keys/deploy_rsa.pem", "PEM key file, deleted later")
        p.mark = h.commit(main, "Add deploy key for the staging hosts\n",
                          {"deploy/keys/deploy_rsa.pem": v("rsa-private-key") + "\n",
                           "deploy/keys/README.md": "Keys used by the deploy scripts.\n"})
        plant_of["rsa-private-key"] = p

    @at(0.26)
    def pem_deleted():
        plant_of["rsa-private-key"].deleted_mark = h.commit(
            main, "Remove deploy key; keys live in the vault now\n", {"deploy/keys/deploy_rsa.pem": None})

    wf = ".github/workflows/publish.yml"

    def workflow(token: str) -> str:
        return f"""name: publish
on:
  push:
    tags: ["v*"]
jobs:
  pypi:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - run: python -m pip install build twine
      - run: python -m build
      - run: twine upload dist/*
        env:
          TWINE_USERNAME: __token__
          TWINE_PASSWORD: {token}
"""

    @at(0.22)
    def workflow_added():
        p = h.plant("pypi", wf, "CI workflow, later replaced by a secrets reference")
        p.mark = h.commit(main, "CI: publish to PyPI on tags\n", {wf: workflow(v("pypi"))})
        plant_of["pypi"] = p

    @at(0.40)
    def workflow_fixed():
        plant_of["pypi"].deleted_mark = h.commit(main, "CI: read the PyPI token from repository secrets\n",
                                                 {wf: workflow("${{ secrets.PYPI_TOKEN }}")})

    def insert_then(sid: str, ext: tuple[str, ...], tmpl: str, msg: str, frac_add: float, frac_del: float | None,
                    how: str):
        state = {}

        @at(frac_add)
        def _add():
            path = h.pick_real(main.files, ext, avoid=set(h.hot_boost))
            p = h.plant(sid, path, how)
            text = h.insert_line(main.files[path], tmpl.format(v(sid)))
            p.mark = h.commit(main, msg.format(name=path.rsplit("/", 1)[-1]), {path: text})
            state["p"] = p
            plant_of[sid] = p

        if frac_del is not None:
            @at(frac_del)
            def _del():
                p = state["p"]
                if p.path not in main.files:  # deleted meanwhile: nothing to remove
                    return
                text = h.remove_line(main.files[p.path], v(sid)[:24])
                p.deleted_mark = h.commit(main, f"Stop hard-coding credentials in {p.path.rsplit('/', 1)[-1]}\n",
                                          {p.path: text})

    insert_then("google-api", (".py",), 'GOOGLE_API_KEY = "{}"', "Geocode addresses in {name}\n", 0.25, 0.33,
                "inserted into a real Python file, removed later")
    insert_then("twilio-api-key", (".rs",), 'const TWILIO_API_KEY: &str = "{}";', "Send SMS receipts from {name}\n",
                0.35, None, "inserted into a real Rust file")
    insert_then("linear", (".rs",), 'const LINEAR_KEY: &str = "{}";', "File issues from {name}\n", 0.38, 0.50,
                "inserted into a real Rust file, removed later")
    insert_then("slack-bot", (".py",), 'SLACK_BOT_TOKEN = "{}"', "Post build status from {name}\n", 0.68, 0.80,
                "inserted into a real Python file, removed later")
    insert_then("jwt", (".rs",), 'let bearer = "Bearer {}";', "Authenticate the smoke test in {name}\n", 0.75, None,
                "inserted into a real Rust file")
    insert_then("shopify", (".c",), 'static const char *shop_token = "{}";', "Sync the shop from {name}\n", 0.46,
                None, "inserted into a real C file")

    cfg = "config/settings.prod.json"

    def settings(timeout: int) -> str:
        return json.dumps({
            "service": "billing-api", "region": "eu-west-1", "timeout_seconds": timeout,
            "mail": {"provider": "sendgrid", "api_key": v("sendgrid"), "from": "billing@acme-payments.io"},
            "alerts": {"slack_webhook": v("slack-webhook"), "channel": "#billing-alerts"},
        }, indent=2) + "\n"

    @at(0.28)
    def json_config():
        for sid in ("sendgrid", "slack-webhook"):
            plant_of[sid] = h.plant(sid, cfg, "JSON config, still at HEAD (edited later)")
        m = h.commit(main, "Add production settings\n", {cfg: settings(30)})
        for sid in ("sendgrid", "slack-webhook"):
            plant_of[sid].mark = m

    @at(0.44)
    def json_config_edit():
        h.commit(main, "Raise the API timeout\n", {cfg: settings(60)})

    @at(0.71)
    def json_config_edit2():
        h.commit(main, "Lower the API timeout again\n", {cfg: settings(45)})

    @at(0.42)
    def compose():
        p = h.plant("mongodb-password", "docker-compose.yml", "docker-compose file, still at HEAD")
        text = f"""services:
  api:
    build: .
    ports: ["8080:8080"]
    environment:
      EVENTS_URL: "{h.secret['mongodb-password'].context[0]}"
      LOG_LEVEL: info
  worker:
    build: .
    command: ["python", "-m", "billing.worker"]
"""
        p.mark = h.commit(main, "Add docker-compose for local runs\n", {"docker-compose.yml": text})
        plant_of["mongodb-password"] = p

    @at(0.48)
    def local_settings():
        path = "tools/dev/local_settings.py"
        text = (f'# machine-local overrides\nDEBUG = False\nSENTRY_AUTH_TOKEN = "{v("sentry")}"\n'
                f'DATABRICKS_TOKEN = "{v("databricks")}"\n')
        for sid in ("sentry", "databricks"):
            plant_of[sid] = h.plant(sid, path, "local settings committed by mistake, deleted in the next commits")
        m = h.commit(main, "Add dev tooling settings\n", {path: text, "tools/dev/README.md": "Developer tools.\n"})
        for sid in ("sentry", "databricks"):
            plant_of[sid].mark = m

    @at(0.49)
    def local_settings_deleted():
        m = h.commit(main, "Remove local_settings.py (machine-local)\n", {"tools/dev/local_settings.py": None})
        for sid in ("sentry", "databricks"):
            plant_of[sid].deleted_mark = m

    @at(0.52)
    def tfvars():
        p = h.plant("digitalocean", "infra/terraform.tfvars", "terraform.tfvars, still at HEAD")
        p.mark = h.commit(main, "Terraform for the staging droplets\n", {
            "infra/terraform.tfvars": f'region = "fra1"\nsize = "s-2vcpu-4gb"\ndo_token = "{v("digitalocean")}"\n',
            "infra/main.tf": 'variable "do_token" {}\nvariable "region" {}\nvariable "size" {}\n'
                             'provider "digitalocean" {\n  token = var.do_token\n}\n'})
        plant_of["digitalocean"] = p

    @at(0.55)
    def npmrc():
        p = h.plant("npm", ".npmrc", ".npmrc, deleted later")
        p.mark = h.commit(main, "Publish the JS client to npm\n", {
            ".npmrc": f"registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken={v('npm')}\n"})
        plant_of["npm"] = p

    @at(0.60)
    def npmrc_deleted():
        plant_of["npm"].deleted_mark = h.commit(main, "Drop .npmrc; CI sets NPM_TOKEN\n", {".npmrc": None})

    @at(0.58)
    def big_file():
        # The largest Python file in the tree at that point.
        path = max((p for p in main.files if p.endswith(".py") and p in h.weight), key=lambda p: len(main.files[p]))
        p = h.plant("grafana", path, f"inserted near the end of the largest Python file then in the tree "
                                     f"({len(main.files[path].encode()) // 1000} kB)")
        lines = main.files[path].split("\n")
        k = len(lines) - 3
        lines[k:k] = [f'GRAFANA_TOKEN = "{v("grafana")}"']
        p.mark = h.commit(main, "Export dashboards\n", {path: "\n".join(lines)})
        plant_of["grafana"] = p

    @at(0.64)
    def mcp():
        p = h.plant("github-fine-grained", ".mcp.json", "MCP config, still at HEAD")
        text = json.dumps({"mcpServers": {"github": {
            "command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
            "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": v("github-fine-grained")}}}}, indent=2) + "\n"
        p.mark = h.commit(main, "Add MCP server config for the agent\n", {".mcp.json": text})
        plant_of["github-fine-grained"] = p

    @at(0.72)
    def jsonl():
        path = "tools/agent/transcripts/2023-09-14.jsonl"
        p = h.plant("anthropic-api", path, "JSON-escaped inside a JSON Lines transcript, still at HEAD")
        recs = [
            {"type": "user", "message": {"role": "user", "content": "why does the billing smoke test fail?"}},
            {"type": "assistant", "message": {"role": "assistant", "content": [
                {"type": "tool_use", "name": "Bash", "input": {
                    "command": f'curl https://api.anthropic.com/v1/messages -H "x-api-key: {v("anthropic-api")}" '
                               '-H "anthropic-version: 2023-06-01" -d @req.json'}}]}},
            {"type": "user", "message": {"role": "user", "content": [
                {"type": "tool_result", "content": "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}"}]}},
        ]
        p.mark = h.commit(main, "Keep the agent transcript of the smoke-test debugging\n",
                          {path: "".join(json.dumps(r) + "\n" for r in recs)})
        plant_of["anthropic-api"] = p

    @at(0.78)
    def ini():
        p = h.plant("mailgun", "deploy/mail.ini", "INI file, still at HEAD")
        p.mark = h.commit(main, "Mail relay settings\n", {
            "deploy/mail.ini": f"[mailgun]\ndomain = mg.acme-payments.io\napi_key = {v('mailgun')}\n"})
        plant_of["mailgun"] = p

    @at(0.82)
    def rust_pem():
        crate_dirs = sorted({"/".join(p.split("/")[:3]) for p in main.files if p.startswith("crates/")
                             and p.endswith(".rs") and "/src/" in p})
        d = rng.choice(crate_dirs)
        path = f"{d}/deploy_key.rs"
        p = h.plant("pkcs8-private-key", path, "PEM key in a Rust string with \\n escapes, still at HEAD")
        p.mark = h.commit(main, "Embed the signing key for offline builds\n", {
            path: "/// Signing key of the release bot.\npub const SIGNING_KEY: &str = \"" +
                  v("pkcs8-private-key").replace("\n", "\\n") + "\";\n"})
        plant_of["pkcs8-private-key"] = p

    @at(0.90)
    def appsettings():
        path = "deploy/appsettings.Production.json"
        p = h.plant("azure-storage", path, "connection string in a JSON config, deleted later")
        p.mark = h.commit(main, "Ship logs to Azure storage\n", {path: json.dumps({
            "Logging": {"LogLevel": {"Default": "Information"}},
            "ConnectionStrings": {"Logs": h.secret["azure-storage"].context[0]}}, indent=2) + "\n"})
        plant_of["azure-storage"] = p

    @at(0.95)
    def appsettings_deleted():
        plant_of["azure-storage"].deleted_mark = h.commit(
            main, "Move the storage connection string to Key Vault\n", {"deploy/appsettings.Production.json": None})

    # ---- branches -----------------------------------------------------------------
    # (name, fork at, commits, merge, keep ref, tag, planter)
    def br_webhooks(br: Branch, k: int) -> dict[str, str | None] | None:
        path = "tools/billing/gateway.py"
        if k == 1:
            p = h.plant("stripe-restricted", path, "only on a feature branch (removed on the branch before the "
                        "merge): reachable through the merge commit's second parent", br=br)
            plant_of["stripe-restricted"] = p
            return {path: f'import os\n\nSTRIPE_KEY = "{v("stripe-restricted")}"\n\n\ndef charge(amount):\n'
                          '    return {"key": STRIPE_KEY, "amount": amount}\n'}
        if k == 3:
            return {path: 'import os\n\nSTRIPE_KEY = os.environ["STRIPE_KEY"]\n\n\ndef charge(amount):\n'
                          '    return {"key": STRIPE_KEY, "amount": amount}\n'}
        return None

    def br_telegram(br: Branch, k: int):
        path = "tools/alerts/telegram_bot.py"
        if k == 0:
            p = h.plant("telegram-bot", path, "added on a feature branch that is merged, still at HEAD", br=br)
            plant_of["telegram-bot"] = p
            return {path: f'from telegram import Bot\n\nbot = Bot(token="{v("telegram-bot")}")\n\n\n'
                          'def alert(chat_id, text):\n    bot.send_message(chat_id=chat_id, text=text)\n'}
        return None

    def br_hotfix(br: Branch, k: int):
        path = "deploy/hotfix.sh"
        if k == 1:
            p = h.plant("dockerhub", path, "only on a release branch that was deleted; reachable only from a tag",
                        br=br)
            p.ref = "refs/tags/v0.6.1-rc1"
            plant_of["dockerhub"] = p
            return {path: "#!/bin/sh\nset -e\n"
                          f"docker login -u acmepayments -p {v('dockerhub')}\n"
                          "docker build -t acmepayments/billing:0.6.1-rc1 .\n"
                          "docker push acmepayments/billing:0.6.1-rc1\n"}
        return None

    def br_hf(br: Branch, k: int):
        path = "tools/embeddings/hf_client.py"
        if k == 0:
            p = h.plant("huggingface", path, "only on an unmerged branch", br=br)
            plant_of["huggingface"] = p
            return {path: f'from huggingface_hub import InferenceClient\n\nclient = InferenceClient(token="'
                          f'{v("huggingface")}")\n'}
        return None

    def br_none(br: Branch, k: int):
        return None

    branch_plans = [
        ("feature/csv-export", 0.08, 4, True, False, None, br_none),
        ("feature/webhooks", 0.30, 6, True, False, None, br_webhooks),
        ("feature/telegram-alerts", 0.45, 4, True, True, None, br_telegram),
        ("refactor/config-loader", 0.53, 7, True, False, None, br_none),
        ("release/0.6-hotfix", 0.62, 2, False, False, "v0.6.1-rc1", br_hotfix),
        ("feature/retry-policy", 0.70, 5, True, True, None, br_none),
        ("experiment/hf-embeddings", 0.86, 3, False, True, None, br_hf),
    ]
    starts = {int(f * n_commits): plan for plan in branch_plans for f in [plan[1]]}
    if large:
        # A large history's everyday flow: a topic branch forked about every
        # 400 commits, worked on for a few commits and merged back (a third
        # of the refs kept, as a forge keeps some).
        for at in range(200, n_commits - 400, 400):
            at += rng.randint(0, 150)
            if at not in starts:
                starts[at] = (f"topic/{at}", at / n_commits, rng.randint(2, 6), True, rng.random() < 0.3, None,
                              br_none)

    tag_every = 240
    version = [0, 0, 0]

    ev_keys = sorted(events)
    ev_i = 0
    add_i = 0
    merges_due: list[Branch] = []
    main_since_tag = 0

    def branch_commit(br: Branch, planner, k: int) -> None:
        changes: dict[str, str | None] = {}
        n_before = len(h.planted)
        planted = planner(br, k) or {}
        changes.update(planted)
        # ordinary work on the branch's own scope
        for p in rng.sample(br.scope, min(len(br.scope), rng.randint(1, 3))):
            changes.setdefault(p, h.edit(p, br.files[p]))
        msg = f"{rng.choice(VERBS)} {br.name.split('/')[-1].replace('-', ' ')}: {rng.choice(list(changes)).rsplit('/', 1)[-1]}\n"
        m = h.commit(br, msg, changes)
        for pl in h.planted[n_before:]:
            pl.mark = m
        if planner is br_webhooks and k == 3:
            plant_of["stripe-restricted"].deleted_mark = m

    active: list[tuple[Branch, object, int]] = []   # branch, planner, commits left

    # Large files of a large history: three amalgamations of real C sources
    # (4 to 6 MB, as vendored single-file libraries are), added early and
    # edited about 25 times each over the history.
    big_paths: list[str] = []
    big_every = max(1, n_commits // 75)

    def big_file_change() -> dict[str, str]:
        if not big_paths:
            pool = [p for p in h.donors.get("c", []) if len(h.sources[p]) < 200_000]
            added = {}
            for i, size in enumerate((4_000_000, 5_000_000, 6_000_000)):
                parts, total = [], 0
                for p in rng.sample(pool, len(pool)):
                    parts.append(f"/* ---- {p} ---- */\n{h.sources[p]}")
                    total += len(h.sources[p])
                    if total >= size:
                        break
                path = f"vendor/amalgamation/part{i + 1}.c"
                big_paths.append(path)
                added[path] = "".join(parts)
            return added
        p = rng.choice(big_paths)
        return {p: h.edit(p, main.files[p])}

    def rename_one(changes: dict[str, str | None]) -> None:
        # Move a file nobody plants in or works on to another directory of
        # the same language, unchanged (same blob, new path).
        picked = h.pick_edits(main.files, 1, set(changes) | set(h.hot_boost) | set(big_paths))
        if not picked or any(pl.path == picked[0] for pl in h.planted):
            return
        old = picked[0]
        dirs = sorted({q.rsplit("/", 1)[0] for q in main.files if lang(q) == lang(old) and "/" in q})
        new = f"{rng.choice(dirs)}/{old.rsplit('/', 1)[-1]}" if dirs else old
        if new == old or new in main.files:
            return
        changes[new] = main.files[old]
        changes[old] = None
        h.weight[new] = h.weight.pop(old, 0.0)

    while h.count < n_commits:
        frac = h.count / n_commits
        # start branches
        due = [c for c in starts if c <= h.count]
        if due and main.tip is not None:
            name, _f, nc, merge, keep, tag, planner = starts.pop(min(due))
            br = Branch(name, tip=main.tip, files=dict(main.files), base=dict(main.files), merge=merge,
                        keep_ref=keep, tag=tag)
            br.scope = h.pick_edits(main.files, rng.randint(3, 6), set(h.hot_boost))
            h.locked.update(br.scope)
            br.pending = list(range(nc))
            h.branches[name] = br
            active.append((br, planner, nc))
        # planted events due on main
        while ev_i < len(ev_keys) and ev_keys[ev_i] <= frac and main.tip is not None:
            for fn in events[ev_keys[ev_i]]:
                fn()
            ev_i += 1
        if h.count >= n_commits:
            break
        # merges due
        if merges_due and rng.random() < 0.5:
            br = merges_due.pop(0)
            changes = {p: t for p, t in br.files.items() if br.base.get(p) != t}
            changes.update({p: None for p in br.base if p not in br.files and p in main.files})
            h.commit(main, f"Merge branch '{br.name}'\n", changes, merge=br.tip, author=h.author())
            h.locked.difference_update(br.scope)
            continue
        # a branch commit?
        live = [a for a in active if a[0].pending]
        if live and rng.random() < 0.3:
            br, planner, nc = rng.choice(live)
            k = br.pending.pop(0)
            branch_commit(br, planner, k)
            if not br.pending:
                if br.merge:
                    merges_due.append(br)
                else:
                    if br.tag:
                        h.tag(br.tag, br.tip, f"{br.tag}\n\nRelease candidate from the hotfix branch.\n")
                    h.locked.difference_update(br.scope)
            continue
        # an ordinary main commit
        changes: dict[str, str | None] = {}
        # Adds are spread over the first `add_until` commits (the first one
        # imports a few directories at once), edits fill the rest.
        left = n_adds - add_i
        want_add = left > 0 and (h.count == 0 or rng.random() < 1.5 * left / max(1, add_until - h.count)
                                 or left >= add_until - h.count)
        if want_add:
            for p in [f for g in add_queue[add_i:add_i + (6 if h.count == 0 else 1)] for f in g]:
                changes[p] = h.sources[p]
            add_i += 6 if h.count == 0 else 1
            d = add_queue[add_i - 1][0].rsplit("/", 1)[0]
            msg = f"Add {d}\n" if h.count else "Initial import\n"
            if rng.random() < 0.5 and main.files:
                for p in h.pick_edits(main.files, rng.randint(1, 2), set()):
                    changes[p] = h.edit(p, main.files[p])
        else:
            k = rng.choices([1, 1, 2, 2, 3, 3, 4, 5, 7, 10], k=1)[0]
            picked = h.pick_edits(main.files, k, set())
            for p in picked:
                changes[p] = h.edit(p, main.files[p])
            if large and h.count >= n_commits // 20 and h.count % big_every == 0:
                changes.update(big_file_change())
            if large and rng.random() < 0.01:
                rename_one(changes)
            if rng.random() < 0.02:  # occasionally delete a file nobody edits
                victims = [p for p in main.files if p in h.weight and h.weight[p] < 0.0004 and p not in h.locked
                           and not any(pl.path == p for pl in h.planted) and p not in changes]
                if victims:
                    changes[rng.choice(victims)] = None
            if not changes:
                continue
            target = next(iter(changes)).rsplit("/", 1)[-1]
            msg = f"{rng.choice(VERBS)} {target}\n"
            if len(changes) > 1:
                msg += "\n" + "".join(f"- {c.rsplit('/', 1)[-1]}\n" for c in list(changes)[1:])
        h.commit(main, msg, changes)
        main_since_tag += 1
        if main_since_tag >= tag_every:
            main_since_tag = 0
            version[1] += 1
            name = "v{}.{}.{}".format(*version)
            h.tag(name, main.tip, None if version[1] % 2 else f"Release {name}\n")

    # merge what is still due (counted in the total already exceeded, if any)
    for br in merges_due:
        changes = {p: t for p, t in br.files.items() if br.base.get(p) != t}
        h.commit(main, f"Merge branch '{br.name}'\n", changes, merge=br.tip)

    # At HEAD: present in main's final tree.
    for p in h.planted:
        p.at_head = p.path in main.files and probe(p.value) in main.files[p.path].replace("\\n", "\n")
    deleted_refs = [f"refs/heads/{b.name}" for b in h.branches.values() if not b.keep_ref]
    return {"deleted_refs": deleted_refs, "adds": add_i, "add_groups": n_adds}


# --------------------------------------------------------------------------

def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          input=input).stdout.decode()


def prepare_staged(repo: Path, dest: Path, seed: str, sources: dict[str, str], out: Path, n_files: int) -> None:
    """Clones the history into `dest` and stages `n_files` modified real source files, one
    with a fake credential that the history does not hold (for the `--staged` timing)."""
    if dest.exists():
        shutil.rmtree(dest)
    subprocess.run(["git", "clone", "-q", str(repo), str(dest)], check=True)
    rng = random.Random(f"mayfly-bench/staged/{seed}")
    secret_map = mc.make_secrets(mc.Drbg(seed, "secrets"))
    h = History(None, rng, sources, secret_map)
    head = set(git(dest, "ls-files").splitlines())
    cand = sorted(p for p in head if p in h.weight and p.endswith((".py", ".rs", ".c"))
                  and 2_000 <= (dest / p).stat().st_size <= 60_000)
    picked = rng.sample(cand, n_files)
    value = secret_map["openai-svcacct"].value
    for i, p in enumerate(picked):
        text = (dest / p).read_text(encoding="utf-8")
        text = h.edit(p, text)
        if i == 0:
            comment = "//" if p.endswith((".rs", ".c")) else "#"
            line = (f'OPENAI_API_KEY = "{value}"' if p.endswith(".py")
                    else f'static const char *openai_key = "{value}";' if p.endswith(".c")
                    else f'const OPENAI_API_KEY: &str = "{value}";')
            text = h.insert_line(text, line + f"  {comment} TODO move to env")
        (dest / p).write_text(text, encoding="utf-8")
    git(dest, "add", "--", *picked)
    staged = git(dest, "diff", "--cached", "--numstat").splitlines()
    (out / "staged-manifest.json").write_text(json.dumps({
        "schema": "mayfly.bench.staged-manifest/v1", "seed": seed, "repository": str(dest),
        "files_staged": len(staged), "lines_added": sum(int(x.split()[0]) for x in staged),
        "lines_deleted": sum(int(x.split()[1]) for x in staged),
        "files_in_index": len(head),
        "secret": {"id": "openai-svcacct", "kind": secret_map["openai-svcacct"].kind, "value": value,
                   "path": picked[0]},
        "files": picked,
    }, indent=2) + "\n")
    print(f"make_history: {dest}: {len(staged)} files staged ({len(head)} in the index); "
          f"secret in {picked[0]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", help="seed of the fakes and of the history (default: a fresh one)")
    ap.add_argument("--commits", type=int, default=2000, help="number of commits (default 2000)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="work folder (default: bench/work)")
    ap.add_argument("--repo", type=Path, help="repository to create (default: <out>/history)")
    ap.add_argument("--cargo", type=Path, default=DEFAULT_CARGO)
    ap.add_argument("--python", type=Path, default=DEFAULT_PYTHON)
    ap.add_argument("--no-repack", action="store_true", help="keep fast-import's pack as it is")
    ap.add_argument("--large", action="store_true",
                    help="a large project's history: topic branches merged every ~400 commits, renames, "
                         "three 4-6 MB files edited ~25 times (for --commits 10000 and more)")
    ap.add_argument("--staged-repo", type=Path, metavar="DIR",
                    help="instead: clone the existing history into DIR and stage 20 modified source files, "
                         "one with a fake credential (writes <out>/staged-manifest.json)")
    ap.add_argument("--staged-files", type=int, default=20, help="files to stage with --staged-repo")
    args = ap.parse_args()

    seed = args.seed if args.seed is not None else str(mc.secrets.randbits(64))
    out: Path = args.out.resolve()
    repo: Path = (args.repo or out / "history").resolve()
    t0 = time.time()
    sources, used = load_sources(args.cargo, args.python)
    if args.staged_repo:
        if args.seed is None:
            raise SystemExit("--staged-repo needs --seed")
        prepare_staged(repo, args.staged_repo.resolve(), seed, sources, out, args.staged_files)
        return 0
    print(f"make_history: {len(sources)} source files, "
          f"{sum(len(t.encode()) for t in sources.values()) / 1e6:.1f} MB of text")

    if repo.exists():
        shutil.rmtree(repo)
    repo.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repo)], check=True)
    marks = out / "history-marks.txt"
    proc = subprocess.Popen(["git", "-C", str(repo), "fast-import", "--quiet", "--done",
                             f"--export-marks={marks}"], stdin=subprocess.PIPE)
    stream = proc.stdin
    rng = random.Random(f"mayfly-bench/history/{seed}")
    secret_map = mc.make_secrets(mc.Drbg(seed, "secrets"))
    h = History(stream, rng, sources, secret_map)
    info = build(h, args.commits, args.large)
    stream.write(b"done\n")
    stream.close()
    if proc.wait() != 0:
        raise SystemExit("git fast-import failed")
    for ref in info["deleted_refs"]:
        git(repo, "update-ref", "-d", ref)
    git(repo, "symbolic-ref", "HEAD", "refs/heads/main")
    print(f"make_history: fast-import done in {time.time() - t0:.0f} s")
    if not args.no_repack:
        t1 = time.time()
        git(repo, "repack", "-a", "-d", "-f", "-q", "--window=20", "--depth=50")
        git(repo, "prune-packed")
        print(f"make_history: repacked in {time.time() - t1:.0f} s")

    sha = {}
    for line in marks.read_text().splitlines():
        m, s = line.split()
        sha[int(m[1:])] = s
    marks.unlink()

    # Repository figures.
    refs = git(repo, "for-each-ref", "--format=%(refname)").split()
    commits = int(git(repo, "rev-list", "--all", "--count").strip())
    objs = git(repo, "rev-list", "--all", "--objects").splitlines()
    batch = git(repo, "cat-file", "--batch-check=%(objecttype) %(objectsize)",
                input="\n".join(o.split()[0] for o in objs).encode() + b"\n").splitlines()
    blobs = [int(b.split()[1]) for b in batch if b.startswith("blob ")]
    count = dict(line.split(": ", 1) for line in git(repo, "count-objects", "-v").splitlines())
    merges = int(git(repo, "rev-list", "--all", "--merges", "--count").strip())
    head_files = len(git(repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines())
    versions: dict[str, int] = {}
    for line in git(repo, "log", "--all", "--format=", "--name-only", "--no-renames").splitlines():
        if line:
            versions[line] = versions.get(line, 0) + 1
    vs = sorted(versions.values(), reverse=True)

    # Check every planted secret is where the manifest says.
    secrets_out = []
    for p in h.planted:
        if p.mark is None:
            raise SystemExit(f"{p.id}: never committed")
        cid = sha[p.mark]
        blob_text = git(repo, "show", f"{cid}:{p.path}")
        if probe(p.value) not in blob_text.replace("\\n", "\n"):
            raise SystemExit(f"{p.id}: not in {p.path} at {cid}")
        later = int(git(repo, "rev-list", "--count", f"{cid}..main", "--", p.path).strip()) if p.at_head else 0
        secrets_out.append({
            "id": p.id, "kind": p.kind, "value": p.value, "context": p.context, "path": p.path,
            "commit": cid, "ref": p.ref, "at_head": p.at_head,
            "deleted_in": sha[p.deleted_mark] if p.deleted_mark else None,
            "how": p.how, "commits_changing_the_file_after": later,
        })
    for s in secrets_out:
        contains = git(repo, "for-each-ref", "--contains", s["commit"], "--format=%(refname)").split()
        s["reachable_from"] = contains
        if not contains:
            raise SystemExit(f"{s['id']}: commit {s['commit']} unreachable")

    manifest = {
        "schema": "mayfly.bench.history-manifest/v1",
        "seed": seed,
        "large": args.large,
        "repository": str(repo),
        "bare": True,
        "sources": used,
        "summary": {
            "commits": commits, "merges": merges, "refs": refs,
            "renames": int(git(repo, "log", "--all", "--format=", "--diff-filter=R", "-M", "--name-only")
                           .count("\n")),
            "blobs": len(blobs), "blob_bytes": sum(blobs),
            "files_at_head": head_files,
            "size_pack_kib": int(count.get("size-pack", 0)),
            "files_ever": len(versions),
            "versions_per_file": {"max": vs[0], "p90": vs[len(vs) // 10], "median": vs[len(vs) // 2],
                                  "files_with_10_or_more": sum(1 for x in vs if x >= 10)},
            "secrets": len(secrets_out),
            "secrets_at_head": sum(1 for s in secrets_out if s["at_head"]),
        },
        "secrets": secrets_out,
    }
    (out / "history-manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    sm = manifest["summary"]
    print(f"make_history: seed {seed}: {commits} commits ({merges} merges), {len(refs)} refs, {len(blobs)} blobs "
          f"({sum(blobs) / 1e6:.1f} MB), size-pack {int(count.get('size-pack', 0)) / 1024:.1f} MiB, "
          f"{head_files} files at HEAD; {len(secrets_out)} secrets ({sm['secrets_at_head']} at HEAD)")
    print(f"make_history: versions per file: {json.dumps(sm['versions_per_file'])}")
    print(f"make_history: {repo} ({time.time() - t0:.0f} s); manifest {out / 'history-manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
