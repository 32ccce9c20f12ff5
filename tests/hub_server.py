"""A fake Hugging Face Hub: the HTTP endpoints that `huggingface_hub`'s real client calls.

The tests point `HF_ENDPOINT` at it, so `create_repo`, `upload_folder`, `hf_hub_download`,
`list_repo_files` and `model_info` run their real code paths over real HTTP, on 127.0.0.1.
Repos, branches and commits live in memory; every commit is a full snapshot of the repo's
files, so any earlier commit stays addressable by its oid, as on the Hub.

Endpoints, for model repos and dataset repos (`{kind}` is `models` or `datasets`; a dataset's files
are served under `/datasets/{repo}/resolve/...`, a model's under `/{repo}/resolve/...`):

    POST /api/repos/create                                 create a repo (409 with its url if it exists)
    POST /api/validate-yaml                                check a README's metadata block
    POST /api/{kind}/{repo}/preupload/{revision}           every file is uploaded "regular" (no LFS, no Xet)
    POST /api/{kind}/{repo}/commit/{revision}              NDJSON: header, file, deletedFile, deletedFolder
    POST /api/{kind}/{repo}/branch/{branch}                create a branch
    POST /api/{kind}/{repo}/paths-info/{revision}          what each of some paths is (file or folder)
    GET  /api/{kind}/{repo}[/revision/{revision}]          repo info with siblings
    GET  /api/{kind}/{repo}/tree/{revision}[/{path}]       file listing
    HEAD/GET [/datasets]/{repo}/resolve/{revision}/{path}  file download with ETag and X-Repo-Commit

Dataset repos are kept in `FakeHub.repos` under `datasets/{repo}` (model repos under their plain id);
the seeding methods take `repo_type="dataset"` for them.

Writes need `Authorization: Bearer <one of FakeHub.tokens>`; private repos also need it to be read.
Errors carry the `X-Error-Code` header (RepoNotFound, RevisionNotFound, EntryNotFound) that the
client turns into its typed exceptions.
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

WRITE_TOKEN = "hf_fake_write_token"
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_oid(content: bytes) -> str:
    """The git object id of a file, which is what the Hub reports as a regular file's oid and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, bytes]  # the repo's full content at this commit


def repo_key(repo_id: str, repo_type: str = "model") -> str:
    """Where `FakeHub.repos` keeps a repo: a model under its id, a dataset under `datasets/{id}`."""
    if repo_type not in ("model", "dataset"):
        raise HubError(400, f"the fake Hub hosts model and dataset repos, not {repo_type} repos")
    return repo_id if repo_type == "model" else f"datasets/{repo_id}"


@dataclass
class Repo:
    repo_id: str  # as the Hub names it ("user/name"), whatever its type
    private: bool
    repo_type: str = "model"
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)


class HubError(Exception):
    """Answered as an HTTP error with the Hub's `X-Error-Code` header."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


class FakeHub:
    """In-memory Hub served on 127.0.0.1 by a daemon thread.

    Args:
        tokens: the tokens that may write, and read private repos.
    """

    def __init__(self, tokens: tuple[str, ...] = (WRITE_TOKEN,)):
        self.tokens = set(tokens)
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._server: ThreadingHTTPServer | None = None

    @classmethod
    def start(cls, **kwargs) -> FakeHub:
        hub = cls(**kwargs)
        handler = type("Handler", (_Handler,), {"hub": hub})
        hub._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        hub._server.daemon_threads = True
        threading.Thread(target=hub._server.serve_forever, name="fake-hub", daemon=True).start()
        return hub

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- state, also used directly by tests to seed repos ----

    def create_repo(self, repo_id: str, private: bool = False, repo_type: str = "model") -> Repo:
        key = repo_key(repo_id, repo_type)
        with self._lock:
            if key in self.repos:
                raise HubError(409, f"You already created this {repo_type} repo: {repo_id}")
            repo = self.repos[key] = Repo(repo_id, private, repo_type)
            self._commit(repo, "main", "initial commit", {".gitattributes": GITATTRIBUTES}, deletions=())
            return repo

    def add_commit(
        self,
        repo_id: str,
        files: dict[str, bytes],
        message: str = "seed",
        branch: str = "main",
        repo_type: str = "model",
    ) -> str:
        """Commit `files` to a repo (created if missing) without going through HTTP; returns the oid."""
        if repo_key(repo_id, repo_type) not in self.repos:
            self.create_repo(repo_id, repo_type=repo_type)
        with self._lock:
            return self._commit(self.repos[repo_key(repo_id, repo_type)], branch, message, files, deletions=())

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        with self._lock:
            return dict(self.repos[repo_key(repo_id, repo_type)].resolve(revision).files)

    def head(self, repo_id: str, branch: str = "main", repo_type: str = "model") -> str:
        with self._lock:
            return self.repos[repo_key(repo_id, repo_type)].branches[branch]

    def _commit(self, repo: Repo, branch: str, message: str, additions: dict[str, bytes], deletions) -> str:
        parent = repo.branches.get(branch)
        files = dict(repo.commits[parent].files) if parent else {}
        for path in deletions:
            folder = path.rstrip("/") + "/"
            if path not in files and not any(name.startswith(folder) for name in files):
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            files = {name: data for name, data in files.items() if name != path and not name.startswith(folder)}
        files.update(additions)
        digest = hashlib.sha1(f"{repo.repo_id}:{parent}:{message}:{next(self._counter)}".encode())
        for name in sorted(files):
            digest.update(f"{name}:{git_blob_oid(files[name])}".encode())
        oid = digest.hexdigest()
        repo.commits[oid] = Commit(oid, parent, message, files)
        repo.branches[branch] = oid
        return oid

    def _repo(self, repo_id: str, authorized: bool, repo_type: str = "model") -> Repo:
        repo = self.repos.get(repo_key(repo_id, repo_type))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        if repo.private and not authorized:
            raise HubError(401, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def _commit_at(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output clean
        pass

    # ---- plumbing ----

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        segments = [unquote(part) for part in url.path.strip("/").split("/")]  # quoted "/" stays in its segment
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        self._body = None  # one handler serves every request of a kept-alive connection
        if method == "POST":
            self._raw_body()  # read it whatever the answer, or the kept-alive connection would desync
        with self.hub._lock:
            self.hub.requests.append((method, url.path))
        try:
            status, body, headers = self._dispatch(method, segments, query)
        except HubError as error:
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            if error.commit:
                headers["X-Repo-Commit"] = error.commit
            status, body = error.status, {"error": error.message}
            if error.status == 409 and segments[:3] == ["api", "repos", "create"]:
                payload = self._json_body()
                body["url"] = self._repo_url(payload["repo_id"], payload.get("type") or "model")
        self._send(method, status, body, headers)

    def _send(self, method: str, status: int, body, headers: dict[str, str]) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        if not isinstance(body, bytes):
            self.send_header("Content-Type", "application/json")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def _raw_body(self) -> bytes:
        if self._body is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                self._body = b"".join(chunks)
            else:
                self._body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return self._body

    def _json_body(self) -> dict:
        payload = json.loads(self._raw_body() or b"{}")
        if self.path.startswith("/api/repos/create"):
            name, organization = payload.get("name"), payload.get("organization")
            payload["repo_id"] = f"{organization}/{name}" if organization else name
        return payload

    def _authorized(self) -> bool:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token in self.hub.tokens

    def _require_write(self) -> None:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")

    def _repo_url(self, repo_id: str, repo_type: str = "model") -> str:
        return f"{self.hub.url}/{'' if repo_type == 'model' else 'datasets/'}{repo_id}"

    def do_GET(self):
        self._route("GET")

    def do_HEAD(self):
        self._route("HEAD")

    def do_POST(self):
        self._route("POST")

    # ---- endpoints ----

    def _dispatch(self, method: str, segments: list[str], query: dict[str, str]):
        hub = self.hub
        if method == "POST" and segments == ["api", "repos", "create"]:
            return self._create_repo()
        if method == "POST" and segments == ["api", "validate-yaml"]:
            return self._validate_yaml()
        if segments[:1] == ["api"] and segments[1:2] in (["models"], ["datasets"]) and len(segments) >= 4:
            repo_type = segments[1].removesuffix("s")
            repo_id, rest = "/".join(segments[2:4]), segments[4:]
            with hub._lock:
                repo = hub._repo(repo_id, self._authorized(), repo_type)
            if method == "POST" and len(rest) == 2 and rest[0] in ("preupload", "commit", "branch"):
                self._require_write()
                return getattr(self, f"_{rest[0]}")(repo, rest[1])
            if method == "POST" and len(rest) == 2 and rest[0] == "paths-info":
                return self._paths_info(repo, rest[1])
            if method == "GET" and rest[:1] == ["tree"] and len(rest) >= 2:
                return self._tree(repo, rest[1], "/".join(rest[2:]), query.get("recursive") in ("True", "true", "1"))
            if method == "GET" and (not rest or (rest[0] == "revision" and len(rest) == 2)):
                return self._repo_info(repo, rest[1] if rest else "main")
        is_download = method in ("GET", "HEAD")
        if is_download and segments[:1] == ["datasets"] and len(segments) >= 6 and segments[3] == "resolve":
            return self._resolve(f"{segments[1]}/{segments[2]}", segments[4], "/".join(segments[5:]), "dataset")
        if is_download and len(segments) >= 5 and segments[2] == "resolve":
            return self._resolve(f"{segments[0]}/{segments[1]}", segments[3], "/".join(segments[4:]))
        raise HubError(404, f"no such endpoint: {method} {self.path}")

    def _create_repo(self):
        self._require_write()
        payload = self._json_body()
        repo_type = payload.get("type") or "model"
        if "/" not in payload["repo_id"]:
            raise HubError(400, "repo ids need a namespace: user/name")
        private = payload.get("visibility") == "private" or payload.get("private") is True
        self.hub.create_repo(payload["repo_id"], private=private, repo_type=repo_type)
        url = self._repo_url(payload["repo_id"], repo_type)
        return 200, {"url": url, "name": payload["repo_id"]}, {}

    def _validate_yaml(self):
        content = self._json_body().get("content", "")
        errors = []
        if content.startswith("---"):
            block = content.split("---", 2)[1]
            try:
                metadata = yaml.safe_load(block)
                if not isinstance(metadata, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except yaml.YAMLError as error:
                errors.append({"message": f"invalid YAML: {error}"})
        return (400 if errors else 200), {"errors": errors, "warnings": []}, {}

    def _preupload(self, repo: Repo, revision: str):
        with self.hub._lock:
            current = self.hub._commit_at(repo, revision).files
        files = [
            {
                "path": item["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_blob_oid(current[item["path"]]) if item["path"] in current else None,
            }
            for item in self._json_body()["files"]
        ]
        return 200, {"files": files, "commitOid": repo.branches.get(revision)}, {}

    def _commit(self, repo: Repo, branch: str):
        lines = [json.loads(line) for line in self._raw_body().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        additions, deletions = {}, []
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"unsupported encoding {value.get('encoding')}")
                additions[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deletions.append(value["path"] + ("/" if key == "deletedFolder" else ""))
            elif key != "header":
                raise HubError(400, f"the fake Hub does not support {key} operations (only regular uploads)")
        with self.hub._lock:
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            parent = header.get("parentCommit")
            if parent is not None and parent != repo.branches[branch]:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            oid = self.hub._commit(repo, branch, header["summary"], additions, deletions)
        commit_url = f"{self._repo_url(repo.repo_id, repo.repo_type)}/commit/{oid}"
        return 200, {"commitUrl": commit_url, "commitOid": oid, "pullRequestUrl": None}, {}

    def _branch(self, repo: Repo, branch: str):
        starting_point = self._json_body().get("startingPoint", "main")
        with self.hub._lock:
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: {branch}")
            repo.branches[branch] = self.hub._commit_at(repo, starting_point).oid
        return 200, {}, {}

    def _repo_info(self, repo: Repo, revision: str):
        with self.hub._lock:
            commit = self.hub._commit_at(repo, revision)
        siblings = [{"rfilename": name} for name in sorted(commit.files)]
        info = {"id": repo.repo_id, "sha": commit.oid, "private": repo.private, "siblings": siblings, "tags": []}
        return 200, info, {}

    def _tree(self, repo: Repo, revision: str, folder: str, recursive: bool):
        with self.hub._lock:
            files = self.hub._commit_at(repo, revision).files
        prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
        entries, folders = [], set()
        for name in sorted(files):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix):].split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                oid = git_blob_oid(files[name])
                entries.append({"type": "file", "path": name, "size": len(files[name]), "oid": oid})
        for path in sorted(folders):
            entries.append({"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()})
        return 200, entries, {}

    def _paths_info(self, repo: Repo, revision: str):
        # the form-encoded body names the paths (`paths=a&paths=b`); folders are those some file is under
        with self.hub._lock:
            files = self.hub._commit_at(repo, revision).files
        entries = []
        for path in parse_qs(self._raw_body().decode()).get("paths", []):
            path = path.strip("/")
            if path in files:
                size, oid = len(files[path]), git_blob_oid(files[path])
                entries.append({"type": "file", "path": path, "size": size, "oid": oid})
            elif any(name.startswith(path + "/") for name in files):
                entries.append({"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()})
        return 200, entries, {}

    def _resolve(self, repo_id: str, revision: str, path: str, repo_type: str = "model"):
        with self.hub._lock:
            repo = self.hub._repo(repo_id, self._authorized(), repo_type)
            commit = self.hub._commit_at(repo, revision)
        if path not in commit.files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", commit=commit.oid)
        content = commit.files[path]
        headers = {
            "ETag": f'"{git_blob_oid(content)}"',
            "X-Repo-Commit": commit.oid,
            "Content-Type": "application/octet-stream",
        }
        return 200, content, headers
