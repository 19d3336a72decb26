"""The theory checks TC1-TC6 of ``reference/paper.md`` §3.3, each as functions that return ``CheckRow``s.

Each module has a ``FULL`` configuration (run by ``experiments/theory``) and a ``FAST`` one (run by
``tests/theory``), and its parts take the subject under test as an argument, so the tests can hand in a broken
subject and show that the same rows then fail.
"""
