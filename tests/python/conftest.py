from __future__ import annotations

import pytest

from sigma_stack.stack import Stack

#: A test-only registry entry whose Dataform table has no dependents in the sample graph.
PRODUCTOS = {
    "pattern": "data/{yyyymmdd}/{entity}.gz",
    "destination": {"table": "{project}.raw.productos", "write_disposition": "WRITE_TRUNCATE"},
    "schema": [{"name": "producto_id", "type": "STRING", "mode": "REQUIRED"}],
    "validations": [{"check": "row_count", "min": 1}],
}


@pytest.fixture(scope="session")
def stack():
    """One local stack for the whole session: starting it takes about a second."""
    with Stack(extra_pipelines={"productos": PRODUCTOS}) as running:
        yield running


@pytest.fixture(autouse=True)
def default_dataflow_jobs(request):
    """Tests that script the fake Dataflow's jobs leave it as they found it."""
    yield
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").fakes_api.reset_jobs()
