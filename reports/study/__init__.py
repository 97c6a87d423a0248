"""The 2AFC human study kit: build pairs from a run (`manifest`), serve them (`app`, answers in
SQLite via `db`), and analyse the answers (`analyze`)."""
