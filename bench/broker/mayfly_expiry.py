#!/usr/bin/env python3
"""Expiry probe for bench/run_broker.sh (standard library only).

Starts a Mayfly task with a short TTL, exchanges the workload JWT once for an
access token, then introspects that token every --interval seconds and prints
JSON saying how long after the token's `exp` Mayfly first reported it
inactive. `exp` is taken from the first (active) introspection answer; when
that has none, from the access token's own payload if it is a JWT, else from
the exchange answer's expires_in.
"""
import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def call(url, *, data=None, form=None, bearer=None):
    headers = {}
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif data is not None:
        body = json.dumps(data).encode()
        headers["Content-Type"] = "application/json"
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def jwt_exp(token):
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
    except (IndexError, KeyError, ValueError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", required=True, help="Mayfly base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--jwt-file", required=True, help="workload JWT")
    ap.add_argument("--admin-token", required=True)
    ap.add_argument("--audience", default="https://api.bench.invalid")
    ap.add_argument("--task-ttl", type=int, default=2)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--give-up", type=float, default=120, help="seconds after exp to stop polling")
    args = ap.parse_args()
    jwt = open(args.jwt_file).read().strip()

    status, task = call(f"{args.base}/v1/tasks", bearer=jwt, data={
        "purpose": "bench-expiry", "owner": "team-bench", "ttl_seconds": args.task_ttl,
        "audiences": [args.audience]})
    if status != 201:
        sys.exit(f"start task: HTTP {status}: {task}")
    issued_at = time.time()
    status, tok = call(f"{args.base}/oauth2/token", form={
        "grant_type": TOKEN_EXCHANGE, "subject_token": jwt, "subject_token_type": JWT_TYPE,
        "audience": args.audience, "task_id": task["id"]})
    if status != 200:
        sys.exit(f"exchange: HTTP {status}: {tok}")
    access = tok["access_token"]

    def introspect():
        status, body = call(f"{args.base}/oauth2/introspect", form={"token": access}, bearer=args.admin_token)
        if status != 200:
            sys.exit(f"introspect: HTTP {status}: {body}")
        return body

    first = introspect()
    if not first.get("active"):
        sys.exit(f"the fresh token is already inactive: {first}")
    exp, exp_source = first.get("exp"), "introspection"
    if exp is None:
        exp, exp_source = jwt_exp(access), "access token payload"
    if exp is None and tok.get("expires_in") is not None:
        exp, exp_source = issued_at + tok["expires_in"], "expires_in"
    if exp is None:
        sys.exit("cannot tell the token's exp")

    polls = 1
    while True:
        time.sleep(args.interval)
        now = time.time()
        body = introspect()
        polls += 1
        if not body.get("active"):
            break
        if now > exp + args.give_up:
            print(json.dumps({"task_ttl_s": args.task_ttl, "exp": exp, "exp_source": exp_source,
                              "inactive_after_exp_s": None, "still_active_after_s": args.give_up,
                              "polls": polls}))
            return
    print(json.dumps({
        "task_ttl_s": args.task_ttl, "exp": exp, "exp_source": exp_source,
        "token_lifetime_s": round(exp - issued_at, 3),
        # Negative means Mayfly turned it off before its exp (e.g. at task end).
        "inactive_after_exp_s": round(now - exp, 3),
        "poll_interval_s": args.interval, "polls": polls,
    }))


if __name__ == "__main__":
    main()
