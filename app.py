"""Pretext Studio: `python app.py [--host H] [--port P] [--home DIR] [--auth USER:PASS]
[--viewer] [--open]`.

Builds the engine facade over the home folder (--home, else $PRETEXT_HOME, else /data/pretext
on a Space with persistent storage, else ./.pretext), logs what hardware it found, marks jobs
whose worker died as interrupted, starts the job manager, and serves the dashboard.
Without --host/--port, Gradio's GRADIO_SERVER_NAME / GRADIO_SERVER_PORT apply (a Hugging Face
Space sets them); otherwise 127.0.0.1:7860.

Who may change things (webapp/access.py): on loopback, the person at the keyboard; with --auth,
everyone who signs in to Gradio's login; on a Space or any other host, visitors are viewers until
the owner signs in (Hugging Face OAuth on a Space, else $PRETEXT_OWNER_KEY). --viewer makes
everyone a viewer; --open gives a public host to everyone. Paths typed into the page are read
only inside $PRETEXT_DATA_ROOTS. The first log line names the mode.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--host",
        default=None,
        help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1; "
        "0.0.0.0 for every interface)",
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)"
    )
    parser.add_argument(
        "--home",
        default=None,
        help="home folder for the job database and runs (default: $PRETEXT_HOME, else "
        "/data/pretext on a Space with persistent storage, else ./.pretext)",
    )
    parser.add_argument(
        "--auth",
        default=None,
        metavar="USER:PASS",
        help="put Gradio's login in front of the whole app (default: "
        "$PRETEXT_AUTH); every signed-in user owns the studio",
    )
    parser.add_argument(
        "--viewer",
        action="store_true",
        help="viewer mode for everyone: look at runs, change nothing (also $PRETEXT_VIEWER=1)",
    )
    parser.add_argument(
        "--open",
        dest="open_",
        action="store_true",
        help="on a public host, let every visitor start, stop and add data "
        "(knowingly: anyone can fill the disk)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own startup probes
    import os

    from gradio.utils import get_upload_folder

    from engine.access import ServerPaths
    from engine.api import Studio
    from engine.hardware import describe
    from engine.home import space_note
    from engine.hub import hub_reachable
    from webapp.access import AUTH_ENV, Access, parse_auth
    from webapp.app import build_app, launch_options

    try:
        auth = parse_auth(args.auth or os.environ.get(AUTH_ENV))
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    access = Access.resolve(args.host, auth, viewer=args.viewer, open_=args.open_)
    # Uploads land in Gradio's upload folder: readable, never listed as a data folder.
    try:
        paths = ServerPaths.from_env(hidden=[get_upload_folder()])
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    options = launch_options()  # a bad $PRETEXT_MAX_UPLOAD_MB stops here, before any work
    logging.info("Pretext Studio: %s; %s", access.describe(), paths.describe())
    studio = Studio(args.home, paths=paths)
    logging.info("hardware: %s", describe(studio.hardware()))
    logging.info("home: %s%s", studio.home.root, space_note(studio.home.root))
    # Whether the Hub answers, asked once in the background: a fresh studio's lenses then
    # open on public Hub models, and nothing waits for the answer (engine/hub.py).
    threading.Thread(target=hub_reachable, daemon=True, name="hub-check").start()
    lost = studio.recover()
    if lost:
        logging.info("jobs %s were running when the studio stopped: now interrupted", lost)
    studio.start_manager()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # Gradio's launch() closes its server on this

    signal.signal(signal.SIGTERM, on_term)
    try:
        demo = build_app(studio, access)
        demo.queue(default_concurrency_limit=4)
        demo.launch(server_name=args.host, server_port=args.port, auth=auth, **options)
    finally:
        studio.shutdown()


if __name__ == "__main__":
    sys.exit(main())
