"""A local fake of the Hugging Face Hub HTTP API, for tests of code that pushes to the Hub.

The real `huggingface_hub` client (2.4.0) talks to it when pointed at `FakeHub.url`, either with
`HfApi(endpoint=hub.url, token=hub.token)` or with `HF_ENDPOINT`/`HF_TOKEN` in a subprocess's environment.
Only the endpoints that client really calls for create_repo, create_branch, upload_file, upload_folder,
create_commit, list_repo_refs, list_repo_files/list_repo_tree, repo_info/model_info, whoami,
hf_hub_download and snapshot_download are served (see `_ROUTES`).

State is a tiny git model kept in memory: a repo has commits (each holds the whole tree after it) and
branches that point at commits, so create_branch is a pointer copy and a commit changes only its branch.
A new repo gets an "initial commit" with `.gitattributes` on `main`, as the real Hub does.

Uploads: the preupload answer says `uploadMode: "regular"` for every file, which the client honours at any
size, so contents travel base64-encoded inside the commit's NDJSON body and neither Xet nor LFS is used
(no environment switch such as HF_HUB_DISABLE_XET is needed). The price: with hf_xet installed,
upload_folder splits a folder into several commits past 100 MB of content (the client's budget for
regular files per commit) or about 250 files.

Set HF_HUB_DISABLE_TELEMETRY=1 (in process, after import: `huggingface_hub.constants.HF_HUB_DISABLE_TELEMETRY
= True`): otherwise the client's user-agent builder fetches `{HF_ENDPOINT}/api/agent-harnesses` once per process,
from https://huggingface.co when only `HfApi(endpoint=...)` points here (and from the fake, which answers 404,
when HF_ENDPOINT does).

Errors carry the `X-Error-Code` header (RepoNotFound, RevisionNotFound, EntryNotFound) from which the
client raises RepositoryNotFoundError, RevisionNotFoundError and RemoteEntryNotFoundError.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from urllib.parse import parse_qs, unquote, urlsplit

GITATTRIBUTES = b"*.bin filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_id(data: bytes) -> str:
    """Git's sha1 of a blob: the client compares it with its own to leave unchanged files out of a commit."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


@dataclass(frozen=True)
class Commit:
    id: str
    branch: str
    message: str
    parent: str | None
    files: MappingProxyType  # path -> bytes: the whole tree after this commit (read-only)
    changed: tuple  # paths added or modified by this commit
    deleted: tuple
    date: str


@dataclass
class Repo:
    repo_id: str
    repo_type: str  # "model", "dataset" or "space"
    private: bool
    created_at: str
    branches: dict = field(default_factory=dict)  # name -> commit id
    commits: dict = field(default_factory=dict)  # commit id -> Commit, in creation order


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # URL-decoded, without the query string
    status: int


@dataclass
class _Rule:
    """A failure or delay to apply to the next `remaining` requests that match."""

    remaining: int
    method: str | None
    path_contains: str | None
    status: int | None
    delay: float = 0.0
    after_handling: bool = False

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.method is None or self.method == method)
            and (self.path_contains is None or self.path_contains in path)
        )


class HubError(Exception):
    """An error answer; `code` goes to X-Error-Code, which the client maps to its exception types."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.headers, self.extra = status, message, code, headers or {}, extra


_REPO = r"/api/(?P<type>model|dataset|space)s/(?P<repo_id>[^/]+/[^/]+)"
_REV = r"(?P<rev>[^/]+)"  # revisions arrive quote(rev, safe="")-encoded: one path segment


class FakeHub:
    """An in-memory Hub on http://127.0.0.1:<free port>, served from a daemon thread.

    Writes (and whoami) need `Authorization: Bearer <token>`; private repos also need it to be read.
    """

    def __init__(self, token: str = "hf_fake_test_token", user: str = "fake-user"):
        self.token, self.user = token, user
        self.requests: list[Request] = []  # every request served, in order
        self.server_errors: list[str] = []  # tracebacks of bugs in the fake itself (answered 500)
        self._repos: dict[str, Repo] = {}
        self._rules: list[_Rule] = []
        self._lock = threading.RLock()
        self._ids = itertools.count()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> FakeHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.hub = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ---------------------------------------------------------------- accessors for tests

    def repos(self) -> set[str]:
        with self._lock:
            return set(self._repos)

    def is_private(self, repo_id: str) -> bool:
        return self._repos[repo_id].private

    def branches(self, repo_id: str) -> set[str]:
        with self._lock:
            return set(self._repos[repo_id].branches)

    def head(self, repo_id: str, branch: str = "main") -> str:
        with self._lock:
            return self._repos[repo_id].branches[branch]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """path -> content at a branch or commit id."""
        with self._lock:
            repo = self._repos[repo_id]
            return dict(repo.commits[self._resolve(repo, revision)].files)

    def commits(self, repo_id: str, branch: str | None = None) -> list[Commit]:
        """Commits in creation order (the initial commit first), optionally only those made on `branch`."""
        with self._lock:
            return [c for c in self._repos[repo_id].commits.values() if branch is None or c.branch == branch]

    def requests_to(self, path_contains: str, method: str | None = None) -> list[Request]:
        return [r for r in list(self.requests) if path_contains in r.path and method in (None, r.method)]

    # ---------------------------------------------------------------- failure injection

    def fail_next(
        self,
        count: int = 1,
        method: str | None = None,
        path_contains: str | None = None,
        status: int = 500,
        after_handling: bool = False,
    ) -> None:
        """Answer the next `count` matching requests with `status` (matched on the URL-decoded path).

        By default the request is refused before it changes anything, so a retry can succeed. With
        `after_handling=True` it is applied and only the answer is replaced: a lost response.
        """
        with self._lock:
            self._rules.append(_Rule(count, method, path_contains, status, after_handling=after_handling))

    def delay_next(
        self, count: int, seconds: float, method: str | None = None, path_contains: str | None = None
    ) -> None:
        """Hold the next `count` matching requests for `seconds` before serving them (a slow Hub)."""
        with self._lock:
            self._rules.append(_Rule(count, method, path_contains, None, delay=seconds))

    def _take_rules(self, method: str, path: str) -> list[_Rule]:
        with self._lock:
            taken = [rule for rule in self._rules if rule.matches(method, path)]
            for rule in taken:
                rule.remaining -= 1
            self._rules = [rule for rule in self._rules if rule.remaining > 0]
            return taken

    # ---------------------------------------------------------------- request handling

    def _serve(self, method: str, raw_path: str, headers, body: bytes) -> tuple[int, dict, bytes]:
        split = urlsplit(raw_path)
        path, query = unquote(split.path), {k: v[-1] for k, v in parse_qs(split.query).items()}
        rules = self._take_rules(method, path)
        for rule in rules:
            time.sleep(rule.delay)
        failure = next((rule for rule in rules if rule.status is not None), None)
        if failure is not None and not failure.after_handling:
            status, out_headers, out = _error(HubError(failure.status, "Injected failure"))
        else:
            try:
                with self._lock:
                    status, out_headers, out = self._dispatch(method, split.path, query, headers, body)
            except HubError as e:
                status, out_headers, out = _error(e)
            except Exception:  # a bug in the fake: answer 500 but keep the traceback for the test to see
                self.server_errors.append(traceback.format_exc())
                status, out_headers, out = _error(HubError(500, "Fake hub crashed"))
            if failure is not None:
                status, out_headers, out = _error(HubError(failure.status, "Injected failure after handling"))
        self.requests.append(Request(method, path, status))
        return status, out_headers, out

    def _dispatch(self, method, raw_path, query, headers, body):
        for methods, pattern, handler, needs_token in _ROUTES:
            match = re.fullmatch(pattern, raw_path)
            if match and method in methods:
                authed = self._check_token(headers.get("Authorization"))
                if needs_token and not authed:
                    raise HubError(401, "You must be authenticated to do this")
                args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                return handler(self, method=method, query=query, body=body, authed=authed, headers=headers, **args)
        raise HubError(404, f"Not found: {method} {raw_path}")

    def _check_token(self, authorization: str | None) -> bool:
        """True for the right token, False for none; a wrong one is refused outright, like the real Hub."""
        if not authorization:
            return False
        if authorization != f"Bearer {self.token}":
            raise HubError(401, "Invalid credentials in Authorization header")
        return True

    def _repo(self, repo_type: str, repo_id: str, authed: bool) -> Repo:
        repo = self._repos.get(repo_id)
        if repo is None or repo.repo_type != repo_type:
            raise HubError(404, "Repository not found", "RepoNotFound")
        if repo.private and not authed:  # the real Hub hides private repos behind a 401
            raise HubError(401, "Repository not found", "RepoNotFound")
        return repo

    def _resolve(self, repo: Repo, revision: str) -> str:
        """A branch name or a full commit id -> commit id."""
        if revision in repo.branches:
            return repo.branches[revision]
        if revision in repo.commits:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _repo_url(self, repo: Repo) -> str:
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return f"{self.url}/{prefix}{repo.repo_id}"

    def _add_commit(self, repo: Repo, branch: str, message: str, files: dict, changed=(), deleted=()) -> Commit:
        parent = repo.branches.get(branch)
        seed = f"{repo.repo_id}\0{branch}\0{parent}\0{message}\0{next(self._ids)}"
        commit_id = hashlib.sha1(seed.encode()).hexdigest()
        commit = Commit(
            commit_id, branch, message, parent, MappingProxyType(files), tuple(changed), tuple(deleted), _now()
        )
        repo.commits[commit_id] = commit
        repo.branches[branch] = commit_id
        return commit

    # ---------------------------------------------------------------- handlers

    def _create_repo(self, body, **_):
        """POST /api/repos/create <- create_repo. 409 if it exists (create_repo(exist_ok=True) accepts that)."""
        payload = json.loads(body or b"{}")
        repo_id = f"{payload.get('organization') or self.user}/{payload['name']}"
        repo_type = payload.get("type") or "model"
        if repo_id in self._repos:
            # create_repo(exist_ok=True) reads the url from this 409's body
            raise HubError(409, f"You already created this {repo_type} repo", url=self._repo_url(self._repos[repo_id]))
        private = payload.get("visibility", "private" if payload.get("private") else "public") == "private"
        repo = self._repos[repo_id] = Repo(repo_id, repo_type, private, _now())
        self._add_commit(repo, "main", "initial commit", {".gitattributes": GITATTRIBUTES}, [".gitattributes"])
        return _json({"url": self._repo_url(repo), "name": repo_id, "id": repo_id})

    def _validate_yaml(self, **_):
        """POST /api/validate-yaml <- create_commit/upload_file when README.md is among the files."""
        return _json({"errors": [], "warnings": []})

    def _whoami(self, **_):
        """GET /api/whoami-v2 <- whoami."""
        return _json(
            {
                "type": "user",
                "name": self.user,
                "fullname": self.user,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "fake", "role": "write"}},
            }
        )

    def _repo_info(self, type, repo_id, authed, rev="main", **_):
        """GET /api/{type}s/{repo}[/revision/{rev}] <- repo_info/model_info, revision_exists, snapshot_download
        (which reads `sha` to pin the commit), and create_commit when nothing changed."""
        repo = self._repo(type, repo_id, authed)
        commit = repo.commits[self._resolve(repo, rev)]
        return _json(
            {
                "id": repo_id,
                "author": repo_id.split("/")[0],
                "sha": commit.id,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "createdAt": repo.created_at,
                "lastModified": commit.date,
                "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            }
        )

    def _refs(self, type, repo_id, authed, **_):
        """GET /api/{type}s/{repo}/refs <- list_repo_refs."""
        repo = self._repo(type, repo_id, authed)
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": commit_id}
            for name, commit_id in sorted(repo.branches.items())
        ]
        return _json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def _tree(self, type, repo_id, authed, rev, query, path="", **_):
        """GET /api/{type}s/{repo}/tree/{rev}[/{path}]?recursive=... <- list_repo_tree, list_repo_files,
        snapshot_download (with rev = the commit id from repo_info). One page: no Link header."""
        repo = self._repo(type, repo_id, authed)
        files = repo.commits[self._resolve(repo, rev)].files
        recursive = query.get("recursive", "false").lower() in ("true", "1")
        base = path.strip("/") + "/" if path.strip("/") else ""
        entries: dict[str, dict] = {}
        for file_path in sorted(p for p in files if p.startswith(base)):
            parts = file_path[len(base) :].split("/")
            for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
                folder = base + "/".join(parts[:depth])
                entries.setdefault(
                    folder,
                    {"type": "directory", "path": folder, "size": 0, "oid": hashlib.sha1(folder.encode()).hexdigest()},
                )
            if recursive or len(parts) == 1:
                data = files[file_path]
                entries[file_path] = {"type": "file", "path": file_path, "size": len(data), "oid": git_blob_id(data)}
        if base and not entries:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        return _json(list(entries.values()))

    def _preupload(self, type, repo_id, authed, rev, body, **_):
        """POST /api/{type}s/{repo}/preupload/{rev} <- create_commit, upload_file, upload_folder.

        "regular" for every file keeps the client off Xet and LFS; `oid` (the blob id already at that
        path) lets the client leave unchanged files out of the commit, as with the real Hub."""
        repo = self._repo(type, repo_id, authed)
        commit = repo.commits[self._resolve(repo, rev)]
        answers = []
        for f in json.loads(body)["files"]:
            existing = commit.files.get(f["path"])
            answers.append(
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_id(existing) if existing is not None else None,
                }
            )
        return _json({"files": answers, "commitOid": commit.id})

    def _commit(self, type, repo_id, authed, rev, body, query, **_):
        """POST /api/{type}s/{repo}/commit/{rev} (NDJSON) <- create_commit, upload_file, upload_folder.

        The revision must be an existing branch: committing to a missing one is a 404 RevisionNotFound,
        so callers create the branch first."""
        repo = self._repo(type, repo_id, authed)
        if query.get("create_pr"):
            raise HubError(400, "Pull requests are not supported by the fake hub")
        if rev not in repo.branches:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        if header.get("parentCommit") not in (None, repo.branches[rev]):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files, changed, deleted = dict(repo.commits[repo.branches[rev]].files), [], []
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                changed.append(value["path"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                deleted.append(value["path"])
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                gone = [p for p in files if p.startswith(prefix)]
                for p in gone:
                    del files[p]
                deleted += gone
            elif key != "header":  # "lfsFile": never asked for, since preupload says "regular"
                raise HubError(400, f"Unsupported commit operation for the fake hub: {key}")
        commit = self._add_commit(repo, rev, header["summary"], files, changed, deleted)
        return _json(
            {
                "success": True,
                "commitOid": commit.id,
                "hookOutput": "",
                "commitUrl": f"{self._repo_url(repo)}/commit/{commit.id}",
            }
        )

    def _create_branch(self, type, repo_id, authed, rev, body, **_):
        """POST /api/{type}s/{repo}/branch/{branch} {"startingPoint": rev?} <- create_branch.

        The new branch points at the starting point's commit (default main). 409 if it exists, which
        create_branch(exist_ok=True) swallows; exist_ok=False raises HfHubHTTPError (status 409)."""
        repo = self._repo(type, repo_id, authed)
        if rev in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{rev}")
        start = json.loads(body or b"{}").get("startingPoint") or "main"
        repo.branches[rev] = self._resolve(repo, start)
        return _json({})

    def _resolve_file(self, method, repo_id, authed, rev, path, headers, type="model", **_):
        """HEAD|GET /[{type}s/]{repo}/resolve/{rev}/{path} <- hf_hub_download, snapshot_download, file_exists.

        HEAD gives the metadata the client insists on (ETag, X-Repo-Commit, Content-Length); no X-Xet-Hash
        header, so the client downloads the bytes with a plain GET. A Range header is ignored: the client
        then restarts the file from its first byte."""
        repo = self._repo(type, repo_id, authed)
        commit = repo.commits[self._resolve(repo, rev)]
        if path not in commit.files:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.id})
        data = commit.files[path]
        out = {
            "ETag": f'"{git_blob_id(data)}"',
            "X-Repo-Commit": commit.id,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(data)),
        }
        return 200, out, data


def _json(payload) -> tuple[int, dict, bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def _error(e: HubError) -> tuple[int, dict, bytes]:
    headers = {"Content-Type": "application/json", "X-Error-Message": e.message, **e.headers}
    if e.code:
        headers["X-Error-Code"] = e.code
    return e.status, headers, json.dumps({"error": e.message, **e.extra}).encode()


# (methods, path regex on the still-encoded path, handler, needs a token)
_ROUTES = [
    (("POST",), r"/api/repos/create", FakeHub._create_repo, True),
    (("POST",), r"/api/validate-yaml", FakeHub._validate_yaml, False),
    (("GET",), r"/api/whoami-v2", FakeHub._whoami, True),
    (("GET",), _REPO, FakeHub._repo_info, False),
    (("GET",), _REPO + r"/revision/" + _REV, FakeHub._repo_info, False),
    (("GET",), _REPO + r"/refs", FakeHub._refs, False),
    (("GET",), _REPO + r"/tree/" + _REV + r"(?:/(?P<path>.*))?", FakeHub._tree, False),
    (("POST",), _REPO + r"/preupload/" + _REV, FakeHub._preupload, True),
    (("POST",), _REPO + r"/commit/" + _REV, FakeHub._commit, True),
    (("POST",), _REPO + r"/branch/" + _REV, FakeHub._create_branch, True),
    (
        ("GET", "HEAD"),
        r"/(?:(?P<type>dataset|space)s/)?(?P<repo_id>[^/]+/[^/]+)/resolve/" + _REV + r"/(?P<path>.+)",
        FakeHub._resolve_file,
        False,
    ),
]


class _Handler(BaseHTTPRequestHandler):
    """Reads the whole body first (answering early would break the client's upload of a large body),
    then lets the hub answer. HTTP/1.0: one connection per request, so nothing lingers after stop()."""

    def _handle(self) -> None:
        body = self._read_body()
        status, headers, out = self.server.hub._serve(self.command, self.path, self.headers, body)
        self.send_response(status)
        headers.setdefault("Content-Length", str(len(out)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

    def _read_body(self) -> bytes:
        # The client always sends a Content-Length (bodies are bytes or JSON, never streamed chunks).
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def log_message(self, format, *args) -> None:  # keep test output quiet
        pass
