"""The paper's side: its published tables (tables.py) and the report that sets a sweep beside them (report.py)."""
