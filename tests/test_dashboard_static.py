"""The dashboard's files without a browser: every file the page loads exists, and no script builds HTML from strings.

The browser test (``test_dashboard_browser.py``) is the real check; this one also runs where Chromium is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[1] / "src" / "maskwatch" / "serve" / "static"
#: Ways to turn a string into markup (API text must only ever become text nodes).
HTML_SINKS = re.compile(
    r"\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function\(|createContextualFragment"
)


def test_every_file_the_page_loads_exists():
    index = (STATIC / "index.html").read_text()
    loaded = re.findall(r'(?:src|href)="static/([^"]+)"', index)
    assert {"app.js", "style.css"} <= set(loaded)
    for name in loaded:
        assert (STATIC / name).is_file(), name
    for script in STATIC.glob("*.js"):
        for target in re.findall(r'^import .* from "\./([^"]+)";$', script.read_text(), flags=re.M):
            assert (STATIC / target).is_file(), f"{script.name} imports {target}"


def test_scripts_never_turn_strings_into_html():
    for script in STATIC.glob("*.js"):
        for number, line in enumerate(script.read_text().splitlines(), 1):
            assert not HTML_SINKS.search(line), f"{script.name}:{number}: {line.strip()}"


def test_api_urls_are_relative():
    """No leading slash: the page keeps working when a reverse proxy serves it under a path prefix."""
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        assert not re.search(r'["`]/api/', text), script.name
