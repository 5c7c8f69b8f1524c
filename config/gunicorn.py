"""gunicorn settings of the web tier: ``gunicorn -c config/gunicorn.py config.wsgi …``.

Keep-alive connections are recycled. gunicorn's workers share one listening socket and a
connection stays with the worker that accepted it, so a few long-lived clients (a load
balancer's upstream pool, a server-side SDK, a load generator) can all land on one worker and
leave the others idle: 16 connections were seen split 16/0 between two workers. After
``FOOTPRINT_KEEPALIVE_REQUESTS`` requests (nginx's ``keepalive_requests`` idea) a connection's
answer says ``Connection: close``; the client opens a new one, and the worker with the least to
do is the first to accept it. Clients reconnect without an error (HTTP/1.1 allows it), and one
reconnect per few hundred requests costs next to nothing on a LAN. 0 turns it off.
"""

import os

KEEPALIVE_REQUESTS = int(os.environ.get("FOOTPRINT_KEEPALIVE_REQUESTS", "100"))


def pre_request(worker, req):
    if KEEPALIVE_REQUESTS and req.req_number % KEEPALIVE_REQUESTS == 0:
        req.must_close = True
