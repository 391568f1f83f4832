"""A real registry for the tests: Debian's docker-registry (distribution 2.8) on a loopback
port, a pusher that uploads images through the registry HTTP API with the standard
library only, and a small in-process Bearer-token front end for the token flow.

The registry listens on port 0 and the fixture reads the port it got from its log line
"listening on 127.0.0.1:N", so parallel runs never race for a port. Its command line holds
the test's scratch path, so conftest's leak check sees it if it outlived the test."""
import base64
import hashlib
import http.client
import http.server
import json
import os
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

REGISTRY_BIN = "/usr/bin/docker-registry"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """docker-registry serve CONFIG, storage and config under root."""

    def __init__(self, root, htpasswd=None, addr="127.0.0.1", tls=None, popen=None):
        """addr: the address to listen on; tls: (certificate, key) paths to serve HTTPS;
        popen: how to start the process (a netns wrapper), subprocess.Popen by default."""
        self.addr = addr
        self.tls = tls
        self.popen = popen
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.storage = self.root / "storage"
        self.log_path = self.root / "registry.log"
        self.users = htpasswd or {}
        self.proc = None
        self.port = None

    def start(self, timeout=15):
        auth = ""
        if self.users:
            lines = []
            for user, password in self.users.items():
                out = subprocess.run(["htpasswd", "-Bbn", user, password], check=True,
                                     capture_output=True, text=True).stdout
                lines.append(out.strip())
            hp = self.root / "htpasswd"
            hp.write_text("\n".join(lines) + "\n")
            auth = f"auth:\n  htpasswd:\n    realm: unikd-test\n    path: {hp}\n"
        cfg = self.root / "config.yml"
        cfg.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"http:\n  addr: {self.addr}:0\n  secret: unikd-test-secret\n"
            + (f"  tls:\n    certificate: {self.tls[0]}\n    key: {self.tls[1]}\n" if self.tls else "")
            + auth)
        log = open(self.log_path, "wb")
        try:
            self.proc = (self.popen or subprocess.Popen)([REGISTRY_BIN, "serve", str(cfg)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         close_fds=True, env={"PATH": "/usr/bin:/bin"})
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(rb"listening on " + re.escape(self.addr.encode()) + rb":(\d+)", self.log_path.read_bytes())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        log_text = self.log_path.read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"docker-registry did not start:\n{log_text}")

    @property
    def host(self):
        return f"{self.addr}:{self.port}"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def blob_data_path(self, digest):
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


class Pusher:
    """Uploads blobs (monolithic POST then PUT) and manifests through the HTTP API."""

    def __init__(self, host, user=None, password=None):
        self.base = f"http://{host}"
        self.auth = None
        if user is not None:
            self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def _req(self, method, url, data=None, headers=None):
        url = urllib.parse.urljoin(self.base, url)
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        if self.auth:
            req.add_header("Authorization", self.auth)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()

    def push_blob(self, name, data):
        digest = sha256(data)
        status, headers, _ = self._req("POST", f"/v2/{name}/blobs/uploads/", data=b"")
        assert status == 202, status
        loc = headers["Location"]
        sep = "&" if "?" in loc else "?"
        status, _, _ = self._req("PUT", f"{loc}{sep}digest={urllib.parse.quote(digest)}", data=data,
                                 headers={"Content-Type": "application/octet-stream",
                                          "Content-Length": str(len(data))})
        assert status == 201, status
        return {"digest": digest, "size": len(data)}

    def push_manifest(self, name, ref, body, media_type):
        status, headers, _ = self._req("PUT", f"/v2/{name}/manifests/{ref}", data=body,
                                       headers={"Content-Type": media_type})
        assert status == 201, status
        return sha256(body)

    def push_image(self, name, tag=None, layers=(b"layer one\n", b"layer two\n"), docker=False,
                   config=None, annotations=None, arch="amd64"):
        """Config, layers and a manifest (OCI or Docker schema 2); returns a description."""
        config = config or {"architecture": arch, "os": "linux",
                            "config": {"Cmd": ["/hello"]},
                            "rootfs": {"type": "layers", "diff_ids": []}}
        cfg_bytes = json.dumps(config, sort_keys=True).encode()
        cfg = self.push_blob(name, cfg_bytes)
        descs = []
        for data in layers:
            b = self.push_blob(name, data)
            descs.append({"mediaType": DOCKER_LAYER if docker else OCI_LAYER, **b})
        mt = DOCKER_MANIFEST if docker else OCI_MANIFEST
        manifest = {"schemaVersion": 2, "mediaType": mt,
                    "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG, **cfg},
                    "layers": descs}
        if annotations:
            manifest["annotations"] = annotations
        body = json.dumps(manifest, indent=2).encode()
        digest = self.push_manifest(name, tag or sha256(body), body, mt)
        return {"digest": digest, "size": len(body), "media_type": mt, "config": cfg,
                "config_bytes": cfg_bytes, "layers": descs, "layer_data": list(layers),
                "body": body}

    def push_index(self, name, tag, entries, docker=False):
        """entries: [(image from push_image, {"os":…, "architecture":…, "variant"?:…})]."""
        mt = DOCKER_LIST if docker else OCI_INDEX
        index = {"schemaVersion": 2, "mediaType": mt,
                 "manifests": [{"mediaType": img["media_type"], "digest": img["digest"],
                                "size": img["size"], "platform": plat}
                               for img, plat in entries]}
        body = json.dumps(index).encode()
        digest = self.push_manifest(name, tag, body, mt)
        return {"digest": digest, "body": body}


class TokenFront:
    """A Bearer-token front end on 127.0.0.1 for an upstream registry: /v2/ requires a
    token from /token (anonymous, or Basic-authenticated when users is given) and every
    other request is proxied. `overrides` maps a request path to (status, headers, body);
    `redirect_blobs` sends blob GETs to a second server on 127.0.0.2, which records the
    Authorization header it got."""

    def __init__(self, upstream, users=None, redirect_blobs=False):
        self.upstream = upstream
        self.users = users
        self.token = "tok-" + os.urandom(12).hex()
        self.token_requests = []
        self.overrides = {}
        self.blob_auth_seen = []
        front = self

        class Blobs(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                front.blob_auth_seen.append(self.headers.get("Authorization"))
                status, headers, body = front._upstream("GET", self.path[len("/store"):], {})
                self._send(status, headers, body)

            def _send(self, status, headers, body):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Handler(Blobs):
            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                if path == "/token":
                    auth = self.headers.get("Authorization")
                    front.token_requests.append((self.path, auth is not None))
                    if front.users is not None:
                        ok = auth and auth.startswith("Basic ") and base64.b64decode(
                            auth[6:]).decode(errors="replace") in [
                                f"{u}:{p}" for u, p in front.users.items()]
                        if not ok:
                            return self._send(401, [("Content-Type", "application/json")],
                                              b'{"details":"incorrect username or password"}')
                    body = json.dumps({"token": front.token, "expires_in": 300}).encode()
                    return self._send(200, [("Content-Type", "application/json")], body)
                if self.headers.get("Authorization") != f"Bearer {front.token}":
                    realm = f"http://127.0.0.1:{front.port}/token"
                    chal = f'Bearer realm="{realm}",service="unikd-test",scope="repository:x:pull"'
                    return self._send(401, [("WWW-Authenticate", chal),
                                            ("Content-Type", "application/json")],
                                      b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}')
                if path in front.overrides:
                    return self._send(*front.overrides[path])
                if front.redirect_blobs and "/blobs/" in path:
                    self.send_response(307)
                    self.send_header("Location", f"http://127.0.0.2:{front.blob_port}/store{path}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, headers, body = front._upstream("GET", self.path, {
                    k: v for k, v in self.headers.items() if k.lower() == "accept"})
                self._send(status, headers, body)

        self.redirect_blobs = redirect_blobs
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.blob_server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Blobs)
        self.blob_port = self.blob_server.server_address[1]
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True)
                        for s in (self.server, self.blob_server)]
        for t in self.threads:
            t.start()

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def _upstream(self, method, path, headers):
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            keep = [(k, v) for k, v in resp.getheaders()
                    if k.lower() in ("content-type", "docker-content-digest")]
            return resp.status, keep, body
        finally:
            conn.close()

    def stop(self):
        for s in (self.server, self.blob_server):
            s.shutdown()
            s.server_close()
