"""Deep links that work as the first request: an ASGI middleware around Streamlit's server.

Opened at /digits, Streamlit's frontend does not know where the server's root is and probes
/digits/_stcore/health and /digits/_stcore/host-config first (two 404s in the console) before
it finds /_stcore/. The frontend reads `window.__streamlit.BACKEND_BASE_URL` when it is set, so
this middleware puts that one line into the HTML page, pointing at the server's root. Nothing
else is touched: websocket, `_stcore` and static requests pass straight through.
"""

SNIPPET = b'<script>window.__streamlit = {BACKEND_BASE_URL: window.location.origin + "/"};</script>'


class DeepLinks:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or "/_stcore/" in path or "/static/" in path or "/component/" in path:
            return await self.app(scope, receive, send)
        # The page is small: ask for it uncompressed, so the snippet can go in.
        scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"]}
        start = {}

        async def send_patched(message):
            if message["type"] == "http.response.start":
                start.update(message)  # held back until the body is known: its length may change
                return
            if start:
                headers = dict(start.get("headers", []))
                body = message.get("body", b"")
                is_html = headers.get(b"content-type", b"").startswith(b"text/html")
                if is_html and not message.get("more_body") and b"<head>" in body:
                    body = body.replace(b"<head>", b"<head>" + SNIPPET, 1)
                    start["headers"] = [(k, str(len(body)).encode() if k == b"content-length" else v)
                                        for k, v in start["headers"]]
                    message = {**message, "body": body}
                await send(dict(start))
                start.clear()
            await send(message)

        await self.app(scope, receive, send_patched)
