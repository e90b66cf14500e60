"""``maskwatch serve``: watch many cameras, raise one event per person, keep the history.

Needs the ``serve`` extra (``pip install "maskwatch[serve]"``). The runtime never imports this package.
"""
