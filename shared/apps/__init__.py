"""The applications on top of the oracle: the ``rosetta`` CLI, the demo, the parity command and the frameworks' shared command line. The oracle modules in ``shared`` never import these."""
