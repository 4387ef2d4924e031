#!/usr/bin/env python3
"""The metadata service as the ephemeral environment's agent sees it, for tests: accepts
POST /metadata/v1/events and /metadata/v1/commissioning with "Authorization: Bearer TOKEN"
(401 otherwise) and prints each request as a JSON line: method, path, authorization,
content_type, the status answered and the body (parsed when it is JSON, else as text under
"raw"). Answers {} to accepted requests, 404 to other paths.

With IMAGE (a gzip file), SHA256 and RAW_SIZE it also plays the deployment side: GET
/metadata/v1/deploy answers the plan (key=value lines naming /image.gz on this server, SHA256
as the image's checksum, whatever the file's really is), GET /metadata/v1/deploy/datasource.cfg
and .../networking.cfg a line of text each, POST /metadata/v1/deployment is accepted, and
GET /image.gz (no token, as boot HTTP serves resources) sends IMAGE.

usage: metadata-server.py ADDRESS PORT TOKEN [IMAGE SHA256 RAW_SIZE]
"""
import http.server
import json
import os
import sys

ADDRESS, PORT, TOKEN = sys.argv[1], int(sys.argv[2]), sys.argv[3]
IMAGE, SHA256, RAW_SIZE = (sys.argv[4:7] + [None, None, None])[:3]
PATHS = ("/metadata/v1/events", "/metadata/v1/commissioning", "/metadata/v1/deployment")
TEXTS = {
    "/metadata/v1/deploy/datasource.cfg": "datasource_list: [NoCloud, None]\n",
    "/metadata/v1/deploy/networking.cfg": "network: {version: 2}\n",
}


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

    def send_text(self, text):
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def send_image(self):
        size = os.path.getsize(IMAGE)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("Connection", "close")
        self.end_headers()
        with open(IMAGE, "rb") as f:
            self.wfile.write(f.read())
        self.close_connection = True
        print(json.dumps({"method": "GET", "path": self.path, "status": 200}), flush=True)

    def handle_any(self):
        if IMAGE and self.command == "GET" and self.path == "/image.gz":
            self.send_image()
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        authorization = self.headers.get("Authorization")
        if authorization != "Bearer " + TOKEN:
            status = 401
        elif self.command == "POST" and self.path in PATHS:
            status = 200
        elif IMAGE and self.command == "GET" and (self.path == "/metadata/v1/deploy" or self.path in TEXTS):
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
        if status == 200 and self.command == "GET":
            if self.path == "/metadata/v1/deploy":
                self.send_text(
                    f"image_url=http://{ADDRESS}:{PORT}/image.gz\nimage_sha256={SHA256}\n"
                    f"image_size={os.path.getsize(IMAGE)}\nimage_format=raw.gz\n"
                    f"image_raw_size={RAW_SIZE}\nroot_partition=2\n"
                )
            else:
                self.send_text(TEXTS[self.path])
            return
        errors = {401: "unauthorized", 404: "not found"}
        self.reply(status, {"error": errors[status]} if status in errors else {})

    do_GET = handle_any
    do_POST = handle_any

    def log_message(self, *args):
        pass


server = http.server.HTTPServer((ADDRESS, PORT), Handler)
print("listening", flush=True)
server.serve_forever()
