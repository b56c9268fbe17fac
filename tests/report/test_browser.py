"""The HTML report in a real browser: headless Chromium loads the page from a file, runs
no network, logs no console error, lays out every plot, and paints a non-blank page."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pngcheck import colours

from distillmeter.cli import main
from distillmeter.render.svg import SIDE_COLOURS

BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium on PATH (apt-get install -y chromium; .ci/run does)")

# After the page is parsed: every <svg> must have a non-zero box and drawn content; the
# result goes into an attribute of <body>, which --dump-dom prints.
CHECK = """<script>(function(){var svgs=document.querySelectorAll('svg'),bad=[];
svgs.forEach(function(s,i){var r=s.getBoundingClientRect(),
n=s.querySelectorAll('rect,circle,line,polyline,path').length;
if(!(r.width>0&&r.height>0&&n>2))bad.push(i);});
document.body.setAttribute('data-svg-check',(bad.length?'bad:'+bad.join(','):'ok')+':'+
svgs.length);document.body.setAttribute('data-overflow',
document.documentElement.scrollWidth+'/'+window.innerWidth);})();</script>"""


def chromium(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra,
           page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def console_messages(stderr: str) -> list[str]:
    """Lines where the page wrote to the console (errors, uncaught exceptions)."""
    return [line for line in stderr.splitlines() if re.search(r":CONSOLE[:(]", line)]


def test_console_detection_catches_an_error(tmp_path: Path) -> None:
    # the check below would pass vacuously if console lines were not seen at all
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p>"
                    "<script>throw new Error('deliberate')</script></body></html>")
    res = chromium(page, tmp_path, "--dump-dom")
    assert any("deliberate" in m for m in console_messages(res.stderr)), res.stderr[-2000:]


def test_overflow_check_sees_a_wide_page(tmp_path: Path) -> None:
    # the 800 px check below would pass vacuously if a too-wide page read as fitting
    page = tmp_path / "wide.html"
    page.write_text('<!DOCTYPE html><html><head><meta name="viewport" content="width=device-'
                    'width, initial-scale=1"></head><body><div style="width:1500px">x</div>'
                    + CHECK + "</body></html>")
    res = chromium(page, tmp_path, "--dump-dom", "--window-size=800,1000")
    width = re.search(r'data-overflow="(\d+)/(\d+)"', res.stdout)
    assert width is not None and int(width.group(1)) > int(width.group(2)), res.stdout[-500:]


@pytest.mark.slow
def test_report_renders_in_chromium(campaign_dir: Path, tmp_path: Path) -> None:
    assert main(["report", str(campaign_dir), "--no-sensitivity"]) == 0
    page = campaign_dir / "report.html"
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # no network
    n_svg = html.count("<svg")

    checked = tmp_path / "checked.html"
    checked.write_text(html.replace("</body>", CHECK + "</body>"), encoding="utf-8")
    res = chromium(checked, tmp_path, "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    marker = re.search(r'data-svg-check="([^"]*)"', res.stdout)
    assert marker is not None, "the page did not run to the end"
    assert marker.group(1) == f"ok:{n_svg}"
    assert console_messages(res.stderr) == []

    # the page opens with the verdict, before any group's table
    assert html.index('class="verdict"') < html.index("<h2>Group")
    # at 800 px the page itself does not scroll sideways (wide tables scroll in their box)
    res = chromium(checked, tmp_path, "--dump-dom", "--window-size=800,1000")
    width = re.search(r'data-overflow="(\d+)/(\d+)"', res.stdout)
    assert width is not None and int(width.group(1)) <= int(width.group(2)), width

    shot = tmp_path / "shot.png"
    res = chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1000,2000",
                   "--hide-scrollbars")
    assert shot.exists(), res.stderr[-2000:]
    assert console_messages(res.stderr) == []
    counts = colours(shot)
    total = sum(counts.values())
    background = max(counts.values())
    assert len(counts) > 50 and background < 0.97 * total  # not blank
    # the stacked bars paint solid fills in the side colours
    for side in ("teacher", "student", "eval"):
        rgb = tuple(int(SIDE_COLOURS[side][i:i + 2], 16) for i in (1, 3, 5))
        assert counts.get(rgb, 0) > 200, side
