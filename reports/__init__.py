"""Reports over the service's database: the collections KPIs (`reports.kpi`)
and their chart and HTML page (`reports.chart`). `python starter.py report`
runs them; docs/kpis.md defines every number."""
