"""Reports over the service's database: the collections KPIs (`reports.kpi`,
from the facts `reports.loan_facts` reads), written as JSON, tables and text
(`reports.kpi_render`) and as a chart and HTML page (`reports.chart`).
`python starter.py report` runs them; docs/kpis.md defines every number."""
