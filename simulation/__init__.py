"""Portfolio simulation: synthetic overdue loans with borrower behaviours, run
through a policy on the time-skipping test server, and the KPIs of the result
(reports/kpi.py). Run two policies on the same portfolio to compare them
(champion/challenger). See docs/simulation.md.

    python -m simulation --loans 200 --policy default --challenger challenger_early_calls
"""
