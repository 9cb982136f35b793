#!/usr/bin/env python3
"""An agent in Python asking `approvals serve` before it acts: the standard library only.

    APPROVALS_URL=http://127.0.0.1:8080 APPROVALS_TOKEN=apv_... \\
        python3 examples/agent.py --policy export --action billing::export_customers \\
            --arg limit=500 --on-behalf-of dana --out exported.txt

It asks for approval of one exact call, waits for the decision with long-polls, takes the
call's one permit, does the work (here: appends a line to --out), and records how it ended.
Run it again after a crash and it joins the request it made before: it neither asks twice
nor runs twice. With --editable NAME a reviewer may change that argument when approving; the
work then runs with the values the reviewer set, and says so. Exit codes: 0 done, 77 denied, 75 expired, 76 cancelled, 79 changes
requested (the reviewer's message is printed: change the call and ask again), 69 unreachable.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.request


class Denied(Exception):
    """A policy rule or a reviewer said no; `reason` says why."""


class ChangesRequested(Exception):
    """A reviewer sent the call back; the message says what to change."""


class Approvals:
    """The requester side of the approvals API."""

    def __init__(self, base, token, timeout=90):
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={
                "Authorization": "Bearer " + self.token,
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def ask(self, action, policy, args=None, on_behalf_of=None, reason=None, editable=(),
            wait=0):
        """Asks for approval; returns (status, answer) as the API gives them."""
        body = {"action": action, "policy": policy, "args": args or {}, "wait": wait}
        if editable:
            body["editable"] = list(editable)
        if on_behalf_of:
            body["on_behalf_of"] = on_behalf_of
        if reason:
            body["reason"] = reason
        return self._call("POST", "/api/v1/requests", body)

    def run_approved(self, work, **call):
        """Asks, waits until decided, then runs `work(args)` once under the call's permit,
        with the arguments that were approved: a reviewer may have changed editable ones."""
        status, answer = self.ask(wait=0, **call)
        while True:
            if status == 200 and answer.get("status") == "allowed":
                return work(call.get("args") or {})
            if status == 200 and answer.get("status") == "approved":
                break
            if status != 202:
                code = answer.get("error", {}).get("code")
                if code == "denied":
                    raise Denied(answer["error"]["message"])
                if code == "changes_requested":
                    raise ChangesRequested(answer["error"]["changes"]["message"])
                raise RuntimeError(f"{status} {code}: {answer.get('error', {}).get('message')}")
            rid = answer["request"]["id"]
            print(f"waiting for approval of request {rid}: {answer['still_needed']}"
                  f" (may approve: {', '.join(answer['may_approve'])})", flush=True)
            # Long-poll until it is decided. A reviewer's edit is a new call: follow it.
            while True:
                status, view = self._call("GET", f"/api/v1/requests/{rid}?wait=30")
                if status != 200:
                    raise RuntimeError(f"{status}: {view.get('error', {}).get('message')}")
                if view["status"] == "pending":
                    continue
                if view["status"] == "edited":
                    rid = view["edited_into"]
                    continue
                break
            if view["status"] == "approved":
                answer = view
                break
            # Asking again is how a requester learns (and acknowledges) a no, as a typed error.
            status, answer = self.ask(wait=0, **call)
        rid = answer["request"]["id"]
        args = answer["request"]["action"]["args"]
        edit = answer["request"].get("edit_of")
        if edit:
            changed = ", ".join(f"{c['arg']}: {json.dumps(c['from'])} -> {json.dumps(c['to'])}"
                                for c in edit["changes"])
            print(f"{edit['by']['id']} approved it changed ({changed})", flush=True)
        status, started = self._call("POST", f"/api/v1/requests/{rid}/start")
        if status != 200:
            raise RuntimeError(f"could not start: {started['error']['message']}")
        try:
            result = work(args)
        except Exception as e:
            self._call("POST", f"/api/v1/requests/{rid}/finish", {"ok": False, "summary": str(e)})
            raise
        self._call("POST", f"/api/v1/requests/{rid}/finish", {"ok": True, "summary": str(result)})
        return result


def value(text):
    """`limit=5` is a number, `env=prod` a string: JSON where it parses."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", required=True)
    p.add_argument("--action", required=True)
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--on-behalf-of")
    p.add_argument("--reason")
    p.add_argument("--editable", action="append", default=[], metavar="NAME",
                   help="an argument a reviewer may change when approving")
    p.add_argument("--out", required=True, help="the work: append a line to this file")
    a = p.parse_args()
    client = Approvals(os.environ["APPROVALS_URL"], os.environ["APPROVALS_TOKEN"])
    args = {k: value(v) for k, v in (s.split("=", 1) for s in a.arg)}

    def work(approved):
        with open(a.out, "a") as f:
            f.write(f"{a.action} {json.dumps(approved, sort_keys=True)}\n")
        return f"wrote {a.out}"

    try:
        done = client.run_approved(
            work, action=a.action, policy=a.policy, args=args,
            on_behalf_of=a.on_behalf_of, reason=a.reason, editable=a.editable,
        )
    except Denied as e:
        print(f"denied: {e}", file=sys.stderr)
        return 77
    except ChangesRequested as e:
        print(f"changes requested: {e}", file=sys.stderr)
        return 79
    except urllib.error.URLError as e:
        print(f"the approval service is unreachable: {e}", file=sys.stderr)
        return 69
    except RuntimeError as e:
        print(str(e), file=sys.stderr)
        return 75 if "expired" in str(e) else 76 if "cancelled" in str(e) else 70
    print(f"done: {done}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
