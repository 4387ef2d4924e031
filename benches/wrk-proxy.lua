-- wrk has no proxy mode: this sends absolute-form requests, as a client of a forward proxy
-- does. The URL comes from the environment (PROXY_URL), so one script serves every object.
local url = os.getenv("PROXY_URL") or "http://127.0.0.1:18081/obj100k"
wrk.path = url
wrk.headers["Host"] = url:match("^http://([^/]+)")
