"""The `kiln` command: the one composition root.

The only package that imports both `server` and `worker`: `kiln up` wires a server and
an embedded worker pool into one process, each with settings of its own read from the
same environment.
"""
