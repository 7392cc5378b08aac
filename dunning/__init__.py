"""The pure core of the dunning service: no Temporal, no I/O, no clock.

Everything here is a plain function of its inputs, so the workflow can replay it
deterministically and tests can run it over many cases quickly.
"""
