"""The notebooks as a user meets them: JupyterLab in a real browser (Playwright driving Chromium).

One JupyterLab serves a copy of the project (``sdml/`` and ``notebooks/`` in a temporary folder,
imported by the kernels through ``PYTHONPATH``) on 127.0.0.1 with a token. Notebook 02 is run
with "Run All" and its committed parameters (the machine's default profile and data, as
`make reproduce` resolves them); its preview is then driven like a user would, and after every
action the picture in the page is decoded and compared with the one the library renders for the
state the controls show. Notebook 05 is opened, with no edits, after the headless runner made a
run of the machine's default profile, and must find that run. Needs Debian's ``chromium`` (Playwright's own browser download
is not used); in CI (``CI=true``) a missing browser is a failure, elsewhere a skip.
"""
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("SDML_CHROMIUM", "/usr/bin/chromium"))
HOW = ("needs Playwright (pip install playwright) and Debian's chromium (apt-get install chromium); "
       "set SDML_CHROMIUM to another Chromium binary")


def _require_browser():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as err:
        missing = f"playwright is not installed ({err}); {HOW}"
    else:
        missing = None if CHROMIUM.is_file() else f"no Chromium at {CHROMIUM}; {HOW}"
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"the browser test must run in CI: {missing}")
    if missing:
        pytest.skip(missing)


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project: what a fresh clone holds of the library, the notebooks and the
    sweep they read."""
    _require_browser()
    root = tmp_path_factory.mktemp("project")
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
    for folder in ("sdml", "notebooks"):
        shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    (root / "benchmarks").mkdir()  # notebook 05 draws the committed regime sweep
    shutil.copy2(REPO / "benchmarks" / "regime_sweep.json", root / "benchmarks")
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(project, tmp_path_factory):
    """JupyterLab on the project copy: (base url, token, path of the server's log)."""
    home = tmp_path_factory.mktemp("jupyter")
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no news prompt
    notebook = home / "settings" / "@jupyterlab" / "notebook-extension"
    notebook.mkdir(parents=True)
    (notebook / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))  # every cell in the page, in view or not
    # the token is a secret, not a test input (tests/test_no_chance.py exempts it)
    port, token = _free_port(), base64.b32encode(os.urandom(15)).decode().lower()
    env = {**os.environ, "PYTHONPATH": str(project), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "SDML_NLTK_DATA": str(home / "nltk")}
    log_path = home / "server.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={project}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    with open(log_path, "w") as log:
        server = subprocess.Popen(cmd, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        # Wall clock in this file: only upper bounds on waits, polled every 0.2-0.5 s (server up
        # within 90 s, a kernel idle within 90 s, Run All within 240 s, a picture settled within
        # 30 s). Nothing asserts that something is fast; a false failure needs a step to take
        # 10-100 times its usual time. _settle's "still for 1.5 s" is the one judgement by time:
        # a picture that changes again after 1.5 s still is compared as it then is.
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start:\n{log_path.read_text()}")
                time.sleep(0.5)
        yield url, token, log_path
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


class Page:
    """A JupyterLab page with the browser's console errors collected."""

    def __init__(self, browser, lab, notebook: str):
        url, token, self.log_path = lab
        self.page = browser.new_page(viewport={"width": 1500, "height": 1000})
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # a workspace of its own, reset: only this notebook's tab, whatever an earlier page left
        self.page.goto(f"{url}/lab/workspaces/{notebook}/tree/notebooks/{notebook}.ipynb?reset&token={token}")
        self.page.locator(".jp-StatusBar-Widget", has_text="Idle").first.wait_for(timeout=90_000)  # kernel up
        self.page.locator(".jp-Notebook .jp-CodeCell").first.wait_for(timeout=30_000)

    def run_all(self, timeout_s: float = 240) -> None:
        """Run > Run All Cells, then wait until every code cell has an execution count."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        self.page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        self.page.locator(".jp-CodeCell .jp-InputPrompt", has_text="[*]").first.wait_for(timeout=30_000)
        deadline = time.monotonic() + timeout_s
        while True:
            prompts = self.page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
            if prompts and all(p.strip() not in ("[ ]:", "[*]:", "") for p in prompts):
                return
            assert time.monotonic() < deadline, f"Run All did not finish: {prompts}"
            time.sleep(0.5)

    def error_outputs(self) -> list[str]:
        return self.page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'],"
                                 " .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']"
                                 ).all_inner_texts()

    def kernel_tracebacks(self) -> list[str]:
        text = self.log_path.read_text()
        return [line for line in text.splitlines() if "Traceback" in line or "Exception in" in line]


# ----------------------------------------------------------------------------- notebook 02

def _png(page) -> bytes:
    """The preview's picture as the page holds it (the widget's PNG bytes, via its blob URL)."""
    data = page.locator(".widget-image").last.evaluate(
        """async img => { const r = await fetch(img.src); const b = new Uint8Array(await r.arrayBuffer());
                          let s = ''; for (const x of b) s += String.fromCharCode(x); return btoa(s); }""")
    return base64.b64decode(data)


def _settle(page, before: bytes, quiet_s: float = 1.5, timeout_s: float = 30) -> bytes:
    """The picture once it has stopped changing: changed from ``before`` and then still for
    ``quiet_s``, or unchanged for ``quiet_s`` plus a few seconds (an action may leave it as is)."""
    start = last_change = time.monotonic()
    current = _png(page)
    changed = current != before
    while time.monotonic() - start < timeout_s:
        time.sleep(0.2)
        now = _png(page)
        if now != current:
            current, last_change, changed = now, time.monotonic(), True
        quiet = time.monotonic() - last_change
        if (changed and quiet >= quiet_s) or (not changed and quiet >= quiet_s + 4):
            return current
    return current


def _decode(png: bytes) -> np.ndarray:
    import matplotlib.image

    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return matplotlib.image.imread(io.BytesIO(png), format="png")  # (H, W, 4)


def _control(page, label: str):
    return page.locator(".widget-inline-hbox", has=page.locator(".widget-label", has_text=label)).last


def _controls_state(page) -> dict:
    """What the controls show: classes, method and the ratio (its readout, two decimals)."""
    return {"class_a": _control(page, "class A").locator("select").input_value(),
            "class_b": _control(page, "class B").locator("select").input_value(),
            "method": _control(page, "method").locator("select").input_value(),
            "lam": float(_control(page, "ratio lam").locator(".widget-readout").inner_text())}


def make_mirror(project):
    """The library's own preview for the same data (what the picture must look like): the
    notebook's committed parameters, resolved on this machine as the notebook resolves them."""
    from sdml.data.datasets import get_spec
    from sdml.notebooks.params import validate
    from sdml.notebooks.viz import load_notebook_data, superclass_of_arrays
    from sdml.notebooks.viz_ratios import load_soft_similarity
    from sdml.notebooks.widgets import MixingPreview

    params = validate("02_mixing_preview")  # the committed defaults
    arrays = load_notebook_data(params["profile"], params["data"], str(project / "data"), download=False)
    similarity, _ = load_soft_similarity(get_spec(params["data"]).classes)
    preview = MixingPreview(arrays, superclass_of_arrays(arrays), similarity, seed=params["seed"])
    return preview, params["profile"], arrays.fine_names


def _expected(mirror, state: dict) -> np.ndarray:
    for name in ("class_a", "class_b", "method", "lam"):
        getattr(mirror, name).value = state[name]
    mirror.refresh()
    return _decode(bytes(mirror.image.value))


def _image_box(mirror, shape) -> tuple[slice, slice]:
    """Rows and columns of the mixed-image panel (its pixels depend on the drawn samples)."""
    h, w = shape[:2]
    box = mirror.view.ax_img.get_position(original=True)
    return (slice(int((1 - box.y1) * h) - 2, int(np.ceil((1 - box.y0) * h)) + 2),
            slice(int(box.x0 * w) - 2, int(np.ceil(box.x1 * w)) + 2))


def test_notebook_02_run_all_then_the_preview_follows_every_action(browser, lab, project):
    nb = Page(browser, lab, "02_mixing_preview")
    nb.run_all()
    page = nb.page
    mirror, profile, class_names = make_mirror(project)
    image = page.locator(".widget-image").last
    image.wait_for(timeout=30_000)  # the widgets appear with the committed parameters
    png = _settle(page, b"")
    assert np.array_equal(_decode(png), _expected(mirror, _controls_state(page)))

    # the same folders as the runner: figures under the project root, nothing under notebooks/
    assert (project / "figures" / profile / "figure3_mixed_pairs.png").is_file()
    assert not any((project / "notebooks" / d).exists() for d in ("data", "runs", "figures"))

    def act(what, action, other_images=False):
        nonlocal png
        action()
        new = _settle(page, png)
        state = _controls_state(page)
        shown, expected = _decode(new), _expected(mirror, state)
        if not other_images:
            assert np.array_equal(shown, expected), f"after {what}: the picture is not the library's for {state}"
        else:  # other samples: all but the mixed image's panel is fixed by the state
            assert shown.shape == expected.shape, f"after {what}: picture of size {shown.shape}"
            rows, cols = _image_box(mirror, shown.shape)
            outside = np.ones(shown.shape[:2], bool)
            outside[rows, cols] = False
            assert np.array_equal(shown[outside], expected[outside]), f"after {what}: layout differs for {state}"
            assert not np.array_equal(shown[rows, cols], expected[rows, cols]), f"after {what}: same images"
        png = new
        return state

    slider = _control(page, "ratio lam")
    handle = slider.locator(".noUi-handle")
    box = handle.bounding_box()
    before = _controls_state(page)["lam"]
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 60, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    assert act("dragging the ratio slider", lambda: None)["lam"] > before

    readout = slider.locator(".widget-readout")

    def type_ratio():
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type("0.37")
        page.keyboard.press("Enter")

    assert act("typing a ratio", type_ratio)["lam"] == 0.37
    choose = _control(page, "method").locator("select")
    assert act("choosing a method", lambda: choose.select_option("superclass-choice"))["method"] == "superclass-choice"
    pick = _control(page, "class B").locator("select")
    other = next(c for c in reversed(class_names) if c != _controls_state(page)["class_b"])
    assert act("choosing a class", lambda: pick.select_option(other))["class_b"] == other
    assert act("choosing a method", lambda: choose.select_option("mixup"))["method"] == "mixup"
    ratios = set()
    for _ in range(6):
        ratios.add(act("sample ratio", lambda: page.get_by_role("button", name="sample ratio").click())["lam"])
    assert len(ratios) > 1  # Beta(1, 1) draws, on the slider's 0.01 step
    act("new images", lambda: page.get_by_role("button", name="new images").click(), other_images=True)

    assert nb.error_outputs() == []
    assert nb.kernel_tracebacks() == []
    assert nb.errors == [], f"browser console errors: {nb.errors}"
    page.close()


# ----------------------------------------------------------------------------- notebook 05

def test_notebook_05_in_jupyterlab_finds_the_run_the_runner_made(browser, lab, project):
    """The documented path: the runner trains with the machine's default profile and data (as
    `make reproduce` does), then notebook 05, opened with no edits, finds that run."""
    from sdml.notebooks.params import run_dir, validate

    env = {**os.environ, "PYTHONPATH": str(project), "SDML_NLTK_DATA": str(project / ".nltk")}
    done = subprocess.run([sys.executable, "-m", "sdml.notebooks", "run", "--profile", "auto",
                           "--data", "auto", "--only", "04", "--methods", "none", "--seeds", "0",
                           "-p", "threads=1", "-p", "epochs=1"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    params = validate("04_train_dml", method="none", seed=0)  # the machine's default, resolved
    profile, name = params["profile"], run_dir(params).name
    assert (project / "runs" / profile / name / "predictions.pt").is_file()

    nb = Page(browser, lab, "05_results")
    nb.run_all()
    outputs = "\n".join(nb.page.locator(".jp-OutputArea-output").all_inner_texts())
    assert name in outputs  # the runs table lists the runner's run
    assert (project / "runs" / profile / "results.md").is_file()
    assert not (project / "notebooks" / "runs").exists()
    assert nb.error_outputs() == []
    assert nb.kernel_tracebacks() == []
    assert nb.errors == [], f"browser console errors: {nb.errors}"
    nb.page.close()
