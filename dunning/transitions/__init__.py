"""What each event does to a loan: pure functions over its `LoanState`.

A transition changes the state it is given and returns the records to write
(`records.Record`: which writer, its fields, a one-line summary). It reads no
clock (the workflow passes `records.Moment`, its reading of `workflow.now()`)
and does no I/O, so the workflow replays it exactly and the tests drive it
without Temporal. One module per concern:

- `records`   the record and moment types, the audit decision, arrangement events
- `payments`  a repayment: charges first, then fees, interest, principal
- `reversals` a payment reversed: its allocation owed again, the returned-payment
              fee; a loan closed `repaid` reopened from its records (issue 18, item 3)
- `holds`     disputes, operator pauses, complaints
- `contacts`  a contact sent, skipped or postponed; opt-outs, pay-link requests,
              providers' outcomes
- `plans`     installment plans and promises to pay: made, paid, kept, broken
- `settlements` settlements for less than the balance: proposed, approved or
              refused, paid (the rest written off) or missed (issue 18, item 4)
- `visits`    field visits assigned and reported
- `legal`     the legal case and its outcomes
- `legal_status` a bankruptcy, a death, a cease request, a hardship: set, ended,
              cleared; their tasks; a deceased borrower's estate_outcome (issue 18, item 1)
- `limitation` the statute of limitations: set at the start, restarted by a payment,
              the debt turning time-barred (issue 18, item 2)
- `stages`    a loan starting, entering a stage, reported to the bureau, ending

(The workflow used to hold all of this; together it is over 500 lines, so it
is split by concern rather than kept in one `transitions.py`.)
"""
