"""flows.settings.one_api_server: one temporary Prefect server for a process and its Dask workers, or none when
PREFECT_API_URL names a server already (the whole path, workers included, is run in test_signals.py)."""

from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.settings import one_api_server


def test_a_configured_server_is_kept_and_no_temporary_one_starts():
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:1/api"}):
        with one_api_server():
            assert PREFECT_API_URL.value() == "http://127.0.0.1:1/api"
        assert PREFECT_API_URL.value() == "http://127.0.0.1:1/api"
    assert not any(server.running for server in SubprocessASGIServer._instances.values())


def test_without_a_server_the_block_points_at_the_temporary_one():
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with one_api_server():
            url = PREFECT_API_URL.value()
            server = SubprocessASGIServer()
            assert server.running and url == server.api_url and url.startswith("http://127.0.0.1:")
        assert PREFECT_API_URL.value() is None
