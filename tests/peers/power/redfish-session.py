#!/usr/bin/env python3
"""A minimal Redfish service for the parts sushy-emulator lacks: SessionService sessions
(X-Auth-Token, deleted with DELETE) and ETags (PATCH needs a matching If-Match unless started
with --no-etag-check). One system, /redfish/v1/Systems/1. Each request is printed as a JSON
line.

usage: redfish-session.py ADDRESS PORT
"""
import http.server
import json
import sys
import uuid

SESSIONS = {}
SYSTEM = {"PowerState": "Off", "Boot": {"BootSourceOverrideTarget": "None",
                                        "BootSourceOverrideEnabled": "Disabled"}}
VERSION = [1]


def etag():
    return f'W/"{VERSION[0]}"'


class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body=None, headers=()):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def log(self, **extra):
        print(json.dumps({"method": self.command, "path": self.path, **extra}), flush=True)

    def authorized(self):
        return self.headers.get("X-Auth-Token") in SESSIONS.values()

    def do_POST(self):
        if self.path == "/redfish/v1/SessionService/Sessions":
            b = self.body()
            ok = b.get("UserName") == "admin" and b.get("Password") == "password"
            self.log(login=ok)
            if not ok:
                return self.reply(401, {"error": {"message": "bad credentials"}})
            sid, token = uuid.uuid4().hex[:8], uuid.uuid4().hex
            SESSIONS[sid] = token
            loc = f"/redfish/v1/SessionService/Sessions/{sid}"
            return self.reply(201, {"Id": sid}, [("X-Auth-Token", token), ("Location", loc)])
        if not self.authorized():
            self.log(authorized=False)
            return self.reply(401)
        if self.path == "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset":
            kind = self.body().get("ResetType")
            self.log(reset=kind)
            SYSTEM["PowerState"] = "Off" if kind in ("ForceOff", "GracefulShutdown") else "On"
            VERSION[0] += 1
            return self.reply(204)
        return self.reply(404)

    def do_GET(self):
        if not self.authorized():
            self.log(authorized=False)
            return self.reply(401)
        self.log()
        if self.path == "/redfish/v1/Systems":
            return self.reply(200, {"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]})
        if self.path == "/redfish/v1/Systems/1":
            s = dict(SYSTEM, **{"@odata.id": "/redfish/v1/Systems/1", "Actions": {
                "#ComputerSystem.Reset": {
                    "target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                    "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "ForceRestart"]}}})
            return self.reply(200, s, [("ETag", etag())])
        return self.reply(404)

    def do_PATCH(self):
        if not self.authorized():
            self.log(authorized=False)
            return self.reply(401)
        match = self.headers.get("If-Match")
        self.log(if_match=match)
        if "--no-etag-check" not in sys.argv and match != etag():
            return self.reply(412, {"error": {"message": "ETag mismatch"}})
        SYSTEM["Boot"].update(self.body().get("Boot", {}))
        VERSION[0] += 1
        return self.reply(204)

    def do_DELETE(self):
        sid = self.path.rsplit("/", 1)[-1]
        ok = self.path.startswith("/redfish/v1/SessionService/Sessions/") and \
            SESSIONS.get(sid) == self.headers.get("X-Auth-Token")
        self.log(logout=ok)
        if ok:
            del SESSIONS[sid]
            return self.reply(204)
        return self.reply(401)

    def log_message(self, *args):
        pass


print("listening", flush=True)
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
