"""A fake Hugging Face Hub at the HTTP layer: the real `huggingface_hub` client talks to it
through an httpx2 MockTransport, so the requests (and their bodies) are the ones a real push sends.

It keeps what it is sent: repos with their files per branch, commits, tags and pull requests.
Only the endpoints a push uses exist; anything else is a 404 the test would see.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from urllib.parse import unquote
from dataclasses import dataclass, field
from typing import Any

import httpx2

SERVER = "https://huggingface.co"


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    commits: list[dict[str, Any]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # tag -> commit oid
    prs: list[str] = field(default_factory=list)  # pull-request titles; PR n's files are branches["refs/pr/n"]


@dataclass
class FakeHub:
    user: str = "alice"
    orgs: dict[str, str] = field(default_factory=lambda: {"linebench": "admin"})  # org -> roleInOrg
    token: str = "hf_TESTTOKENxyz0123456789"
    role: str = "write"  # the token's role: read, write or fineGrained
    fine_grained: dict[str, Any] | None = None
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    seen_authorization: set[str] = field(default_factory=set)
    card_errors: list[str] = field(default_factory=list)
    down: bool = False  # every request fails to connect

    def client(self) -> httpx2.Client:
        from huggingface_hub.utils._http import hf_request_event_hook

        return httpx2.Client(transport=httpx2.MockTransport(self.handle), event_hooks={"request": [hf_request_event_hook]}, follow_redirects=True)

    # ------------------------------------------------------------------ dispatch
    def handle(self, request: httpx2.Request) -> httpx2.Response:
        if self.down:
            raise httpx2.ConnectError("[Errno 101] Network is unreachable", request=request)
        path = request.url.path
        self.requests.append((request.method, path))
        self.seen_authorization.add(request.headers.get("authorization", ""))
        if path == "/api/validate-yaml":
            if self.card_errors:
                return httpx2.Response(400, text="\n".join(self.card_errors))
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx2.Response(401, json={"error": "Invalid credentials in Authorization header"})
        if path == "/api/whoami-v2":
            return self.whoami()
        if path == "/api/repos/create":
            return self.create(json.loads(request.content))
        info = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)", path)
        if info and request.method == "GET":
            if info.group(1) not in self.repos:
                return httpx2.Response(404, json={"error": "Repository not found"}, headers={"X-Error-Code": "RepoNotFound"})
            return httpx2.Response(200, json={"id": info.group(1), "private": self.repos[info.group(1)].private, "sha": "0" * 40})
        raw = request.url.raw_path.decode().split("?")[0]  # revisions arrive quoted: refs%2Fpr%2F1
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/(preupload|commit|branch|tag|refs|tree|discussions)(?:/([^/]+))?(/.*)?", raw)
        if m:
            repo_id, verb, rev = m.group(1), m.group(2), m.group(3)
            rev = unquote(rev) if rev else None
            if repo_id not in self.repos:
                return httpx2.Response(404, json={"error": "Repository not found"}, headers={"X-Error-Code": "RepoNotFound"})
            if not self.may_write(repo_id) and verb in ("commit", "branch", "tag", "preupload"):
                return httpx2.Response(403, json={"error": "You don't have the rights to write to this repo"})
            return getattr(self, verb)(self.repos[repo_id], rev, request)
        return httpx2.Response(404, json={"error": f"fake hub: no route {request.method} {path}"})

    def may_write(self, repo_id: str) -> bool:
        namespace = repo_id.split("/")[0]
        return self.role != "read" and (namespace == self.user or self.orgs.get(namespace) in ("write", "admin"))

    # ------------------------------------------------------------------ endpoints
    def whoami(self) -> httpx2.Response:
        token: dict[str, Any] = {"displayName": "test", "role": self.role}
        if self.fine_grained is not None:
            token["fineGrained"] = self.fine_grained
        orgs = [{"name": name, "roleInOrg": role, "type": "org"} for name, role in self.orgs.items()]
        return httpx2.Response(200, json={"type": "user", "name": self.user, "orgs": orgs, "auth": {"type": "access_token", "accessToken": token}})

    def create(self, body: dict[str, Any]) -> httpx2.Response:
        repo_id = f"{body.get('organization') or self.user}/{body['name']}"
        if not self.may_write(repo_id):
            return httpx2.Response(403, json={"error": "You don't have the rights to create a dataset under this namespace"})
        if repo_id in self.repos:
            return httpx2.Response(409, json={"error": "You already created this dataset repo", "url": f"{SERVER}/datasets/{repo_id}"})
        self.repos[repo_id] = Repo(repo_id, private=body.get("visibility") == "private" or bool(body.get("private")))
        return httpx2.Response(200, json={"url": f"{SERVER}/datasets/{repo_id}", "name": repo_id})

    def preupload(self, repo: Repo, rev, request) -> httpx2.Response:
        files = json.loads(request.content)["files"]
        return httpx2.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})

    def tree(self, repo: Repo, rev, request) -> httpx2.Response:
        files = repo.branches.get(rev or "main", {})
        entries = [{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()} for p, b in sorted(files.items())]
        return httpx2.Response(200, json=entries)

    def commit(self, repo: Repo, rev, request) -> httpx2.Response:
        lines = [json.loads(line) for line in request.content.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        if (rev or "main") not in repo.branches:
            return httpx2.Response(404, json={"error": f"Invalid rev id: {rev}"}, headers={"X-Error-Code": "RevisionNotFound"})
        files = dict(repo.branches[rev or "main"])
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "deletedFile":
                files.pop(value["path"], None)
            elif line["key"] == "deletedFolder":
                for p in [p for p in files if p.startswith(value["path"].rstrip("/") + "/")]:
                    files.pop(p)
            elif line["key"] != "header":
                return httpx2.Response(400, json={"error": f"fake hub: unsupported operation {line['key']}"})
        oid = hashlib.sha1(f"{len(repo.commits)}{header['summary']}".encode()).hexdigest()
        repo.commits.append({"oid": oid, "summary": header["summary"], "description": header.get("description", ""), "branch": rev or "main"})
        repo.branches[rev or "main"] = files
        return httpx2.Response(200, json={"commitUrl": f"{SERVER}/datasets/{repo.repo_id}/commit/{oid}", "commitOid": oid})

    def discussions(self, repo: Repo, num, request) -> httpx2.Response:
        if request.method == "POST":  # a new pull request, based on main
            body = json.loads(request.content)
            assert body.get("pullRequest"), "fake hub: only pull requests"
            repo.prs.append(body["title"])
            repo.branches[f"refs/pr/{len(repo.prs)}"] = dict(repo.branches["main"])
            return httpx2.Response(200, json={"num": len(repo.prs), "url": f"{SERVER}/datasets/{repo.repo_id}/discussions/{len(repo.prs)}"})
        n = int(num)
        return httpx2.Response(
            200,
            json={
                "num": n,
                "title": repo.prs[n - 1],
                "author": {"name": self.user},
                "createdAt": "2026-01-01T00:00:00.000Z",
                "status": "draft",
                "repo": {"name": repo.repo_id, "type": "dataset"},
                "isPullRequest": True,
                "events": [],
                "changes": {"base": "refs/heads/main"},
                "filesWithConflicts": [],
            },
        )

    def branch(self, repo: Repo, rev, request) -> httpx2.Response:
        if rev in repo.branches:
            return httpx2.Response(409, json={"error": "Reference already exists"})
        repo.branches[rev] = dict(repo.branches["main"])
        return httpx2.Response(200, json={})

    def tag(self, repo: Repo, rev, request) -> httpx2.Response:
        body = json.loads(request.content)
        if body["tag"] in repo.tags:
            return httpx2.Response(409, json={"error": "Tag already exists"})
        repo.tags[body["tag"]] = rev
        return httpx2.Response(200, json={})

    def refs(self, repo: Repo, rev, request) -> httpx2.Response:
        ref = lambda kind, name, oid: {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid}  # noqa: E731
        last = repo.commits[-1]["oid"] if repo.commits else "0" * 40
        return httpx2.Response(
            200,
            json={
                "branches": [ref("heads", b, last) for b in repo.branches],
                "converts": [],
                "tags": [ref("tags", t, oid) for t, oid in repo.tags.items()],
            },
        )
