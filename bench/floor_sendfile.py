#!/usr/bin/env python3
"""The machine's floor for a catch-up read served with sendfile (bench/run.sh, "catchup-floor").

A sender process sends a file (--size-mb, in the page cache) to one loopback TCP connection with
os.sendfile in --chunk-mb slices, over and over for --duration seconds; a reader process drains
it with recv_into. Two modes, one JSON line each:

  stream     the sender sends without pause (no requests): the kernel's cost per MiB alone
  pingpong   the reader sends a 16-byte request per chunk and waits for the whole chunk before
             the next, as ds-loadgen's catch-up readers do (one response at a time)

Reported: MiB/s and the sender's CPU time (utime + stime, getrusage) per MiB, which on loopback
includes the receiving side's TCP processing the kernel runs in the sender's context. No HTTP,
no user-space buffering: what dstreamd's catch-up path cannot go below on this machine.
Options: --size-mb M (128) --chunk-mb C (1) --duration S (10) --sender-cpu N --reader-cpu N
--dir DIR (where the file goes; default $TMPDIR).
"""
import argparse
import json
import os
import resource
import socket
import sys
import tempfile
import time


def cpu_us():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return int((u.ru_utime + u.ru_stime) * 1e6)


def sender(conn, path, size, chunk, duration, pingpong, cpu, out_w):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    fd = os.open(path, os.O_RDONLY)
    sent = 0
    off = 0
    c0 = cpu_us()
    t0 = time.monotonic()
    deadline = t0 + duration
    while time.monotonic() < deadline:
        if pingpong:
            req = conn.recv(16)
            if not req:
                break
        n = min(chunk, size - off)
        left = n
        while left:
            k = os.sendfile(conn.fileno(), fd, off + (n - left), left)
            if k == 0:
                break
            left -= k
        sent += n
        off = 0 if off + n >= size else off + n
    t1 = time.monotonic()
    c1 = cpu_us()
    conn.shutdown(socket.SHUT_WR)
    os.write(out_w, json.dumps({"bytes": sent, "secs": t1 - t0, "cpu_us": c1 - c0}).encode())
    os.close(out_w)


def reader(conn, chunk, pingpong, cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    buf = bytearray(256 * 1024)
    view = memoryview(buf)
    c0 = cpu_us()
    total = 0
    while True:
        if pingpong:
            try:
                conn.sendall(b"GET next chunk\r\n")
            except OSError:
                break
            got = 0
            while got < chunk:
                k = conn.recv_into(view)
                if k == 0:
                    return cpu_us() - c0
                got += k
            total += got
        else:
            k = conn.recv_into(view)
            if k == 0:
                return cpu_us() - c0
            total += k


def run(mode, path, args):
    size = int(args.size_mb * 1024 * 1024)
    chunk = int(args.chunk_mb * 1024 * 1024)
    pingpong = mode == "pingpong"
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    port = lst.getsockname()[1]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        lst.close()
        os.close(r)
        c = socket.create_connection(("127.0.0.1", port))
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader_cpu = reader(c, chunk, pingpong, args.reader_cpu)
        os.write(w, json.dumps({"reader_cpu_us": reader_cpu}).encode())
        os._exit(0)
    conn, _ = lst.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    r2, w2 = os.pipe()
    spid = os.fork()
    if spid == 0:
        os.close(r2)
        sender(conn, path, size, chunk, args.duration, pingpong, args.sender_cpu, w2)
        os._exit(0)
    os.close(w2)
    conn.close()
    s = json.loads(os.read(r2, 4096))
    os.waitpid(spid, 0)
    os.close(w)
    rd = json.loads(os.read(r, 4096) or b"{}")
    os.waitpid(pid, 0)
    mib = s["bytes"] / (1024 * 1024)
    return {
        "mode": mode,
        "size_mb": args.size_mb,
        "chunk_mb": args.chunk_mb,
        "mb_per_s": mib / s["secs"] if s["secs"] > 0 else 0,
        "sender_cpu_us_per_mb": s["cpu_us"] / mib if mib else 0,
        "sender_cpu_pct": s["cpu_us"] / (s["secs"] * 1e4) if s["secs"] > 0 else 0,
        "reader_cpu_us_per_mb": rd.get("reader_cpu_us", 0) / mib if mib else 0,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mb", type=float, default=128)
    p.add_argument("--chunk-mb", type=float, default=1)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--sender-cpu", type=int)
    p.add_argument("--reader-cpu", type=int)
    p.add_argument("--dir", default=tempfile.gettempdir())
    p.add_argument("--modes", default="stream,pingpong")
    args = p.parse_args()
    fd, path = tempfile.mkstemp(prefix="sendfile-floor.", dir=args.dir)
    try:
        block = (b"c" * 63 + b"\n") * 16384  # 1 MiB, the catch-up case's bytes
        left = int(args.size_mb * 1024 * 1024)
        while left > 0:
            left -= os.write(fd, block[: min(len(block), left)])
        os.close(fd)
        with open(path, "rb") as f:  # into the page cache
            while f.read(1 << 20):
                pass
        for mode in args.modes.split(","):
            print(json.dumps(run(mode, path, args)), flush=True)
    finally:
        os.unlink(path)


if __name__ == "__main__":
    sys.exit(main())
