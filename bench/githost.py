#!/usr/bin/env python3
"""git's own smart-HTTP server (`git http-backend`) as CGI behind a small HTTP/1.0 host.

    python3 bench/githost.py --root DIR --port PORT

Serves every bare repository under DIR (`GIT_PROJECT_ROOT`, `GIT_HTTP_EXPORT_ALL`) on
127.0.0.1:PORT, one request per connection. The bench puts nginx in front of it (the origin
latency is injected there, as for the module origins) and nginx sends request bodies with a
Content-Length; chunked bodies are taken too. It mirrors testkit/src/gitserver/http.rs, the
Rust tests' server, without its Basic auth: the bench measures fetching, not credentials.

Bounded: request bodies up to 64 MiB, 120 s per socket operation, 300 s per CGI run.
"""

import argparse
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 64 << 20
CGI_DEADLINE_S = 300


def backend_path():
    """git-http-backend in git's exec path; exits saying how to install git if it is missing."""
    git = shutil.which("git")
    if not git:
        sys.exit("githost: git is missing (Debian: apt-get install -y git)")
    exec_path = subprocess.run([git, "--exec-path"], capture_output=True, text=True, check=True).stdout.strip()
    backend = Path(exec_path) / "git-http-backend"
    if not backend.is_file():
        sys.exit(f"githost: {backend} is missing (Debian: apt-get install -y git)")
    return backend


class BodyError(Exception):
    """A request body that is malformed or too large (answered 400/413)."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    timeout = 120
    root: Path = None
    backend: Path = None

    def log_message(self, *_):  # nginx in front keeps the access log
        pass

    def _read_body(self):
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            parts, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BodyError("bad chunk size") from None
                total += size
                if total > MAX_BODY:
                    raise BodyError("body too large")
                if size == 0:
                    self.rfile.readline(1024)
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            raise BodyError("body too large")
        return self.rfile.read(length)

    def _error(self, status, text):
        body = text.encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _cgi(self):
        try:
            body = self._read_body()
        except (BodyError, ValueError) as e:
            return self._error(413 if "large" in str(e) else 400, str(e))
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.0",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_LENGTH": str(len(body)),
        }
        for header, var in (("Content-Type", "CONTENT_TYPE"), ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
                            ("Git-Protocol", "GIT_PROTOCOL")):
            if self.headers.get(header):
                env[var] = self.headers[header]
        cgi = subprocess.Popen([str(self.backend)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
        killer = threading.Timer(CGI_DEADLINE_S, cgi.kill)
        killer.start()

        def feed():
            try:
                cgi.stdin.write(body)
                cgi.stdin.close()
            except OSError:
                pass

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            status, headers = 200, []
            while True:
                line = cgi.stdout.readline(16 << 10).rstrip(b"\r\n").decode("latin-1")
                if not line:
                    break
                name, _, value = line.partition(":")
                if name.strip().lower() == "status":
                    try:
                        status = int(value.split()[0])
                    except (ValueError, IndexError):
                        status = 500
                else:
                    headers.append((name.strip(), value.strip()))
            self.send_response_only(status)
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            shutil.copyfileobj(cgi.stdout, self.wfile, 1 << 16)
        finally:
            feeder.join()
            cgi.stdout.close()
            cgi.wait()
            killer.cancel()

    do_GET = _cgi
    do_POST = _cgi


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="directory of bare repositories (NAME.git)")
    p.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    args = p.parse_args(argv)
    Handler.root = args.root.resolve()
    Handler.backend = backend_path()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
