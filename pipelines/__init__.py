"""Batch orchestration on Ray: suite (YAML) -> tasks -> actors -> results store (a run folder).

`pipelines` calls `dipir`; `dipir` knows nothing of it. Ray is imported only inside `worker` and
`runner`, so planning and the store can be used (and tested) without it.
"""
