"""Code both the server and the worker import, and that imports neither of them.

Three packages, one direction: `server/` and `worker/` may import `common/`; `common/`
imports only the standard library, third-party packages and the generated `kiln.*` code.
"""
