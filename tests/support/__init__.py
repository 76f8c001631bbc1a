"""Helpers shared by test modules: the one place a test imports from besides the code.

A test module never imports another test module: importing one runs its module-level
fixtures and marks into the importer, and ties the importer to whatever the imported module
happens to keep (tests/unit/test_test_layout.py checks this).
"""

# The organization integration tests act for, the one their rows and jobs belong to. Every
# test gets a database of its own, so one name serves them all.
ORG = "org_service"
