"""A test double of the Hugging Face Hub and of a download site, on 127.0.0.1 (HF_ENDPOINT).

It serves what huggingface_hub 2.4's snapshot_download asks for: a revision's commit
(/api/{models,datasets}/{repo}/revision/{rev}), its file tree (.../tree/{commit}?recursive=true)
and each file (HEAD and GET {repo}/resolve/{commit}/{path}, datasets under /datasets). Large files
carry their sha256 as etag, as the hub's LFS files do; small ones (json, txt) their git blob id. No
Xet headers, so the client downloads over plain HTTP. Any other file under `root/files/` is served
at /files/<name>, as a project's download page would serve an archive.

It takes what HfApi.create_repo and create_commit send, with a write token (`token`): the repo
(POST /api/repos/create), the card's metadata check (POST /api/validate-yaml), each file's upload
mode (POST /api/{type}s/{repo}/preupload/{rev}: small files regular, others LFS, as downloads tell
them apart), the LFS batch (POST {repo}.git/info/lfs/objects/batch), the upload of each new LFS
object (PUT to a signed URL, no token, as to S3) and its verify, then the commit (POST
/api/{type}s/{repo}/commit/{rev}, ndjson), which adds its files to the revision at once. Every
request with a token other than `token` gets 401, as the hub answers invalid credentials; so does a
write without one; a private repo is not found without the token. The LFS protocol is the only one
it speaks: huggingface_hub uploads over Xet whenever hf_xet is installed (a client-side choice, no
server answer turns it off), so a client uploading here needs HF_HUB_DISABLE_XET=1.

Layout: root/<model|dataset>/<owner>/<name>/<revision>/<files>, uploaded LFS objects under
root/lfs/<sha256>. Faults for the tests: the next `corrupt` full GETs send the right length of
wrong bytes; the next `truncate` send half and close.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

SMALL_FILES = (".json", ".txt")
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"  # the hub's words (huggingface_hub reads them)


def commit_of(repo_type: str, repo_id: str, revision: str) -> str:
    return hashlib.sha1(f"{repo_type}/{repo_id}@{revision}".encode()).hexdigest()


def etag_of(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix in SMALL_FILES:
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return hashlib.sha256(data).hexdigest()


class HubDouble:
    def __init__(self, root: Path, token: str | None = None):
        self.root = Path(root)
        self.token = token  # the one write token it accepts
        self.corrupt = 0
        self.truncate = 0
        self.requests: list[tuple[str, str]] = []
        self.private: dict[tuple[str, str], bool] = {}  # (repo type, repo id) -> private, of created repos
        self.commits: list[dict] = []  # every commit's header (summary, description) and its files
        self._secret = os.urandom(16)  # signs the LFS upload URLs
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HubDouble:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Cut the network: the port closes."""
        self._server.shutdown()
        self._server.server_close()

    def add_repo(self, repo_type: str, repo_id: str, revision: str, source: Path) -> Path:
        """Publish a directory's files as a revision of a repository."""
        target = self.root / repo_type / repo_id / revision
        target.mkdir(parents=True)
        for path in Path(source).rglob("*"):
            if path.is_file():
                (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                (target / path.relative_to(source)).write_bytes(path.read_bytes())
        return target

    def _take_fault(self) -> str | None:
        with self._lock:
            for fault in ("corrupt", "truncate"):
                if getattr(self, fault):
                    setattr(self, fault, getattr(self, fault) - 1)
                    return fault
        return None

    def _revision_dir(self, repo_type: str, repo_id: str, revision: str) -> tuple[str, Path] | None:
        base = self.root / repo_type / repo_id
        for directory in sorted(base.iterdir()) if base.is_dir() else []:
            if revision in (directory.name, commit_of(repo_type, repo_id, directory.name)):
                return commit_of(repo_type, repo_id, directory.name), directory
        return None

    def _signature(self, oid: str) -> str:
        return hmac.new(self._secret, oid.encode(), "sha256").hexdigest()

    def _lfs_object(self, oid: str) -> Path:
        return self.root / "lfs" / oid

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._route()

            def do_GET(self):
                self._route()

            def do_POST(self):
                self._route()

            def do_PUT(self):
                self._route()

            def _send(self, code: int, body: bytes | dict | list = b"", headers: dict | None = None):
                if not isinstance(body, bytes):
                    body = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _not_found(self, code: str, headers: dict | None = None):
                self._send(404, {"error": code}, {"X-Error-Code": code, **(headers or {})})

            def _refuse(self, message: str, code: int = 401):
                self._send(code, {"error": message}, {"X-Error-Message": message})

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _authorized(self) -> bool | None:
                """True with the write token, False with another one, None without one (or where the
                double has no token: downloads then ignore credentials, as before it took uploads)."""
                given = self.headers.get("Authorization")
                if given is None or hub.token is None:
                    return None
                return hmac.compare_digest(given, f"Bearer {hub.token}")

            def _route(self):
                url = urlsplit(self.path)
                hub.requests.append((self.command, url.path))
                parts = [unquote(part) for part in url.path.split("/") if part]
                body = self._body() if self.command in ("POST", "PUT") else b""
                try:
                    if parts[:1] == ["lfs-objects"] and self.command == "PUT":  # a signed URL: no token
                        return self._lfs_put(parts[1], parse_qs(url.query), body)
                    authorized = self._authorized()
                    if authorized is False:
                        return self._refuse(INVALID_CREDENTIALS)
                    if self.command in ("POST", "PUT"):
                        if not authorized:
                            return self._refuse("A write token is required")
                        return self._write(parts, body)
                    if parts[:1] == ["files"]:
                        return self._file(hub.root / "files" / "/".join(parts[1:]), {})
                    if parts[:1] == ["api"] and len(parts) >= 6 and parts[1] in ("models", "datasets"):
                        return self._api(parts[1][:-1], "/".join(parts[2:4]), parts[4], parts[5], parse_qs(url.query))
                    repo_type = "dataset" if parts[:1] == ["datasets"] else "model"
                    parts = parts[1:] if repo_type == "dataset" else parts
                    if len(parts) >= 5 and parts[2] == "resolve":
                        return self._resolve(repo_type, "/".join(parts[:2]), parts[3], "/".join(parts[4:]))
                    self._not_found("EntryNotFound")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _hidden(self, repo_type: str, repo_id: str) -> bool:
                """A private repo, asked for without the token."""
                return hub.private.get((repo_type, repo_id), False) and not self._authorized()

            # Uploads.

            def _write(self, parts: list[str], body: bytes):
                if parts == ["api", "repos", "create"]:
                    return self._create_repo(json.loads(body))
                if parts == ["api", "validate-yaml"]:
                    return self._validate_yaml(json.loads(body)["content"])
                if parts[:1] == ["api"] and len(parts) == 6 and parts[1] in ("models", "datasets"):
                    repo_type, repo_id, action, revision = parts[1][:-1], "/".join(parts[2:4]), parts[4], parts[5]
                    if not (hub.root / repo_type / repo_id).is_dir():
                        return self._not_found("RepoNotFound")
                    if action == "preupload":
                        return self._preupload(json.loads(body))
                    if action == "commit":
                        return self._commit(repo_type, repo_id, revision, body)
                repo_type = "dataset" if parts[:1] == ["datasets"] else "model"
                parts = parts[1:] if repo_type == "dataset" else parts
                if len(parts) == 6 and parts[1].endswith(".git") and parts[2:5] == ["info", "lfs", "objects"]:
                    if not (hub.root / repo_type / parts[0] / parts[1][:-4]).is_dir():
                        return self._not_found("RepoNotFound")
                    if parts[5] == "batch":
                        return self._lfs_batch(self.path.split("/info/lfs/")[0], json.loads(body))
                    if parts[5] == "verify":
                        return self._lfs_verify(json.loads(body))
                self._not_found("EntryNotFound")

            def _create_repo(self, payload: dict):
                repo_type = payload.get("type") or "model"
                repo_id = f"{payload['organization']}/{payload['name']}"
                directory = hub.root / repo_type / repo_id
                if directory.is_dir():
                    return self._send(409, {"error": "You already created this repo", "url": f"{hub.url}/{repo_id}"})
                directory.mkdir(parents=True)
                hub.private[(repo_type, repo_id)] = payload.get("visibility") == "private"
                prefix = "" if repo_type == "model" else f"{repo_type}s/"
                self._send(200, {"url": f"{hub.url}/{prefix}{repo_id}", "name": repo_id})

            def _validate_yaml(self, content: str):
                """The card's metadata: YAML front matter holding a mapping."""
                try:
                    _, front, _ = content.split("---\n", 2)
                    if not isinstance(yaml.safe_load(front), dict):
                        raise ValueError("the metadata is not a mapping")
                except (ValueError, yaml.YAMLError) as error:
                    return self._send(400, {"errors": [{"message": f"invalid metadata: {error}"}], "warnings": []})
                self._send(200, {"errors": [], "warnings": []})

            def _preupload(self, payload: dict):
                files = [
                    {
                        "path": file["path"],
                        "uploadMode": "regular" if Path(file["path"]).suffix in SMALL_FILES else "lfs",
                        "shouldIgnore": False,
                        "oid": None,
                    }
                    for file in payload["files"]
                ]
                self._send(200, {"files": files})

            def _lfs_batch(self, repository: str, payload: dict):
                objects = []
                for item in payload["objects"]:
                    oid, entry = item["oid"], {"oid": item["oid"], "size": item["size"], "authenticated": True}
                    if not hub._lfs_object(oid).is_file():  # an object already stored needs no upload
                        entry["actions"] = {
                            "upload": {"href": f"{hub.url}/lfs-objects/{oid}?signature={hub._signature(oid)}"},
                            "verify": {"href": f"{hub.url}{repository}/info/lfs/objects/verify"},
                        }
                    objects.append(entry)
                self._send(200, {"transfer": "basic", "objects": objects})

            def _lfs_put(self, oid: str, query: dict, body: bytes):
                if not hmac.compare_digest(query.get("signature", [""])[0], hub._signature(oid)):
                    return self._refuse("Signature does not match", 403)
                if hashlib.sha256(body).hexdigest() != oid:
                    return self._refuse("The content does not match its sha256", 400)
                path = hub._lfs_object(oid)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)
                self._send(200)

            def _lfs_verify(self, payload: dict):
                path = hub._lfs_object(payload["oid"])
                if not path.is_file() or path.stat().st_size != payload["size"]:
                    return self._refuse("Object not found or of another size", 404)
                self._send(200, {"success": True})

            def _commit(self, repo_type: str, repo_id: str, revision: str, body: bytes):
                """Every operation is checked before any file is written: a commit lands whole or not at all."""
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                header, files = lines[0]["value"], {}
                for line in lines[1:]:
                    value = line["value"]
                    if line["key"] == "file":
                        files[value["path"]] = base64.b64decode(value["content"])
                    elif line["key"] == "lfsFile":
                        stored = hub._lfs_object(value["oid"])
                        if not stored.is_file() or stored.stat().st_size != value["size"]:
                            return self._refuse(f"LFS object of {value['path']} was not uploaded", 422)
                        files[value["path"]] = stored.read_bytes()
                    else:
                        return self._refuse(f"the double does not take {line['key']} operations", 400)
                found = hub._revision_dir(repo_type, repo_id, revision)
                target = found[1] if found else hub.root / repo_type / repo_id / revision
                staging = target.with_name(f".{target.name}.commit")
                shutil.rmtree(staging, ignore_errors=True)
                if target.is_dir():
                    shutil.copytree(target, staging)
                staging.mkdir(exist_ok=True)
                for name, data in files.items():
                    (staging / name).parent.mkdir(parents=True, exist_ok=True)
                    (staging / name).write_bytes(data)
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
                hub.commits.append({"repo": repo_id, "revision": target.name, **header, "files": sorted(files)})
                commit = commit_of(repo_type, repo_id, target.name)
                prefix = "" if repo_type == "model" else f"{repo_type}s/"
                self._send(200, {"commitUrl": f"{hub.url}/{prefix}{repo_id}/commit/{commit}", "commitOid": commit})

            # Downloads.

            def _api(self, repo_type: str, repo_id: str, kind: str, revision: str, query: dict):
                found = None if self._hidden(repo_type, repo_id) else hub._revision_dir(repo_type, repo_id, revision)
                if found is None:
                    repo = (hub.root / repo_type / repo_id).is_dir() and not self._hidden(repo_type, repo_id)
                    return self._not_found("RevisionNotFound" if repo else "RepoNotFound")
                commit, directory = found
                files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
                if kind == "revision":
                    return self._send(
                        200, {"id": repo_id, "sha": commit, "siblings": [{"rfilename": f} for f in files]}
                    )
                entries = []
                for name in files:
                    path = directory / name
                    etag, size = etag_of(path), path.stat().st_size
                    entry = {"type": "file", "path": name, "size": size, "oid": hashlib.sha1(name.encode()).hexdigest()}
                    if len(etag) == 64:
                        entry["lfs"] = {"oid": etag, "size": size, "pointerSize": 134}
                    entries.append(entry)
                self._send(200, entries)

            def _resolve(self, repo_type: str, repo_id: str, revision: str, name: str):
                found = None if self._hidden(repo_type, repo_id) else hub._revision_dir(repo_type, repo_id, revision)
                if found is None:
                    return self._not_found("RevisionNotFound")
                commit, directory = found
                path = directory / name
                if not path.is_file():
                    return self._not_found("EntryNotFound", {"X-Repo-Commit": commit})
                etag = etag_of(path)
                headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"'}
                if len(etag) == 64:
                    headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(path.stat().st_size)})
                self._file(path, headers)

            def _file(self, path: Path, headers: dict):
                if not path.is_file():
                    return self._not_found("EntryNotFound")
                data = path.read_bytes()
                fault = hub._take_fault() if self.command == "GET" else None
                if fault == "corrupt":
                    data = bytes(byte ^ 0xFF for byte in data)
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                if fault == "truncate":
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        return Handler
