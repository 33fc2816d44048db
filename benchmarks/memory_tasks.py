"""Long-range memory benchmarks (adding, copy memory, selective copy): see rnnkit.apps.memory.tasks.

The same as ``rnnkit bench memory ARGS``; kept here so that every benchmark can be run from benchmarks/.
"""

from rnnkit.apps.memory.tasks import main

if __name__ == "__main__":
    main()
