"""TensorBoard and JupyterLab for cade's users, on the login node or as batch jobs.

`run` is the server process itself (in the foreground on the login node, or the process a
server job runs on its compute node): it starts the server in-process on a private address
with a secret in its URL and records where it listens; `jobs` submits, lists and stops the
server jobs through the backends. Neither starts a subprocess.

Nobody else gets in: servers listen on the loopback address unless asked to bind the node's
own address (JupyterLab only: it always has a token); TensorBoard, which has no login, is
served under a secret path prefix, so a request without it gets 404. The record with the
URL (`server.json`) is readable by its owner only.
"""
