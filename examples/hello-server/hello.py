"""A tiny hello-world HTTP server: the README's example app."""
import os
import socket
from http.server import BaseHTTPRequestHandler, HTTPServer

PORT = int(os.environ.get("PORT", "8080"))


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"Hello from {socket.gethostname()}!\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{self.address_string()} {fmt % args}", flush=True)


if __name__ == "__main__":
    print(f"hello-server listening on :{PORT}", flush=True)
    HTTPServer(("0.0.0.0", PORT), Hello).serve_forever()
