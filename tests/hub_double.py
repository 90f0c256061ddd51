"""A test double of the Hugging Face Hub and of a download site, on 127.0.0.1 (HF_ENDPOINT).

It serves what huggingface_hub 2.4's snapshot_download asks for: a revision's commit
(/api/{models,datasets}/{repo}/revision/{rev}), its file tree (.../tree/{commit}?recursive=true)
and each file (HEAD and GET {repo}/resolve/{commit}/{path}, datasets under /datasets). Large files
carry their sha256 as etag, as the hub's LFS files do; small ones (json, txt) their git blob id. No
Xet headers, so the client downloads over plain HTTP. Any other file under `root/files/` is served
at /files/<name>, as a project's download page would serve an archive.

Layout: root/<model|dataset>/<owner>/<name>/<revision>/<files>. Faults for the tests: the next
`corrupt` full GETs send the right length of wrong bytes; the next `truncate` send half and close.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

SMALL_FILES = (".json", ".txt")


def commit_of(repo_type: str, repo_id: str, revision: str) -> str:
    return hashlib.sha1(f"{repo_type}/{repo_id}@{revision}".encode()).hexdigest()


def etag_of(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix in SMALL_FILES:
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return hashlib.sha256(data).hexdigest()


class HubDouble:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.corrupt = 0
        self.truncate = 0
        self.requests: list[tuple[str, str]] = []
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

            def _route(self):
                url = urlsplit(self.path)
                hub.requests.append((self.command, url.path))
                parts = [unquote(part) for part in url.path.split("/") if part]
                try:
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

            def _api(self, repo_type: str, repo_id: str, kind: str, revision: str, query: dict):
                found = hub._revision_dir(repo_type, repo_id, revision)
                if found is None:
                    repo = (hub.root / repo_type / repo_id).is_dir()
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
                found = hub._revision_dir(repo_type, repo_id, revision)
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
