"""`python -m kiln_cli serve` runs what the `kiln` script runs."""

from kiln_cli.main import main

main()
