"""The node's JSON/WebSocket RPC (aiohttp), bound to 127.0.0.1 by default (DESIGN §7).

    server.py      RpcServer: the aiohttp app, CORS and error middleware, start/stop
    routes.py      Route and the core route table (drives the router and the OpenAPI document)
    openapi.py     the OpenAPI 3 document generated from the routes
    types.py       the response types (TypedDicts) handlers answer with
    schema.py      OpenAPI response schemas generated from those types
    errors.py      ApiError: every error is {"error": {"code", "message"}} with a stable code
    request.py     parsing path parameters, the chain a handler reads (503 while starting)
    json_view.py   the one rendering of chain data, node events and bytes as JSON
    status.py      /status, /health, /peers, /net_info, /genesis
    chain.py       /blocks, /blocks/{h}/txs, /accounts, /validators
    txs.py         /txs (submit, ?wait=commit, look up, ?account= search), /mempool
    tx_batch.py    POST /txs/batch
    websocket.py   /events: the WebSocket stream of node events
    unsafe.py      /unsafe/p2p/* (test networks only)
    pocl.py        /rounds, /models/global, /models/global/predict, /miner
    pocl_views.py  JSON of a PoCL round record
    model_npz.py   the .npz layout of a downloaded (or exported) global model
    client.py      the CLI's synchronous client
    limits.py      RpcLimits ([rpc] bounds), their counters and the pocl_rpc_* metrics
    connection_gate.py  connection caps at accept, the header-read timeout
    body_guard.py  bodies: 413 by Content-Length, the in-flight budget (503 rpc_busy), the body timeout
"""
