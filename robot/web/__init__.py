"""The car's control web app: live video, driving, status and drive review.

``create_app(config, loop)`` builds the Flask app around a running
``DriveLoop``; ``serve(app, host, port)`` runs it under waitress.
"""

from robot.web.app import create_app, make_server, serve, shutdown

__all__ = ["create_app", "make_server", "serve", "shutdown"]
