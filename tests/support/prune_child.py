"""Child process for the pruning crash test: prunes a store in tiny batches until SIGKILLed.

    python tests/support/prune_child.py DB_DIR RETAIN_HEIGHT

Prints "batch" before each batch (so the parent can kill it mid-prune) and "done" at the end.
"""

from __future__ import annotations

import sys

from pocl.ledger.storage.store import Store


def main(path: str, retain: int) -> None:
    store = Store.open(path, create=False)

    def tick() -> bool:
        print("batch", flush=True)
        return False

    store.prune_blocks(retain, batch_blocks=2, should_stop=tick)
    print("done", flush=True)
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
