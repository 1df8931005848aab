#!/usr/bin/env python3
"""A loopback HTTP server for tests/cli_serve_remote.sh (python stdlib only).

usage: remote_media_server.py DIR
Serves the files of DIR (as `python3 -m http.server` does) on 127.0.0.1 and a free port, printed
as `PORT <n>` on stdout, plus:
  /slow              waits 30 s before answering (a fetch timeout must fire first)
  /stream-big/<n>    chunked, no Content-Length: n bytes, then hangs 30 s (the size limit must fire
                     while streaming, not after the body)
  /redirect/<k>      k redirects, then /small.png
  /to-file           redirects to file:///etc/passwd (must be refused)
"""
import functools, http.server, sys, time


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        p = self.path
        if p == "/slow":
            time.sleep(30)
            return self.send_error(504)
        if p.startswith("/stream-big/"):
            n = int(p.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"\x89PNG" + b"x" * 65532
            sent = 0
            try:
                while sent < n:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
                self.wfile.flush()
                time.sleep(30)
            except OSError:
                pass
            self.close_connection = True
            return
        if p.startswith("/redirect/"):
            k = int(p.rsplit("/", 1)[1])
            self.send_response(302)
            self.send_header("Location", "/redirect/%d" % (k - 1) if k > 1 else "/small.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if p == "/to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        return super().do_GET()


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=sys.argv[1]))
srv.daemon_threads = True
print("PORT", srv.server_address[1], flush=True)
srv.serve_forever()
