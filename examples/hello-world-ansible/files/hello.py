"""HelloWorld HTTP service: answers every GET with a greeting naming the VM it runs on."""
import http.server
import socket
import sys

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8080


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("Hello, World from %s\n" % socket.gethostname()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Hello).serve_forever()
