"""The PoCL round simulator: N miners, R rounds of the real protocol in one process, no network.

Miners train with the real training code, cheat with `ml.adversary`, send the payloads a node's miner
sends (`node.miner_payloads`, `consensus.pocl.txs.build_*`) as signed txs, and blocks run through the
real ledger executor with PoCL's hooks, so schedule, `accept_*`, `finalize_round`, rewards and slashing
are exactly the chain's. Nothing here is imported by validator code.

    config.py    SimConfig: the run's knobs and the PoCL params they make
    chain.py     InProcessChain: genesis state, executor, signed txs, one block at a time
    miners.py    SimMiner: a miner's data, secrets and the txs it sends in a phase
    training.py  the Keras training function (TensorFlow imported only there, only when called)
    run.py       simulate(): drive the rounds, measure the global model, compare with central training
    report.py    per-round and total figures, the printed table and the JSON report
    plot.py      the optional PNG (matplotlib)
"""
