#!/usr/bin/env python3
"""The metadata service as the ephemeral environment's agent sees it, for tests: accepts
POST /metadata/v1/events and /metadata/v1/commissioning with "Authorization: Bearer TOKEN"
(401 otherwise) and prints each request as a JSON line: method, path, authorization,
content_type, the status answered and the body (parsed when it is JSON, else as text under
"raw"). Answers {} to accepted requests, 404 to other paths.

usage: metadata-server.py ADDRESS PORT TOKEN
"""
import http.server
import json
import sys

ADDRESS, PORT, TOKEN = sys.argv[1], int(sys.argv[2]), sys.argv[3]
PATHS = ("/metadata/v1/events", "/metadata/v1/commissioning")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        authorization = self.headers.get("Authorization")
        if authorization != "Bearer " + TOKEN:
            status = 401
        elif self.command == "POST" and self.path in PATHS:
            status = 200
        else:
            status = 404
        record = {
            "method": self.command,
            "path": self.path,
            "authorization": authorization,
            "content_type": self.headers.get("Content-Type"),
            "status": status,
        }
        try:
            record["body"] = json.loads(raw) if raw else None
        except ValueError:
            record["raw"] = raw.decode("utf-8", "replace")
        print(json.dumps(record), flush=True)
        errors = {401: "unauthorized", 404: "not found"}
        self.reply(status, {"error": errors[status]} if status in errors else {})

    do_GET = handle_any
    do_POST = handle_any

    def log_message(self, *args):
        pass


server = http.server.HTTPServer((ADDRESS, PORT), Handler)
print("listening", flush=True)
server.serve_forever()
