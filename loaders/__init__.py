"""Reading the configuration files under config/ into the core's types.

The core (dunning/) parses and validates data it is given; finding, reading
and merging the TOML files is I/O, so it lives here, one layer up.
"""
