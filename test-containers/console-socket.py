# A console socket for `runc --console-socket PATH`: runc connects and sends the master of the
# container's pseudo-terminal (SCM_RIGHTS); this prints "master N" for the N-th one, then every
# line the container writes there as "console N: LINE", and "closed N" when it hangs up.
import os
import socket
import sys
import threading

srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(4)
print("listening", flush=True)


def pump(n, fd):
    buf = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            print(f"console {n}: {line.decode(errors='replace').rstrip()}", flush=True)
    print(f"closed {n}", flush=True)


n = 0
while True:
    conn, _ = srv.accept()
    _, fds, _, _ = socket.recv_fds(conn, 1024, 4)
    conn.close()
    n += 1
    print(f"master {n}", flush=True)
    threading.Thread(target=pump, args=(n, fds[0]), daemon=True).start()
