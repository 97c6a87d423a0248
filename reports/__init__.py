"""The report stage: reads a results store (a run folder) and writes tables, figures and the 2AFC
study kit. Imports only numpy, pandas, pyarrow, matplotlib, PIL, yaml and OpenEXR, never torch,
Mitsuba or Ray, so it runs on a laptop."""
