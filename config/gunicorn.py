"""gunicorn settings for Footprint's web tier: ``gunicorn config.wsgi --config config/gunicorn.py``.

``reuse_port``: each worker process listens on a socket of its own (``SO_REUSEPORT``), and the
kernel spreads new connections over them. With one shared socket, whichever worker is awake
first accepts: a few keep-alive clients (SDKs on servers, a proxy's small upstream pool) then
often all land on one worker, so one process on one core serves everything while the others
idle (splits of 16/0 were measured with 16 connections on 2 workers).
"""

reuse_port = True
