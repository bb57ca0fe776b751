"""A small threaded HTTP/1.1 server for tests: serves the files of one folder on
127.0.0.1 (an ephemeral port, never another address), honours byte ranges and HEAD,
and logs every request so that tests can count what a reader fetched.

    with RangeServer(folder) as server:
        gdal.Open(server.vsicurl("scene.nsat"))
        print(server.requests())          # [Request(method='HEAD', ...), Request('GET', ...)]
        server.reset()

Ranges: ``bytes=a-b``, ``bytes=a-`` (to the end) and ``bytes=-n`` (the last n bytes) get
206 with Content-Range; a range that starts at or after the end of the file gets 416;
a multi-range or malformed ``Range`` header is ignored (200 with the whole file), as
RFC 9110 allows. Every response carries Content-Length and ``Accept-Ranges: bytes``.

Fault mode: ``server.drop_after(n)`` lets the next responses send n body bytes in all,
then closes the connection in the middle of a response (its Content-Length promised
more), and closes every later connection before answering, as a server or network that
fails mid-file would. ``server.drop_after(None)`` ends it.

Only the standard library; threads are daemons and ``__exit__`` shuts the server and
its open keep-alive connections down, so a test never hangs on it.
"""
import dataclasses
import http.server
import os
import re
import socket
import threading
import urllib.parse

__all__ = ["RangeServer", "Request"]

HOST = "127.0.0.1"
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_PIECE = 64 * 1024


@dataclasses.dataclass
class Request:
    method: str             # "GET" or "HEAD" (others get 501 and are logged too)
    path: str               # URL path, e.g. "/scene.nsat"
    range: str | None       # the Range header as sent, None without one
    status: int             # 200, 206, 404, 416, ... (0 when the connection was dropped first)
    start: int | None       # first byte of the body (inclusive), None when no body
    end: int | None         # last byte of the body (inclusive), None when no body
    bytes_sent: int         # body bytes really written (short when dropped by the fault mode)
    dropped: bool = False   # the fault mode closed the connection during this request

    @property
    def is_range_get(self) -> bool:
        return self.method == "GET" and self.range is not None


def parse_range(header: str, size: int):
    """(start, end) inclusive for a single-range header, "unsatisfiable", or None when
    the header should be ignored (malformed or multi-range)."""
    match = _RANGE.match(header)
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:                                   # suffix: the last n bytes
        length = int(last)
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - length), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None                                 # invalid: ignore the header
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"                   # keep-alive, as GDAL's curl expects
    server_version = "NSATTestRangeServer/1.0"

    def log_message(self, format, *args):           # quiet: the log is self.server.log
        pass

    def setup(self):
        super().setup()
        self.server.owner._connection_opened(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.owner._connection_closed(self.connection)

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def _not_implemented(self):
        self._record(self.command, None, 501, None, None, 0)
        self.send_error(501)

    do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _not_implemented

    def _record(self, *fields, dropped=False) -> Request:
        path = urllib.parse.urlsplit(self.path).path
        entry = Request(self.command, path, self.headers.get("Range"), *fields, dropped=dropped)
        self.server.owner._log(entry)
        return entry

    def _drop(self):
        """Closes the connection at once (no reply, or the rest of one, will come)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _serve(self, body: bool):
        owner = self.server.owner
        if owner._budget() == 0:                   # fault mode, budget spent
            self._record(0, None, None, 0, dropped=True)
            self._drop()
            return
        relative = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        path = os.path.realpath(os.path.join(owner.root, relative))
        if (not path.startswith(owner.root + os.sep) or not os.path.isfile(path)):
            self._record(404, None, None, 0)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = os.path.getsize(path)
        header = self.headers.get("Range")
        wanted = parse_range(header, size) if header is not None else None
        if wanted == "unsatisfiable":
            self._record(416, None, None, 0)
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if wanted is None:
            status, start, end = 200, 0, size - 1
        else:
            status, (start, end) = 206, wanted
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body or length == 0:
            self._record(status, None if not body else start, None if not body else end, 0)
            return
        # Logged before the last byte leaves, so that a client which has its answer
        # always finds the request in the log; updated if the body ends short.
        entry = self._record(status, start, end, length)
        sent = 0
        with open(path, "rb") as f:
            f.seek(start)
            while sent < length:
                wanted = min(_PIECE, length - sent)
                allowed = owner._take(wanted)
                if allowed < wanted:                 # fault mode: this is the last piece
                    owner._update(entry, bytes_sent=sent + allowed, dropped=True)
                chunk = f.read(allowed)
                try:
                    if chunk:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except OSError:                      # the client went away
                    owner._update(entry, bytes_sent=sent)
                    self.close_connection = True
                    return
                sent += len(chunk)
                if allowed < wanted:
                    self._drop()
                    return


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False


class RangeServer:
    """Serves the files of `root` on http://127.0.0.1:<ephemeral port>/ while in a
    `with` block (or between start() and stop())."""

    def __init__(self, root):
        self.root = os.path.realpath(str(root))
        self._lock = threading.Lock()
        self._log_entries = []
        self._connections = set()
        self._remaining = None                       # fault mode: body bytes still allowed
        self._server = None
        self._thread = None

    # ------------------------------------------------------------ lifetime
    def start(self):
        if self._server is not None:
            return self
        self._server = _Server((HOST, 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"RangeServer:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is None:
            return
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:               # wake keep-alive threads blocked in recv
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # ------------------------------------------------------------ addresses
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, name: str = "") -> str:
        return f"http://{HOST}:{self.port}/{urllib.parse.quote(name)}"

    def vsicurl(self, name: str) -> str:
        return "/vsicurl/" + self.url(name)

    # ------------------------------------------------------------ log
    def requests(self, path: str | None = None):
        """A copy of the log (every request since the start or the last reset), in the
        order they were answered; only those for `path` ("/name") if given."""
        with self._lock:
            entries = [dataclasses.replace(r) for r in self._log_entries]
        return [r for r in entries if path is None or r.path == path]

    def reset(self):
        with self._lock:
            self._log_entries.clear()

    # ------------------------------------------------------------ fault mode
    def drop_after(self, nbytes: int | None):
        """From now on, send `nbytes` body bytes in all, then drop connections
        (mid-response, and before answering any later request). None: no fault."""
        with self._lock:
            self._remaining = None if nbytes is None else max(0, int(nbytes))

    # ------------------------------------------------------------ for the handler
    def _log(self, request: Request):
        with self._lock:
            self._log_entries.append(request)

    def _update(self, entry: Request, **fields):
        with self._lock:
            for name, value in fields.items():
                setattr(entry, name, value)

    def _budget(self):
        with self._lock:
            return self._remaining

    def _take(self, wanted: int) -> int:
        with self._lock:
            if self._remaining is None:
                return wanted
            granted = min(wanted, self._remaining)
            self._remaining -= granted
            return granted

    def _connection_opened(self, connection):
        with self._lock:
            self._connections.add(connection)

    def _connection_closed(self, connection):
        with self._lock:
            self._connections.discard(connection)
