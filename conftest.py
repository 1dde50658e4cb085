"""Session settings for every test, notebooks included.

Run folders written while testing go to a temporary folder, not to the project's runs/.
"""

import os
import tempfile


def pytest_configure(config):
    if "SCLIB_RUNS_DIR" not in os.environ:
        os.environ["SCLIB_RUNS_DIR"] = tempfile.mkdtemp(prefix="sclib-test-runs-")
