"""Client-side services over the loans' workflows: placing a loan (validation
and start), reporting field visits and running updates. Used by the gateway
and the command line, never by workflows or activities."""
