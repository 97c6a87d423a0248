"""Joining a running Ray cluster the way Ray's own CLI does, or failing in one line.

Before `ray.init(address=...)` the driver asks the cluster's GCS for its id with one short gRPC
call. That tells apart, within seconds: nothing listening (Ray itself retries for minutes), a
cluster that wants a token we lack or that rejects ours (Ray retries for 20 s, then raises a
bare ConnectionError), and a cluster we may join. A token-authenticated cluster (Ray >= 2.52;
`ray start` turns it on whenever a token exists) is joined with the token found where Ray's
CLI looks for it: `RAY_AUTH_TOKEN`, the file named by `RAY_AUTH_TOKEN_PATH`, `~/.ray/auth_token`.
"""

from __future__ import annotations

import os
import socket

from dipir.errors import DipirError, first_line

PROBE_TIMEOUT_S = 3.0
AUTH_MODE_ENV = "RAY_AUTH_MODE"
_TOKEN_HELP = ("set RAY_AUTH_TOKEN to the cluster's token (print it on the head node with `ray get-auth-token`), "
               "or copy the head's ~/.ray/auth_token to this machine (or point RAY_AUTH_TOKEN_PATH at a copy)")


def _fail(address: str, what: str) -> DipirError:
    return DipirError(what, field=f"--address {address}")


def resolve(address: str) -> str:
    """`auto` -> host:port of the cluster Ray would join (RAY_ADDRESS, else the last `ray start`
    on this machine); host:port is kept as given (checked before Ray is even imported)."""
    if address != "auto":
        _host_port(address)
        return address
    from ray._private.services import canonicalize_bootstrap_address

    try:
        gcs = canonicalize_bootstrap_address("auto")
    except (ConnectionError, ValueError) as err:
        raise _fail(address, f"no running Ray cluster found ({first_line(err)}); start one with `ray start --head` "
                             "or pass its host:port") from None
    if not gcs:
        raise _fail(address, "no running Ray cluster found; start one with `ray start --head` or pass its host:port")
    return gcs


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    try:
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError:
        raise _fail(address, "expected host:port, auto, or ray://host:port") from None


def _tcp_check(address: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return
    except OSError as err:
        reason = err.strerror or type(err).__name__
    raise _fail(address, f"cannot reach a Ray cluster at {host}:{port} ({reason}); is the head node running "
                         "(`ray start --head`) and the port open?")


def probe(gcs: str, token: str | None) -> tuple[str, str]:
    """One GetClusterId call to the GCS: ("ok" | "auth" | "down" | "other", detail)."""
    import grpc
    from ray.core.generated import gcs_service_pb2 as pb
    from ray.core.generated import gcs_service_pb2_grpc as pb_grpc

    metadata = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(gcs) as channel:
        try:
            pb_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(pb.GetClusterIdRequest(), timeout=PROBE_TIMEOUT_S,
                                                                 metadata=metadata)
        except grpc.RpcError as err:
            code = err.code()
            detail = (err.details() or str(code)).splitlines()[0]
            if code == grpc.StatusCode.UNAUTHENTICATED:
                return "auth", detail
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return "down", detail
            return "other", detail
    return "ok", ""


def local_token() -> tuple[str | None, str]:
    """(token, where it came from), found by Ray's own loader in its order of precedence
    (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token); (None, "") when there is none."""
    from ray._raylet import AuthenticationTokenLoader

    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()
    if not loader.has_token(ignore_auth_mode=True):
        return None, ""
    token = loader.get_raw_token(ignore_auth_mode=True)
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return token, "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return token, f"RAY_AUTH_TOKEN_PATH ({os.environ['RAY_AUTH_TOKEN_PATH']})"
    return token, os.path.expanduser("~/.ray/auth_token")


def _enable_token_auth() -> None:
    """Token mode for this process and the processes it starts (what `ray start` does itself)."""
    os.environ[AUTH_MODE_ENV] = "token"
    try:
        from ray._raylet import Config

        Config.initialize("")  # Ray caches its config: let it see the mode before ray.init
    except (ImportError, AttributeError):
        pass


def prepare(address: str) -> str:
    """Check that the cluster at `address` can be joined and set up token auth when it needs it.
    Returns the address to give `ray.init`; raises DipirError (one line) within a few seconds."""
    if address.startswith("ray://"):
        host, port = _host_port(address[len("ray://"):])
        _tcp_check(address, host, port)
        return address
    gcs = resolve(address)
    host, port = _host_port(gcs)
    _tcp_check(address, host, port)  # a refused or unroutable port fails here, at once
    status, detail = probe(gcs, None)
    if status == "ok":
        return gcs  # no authentication on this cluster
    if status == "down":
        raise _fail(address, f"the Ray cluster at {gcs} does not answer ({detail})")
    if status == "auth":
        if os.environ.get(AUTH_MODE_ENV, "").lower() == "disabled":
            raise _fail(address, f"the Ray cluster at {gcs} requires token authentication but "
                                 f"{AUTH_MODE_ENV}=disabled is set: unset it and {_TOKEN_HELP}")
        token, source = local_token()
        if token is None:
            raise _fail(address, f"the Ray cluster at {gcs} requires token authentication and no token was "
                                 f"found on this machine: {_TOKEN_HELP}")
        status, detail = probe(gcs, token)
        if status == "ok":
            _enable_token_auth()
            return gcs
        if status == "auth":
            raise _fail(address, f"the Ray cluster at {gcs} rejected the token from {source} ({detail}): "
                                 f"{_TOKEN_HELP}")
    raise _fail(address, f"{gcs} does not answer like a Ray head node's GCS port ({detail}); "
                         "pass the port `ray start --head` printed (default 6379)")
