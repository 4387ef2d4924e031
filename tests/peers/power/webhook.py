#!/usr/bin/env python3
"""A webhook power endpoint for tests: POST /on and /off switch a stored state, GET /status
answers {"status": "running"} or {"status": "stopped"}. Requests must carry the bearer token
(or basic credentials) given on the command line. Each request is printed as a JSON line.

usage: webhook.py ADDRESS PORT AUTHORIZATION-HEADER-VALUE
"""
import http.server
import json
import sys

STATE = {"power": "stopped"}
AUTH = sys.argv[3]


class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        ok = self.headers.get("Authorization") == AUTH
        print(json.dumps({"method": self.command, "path": self.path, "authorized": ok}), flush=True)
        if not ok:
            return self.reply(401, {"error": "unauthorized"})
        if self.command == "POST" and self.path in ("/on", "/off"):
            STATE["power"] = "running" if self.path == "/on" else "stopped"
            return self.reply(200, {"ok": True})
        if self.command == "GET" and self.path == "/status":
            return self.reply(200, {"status": STATE["power"]})
        return self.reply(404, {"error": "not found"})

    do_GET = handle_any
    do_POST = handle_any

    def log_message(self, *args):
        pass


print("listening", flush=True)
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
