"""`convnet serve`'s routes, limits and life cycle, one behaviour a test, on loopback."""
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

from serve_client import Client, Server

CLASSIFY = "/v1/models/mnet/classify"


def jpeg(photos):
    return next(p for p in photos if p.endswith(".jpg"))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def classify_json(convnet_bin, model_path, path, k=5):
    out = subprocess.run([convnet_bin, "classify", "-m", model_path, "--json", "-k", str(k),
                          path], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def multipart(field, filename, data, more=(), boundary="convnet-test-boundary"):
    """A form: a plain field, then the file, then the (filename, data) files of more, all under
    field. Returns the body and its headers."""
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n".encode()]
    for name, content in [(filename, data), *more]:
        parts.append((f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
                      f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                     .encode() + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_get_routes(server):
    s = server()
    c = Client(s)
    r = c.send("GET", "/healthz")
    assert r.status == 200 and json.loads(r.body) == {"status": "ok"}
    models = json.loads(c.send("GET", "/v1/models").body)["models"]
    assert [m["name"] for m in models] == ["mnet"]
    m = models[0]
    assert m["input"]["height"] == 224 and m["classes"] == 1000 and len(m["class_names"]) == 1000
    assert m["class_names"][281] == "tabby" and "embed" in m["routes"]
    page = c.send("GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(rb"(src|href)=\"?(https?:)?//", page.body), "an external asset"
    metrics = c.send("GET", "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text()
    assert 'convnet_http_requests_total{code="200"} 3' in text
    assert "convnet_http_request_duration_seconds_bucket{le=\"+Inf\"} 3" in text
    assert 'convnet_queue_depth{model="mnet"} 0' in text
    assert s.stop() == 0


def test_metrics_parse_as_prometheus_text(server, photos):
    """Read back by the Prometheus project's own parser: the counts after known requests."""
    parser = pytest.importorskip("prometheus_client.parser")
    s = server("-m", f"second={server.model}", "--max-batch", "1")
    c = Client(s)
    body, ct = read(jpeg(photos)), {"Content-Type": "image/jpeg"}
    for path in ("/v1/models/mnet/classify", "/v1/models/mnet/classify", "/v1/models/second/classify"):
        assert c.send("POST", path, body, ct).status == 200
    assert c.send("POST", CLASSIFY, b"", ct).status == 400
    families = {f.name: f for f in parser.text_string_to_metric_families(c.send("GET", "/metrics").text())}
    value = {(x.name, tuple(sorted(x.labels.items()))): x.value
             for f in families.values() for x in f.samples}
    assert families["convnet_http_requests"].type == "counter"
    assert value[("convnet_http_requests_total", (("code", "200"),))] == 3
    assert value[("convnet_http_requests_total", (("code", "400"),))] == 1
    assert value[("convnet_http_request_duration_seconds_count", ())] == 4
    assert families["convnet_batch_size"].type == "histogram"
    assert value[("convnet_batch_size_count", (("model", "mnet"),))] == 2
    assert value[("convnet_batch_size_sum", (("model", "mnet"),))] == 2
    assert value[("convnet_batch_size_bucket", (("le", "1"), ("model", "second")))] == 1
    assert value[("convnet_queue_depth", (("model", "second"),))] == 0
    assert value[("convnet_http_requests_in_flight", ())] == 1  # this request


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/nowhere", 404), ("GET", "/v1/models/other/classify", 404),
    ("POST", "/v1/models/mnet/other", 404), ("GET", CLASSIFY, 405), ("POST", "/healthz", 405),
    ("DELETE", "/v1/models", 405), ("GET", "/../../etc/passwd", 404)])
def test_wrong_paths_and_methods(server, method, path, status):
    s = server()
    r = Client(s).send(method, path, b"x" if method == "POST" else b"",
                       {"Content-Type": "image/jpeg"})
    assert r.status == status
    assert "error" in json.loads(r.body)


def test_classify_matches_cli(server, photos, convnet_bin, model_path):
    s = server()
    c = Client(s)
    for path in photos:
        r = c.send("POST", CLASSIFY + "?k=3", read(path), {"Content-Type": "image/anything"})
        assert r.status == 200, r.body
        want = classify_json(convnet_bin, model_path, path, k=3)
        assert r.body.decode() == json.dumps(dict(want, file="-"), separators=(",", ":")) + "\n" \
            or json.loads(r.body) == dict(want, file="-")


def test_multipart_upload_names_the_file(server, photos, convnet_bin, model_path):
    s = server()
    path = jpeg(photos)
    body, headers = multipart("image", "holiday photo.jpg", read(path))
    r = Client(s).send("POST", CLASSIFY, body, headers)
    assert r.status == 200, r.body
    got = json.loads(r.body)
    assert got["file"] == "holiday photo.jpg"
    assert got["top"] == classify_json(convnet_bin, model_path, path)["top"]


@pytest.mark.parametrize("name,body,headers,status", [
    ("empty", b"", {"Content-Type": "image/jpeg"}, 400),
    ("not an image", b"hello world" * 100, {"Content-Type": "image/png"}, 400),
    ("no content type", b"\xff\xd8\xff", {}, 415),
    ("json", b"{}", {"Content-Type": "application/json"}, 415),
    ("k zero", b"x", {"Content-Type": "image/jpeg"}, 400),
    ("form without a file", b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--\r\n",
     {"Content-Type": "multipart/form-data; boundary=b"}, 400),
    ("form without a boundary", b"x", {"Content-Type": "multipart/form-data"}, 400)])
def test_bad_requests_get_4xx_with_one_line(server, name, body, headers, status):
    s = server()
    path = CLASSIFY + ("?k=0" if name == "k zero" else "")
    r = Client(s).send("POST", path, body, headers)
    assert r.status == status, (name, r.status, r.body)
    assert r.body.count(b"\n") == 1 and json.loads(r.body)["error"]


def test_truncated_photos(server, photos):
    s = server()
    c = Client(s)
    for path in photos:
        data = read(path)
        for cut in (1, len(data) // 2, len(data) - 1):
            r = c.send("POST", CLASSIFY, data[:cut], {"Content-Type": "image/jpeg"})
            assert r.status in (200, 400), (path, cut, r.status)  # a PPM may lose only padding
    assert json.loads(c.send("GET", "/healthz").body)["status"] == "ok"


def test_body_limit(server, photos):
    s = server("--max-body", "1")
    c = Client(s)
    big = b"\xff" * (3 << 20)
    r = c.send("POST", CLASSIFY, big, {"Content-Type": "image/jpeg"})
    assert r.status == 413
    # a client that asks before sending hears at once and never sends the body
    sock = socket.create_connection((s.host, s.port))
    sock.sendall(f"POST {CLASSIFY} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                 f"Content-Length: {len(big)}\r\nExpect: 100-continue\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    sock.close()
    r = Client(s).send("POST", CLASSIFY, read(jpeg(photos)), {"Content-Type": "image/jpeg"})
    assert r.status == 200


def test_announced_huge_body_refused_at_once(server):
    """Over 64 MiB announced: refused on the headers alone, nothing read."""
    s = server()
    sock = socket.create_connection((s.host, s.port))
    sock.settimeout(5)
    sock.sendall(f"POST {CLASSIFY} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                 f"Content-Length: {100 << 20}\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    sock.close()


def test_chunked_body_over_the_limit(server):
    s = server("--max-body", "1")
    sock = socket.create_connection((s.host, s.port))
    sock.sendall(f"POST {CLASSIFY} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b"\xff" * (256 << 10)
    try:
        for _ in range(8):
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    sock.close()


def test_token(server, photos, tmp_path):
    token = tmp_path / "token"
    token.write_text("  s3cret-token \nsecond line ignored\n")
    s = server("--token", str(token))
    c = Client(s)
    body, ct = read(jpeg(photos)), {"Content-Type": "image/jpeg"}
    assert c.send("POST", CLASSIFY, body, ct).status == 401
    assert c.send("POST", CLASSIFY, body, dict(ct, Authorization="Bearer wrong")).status == 401
    assert c.send("GET", "/metrics").status == 401
    assert c.send("POST", CLASSIFY, body, dict(ct, Authorization="Bearer s3cret-token")).status \
        == 200
    assert c.send("GET", "/healthz").status == 200 and c.send("GET", "/").status == 200


def test_embed_matches_cli(server, photos, convnet_bin, model_path, tmp_path):
    s = server()
    path = jpeg(photos)
    r = Client(s).send("POST", "/v1/models/mnet/embed", read(path), {"Content-Type": "image/jpeg"})
    assert r.status == 200
    got = json.loads(r.body)
    subprocess.run([convnet_bin, "embed", "-m", model_path, "-o", str(tmp_path / "e.npy"), path],
                   check=True, capture_output=True)
    want = np.load(tmp_path / "e.npy")[0]
    assert got["dim"] == want.size
    np.testing.assert_array_equal(np.float32(got["embedding"]), want)


def test_concurrent_embeds_run_as_one_batch(server, photos, convnet_bin, model_path, tmp_path):
    """4 embeddings asked at once run as one batch of 4 (the batch size histogram says so), and
    each vector is the one `convnet embed` writes for its file, bit for bit."""
    s = server("--max-batch", "4", "--max-wait-ms", "3000")
    files = [p for p in photos if p.endswith((".jpg", ".png"))][:4]
    got = [None] * 4

    def one(i):
        r = Client(s).send("POST", "/v1/models/mnet/embed", read(files[i]),
                           {"Content-Type": "application/octet-stream"})
        got[i] = json.loads(r.body)["embedding"] if r.status == 200 else r.status

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - t0 < 2.5  # a full batch does not wait out --max-wait-ms
    metrics = Client(s).send("GET", "/metrics").text()
    assert 'convnet_batch_size_bucket{model="mnet",le="2"} 0' in metrics, metrics
    assert 'convnet_batch_size_count{model="mnet"} 1' in metrics, metrics
    subprocess.run([convnet_bin, "embed", "-m", model_path, "-o", str(tmp_path / "e.npy"), *files],
                   check=True, capture_output=True)
    want = np.load(tmp_path / "e.npy")
    for i in range(4):
        np.testing.assert_array_equal(np.float32(got[i]), want[i])


def test_explain_gives_the_top_class_map(server, photos, convnet_bin, model_path):
    s = server()
    path = jpeg(photos)
    r = Client(s).send("POST", "/v1/models/mnet/explain", read(path), {"Content-Type": "image/jpeg"})
    assert r.status == 200
    cam = json.loads(r.body)
    assert cam["index"] == classify_json(convnet_bin, model_path, path)["top"][0]["index"]
    assert len(cam["map"]) == cam["height"] * cam["width"] == 49
    assert max(cam["map"]) == 1.0 and min(cam["map"]) >= 0


def test_sigterm_finishes_requests_in_flight(server, photos):
    s = server("--max-wait-ms", "200")
    body, ct = read(jpeg(photos)), {"Content-Type": "image/jpeg"}
    results = []

    def one():
        results.append(Client(s).send("POST", CLASSIFY, body, ct))

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.1)  # the requests wait in the batcher (200 ms) when SIGTERM comes
    assert s.stop() == 0
    for t in threads:
        t.join()
    assert [r.status for r in results] == [200] * 6
    # answered while stopping: the keep-alive connections are closed after their answers
    assert all(r.headers.get("connection", "").lower() == "close" for r in results)


def test_stalled_and_slow_clients_do_not_starve_others(server, photos):
    s = server("--timeout", "3")
    stalled = []
    for _ in range(8):
        sock = socket.create_connection((s.host, s.port))
        sock.sendall(b"POST /v1/models/mnet/classify HTTP/1.1\r\nHost: x\r\nConte")
        stalled.append(sock)
    t = time.monotonic()
    r = Client(s).send("POST", CLASSIFY, read(jpeg(photos)), {"Content-Type": "image/jpeg"})
    assert r.status == 200 and time.monotonic() - t < 3.0  # before the stalled ones time out
    for sock in stalled:  # closed by the server after the idle timeout, with no answer
        sock.settimeout(10)
        assert sock.recv(4096) == b""
        sock.close()


def test_connection_limit(server, photos):
    """Over --max-connections, a new connection is closed at once; once one ends, served."""
    s = server("--max-connections", "3")
    held = [socket.create_connection((s.host, s.port)) for _ in range(3)]
    time.sleep(0.2)
    assert closed_at_once(socket.create_connection((s.host, s.port)))
    held.pop().close()
    time.sleep(0.2)
    assert Client(s).send("GET", "/healthz").status == 200
    for sock in held:
        sock.close()


def closed_at_once(sock):
    """Whether the server closes or resets this connection without answering a request."""
    sock.settimeout(5)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        return sock.recv(4096) == b""
    except OSError:
        return True  # reset
    finally:
        sock.close()


def test_per_client_limit(server):
    """Over --max-per-client connections from one address, a new one from it is closed at once;
    another address (127.0.0.2, still loopback) is served."""
    s = server("--max-per-client", "2")
    held = [socket.create_connection((s.host, s.port)) for _ in range(2)]
    time.sleep(0.2)
    assert closed_at_once(socket.create_connection((s.host, s.port)))
    other = socket.create_connection((s.host, s.port), source_address=("127.0.0.2", 0))
    other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    other.settimeout(5)
    assert other.recv(4096).startswith(b"HTTP/1.1 200")
    other.close()
    for sock in held:
        sock.close()


def test_kill_9_under_load_then_restart(convnet_bin, model_path, photos, tmp_path):
    s = Server(convnet_bin, ["-m", f"mnet={model_path}"], cwd=tmp_path)
    body, ct = read(jpeg(photos)), {"Content-Type": "image/jpeg"}
    stop = threading.Event()

    def load():
        c = Client(s, timeout=5)
        while not stop.is_set():
            try:
                c.send("POST", CLASSIFY, body, ct)
            except (OSError, TimeoutError):
                return

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait()
    stop.set()
    for t in threads:
        t.join()
    s.kill()
    assert sorted(os.listdir(tmp_path)) == [], "the server wrote files"
    t0 = time.monotonic()
    again = Server(convnet_bin, ["-m", f"mnet={model_path}", "--port", str(s.port)], cwd=tmp_path)
    r = Client(again).send("POST", CLASSIFY, body, ct)
    serving = time.monotonic() - t0
    print(f"\nrestart: serving {serving * 1000:.0f} ms after the start, model load "
          f"{again.load_seconds * 1000:.0f} ms")
    assert r.status == 200
    assert again.stop() == 0
    assert sorted(os.listdir(tmp_path)) == []


def test_two_models_and_bad_flags(convnet_bin, model_path, tmp_path):
    def run(*args):
        return subprocess.run([convnet_bin, "serve", *args], capture_output=True, text=True,
                              timeout=120)

    r = run("-m", f"a={model_path}", "-m", f"a={model_path}", "--port", "0")
    assert r.returncode == 2 and "two models named a" in r.stderr
    assert run("--port", "70000").returncode == 2
    assert run("--max-batch", "0").returncode == 2
    assert run("--max-per-client", "-1").returncode == 2
    r = run("-m", model_path, "--token", str(tmp_path / "missing"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    (tmp_path / "bad.h5").write_bytes(b"not a model")
    r = run("-m", str(tmp_path / "bad.h5"), "--port", "0")
    assert r.returncode == 1 and "bad.h5" in r.stderr and r.stderr.count("\n") == 1
    s = Server(convnet_bin, ["-m", f"one={model_path}", "-m", f"two={model_path}"], cwd=tmp_path)
    names = [m["name"] for m in json.loads(Client(s).send("GET", "/v1/models").body)["models"]]
    assert names == ["one", "two"]
    assert s.stop() == 0


def test_garbage_requests_leave_it_serving(server, photos):
    """Random and malformed requests (bounded: 300, fixed seed): never a 5xx, never a crash."""
    import random
    rng = random.Random(15)
    s = server("--timeout", "2")
    photo = read(jpeg(photos))
    starts = [b"POST /v1/models/mnet/classify HTTP/1.1\r\n", b"GET / HTTP/1.1\r\n",
              b"POST /v1/models/mnet/explain HTTP/1.0\r\n", b"GET /v1/models HTTP/1.1\r\n"]
    headers = [b"Content-Type: image/jpeg\r\n", b"Content-Type: multipart/form-data; boundary=z\r\n",
               b"Content-Length: 10\r\n", b"Content-Length: -5\r\n",
               b"Content-Length: 99999999999999999999\r\n", b"Transfer-Encoding: chunked\r\n",
               b"Expect: 100-continue\r\n", b"Authorization: Bearer x\r\n", b"X: " + b"y" * 40000 +
               b"\r\n", b"\x00\xff garbage\r\n", b"Host: x\r\n"]
    bodies = [b"", photo[:rng.randrange(len(photo))], b"--z\r\nContent-Disposition: form-data; "
              b"name=\"f\"; filename=\"a\"\r\n\r\n" + photo[:5000], b"5\r\nhello\r\n0\r\n\r\n",
              bytes(rng.randrange(256) for _ in range(3000))]
    for _ in range(300):
        req = rng.choice(starts) + b"".join(rng.sample(headers, rng.randrange(5))) + b"\r\n" + \
            rng.choice(bodies)
        if rng.random() < 0.2:
            req = bytes(b ^ (rng.random() < 0.01) * rng.randrange(256) for b in req)
        sock = socket.create_connection((s.host, s.port))
        sock.settimeout(5)
        try:
            sock.sendall(req)
            sock.shutdown(socket.SHUT_WR)
            answer = sock.recv(64)
        except OSError:  # the server may close first: reset, broken pipe, not connected
            answer = b""
        sock.close()
        m = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
        assert not m or int(m.group(1)) < 500, (req[:200], answer)
    assert Client(s).send("GET", "/healthz").status == 200
    assert s.stop() == 0


def trickle_until_closed(sock, data, gap, limit):
    """Sends data a byte every gap seconds; returns the seconds until the server closed the
    connection (a failed send, or the end of the stream), or None after limit seconds, and the
    bytes it answered."""
    t, answer = time.monotonic(), b""
    for i in range(len(data)):
        if time.monotonic() - t > limit:
            return None, answer
        try:
            sock.sendall(data[i:i + 1])
        except OSError:
            return time.monotonic() - t, answer
        while select.select([sock], [], [], gap)[0]:
            try:
                got = sock.recv(4096)
            except OSError:
                return time.monotonic() - t, answer
            if got == b"":
                return time.monotonic() - t, answer
            answer += got
    return None, answer


@pytest.mark.parametrize("part", ["headers", "body"])
def test_request_deadline_closes_trickling_clients(server, part):
    """A byte every 0.3 s is never idle for --timeout 5, but the whole request must arrive in
    --request-timeout 2."""
    s = server("--timeout", "5", "--request-timeout", "2")
    head = (f"POST {CLASSIFY} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            "Content-Length: 1000\r\n\r\n").encode()
    sock = socket.create_connection((s.host, s.port))
    if part == "body":
        sock.sendall(head)
        head = b"\xff" * 1000
    closed, answer = trickle_until_closed(sock, head, 0.3, 8)
    sock.close()
    assert closed is not None and 1.5 < closed < 4, closed
    assert answer.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in answer, answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"].endswith("--request-timeout")
    assert Client(s).send("GET", "/healthz").status == 200


def test_request_deadline_spares_the_work(server, photos):
    """Time in the batcher is the server's, not the client's: not cut by the deadline."""
    s = server("--request-timeout", "1", "--max-wait-ms", "1500", "--max-batch", "4")
    r = Client(s).send("POST", CLASSIFY, read(jpeg(photos)), {"Content-Type": "image/jpeg"})
    assert r.status == 200


def test_answers_are_valid_json_for_any_bytes(server, photos):
    s = server()
    c = Client(s)
    r = c.send("GET", "/%FF%C3%28/x")
    assert r.status == 404 and "\ufffd" in json.loads(r.body.decode("utf-8"))["error"]
    body, headers = multipart("image", "caf\u00e9 \xff.jpg".encode("latin-1").decode("latin-1"),
                              read(jpeg(photos)))
    r = c.send("POST", CLASSIFY, body, headers)
    assert r.status == 200
    json.loads(r.body.decode("utf-8"))  # strict UTF-8


def test_multipart_long_field_name_and_several_files(server, photos, convnet_bin, model_path):
    s = server()
    path = jpeg(photos)
    body, headers = multipart("f" * 70, "a.jpg", read(path))
    r = Client(s).send("POST", CLASSIFY, body, headers)
    assert r.status == 200, r.body
    # two files under one name (an <input multiple>): the first is the image
    other = next(p for p in photos if p.endswith(".png"))
    body, headers = multipart("files", "one.jpg", read(path), more=[("two.png", read(other))])
    r = Client(s).send("POST", CLASSIFY, body, headers)
    assert r.status == 200, r.body
    assert json.loads(r.body)["top"] == classify_json(convnet_bin, model_path, path)["top"]


def test_get_keeps_the_connection(server):
    s = server()
    c = Client(s)
    r = c.send("GET", "/healthz")
    assert r.status == 200 and r.headers.get("connection", "").lower() != "close"
    sock = c.sock
    assert c.send("GET", "/v1/models").status == 200 and c.sock is sock


def test_stopping_refuses_new_connections_at_once(server, photos):
    s = server("--max-wait-ms", "1500", "--max-batch", "8")
    body, ct = read(jpeg(photos)), {"Content-Type": "image/jpeg"}
    held = threading.Thread(target=lambda: Client(s).send("POST", CLASSIFY, body, ct))
    held.start()
    time.sleep(0.2)  # one request waits in the batcher
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    t = time.monotonic()
    with pytest.raises(OSError):
        sock = socket.create_connection((s.host, s.port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        if sock.recv(100) == b"":
            raise ConnectionResetError("closed")
    assert time.monotonic() - t < 1.0
    held.join()
    assert s.proc.wait(30) == 0


def test_port_in_use_is_an_error(server, convnet_bin, model_path):
    s = server()
    r = subprocess.run([convnet_bin, "serve", "-m", model_path, "--port", str(s.port)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "cannot listen" in r.stderr


def test_explain_and_embed_run_on_the_model_thread(server, photos):
    """Grad-CAM and embeddings asked on many connections run on the model's batcher thread: each
    open connection costs its own thread only, not also a thread pool of the library's."""
    s = server()
    body, ct = read(jpeg(photos)), {"Content-Type": "image/jpeg"}
    Client(s).send("POST", CLASSIFY, body, ct)
    before = len(os.listdir(f"/proc/{s.proc.pid}/task"))
    clients = [Client(s) for _ in range(8)]
    results = []

    def one(i):
        route = "/v1/models/mnet/explain" if i % 2 else "/v1/models/mnet/embed"
        results.append(clients[i].send("POST", route, body, ct).status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    during = len(os.listdir(f"/proc/{s.proc.pid}/task"))  # the 8 connections still open
    for c in clients:
        c.close()
    assert results == [200] * 8
    assert during <= before + 8, (before, during)


def test_model_without_spatial_layer_offers_no_explain(convnet_bin, photos, tmp_path):
    """A Dense-only Keras model (built here with Keras): classify works, explain is not offered."""
    keras = pytest.importorskip("keras")
    m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                          keras.layers.Dense(4, activation="softmax")])
    m.save(tmp_path / "mlp.h5")
    s = Server(convnet_bin, ["-m", f"mlp={tmp_path / 'mlp.h5'}"], cwd=tmp_path)
    c = Client(s)
    model = json.loads(c.send("GET", "/v1/models").body)["models"][0]
    assert "explain" not in model["routes"]
    body, ct = read(jpeg(photos)), {"Content-Type": "image/jpeg"}
    r = c.send("POST", "/v1/models/mlp/explain", body, ct)
    assert r.status == 404 and "Grad-CAM" in json.loads(r.body)["error"]
    assert c.send("POST", "/v1/models/mlp/classify", body, ct).status == 200
    assert s.stop() == 0
