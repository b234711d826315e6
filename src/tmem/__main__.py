"""``python -m tmem``: the ``tmem`` command, for when its script is not on the PATH."""

from tmem.cli import main

main()
