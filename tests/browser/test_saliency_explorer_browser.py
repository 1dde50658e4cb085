"""The saliency explorer in a real browser: JupyterLab, headless Chromium, one slider move.

The test writes a small notebook into ``tmp_path`` and starts JupyterLab on 127.0.0.1
with a random free port and a random token. Headless Chromium, driven by Playwright,
opens the notebook and runs all cells. Then the test moves the threshold slider with the
keyboard and checks that the explorer's image changed. A screenshot goes to
``$SCLIB_ARTIFACTS_DIR`` (or ``tmp_path/artifacts``) and its path is printed.

Every browser request that does not go to 127.0.0.1 is aborted and listed in the
failure message, and the server runs with update checks and news turned off.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT_S = 90
KERNEL_RUN_TIMEOUT_MS = 90_000

NOTEBOOK_SOURCE = """\
import torch

from sclib import widgets
from sclib.models import build_model

torch.manual_seed(0)
model = build_model("simple_cnn", weights=None).eval()
rows, columns = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
stripes = [columns // 8 % 2, rows // 8 % 2, (rows + columns) // 8 % 2,
           (rows // 8 + columns // 8) % 2]
colours = torch.tensor([[230, 80, 60], [60, 160, 230], [90, 200, 90], [240, 200, 60]])
pixels = torch.stack([(40 + 200 * pattern) * colour.view(3, 1, 1) // 255
                      for pattern, colour in zip(stripes, colours)]).to(torch.uint8)
explorer = widgets.saliency_explorer(model, pixels, threshold=0.2, interactive=True)
explorer
"""

SERVER_CONFIG = """\
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.LabApp.extension_manager = "readonly"
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _write_notebook(folder: Path) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook.cells.append(nbformat.v4.new_code_cell(NOTEBOOK_SOURCE))
    path = folder / "saliency_explorer.ipynb"
    nbformat.write(notebook, path)
    return path


def _wait_for_server(
    base_url: str, token: str, process: subprocess.Popen, log_path: Path
) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log_tail = log_path.read_text()[-2000:]
            raise RuntimeError(
                f"JupyterLab exited with status {process.returncode} at start-up:\n{log_tail}"
            )
        try:
            with urllib.request.urlopen(f"{base_url}/api/status?token={token}", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise TimeoutError(
        f"JupyterLab start-up timed out: no response on {base_url} within "
        f"{SERVER_START_TIMEOUT_S} s."
    )


def _write_lab_settings(tmp_path: Path) -> tuple[Path, Path]:
    """Write the server configuration and the JupyterLab user settings.

    Returns:
        ``(config_dir, settings_dir)``.
    """
    config_dir = tmp_path / "jupyter_config"
    config_dir.mkdir()
    (config_dir / "jupyter_server_config.py").write_text(SERVER_CONFIG)

    # No question about news, so the screenshot shows the page as the test left it.
    settings_dir = tmp_path / "lab_settings"
    notification_settings = settings_dir / "@jupyterlab" / "apputils-extension"
    notification_settings.mkdir(parents=True)
    (notification_settings / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false"}'
    )
    return config_dir, settings_dir


def _server_command(port: int, token: str, work: Path, tmp_path: Path, settings_dir: Path):
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={work}",
        f"--LabApp.user_settings_dir={settings_dir}",
        f"--LabApp.workspaces_dir={tmp_path / 'lab_workspaces'}",
        "--ServerApp.terminals_enabled=False",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")  # containers often run tests as root
    return command


@pytest.fixture
def jupyter_lab(tmp_path):
    """Start JupyterLab on 127.0.0.1 serving ``tmp_path/work``.

    Yields:
        ``(base_url, token, notebook_path)``.
    """
    work = tmp_path / "work"
    work.mkdir()
    notebook = _write_notebook(work)
    config_dir, settings_dir = _write_lab_settings(tmp_path)
    port, token = _free_port(), secrets.token_hex(16)
    environment = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        # The browser, the server and the kernel share the CPU; one torch thread in the
        # kernel avoids oversubscribing it.
        "OMP_NUM_THREADS": "1",
    }

    log_path = tmp_path / "jupyterlab.log"
    with log_path.open("w") as log:
        # A new session, so the server and its kernels can be stopped as one process group.
        process = subprocess.Popen(
            _server_command(port, token, work, tmp_path, settings_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(base_url, token, process, log_path)
        yield base_url, token, notebook
    finally:
        _stop_server(base_url, token, process)
        print(f"JupyterLab log: {log_path}")


def _stop_server(base_url: str, token: str, process: subprocess.Popen) -> None:
    """Ask the server to shut down with its kernels, then end its process group."""
    request = urllib.request.Request(f"{base_url}/api/shutdown?token={token}", method="POST")
    try:
        urllib.request.urlopen(request, timeout=5).close()
        process.wait(timeout=20)
    except (urllib.error.URLError, ConnectionError, TimeoutError, subprocess.TimeoutExpired):
        pass
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _artifacts_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SCLIB_ARTIFACTS_DIR", tmp_path / "artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _accept_kernel_dialog(page) -> None:
    """Accept the "Select Kernel" dialog (default: Python 3) when JupyterLab shows one."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    dialog_button = page.locator(".jp-Dialog .jp-mod-accept")
    try:
        dialog_button.wait_for(state="visible", timeout=5_000)
    except PlaywrightTimeoutError:
        return
    dialog_button.click()


def _move_threshold_slider(page, url: str) -> tuple[str, bytes, bytes]:
    """Open the notebook, run all cells, press ArrowRight on the threshold slider.

    Returns:
        The slider's readout after the move, and screenshots of the explorer image
        before and after it.
    """
    page.goto(url)
    page.wait_for_selector(".jp-NotebookPanel", timeout=60_000)
    _accept_kernel_dialog(page)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    _accept_kernel_dialog(page)
    image = page.locator("img.widget-image").first
    image.wait_for(state="visible", timeout=KERNEL_RUN_TIMEOUT_MS)
    before_src = image.get_attribute("src")
    before_pixels = image.screenshot()

    slider = page.locator(".widget-slider", has_text="threshold").first
    handle = slider.locator(".noUi-handle").first
    handle.focus()
    for _ in range(4):
        handle.press("ArrowRight")
    readout = slider.locator(".widget-readout").first.inner_text()

    # The kernel redraws once per key press; wait for the caption of the last value.
    page.wait_for_function(
        """([oldSource, text]) => {
            const image = document.querySelector('img.widget-image');
            const caption = document.querySelector('.widget-html-content');
            return image.src !== oldSource && caption.textContent.includes(text);
        }""",
        arg=[before_src, f"Threshold {readout}"],
        timeout=60_000,
    )
    return readout, before_pixels, image.screenshot()

@pytest.fixture
def sync_api():
    """Return ``playwright.sync_api``; skip when Playwright or Chromium is missing."""
    if shutil.which("chromium") is None:
        pytest.skip(f"chromium is not installed ({CHROMIUM}); apt-get install chromium")
    return pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed; pip install playwright"
    )


@pytest.mark.browser
def test_threshold_slider_redraws_explorer(sync_api, jupyter_lab, tmp_path):
    base_url, token, notebook = jupyter_lab
    blocked: list[str] = []

    def local_only(route):
        host = urlparse(route.request.url).hostname
        if host == "127.0.0.1" or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium_profile"),
            executable_path=shutil.which("chromium"),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            context.route("**/*", local_only)
            page = context.new_page()
            readout, before_pixels, after_pixels = _move_threshold_slider(
                page, f"{base_url}/lab/tree/{notebook.name}?token={token}"
            )
        except Exception:
            failure = _artifacts_dir(tmp_path) / "saliency_explorer_failure.png"
            page.screenshot(path=str(failure), full_page=True)
            print(f"screenshot of the failure: {failure}")
            raise
        else:
            screenshot = _artifacts_dir(tmp_path) / "saliency_explorer.png"
            page.screenshot(path=str(screenshot), full_page=True)
            print(f"screenshot: {screenshot}")
        finally:
            context.close()

    assert readout == "0.40"
    assert after_pixels != before_pixels
    assert blocked == [], f"requests to other hosts were blocked: {blocked}"
