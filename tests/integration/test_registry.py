"""The registry client (src/store/registry.c) against a real docker-registry on loopback,
driven through tests/helpers/registry_pull.c (bin/registry-pull)."""
import json
import shutil
import subprocess

import pytest

from conftest import BIN
from registry import (Pusher, Registry, TokenFront, sha256,
                      REGISTRY_BIN)

PULL = BIN / "registry-pull"

pytestmark = pytest.mark.skipif(not shutil.which(REGISTRY_BIN) or not shutil.which("htpasswd"),
                                reason="docker-registry or htpasswd missing (scripts/install-deps.sh)")


def pull(ref, out, *args):
    p = subprocess.run([str(PULL), *args, ref, str(out)], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode in (0, 1), (p.returncode, p.stdout, p.stderr)
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, p.stdout + p.stderr
    return p.returncode, json.loads(lines[0]), p.stdout + p.stderr


@pytest.fixture
def registry(scratch):
    r = Registry(scratch / "registry").start()
    yield r
    r.stop()


@pytest.fixture
def auth_registry(scratch):
    r = Registry(scratch / "registry", htpasswd={"alice": "s3cret-pw-42"}).start()
    yield r
    r.stop()


@pytest.fixture
def front(registry):
    fronts = []

    def make(**kw):
        f = TokenFront(registry.host, **kw)
        fronts.append(f)
        return f
    yield make
    for f in fronts:
        f.stop()


def check_image(summary, img, out):
    assert summary["manifest_digest"] == img["digest"]
    assert summary["config"]["digest"] == img["config"]["digest"]
    assert summary["config"]["size"] == img["config"]["size"]
    assert (out / "manifest.json").read_bytes() == img["body"]
    assert (out / "config.json").read_bytes() == img["config_bytes"]
    assert summary["config_json"]["os"] == "linux"
    assert [l["digest"] for l in summary["layers"]] == [l["digest"] for l in img["layers"]]
    for layer, data in zip(summary["layers"], img["layer_data"]):
        assert open(layer["path"], "rb").read() == data
    assert not list((out / "blobs").glob(".tmp-*"))


def test_pull_by_tag_oci(registry, scratch):
    img = Pusher(registry.host).push_image("unikd/hello", "v1",
                                           annotations={"org.unikd.kind": "kernel"})
    rc, s, _ = pull(f"{registry.host}/unikd/hello:v1", scratch / "out")
    assert rc == 0, s
    check_image(s, img, scratch / "out")
    assert s["media_type"] == "application/vnd.oci.image.manifest.v1+json"
    assert s["index_digest"] == ""
    assert s["annotations"] == {"org.unikd.kind": "kernel"}


def test_pull_by_digest_docker_schema2(registry, scratch):
    img = Pusher(registry.host).push_image("unikd/docker", docker=True,
                                           layers=[b"\x1f\x8b" + bytes(range(256)) * 40])
    rc, s, _ = pull(f"{registry.host}/unikd/docker@{img['digest']}", scratch / "out")
    assert rc == 0, s
    check_image(s, img, scratch / "out")
    assert s["media_type"] == "application/vnd.docker.distribution.manifest.v2+json"


def test_localhost_name_and_empty_layer_list(registry, scratch):
    img = Pusher(registry.host).push_image("solo", "latest", layers=[])
    rc, s, _ = pull(f"localhost:{registry.port}/solo", scratch / "out")
    assert rc == 0, s
    assert s["manifest_digest"] == img["digest"] and s["layers"] == []


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-list"])
def test_index_picks_linux_amd64(registry, scratch, docker):
    p = Pusher(registry.host)
    arm64 = p.push_image("multi", arch="arm64", layers=[b"arm64 layer"], docker=docker)
    armv7 = p.push_image("multi", arch="arm", layers=[b"armv7 layer"], docker=docker)
    amd64_v3 = p.push_image("multi", arch="amd64", layers=[b"amd64 v3 layer"], docker=docker)
    amd64 = p.push_image("multi", arch="amd64", layers=[b"amd64 layer"], docker=docker)
    idx = p.push_index("multi", "v2", [
        (arm64, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
        (armv7, {"os": "linux", "architecture": "arm", "variant": "v7"}),
        (amd64_v3, {"os": "linux", "architecture": "amd64", "variant": "v3"}),
        (amd64, {"os": "linux", "architecture": "amd64"}),
    ], docker=docker)
    rc, s, _ = pull(f"{registry.host}/multi:v2", scratch / "out")
    assert rc == 0, s
    check_image(s, amd64, scratch / "out")
    assert s["index_digest"] == idx["digest"]
    # By the index's digest, and with only a variant entry for amd64.
    only = p.push_index("multi", "v3", [(arm64, {"os": "linux", "architecture": "arm64"}),
                                        (amd64_v3, {"os": "linux", "architecture": "amd64",
                                                    "variant": "v3"})], docker=docker)
    rc, s, _ = pull(f"{registry.host}/multi@{only['digest']}", scratch / "out2")
    assert rc == 0, s
    assert s["manifest_digest"] == amd64_v3["digest"]
    assert s["index_digest"] == only["digest"]


def test_index_without_amd64(registry, scratch):
    p = Pusher(registry.host)
    arm64 = p.push_image("armonly", arch="arm64")
    p.push_index("armonly", "latest", [(arm64, {"os": "linux", "architecture": "arm64"})])
    rc, s, _ = pull(f"{registry.host}/armonly", scratch / "out")
    assert rc == 1 and s["errno"] == "ENOENT"
    assert "no manifest for linux/amd64" in s["error"]


def test_basic_auth(auth_registry, scratch):
    pw = "s3cret-pw-42"
    img = Pusher(auth_registry.host, "alice", pw).push_image("private/img", "v1")
    ref = f"{auth_registry.host}/private/img:v1"
    rc, s, _ = pull(ref, scratch / "ok", "--user", "alice", "--password", pw)
    assert rc == 0, s
    check_image(s, img, scratch / "ok")

    wrong = "wr0ng-pw-secret"
    rc, s, text = pull(ref, scratch / "bad", "--user", "alice", "--password", wrong)
    assert rc == 1 and s["errno"] == "EACCES"
    assert "unauthorized" in s["error"]
    assert wrong not in text and pw not in text

    rc, s, text = pull(ref, scratch / "anon")
    assert rc == 1 and s["errno"] == "EACCES" and "unauthorized" in s["error"]
    assert "no credentials" in s["error"]


def test_bearer_token_flow(registry, front, scratch):
    img = Pusher(registry.host).push_image("tok/img", "v1", layers=[b"a" * 5000, b"b" * 7000])
    f = front()
    rc, s, _ = pull(f"{f.host}/tok/img:v1", scratch / "out")
    assert rc == 0, s
    check_image(s, img, scratch / "out")
    # One token for the whole pull: manifest, config and both layers.
    assert len(f.token_requests) == 1
    path, had_auth = f.token_requests[0]
    assert "service=unikd-test" in path and "scope=repository%3Ax%3Apull" in path
    assert not had_auth


def test_bearer_token_credentials(registry, front, scratch):
    Pusher(registry.host).push_image("tok/priv", "v1")
    f = front(users={"bob": "hunter2-token-pw"})
    ref = f"{f.host}/tok/priv:v1"
    rc, s, _ = pull(ref, scratch / "ok", "--user", "bob", "--password", "hunter2-token-pw")
    assert rc == 0, s
    assert f.token_requests[-1][1] is True
    rc, s, text = pull(ref, scratch / "bad", "--user", "bob", "--password", "not-hunter2-pw")
    assert rc == 1 and s["errno"] == "EACCES" and "unauthorized" in s["error"]
    assert "not-hunter2-pw" not in text and "hunter2-token-pw" not in text


def test_redirected_blobs_lose_authorization(registry, front, scratch):
    img = Pusher(registry.host).push_image("redir/img", "v1")
    f = front(redirect_blobs=True)
    rc, s, _ = pull(f"{f.host}/redir/img:v1", scratch / "out")
    assert rc == 0, s
    check_image(s, img, scratch / "out")
    # Config and two layers came from the other host, without our bearer token.
    assert len(f.blob_auth_seen) == 3
    assert f.blob_auth_seen == [None, None, None]


def tamper(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_tampered_layer_is_refused(registry, scratch):
    img = Pusher(registry.host).push_image("tamper/img", "v1", layers=[b"good layer " * 100])
    tamper(registry.blob_data_path(img["layers"][0]["digest"]))
    out = scratch / "out"
    rc, s, _ = pull(f"{registry.host}/tamper/img:v1", out)
    assert rc == 1 and s["errno"] == "EBADMSG", s
    assert "digest mismatch" in s["error"] and img["layers"][0]["digest"] in s["error"]
    assert list((out / "blobs").iterdir()) == []  # the partial file was removed


def test_tampered_config_is_refused(registry, scratch):
    img = Pusher(registry.host).push_image("tamper/cfg", "v1")
    tamper(registry.blob_data_path(img["config"]["digest"]))
    rc, s, _ = pull(f"{registry.host}/tamper/cfg:v1", scratch / "out")
    assert rc == 1 and s["errno"] == "EBADMSG" and "digest mismatch" in s["error"], s


def test_tampered_manifest_by_digest_is_refused(registry, scratch):
    img = Pusher(registry.host).push_image("tamper/man", annotations={"x": "aaaa"})
    path = registry.blob_data_path(img["digest"])
    path.write_bytes(path.read_bytes().replace(b'"aaaa"', b'"aaab"'))
    rc, s, _ = pull(f"{registry.host}/tamper/man@{img['digest']}", scratch / "out")
    assert rc == 1 and s["errno"] == "EBADMSG" and "digest mismatch" in s["error"], s


def test_missing_tag_and_repository(registry, scratch):
    Pusher(registry.host).push_image("there", "v1")
    rc, s, _ = pull(f"{registry.host}/there:nope", scratch / "out")
    assert rc == 1 and s["errno"] == "ENOENT", s
    assert "manifest unknown" in s["error"] and "there:nope" in s["error"]
    rc, s, _ = pull(f"{registry.host}/not/there:v1", scratch / "out")
    assert rc == 1 and s["errno"] == "ENOENT", s


def test_unsupported_media_types(registry, front, scratch):
    f = front()
    f.overrides["/v2/odd/img/manifests/v1"] = (
        200, [("Content-Type", "application/vnd.example.thing.v1+json")],
        b'{"schemaVersion":2,"mediaType":"application/vnd.example.thing.v1+json"}')
    schema1 = b'{"schemaVersion":1,"name":"odd/img","tag":"old","fsLayers":[]}'
    f.overrides["/v2/odd/img/manifests/old"] = (
        200, [("Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws")],
        schema1)
    rc, s, _ = pull(f"{f.host}/odd/img:v1", scratch / "out")
    assert rc == 1 and s["errno"] == "EPROTONOSUPPORT", s
    assert "unsupported manifest media type application/vnd.example.thing.v1+json" in s["error"]
    rc, s, _ = pull(f"{f.host}/odd/img:old", scratch / "out")
    assert rc == 1 and s["errno"] == "EPROTONOSUPPORT", s
    assert "schema 1" in s["error"]


def test_wrong_docker_content_digest(registry, front, scratch):
    img = Pusher(registry.host).push_image("dcd/img", "v1")
    f = front()
    f.overrides["/v2/dcd/img/manifests/v1"] = (
        200, [("Content-Type", img["media_type"]),
              ("Docker-Content-Digest", sha256(b"something else"))], img["body"])
    rc, s, _ = pull(f"{f.host}/dcd/img:v1", scratch / "out")
    assert rc == 1 and s["errno"] == "EBADMSG" and "digest mismatch" in s["error"], s


def test_plain_http_refused_for_remote_hosts(scratch):
    # Not loopback and not --insecure: HTTPS only, so nothing is sent in clear. The name
    # does not resolve either way; what matters is the https:// in the message.
    rc, s, _ = pull("registry.invalid/x/y:1", scratch / "out", "--timeout", "5")
    assert rc == 1 and s["errno"] in ("EHOSTUNREACH", "ECONNREFUSED", "ETIMEDOUT"), s
    assert "https://registry.invalid" in s["error"]
    rc, s, _ = pull("registry.invalid/x/y:1", scratch / "out", "--insecure", "registry.invalid",
                    "--timeout", "5")
    assert rc == 1 and "http://registry.invalid" in s["error"], s


def test_connection_refused(scratch):
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rc, s, _ = pull(f"127.0.0.1:{port}/x/y:1", scratch / "out")
    assert rc == 1 and s["errno"] == "ECONNREFUSED", s


@pytest.fixture
def tls_host(scratch):
    """A network namespace with a non-loopback address, so the client must speak HTTPS to a
    registry there; and a self-signed certificate for that address."""
    ns = f"uk-tls-{scratch.name[-12:]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (["link", "set", "lo", "up"], ["addr", "add", "10.203.0.1/32", "dev", "lo"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        cert, key = scratch / "cert.pem", scratch / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=unikd-test", "-addext", "subjectAltName=IP:10.203.0.1",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        yield ns, cert, key
    finally:
        subprocess.run(["ip", "netns", "del", ns])


def test_https_registry_verifies_certificates(registry, tls_host, scratch):
    ns, cert, key = tls_host
    img = Pusher(registry.host).push_image("tls", "1")
    # The same storage served over HTTPS on a non-loopback address.
    root = scratch / "tls-registry"
    root.mkdir()
    shutil.copytree(registry.storage, root / "storage")

    def in_ns(args, **kw):
        return subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", *args], **kw)

    tls = Registry(root, addr="10.203.0.1", tls=(cert, key), popen=in_ns).start()
    try:
        ref = f"{tls.host}/tls:1"

        def ns_pull(out, *args):
            p = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", str(PULL), *args, ref, str(out)],
                               capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            return p.returncode, json.loads(p.stdout.strip().splitlines()[0])

        # Without our CA the certificate does not verify: refused, nothing written.
        rc, res = ns_pull(scratch / "out1")
        assert rc == 1 and res["errno"] == "EPROTO", res
        assert "certificate" in res["error"].lower() or "ssl" in res["error"].lower(), res
        assert not (scratch / "out1").exists() or not list((scratch / "out1").glob("blobs/*"))
        # With it, the pull works over HTTPS.
        rc, res = ns_pull(scratch / "out2", "--ca-file", str(cert))
        assert rc == 0, res
        assert res["manifest_digest"] == img["digest"]
    finally:
        tls.stop()
