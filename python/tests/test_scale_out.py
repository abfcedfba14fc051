"""Scale-out (docs/deployment.md): two `fhec serve` replicas behind nginx (Debian's package, installed by
scripts/test.sh), routed by consistent hashing on the key id header. Concurrent clients; one replica is
stopped mid-run; every request still completes with exact results (the clients whose keys lived there
upload them to the other replica when it answers "unknown key")."""

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification

from fhec.deploy import ModelDev, RemoteModel
from fhec.sklearn import DecisionTreeClassifier, LogisticRegression

from test_serve import Service

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    def __init__(self, root: Path, upstreams: list[str]):
        assert os.path.exists(NGINX), "nginx is missing: scripts/test.sh installs Debian's package"
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (root / d).mkdir(exist_ok=True)
        servers = "\n".join(
            f"    server {u.removeprefix('http://')} max_fails=1 fail_timeout=60s;" for u in upstreams
        )
        user = "user root;" if os.geteuid() == 0 else ""
        (root / "nginx.conf").write_text(
            f"""{user}
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  client_max_body_size 1g;
  upstream fhec {{
    hash $http_x_fhec_key_id consistent;
{servers}
  }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://fhec;
      proxy_next_upstream error timeout http_502;
      proxy_read_timeout 600s;
      proxy_http_version 1.1;
    }}
  }}
}}
"""
        )
        self.proc = subprocess.Popen(
            [NGINX, "-c", str(root / "nginx.conf"), "-p", str(root)], stderr=subprocess.PIPE, text=True
        )
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"nginx exited: {self.proc.stderr.read()}")
                time.sleep(0.05)
        raise AssertionError("nginx did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, random_state=11)
    d = tmp_path_factory.mktemp("scale")
    tree = DecisionTreeClassifier(max_depth=3, n_bits=4).fit(X[:200], y[:200])
    tree.compile(X[:200])
    ModelDev(d, tree, name="tree").save()
    linear = LogisticRegression().fit(X[:200], y[:200])
    linear.compile(X[:200])
    ModelDev(d, linear, name="linear").save()
    return d, X[200:], {"tree": tree, "linear": linear}


def test_two_replicas_behind_nginx_lose_nothing_when_one_stops(models, tmp_path):
    d, X, fitted = models
    replicas = {"a": Service(d, tmp_path / "keys-a"), "b": Service(d, tmp_path / "keys-b")}
    proxy = Nginx(tmp_path / "nginx", [r.url for r in replicas.values()])
    clients = [(f"c{i}", "tree" if i % 2 == 0 else "linear") for i in range(6)]
    after = 4  # requests each client makes once the replica is stopped
    results: list = []
    done = {c: 0 for c, _ in clients}
    errors: list = []
    stopping = threading.Event()
    stopped = None
    try:
        remotes = {c: RemoteModel(proxy.url, model, retries=8) for c, model in clients}
        for r in remotes.values():
            r.client.keygen()  # keys made before the clock starts

        def work(c: str, model: str):
            try:
                j = 0
                # requests go on while the replica is being stopped (some are in flight), then `after` more
                while not stopping.is_set() or j < done[c] + after:
                    rows = X[(j * 3) % 90 : (j * 3) % 90 + 3]
                    results.append((model, rows, remotes[c].predict(rows)))
                    j += 1
                    if not stopping.is_set():
                        done[c] = j
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append((c, repr(e)))

        threads = [threading.Thread(target=work, args=cm) for cm in clients]
        for t in threads:
            t.start()
        deadline = time.time() + 600
        while min(done.values()) < 2 and not errors and time.time() < deadline:
            time.sleep(0.05)
        # mid-run: stop a replica that holds keys (the hash spreads key ids over both, or puts all on one)
        stored = {n: sum(1 for _ in (tmp_path / f"keys-{n}").rglob("*.eval.keys")) for n in replicas}
        stopped = max(stored, key=stored.get)
        code, err = replicas[stopped].stop()
        stopping.set()
        assert code == 0 and "stopped" in err, err
        for t in threads:
            t.join(timeout=600)
    finally:
        proxy.stop()
        for n, r in replicas.items():
            if n != stopped:
                r.stop()
    assert not errors, errors
    assert len(results) >= len(clients) * (2 + after)
    for model, rows, got in results:
        np.testing.assert_array_equal(got, fitted[model].predict(rows, fhe="simulate"))
    # every client ends with its keys on the replica that is left
    survivor = next(n for n in replicas if n != stopped)
    assert sum(1 for _ in (tmp_path / f"keys-{survivor}").rglob("*.eval.keys")) == len(clients)
