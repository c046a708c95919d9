"""``python -m search_service``: the service under uvicorn with bounded waits and sizes.

    python -m search_service --host 0.0.0.0 --port 8000

Flags override HOST and PORT; the bounds (HEADER_TIMEOUT_S, TIMEOUT_KEEP_ALIVE_S,
LIMIT_CONCURRENCY, MAX_HEADER_BYTES, GRACEFUL_SHUTDOWN_S) come from the environment, see
``search_service.server``. One process: the embedded index has one owner, and the model is loaded
once per process; run several behind a load balancer with a Qdrant server (QDRANT_URL) to scale.
"""

from __future__ import annotations

import argparse

import uvicorn

from search_service.server import server_config, server_settings_from_env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m search_service", description="The search service under uvicorn with bounded waits and sizes.")
    parser.add_argument("--host", help="interface to listen on (HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (PORT, default 8000)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    settings = server_settings_from_env(host=args.host, port=args.port)
    # The app is imported by name, after the settings parsed: a bad setting stops here with its name.
    uvicorn.Server(server_config("search_service.app:app", settings, log_level=args.log_level)).run()


if __name__ == "__main__":
    main()
