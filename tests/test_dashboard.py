"""The dashboard through the real thing: a `scopewatch dashboard` server on a free loopback port,
driven over HTTP with gradio_client and in headless Chromium (Debian's, via playwright)."""
import csv
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from helpers import free_port, run_cli, write_video

SHOTS = ROOT / "out" / "screenshots"


@pytest.fixture(scope="module")
def weights(tiny_weights):
    return tiny_weights


@pytest.fixture(scope="module")
def media(tmp_path_factory, tiny_weights):
    """The allowed folder: a recording, a compatible checkpoint and one for other distortions."""
    import torch
    from model import create_model, save_checkpoint
    folder = tmp_path_factory.mktemp("allowed")
    write_video(folder / "case.mp4", n=50)
    shutil.copy(tiny_weights, folder / "tiny.pt")
    torch.manual_seed(0)
    save_checkpoint(create_model("scopewatch_lap5_small", tasks=("noise", "smoke")), folder / "two_tasks.pt")
    (folder / "random.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    torch.save({"state_dict": Pickled()}, folder / "malicious.pt")  # unpickling it would run a command
    return folder


class Pickled:
    """An object whose unpickling runs a shell command: what a malicious weights file carries."""

    def __reduce__(self):
        import os
        return os.system, ("touch /tmp/scopewatch-pwned",)


@pytest.fixture(scope="module")
def monitor_csv(media, tmp_path_factory):
    """What `scopewatch analyze` writes for the recording, at its default sampling (the Recorded
    tab's too): the reference for every download."""
    folder = tmp_path_factory.mktemp("analyze")
    shutil.copy(media / "case.mp4", folder / "case.mp4")
    r = subprocess.run([sys.executable, "-m", "apps.cli", "analyze", str(folder / "case.mp4"), "-q"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return folder / "case.mp4.scopewatch.csv"


def assert_same_timeline(ours: Path, monitor: Path) -> None:
    def rows(path):
        with open(path, newline="") as f:
            return [{k: v for k, v in row.items() if k not in ("wallclock", "latency_ms")} for row in csv.DictReader(f)]

    a_rows, b_rows = rows(ours), rows(monitor)
    assert len(a_rows) == len(b_rows) > 5
    for a, b in zip(a_rows, b_rows):
        assert a.keys() == b.keys()
        for k in a:
            if a[k] and k not in ("time_s", "frame_index", "stream_state") and not k.endswith("_level"):
                assert abs(float(a[k]) - float(b[k])) < 1e-3, k
            else:
                assert a[k] == b[k], k


def serve(*args):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "apps.cli", "dashboard", *args, "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=os.environ | {"GRADIO_ANALYTICS_ENABLED": "False"})
    end = time.time() + 60
    while time.time() < end:
        line = proc.stdout.readline()
        if "ScopeWatch dashboard:" in line:
            return proc, line.split()[2]
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"dashboard did not start: {proc.stdout.read()}")


metrics_port = [0]  # the server fixture's Prometheus port


@pytest.fixture(scope="module")
def server(media):
    """The shipped weights watching the built-in 60 s demo feed (smoke from 6 to 20 s)."""
    metrics_port[0] = free_port()
    proc, url = serve("synthetic:60", "--allowed-dir", str(media), "--max-upload-mb", "1",
                      "--metrics-port", str(metrics_port[0]))
    yield url
    proc.terminate()
    proc.wait(10)


def test_page_and_config_are_served_without_analytics(server):
    with urllib.request.urlopen(server) as r:
        assert r.status == 200 and "<html" in r.read().decode().lower()
    import json
    with urllib.request.urlopen(server + "config") as r:
        cfg = json.loads(r.read())
    assert cfg["analytics_enabled"] is False
    # the footer says what runs (issue 21): the version line of `scopewatch --version`
    from apps.version import version_line
    footer = [c for c in cfg["components"] if c.get("props", {}).get("elem_id") == "sw-footer"]
    assert footer and footer[0]["props"]["value"] == version_line()


def test_metrics_of_the_running_feeds_are_served(server):
    from prometheus_client.parser import text_string_to_metric_families
    end = time.time() + 30
    while time.time() < end:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port[0]}/metrics", timeout=5).read().decode()
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(text) for s in f.samples}
        if samples.get(("scopewatch_frames_analysed_total", (("feed", "synthetic:60"),)), 0) > 0:
            break
        time.sleep(1)
    assert samples[("scopewatch_frames_analysed_total", (("feed", "synthetic:60"),))] > 0
    assert samples[("scopewatch_feed_state", (("feed", "synthetic:60"), ("state", "live")))] == 1.0


def test_live_chart_gains_points_over_http(server):
    from gradio_client import Client
    client = Client(server, verbose=False)
    first = client.predict("synthetic:60", "all", False, api_name="/live_update")
    time.sleep(3)
    second = client.predict("synthetic:60", "all", False, api_name="/live_update")

    def latest(fig):  # latest time on the chart (long histories are downsampled, so not a count)
        import json
        plot = json.loads(fig["plot"]) if isinstance(fig, dict) and "plot" in fig else fig
        xs = plot["data"][0].get("x") or [-1]
        return max(xs)

    assert latest(second[2]) > latest(first[2]) + 1.0
    assert "LIVE" in second[1]


def test_several_feeds_are_tiles_and_a_stopped_one_is_released(server):
    from gradio_client import Client
    client = Client(server, verbose=False)
    assert "watching" in client.predict("synthetic:20", api_name="/start")
    tiles = client.predict("synthetic:60", "1 min", False, api_name="/live_update")[6]
    assert "data-uri='synthetic:60'" in tiles and "data-uri='synthetic:20'" in tiles
    assert "sw-selected' data-uri='synthetic:60'" in tiles
    assert "stopped" in client.predict("synthetic:20", api_name="/stop")
    tiles = client.predict("synthetic:60", "1 min", False, api_name="/live_update")[6]
    assert "synthetic:20" not in tiles and "synthetic:60" in tiles


def test_recorded_tab_csv_matches_the_monitor_csv(server, monitor_csv):
    from gradio_client import Client
    client = Client(server, verbose=False)
    result = client.predict(None, "case.mp4", api_name="/analyse")
    assert result[6] is not None  # the first analysed frame is shown (gr.State outputs are not returned)
    assert_same_timeline(Path(result[3]), monitor_csv)


def test_path_traversal_in_the_chooser_is_refused(server):
    from gradio_client import Client
    client = Client(server, verbose=False)
    for name in ("../../../../etc/passwd", "/etc/passwd", "..%2f..%2fetc/passwd"):
        with pytest.raises(Exception, match="refused"):
            client.predict(None, name, api_name="/analyse")


def test_an_upload_is_judged_by_its_content_not_its_name(server, tmp_path):
    """Uploads are opened by what the bytes are (the container is probed), never by the extension:
    text named .mp4 is refused in one message before any decoding."""
    from gradio_client import Client, handle_file
    fake = tmp_path / "surgery.mp4"
    fake.write_text("not a video at all\n" * 100)
    with pytest.raises(Exception, match="not a readable video"):
        Client(server, verbose=False).predict(handle_file(str(fake)), None, api_name="/analyse")


def test_oversized_upload_is_refused(server):
    boundary = "----scopewatch"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode() + b"\0" * (2 * 1024 * 1024) + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(server + "gradio_api/upload", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 413 and "size" in err.value.read().decode().lower()


def test_non_loopback_bind_without_auth_is_refused(weights):
    r = subprocess.run([sys.executable, "-m", "apps.cli", "dashboard", "--host", "0.0.0.0", "--weights", str(weights)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "refusing to serve" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_in_a_real_browser(server, monitor_csv, tmp_path):
    pw = pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(server)
        page.get_by_text("ScopeWatch — surgical video quality monitor").wait_for(timeout=30000)
        # What must be live is watched on a feed of the test's own: on a loaded machine the tests
        # before this one can outlast the server's 60 s feed (its chart then stops at 59.8 s).
        feed = "synthetic:59"
        page.locator("#sw-source textarea, #sw-source input").first.fill(feed)
        page.get_by_role("button", name="Start").click()
        started = time.time()
        page.wait_for_selector(f".sw-tile.sw-selected[data-uri='{feed}']", timeout=20000)
        page.get_by_label("all").check()

        def latest():  # (points drawn, latest time on the chart); long histories are downsampled
            return page.evaluate("""() => { const p = document.querySelector('.js-plotly-plot');
                if (!(p && p.data && p.data[0] && p.data[0].x.length)) return [0, -1];
                return [p.data[0].x.length, Math.max(...p.data[0].x)]; }""")

        end = time.time() + 30
        while latest()[0] < 5 and time.time() < end:
            time.sleep(0.5)
        n, first = latest()
        time.sleep(3)
        assert n >= 5 and latest()[1] > first + 1.0
        assert "LIVE" in page.inner_text(".sw-badges")
        # The scheduled smoke (5.9-19.7 s of the feed) appears in the events table once it has cleared.
        time.sleep(max(0.0, started + 26 - time.time()))
        # On a loaded machine the analysis runs behind the feed: up to a minute more for the event.
        page.locator(".cell-wrap:visible", has_text="smoke").first.wait_for(timeout=60000)
        # ... with its thumbnail (the episode's worst frame) in the gallery below the table
        page.wait_for_function("[...document.querySelectorAll('img')].some(i => i.src.includes('/file=') || "
                               "i.src.includes('gradio_api/file'))", timeout=10000)
        page.screenshot(path=str(SHOTS / "live.png"), full_page=True)
        # A second feed becomes a second tile; a click on a tile opens that feed.
        page.locator("#sw-source textarea, #sw-source input").first.fill("synthetic:30")
        page.get_by_role("button", name="Start").click()
        page.wait_for_selector(".sw-tile[data-uri='synthetic:30']", timeout=20000)
        page.locator(f".sw-tile[data-uri='{feed}']").click()
        page.wait_for_function(f"document.querySelector('#sw-source textarea, #sw-source input').value === '{feed}'",
                               timeout=20000)
        page.wait_for_selector(f".sw-tile.sw-selected[data-uri='{feed}']", timeout=20000)
        page.screenshot(path=str(SHOTS / "live_tiles.png"), full_page=True)
        from gradio_client import Client
        for started_here in ("synthetic:30", feed):
            Client(server, verbose=False).predict(started_here, api_name="/stop")
        page.get_by_role("tab", name="Recorded").click()
        page.get_by_label("…or choose from", exact=False).click()
        page.get_by_role("option", name="case.mp4").click()
        page.wait_for_function("[...document.querySelectorAll('input')].some(i => i.value === 'case.mp4')", timeout=10000)
        page.get_by_role("button", name="Analyse").click()
        try:  # the summary appears when the analysis is done
            page.wait_for_function("[...document.querySelectorAll('textarea')].some(t => t.value.includes('analysed frames'))",
                                   timeout=60000)
        finally:
            page.screenshot(path=str(SHOTS / "recorded.png"), full_page=True)
        # The CSV download button gives the monitor's own timeline.
        with page.expect_download() as download:
            page.locator("#sw-csv a").first.click()
        download.value.save_as(tmp_path / "download.csv")
        assert_same_timeline(tmp_path / "download.csv", monitor_csv)
        # A click on the chart shows the frame at the time clicked. The page's script hooks a chart's click
        # event within half a second of it being drawn: wait for the hook and for the axis to span the
        # recording before clicking, then for the box to change (its empty value may read as 0).
        page.wait_for_function("""() => { const p = document.querySelector('#sw-rec-prob .js-plotly-plot');
            return p && p.dataset.swSeek === '1' && p._fullLayout && p._fullLayout.xaxis.range[1] > 1.5; }""",
                               timeout=10000)
        before = page.locator("#sw-seek input").input_value()
        # Click on the analysed frame 3/4 of the way through the 2 s recording, where Plotly draws it.
        x, y, t = page.evaluate("""() => { const p = document.querySelector('#sw-rec-prob .js-plotly-plot');
            const xa = p._fullLayout.xaxis, ya = p._fullLayout.yaxis, r = p.getBoundingClientRect();
            const t = p.data[0].x[Math.floor(p.data[0].x.length * 3 / 4)];
            return [r.left + xa._offset + xa.l2p(t), r.top + ya._offset + ya._length / 2, t]; }""")
        page.mouse.click(x, y)
        page.wait_for_function("(before) => document.querySelector('#sw-seek input').value !== before", arg=before,
                               timeout=10000)
        clicked = float(page.locator("#sw-seek input").input_value())
        assert 0.5 < clicked < 2.0 and clicked == pytest.approx(t)
        page.get_by_text(f"frame at {clicked:.1f} s").wait_for(timeout=15000)
        page.screenshot(path=str(SHOTS / "recorded_seek.png"), full_page=True)
        browser.close()


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_operator_marks_normal_acknowledges_and_mutes_with_the_keyboard(server):
    """A new feed (the demo scene over 45 s: clean, then smoke from 4.5 s): mark its first seconds as
    normal, see the smoke alarm flash with its ongoing event and thumbnail, acknowledge it with the A
    key, show where it is with H, mute it with M, and have a reference taken in the smoke refused."""
    pw = pytest.importorskip("playwright.sync_api")
    from gradio_client import Client
    SHOTS.mkdir(parents=True, exist_ok=True)
    feed = "synthetic:90"
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(server)
        page.get_by_text("ScopeWatch — surgical video quality monitor").wait_for(timeout=30000)
        page.locator("#sw-source textarea, #sw-source input").first.fill(feed)
        page.get_by_role("button", name="Start").click()
        page.wait_for_selector(f".sw-tile.sw-selected[data-uri='{feed}']", timeout=20000)
        try:
            page.locator("body").click(position={"x": 5, "y": 5})  # the keys act outside text boxes
            page.keyboard.press("n")
            page.get_by_text("alarms now relative to the reference", exact=False).first.wait_for(timeout=20000)
            # The state panel follows the toast on its next refresh (it said "taking" until then).
            page.wait_for_function("(s => s.includes('taken') && s.includes('by dashboard'))"
                                   "(document.querySelector('#sw-reference-state').innerText)", timeout=20000)
            # The smoke rises: its badge flashes while nobody has acknowledged it ...
            page.wait_for_selector(".sw-badge.sw-flash[data-task='smoke']", timeout=30000)
            # ... and its episode is listed, ongoing, within 2 s (issue 22 item 5)
            page.wait_for_function("document.querySelector('#sw-events').innerText.includes('ongoing')", timeout=2000)
            page.keyboard.press("a")
            # Read in one rendering: a later one may flash again, for a new episode after this one ended.
            page.wait_for_function("document.querySelector(\".sw-badge.sw-acked[data-task='smoke']\") && "
                                   "!document.querySelector(\".sw-badge.sw-flash[data-task='smoke']\")", timeout=10000)
            page.wait_for_function("document.querySelector('#sw-events').innerText.includes('acknowledged by dashboard')",
                                   timeout=20000)
            page.wait_for_function("[...document.querySelectorAll('#sw-thumbnails img')].some(i => i.complete && i.naturalWidth > 0)",
                                   timeout=10000)
            page.locator("#sw-thumbnails img").first.scroll_into_view_if_needed()
            page.locator("#sw-thumbnails").screenshot(path=str(SHOTS / "operator_thumbnail.png"))
            page.keyboard.press("h")
            assert page.locator("#sw-heat input[type=checkbox]").is_checked()
            time.sleep(1.5)  # a refresh or two with the overlay
            page.screenshot(path=str(SHOTS / "operator.png"), full_page=True)
            # A reference taken in the smoke is refused, with a toast; the feed keeps running.
            page.keyboard.press("n")
            page.get_by_text("reference refused", exact=False).first.wait_for(timeout=20000)
            # The state panel follows on the next refresh (a refusal returns no outputs, only the toast).
            page.wait_for_function("!document.querySelector('#sw-reference-state').innerText.includes('taking')",
                                   timeout=20000)
            page.screenshot(path=str(SHOTS / "operator_refused.png"), full_page=True)
            assert "taken" in page.inner_text("#sw-reference-state")
            # Muting smoke for 10 minutes (the default) stops its badge flashing and says until when.
            page.get_by_label("Distortion to mute").click()
            page.get_by_role("option", name="Surgical smoke").click()
            page.locator("body").click(position={"x": 5, "y": 5})
            page.keyboard.press("m")
            page.wait_for_selector(".sw-badge.sw-muted[data-task='smoke']", timeout=10000)
            assert "muted until" in page.inner_text(".sw-badge.sw-muted[data-task='smoke']")
        except Exception:
            page.screenshot(path=str(SHOTS / "operator_failed.png"), full_page=True)
            raise
        finally:
            Client(server, verbose=False).predict(feed, api_name="/stop")
            browser.close()


def test_heat_overlay_and_reference_clearing_over_http(server):
    """While an alarm is up, the preview with its heat overlay is tinted red where the alarm is;
    a cleared reference is gone from the feed's state."""
    import numpy as np
    from gradio_client import Client
    from PIL import Image
    client = Client(server, verbose=False)
    feed = "synthetic:40"

    def redness(path):
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(float)
        return float((rgb[..., 0] - rgb[..., 1]).mean())

    client.predict(feed, api_name="/start")
    try:
        assert "reference" in client.predict(feed, 2, False, api_name="/mark_normal")
        end, shown = time.time() + 40, None
        while time.time() < end and shown is None:
            plain = client.predict(feed, "1 min", False, api_name="/live_update")
            if "data-task='smoke'" in plain[1] and "ongoing" in str(plain[4]):  # up, and its episode open
                shown = plain, client.predict(feed, "1 min", True, api_name="/live_update")
            time.sleep(0.5)
        assert shown is not None, "the smoke alarm never came up"
        plain, heat = shown
        assert redness(heat[0]) > redness(plain[0]) + 5  # the overlay tints where the smoke is
        assert "no reference" in client.predict(feed, api_name="/clear_reference")
    finally:
        client.predict(feed, api_name="/stop")


def test_settings_switch_weights_live_and_refuse_others(server, media):
    from gradio_client import Client
    client = Client(server, verbose=False)
    client.predict("synthetic:60", api_name="/start")
    from model.factory import DEFAULT_MODEL, weights_path
    shipped = str(weights_path(DEFAULT_MODEL).resolve())
    thresholds = [0.5] * 5

    def apply(weights):
        return client.predict(*thresholds, 5, 1.0, weights, api_name="/apply_settings")

    def model_in_badges():
        return client.predict("synthetic:60", "1 min", False, api_name="/live_update")[1]

    def wait_for_model(name):
        end = time.time() + 10
        while name not in model_in_badges() and time.time() < end:
            time.sleep(0.5)
        return model_in_badges()

    try:
        with pytest.raises(Exception, match="refused|not in the list of choices"):
            apply("/etc/passwd")
        with pytest.raises(Exception, match="not noise, smoke"):
            apply(str((media / "two_tasks.pt").resolve()))
        # Random bytes and a pickle that would run a command are refused as weights, and nothing runs.
        Path("/tmp/scopewatch-pwned").unlink(missing_ok=True)
        with pytest.raises(Exception, match="not a ScopeWatch checkpoint"):
            apply(str((media / "random.pt").resolve()))
        with pytest.raises(Exception, match="it holds Python objects, which are never loaded"):
            apply(str((media / "malicious.pt").resolve()))
        assert not Path("/tmp/scopewatch-pwned").exists()
        assert "applied" in apply(str((media / "tiny.pt").resolve()))
        assert "scopewatch_lap5_small" in wait_for_model("scopewatch_lap5_small")
        thresholds[:] = [0.5] * 5
        client.predict(*thresholds, 2, 1.0, str((media / "tiny.pt").resolve()), api_name="/apply_settings")
        def fps():
            return float(model_in_badges().split(" fps")[0].split(">")[-1])

        end = time.time() + 20  # the running feed now keeps 2 frames per second (the rate is over the last 5 s)
        while fps() >= 5 and time.time() < end:
            time.sleep(1)
        assert fps() < 5
    finally:
        apply(shipped)
    assert "scopewatch_lap5_small" not in wait_for_model("scopewatch_lap5<")


def test_frame_at_seeks_to_the_frame_shown_at_a_time(tmp_path):
    import av
    import numpy as np
    from apps.dashboard.files import frame_at
    path = write_video(tmp_path / "seek.mp4", n=60, options={"preset": "ultrafast", "g": "10"})
    with av.open(str(path)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    for t in (0.0, 0.52, 1.0, 2.0):
        got = frame_at(path, t)
        i = int(round(t * 25))
        assert np.array_equal(got, decoded[i]), t


def test_the_recorded_chooser_lists_recordings_not_their_outputs(tmp_path):
    """Issue 22 item 8: the CSV and events files beside a recording were offered, then refused."""
    from apps.dashboard.files import allowed_files
    write_video(tmp_path / "case.mp4", n=5)
    r = subprocess.run([sys.executable, "-m", "apps.cli", "analyze", str(tmp_path / "case.mp4"), "-q"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and (tmp_path / "case.mp4.scopewatch.csv").exists()
    (tmp_path / "Other Case.MKV").write_bytes((tmp_path / "case.mp4").read_bytes())
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub.mp4").mkdir()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) != allowed_files(tmp_path)
    assert allowed_files(tmp_path) == ["Other Case.MKV", "case.mp4"]
    assert allowed_files(tmp_path / "missing") == [] and allowed_files(None) == []


@pytest.mark.parametrize("smoke, quality, expected", [(0.95, 90.0, "sw-bad"), (0.05, 40.0, "sw-bad"), (0.05, 90.0, "sw-ok")])
def test_quality_badge_and_tile_share_one_colour_rule(weights, smoke, quality, expected):
    """Issue 22 item 7: during smoke at good quality the quality badge was green and the tile red."""
    from apps.dashboard.widgets import badges_html, tiles_html
    from model.predict import load_predictor
    from monitor.config import ScopeWatchConfig
    from monitor.records import FrameResult
    from monitor.session import Session
    from monitor.sources import ArraySource, SourceInfo
    predictor = load_predictor(weights)
    session = Session(ArraySource([], SourceInfo(320, 180, 25.0)), predictor, ScopeWatchConfig())
    probabilities = {t: (smoke if t == "smoke" else 0.05) for t in predictor.tasks}
    session.monitor.metrics.last_result = FrameResult("generated", 1, 1, 0.04, time.time(), probabilities,
                                                      {t: 0 for t in predictor.tasks}, quality)
    badge = badges_html(session).split("id='sw-quality'")[0].rsplit("<span class='sw-badge ", 1)[1]
    tile = tiles_html({"generated": session}, "generated").split("<div class='sw-tile ")[1]
    assert badge.startswith(expected) and tile.startswith(expected)


def test_probability_chart_labels_its_thresholds_and_keeps_the_legend_off_the_axis(weights):
    from apps.dashboard.charts import probability_figure
    from model.decision import Decision
    from model.tasks import DEFAULT_TASKS
    decision = Decision()
    fig = probability_figure([], DEFAULT_TASKS, decision)
    assert [a.text for a in fig.layout.annotations] == ["alarm 0.50"]
    decision.set_threshold("smoke", 0.3)
    labels = sorted(a.text for a in probability_figure([], DEFAULT_TASKS, decision).layout.annotations)
    assert labels[0] == "alarm 0.30 (Surgical smoke)" and labels[1].startswith("alarm 0.50 (Noise")
    assert fig.layout.legend.y >= 1.0 and fig.layout.legend.yanchor == "bottom"  # above the plot, not on the axis


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_live_chart_legend_and_threshold_label_in_a_real_browser(server):
    """Issue 22 item 7 as drawn: the legend's box clears the 'time (s)' title and the threshold line
    carries its label (screenshot out/screenshots/chart.png)."""
    pw = pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(server)
        page.wait_for_function("""() => { const p = document.querySelector('.js-plotly-plot');
            return p && p.data && p.data[0] && p.data[0].x.length > 2 && p.querySelector('.annotation-text'); }""",
                               timeout=30000)
        boxes = page.evaluate("""() => { const p = document.querySelector('.js-plotly-plot');
            const box = (s) => { const r = p.querySelector(s).getBoundingClientRect();
                                 return [r.left, r.top, r.right, r.bottom]; };
            const r = p.getBoundingClientRect();
            return {legend: box('.legend'), xtitle: box('.g-xtitle'), plot: box('.cartesianlayer .bg, .bglayer .bg'),
                    label: p.querySelector('.annotation-text').textContent,
                    chart: {x: r.left, y: r.top, width: r.width, height: r.height + 40}}; }""")
        # Clipped from the page: the chart's element is replaced at every refresh.
        page.screenshot(path=str(SHOTS / "chart.png"), clip=boxes["chart"])
        browser.close()
    legend, xtitle, plot = boxes["legend"], boxes["xtitle"], boxes["plot"]
    overlap = min(legend[2], xtitle[2]) > max(legend[0], xtitle[0]) and min(legend[3], xtitle[3]) > max(legend[1], xtitle[1])
    assert not overlap and legend[3] <= plot[1] + 1  # the legend sits above the plotting area
    assert boxes["label"] == "alarm 0.50"


def test_file_routes_serve_nothing_outside_the_dashboards_own_outputs(server, media):
    """Issue 21: Gradio's file routes probed with '..', absolute paths, a symlink in the allowed
    folder and URL-encoded variants, on the real server: 403 or 404 for each, no byte of the target."""
    import http.client
    from urllib.parse import urlparse
    secret = media / "secret.txt"
    secret.write_text("TOP-SECRET-PATIENT-LIST")
    (media / "link.mp4").symlink_to("/etc/passwd")
    targets = ["/etc/passwd", str(secret), str(media / "link.mp4"), str(ROOT / "pyproject.toml"),
               str(media / "tiny.pt")]
    paths = []
    for t in targets:
        rel = "../" * 12 + t.lstrip("/")
        paths += [f"file={t}", f"file={rel}", f"file={t.replace('/', '%2F')}", f"file={rel.replace('.', '%2e')}",
                  f"file=%2e%2e%2f%2e%2e%2f{t.lstrip('/')}"]
    host = urlparse(server)
    leaks, statuses = [], []
    for prefix in ("/gradio_api/", "/", "/gradio_api/file/../"):
        for p in paths:
            conn = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
            conn.request("GET", prefix + p)
            r = conn.getresponse()
            body = r.read()
            statuses.append(r.status)
            if r.status == 200 and (b"root:" in body or b"TOP-SECRET" in body or b"[project]" in body
                                    or body[:2] == b"PK"):
                leaks.append(f"{prefix}{p} -> {r.status}")
            conn.close()
    print(f"\n{len(statuses)} file-route probes: statuses {sorted(set(statuses))}, {len(leaks)} leaks")
    assert not leaks, leaks
    assert set(statuses) <= {400, 403, 404, 405}, sorted(set(statuses))


def test_read_only_wall_screen_has_feeds_and_alarms_and_no_controls(tmp_path):
    """--read-only (issue 21): the Live tab's feed, badges, charts and events, refreshed as usual;
    no button, tab or API endpoint that starts, stops, acknowledges, mutes or analyses."""
    import json
    from gradio_client import Client
    proc, url = serve("synthetic:60", "--read-only")
    try:
        with urllib.request.urlopen(url + "config") as r:
            cfg = json.loads(r.read())
        labels = {c.get("props", {}).get("label") or c.get("props", {}).get("value") for c in cfg["components"]}
        for control in ("Start", "Stop", "Acknowledge alarms [A]", "Mute [M]", "Mark as normal [N]", "Clear reference",
                        "Analyse", "Recorded", "Settings"):
            assert control not in labels, control
        names = {d.get("api_name") for d in cfg["dependencies"]}
        assert "live_update" in names
        assert not names & {"start", "stop", "acknowledge", "mute", "mark_normal", "clear_reference", "analyse",
                            "apply_settings"}, names
        client = Client(url, verbose=False)
        assert client.predict("synthetic:60", "all", False, api_name="/live_update")  # the wall screen refreshes
    finally:
        proc.terminate()
        proc.wait(10)
    r = run_cli("dashboard", "--read-only", "--port", str(free_port()))
    assert r.returncode == 2 and "name at least one SOURCE" in r.stderr
