"""Pretext Studio: `python app.py [--host H] [--port P] [--home DIR]`.

Builds the engine facade over the home folder (--home, else $PRETEXT_HOME, else ./.pretext),
marks jobs whose worker died as interrupted, starts the job manager, and serves the dashboard.
Without --host/--port, Gradio's GRADIO_SERVER_NAME / GRADIO_SERVER_PORT apply (a Hugging Face
Space sets them); otherwise 127.0.0.1:7860.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=None,
                        help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1; "
                             "0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=None,
                        help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--home", default=None,
                        help="home folder for the job database and runs "
                             "(default: $PRETEXT_HOME or ./.pretext)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own startup probes
    from engine.api import Studio
    from webapp.app import build_app, launch_options

    studio = Studio(args.home)
    lost = studio.recover()
    if lost:
        logging.info("jobs %s were running when the studio stopped: now interrupted", lost)
    studio.start_manager()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # Gradio's launch() closes its server on this

    signal.signal(signal.SIGTERM, on_term)
    try:
        demo = build_app(studio)
        demo.queue(default_concurrency_limit=4)
        demo.launch(server_name=args.host, server_port=args.port, **launch_options())
    finally:
        studio.shutdown()


if __name__ == "__main__":
    sys.exit(main())
