"""One router per concern; gateway/app.py assembles them in this order:
loans, payments, twilio (provider callbacks and the call's keypad), sendgrid,
visits, pay_page."""
