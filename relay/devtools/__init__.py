"""Tools for development and tests, never on a production path: `relay dev` (`dev`), the demo
receiver (`demo_receiver`) and the vendor simulators (`simulators`).

May import anything below the views (it wires a whole stack together); nothing imports it but
the CLI and the tests.
"""
