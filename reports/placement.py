"""Where the tasks ran: tasks and busy time per Ray node and per actor (one actor per GPU).

Reads the `node` / `actor` columns of the results (absent for runs made before they existed, or
run in-process) and `run.json`'s `nodes` (address, declared GPUs, the GPU ids of each actor).
Busy time is the sum of the tasks' own `seconds`; a node that died mid-run is marked so.
"""

from __future__ import annotations

import pandas as pd

from dipir.errors import DipirError
from pipelines import schema
from reports.store import Store, _missing
from reports.tables import Cell, Table


def _short(node_or_actor) -> str:
    return str(node_or_actor)[:8]


def _text(v) -> str:
    """A run.json value as written there: 2.0 GPUs as 2, a list of GPU ids (ints or strings) joined."""
    if v is None or v == []:
        return "–"
    if isinstance(v, list):
        return ", ".join(_text(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def _nodes(store: Store) -> dict[str, dict]:
    """run.json's nodes by id (pipelines/runner.py _nodes_info writes them); an id that is not a
    string, or actors that are not a list of objects with a string id, are an error naming the field."""
    path = store.run / schema.RUN_INFO
    nodes = {}
    for i, n in enumerate(store.run_info.nodes):
        if not isinstance(n.get("node"), str):
            raise DipirError("must be a string (a Ray node id)", path, f"nodes[{i}].node")
        actors = n.get("actors") or []
        if not isinstance(actors, list) or not all(isinstance(a, dict) and isinstance(a.get("actor"), str)
                                                   for a in actors):
            raise DipirError("must be a list of objects with a string 'actor'", path, f"nodes[{i}].actors")
        nodes[n["node"]] = n
    return nodes


def _node_label(nid: str, info: dict) -> str:
    where = info.get("host") or info.get("ip") or ""
    if info.get("ip") and info.get("host"):
        where = f"{info['host']} ({info['ip']})"
    return f"{_short(nid)} {where}".strip()


def placement_tables(store: Store) -> list[Table]:
    df = store.tasks
    if "node" not in df.columns or df["node"].map(_missing).all():
        return []
    ran = df[~df["node"].map(_missing)].copy()
    ran["busy"] = pd.to_numeric(ran["seconds"], errors="coerce").fillna(0.0)
    nodes = _nodes(store)
    gpus_of_actor = {a["actor"]: a.get("gpus") for n in nodes.values() for a in (n.get("actors") or [])}
    total = ran["busy"].sum() or 1.0

    node_rows = []
    for nid, g in ran.groupby("node", sort=True):
        info = nodes.get(nid, {})
        state = "" if info.get("alive", True) else " (lost during the run)"
        node_rows.append([Cell(_node_label(nid, info) + state), Cell(_text(info.get("gpus"))),
                          Cell(str(g["actor"].nunique())), Cell(str(len(g))), Cell(f"{g['busy'].sum():.1f}"),
                          Cell(f"{100 * g['busy'].sum() / total:.0f} %")])
    actor_rows = []
    for (nid, aid), g in ran.groupby(["node", "actor"], sort=True):
        actor_rows.append([Cell(_short(nid)), Cell(_short(aid)), Cell(_text(gpus_of_actor.get(aid))),
                           Cell(str(len(g))), Cell(f"{g['busy'].sum():.1f}"), Cell(f"{g['busy'].mean():.2f}")])
    note = (f"{len(ran)} of {len(df)} tasks carry the node and actor that ran them; busy time is the sum of "
            "their own seconds (retried attempts cut short by a lost node are not counted).")
    return [Table(key="placement_nodes", title="Tasks per node",
                  columns=["node", "GPUs", "actors", "tasks", "busy s", "share"], rows=node_rows, notes=[note]),
            Table(key="placement_actors", title="Tasks per actor",
                  columns=["node", "actor", "GPU", "tasks", "busy s", "s / task"], rows=actor_rows)]
