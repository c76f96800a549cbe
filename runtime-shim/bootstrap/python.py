# kipper-shim python worker. Embedded in the kipper-shim binary and written out at start.
# Connects to the shim's unix socket, loads the handler as CONTRACT section 1 says,
# then answers framed INVOKE messages (see runtime-shim/src/protocol.rs).
#
# Speed matters here: a sync handler is served by one tight loop that reads every
# complete frame of a recv(), invokes the handler, and sends the answers of fast
# invocations with one sendall(); an answer is never held back behind a slow
# invocation (see serve_sync). JSON is decoded only when the request says the
# body is JSON.
# Only what every request needs is imported up front: asyncio, inspect,
# traceback and urllib.parse cost tens of milliseconds of cold start, so they
# are imported when a handler first needs them.
import contextvars
import importlib.util
import json
import os
import socket
import struct
import sys
import threading
import time

INVOKE, RESULT, LOG, PING, PONG, UNSTARTED, READY, LOAD_FAILED = 1, 2, 4, 5, 6, 7, 10, 11
FLAG_EVENT, FLAG_BATCH = 1, 2
CT_NONE, CT_JSON, CT_TEXT, CT_OCTET = 0, 1, 2, 3
FN_PATH = os.environ["KIPPER_FUNCTION_PATH"]
EVENT_TRIGGER = os.environ.get("KIPPER_TRIGGER") or "http"

HDR = struct.Struct("<IBI")
INV = struct.Struct("<BBQHHIIHI")
RES = struct.Struct("<IBIHBI")
LOGH = struct.Struct("<IBIB")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads

# The real os._exit: serve_sync replaces os._exit for handlers (see there).
_exit = os._exit
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(os.environ["KIPPER_SHIM_SOCKET"])
send_lock = threading.Lock()
current = contextvars.ContextVar("kipper_invocation", default=0)


def send(data):
    with send_lock:
        sock.sendall(data)


class LogStream:
    """sys.stdout / sys.stderr: each line becomes a LOG frame tagged with the invocation."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = ""

    def write(self, s):
        if not isinstance(s, str):
            s = str(s)
        self.buf += s
        if "\n" in self.buf:
            lines, _, self.buf = self.buf.rpartition("\n")
            text = lines.encode("utf-8", "replace")
            send(LOGH.pack(6 + len(text), LOG, current.get(), self.stream) + text)
        return len(s)

    def flush(self):
        if self.buf:
            text = self.buf.encode("utf-8", "replace")
            self.buf = ""
            send(LOGH.pack(6 + len(text), LOG, current.get(), self.stream) + text)

    def isatty(self):
        return False

    def writable(self):
        return True

    @property
    def encoding(self):
        return "utf-8"


def result(rid, status, ct, headers, body):
    """One RESULT frame; headers is bytes (name:value lines), body bytes."""
    return RES.pack(12 + len(headers) + len(body), RESULT, rid, status, ct, len(headers)) + headers + body


def failure(rid, exc, batch):
    import traceback

    # Stream 3: the shim logs the stack at ERROR, with the request id.
    sys.stderr.flush()
    THROWN.write("".join(traceback.format_exception(exc)))
    THROWN.flush()
    body = _dumps({"error": str(exc) or type(exc).__name__}).encode()
    return result(rid, 1 if batch else 500, CT_JSON, b"", body)


def map_result(rid, v):
    if v is None:
        return result(rid, 200, CT_JSON, b"", b'{"ok":true}')
    if isinstance(v, dict):
        status = v.get("statusCode")
        if type(status) is int:
            if not 100 <= status <= 999:
                return failure(rid, ValueError("handler returned an invalid statusCode %r" % (status,)), False)
            ct = CT_NONE
            hdrs = b""
            h = v.get("headers")
            has_ct = False
            if h:
                lines = []
                for k, val in h.items():
                    if val is None:
                        continue
                    name = str(k).lower()
                    if name == "content-type":
                        has_ct = True
                    lines.append("%s:%s\n" % (name, str(val).replace("\r", " ").replace("\n", " ")))
                hdrs = "".join(lines).encode("utf-8")
            body = v.get("body")
            if body is None:
                data = b""
            elif isinstance(body, str):
                data = body.encode("utf-8")
                if not has_ct:
                    ct = CT_TEXT
            elif isinstance(body, (bytes, bytearray)):
                data = bytes(body)
                if not has_ct:
                    ct = CT_OCTET
            else:
                data = _dumps(body).encode("utf-8")
                if not has_ct:
                    ct = CT_JSON
            return result(rid, status, ct, hdrs, data)
    elif isinstance(v, str):
        return result(rid, 200, CT_TEXT, b"", v.encode("utf-8"))
    elif isinstance(v, (bytes, bytearray)):
        return result(rid, 200, CT_OCTET, b"", bytes(v))
    return result(rid, 200, CT_JSON, b"", _dumps(v).encode("utf-8"))


def batch_result(rid, v):
    failed = isinstance(v, dict) and (
        (type(v.get("statusCode")) is int and v["statusCode"] >= 400) or bool(v.get("error"))
    )
    return result(rid, 1 if failed else 0, CT_JSON, b"", _dumps(v).encode("utf-8"))


def parse_headers(raw):
    h = {}
    if raw:
        for line in raw.split("\n"):
            k, sep, v = line.partition(":")
            if sep:
                h[k] = h[k] + ", " + v if k in h else v
    return h


def parse_query(query):
    from urllib.parse import parse_qsl

    return dict(parse_qsl(query, keep_blank_values=True))


# Results that are certainly not awaitable, checked before the slower hasattr.
PLAIN = frozenset((dict, str, list, int, float, bool, bytes, type(None)))


def decode(buf, pos, rid):
    """Decodes one INVOKE; returns (args-or-error-frame, flags)."""
    flags, kind, deadline, ml, pl, ql, hl, rl, bl = INV.unpack_from(buf, pos)
    p = pos + 28
    method = buf[p:p + ml].decode("latin-1"); p += ml
    path = buf[p:p + pl].decode("utf-8", "replace"); p += pl
    query = buf[p:p + ql].decode("utf-8", "replace"); p += ql
    headers = buf[p:p + hl].decode("latin-1"); p += hl
    request_id = buf[p:p + rl].decode("latin-1"); p += rl
    if kind == 0:
        event = None
    elif kind == 1:
        try:
            event = _loads(buf[p:p + bl])
        except ValueError as e:
            msg = _dumps({"error": "request body is not valid JSON: %s" % e}).encode()
            return result(rid, 400, CT_JSON, b"", msg), flags
    else:
        event = buf[p:p + bl].decode("utf-8", "replace")
    if ARITY < 2:
        return ((event,) if ARITY == 1 else ()), flags
    context = {
        "method": method,
        "path": path,
        "query": parse_query(query) if query else {},
        "headers": parse_headers(headers),
        "trigger": EVENT_TRIGGER if flags & FLAG_EVENT else "http",
        "requestId": request_id,
        "deadline": deadline,
    }
    return (event, context), flags


# Answers wait to share a sendall() only while their batch is younger than this:
# past it, what is finished is sent before the next invocation starts.
FLUSH_AFTER = 0.0005


def serve_sync(fn):
    """One invocation at a time, many frames per recv; answers are sent together
    while they come fast, and as each finishes once a handler takes longer."""
    loop = None
    buf = b""
    recv = sock.recv
    unpack_hdr = HDR.unpack_from
    set_current = current.set
    clock = time.perf_counter
    out = []
    end = 0

    def exiting(code=0):
        """A handler ends the process (os._exit, sys.exit): first send the
        answers already finished, and hand back every invocation written to
        this worker that it never started (the rest of this batch and what
        waits unread in the socket), so the shim sends those elsewhere."""
        rest = buf[end:]
        try:
            # First say so (UNSTARTED with id 0): the shim stops writing to
            # this worker; what it wrote before reading that is drained below.
            sock.sendall(HDR.pack(5, UNSTARTED, 0))
            time.sleep(0.005)
            sock.setblocking(False)
            while True:
                more = sock.recv(1 << 20)
                if not more:
                    break
                rest += more
        except OSError:
            pass
        frames = list(out)
        p = 0
        while len(rest) - p >= 9:
            ln, kind, rid = unpack_hdr(rest, p)
            if p + 4 + ln > len(rest):
                break
            if kind == INVOKE:
                frames.append(HDR.pack(5, UNSTARTED, rid))
            p += 4 + ln
        try:
            sock.setblocking(True)
            sock.sendall(b"".join(frames))
        except OSError:
            pass
        _exit(code)

    os._exit = exiting
    while True:
        data = recv(1 << 20)
        if not data:
            return
        buf = buf + data if buf else data
        n = len(buf)
        pos = 0
        out = []
        since = clock()
        while n - pos >= 9:
            ln, kind, rid = unpack_hdr(buf, pos)
            end = pos + 4 + ln
            if end > n:
                break
            if kind == INVOKE:
                args, flags = decode(buf, pos + 9, rid)
                if type(args) is bytes:
                    out.append(args)
                else:
                    batch = flags & FLAG_BATCH
                    set_current(rid)
                    try:
                        v = fn(*args)
                        if type(v) not in PLAIN and hasattr(v, "__await__"):
                            if loop is None:
                                import asyncio

                                loop = asyncio.new_event_loop()
                            v = loop.run_until_complete(v)
                        out.append(batch_result(rid, v) if batch else map_result(rid, v))
                    except Exception as e:
                        out.append(failure(rid, e, batch))
                    except SystemExit as e:
                        sys.stderr.flush()
                        exiting(e.code if type(e.code) is int else 0 if e.code is None else 1)
                    set_current(0)
                    if clock() - since > FLUSH_AFTER:
                        send(out[0] if len(out) == 1 else b"".join(out))
                        out = []
                        since = clock()
            elif kind == PING:
                # Answered by the loop that runs handlers: a blocked handler blocks it.
                out.append(HDR.pack(5, PONG, rid))
            pos = end
        buf = buf[pos:] if pos < n else b""
        if out:
            send(out[0] if len(out) == 1 else b"".join(out))


async def serve_async(fn):
    """async def handlers: every invocation is a task, so they overlap while awaiting."""
    import asyncio

    loop = asyncio.get_running_loop()
    buf = b""

    async def run(rid, args, batch):
        current.set(rid)
        try:
            v = await fn(*args)
            frame = batch_result(rid, v) if batch else map_result(rid, v)
        except Exception as e:
            frame = failure(rid, e, batch)
        send(frame)

    sock.setblocking(False)
    global send

    def send(data):  # noqa: F811 - the loop owns the socket once async
        loop.call_soon_threadsafe(_send_async, data)

    pending = []

    async def writer():
        while True:
            await wake.wait()
            wake.clear()
            chunks = pending[:]
            del pending[:]
            if chunks:
                await loop.sock_sendall(sock, b"".join(chunks))

    def _send_async(data):
        pending.append(data)
        wake.set()

    wake = asyncio.Event()
    writer_task = asyncio.ensure_future(writer())
    tasks = set()
    while True:
        data = await loop.sock_recv(sock, 1 << 20)
        if not data:
            writer_task.cancel()
            return
        buf = buf + data if buf else data
        n = len(buf)
        pos = 0
        while n - pos >= 9:
            ln, kind, rid = HDR.unpack_from(buf, pos)
            end = pos + 4 + ln
            if end > n:
                break
            if kind == INVOKE:
                args, flags = decode(buf, pos + 9, rid)
                if type(args) is bytes:
                    _send_async(args)
                else:
                    t = asyncio.ensure_future(run(rid, args, flags & FLAG_BATCH))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
            elif kind == PING:
                _send_async(HDR.pack(5, PONG, rid))
            pos = end
        buf = buf[pos:] if pos < n else b""


CO_VARARGS, CO_COROUTINE = 0x04, 0x80


def arity(fn):
    """How many of (event, context) the handler takes."""
    code = getattr(fn, "__code__", None)
    if code is not None and not hasattr(fn, "__wrapped__"):
        # A plain function or method: read its code object (no inspect import).
        if code.co_flags & CO_VARARGS:
            return 2
        n = code.co_argcount - (1 if getattr(fn, "__self__", None) is not None else 0)
        return max(0, min(n, 2))
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    n = 0
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            return 2
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return min(n, 2)


def is_async(fn):
    code = getattr(fn, "__code__", None)
    if code is not None and not hasattr(fn, "__wrapped__"):
        return bool(code.co_flags & CO_COROUTINE)
    import inspect

    return inspect.iscoroutinefunction(fn)


def load():
    directory = os.path.dirname(os.path.abspath(FN_PATH))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = os.path.splitext(os.path.basename(FN_PATH))[0] or "handler"
    spec = importlib.util.spec_from_file_location(name, FN_PATH)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load %s: not a python file" % FN_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    for attr in ("handler", "handle", "main"):
        fn = getattr(module, attr, None)
        if callable(fn):
            return fn
    raise AttributeError("%s defines no handler: define handler(event, context), handle(...) or main()" % FN_PATH)


sys.stdout = LogStream(1)
sys.stderr = LogStream(2)
THROWN = LogStream(3)
try:
    FN = load()
except BaseException as e:  # SyntaxError, ImportError, SystemExit at import: all are load failures
    import traceback

    msg = "".join(traceback.format_exception(e)).encode("utf-8", "replace")
    sock.sendall(HDR.pack(5 + len(msg), LOAD_FAILED, 0) + msg)
    sock.close()
    _exit(0)
ARITY = arity(FN)
ASYNC = is_async(FN)
# READY_SERIAL (1): a sync handler runs invocations one at a time, in order,
# and may block: the shim queues more behind it only while it keeps answering.
sock.sendall(HDR.pack(5, READY, 0) if ASYNC else HDR.pack(6, READY, 0) + b"\x01")
try:
    if ASYNC:
        import asyncio

        asyncio.run(serve_async(FN))
    else:
        serve_sync(FN)
except (ConnectionError, OSError):
    pass
_exit(0)
