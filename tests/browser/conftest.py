"""Browser tests: JupyterLab on 127.0.0.1 driven by headless Chromium through Playwright."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives a real browser; skipped without chromium and playwright"
    )
