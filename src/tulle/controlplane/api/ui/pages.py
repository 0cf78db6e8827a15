"""The dashboard's HTML: one small shell per page (navigation, a title, an empty main that the
page's script fills), and the login page. Nothing here comes from a request but the page's
name and argument, which are checked and escaped."""

from __future__ import annotations

import html
import re

# (path under /ui/, title). The first is the home page.
PAGES: tuple[tuple[str, str], ...] = (
    ("topology", "Topology"),
    ("services", "Services"),
    ("workloads", "Workloads"),
    ("routes", "Routes"),
    ("proxies", "Proxies"),
    ("diagnose", "Diagnose"),
    ("rollouts", "Rollouts"),
    ("history", "History"),
    ("tap", "Live tap"),
)
PAGE_NAMES = frozenset(name for name, _ in PAGES)
# A service page: /ui/service/NAMESPACE/NAME.
ARGUMENT = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def shell(page: str, argument: str = "") -> str:
    nav = "".join(f'<a href="/ui/{name}"{" class=current" if name == page else ""}>'
                  f"{html.escape(title)}</a>" for name, title in PAGES)
    title = dict(PAGES).get(page, "Service")
    if argument:
        title = f"{title} {argument}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tulle: {html.escape(title)}</title>
<link rel="stylesheet" href="/ui/static/app.css">
</head><body>
<header><span class="brand">tulle</span><nav>{nav}</nav>
<span id="live" class="live" title="live updates">connecting</span>
<form method="post" action="/ui/logout"><button type="submit">log out</button></form>
</header>
<main id="page" data-page="{html.escape(page)}" data-argument="{html.escape(argument)}">
<h1>{html.escape(title)}</h1><div id="content"><p class="muted">loading</p></div></main>
<script src="/ui/static/app.js"></script>
</body></html>
"""


LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tulle: log in</title>
<link rel="stylesheet" href="/ui/static/app.css">
</head><body class="login">
<main><h1>tulle</h1>
<p>Paste the API token (the file <code>api-token</code> in the state directory), or open the
link that <code>tulle dashboard</code> prints.</p>
<form id="login"><input id="token" type="password" autocomplete="off" placeholder="API token"
 aria-label="API token"><button type="submit">Log in</button></form>
<p id="error" class="error" role="alert"></p></main>
<script src="/ui/static/login.js"></script>
</body></html>
"""
