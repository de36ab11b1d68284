"""Open a page in headless Chromium and answer its HTTP Basic login as a person would in the
browser's dialog: through the DevTools protocol (Fetch.authRequired), so the password is in no
URL, command line or file. Copied into a lab container and run there by the radiologist's
desktop account (conftest.browse); Python's standard library only.

Reads one JSON line on stdin: {"url", "user", "password", "expect": [texts], "flags": [...],
"profile": dir, "settle": s, "timeout": s}. Prints one JSON line: {"error": Chromium's net error of
the navigation ("" when it loaded), "url", "text": the page's visible text, "found": whether every
expected text was shown, "logins": credentials given, "refused": logins that Chromium cancelled,
"screenshot": PNG as base64}. The page is read once every expected text is visible, or `settle`
seconds after its load event, or at `timeout`."""

import base64
import json
import os
import select
import subprocess
import sys
import time
from urllib.parse import urlsplit


class Browser:
    """Chromium with --remote-debugging-pipe: requests on its fd 3, answers and events on fd 4."""

    def __init__(self, flags: list[str], profile: str):
        self.process = subprocess.Popen(
            ["sh", "-c", 'exec "$@" 3<&0 4>&1 </dev/null >/dev/null', "sh", "chromium", *flags,
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buffer, self.events, self.next_id = b"", [], 0

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.process.stdin.write(json.dumps(message).encode() + b"\0")
        self.process.stdin.flush()
        return self.next_id

    def receive(self, timeout: float) -> dict | None:
        """The next message from Chromium, or None after `timeout` seconds without one."""
        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.process.stdout], [], [], max(timeout, 0))
            if not ready:
                return None
            chunk = os.read(self.process.stdout.fileno(), 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        """A command's result; events that arrive meanwhile are kept for pump()."""
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(deadline - time.monotonic())
            if message is None:
                raise TimeoutError(method)
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def main() -> None:
    job = json.loads(sys.stdin.readline())
    origin = urlsplit(job["url"])
    browser = Browser(job["flags"], job["profile"])
    result = {"error": "", "url": "", "text": "", "found": False, "logins": 0, "refused": 0, "screenshot": ""}
    try:
        # The first tab (about:blank) can take a moment to appear after start-up.
        for _ in range(40):
            pages = [t for t in browser.call("Target.getTargets")["targetInfos"] if t["type"] == "page"]
            if pages:
                break
            time.sleep(0.25)
        target = pages[0]
        session = browser.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})["sessionId"]
        browser.call("Page.enable", session=session)
        # Every request pauses at Fetch.requestPaused (continued unchanged below); a 401 challenge
        # comes as Fetch.authRequired, where the dialog would open.
        browser.call("Fetch.enable", {"handleAuthRequests": True}, session)
        answered: set[str] = set()
        deadline = time.monotonic() + job["timeout"]
        navigate = browser.send("Page.navigate", {"url": job["url"]}, session)
        loaded_at = None

        def pump(message: dict) -> None:
            nonlocal loaded_at
            method, params = message.get("method"), message.get("params", {})
            if message.get("id") == navigate:
                result["error"] = message.get("result", {}).get("errorText", "").removeprefix("net::")
            elif method == "Fetch.requestPaused":
                browser.send("Fetch.continueRequest", {"requestId": params["requestId"]}, session)
            elif method == "Fetch.authRequired":
                challenge = params["authChallenge"]
                # The password only for our server's Basic challenge, once per request: a second
                # challenge for the same request means it was wrong (a person would stop there).
                ours = (challenge.get("source") == "Server" and challenge.get("scheme", "").lower() == "basic"
                        and urlsplit(challenge.get("origin", "")).netloc == origin.netloc)
                if ours and params["requestId"] not in answered:
                    answered.add(params["requestId"])
                    result["logins"] += 1
                    response = {"response": "ProvideCredentials", "username": job["user"], "password": job["password"]}
                else:
                    result["refused"] += 1
                    response = {"response": "CancelAuth"}
                browser.send("Fetch.continueWithAuth",
                             {"requestId": params["requestId"], "authChallengeResponse": response}, session)
            elif method == "Page.loadEventFired" and loaded_at is None:
                loaded_at = time.monotonic()

        while time.monotonic() < deadline:
            while browser.events:
                pump(browser.events.pop(0))
            message = browser.receive(0.25)
            if message is not None:
                pump(message)
                continue
            if loaded_at is None:
                continue
            page = browser.call("Runtime.evaluate", {"expression": "[location.href, document.body ? document.body.innerText : '']",
                                                     "returnByValue": True}, session)["result"]["value"]
            result["url"], result["text"] = page
            result["found"] = all(text in result["text"] for text in job["expect"])
            if result["found"] or time.monotonic() > loaded_at + job["settle"]:
                break
        while browser.events:
            pump(browser.events.pop(0))
        if result["found"]:
            time.sleep(0.5)  # jQuery Mobile's page transition, for the screenshot
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session)
        result["screenshot"] = shot["data"]
    finally:
        browser.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
