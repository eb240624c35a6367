"""Hello World HTTP service for the CTD demo.

Binds the VM's own address: the third field of SSH_CONNECTION (OpenSSH sets it to
"client-ip client-port server-ip server-port"), so each VM listens only on its address.
"""
import http.server
import os
import socket

ADDRESS = (os.environ.get("SSH_CONNECTION", "").split() + ["", "", "127.0.0.1"])[2]
PORT = int(os.environ.get("HELLO_PORT", "8080"))
HOSTNAME = os.environ.get("HOSTNAME") or socket.gethostname()


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"Hello World from {HOSTNAME}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    http.server.ThreadingHTTPServer((ADDRESS, PORT), Hello).serve_forever()
